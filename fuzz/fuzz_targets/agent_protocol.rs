//! The agent protocol's decoder, both ways: what a hostile guest's agent
//! sends the host, and what reaches the agent (frames as read off vsock).
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_proto::frame::read_frame;
use paddock_proto::messages::{AgentMsg, HostMsg};

fuzz_target!(|input: &[u8]| {
    // A stream of frames: read until the first error, as a connection does.
    let mut r = std::io::Cursor::new(input);
    for _ in 0..64 {
        if read_frame::<AgentMsg, _>(&mut r).is_err() {
            break;
        }
    }
    let mut r = std::io::Cursor::new(input);
    for _ in 0..64 {
        if read_frame::<HostMsg, _>(&mut r).is_err() {
            break;
        }
    }
});
