//! Talks to a workspace's guest agent through the VMM's vsock Unix socket.
//!
//! Every call opens its own connection (`CONNECT <AGENT_PORT>`), says
//! Hello, runs one operation and closes, so calls are independent and may
//! run concurrently from several threads. All reads have a timeout; an
//! exec's own duration is bounded by its `timeout_ms`, not by the client.

use paddock_proto::frame::{decode, read_frame_bytes, write_frame};
use paddock_proto::{
    AgentMsg, DirEntry, ErrorReply, ExecRequest, ExitStatus, FileStat, FrameError, FsEvent,
    HealthInfo, HostMsg, ProcInfo, ProcRef, PtySize, SpawnRequest, Tagged, User, AGENT_PORT, CHUNK,
    PROTOCOL_VERSION,
};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the VMM refused vsock port {port}: {reply:?}")]
    VsockRefused { port: u32, reply: String },
    #[error("agent error ({:?}): {}", .0.kind, .0.message)]
    Agent(ErrorReply),
    #[error("protocol: {0}")]
    Protocol(#[from] FrameError),
    #[error("unexpected message from the agent: {0}")]
    Unexpected(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("i/o: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                ClientError::Timeout(Duration::ZERO)
            }
            _ => ClientError::Io(e),
        }
    }
}

type Result<T> = std::result::Result<T, ClientError>;

mod ready;
pub use ready::{ready_socket_path, ReadyListener, REPORT_TIMEOUT};

/// A piece of a command's output.
#[derive(Debug, PartialEq, Eq)]
pub enum Output<'a> {
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
}

pub(crate) fn read_msg(s: &mut impl Read) -> Result<AgentMsg> {
    let body = read_frame_bytes(s).map_err(|e| match e {
        FrameError::Io(io) => ClientError::from(io),
        other => ClientError::Protocol(other),
    })?;
    Ok(decode(&body, AgentMsg::VARIANTS)?)
}

