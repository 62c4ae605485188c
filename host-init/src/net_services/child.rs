//! The start of `paddock-init net-services` in this binary: its log goes
//! to stderr for PID 1 to relay, its channel to PID 1 is opened on
//! `CHANNEL_FD`, and the process itself (`paddock_net_services::child`)
//! takes over.
//!
//! The channel is handed in behind the crate's `Channel` trait because
//! its transport (`api::channel`) is still this crate's: see the SEAM
//! note there.

use super::{CHANNEL_FD, MAX_UPDATE};
use crate::api::channel::{ChannelError, Endpoint, MAX_LINE};
use paddock_net_services::child::{Channel, ChannelFault};
use paddock_net_services::wire::{Report, Update};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::Arc;

/// The process's end of its channel to PID 1.
struct ToPid1(Endpoint);

impl Channel for ToPid1 {
    fn send(&self, report: &Report) -> Result<(), ChannelFault> {
        self.0.send(report, None::<&OwnedFd>).map_err(|e| match e {
            ChannelError::TooLong(n) => ChannelFault::TooLong(n),
            e => ChannelFault::Other(e.to_string()),
        })
    }

    fn recv(&self) -> Result<Update, ChannelFault> {
        match self.0.recv::<Update>() {
            Ok((u, None)) => Ok(u),
            Ok((_, Some(_))) => Err(ChannelFault::Descriptor),
            Err(ChannelError::Closed) => Err(ChannelFault::Closed),
            Err(ChannelError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                Err(ChannelFault::Closed)
            }
            Err(e) => Err(ChannelFault::Other(e.to_string())),
        }
    }
}

/// Entry point of `paddock-init net-services`.
pub fn main() -> ExitCode {
    crate::log::relay_through_pid1();
    // SAFETY: PID 1 starts this role with its channel on CHANNEL_FD, a
    // SOCK_SEQPACKET socket nothing else here owns.
    let channel = unsafe { Endpoint::from_raw(CHANNEL_FD) }.with_limits(MAX_LINE, MAX_UPDATE);
    paddock_net_services::child::main(Arc::new(ToPid1(channel)))
}
