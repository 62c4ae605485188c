//! The Connect protocol as E2B's envd speaks it, with JSON messages (what
//! its SDK sends): framing, errors, request bodies, and envd's paths and
//! users.
//!
//! Connect frames each message as a flag byte, a big-endian u32 length and
//! the JSON; a server stream ends with a frame flagged 0x02 holding `{}` or
//! `{"error": {"code", "message"}}`.

use crate::bridge::Exchange;
use crate::http;
use serde_json::{json, Value};

pub const CONTENT_TYPE: &str = "application/connect+json";
/// A frame's flags: the stream's last frame (its status).
pub const END_STREAM: u8 = 0x02;
const COMPRESSED: u8 = 0x01;

/// One Connect frame.
pub fn frame(flags: u8, message: &Value) -> Vec<u8> {
    let json = message.to_string().into_bytes();
    let mut out = Vec::with_capacity(json.len() + 5);
    out.push(flags);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out
}

/// The one message of a request stream: its JSON.
pub fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let Some((head, rest)) = body.split_first_chunk::<5>() else {
        return Err("a Connect message starts with 5 bytes of framing".into());
    };
    if head[0] & COMPRESSED != 0 {
        return Err("compressed Connect messages are not accepted".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != len {
        return Err(format!(
            "the Connect frame says {len} bytes and {} came",
            rest.len()
        ));
    }
    Ok(rest)
}

/// Connect's error code for a refusal's HTTP status.
pub fn code_of(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "invalid_argument",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "not_found",
        409 => "failed_precondition",
        504 => "deadline_exceeded",
        429 => "resource_exhausted",
        501 => "unimplemented",
        503 => "unavailable",
        _ => "internal",
    }
}

/// A unary call's refusal in Connect's shape: the status, and the code
/// and message in the body.
pub fn rpc_error(status: u16, message: impl Into<String>) -> (u16, Value) {
    (
        status,
        json!({"code": code_of(status), "message": message.into()}),
    )
}

/// What the agent said, as a Connect refusal.
pub fn agent_error(e: paddock_agent_client::ClientError) -> (u16, Value) {
    use paddock_agent_client::ClientError as C;
    use paddock_proto::ErrorKind as K;
    let status = match &e {
        C::Agent(r) => match r.kind {
            K::NotFound => 404,
            K::PermissionDenied => 403,
            K::AlreadyExists => {
                let message = match e {
                    C::Agent(r) => r.message,
                    _ => String::new(),
                };
                return (409, json!({"code": "already_exists", "message": message}));
            }
            K::InvalidRequest | K::SpawnFailed => 400,
            _ => 500,
        },
        C::Timeout(_) => 504,
        _ => 503,
    };
    let message = match e {
        C::Agent(r) => r.message,
        other => other.to_string(),
    };
    rpc_error(status, message)
}

/// A call's whole body, under the exec's caps on large bodies: the bytes
/// and the permit, held while the caller parses them.
type Permit = Option<crate::admission::Permit<'static>>;

fn read_request(req: &http::Request, io: &mut Exchange) -> Result<(Vec<u8>, Permit), (u16, Value)> {
    let Some(large) = crate::exec::large_body_permit(req) else {
        return Err(rpc_error(
            503,
            "too many large requests are being read at once; retry shortly",
        ));
    };
    let raw = http::read_body(req, &mut io.body, crate::exec::MAX_EXEC_JSON).map_err(|e| {
        let (status, body) = crate::handling::body_refusal(e, "request");
        rpc_error(status, body["error"].as_str().unwrap_or("bad body"))
    })?;
    Ok((raw, large))
}

/// A unary call's JSON body (Connect's `application/json`).
pub fn unary_body(req: &http::Request, io: &mut Exchange) -> Result<Value, (u16, Value)> {
    let json = req.content_type.as_deref().is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim() == "application/json")
    });
    if !json {
        return Err(rpc_error(
            415,
            "only Connect's JSON encoding (application/json) is served",
        ));
    }
    let (raw, _large) = read_request(req, io)?;
    crate::handling::parse_json(&raw)
        .map_err(|(status, body)| rpc_error(status, body["error"].as_str().unwrap_or("bad JSON")))
}

