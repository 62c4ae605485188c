//! What travels on the channel: the start-up exchange, the calls the API
//! process makes and the verdicts PID 1 answers with.

use serde::{Deserialize, Serialize};

/// A short digest of a whole argv: which command, without keeping it
/// (an argv may carry what its user would rather not have kept).
pub fn command_digest(argv: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for a in argv {
        h.update((a.len() as u64).to_le_bytes());
        h.update(a.as_bytes());
    }
    h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// host-init → API, once at start.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Init {
    pub cert_pem: String,
    pub key_pem: String,
    pub port: u16,
    /// The API without TLS on one interface, when configured.
    #[serde(default)]
    pub plain_http: Option<PlainHttp>,
    /// The box's DNS domain (config `api.domain`), for E2B's host names:
    /// `api.{domain}` and `49983-{id}.{domain}`.
    #[serde(default)]
    pub domain: Option<String>,
}

/// Where the API also listens without TLS: a port on one interface
/// (SO_BINDTODEVICE), so it is reachable from that network only.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PlainHttp {
    pub interface: String,
    pub port: u16,
}

/// API → host-init, once bound (or failed).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Started {
    pub port: Option<u16>,
    pub error: Option<String>,
    /// The plain-HTTP port, when one is configured and bound.
    #[serde(default)]
    pub plain_port: Option<u16>,
    /// Why the configured plain-HTTP listener is not serving (the TLS
    /// port serves regardless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_error: Option<String>,
}

/// API → host-init on the control socket: "here is a new exchange" (the
/// socket is attached).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open;

/// API → host-init, the one request of an exchange.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    /// One API call, with the caller's bearer secret ("" when none).
    Call {
        auth: String,
        call: Call,
    },
}

