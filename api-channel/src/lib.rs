//! Messages between the API process and host-init. One JSON object per
//! SOCK_SEQPACKET message, each capped, so a compromised API process can
//! neither make the privileged side allocate without bound nor confuse it
//! with a malformed message.
//!
//! The control socket (fd 3 in the API process) carries the start-up
//! exchange (`Init`, `Started`) and then only `Open` messages, each with a
//! fresh socket attached: one exchange, one request and its reply. So calls
//! run side by side: a workspace being created does not hold up a health
//! check, an exec, or another create.
//!
//! Both sides build on this crate: the API process (`paddock-api-server`)
//! and PID 1 (`paddock-init`, which also speaks the transport to the
//! network services process).

mod messages;
mod transport;

pub use messages::{
    command_digest, Call, CallReply, Init, Open, PlainHttp, ProcessAction, Purpose, Request,
    Started, StatusReply, Verdict, NO_SUCH_WORKSPACE,
};
pub use transport::{ChannelError, Endpoint};

/// Longest message either side accepts.
pub const MAX_LINE: usize = 64 * 1024;
/// Longest answer host-init sends back on an exchange (a page of audit
/// events, an hour of samples, a network record): requests stay small,
/// answers may not.
pub const MAX_REPLY: usize = 4 << 20;
/// The descriptor the API process finds its control socket on.
pub const CHANNEL_FD: i32 = 3;
