//! The control plane's side of a workspace VMM's control socket
//! (vmm/src/control.rs): one JSON request per connection, descriptors
//! attached with SCM_RIGHTS where the request takes them (a snapshot's
//! files), one reply. A small client of its own rather than the VMM
//! crate's, which would bring KVM and the device model into PID 1.

use super::run_error::RunError;
use paddock_proto::vmm_control::{VmmReply, VmmRequest};
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends `req` with `fds` to the VMM listening at `sock`; waits at most
/// `wait` for its whole answer (a VMM that trickles it is cut off there).
pub fn request(
    sock: &Path,
    req: &VmmRequest,
    fds: &[BorrowedFd<'_>],
    wait: Duration,
) -> Result<(), RunError> {
    let io = |what: &'static str| super::run_error::io(what, sock);
    let conn = UnixStream::connect(sock).map_err(io("connecting to"))?;
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    // A request is strings and numbers: it always serializes.
    let mut line = serde_json::to_vec(req).unwrap_or_default();
    line.push(b'\n');
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
    let iov = [std::io::IoSlice::new(&line)];
    let cmsgs: &[nix::sys::socket::ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let sent = nix::sys::socket::sendmsg::<()>(
        conn.as_raw_fd(),
        &iov,
        cmsgs,
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| io("writing to")(std::io::Error::from(e)))?;
    if sent != line.len() {
        return Err(RunError::Vmm(format!(
            "the request was cut short ({sent} of {} bytes sent)",
            line.len()
        )));
    }
    let deadline = std::time::Instant::now() + wait;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || reply.len() > 64 * 1024 {
            return Err(RunError::Vmm(format!(
                "no whole answer within {} s",
                wait.as_secs()
            )));
        }
        let _ = conn.set_read_timeout(Some(left));
        match (&conn).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io("reading from")(e)),
        }
    }
    match serde_json::from_slice::<VmmReply>(&reply) {
        Ok(VmmReply::Ok { ok: true }) => Ok(()),
        Ok(VmmReply::Error { error }) => Err(RunError::Vmm(error)),
        _ => Err(RunError::Vmm(format!(
            "an answer that is not one: {}",
            String::from_utf8_lossy(&reply).trim()
        ))),
    }
}
