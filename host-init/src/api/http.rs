//! The small HTTP/1.1 layer the API needs: one request per connection,
//! head parsed by httparse with caps on size, bodies by Content-Length
//! (capped per route), JSON responses, chunked streaming for exec.

use std::io::{Read, Write};

/// Longest request head accepted.
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
    pub chunked: bool,
    /// `Expect: 100-continue`: the client waits (briefly) for a go-ahead
    /// before sending its body.
    pub expect_continue: bool,
    /// Body bytes that arrived with the head.
    pub leftover: Vec<u8>,
    /// Whether a handler took the body (so an early answer knows to drain it).
    pub body_taken: std::cell::Cell<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("request head over {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("connection closed before a full request")]
    Closed,
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .to_string()
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

/// Reads one request head (and whatever body bytes came with it).
pub fn read_request(stream: &mut impl Read) -> Result<Request, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(HttpError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) if head_len > MAX_HEAD => {
                return Err(HttpError::TooLarge)
            }
            Ok(httparse::Status::Complete(head_len)) => {
                let target = req.path.unwrap_or("");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let mut bearer = String::new();
                let mut content_length = None;
                let mut chunked = false;
                let mut expect_continue = false;
                for h in req.headers.iter() {
                    let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                    if h.name.eq_ignore_ascii_case("authorization") {
                        if let Some(t) = value.strip_prefix("Bearer ") {
                            bearer = t.trim().to_string();
                        }
                    } else if h.name.eq_ignore_ascii_case("content-length") {
                        content_length = Some(value.parse::<u64>().map_err(|_| {
                            HttpError::Malformed(format!("Content-Length {value:?}"))
                        })?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = value.to_ascii_lowercase().contains("chunked");
                    } else if h.name.eq_ignore_ascii_case("expect") {
                        expect_continue = value.eq_ignore_ascii_case("100-continue");
                    }
                }
                return Ok(Request {
                    method: req.method.unwrap_or("").to_string(),
                    path: path.to_string(),
                    query: parse_query(query),
                    bearer,
                    content_length,
                    chunked,
                    expect_continue,
                    leftover: buf[head_len..].to_vec(),
                    body_taken: std::cell::Cell::new(false),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err(HttpError::TooLarge),
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        }
    }
}

/// Why a body could not be read, as the status to answer with.
pub enum BodyError {
    TooLarge(u64),
    LengthRequired,
    Io(std::io::Error),
}

/// Reads a whole body of at most `cap` bytes.
pub fn read_body(req: &Request, stream: &mut impl Read, cap: u64) -> Result<Vec<u8>, BodyError> {
    req.body_taken.set(true);
    if req.chunked {
        return Err(BodyError::LengthRequired);
    }
    let len = req.content_length.unwrap_or(0);
    if len > cap {
        return Err(BodyError::TooLarge(cap));
    }
    let mut body = req.leftover.clone();
    body.truncate(len as usize);
    let need = len as usize - body.len();
    let mut rest = vec![0u8; need];
    stream.read_exact(&mut rest).map_err(BodyError::Io)?;
    body.extend_from_slice(&rest);
    Ok(body)
}

/// A body of exactly `len` bytes as a reader: what came with the head,
/// then the stream. Ends at `len`; a stream that ends first is an error,
/// and `complete` says whether all of it arrived.
pub struct ExactBody<'a, S> {
    leftover: &'a [u8],
    stream: &'a mut S,
    left: u64,
}

impl<'a, S: Read> ExactBody<'a, S> {
    pub fn new(req: &'a Request, stream: &'a mut S, len: u64) -> Self {
        let take = req.leftover.len().min(len as usize);
        ExactBody {
            leftover: &req.leftover[..take],
            stream,
            left: len,
        }
    }

    pub fn complete(&self) -> bool {
        self.left == 0
    }
}

impl<S: Read> Read for ExactBody<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = if !self.leftover.is_empty() {
            let n = want.min(self.leftover.len());
            buf[..n].copy_from_slice(&self.leftover[..n]);
            self.leftover = &self.leftover[n..];
            n
        } else {
            let n = self.stream.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the body ended {} bytes short of its Content-Length",
                        self.left
                    ),
                ));
            }
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads and drops a body nobody took, up to `cap` bytes, so that an answer
/// given before reading it (a refusal) reaches a client still sending it
/// instead of a connection reset. Bigger bodies are left: the connection
/// closes on them.
pub fn discard_body(req: &Request, stream: &mut impl Read, cap: u64) {
    if req.body_taken.get() || req.chunked {
        return;
    }
    let len = req.content_length.unwrap_or(0);
    if len > cap {
        return;
    }
    let left = len.saturating_sub(req.leftover.len() as u64);
    let _ = std::io::copy(&mut stream.take(left), &mut std::io::sink());
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Error",
    }
}

