//! Where the guest's serial output goes, watched for the kernel's panic line.

use std::io::Write;
use std::sync::{Arc, Mutex};

const PANIC_MARKER: &str = "Kernel panic - not syncing: ";
/// Longest console line kept for inspection; the rest of a longer line is
/// still written out, just not scanned.
const MAX_LINE: usize = 1024;
/// Longest panic reason we report; it comes from the guest.
const MAX_REASON: usize = 200;

/// The panic reason seen on the console, if any. Shared with the vCPU loop,
/// which turns the reset that follows a panic into a non-zero exit.
pub type PanicNote = Arc<Mutex<Option<String>>>;

pub struct ConsoleWriter {
    out: Box<dyn Write + Send>,
    line: Vec<u8>,
    panic: PanicNote,
}

impl ConsoleWriter {
    pub fn new(out: Box<dyn Write + Send>, panic: PanicNote) -> Self {
        ConsoleWriter {
            out,
            line: Vec::with_capacity(MAX_LINE),
            panic,
        }
    }

    fn end_of_line(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        if let Some(pos) = text.find(PANIC_MARKER) {
            let reason: String = text[pos + PANIC_MARKER.len()..]
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_REASON)
                .collect();
            let mut note = super::lock(&self.panic);
            if note.is_none() {
                *note = Some(reason.trim_end().to_string());
            }
        }
        self.line.clear();
    }
}

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                self.end_of_line();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
        // A console nobody reads (closed pipe, full disk) must not stop the guest.
        let _ = self.out.write_all(buf);
        Ok(buf.len())
    }

    /// Does nothing: the UART model flushes after every byte the guest
    /// writes, and a flush of the detached sink waits until its thread has
    /// written everything out. Passed on, that made each guest byte a
    /// round trip between the vCPU thread and the console thread; on a
    /// busy one-CPU host every byte could wait out a scheduler slice, and
    /// a boot's console took minutes (the "boot stall", issue 18).
    /// `finish` is the real flush, for the end of the VM.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ConsoleWriter {
    /// Writes out what is still queued (bounded by the sink's own wait).
    pub fn finish(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catches_panic_reason_across_writes() {
        let note = PanicNote::default();
        let mut w = ConsoleWriter::new(Box::new(std::io::sink()), note.clone());
        w.write_all(b"[    1.0] Kernel panic - not sync")
            .expect("w");
        w.write_all(b"ing: Attempted to kill init! exitcode=0x00000100\r\n")
            .expect("w");
        w.write_all(b"Kernel panic - not syncing: second\n")
            .expect("w");
        assert_eq!(
            note.lock().expect("lock").as_deref(),
            Some("Attempted to kill init! exitcode=0x00000100")
        );
    }

    #[test]
    fn long_lines_and_binary_do_not_break_it() {
        let note = PanicNote::default();
        let mut w = ConsoleWriter::new(Box::new(std::io::sink()), note.clone());
        w.write_all(&vec![0xffu8; 10_000]).expect("w");
        w.write_all(b"\n\x00\x01normal line\n").expect("w");
        assert!(note.lock().expect("lock").is_none());
    }
}
