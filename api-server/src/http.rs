//! The request as the API's handlers see it (hyper parses the wire; this
//! keeps what routing and authentication need), bodies read under a cap,
//! and the answers they give: JSON, text, a 405, or a stream.

use crate::bridge::{Head, Responder};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use paddock_api_channel::Verdict;
use std::io::Read;

/// Longest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// The bearer secret, "" when absent or malformed.
    pub bearer: String,
    pub content_length: Option<u64>,
    /// A body without a length (HTTP/1.1 chunked, or HTTP/2 without
    /// content-length): its end is known only when it comes.
    pub chunked: bool,
    /// `Expect: 100-continue`: the client waits (briefly) for a go-ahead
    /// before sending its body.
    pub expect_continue: bool,
    /// Bytes of the head (request line and headers), as received.
    pub head_bytes: usize,
    /// Over HTTP/2 (set by `from_parts`).
    pub http2: bool,
    /// Which sandbox an envd request is for: E2B's `E2b-Sandbox-Id`, or
    /// else the host name it was sent to (`49983-{id}.{domain}`, E2B's
    /// envd host names).
    pub sandbox: Option<String>,
    /// The user an envd request names (`Authorization: Basic user:`).
    pub basic_user: Option<String>,
    /// Its Content-Type, as sent.
    pub content_type: Option<String>,
    /// Its Content-Encoding, as sent (bodies are taken only unencoded).
    pub content_encoding: Option<String>,
    /// Connect's `Connect-Timeout-Ms`: how long the client gives the call
    /// (envd applies it to the process a Start runs).
    pub connect_timeout_ms: Option<u64>,
    /// A web console session's cookie, if the request carries a well-formed
    /// one (crate::sessions).
    pub session_cookie: Option<String>,
    /// More than one session cookie, or one whose name only looks like it
    /// (planted by a page on another port of this host): refused.
    pub session_conflict: bool,
    /// `X-Paddock-CSRF`, as sent.
    pub csrf: Option<String>,
    /// `Sec-Fetch-Site`, as a browser sends it.
    pub fetch_site: Option<String>,
    /// Authenticated by its session cookie: `bearer` is the session's.
    pub via_session: bool,
    /// Came over TLS (set by the connection; false on the plain listener).
    pub tls: bool,
    /// `X-Paddock-Recovery-Secret`: a restore's way to open a backup the
    /// box's TPM cannot (POST /v1/system/restore reads it, nothing else).
    pub recovery_secret: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("request head over {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(String),
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .to_string()
}

/// The user of a Basic credential ("user:" with no password, as envd's
/// clients send it), if it decodes.
fn basic_user_of(b64: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let user = text.split(':').next()?.to_string();
    (!user.is_empty() && user.len() <= 64).then_some(user)
}

