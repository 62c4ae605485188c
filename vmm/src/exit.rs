//! How a VM ended, and the one place every thread reports it to.

use std::sync::{Condvar, Mutex};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// The guest reset the machine through the i8042 (Linux `reboot`).
    GuestReset,
    /// The guest kernel panicked; the reason is its panic message.
    GuestPanic(String),
    /// A triple fault the guest did not announce (KVM_EXIT_SHUTDOWN).
    TripleFault,
    /// A vCPU stopped on an error of ours or of KVM.
    VcpuError(String),
}

impl VmExit {
    /// The VMM's exit status for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            VmExit::GuestReset => 0,
            VmExit::VcpuError(_) => 1,
            VmExit::GuestPanic(_) => 3,
            VmExit::TripleFault => 4,
        }
    }
}

/// First reporter wins; later reports (other vCPUs noticing the same end)
/// are dropped.
#[derive(Default)]
pub struct ExitSignal {
    state: Mutex<Option<VmExit>>,
    cv: Condvar,
}

impl ExitSignal {
    pub fn report(&self, exit: VmExit) {
        let mut s = crate::sync::lock(&self.state);
        if s.is_none() {
            *s = Some(exit);
            self.cv.notify_all();
        }
    }

    pub fn wait(&self) -> VmExit {
        let mut s = crate::sync::lock(&self.state);
        loop {
            if let Some(e) = s.as_ref() {
                return e.clone();
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_report_wins() {
        let s = ExitSignal::default();
        s.report(VmExit::GuestReset);
        s.report(VmExit::TripleFault);
        assert_eq!(s.wait(), VmExit::GuestReset);
        assert_eq!(VmExit::GuestPanic("x".into()).exit_code(), 3);
    }
}
