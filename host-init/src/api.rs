//! The network-facing API. It runs as its own process (`paddock-init
//! api-server`) under its own uid with no capabilities, no_new_privs and a
//! seccomp allow-list; it reaches the privileged part of host-init only
//! through one local channel (a socketpair at fd 3) carrying small JSON
//! messages, which the privileged side treats as untrusted input.

pub mod admission;
pub mod bridge;
/// The channel's messages and transport live in a crate of their own
/// (`paddock-api-channel`), shared with the API process; PID 1 names it
/// as before.
pub use paddock_api_channel as channel;
pub mod conn;
pub mod dirs;
pub mod e2b;
pub mod envd;
pub mod envd_fs;
pub mod envd_process;
pub mod envd_watch;
pub mod exec;
pub mod http;
pub mod multipart;
pub mod plain;
pub mod processes;
pub mod report;
pub mod routes;
pub mod sandbox;
pub mod server;
pub mod supervisor;
pub mod transfer;
pub mod watch_stream;
