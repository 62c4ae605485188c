//! Checks every request a workspace sends on a plain-HTTP connection the
//! proxy let through, not just the first: the connection is opened to the
//! addresses of one allowed name, and a shared front end there serves
//! other names too, so a second (keep-alive or pipelined) request, or an
//! absolute-form target, naming another host would reach that host.
//!
//! The checker follows the request framing (RFC 9112 section 6) so it
//! knows where each request head starts, and refuses what two parsers
//! could frame differently (request smuggling): Content-Length together
//! with Transfer-Encoding, a transfer-coding other than `chunked`,
//! conflicting or malformed Content-Length, obsolete line folding,
//! malformed chunks. `Upgrade` is refused outright: after a 101 the bytes
//! are no longer HTTP and could not be checked, and refusing is the safe
//! choice (`CONNECT` likewise). Only bytes the checker has vetted are
//! forwarded upstream; a head is held back until it is complete.

use std::fmt;

/// The longest request head (or chunk-size / trailer line) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// The longest chunk-size line (size plus extensions).
const MAX_CHUNK_LINE: usize = 4096;
const MAX_HEADERS: usize = 64;

/// Why a request was refused, and the status the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub why: String,
    /// The brokered secret whose placeholder the request carried.
    pub secret: Option<String>,
}

impl Refused {
    fn bad(why: &str) -> Refused {
        Refused {
            status: 400,
            why: why.to_string(),
            secret: None,
        }
    }
    fn forbidden(why: String) -> Refused {
        Refused {
            status: 403,
            why,
            secret: None,
        }
    }

    /// The whole response sent to the client before the connection closes.
    pub fn response(&self) -> Vec<u8> {
        let reason = if self.status == 403 {
            "Forbidden"
        } else {
            "Bad Request"
        };
        let body = format!("paddock: {}\n", self.why);
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.why, self.status)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a request head.
    Head,
    /// This many body bytes (Content-Length) still to come.
    Body(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// This many bytes of chunk data still to come.
    ChunkData(u64),
    /// Expecting the CRLF after chunk data.
    ChunkEnd,
    /// Expecting trailer lines, up to an empty line.
    Trailers,
}

/// The client-to-upstream side of one plain-HTTP connection to `host`.
pub struct RequestStream {
    host: String,
    state: State,
    /// Brokered secrets' placeholders that must not go to this host this
    /// way: (placeholder, secret name, why).
    placeholders: Vec<(String, String, String)>,
}

impl RequestStream {
    /// `host`: the (lower-case) name the connection was allowed for.
    pub fn new(host: &str) -> RequestStream {
        RequestStream {
            host: host.to_ascii_lowercase(),
            state: State::Head,
            placeholders: Vec::new(),
        }
    }

    /// Refuses (403) any request whose head holds one of these
    /// placeholders: (placeholder, secret name, why).
    pub fn refusing(mut self, placeholders: Vec<(String, String, String)>) -> RequestStream {
        self.placeholders = placeholders;
        self
    }

    /// Vets the start of `pending` (bytes the client sent, not yet
    /// forwarded) and returns how many of them may be forwarded. The rest
    /// must be kept and offered again with more bytes after them. An error
    /// means: send its response, forward nothing more, close.
    pub fn check(&mut self, pending: &[u8]) -> Result<usize, Refused> {
        let mut used = 0;
        loop {
            match self.step(&pending[used..]) {
                Ok(0) => return Ok(used),
                Ok(n) => used += n,
                // What came before the refused part goes first; the state
                // is unchanged on error, so the next call refuses again.
                Err(_) if used > 0 => return Ok(used),
                Err(e) => return Err(e),
            }
        }
    }

