//! The egress proxy's first look at a workspace's connection: a TLS
//! ClientHello's server name or an HTTP request's Host, from bytes the
//! guest chose, fed whole and in every split a client could send.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_net_services::sni::{peek, Peek, MAX_PEEK};

fuzz_target!(|input: &[u8]| {
    let input = &input[..input.len().min(MAX_PEEK + 64)];
    let whole = peek(input);
    if let Peek::Name(n) = &whole {
        assert!(!n.is_empty() && n.len() <= 253);
    }
    // A prefix never decides differently from the whole, except by
    // asking for more.
    let cut = input.len() / 2;
    match peek(&input[..cut]) {
        Peek::NeedMore => {}
        early => assert_eq!(early, whole, "decided on a prefix of {cut} bytes"),
    }
});