/// The go-ahead for a body, to a client that asked for one, sent once the
/// request is authenticated and admitted: a refused client never sends it.
pub fn write_continue(stream: &mut impl Write, req: &Request) -> std::io::Result<()> {
    if !req.expect_continue || req.content_length.unwrap_or(0) == 0 {
        return Ok(());
    }
    stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    stream.flush()
}

/// A 405 naming the methods the resource has.
pub fn write_not_allowed(stream: &mut impl Write, allow: &[&str]) -> std::io::Result<()> {
    let allow = allow.join(", ");
    let body = serde_json::json!(paddock_api_types::ErrorBody::new(format!(
        "method not allowed here; use {allow}"
    )))
    .to_string();
    write!(
        stream,
        "HTTP/1.1 405 Method Not Allowed\r\nAllow: {allow}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

pub fn write_json(
    stream: &mut impl Write,
    status: u16,
    body: &serde_json::Value,
) -> std::io::Result<()> {
    let body = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        reason(status),
        body.len()
    )?;
    stream.flush()
}

pub fn write_bytes(stream: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    write_from(stream, &mut &body[..], body.len() as u64)
}

/// A download of `len` bytes read from `body` (a file host-init opened).
/// A body that ends early ends the connection short of its length, which
/// the client sees as a truncated download, never as a complete one.
pub fn write_from(stream: &mut impl Write, body: &mut impl Read, len: u64) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
    )?;
    let copied = std::io::copy(&mut body.take(len), stream)?;
    if copied < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file ended after {copied} of {len} bytes"),
        ));
    }
    stream.flush()
}

/// Prometheus's text exposition format.
pub fn write_text(stream: &mut impl Write, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Starts a chunked response; send pieces with [`write_chunk`], end with
/// [`end_chunks`].
pub fn start_chunked(stream: &mut impl Write, content_type: &str) -> std::io::Result<()> {
    write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n")?;
    stream.flush()
}

pub fn write_chunk(stream: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    write!(stream, "{:x}\r\n", data.len())?;
    stream.write_all(data)?;
    stream.write_all(b"\r\n")?;
    stream.flush()
}

pub fn end_chunks(stream: &mut impl Write) -> std::io::Result<()> {
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_and_rejects_abuse() {
        let r = read_request(&mut &b"GET /v1/x?label=a%3Db&limit=5 HTTP/1.1\r\nAuthorization: Bearer pdk_1\r\nContent-Length: 3\r\n\r\nabc"[..]).expect("parse");
        assert_eq!(r.path, "/v1/x");
        assert_eq!(
            r.query,
            vec![("label".into(), "a=b".into()), ("limit".into(), "5".into())]
        );
        assert_eq!(r.bearer, "pdk_1");
        assert_eq!(r.leftover, b"abc");
        assert!(!r.expect_continue);
        let r = read_request(
            &mut &b"PUT /f HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n"[..],
        )
        .expect("parse");
        assert!(r.expect_continue);
        let mut out = Vec::new();
        write_continue(&mut out, &r).expect("write");
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(matches!(
            read_request(&mut &b"GET /x HTTP/1.1\r\nHo"[..]),
            Err(HttpError::Closed)
        ));
        assert!(matches!(
            read_request(&mut &b"\x00\x01\x02 garbage\r\n\r\n"[..]),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            read_request(&mut &b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"[..]),
            Err(HttpError::Malformed(_))
        ));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert!(matches!(
            read_request(&mut &big[..]),
            Err(HttpError::TooLarge)
        ));
    }

    #[test]
    fn bodies_are_capped() {
        let r = read_request(&mut &b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n"[..])
            .expect("parse");
        assert!(matches!(
            read_body(&r, &mut &[][..], 10),
            Err(BodyError::TooLarge(10))
        ));
        let r = read_request(&mut &b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab"[..])
            .expect("parse");
        assert_eq!(
            read_body(&r, &mut &b"cd"[..], 10).ok(),
            Some(b"abcd".to_vec())
        );
    }
}
