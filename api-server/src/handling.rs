//! The pieces every route handler uses: reading and parsing a request
//! body within the process's bounds, query parameters, the bodies of
//! refusals, and a connection to a workspace's agent.

use crate::admission::Permits;
use crate::bridge::Exchange;
use crate::http::{self, status_of};
use crate::shared::{call, Shared};
use paddock_api_channel::{Call, Purpose, Verdict, MAX_LINE};
use paddock_api_types::ErrorBody;
use serde_json::Value;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Largest JSON body of a route whose body travels to host-init: the
/// channel's message cap less room for the envelope (a bigger one could
/// never reach host-init anyway).
pub const MAX_FORWARDED_JSON: u64 = (MAX_LINE - 4096) as u64;
/// Most of a body nobody took that is read and dropped so the answer
/// reaches a client still sending (bigger: the connection just closes).
pub const MAX_DRAIN: u64 = 1 << 20;
/// Largest file upload or download through the API.
pub const MAX_FILE: u64 = 256 << 20;
/// Bodies parsed at once in the whole process. Parsed JSON takes many
/// times its size (an array of small numbers: 32 bytes a value, from 2
/// bytes of text), so this, not the number of requests, bounds that memory;
/// parsing is quick and CPU-bound, so waiting here costs little.
static PARSING: Permits = Permits::new(2);
/// How long a request waits for a parse permit before its 503.
const PARSE_WAIT: Duration = Duration::from_secs(5);

pub fn json_error(status: u16, msg: impl Into<String>) -> (u16, Value) {
    (status, serde_json::json!(ErrorBody::new(msg)))
}

/// The answer to a body that could not be read; `what` names it ("body",
/// "file") in the size refusal.
pub fn body_refusal(e: http::BodyError, what: &str) -> (u16, Value) {
    match e {
        http::BodyError::TooLarge(cap) => json_error(413, format!("{what} over {cap} bytes")),
        http::BodyError::Io(e) => json_error(400, format!("reading the body: {e}")),
    }
}

/// Asks host-init for a connection to the workspace's agent: its reply body
/// and the connection, or (when refused) the answer to give.
pub fn open_agent(
    shared: &Shared,
    bearer: &str,
    id: &str,
    purpose: Purpose,
) -> Result<(Value, UnixStream), (u16, Value)> {
    let (reply, stream) = call(
        shared,
        bearer,
        Call::OpenAgent {
            id: id.to_string(),
            purpose,
        },
    );
    match stream.filter(|_| reply.verdict == Verdict::Ok) {
        Some(s) => Ok((reply.body, s)),
        None => Err((status_of(reply.verdict), reply.body)),
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    req: &http::Request,
    io: &mut Exchange,
) -> Result<T, (u16, Value)> {
    let body = http::read_body(req, &mut io.body, MAX_FORWARDED_JSON)
        .map_err(|e| body_refusal(e, "body"))?;
    parse_json(&body)
}

/// As `read_json`, for a call whose body may be left out (None then).
pub(crate) fn read_optional_json<T: serde::de::DeserializeOwned>(
    req: &http::Request,
    io: &mut Exchange,
) -> Result<Option<T>, (u16, Value)> {
    let body = http::read_body(req, &mut io.body, MAX_FORWARDED_JSON)
        .map_err(|e| body_refusal(e, "body"))?;
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    parse_json(&body).map(Some)
}

/// Parses a request body (under a `PARSING` permit): 400 for bad JSON, 422
/// for JSON of the wrong shape.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, (u16, Value)> {
    if body.is_empty() {
        return Err(json_error(400, "a JSON body is required"));
    }
    let Some(_permit) = PARSING.take(PARSE_WAIT) else {
        return Err(json_error(
            503,
            "too many requests being parsed; retry shortly",
        ));
    };
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => json_error(422, format!("request body: {e}")),
        _ => json_error(400, format!("malformed JSON: {e}")),
    })
}

pub fn query<'a>(req: &'a http::Request, key: &str) -> Option<&'a str> {
    req.query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
