//! `paddock-control`, the control plane PID 1 keeps: tokens, workspaces
//! and the audit log, in a crash-safe embedded database on the data
//! partition. The API process forwards every request here with the
//! caller's bearer secret; all authentication and authorization happen on
//! this side of the channel. It decides; PID 1 (`paddock-init`) boots the
//! box, supervises the confined processes and installs the few things
//! only it can do as hooks (`host`). It logs through the `log` facade.

pub mod access;
pub mod audit;
pub mod backup;
pub mod boot_watch;
pub mod cloning;
pub mod console;
pub mod egress_ca;
pub mod forensics;
pub mod host;
pub mod host_samples;
pub mod layout;
pub mod limits;
pub mod metrics;
pub mod netlog;
pub mod pausing;
pub mod process;
pub mod procfs;
pub mod run_error;
pub mod runner;
pub mod samples;
pub mod secrets;
pub mod service;
pub mod signals;
pub mod space;
pub mod store;
pub mod template_snapshots;
pub mod tokens;
pub mod view;
pub mod vmm_client;
pub mod workspace;
pub mod workspaces;

/// Whether this build carries the test suite's probes (feature
/// `test-probes`, `service/probes.rs`), which `paddock-init build-info`
/// reports so that no product image ships them.
pub const TEST_PROBES: bool = cfg!(feature = "test-probes");
