//! The agent's readiness report: the one connection the agent opens to
//! the host, on `<vm_socket>_<READY_PORT>`.

use crate::{read_msg, ClientError, Result};
use paddock_proto::{AgentMsg, ReadyInfo};
use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Waits for the agent's readiness report on `<uds_path>_<READY_PORT>`.
/// Bind it (with [`ReadyListener::bind`]) before starting the VM.
pub struct ReadyListener {
    listener: UnixListener,
}

impl ReadyListener {
    pub fn bind(vm_socket: &Path) -> Result<ReadyListener> {
        let path = ready_socket_path(vm_socket);
        let listener = UnixListener::bind(&path).map_err(|source| ClientError::Connect {
            path: path.clone(),
            source,
        })?;
        Ok(ReadyListener { listener })
    }

    /// Waits up to `timeout` for the agent to connect, then up to
    /// REPORT_TIMEOUT for its report.
    pub fn wait(&self, timeout: Duration) -> Result<ReadyInfo> {
        self.listener.set_nonblocking(true)?;
        let deadline = Instant::now() + timeout;
        let mut stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(ClientError::Timeout(timeout));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e.into()),
            }
        };
        stream.set_nonblocking(false)?;
        // A connected agent sends its report at once; this bounds a guest
        // that connects and then says nothing, or trickles its report a
        // byte at a time: the whole report must arrive within
        // REPORT_TIMEOUT, not each read. It is separate from the accept
        // deadline: a short wait that accepts near its end must not drop
        // the report (the agent reports once).
        let mut report = DeadlineReader {
            stream: &mut stream,
            until: Instant::now() + REPORT_TIMEOUT,
        };
        match read_msg(&mut report)? {
            AgentMsg::Ready(info) => Ok(info),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// Reads from a socket until a fixed moment, whatever the pace of the
/// bytes: each read may wait only for what is left of the time.
struct DeadlineReader<'a> {
    stream: &'a mut UnixStream,
    until: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the readiness report did not arrive in time",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// How long a connected agent has to send its readiness report.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the agent reports readiness for a VM whose vsock socket is `vm_socket`.
pub fn ready_socket_path(vm_socket: &Path) -> PathBuf {
    let mut p = vm_socket.as_os_str().to_owned();
    p.push(format!("_{}", paddock_proto::READY_PORT));
    PathBuf::from(p)
}