    /// One head, body piece, chunk line or trailer line.
    fn step(&mut self, rest: &[u8]) -> Result<usize, Refused> {
        {
            let n = match self.state {
                State::Head => self.head(rest)?,
                State::Body(left) => {
                    let n = take(left, rest.len());
                    self.state = if left == n as u64 {
                        State::Head
                    } else {
                        State::Body(left - n as u64)
                    };
                    n
                }
                State::ChunkSize => match line(rest, MAX_CHUNK_LINE)? {
                    None => 0,
                    Some((len, text)) => {
                        let size = chunk_size(text)?;
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                        len
                    }
                },
                State::ChunkData(left) => {
                    let n = take(left, rest.len());
                    self.state = if left == n as u64 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left - n as u64)
                    };
                    n
                }
                State::ChunkEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        self.state = State::ChunkSize;
                        2
                    }
                    [] | [b'\r'] => 0,
                    _ => return Err(Refused::bad("chunk data longer than its size")),
                },
                State::Trailers => match line(rest, MAX_HEAD)? {
                    None => 0,
                    Some((len, text)) => {
                        if text.is_empty() {
                            self.state = State::Head;
                        } else if matches!(text.first(), Some(b' ' | b'\t')) {
                            return Err(Refused::bad("obsolete line folding in a trailer"));
                        }
                        len
                    }
                },
            };
            Ok(n)
        }
    }

    /// Parses and checks one request head; returns its length, or 0 if it
    /// is not complete yet.
    fn head(&mut self, buf: &[u8]) -> Result<usize, Refused> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(0),
            Ok(httparse::Status::Partial) => {
                return Err(Refused::bad("request head longer than 16 KiB"))
            }
            // httparse refuses obs-fold, space before a colon, bad tokens.
            Err(e) => return Err(Refused::bad(&format!("malformed request head: {e}"))),
        };
        if len > MAX_HEAD {
            return Err(Refused::bad("request head longer than 16 KiB"));
        }
        let head = &buf[..len];
        if let Some((_, name, why)) = self
            .placeholders
            .iter()
            .find(|(p, _, _)| !p.is_empty() && head.windows(p.len()).any(|w| w == p.as_bytes()))
        {
            return Err(Refused {
                status: 403,
                why: why.clone(),
                secret: Some(name.clone()),
            });
        }
        let method = req.method.unwrap_or("");
        let target = req.path.unwrap_or("");
        if method.eq_ignore_ascii_case("CONNECT") {
            return Err(Refused::forbidden("CONNECT is not served".into()));
        }
        let mut hosts = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("host"));
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return Err(Refused::bad("request without exactly one Host header"));
        };
        let Some(host) = crate::sni::host_header_name(host.value) else {
            return Err(Refused::bad("Host is not a host name"));
        };
        if host != self.host {
            return Err(Refused::forbidden(format!(
                "this connection is for {}; a request for {host} needs its own connection",
                self.host
            )));
        }
        self.target(method, target)?;
        if req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("upgrade"))
        {
            return Err(Refused::forbidden(
                "Upgrade is not served over plain HTTP (use TLS)".into(),
            ));
        }
        self.state = framing(req.headers, req.version == Some(0))?;
        Ok(len)
    }

    /// origin-form, `*` (OPTIONS), or absolute-form naming this host.
    fn target(&self, method: &str, target: &str) -> Result<(), Refused> {
        if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
            return Ok(());
        }
        let lower = target.to_ascii_lowercase();
        let Some(rest) = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
        else {
            return Err(Refused::bad(
                "request target is neither a path nor an http URI",
            ));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(Refused::bad("request target with user information"));
        }
        match crate::sni::host_header_name(authority.as_bytes()) {
            Some(name) if name == self.host => Ok(()),
            Some(name) => Err(Refused::forbidden(format!(
                "this connection is for {}; a request for {name} needs its own connection",
                self.host
            ))),
            None => Err(Refused::bad("request target's host is not a host name")),
        }
    }
}

fn take(left: u64, avail: usize) -> usize {
    usize::try_from(left).map_or(avail, |l| l.min(avail))
}

/// What follows a head: RFC 9112 section 6.3, refusing every case where
/// two implementations could disagree.
fn framing(headers: &[httparse::Header<'_>], http10: bool) -> Result<State, Refused> {
    let mut lengths = Vec::new();
    let mut codings = Vec::new();
    for h in headers {
        let Ok(value) = std::str::from_utf8(h.value) else {
            if h.name.eq_ignore_ascii_case("content-length")
                || h.name.eq_ignore_ascii_case("transfer-encoding")
            {
                return Err(Refused::bad("framing header is not text"));
            }
            continue;
        };
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths.extend(value.split(',').map(str::trim));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(value.split(',').map(str::trim));
        }
    }
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(Refused::bad(
                "both Content-Length and Transfer-Encoding (request smuggling)",
            ));
        }
        if http10 {
            return Err(Refused::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if codings.len() != 1 || !codings[0].eq_ignore_ascii_case("chunked") {
            return Err(Refused::bad("transfer-coding other than plain chunked"));
        }
        return Ok(State::ChunkSize);
    }
    let Some(first) = lengths.first() else {
        return Ok(State::Head);
    };
    if lengths.iter().any(|l| l != first)
        || first.is_empty()
        || first.len() > 18
        || !first.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Refused::bad("invalid Content-Length"));
    }
    match first.parse::<u64>() {
        Ok(0) => Ok(State::Head),
        Ok(n) => Ok(State::Body(n)),
        Err(_) => Err(Refused::bad("invalid Content-Length")),
    }
}

/// A CRLF-terminated line at the start of `buf`: its length with the CRLF
/// and its text without; `None` if not all there yet.
fn line(buf: &[u8], max: usize) -> Result<Option<(usize, &[u8])>, Refused> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) if i > 0 && buf[i - 1] == b'\r' && i < max => Ok(Some((i + 1, &buf[..i - 1]))),
        Some(i) if i >= max => Err(Refused::bad("chunk or trailer line too long")),
        Some(_) => Err(Refused::bad("bare LF in chunked framing")),
        None if buf.len() >= max => Err(Refused::bad("chunk or trailer line too long")),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ chunk-ext ]`.
fn chunk_size(text: &[u8]) -> Result<u64, Refused> {
    let end = text
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(text.len());
    let (digits, ext) = text.split_at(end);
    if digits.is_empty() || digits.len() > 15 {
        return Err(Refused::bad("invalid chunk size"));
    }
    if !(ext.is_empty() || matches!(ext[0], b';' | b' ' | b'\t')) {
        return Err(Refused::bad("invalid chunk size"));
    }
    if ext.iter().any(|b| *b == b'\r' || *b == b'\n' || *b == 0) {
        return Err(Refused::bad("invalid chunk extension"));
    }
    let digits = std::str::from_utf8(digits).map_err(|_| Refused::bad("invalid chunk size"))?;
    u64::from_str_radix(digits, 16).map_err(|_| Refused::bad("invalid chunk size"))
}

#[cfg(test)]
#[path = "http_stream_tests.rs"]
mod tests;

/// Whether the bytes of `buf` from `from` on (with the two before, where
/// a line end may have begun) hold an empty line: where a request head
/// can end (the proxy's name reading parses only then). Linear in what is
/// new.
pub fn head_may_end(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.saturating_sub(2).min(buf.len())..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}
