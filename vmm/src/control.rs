//! The host's channel into a running VMM: a Unix socket (in the workspace's
//! run directory, inside the jail) taking one JSON request per connection.
//! It changes a device's rate limit (a drive by its id, the NIC as "net";
//! the device's worker picks the new limit up before its next request),
//! and pauses, snapshots and resumes the VM (snapshot/). A snapshot's two
//! files come with the request as descriptors, so the VMM writes nothing
//! by name.
//!
//! Only the host (host-init, root) can reach the socket, but its requests
//! are still parsed strictly: anything malformed gets an error reply and
//! changes nothing.

use crate::rate_limit::RateLimit;
use crate::snapshot::Machine;
use paddock_proto::vmm_control::{VmmReply, VmmRequest};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Longest request accepted, in bytes.
const MAX_REQUEST: usize = 4096;

/// A device's rate limit as the control thread sets it and its worker reads
/// it: the worker checks one flag per request, and takes the lock only
/// when the flag says something changed.
#[derive(Default)]
pub struct RateCell {
    changed: AtomicBool,
    next: Mutex<RateLimit>,
}

impl RateCell {
    pub fn set(&self, rate: RateLimit) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = rate;
        self.changed.store(true, Ordering::Release);
    }

    /// The new limit, if one was set since the last call.
    pub fn take(&self) -> Option<RateLimit> {
        // A plain load first: on the I/O path the answer is nearly always
        // "no", and a load does not take the cache line from other cores.
        if !self.changed.load(Ordering::Relaxed) || !self.changed.swap(false, Ordering::Acquire) {
            return None;
        }
        Some(*self.next.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Rate-limited devices by name: drives by their ids, the NIC as "net".
pub type Devices = BTreeMap<String, Arc<RateCell>>;

/// Answers one request: `{"ok": true}` or `{"error": "..."}`. `fds` are
/// the descriptors that came with it; `machine` is absent in unit tests.
pub fn handle(
    request: &[u8],
    fds: Vec<OwnedFd>,
    devices: &Devices,
    machine: Option<&Machine>,
) -> String {
    let parsed = serde_json::from_slice::<VmmRequest>(request);
    let wants_fds = matches!(parsed, Ok(VmmRequest::Snapshot {}));
    let reply = match parsed {
        _ if !wants_fds && !fds.is_empty() => Err(format!(
            "{} descriptors came with a request that takes none",
            fds.len()
        )),
        Err(e) => Err(format!("malformed request: {e}")),
        Ok(VmmRequest::Pause {}) => with_machine(machine, |m| m.pause()),
        Ok(VmmRequest::Resume {}) => with_machine(machine, |m| m.resume()),
        Ok(VmmRequest::Snapshot {}) => snapshot(machine, fds),
        Ok(VmmRequest::SetRate {
            device,
            bytes_per_s,
            ops_per_s,
        }) => match devices.get(&device) {
            None => Err(format!("no device {device:?}")),
            Some(_) if bytes_per_s == Some(0) || ops_per_s == Some(0) => {
                Err("a rate of 0 would stop the device; leave it out for unlimited".into())
            }
            Some(cell) => {
                cell.set(RateLimit {
                    bytes_per_s,
                    ops_per_s,
                });
                Ok(())
            }
        },
    };
    let reply = match reply {
        Ok(()) => VmmReply::Ok { ok: true },
        Err(error) => VmmReply::Error { error },
    };
    // A reply holds a bool or a string: it always serializes.
    let mut text = serde_json::to_string(&reply).unwrap_or_default();
    text.push('\n');
    text
}

fn with_machine(
    machine: Option<&Machine>,
    f: impl FnOnce(&Machine) -> Result<(), crate::snapshot::SnapshotError>,
) -> Result<(), String> {
    let m = machine.ok_or("this VMM cannot pause")?;
    f(m).map_err(|e| e.to_string())
}

fn snapshot(machine: Option<&Machine>, fds: Vec<OwnedFd>) -> Result<(), String> {
    let m = machine.ok_or("this VMM cannot snapshot")?;
    let [state, memory]: [OwnedFd; 2] = fds.try_into().map_err(|fds: Vec<OwnedFd>| {
        format!(
            "snapshot takes two descriptors (state file, memory file); {} came",
            fds.len()
        )
    })?;
    let mut state = File::from(state);
    let memory = File::from(memory);
    m.snapshot(&mut state, &memory)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Serves the socket forever, one connection at a time (the control thread).
pub fn serve(listener: UnixListener, devices: Devices, machine: Option<Machine>) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut buf = Vec::with_capacity(256);
        let mut fds = Vec::new();
        let mut chunk = [0u8; 512];
        let reply = loop {
            match crate::fd_passing::recv(&conn, &mut chunk, &mut fds) {
                Ok(0) => break handle(&buf, fds, &devices, machine.as_ref()),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                        break handle(&buf[..end], fds, &devices, machine.as_ref());
                    }
                    if buf.len() > MAX_REQUEST {
                        break format!("{{\"error\":\"request over {MAX_REQUEST} bytes\"}}\n");
                    }
                }
                Err(_) => break String::new(),
            }
        };
        let _ = conn.write_all(reply.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn devices() -> (Devices, Arc<RateCell>) {
        let cell = Arc::new(RateCell::default());
        let mut d = Devices::new();
        d.insert("data".into(), cell.clone());
        (d, cell)
    }

    #[test]
    fn a_rate_change_reaches_the_drive_once() {
        let (d, cell) = devices();
        assert_eq!(cell.take(), None);
        let r = handle(
            br#"{"op":"set_rate","drive":"data","bytes_per_s":1048576}"#,
            Vec::new(),
            &d,
            None,
        );
        assert_eq!(r, "{\"ok\":true}\n");
        assert_eq!(
            cell.take(),
            Some(RateLimit {
                bytes_per_s: Some(1 << 20),
                ops_per_s: None
            })
        );
        assert_eq!(cell.take(), None, "taken once");
    }

    #[test]
    fn malformed_requests_change_nothing() {
        let (d, cell) = devices();
        for bad in [
            &b"not json"[..],
            br#"{"op":"set_rate","drive":"other","bytes_per_s":1}"#,
            br#"{"op":"set_rate","drive":"data","bytes_per_s":0}"#,
            br#"{"op":"set_rate","drive":"data","bytes_per_s":-1}"#,
            br#"{"op":"set_rate","drive":"data","surprise":1}"#,
            br#"{"op":"reboot"}"#,
            b"",
        ] {
            let r = handle(bad, Vec::new(), &d, None);
            assert!(r.starts_with("{\"error\":"), "{r}");
        }
        assert_eq!(cell.take(), None);
    }

    #[test]
    fn descriptors_and_vm_requests_are_refused_where_they_do_not_belong() {
        let (d, cell) = devices();
        let f = File::open("/dev/null").expect("null");
        let fd = || OwnedFd::from(f.try_clone().expect("dup"));
        let r = handle(
            br#"{"op":"set_rate","device":"data","ops_per_s":5}"#,
            vec![fd()],
            &d,
            None,
        );
        assert!(r.contains("takes none"), "{r}");
        assert_eq!(cell.take(), None, "nothing applied");
        let r = handle(br#"{"op":"pause"}"#, Vec::new(), &d, None);
        assert!(r.contains("cannot pause"), "{r}");
        let r = handle(br#"{"op":"snapshot"}"#, vec![fd()], &d, None);
        assert!(r.starts_with("{\"error\":"), "{r}");
        let r = handle(br#"{"op":"pause","now":true}"#, Vec::new(), &d, None);
        assert!(r.contains("malformed"), "{r}");
    }

    #[test]
    fn the_socket_answers_one_request_per_connection() {
        let dir = std::env::temp_dir().join(format!("paddock-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("control.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let (d, cell) = devices();
        std::thread::spawn(move || serve(listener, d, None));
        let ask = |req: &[u8]| {
            let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
            // The server may answer and hang up before an overlong request
            // is all written.
            let _ = s.write_all(req);
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        };
        assert_eq!(
            ask(b"{\"op\":\"set_rate\",\"device\":\"data\",\"ops_per_s\":10}\n"),
            "{\"ok\":true}\n"
        );
        assert_eq!(cell.take().and_then(|r| r.ops_per_s), Some(10));
        assert!(ask(&vec![b'x'; 5000]).contains("request over"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
