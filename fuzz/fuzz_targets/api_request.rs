//! The API's request path up to the control plane: what the server takes
//! from a request head (hyper has parsed the wire: method, target and
//! header values reach us as bytes), the body under its cap, and the JSON
//! bodies the control plane decodes and validates (workspace specs, token
//! requests).
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_api_server::http::{read_body, Request};
use paddock_control::tokens::MintRequest;
use paddock_control::workspace::{SpecProblems as _, WorkspaceSpec};

/// Splits the input as a head would arrive: "METHOD TARGET" (an
/// HTTP/1.1 request line) first, then "name: value" lines up to an empty
/// one, then the body.
fn head(input: &[u8]) -> Option<(&str, &str, Vec<(&str, &[u8])>, &[u8])> {
    let (end, gap) = match input.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => (end, 4),
        None => (input.windows(2).position(|w| w == b"\n\n")?, 2),
    };
    let (head, body) = (&input[..end], &input[end + gap..]);
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = std::str::from_utf8(lines.next()?).ok()?;
    let mut words = first.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    let mut headers = Vec::new();
    for line in lines {
        let colon = line.iter().position(|b| *b == b':')?;
        let name = std::str::from_utf8(&line[..colon]).ok()?;
        headers.push((name, &line[colon + 1..]));
    }
    Some((method, target, headers, body))
}

fuzz_target!(|input: &[u8]| {
    if let Some((method, target, headers, body)) = head(input) {
        let has_body = !body.is_empty();
        if let Ok(req) = Request::from_head(method, target, headers.into_iter(), has_body) {
            if let Ok(body) = read_body(&req, &mut &body[..], 1 << 16) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if let Ok(spec) = serde_json::from_value::<WorkspaceSpec>(v.clone()) {
                        let _ = spec.problems();
                    }
                    let _ = serde_json::from_value::<MintRequest>(v);
                }
            }
        }
    }
    // Bodies alone too, so the fuzzer need not find a request head first.
    if let Ok(spec) = serde_json::from_slice::<WorkspaceSpec>(input) {
        let _ = spec.problems();
    }
    let _ = serde_json::from_slice::<MintRequest>(input);
});
