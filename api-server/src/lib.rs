//! The network-facing API. It runs as its own process (`paddock-init
//! api-server`) under its own uid with no capabilities, no_new_privs and a
//! seccomp allow-list; it reaches the privileged part of host-init only
//! through one local channel (a socketpair at fd 3) carrying small JSON
//! messages, which the privileged side treats as untrusted input.
//!
//! A crate of its own so that it is only this: HTTP and TLS for clients,
//! calls to host-init. PID 1's side of the channel (starting this process,
//! serving its exchanges) stays in paddock-init (`api::supervisor`), and the
//! messages both speak are `paddock-api-channel`.

pub mod admission;
pub mod bridge;
pub mod conn;
pub mod connect;
pub mod console;
pub mod dirs;
pub mod dispatch;
pub mod e2b;
pub mod e2b_pause;
pub mod envd;
pub mod envd_fs;
pub mod envd_process;
pub mod envd_watch;
pub mod exec;
pub mod handling;
pub mod http;
pub mod multipart;
pub mod plain;
pub mod processes;
pub mod random;
pub mod report;
pub mod routes;
pub mod sandbox;
pub mod server;
pub mod sessions;
pub mod shared;
pub mod signin;
pub mod system_backup;
pub mod system_update;
pub mod transfer;
pub mod watch_stream;

/// Entry point of `paddock-init api-server`.
pub use server::main;
