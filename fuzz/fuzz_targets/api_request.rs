//! The API's request path up to the control plane: the HTTP request head,
//! the body under its cap, and the JSON bodies the control plane decodes
//! and validates (workspace specs, token requests).
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_init::api::http::{read_body, read_request};
use paddock_init::control::tokens::MintRequest;
use paddock_init::control::workspace::{SpecProblems as _, WorkspaceSpec};

fuzz_target!(|input: &[u8]| {
    let mut r = std::io::Cursor::new(input);
    if let Ok(req) = read_request(&mut r) {
        if let Ok(body) = read_body(&req, &mut r, 1 << 16) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                if let Ok(spec) = serde_json::from_value::<WorkspaceSpec>(v.clone()) {
                    let _ = spec.problems();
                }
                let _ = serde_json::from_value::<MintRequest>(v);
            }
        }
    }
    // Bodies alone too, so the fuzzer need not find a request head first.
    if let Ok(spec) = serde_json::from_slice::<WorkspaceSpec>(input) {
        let _ = spec.problems();
    }
    let _ = serde_json::from_slice::<MintRequest>(input);
});