/// The API calls host-init decides; bodies travel as parsed JSON and are
/// validated on this side.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "call", rename_all = "snake_case", deny_unknown_fields)]
pub enum Call {
    CreateWorkspace {
        spec: serde_json::Value,
    },
    ListWorkspaces {
        labels: Vec<(String, String)>,
    },
    GetWorkspace {
        id: String,
    },
    DeleteWorkspace {
        id: String,
    },
    StopWorkspace {
        id: String,
    },
    /// Writes a running workspace's VM to its encrypted store and ends it
    /// (delete scope); deleted `ttl_s` (or a day) later unless resumed.
    PauseWorkspace {
        id: String,
        #[serde(default)]
        ttl_s: Option<u64>,
    },
    /// Starts a paused workspace again where it was (create scope).
    ResumeWorkspace {
        id: String,
    },
    /// Ends a running workspace `ttl_s` seconds from now, sooner or later
    /// than it would have (create scope; past the token's `max_ttl_s` its
    /// policy decides, `reason` is for the approver).
    SetTtl {
        id: String,
        ttl_s: u64,
        #[serde(default)]
        reason: Option<String>,
    },
    /// New disk rate limits for a running workspace (admin).
    SetLimits {
        id: String,
        request: serde_json::Value,
    },
    /// A workspace port reachable from the uplink (admin).
    PublishPort {
        id: String,
        request: serde_json::Value,
    },
    UnpublishPort {
        id: String,
        port: String,
    },
    /// Directed private links between workspaces (admin).
    ListLinks,
    CreateLink {
        request: serde_json::Value,
    },
    DeleteLink {
        id: String,
    },
    /// A new egress allowlist, in force at once (admin).
    SetEgress {
        id: String,
        request: serde_json::Value,
    },
    /// Freeze, revoke its tokens, take a forensic snapshot (admin).
    QuarantineWorkspace {
        id: String,
    },
    /// One file of a workspace's forensic snapshot, passed back as a
    /// descriptor (admin).
    ForensicFile {
        id: String,
        name: String,
    },
    DeleteForensics {
        id: String,
    },
    /// A new secret for a token (admin, or the token that minted it).
    RotateToken {
        id: String,
    },
    /// A new TLS identity for the API (admin).
    RotateTls,
    /// How the disk keys are held (admin).
    KeyStatus,
    /// The box: version, certificate, keys, data partition, host (admin).
    SystemStatus,
    /// The host's samples from `since` on (admin).
    HostMetrics {
        since: u64,
    },
    /// A file for an update bundle of `bytes` (admin): answered with its
    /// descriptor, which the API process fills with the request's body.
    StageUpdate {
        bytes: u64,
    },
    /// The staged bundle verified and, if good, written to the other slot
    /// (admin); `reboot_at`: Unix seconds (0: now), None: the next reboot.
    ApplyUpdate {
        reboot_at: Option<u64>,
        force: bool,
    },
    /// The staged bundle dropped: its upload did not arrive whole.
    AbandonUpdate,
    /// A backup of the state database and the audit log (admin):
    /// answered with its size and a descriptor of the encrypted file.
    MakeBackup,
    /// A file for a backup of `bytes` to restore (admin): answered with
    /// its descriptor, which the API process fills with the request's body,
    /// and `staged`, the upload's number the next call names.
    StageRestore {
        bytes: u64,
    },
    /// The staged backup `staged` opened (by this box's TPM, or with
    /// `recovery_secret`), verified whole, and put in place of this box's
    /// tokens, workspace records, approvals and audit history (admin).
    ApplyRestore {
        staged: u64,
        recovery_secret: Option<String>,
    },
    /// The staged backup `staged` dropped: its upload did not arrive whole.
    AbandonRestore {
        staged: u64,
    },
    /// Re-seal the disk keys to this boot state with the recovery secret
    /// (admin).
    RecoverKeys {
        secret: String,
    },
    /// Test images only: which host processes hold `needle` in their argv
    /// or environment (admin).
    ScanProcesses {
        needle: String,
    },
    /// Test images only: open a workspace's disk with the key the key store
    /// holds for it, read-only, and say whether an ext4 filesystem is there
    /// (admin). Proves from outside which disks the box can still read.
    ProbeDisk {
        id: String,
    },
    /// Test images only: the end of a workspace's serial console (the
    /// demo's too), to see from outside why a guest did not come up (admin).
    ReadConsole {
        name: String,
    },
    /// Test images only: write back and drop the host's page cache, so a
    /// benchmark's next read reaches the disk (and dm-crypt) (admin).
    DropCaches,
    /// Test images only: SIGKILL the network services process (resolver,
    /// egress proxy), to see that it comes back with its policy (admin).
    KillNetServices,
    /// A workspace's brokered secrets (no values).
    ListSecrets {
        id: String,
    },
    /// Adds or rotates one (create scope).
    SetSecret {
        id: String,
        name: String,
        request: serde_json::Value,
    },
    RemoveSecret {
        id: String,
        name: String,
    },
    /// A connection to the workspace's agent, passed back as a descriptor.
    OpenAgent {
        id: String,
        purpose: Purpose,
    },
    ExecEnded {
        id: String,
        argv0: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
        duration_ms: u64,
        /// Which command it was (`command_digest` of its whole argv), so
        /// the same command failing again is told from others.
        #[serde(default)]
        command: String,
    },
    CreateToken {
        request: serde_json::Value,
    },
    ListTokens,
    RevokeToken {
        id: String,
    },
    /// Prometheus text for the workspaces the token may see, and the host.
    Metrics,
    /// A workspace's samples (control::samples) from `since` on.
    WorkspaceMetrics {
        id: String,
        since: u64,
    },
    /// Approvals, `state` one of pending, approved, denied, expired (every
    /// one for an admin, its own asks for any other token).
    ListApprovals {
        state: Option<String>,
    },
    /// One approval (an admin's, or the asker's).
    GetApproval {
        id: String,
    },
    /// Approve (for a while) or deny a pending approval (admin).
    DecideApproval {
        id: String,
        request: serde_json::Value,
    },
    /// A workspace's report (all but its changed files, which the API
    /// process asks its agent for).
    WorkspaceReport {
        id: String,
    },
    /// Where a workspace connected (control::netlog): records ending at or
    /// after `since`, of one decision if given, the newest `limit`.
    NetworkLog {
        id: String,
        since: u64,
        decision: Option<String>,
        limit: usize,
    },
    /// Who the bearer is, before any body is read: `{"token", "admin",
    /// "tenant"}` or the refusal.
    WhoAmI,
    /// The web console signed in (`opened`) or out with this bearer:
    /// recorded in the audit log, answered as `WhoAmI`.
    ConsoleSession {
        opened: bool,
    },
    ReadAudit {
        filters: Vec<(String, String)>,
        limit: usize,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Purpose {
    /// A command: `root` when it runs as the guest's root, `terminal` when
    /// on a pseudo-terminal (both audited with `exec_started`).
    Exec {
        argv0: String,
        #[serde(default)]
        root: bool,
        #[serde(default)]
        terminal: bool,
    },
    /// `root`: as the guest's root rather than its `agent` user.
    ReadFile {
        path: String,
        #[serde(default)]
        root: bool,
    },
    WriteFile {
        path: String,
        #[serde(default)]
        root: bool,
    },
    /// A file's or directory's metadata (stat, listing): not audited.
    Inspect {
        path: String,
        #[serde(default)]
        root: bool,
    },
    /// A change to the tree that writes no contents: `op` is "mkdir",
    /// "remove" or "move" (to `to`).
    Modify {
        op: String,
        path: String,
        #[serde(default)]
        to: Option<String>,
        #[serde(default)]
        root: bool,
    },
    /// An operation on a process started to outlive its connection (exec
    /// scope, as starting one), named by pid or tag. All but listing and
    /// resizing are audited.
    Process {
        action: ProcessAction,
        #[serde(default)]
        pid: Option<u32>,
        #[serde(default)]
        tag: Option<String>,
    },
    /// The names and sizes of what the workspace changed against its
    /// template, for its report (files scope; not audited).
    Changes,
}

/// What a `Purpose::Process` does.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProcessAction {
    List,
    /// Input to its stdin or terminal (how many bytes; never what).
    Input {
        bytes: u64,
    },
    CloseInput,
    Signal {
        signal: i32,
    },
    Resize,
    /// Its output, from now on.
    Attach,
}

/// The control plane's refusal for a workspace a token may not see,
/// whether or not it exists (the two are not told apart); the API process
/// knows it by this text, for E2B's "no such sandbox".
pub const NO_SUCH_WORKSPACE: &str = "no such workspace for this token";

/// What became of a call, as the control plane says it: done, or why not.
/// The API process says it in HTTP (`paddock_api_server::http::status_of`); the control
/// plane knows nothing of HTTP.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Created,
    /// Recorded, not done: it waits for a person's approval.
    Accepted,
    /// The request itself is malformed.
    BadRequest,
    /// No token, or one that is invalid, expired or revoked.
    Unauthenticated,
    /// The token may not do this (or see what it names).
    Forbidden,
    NotFound,
    /// Not now: a quota, the box's capacity, or the thing's state.
    Conflict,
    TooLarge,
    /// Well-formed but out of range, unknown or missing fields.
    Invalid,
    TooMany,
    /// Something on the box failed; nothing the caller can fix.
    Failed,
    /// A part it needs is not ready (keys, firewall, an agent).
    Unavailable,
    NoSpace,
}

/// host-init → API, for a Call: the verdict and JSON body to answer
/// with; `fd` says a descriptor (a connection to a workspace's agent) is
/// attached to this message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CallReply {
    pub verdict: Verdict,
    pub body: serde_json::Value,
    pub fd: bool,
}

/// host-init → API.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatusReply {
    pub version: String,
    pub state: String,
    pub workspaces: u32,
    pub uptime_s: u64,
}
