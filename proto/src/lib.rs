//! The protocol between the host and the guest agent (PID 1 of every
//! workspace), over virtio-vsock.
//!
//! - The agent listens on vsock port [`AGENT_PORT`]. Each host connection
//!   carries one operation: the host sends [`HostMsg::Hello`], the agent
//!   answers [`AgentMsg::HelloOk`] (or an error naming the version it
//!   speaks), then the host sends one request and the two sides stream the
//!   frames that operation defines. Concurrency is more connections.
//! - As soon as it can serve, the agent connects to the host (CID 2) on
//!   [`READY_PORT`] and sends [`AgentMsg::Ready`]: that moment is
//!   "workspace ready".
//! - Every frame is a little-endian u32 length followed by that many bytes
//!   of postcard-encoded message, at most [`MAX_FRAME`].

pub mod frame;
pub mod messages;
pub mod vmm_control;
pub mod vsock;

pub use frame::{read_frame, write_frame, FrameError};
pub use messages::*;

/// Bumped on any incompatible change to the messages.
pub const PROTOCOL_VERSION: u32 = 1;
/// Where the agent serves the host.
pub const AGENT_PORT: u32 = 1024;
/// Where the host listens for the agent's readiness report.
pub const READY_PORT: u32 = 1023;
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 1 << 20;
/// Largest data chunk put in one frame (stdio, file contents).
pub const CHUNK: usize = 64 * 1024;
/// Largest PEM text a [`HostMsg::TrustCa`] may carry: a CA and a few
/// intermediates fit many times over.
pub const MAX_CA_PEM: usize = 16 * 1024;
