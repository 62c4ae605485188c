//! The workspaces' resolver answering a query a guest wrote. No upstream
//! is configured, so allowed names fail over to SERVFAIL without the
//! network; what is exercised is parsing, the allowlist decision and the
//! reply's encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_net_services::dns::answer;
use paddock_net::policy::{CheckEgress as _, EgressRequest};

fuzz_target!(|input: &[u8]| {
    let egress = EgressRequest {
        domains: vec!["allowed.test".into(), "*.pkg.test".into()],
        cidrs: vec![],
    }
    .check()
    .expect("a valid policy");
    if let Some(reply) = answer(input, "ws_fuzz", &egress) {
        assert!(reply.len() >= 12, "a reply has at least a header");
        assert_eq!(reply[..2], input[..2], "the reply carries the query's id");
    }
});
