//! The egress proxy's check of every request on a plain-HTTP connection:
//! bytes the guest chose, fed whole and split at a point the input picks.
//! Whatever the split, the same bytes are forwarded and the same refusal
//! is reached: a parser that decided differently by read boundaries could
//! be steered into forwarding a request it would refuse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_net_services::http_stream::{RequestStream, MAX_HEAD};

/// Forwarded bytes, and whether the stream was refused.
fn run(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut s = RequestStream::new("allowed.test");
    let mut pending = Vec::new();
    let mut forwarded = Vec::new();
    for c in chunks {
        pending.extend_from_slice(c);
        loop {
            match s.check(&pending) {
                Ok(0) => break,
                Ok(n) => {
                    assert!(n <= pending.len());
                    forwarded.extend(pending.drain(..n));
                }
                Err(_) => return (forwarded, true),
            }
        }
        assert!(pending.len() <= MAX_HEAD + c.len());
    }
    (forwarded, false)
}

fuzz_target!(|input: &[u8]| {
    let Some((&split, input)) = input.split_first() else {
        return;
    };
    let input = &input[..input.len().min(4 * MAX_HEAD)];
    let whole = run(&[input]);
    let cut = usize::from(split) * input.len() / 256;
    let (a, b) = input.split_at(cut);
    let split = run(&[a, b]);
    if whole.1 {
        // A refusal may come before or after more was buffered, never
        // with different bytes forwarded.
        assert_eq!(whole.0, split.0);
        assert!(split.1);
    } else if !split.1 {
        assert_eq!(whole.0, split.0);
    } else {
        panic!("refused only when split at {cut}");
    }
});
