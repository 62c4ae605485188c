//! The bodies of Paddock's HTTP API (`/v1`), as types: what a client
//! sends, what the server answers, and its errors. The server
//! (paddock-init) builds its answers from these, the CLI and the tests
//! read them back with the same types, so a field renamed on one side
//! fails to compile on the other. `docs/openapi.yaml` documents the same
//! shapes; its conformance test (host-init/tests/openapi.rs) checks the
//! server's answers against the document, and `tests::` below check the
//! types against the document's field lists.
//!
//! Plain serde structs only: no I/O, no validation beyond the shape
//! (limits and policy are the control plane's job).

pub mod admin;
pub mod approval;
pub mod error;
pub mod exec;
pub mod files;
pub mod metrics;
pub mod network;
pub mod process;
pub mod report;
pub mod secret;
pub mod signals;
pub mod system;
pub mod token;
pub mod workspace;

pub use admin::{
    AuditEvent, AuditEvents, ForensicFile, ForensicFiles, ForensicManifest, KeyState, KeyStatus,
    Quarantined, RecoverRequest, Revoked, Session, TlsRotated, TokenRotated, WhoAmI,
};
pub use approval::{Approval, ApprovalAction, ApprovalDecision, ApprovalList, ApprovalState};
pub use error::ErrorBody;
pub use exec::{ExecEvent, ExecRequest};
pub use files::{DirCreated, DirListing, FileEntry, FileKind};
pub use metrics::{WorkspaceMetrics, WorkspaceSample};
pub use network::{
    Health, Link, LinkList, LinkRequest, NetworkLog, NetworkRecord, PortPublished, PublishRequest,
};
pub use process::{ProcessInfo, ProcessList, ProcessRequest, PtySize, SignalRequest};
pub use report::{
    CommandRun, Destination, FileChange, FileChanges, FiredSignal, NetworkSummary, WorkspaceReport,
};
pub use secret::{Secret, SecretList, SecretPlace, SecretRemoved, SecretSpec};
pub use signals::{SignalAction, SignalRule, SignalRules};
pub use system::{
    DiskUse, HostMetrics, HostSample, RestoreReport, SlotInfo, SlotState, SystemStatus,
    UpdateState, UpdateStatus,
};
pub use token::{
    ActionPolicy, ActionRule, MintRequest, MintedToken, Quotas, Scope, SecretFormat, TokenList,
    TokenView,
};
pub use workspace::{
    Deleted, Egress, PauseRequest, Published, TtlRequest, Workspace, WorkspaceLimits,
    WorkspaceList, WorkspaceSpec, WorkspaceState,
};
