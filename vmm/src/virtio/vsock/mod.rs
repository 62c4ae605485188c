//! virtio-vsock with the host side as Unix sockets, in the convention
//! Firecracker made familiar:
//! - host to guest: connect to the VM's socket, send `CONNECT <port>\n`,
//!   read `OK <host-port>\n`, then the stream is the connection;
//! - guest to host: a guest connecting to CID 2 port P reaches the Unix
//!   socket `<uds_path>_<P>`, which the host listens on.

pub mod event;
pub mod muxer;
pub mod packet;

use super::worker::{self, WorkerHandle};
use super::{device_id, read_config_bytes, ActivateError, Activation, VirtioDevice};
use crate::seccomp::ThreadKind;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
pub const EVENT_QUEUE: usize = 2;
const QUEUE_SIZE: u16 = 256;

pub struct Vsock {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: Option<UnixListener>,
    config: [u8; 8],
    worker: Option<WorkerHandle>,
    /// Set on a restored device: the driver is owed a transport reset.
    restored: bool,
}

impl Vsock {
    /// `listener` is bound to `uds_path` already, so the host can connect
    /// as soon as the VMM runs, before the guest driver is up.
    pub fn new(guest_cid: u64, uds_path: PathBuf, listener: UnixListener) -> Self {
        Vsock {
            guest_cid,
            uds_path,
            listener: Some(listener),
            config: guest_cid.to_le_bytes(),
            worker: None,
            restored: false,
        }
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_id::VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let listener = self
            .listener
            .take()
            .ok_or_else(|| ActivateError::Device("vsock: activated twice".into()))?;
        let mut muxer = muxer::Muxer::new(self.guest_cid, self.uds_path.clone(), listener);
        if std::mem::take(&mut self.restored) {
            muxer.reset_transport_on_start();
        }
        self.worker = Some(worker::spawn(
            "vsock",
            ThreadKind::Vsock,
            activation,
            muxer,
        )?);
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
    }
    fn worker_mut(&mut self) -> Option<&mut WorkerHandle> {
        self.worker.as_mut()
    }

    fn restored(&mut self) {
        self.restored = true;
    }
}