fn expect_done(msg: AgentMsg) -> Result<()> {
    match msg {
        AgentMsg::Done => Ok(()),
        AgentMsg::Error(e) => Err(ClientError::Agent(e)),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// What a watched process did next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exited(ExitStatus),
}

/// A connection watching a process started to outlive it (`spawn`) or
/// found again (`attach`): its pid, then its output as it comes. Dropping
/// it stops watching; the process goes on.
pub struct Watch {
    session: Session,
    pub pid: u32,
}

impl Watch {
    /// The next output or the end. Waits as long as the process is silent.
    pub fn next_event(&mut self) -> Result<Event> {
        match self.session.recv()? {
            AgentMsg::Stdout(d) => Ok(Event::Stdout(d)),
            AgentMsg::Stderr(d) => Ok(Event::Stderr(d)),
            AgentMsg::Exited(st) => Ok(Event::Exited(st)),
            AgentMsg::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The connection, e.g. to shut it down from another thread.
    pub fn stream(&self) -> &UnixStream {
        &self.session.stream
    }
}

/// A connection watching a directory: batches of what changed in it.
/// Dropping it ends the watch.
pub struct DirWatch {
    session: Session,
}

impl DirWatch {
    /// The next batch of changes. Waits as long as nothing changes.
    pub fn next_batch(&mut self) -> Result<Vec<FsEvent>> {
        match self.session.recv()? {
            AgentMsg::FsEvents(e) => Ok(e),
            AgentMsg::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub fn stream(&self) -> &UnixStream {
        &self.session.stream
    }
}

pub struct AgentClient {
    vm_socket: PathBuf,
    timeout: Duration,
    /// A connection someone else opened (and passed to us), used by the
    /// next operation instead of connecting to `vm_socket`.
    preconnected: std::sync::Mutex<Option<UnixStream>>,
    /// Whom file operations run as (`HostMsg::AsUser`); None: as root,
    /// without saying so (what agents before that message do anyway).
    user: Option<User>,
}

/// An open connection that said Hello.
pub struct Session {
    stream: UnixStream,
    pub agent_version: String,
}

impl Session {
    pub fn send(&mut self, msg: &HostMsg) -> Result<()> {
        write_frame(&mut self.stream, msg).map_err(|e| match e {
            FrameError::Io(io) => ClientError::from(io),
            other => ClientError::Protocol(other),
        })
    }

    pub fn recv(&mut self) -> Result<AgentMsg> {
        read_msg(&mut self.stream)
    }

    /// The raw stream, for tests that speak the protocol badly on purpose.
    pub fn stream(&mut self) -> &mut UnixStream {
        &mut self.stream
    }
}

impl AgentClient {
    pub fn new(vm_socket: impl Into<PathBuf>) -> AgentClient {
        AgentClient {
            vm_socket: vm_socket.into(),
            timeout: Duration::from_secs(30),
            preconnected: std::sync::Mutex::new(None),
            user: None,
        }
    }

    /// A client for one operation over a stream already connected to the
    /// agent port (past the `CONNECT` handshake), e.g. one received from a
    /// more privileged process.
    /// File operations (not exec, which names its own user) run with
    /// `user`'s credentials in the guest.
    pub fn as_user(mut self, user: User) -> AgentClient {
        self.user = Some(user);
        self
    }

    pub fn from_connected(stream: UnixStream) -> AgentClient {
        AgentClient {
            vm_socket: PathBuf::from("(passed connection)"),
            timeout: Duration::from_secs(30),
            preconnected: std::sync::Mutex::new(Some(stream)),
            user: None,
        }
    }

    pub fn socket_path(&self) -> &Path {
        &self.vm_socket
    }

    /// How long any single read may wait (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> AgentClient {
        self.timeout = timeout;
        self
    }

    /// A connection to the agent port, before Hello.
    pub fn connect_raw(&self) -> Result<UnixStream> {
        let passed = self
            .preconnected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(s) = passed {
            s.set_read_timeout(Some(self.timeout))?;
            return Ok(s);
        }
        let mut s =
            UnixStream::connect(&self.vm_socket).map_err(|source| ClientError::Connect {
                path: self.vm_socket.clone(),
                source,
            })?;
        s.set_read_timeout(Some(self.timeout))?;
        s.write_all(format!("CONNECT {AGENT_PORT}\n").as_bytes())?;
        // Byte by byte, so nothing after the reply line is consumed.
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while line.len() < 64 {
            if s.read(&mut b)? == 0 {
                break;
            }
            if b[0] == b'\n' {
                break;
            }
            line.push(b[0]);
        }
        let reply = String::from_utf8_lossy(&line).to_string();
        if !reply.starts_with("OK ") {
            return Err(ClientError::VsockRefused {
                port: AGENT_PORT,
                reply,
            });
        }
        Ok(s)
    }

    pub fn session(&self) -> Result<Session> {
        let stream = self.connect_raw()?;
        let mut s = Session {
            stream,
            agent_version: String::new(),
        };
        s.send(&HostMsg::Hello {
            protocol: PROTOCOL_VERSION,
        })?;
        match s.recv()? {
            AgentMsg::HelloOk { agent_version, .. } => {
                s.agent_version = agent_version;
                if let Some(user) = self.user {
                    s.send(&HostMsg::AsUser(user))?;
                }
                Ok(s)
            }
            AgentMsg::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub fn health(&self) -> Result<HealthInfo> {
        let mut s = self.session()?;
        s.send(&HostMsg::Health)?;
        match s.recv()? {
            AgentMsg::Health(h) => Ok(h),
            AgentMsg::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Runs a command, streaming `stdin` (when `req.stdin`) and handing each
    /// piece of output to `on_output` as it arrives.
    pub fn exec(
        &self,
        req: ExecRequest,
        stdin: Option<Box<dyn Read + Send>>,
        mut on_output: impl FnMut(Output<'_>),
    ) -> Result<ExitStatus> {
        let mut s = self.session()?;
        // The command may run for as long as its own timeout allows.
        s.stream.set_read_timeout(None)?;
        let wants_stdin = req.stdin;
        s.send(&HostMsg::Exec(req))?;
        match s.recv()? {
            AgentMsg::Started { .. } => {}
            AgentMsg::Error(e) => return Err(ClientError::Agent(e)),
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        let feeder = match (wants_stdin, stdin) {
            (true, Some(mut input)) => {
                let mut w = s.stream.try_clone()?;
                Some(std::thread::spawn(move || -> Result<()> {
                    let mut buf = vec![0u8; CHUNK];
                    loop {
                        let n = input.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        write_frame(&mut w, &HostMsg::Stdin(buf[..n].to_vec()))?;
                    }
                    write_frame(&mut w, &HostMsg::StdinEof)?;
                    Ok(())
                }))
            }
            (true, None) => {
                s.send(&HostMsg::StdinEof)?;
                None
            }
            _ => None,
        };
        let status = loop {
            match s.recv()? {
                AgentMsg::Stdout(d) => on_output(Output::Stdout(&d)),
                AgentMsg::Stderr(d) => on_output(Output::Stderr(&d)),
                AgentMsg::Exited(st) => break st,
                AgentMsg::Error(e) => return Err(ClientError::Agent(e)),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
        };
        if let Some(f) = feeder {
            // The command may have exited without reading all its input.
            let _ = f.join();
        }
        Ok(status)
    }

    /// Runs a command without stdin and collects its output.
    pub fn exec_collect(&self, req: ExecRequest) -> Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let st = self.exec(req, None, |o| match o {
            Output::Stdout(d) => out.extend_from_slice(d),
            Output::Stderr(d) => err.extend_from_slice(d),
        })?;
        Ok((st, out, err))
    }

    pub fn write_file(&self, path: &str, mode: u32, mut src: impl Read) -> Result<()> {
        let mut s = self.session()?;
        s.send(&HostMsg::WriteFile {
            path: path.into(),
            mode,
        })?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = src.read(&mut buf).map_err(ClientError::Io)?;
            if n == 0 {
                break;
            }
            s.send(&HostMsg::Data(buf[..n].to_vec()))?;
        }
        s.send(&HostMsg::DataEnd)?;
        expect_done(s.recv()?)
    }

    /// Copies a file out of the workspace; returns its size and mode.
    pub fn read_file(&self, path: &str, mut dst: impl Write) -> Result<(u64, u32)> {
        let mut s = self.session()?;
        s.send(&HostMsg::ReadFile { path: path.into() })?;
        let (size, mode) = match s.recv()? {
            AgentMsg::FileStart { size, mode } => (size, mode),
            AgentMsg::Error(e) => return Err(ClientError::Agent(e)),
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        loop {
            match s.recv()? {
                AgentMsg::Data(d) => dst.write_all(&d).map_err(ClientError::Io)?,
                AgentMsg::DataEnd => break,
                AgentMsg::Error(e) => return Err(ClientError::Agent(e)),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
        }
        Ok((size, mode))
    }

    pub fn stat(&self, path: &str) -> Result<FileStat> {
        let mut s = self.session()?;
        s.send(&HostMsg::Stat { path: path.into() })?;
        match s.recv()? {
            AgentMsg::Stat(st) => Ok(st),
            AgentMsg::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        let mut s = self.session()?;
        s.send(&HostMsg::ListDir { path: path.into() })?;
        match s.recv()? {
            AgentMsg::DirEntries(e) => Ok(e),
            AgentMsg::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub fn make_dir(&self, path: &str, mode: u32, parents: bool) -> Result<()> {
        let mut s = self.session()?;
        s.send(&HostMsg::MakeDir {
            path: path.into(),
            mode,
            parents,
        })?;
        expect_done(s.recv()?)
    }

    pub fn remove(&self, path: &str, recursive: bool) -> Result<()> {
        let mut s = self.session()?;
        s.send(&HostMsg::Remove {
            path: path.into(),
            recursive,
        })?;
        expect_done(s.recv()?)
    }

    /// Starts a process that outlives this connection; the answer watches
    /// it from its first output.
    pub fn spawn(&self, req: SpawnRequest) -> Result<Watch> {
        self.watch(HostMsg::Spawn(req))
    }

    /// Watches a running spawned process from now on.
    pub fn attach(&self, to: ProcRef) -> Result<Watch> {
        self.watch(HostMsg::Attach(to))
    }

    fn watch(&self, msg: HostMsg) -> Result<Watch> {
        let mut s = self.session()?;
        s.send(&msg)?;
        match s.recv()? {
            AgentMsg::Started { pid } => {
                // A process may be silent for as long as it likes.
                s.stream.set_read_timeout(None)?;
                Ok(Watch { session: s, pid })
            }
            AgentMsg::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Input for a spawned process's stdin or terminal.
    pub fn input(&self, to: ProcRef, data: Vec<u8>) -> Result<()> {
        self.one_shot(HostMsg::Input { to, data })
    }

    /// Ends a spawned process's stdin.
    pub fn close_input(&self, to: ProcRef) -> Result<()> {
        self.one_shot(HostMsg::CloseInput(to))
    }

    pub fn signal(&self, to: ProcRef, signal: i32) -> Result<()> {
        self.one_shot(HostMsg::SignalProc { to, signal })
    }

    pub fn resize(&self, to: ProcRef, size: PtySize) -> Result<()> {
        self.one_shot(HostMsg::Resize { to, size })
    }

    /// The spawned processes running now.
    pub fn list_procs(&self) -> Result<Vec<ProcInfo>> {
        let mut s = self.session()?;
        s.send(&HostMsg::ListProcs)?;
        match s.recv()? {
            AgentMsg::Procs(p) => Ok(p),
            AgentMsg::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// What the workspace changed against its template, and whether the
    /// list was cut short.
    pub fn changes(&self) -> Result<(Vec<paddock_proto::Change>, bool)> {
        let mut s = self.session()?;
        s.send(&HostMsg::Changes)?;
        match s.recv()? {
            AgentMsg::Changes { changes, truncated } => Ok((changes, truncated)),
            AgentMsg::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Makes the workspace trust `pem` (the appliance's egress CA: one or
    /// more PEM certificates and nothing else but whitespace, at most
    /// [`paddock_proto::MAX_CA_PEM`] bytes). The agent installs it in the
    /// system bundle, replacing what an earlier call installed, and points
    /// every command it starts from then on at it (`SSL_CERT_FILE` and
    /// friends). Send it after each readiness report: the agent forgets it
    /// when the VM stops. A privileged operation: the agent refuses it from
    /// a client made [`as_user`](Self::as_user); an agent older than the
    /// message answers it as an unknown operation.
    pub fn trust_ca(&self, pem: &str) -> Result<()> {
        self.one_shot(HostMsg::TrustCa { pem: pem.into() })
    }

    /// Makes a workspace restored from a snapshot its own: 64 bytes from
    /// the host's `/dev/urandom` reseed the guest's RNG, the guest's wall
    /// clock is set to the host's, and it gets a fresh machine-id and
    /// `hostname`. Send it once after each restore, before anything else
    /// runs in the workspace; until then it shares every random secret
    /// with the other clones of the snapshot. Privileged, like `trust_ca`.
    pub fn renew(&self, hostname: &str) -> Result<()> {
        self.renew_with(hostname, true)
    }

    /// After a paused workspace is resumed: the RNG reseeded and the wall
    /// clock set as by [`renew`](Self::renew), its machine-id kept (it is
    /// the same workspace, and the only copy of it).
    pub fn resync(&self, hostname: &str) -> Result<()> {
        self.renew_with(hostname, false)
    }

    fn renew_with(&self, hostname: &str, clone: bool) -> Result<()> {
        let (entropy, realtime_ns) = fresh_identity()?;
        self.one_shot(HostMsg::Renew {
            entropy,
            realtime_ns,
            hostname: hostname.into(),
            clone,
        })
    }

    /// Makes a clone of a template snapshot (an agent booted with
    /// `paddock.provision=wait`) the workspace `hostname`: reseeded from
    /// the host's RNG, its clock set, a fresh machine-id, then its own
    /// writable disk of `data_sectors` 512-byte sectors (0: the root's
    /// writable layer is memory) joined into its root, then `net`. The VMM
    /// must have been restored with the workspace's disk in place of the
    /// template's empty one. Once per clone; privileged.
    pub fn provision(
        &self,
        hostname: &str,
        data_sectors: u64,
        net: Option<paddock_proto::ProvisionNet>,
    ) -> Result<()> {
        let (entropy, realtime_ns) = fresh_identity()?;
        self.one_shot(HostMsg::Provision {
            entropy,
            realtime_ns,
            hostname: hostname.into(),
            data_sectors,
            net,
        })
    }

    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.one_shot(HostMsg::Rename {
            from: from.into(),
            to: to.into(),
        })
    }

    fn one_shot(&self, msg: HostMsg) -> Result<()> {
        let mut s = self.session()?;
        s.send(&msg)?;
        expect_done(s.recv()?)
    }

    /// Watches a directory (and, when `recursive`, all below it).
    pub fn watch_dir(&self, path: &str, recursive: bool) -> Result<DirWatch> {
        let mut s = self.session()?;
        s.send(&HostMsg::WatchDir {
            path: path.into(),
            recursive,
        })?;
        expect_done(s.recv()?)?;
        // Changes may be far apart.
        s.stream.set_read_timeout(None)?;
        Ok(DirWatch { session: s })
    }
}

#[cfg(test)]
mod tests;

/// 64 bytes from the host's RNG and its wall clock, for a restored guest.
fn fresh_identity() -> Result<(Vec<u8>, u64)> {
    use std::io::Read;
    let mut entropy = vec![0u8; 64];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut entropy))
        .map_err(ClientError::Io)?;
    let realtime_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok((entropy, realtime_ns))
}
