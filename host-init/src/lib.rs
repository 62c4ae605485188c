//! paddock-init as a library: the pieces of PID 1, so the binary stays a
//! thin entry point and tests can drive the parts that make sense alone
//! (configuration, formats, the API process's supervisor). The API
//! process itself is the `paddock-api-server` crate.

pub mod api;
pub mod assess;
/// The key store lives in a crate of its own (`paddock-keys`); PID 1 and
/// its tests name it as before.
pub use paddock_keys as keys;
/// Files that hold secrets: 0600 from the start, replaced whole.
pub use paddock_keys::private_file as fsutil;
pub mod bootstrap;
pub mod children;
pub mod config;
/// The control plane is a crate of its own (`paddock-control`): it
/// decides, PID 1 boots and supervises; its paths stay as before.
pub use paddock_control as control;
pub mod demo;
pub mod entropy;
pub mod fatal;
pub mod host;
pub mod log;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod net_services;
pub mod notify;
pub mod pid1;
pub mod power;
/// /proc as the control plane reads it; PID 1 reports who is left at
/// shutdown with it.
pub use paddock_control::procfs;
pub mod shutdown;
pub mod slot;
pub mod status;
pub mod storage;
pub mod update;
/// The workspaces' VMMs that run, kept by the control plane; PID 1 counts
/// them for its screen and stops them all at shutdown.
pub use paddock_control::workspaces;
/// The API's TLS identity is the key store's (`paddock-keys`).
pub use paddock_keys::tls;