/// The one message of a server-streaming call's request.
pub fn stream_request(req: &http::Request, io: &mut Exchange) -> Result<Vec<u8>, (u16, Value)> {
    if req.content_type.as_deref() != Some(CONTENT_TYPE) {
        return Err(rpc_error(
            415,
            "only Connect's JSON encoding (application/connect+json) is served",
        ));
    }
    let (raw, _large) = read_request(req, io)?;
    unframe(&raw)
        .map(<[u8]>::to_vec)
        .map_err(|e| rpc_error(400, e))
}

/// The next message of a client stream, as it comes; None at its end.
pub fn next_message(body: &mut impl std::io::Read, max: usize) -> Result<Option<Vec<u8>>, String> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match body.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("the stream ended inside a frame's header".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the stream: {e}")),
        }
    }
    if head[0] & COMPRESSED != 0 {
        return Err("compressed Connect messages are not accepted".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > max {
        return Err(format!(
            "a message of {len} bytes: at most {max} (send input in smaller pieces)"
        ));
    }
    let mut message = vec![0u8; len];
    body.read_exact(&mut message)
        .map_err(|e| format!("the stream ended inside a message: {e}"))?;
    if head[0] & END_STREAM != 0 {
        return Ok(None);
    }
    Ok(Some(message))
}

/// A process's end as envd says it.
pub fn end_event(st: &paddock_proto::ExitStatus) -> Value {
    let (code, status) = match (st.code, st.signal) {
        (Some(c), _) => (c, format!("exit status {c}")),
        (None, Some(s)) => (-1, format!("signal: {}", signal_name(s))),
        (None, None) => (-1, "ended".to_string()),
    };
    let status = if st.timed_out {
        format!("{status} (timed out)")
    } else {
        status
    };
    json!({"exitCode": code, "exited": st.code.is_some(), "status": status})
}

fn signal_name(s: i32) -> String {
    match s {
        9 => "killed".into(),
        15 => "terminated".into(),
        2 => "interrupt".into(),
        1 => "hangup".into(),
        other => format!("signal {other}"),
    }
}

/// A stream that ends at once with an error.
pub fn refuse(io: &mut Exchange, status: u16, message: &str) {
    let end = frame(
        END_STREAM,
        &json!({"error": {"code": code_of(status), "message": message}}),
    );
    if http::start_stream(&mut io.out, CONTENT_TYPE).is_ok() && io.out.send(&end).is_ok() {
        io.out.finish();
    }
}

/// An envd path made absolute: relative ones (and `~`) are in the user's
/// home.
pub fn absolute(path: &str, root: bool) -> Result<String, String> {
    if path.is_empty() || path.len() > 4096 || path.contains('\0') {
        return Err("path: 1 to 4096 bytes, no NUL".into());
    }
    let home = if root { "/root" } else { "/home/agent" };
    Ok(if path.starts_with('/') {
        path.to_string()
    } else if path == "~" {
        home.to_string()
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("{home}/{rest}")
    } else {
        format!("{home}/{path}")
    })
}

/// Who an envd request acts as: root when it names root, else agent.
pub fn envd_root(req: &http::Request) -> bool {
    crate::handling::query(req, "username").or(req.basic_user.as_deref()) == Some("root")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let f = frame(0, &json!({"a": 1}));
        assert_eq!(unframe(&f), Ok(&br#"{"a":1}"#[..]));
        assert!(unframe(&f[..4]).is_err(), "short");
        assert!(unframe(&f[..f.len() - 1]).is_err(), "cut");
        let mut z = f.clone();
        z[0] = COMPRESSED;
        assert!(unframe(&z).is_err(), "compressed");
        let mut long = f;
        long.push(b' ');
        assert!(unframe(&long).is_err(), "trailing bytes");
    }
}
