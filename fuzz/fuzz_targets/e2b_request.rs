//! What an E2B client sends that Paddock parses itself: a multipart form's
//! first part (envd's file upload), streamed through in reads of any size,
//! and a Connect frame (envd's process start).
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_api_server::connect::unframe;
use paddock_api_server::multipart::{boundary, FirstPart};
use paddock_api_server::transfer::Framed;
use std::io::Read;

/// The input as a body that ended whole, handed out `step` bytes a read.
struct Body<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len()).min(self.step);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl Framed for Body<'_> {
    fn complete(&self) -> bool {
        self.data.is_empty()
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, rest)) = input.split_first() else {
        return;
    };
    let step = usize::from(first % 32) + 1;
    let mut body = Body { data: rest, step };
    let mut part = FirstPart::new(&mut body, "fuzzboundary");
    let mut out = Vec::new();
    let done = part.read_to_end(&mut out).is_ok();
    // A part is never longer than its body, and complete only when read.
    assert!(out.len() <= rest.len());
    if part.complete() {
        assert!(done);
    }
    let _ = unframe(input);
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = boundary(text);
    }
});