/// The sandbox of an envd host name, `49983-{id}.{domain}[:port]`
/// (49983 is envd's port in E2B's naming); None for any other host. The
/// id is checked where it is used, like the header's.
pub fn sandbox_of_host(host: &str) -> Option<String> {
    let (first, domain) = host.split_once('.')?;
    let id = first.strip_prefix("49983-")?;
    (!id.is_empty() && !domain.is_empty())
        .then(|| crate::routes::native_id(&id.to_ascii_lowercase()))
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

impl Request {
    /// The request from its head: method, target (path and query) and
    /// headers as they arrived. `has_body`: whether the protocol says a
    /// body follows (HTTP/2 says so per stream, without a length).
    pub fn from_head<'a>(
        method: &str,
        target: &str,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
        has_body: bool,
    ) -> Result<Request, HttpError> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut bearer = String::new();
        let mut content_length = None;
        let mut chunked = false;
        let mut expect_continue = false;
        let mut sandbox = None;
        let mut host_sandbox = None;
        let mut basic_user = None;
        let mut content_type = None;
        let mut content_encoding = None;
        let mut connect_timeout_ms = None;
        let mut cookies = crate::sessions::CookieScan::default();
        let mut csrf = None;
        let mut fetch_site = None;
        let mut recovery_secret = None;
        // E2B's SDK sends its key as X-API-Key, and envd requests as
        // X-Access-Token: the same bearer tokens, where no Authorization
        // header names one.
        let mut other_key = String::new();
        let mut head_bytes = method.len() + target.len() + 12;
        for (name, value) in headers {
            head_bytes += name.len() + value.len() + 4;
            // HTTP's optional whitespace is space and tab only: a Unicode
            // trim would turn a look-alike cookie name into the real one.
            let value = std::str::from_utf8(value)
                .unwrap_or("")
                .trim_matches([' ', '\t']);
            if name.eq_ignore_ascii_case("authorization") {
                if let Some(t) = value.strip_prefix("Bearer ") {
                    bearer = t.trim().to_string();
                } else if let Some(b) = value.strip_prefix("Basic ") {
                    basic_user = basic_user_of(b.trim());
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| HttpError::Malformed(format!("Content-Length {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue = value.eq_ignore_ascii_case("100-continue");
            } else if name.eq_ignore_ascii_case("x-api-key")
                || name.eq_ignore_ascii_case("x-access-token")
            {
                other_key = value.to_string();
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("content-encoding") {
                content_encoding = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("connect-timeout-ms") {
                // Connect allows at most 10 digits; anything else is no
                // deadline rather than a refusal, as Connect servers do.
                connect_timeout_ms = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|_| value.trim().len() <= 10);
            } else if name.eq_ignore_ascii_case("e2b-sandbox-id") {
                sandbox = Some(crate::routes::native_id(value));
            } else if name.eq_ignore_ascii_case("host") {
                host_sandbox = sandbox_of_host(value);
            } else if name.eq_ignore_ascii_case("cookie") {
                // HTTP/2 may split cookies over several headers.
                cookies.scan(value);
            } else if name.eq_ignore_ascii_case(crate::sessions::CSRF_HEADER) {
                csrf = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("sec-fetch-site") {
                fetch_site = Some(value.to_ascii_lowercase());
            } else if name.eq_ignore_ascii_case("x-paddock-recovery-secret") {
                recovery_secret = Some(value.to_string());
            }
        }
        // The header wins over the host name, wherever each came.
        let sandbox = sandbox.or(host_sandbox);
        if head_bytes > MAX_HEAD {
            return Err(HttpError::TooLarge);
        }
        if content_length.is_none() && has_body {
            chunked = true;
        }
        if bearer.is_empty() {
            bearer = other_key;
        }
        Ok(Request {
            method: method.to_string(),
            path: path.to_string(),
            query: parse_query(query),
            bearer,
            content_length,
            chunked,
            expect_continue,
            head_bytes,
            http2: false,
            sandbox,
            basic_user,
            connect_timeout_ms,
            content_type,
            content_encoding,
            session_cookie: cookies.value(),
            session_conflict: cookies.conflict(),
            csrf,
            fetch_site,
            via_session: false,
            tls: false,
            recovery_secret,
        })
    }

    /// The request from hyper's parsed head.
    pub fn from_parts(parts: &http::request::Parts, has_body: bool) -> Result<Request, HttpError> {
        let target = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()));
        let mut req = Request::from_head(parts.method.as_str(), target, headers, has_body)?;
        req.http2 = parts.version == http::Version::HTTP_2;
        if req.sandbox.is_none() {
            // HTTP/2 names the host in :authority, not in a Host header.
            req.sandbox = parts
                .uri
                .authority()
                .and_then(|a| sandbox_of_host(a.as_str()));
        }
        Ok(req)
    }

    /// Whether a body may follow.
    pub fn has_body(&self) -> bool {
        self.chunked || self.content_length.unwrap_or(0) > 0
    }
}

/// The HTTP status that says a control-plane verdict.
pub fn status_of(verdict: Verdict) -> u16 {
    match verdict {
        Verdict::Ok => 200,
        Verdict::Created => 201,
        Verdict::Accepted => 202,
        Verdict::BadRequest => 400,
        Verdict::Unauthenticated => 401,
        Verdict::Forbidden => 403,
        Verdict::NotFound => 404,
        Verdict::Conflict => 409,
        Verdict::TooLarge => 413,
        Verdict::Invalid => 422,
        Verdict::TooMany => 429,
        Verdict::Failed => 500,
        Verdict::Unavailable => 503,
        Verdict::NoSpace => 507,
    }
}

/// The verdict an HTTP status says, for stand-ins of the control plane
/// that are written in statuses (tests, benchmarks).
pub fn verdict_of(status: u16) -> Option<Verdict> {
    const ALL: [Verdict; 14] = [
        Verdict::Ok,
        Verdict::Created,
        Verdict::Accepted,
        Verdict::BadRequest,
        Verdict::Unauthenticated,
        Verdict::Forbidden,
        Verdict::NotFound,
        Verdict::Conflict,
        Verdict::TooLarge,
        Verdict::Invalid,
        Verdict::TooMany,
        Verdict::Failed,
        Verdict::Unavailable,
        Verdict::NoSpace,
    ];
    ALL.into_iter().find(|v| status_of(*v) == status)
}

/// Why a body could not be read, as the status to answer with.
#[derive(Debug)]
pub enum BodyError {
    TooLarge(u64),
    Io(std::io::Error),
}

/// Reads a whole body of at most `cap` bytes (with a length or without).
pub fn read_body(req: &Request, body: &mut impl Read, cap: u64) -> Result<Vec<u8>, BodyError> {
    if req.content_length.unwrap_or(0) > cap {
        return Err(BodyError::TooLarge(cap));
    }
    if !req.has_body() {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(req.content_length.unwrap_or(0).min(cap) as usize);
    body.take(cap + 1)
        .read_to_end(&mut out)
        .map_err(BodyError::Io)?;
    if out.len() as u64 > cap {
        return Err(BodyError::TooLarge(cap));
    }
    Ok(out)
}

fn head(status: u16, content_type: &str) -> Head {
    Head {
        status,
        headers: vec![
            (CONTENT_TYPE, content_type.to_string()),
            (CACHE_CONTROL, "no-store".to_string()),
            (X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
    }
}

/// A 405 naming the methods the resource has.
pub fn not_allowed_answer(allow: &[&str]) -> (Head, Vec<u8>) {
    let allow = allow.join(", ");
    let body = serde_json::json!(paddock_api_types::ErrorBody::new(format!(
        "method not allowed here; use {allow}"
    )))
    .to_string();
    let mut h = head(405, "application/json");
    h.headers.push((ALLOW, allow));
    (h, body.into_bytes())
}

pub fn json_answer(status: u16, body: &serde_json::Value) -> (Head, Vec<u8>) {
    if status == 204 {
        return (
            Head {
                status,
                headers: vec![(CACHE_CONTROL, "no-store".to_string())],
            },
            Vec::new(),
        );
    }
    (
        head(status, "application/json"),
        body.to_string().into_bytes(),
    )
}

pub fn json(out: &mut Responder, status: u16, body: &serde_json::Value) {
    let (h, b) = json_answer(status, body);
    out.full(h, b);
}

/// A JSON answer with headers of its own (E2B's `x-next-token`).
pub fn json_with(
    out: &mut Responder,
    status: u16,
    body: &serde_json::Value,
    headers: Vec<(http::header::HeaderName, String)>,
) {
    let (mut h, b) = json_answer(status, body);
    h.headers.extend(headers);
    out.full(h, b);
}

/// Prometheus's text exposition format.
pub fn text(out: &mut Responder, body: String) {
    out.full(head(200, "text/plain; version=0.0.4"), body.into_bytes());
}

/// Starts a streamed answer of unknown length.
pub fn start_stream(out: &mut Responder, content_type: &str) -> std::io::Result<()> {
    out.start(head(200, content_type))
}

/// Starts a download of exactly `len` bytes: one that ends short is cut
/// off, never complete.
pub fn start_download(out: &mut Responder, len: u64) -> std::io::Result<()> {
    let mut h = head(200, "application/octet-stream");
    h.headers.push((CONTENT_LENGTH, len.to_string()));
    out.start(h)
}

/// Sends `len` bytes read from `body` (a file host-init opened) as a
/// download.
pub fn send_from(out: &mut Responder, body: &mut impl Read, len: u64) -> std::io::Result<()> {
    start_download(out, len)?;
    send_rest(out, body, len)
}

/// `send_from`, as a file a browser saves as `filename` (ASCII, no quotes).
pub fn send_attachment(
    out: &mut Responder,
    body: &mut impl Read,
    len: u64,
    filename: &str,
) -> std::io::Result<()> {
    let mut h = head(200, "application/octet-stream");
    h.headers.push((CONTENT_LENGTH, len.to_string()));
    h.headers.push((
        http::header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{filename}\""),
    ));
    out.start(h)?;
    send_rest(out, body, len)
}

fn send_rest(out: &mut Responder, body: &mut impl Read, len: u64) -> std::io::Result<()> {
    let mut left = len;
    let mut buf = vec![0u8; 64 << 10];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = body.read(&mut buf[..want])?;
        if n == 0 {
            out.abort();
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ended after {} of {len} bytes", len - left),
            ));
        }
        out.send(&buf[..n])?;
        left -= n as u64;
    }
    out.finish();
    Ok(())
}

/// A header name from a static lowercase string.
pub fn header_name(name: &'static str) -> http::header::HeaderName {
    http::header::HeaderName::from_static(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> Result<Request, HttpError> {
        Request::from_head(
            method,
            target,
            headers.iter().map(|(n, v)| (*n, v.as_bytes())),
            false,
        )
    }

    #[test]
    fn heads_give_what_routing_needs_and_abuse_is_refused() {
        let r = req(
            "GET",
            "/v1/x?label=a%3Db&limit=5",
            &[("authorization", "Bearer pdk_1"), ("content-length", "3")],
        )
        .expect("parse");
        assert_eq!(r.path, "/v1/x");
        assert_eq!(
            r.query,
            vec![("label".into(), "a=b".into()), ("limit".into(), "5".into())]
        );
        assert_eq!(r.bearer, "pdk_1");
        assert_eq!(r.content_length, Some(3));
        assert!(!r.expect_continue);
        let r = req(
            "PUT",
            "/f",
            &[("expect", "100-Continue"), ("content-length", "9")],
        )
        .expect("parse");
        assert!(r.expect_continue);
        assert!(matches!(
            req("GET", "/", &[("content-length", "-1")]),
            Err(HttpError::Malformed(_))
        ));
        let big = "a".repeat(MAX_HEAD);
        assert_eq!(
            req("GET", &format!("/{big}"), &[]),
            Err(HttpError::TooLarge)
        );
        assert_eq!(
            req("GET", "/", &[("x", big.as_str())]),
            Err(HttpError::TooLarge)
        );
        // HTTP/2 without content-length: a body of unknown length.
        let r = Request::from_head("POST", "/", std::iter::empty(), true).expect("parse");
        assert!(r.chunked && r.has_body());
    }

    #[test]
    fn the_sandbox_comes_from_its_header_or_else_its_host_name() {
        let host = |h: &str| req("POST", "/x", &[("host", h)]).expect("parse").sandbox;
        assert_eq!(
            host("49983-ws_0123abcd.paddock.lan").as_deref(),
            Some("ws_0123abcd")
        );
        assert_eq!(
            host("49983-ws-0123abcd.paddock.lan").as_deref(),
            Some("ws_0123abcd"),
            "E2B's spelling of an id"
        );
        assert_eq!(
            host("49983-WS_0123ABCD.paddock.lan:443").as_deref(),
            Some("ws_0123abcd")
        );
        for other in [
            "api.paddock.lan",
            "49983-.lan",
            "49983-ws_1",
            "8080-ws_1.lan",
            "localhost:8443",
            "",
        ] {
            assert_eq!(host(other), None, "{other}");
        }
        // Both: the header wins, in either order.
        for headers in [
            [("host", "49983-ws_aaaa.lan"), ("e2b-sandbox-id", "ws_bbbb")],
            [("e2b-sandbox-id", "ws_bbbb"), ("host", "49983-ws_aaaa.lan")],
        ] {
            let r = req("POST", "/x", &headers).expect("parse");
            assert_eq!(r.sandbox.as_deref(), Some("ws_bbbb"));
        }
    }

    #[test]
    fn bodies_are_capped_with_a_length_or_without() {
        let r = req("POST", "/", &[("content-length", "100")]).expect("parse");
        assert!(matches!(
            read_body(&r, &mut &[][..], 10),
            Err(BodyError::TooLarge(10))
        ));
        let r = req("POST", "/", &[("content-length", "4")]).expect("parse");
        assert_eq!(
            read_body(&r, &mut &b"abcd"[..], 10).ok(),
            Some(b"abcd".to_vec())
        );
        let r = req("POST", "/", &[("transfer-encoding", "chunked")]).expect("parse");
        assert_eq!(
            read_body(&r, &mut &b"abc"[..], 10).ok(),
            Some(b"abc".to_vec())
        );
        assert!(matches!(
            read_body(&r, &mut &[b'x'; 11][..], 10),
            Err(BodyError::TooLarge(10))
        ));
    }
}
