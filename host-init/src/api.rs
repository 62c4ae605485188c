//! PID 1's side of the API process (`paddock-init api-server`, the
//! `paddock-api-server` crate): starting it, confined, and serving the
//! exchanges it opens over its channel, whose messages it treats as
//! untrusted input.

/// The channel's messages and transport live in a crate of their own
/// (`paddock-api-channel`), shared with the API process; PID 1 names it
/// as before.
pub use paddock_api_channel as channel;
pub mod supervisor;
