//! Every message of the protocol. Variants are only ever appended, so a
//! peer with an older list reports the new ones as unknown operations.

use serde::{Deserialize, Serialize};

/// How many variants an enum has, for telling unknown operations apart.
pub trait Tagged {
    const VARIANTS: u64;
}

/// Who a command runs as inside the workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum User {
    Root,
    /// The unprivileged `agent` user every template has.
    #[default]
    Agent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// argv[0] is looked up in PATH.
    pub argv: Vec<String>,
    /// Added to a minimal environment (PATH, HOME, USER, LANG). Values may be
    /// secrets: the agent passes them to the process and nowhere else.
    pub env: Vec<(String, String)>,
    /// Defaults to the user's home directory.
    pub cwd: Option<String>,
    pub user: User,
    /// Whether the host will stream stdin; without it stdin is /dev/null.
    pub stdin: bool,
    /// Kill the whole process tree after this long.
    pub timeout_ms: Option<u64>,
}

/// A terminal's size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    pub cols: u16,
    pub rows: u16,
}

/// A process started with `Spawn`, named by its pid or by the tag it was
/// started with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcRef {
    Pid(u32),
    Tag(String),
}

/// A process that outlives the connection that started it: any connection
/// may later watch it (`Attach`), feed it, signal or resize it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// `exec.stdin`: its input stays open for `Input` until `CloseInput`.
    /// `exec.timeout_ms` bounds the process itself, whoever watches it.
    pub exec: ExecRequest,
    /// A name to find it by instead of its pid (unique among running ones).
    pub tag: Option<String>,
    /// Run it on a pseudo-terminal of this size: its output then comes as
    /// `Stdout` only, and `Input` is typed at the terminal.
    pub pty: Option<PtySize>,
}

/// A running `Spawn`ed process, as `ListProcs` reports it (its environment
/// is left out: it holds the workspace's secrets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcInfo {
    pub pid: u32,
    pub tag: Option<String>,
    pub argv: Vec<String>,
    pub cwd: String,
    pub pty: bool,
}

/// What happened to a watched path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsEventKind {
    Create,
    Write,
    Remove,
    Rename,
    Chmod,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEvent {
    /// Relative to the watched directory.
    pub name: String,
    pub kind: FsEventKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostMsg {
    Hello {
        protocol: u32,
    },
    Exec(ExecRequest),
    Stdin(#[serde(with = "serde_bytes")] Vec<u8>),
    StdinEof,
    /// A signal for the running command's process group.
    Signal(i32),
    /// Followed by `Data` frames and `DataEnd`; answered with `Done`.
    WriteFile {
        path: String,
        mode: u32,
    },
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    DataEnd,
    /// Answered with `FileStart`, `Data` frames and `DataEnd`.
    ReadFile {
        path: String,
    },
    Stat {
        path: String,
    },
    ListDir {
        path: String,
    },
    MakeDir {
        path: String,
        mode: u32,
        parents: bool,
    },
    Remove {
        path: String,
        recursive: bool,
    },
    Health,
    /// Sent between `Hello` and a file operation: the operation runs with
    /// this user's credentials, checked by the guest's kernel. Without it
    /// file operations run as root (hosts before this message existed).
    AsUser(User),
    /// Answered with `Started`, the output as it comes and `Exited`; the
    /// process keeps running if this connection closes first.
    Spawn(SpawnRequest),
    /// Watch a spawned process: `Started`, its output from now on, `Exited`.
    Attach(ProcRef),
    /// Input for a spawned process's stdin (or terminal); answered `Done`.
    Input {
        to: ProcRef,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// End a spawned process's stdin; answered `Done`.
    CloseInput(ProcRef),
    /// A signal for a spawned process's process group; answered `Done`.
    SignalProc {
        to: ProcRef,
        signal: i32,
    },
    /// A new size for a spawned process's terminal; answered `Done`.
    Resize {
        to: ProcRef,
        size: PtySize,
    },
    /// Answered with `Procs`.
    ListProcs,
    /// Renames a file or directory (a file operation: `AsUser` applies);
    /// answered `Done`.
    Rename {
        from: String,
        to: String,
    },
    /// Watch a directory (a file operation: `AsUser` applies): answered
    /// `Done` once watched, then `FsEvents` as things change, until the
    /// host closes the connection.
    WatchDir {
        path: String,
        recursive: bool,
    },
    /// What the workspace changed on its writable disk against its
    /// template (the overlay's upper layer); answered with `Changes`.
    /// Runs as the agent's own root, whatever `AsUser` said: it reads
    /// only names and sizes.
    Changes,
    /// Trust this CA (PEM text: one or more certificates and nothing else
    /// but whitespace, at most 16 KiB) in the workspace: the appliance's
    /// egress proxy terminates TLS for some hosts with certificates it
    /// signs. The host sends it after every `Ready`; the agent replaces
    /// what an earlier one installed. Answered `Done`. Privileged: never
    /// after `AsUser`.
    TrustCa {
        pem: String,
    },
    /// Sent after a restore from a snapshot: this workspace is no longer
    /// the one the snapshot was taken of, and must not share its secrets.
    /// The agent mixes `entropy` (from the host's RNG; 32 to 512 bytes)
    /// into the kernel's pool with credit and forces a reseed, so what
    /// `/dev/urandom` gives next differs between clones; sets the wall
    /// clock to `realtime_ns` (since the Unix epoch; the guest's clock
    /// stood still while it was a file); writes a fresh `/etc/machine-id`
    /// when `clone` (a clone of a template; a paused workspace resumed is
    /// still itself and keeps its own); and takes `hostname`. Answered
    /// `Done`. Privileged: never after `AsUser`.
    Renew {
        #[serde(with = "serde_bytes")]
        entropy: Vec<u8>,
        realtime_ns: u64,
        hostname: String,
        clone: bool,
    },
    /// Makes a template clone a workspace. Only an agent that booted with
    /// `paddock.provision=wait` takes it, and only once: such an agent
    /// serves from its initramfs, with no root disk joined, no network and
    /// the template's identity, so that one snapshot of it can start any
    /// number of workspaces. In this order, so nothing random is drawn
    /// from the state every clone shares: `entropy`, `realtime_ns` and
    /// `hostname` as in `Renew` (with a fresh machine-id); then the
    /// writable disk, once the guest sees it at `data_sectors` (512-byte
    /// sectors; the host swapped the snapshot's empty placeholder for the
    /// workspace's own disk and the device told the driver its new size),
    /// formatted if blank and joined with the template into the root; then
    /// the NIC, when `net` is given. Answered `Done`. Privileged: never
    /// after `AsUser`.
    Provision {
        #[serde(with = "serde_bytes")]
        entropy: Vec<u8>,
        realtime_ns: u64,
        hostname: String,
        data_sectors: u64,
        net: Option<ProvisionNet>,
    },
}

/// The NIC of a provisioned workspace, as `paddock.net=` and the VMM's
/// `--net mac=` give it to a workspace that boots cold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionNet {
    pub address: [u8; 4],
    /// 1 to 30.
    pub prefix: u8,
    pub gateway: [u8; 4],
    /// A unicast, locally administered address.
    pub mac: [u8; 6],
}

/// Bounds of `HostMsg::Renew`'s entropy, in bytes.
pub const RENEW_ENTROPY_MIN: usize = 32;
pub const RENEW_ENTROPY_MAX: usize = 512;

impl Tagged for HostMsg {
    const VARIANTS: u64 = 28;
}

/// How a path differs from the template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Not in the template.
    Added,
    /// In the template, and written over (contents or metadata).
    Modified,
    /// In the template, and removed.
    Deleted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
    pub file_kind: FileKind,
    /// Its size now (0 for a deleted one).
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The frame could not be decoded.
    Malformed,
    /// The frame is larger than `MAX_FRAME`.
    FrameTooLarge,
    /// A message tag this agent does not know.
    UnknownOperation,
    /// The host speaks a protocol version the agent does not.
    UnsupportedVersion,
    /// A message that makes no sense at this point of the conversation.
    UnexpectedMessage,
    /// A request with invalid fields (empty argv, relative path, ...).
    InvalidRequest,
    NotFound,
    PermissionDenied,
    AlreadyExists,
    /// The command could not be started.
    SpawnFailed,
    Io,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The agent killed it because its timeout passed.
    pub timed_out: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits (mode & 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_s: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: String,
    pub stat: FileStat,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthInfo {
    pub agent_version: String,
    pub uptime_ms: u64,
    pub running_execs: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    pub agent_version: String,
    pub protocol: u32,
    /// Guest uptime when the agent became ready.
    pub uptime_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMsg {
    HelloOk {
        protocol: u32,
        agent_version: String,
    },
    Error(ErrorReply),
    Started {
        pid: u32,
    },
    Stdout(#[serde(with = "serde_bytes")] Vec<u8>),
    Stderr(#[serde(with = "serde_bytes")] Vec<u8>),
    Exited(ExitStatus),
    FileStart {
        size: u64,
        mode: u32,
    },
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    DataEnd,
    Done,
    Stat(FileStat),
    DirEntries(Vec<DirEntry>),
    Health(HealthInfo),
    Ready(ReadyInfo),
    Procs(Vec<ProcInfo>),
    FsEvents(Vec<FsEvent>),
    /// The answer to `Changes`, in path order; `truncated` when there
    /// were more than one answer holds.
    Changes {
        changes: Vec<Change>,
        truncated: bool,
    },
}

impl Tagged for AgentMsg {
    const VARIANTS: u64 = 17;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The VARIANTS constants must follow the enums; the last variant's tag
    /// is VARIANTS - 1 and encodes as that single byte.
    #[test]
    fn variant_counts_match() {
        let last_host = postcard::to_stdvec(&HostMsg::Provision {
            entropy: Vec::new(),
            realtime_ns: 0,
            hostname: String::new(),
            data_sectors: 0,
            net: None,
        })
        .expect("enc");
        assert_eq!(u64::from(last_host[0]), HostMsg::VARIANTS - 1);
        let last_agent = postcard::to_stdvec(&AgentMsg::Changes {
            changes: Vec::new(),
            truncated: false,
        })
        .expect("enc");
        assert_eq!(u64::from(last_agent[0]), AgentMsg::VARIANTS - 1);
    }
}
