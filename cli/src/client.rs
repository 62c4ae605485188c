//! One HTTPS request per connection to the appliance's API, with the body
//! either read whole or streamed (chunked NDJSON for exec).
//!
//! A body counts only when it is known to be complete: as long as its
//! Content-Length, up to the last chunk, or (with neither) up to a TLS
//! close_notify. Anything in the path can cut a TCP connection, and a
//! download cut short must fail rather than leave a shorter file behind.

use crate::pinned::Pinned;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

const MAX_HEAD: u64 = 64 * 1024;
const MAX_CHUNK: usize = 16 << 20;
/// What a Content-Length may make us reserve up front; the rest grows as
/// bytes actually arrive, so a lying header cannot exhaust memory.
const MAX_PREALLOC: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0} is not an https://HOST:PORT URL")]
    Url(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("talking to the appliance: {0}")]
    Io(#[from] std::io::Error),
    #[error("the appliance's answer is malformed: {0}")]
    Protocol(String),
    #[error("the answer was cut off: {received} of the {expected} bytes its Content-Length announced arrived")]
    ShortBody { expected: u64, received: u64 },
    #[error("the answer was cut off: {0}")]
    Cut(String),
}

pub struct Api {
    pub host: String,
    pub port: u16,
    pub token: String,
    pub pin: Arc<Pinned>,
}

/// How the end of a body is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length(u64),
    /// Neither: the body ends with the connection, and only a
    /// close_notify tells that end from a cut.
    Close,
}

pub struct Response {
    pub status: u16,
    framing: Framing,
    reader: Box<dyn BufRead>,
}

/// A whole answer: its status and its body exactly as sent.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

pub fn parse_url(url: &str) -> Result<(String, u16), ClientError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| ClientError::Url(url.into()))?;
    let hostport = rest.trim_end_matches('/');
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse().map_err(|_| ClientError::Url(url.into()))?,
        ),
        None => (hostport.to_string(), 8443),
    };
    if host.is_empty() || host.contains('/') {
        return Err(ClientError::Url(url.into()));
    }
    Ok((host, port))
}

impl Api {
    /// A request whose answer may pause 10 minutes at most.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        self.request_with(method, path, body, Some(Duration::from_secs(600)))
    }

    /// A request whose answer is a stream that may be silent for as long
    /// as its process is (an exec, a terminal).
    pub fn stream(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        self.request_with(method, path, body, None)
    }

    fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        read_timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = TcpStream::connect(&addr).map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
        tcp.set_read_timeout(read_timeout)?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Protocol(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(self.pin.clone())
        .with_no_client_auth();
        // The name is not checked (the pin is); any valid DNS name will do.
        let name = rustls::pki_types::ServerName::try_from("paddock")
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.host
        );
        if !self.token.is_empty() {
            head.push_str(&format!("Authorization: Bearer {}\r\n", self.token));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\n\r\n",
            body.map_or(0, <[u8]>::len)
        ));
        tls.write_all(head.as_bytes())?;
        if let Some(b) = body {
            tls.write_all(b)?;
        }
        tls.flush()?;
        let mut reader: Box<dyn BufRead> = Box::new(BufReader::new(tls));
        let mut raw = Vec::new();
        loop {
            let left = MAX_HEAD.saturating_sub(raw.len() as u64);
            let n = (&mut reader).take(left).read_until(b'\n', &mut raw)?;
            if n == 0 || raw.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&raw) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(ClientError::Protocol("no complete response head".into())),
        }
        let status = resp.code.unwrap_or(0);
        let framing = framing(status, resp.headers)?;
        Ok(Response {
            status,
            framing,
            reader,
        })
    }

    /// A request and its whole answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, ClientError> {
        let mut r = self.request(method, path, body)?;
        let body = r.body()?;
        Ok(Answer {
            status: r.status,
            body,
        })
    }
}

/// RFC 9112 §6.3: chunked wins over a Content-Length; copies of a
/// Content-Length that disagree make the answer unreadable.
fn framing(status: u16, headers: &[httparse::Header<'_>]) -> Result<Framing, ClientError> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Length(0));
    }
    let value = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if value("transfer-encoding").any(|v| v.to_ascii_lowercase().contains("chunked")) {
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for v in value("content-length") {
        let n = v
            .parse::<u64>()
            .ok()
            .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ClientError::Protocol(format!("Content-Length {v:?}")))?;
        if length.is_some_and(|l| l != n) {
            return Err(ClientError::Protocol(
                "Content-Lengths that disagree".into(),
            ));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

impl Response {
    pub fn chunked(&self) -> bool {
        self.framing == Framing::Chunked
    }

    /// The body when it is at most `max` bytes; an error, read no further,
    /// when its length says more (or more arrives).
    pub fn body_up_to(&mut self, max: u64) -> Result<Vec<u8>, ClientError> {
        if let Framing::Length(n) = self.framing {
            if n > max {
                return Err(ClientError::Protocol(format!(
                    "the answer is {n} bytes, more than the {max} asked for"
                )));
            }
            return self.body();
        }
        let mut out = Vec::new();
        while let Some(c) = self.next_chunk()? {
            out.extend(c);
            if out.len() as u64 > max {
                return Err(ClientError::Protocol(format!(
                    "the answer is more than the {max} bytes asked for"
                )));
            }
        }
        Ok(out)
    }

    /// The whole body, or an error if it did not all arrive.
    pub fn body(&mut self) -> Result<Vec<u8>, ClientError> {
        match self.framing {
            Framing::Chunked => {
                let mut out = Vec::new();
                while let Some(c) = self.next_chunk()? {
                    out.extend(c);
                }
                Ok(out)
            }
            Framing::Length(expected) => {
                let mut out = Vec::with_capacity(expected.min(MAX_PREALLOC) as usize);
                // rustls reports a TCP close without close_notify as
                // UnexpectedEof; the count below says what was missed.
                match (&mut self.reader).take(expected).read_to_end(&mut out) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
                    Err(e) => return Err(e.into()),
                }
                let received = out.len() as u64;
                if received < expected {
                    return Err(ClientError::ShortBody { expected, received });
                }
                Ok(out)
            }
            Framing::Close => {
                let mut out = Vec::new();
                match self.reader.read_to_end(&mut out) {
                    Ok(_) => Ok(out),
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(ClientError::Cut(
                        format!(
                            "the connection closed without TLS close_notify after {} bytes of a body with no length",
                            out.len()
                        ),
                    )),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// The next chunk of a chunked body; None at its end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let cut = |e: std::io::Error| {
            if e.kind() == ErrorKind::UnexpectedEof {
                ClientError::Cut("the connection closed before the body's last chunk".into())
            } else {
                e.into()
            }
        };
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(1024)
            .read_until(b'\n', &mut line)
            .map_err(cut)?;
        if n == 0 {
            return Err(cut(ErrorKind::UnexpectedEof.into()));
        }
        let text = String::from_utf8_lossy(&line);
        if !text.ends_with('\n') {
            return Err(if n < 1024 {
                cut(ErrorKind::UnexpectedEof.into())
            } else {
                ClientError::Protocol("a chunk size line over 1 KiB".into())
            });
        }
        // A chunk size may carry extensions after ';', meant for no one here.
        let hex = text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| ClientError::Protocol(format!("chunk size {text:?}")))?;
        if size == 0 {
            return Ok(None);
        }
        if size > MAX_CHUNK {
            return Err(ClientError::Protocol("chunk over 16 MiB".into()));
        }
        let mut data = vec![0u8; size + 2];
        self.reader.read_exact(&mut data).map_err(cut)?;
        if !data.ends_with(b"\r\n") {
            return Err(ClientError::Protocol("a chunk longer than its size".into()));
        }
        data.truncate(size);
        Ok(Some(data))
    }
}

/// The API path of workspace `id`'s `rest`.
pub fn ws_path(id: &str, rest: &str) -> String {
    format!("/v1/workspaces/{}{rest}", enc(id))
}

/// Percent-encodes all but the unreserved characters (and '/').
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_./~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The API's refusal as the CLI reports it: the status and the error
/// the body names.
pub fn api_error(answer: &Answer) -> crate::CliError {
    let msg = match serde_json::from_slice::<paddock_api_types::ErrorBody>(&answer.body) {
        Ok(e) => e.error,
        // Not the API's own error (a proxy's page, say): show what came.
        Err(_) => match String::from_utf8_lossy(&answer.body).trim() {
            "" => "(an empty answer)".to_string(),
            text => text.to_string(),
        },
    };
    crate::CliError::Api(format!("{}: {msg}", answer.status))
}

#[cfg(test)]
mod tests {
    use super::ClientError;
    use crate::testserver::{answer, serve, Close};

    fn body_of(answer: Vec<u8>, close: Close) -> Result<Vec<u8>, ClientError> {
        let (api, server) = serve(answer, close);
        let got = api.call("GET", "/v1/x", None).map(|a| a.body);
        server.request();
        got
    }

    #[test]
    fn a_body_cut_short_of_its_content_length_is_an_error() {
        let got = body_of(
            answer("200 OK", &["Content-Length: 100"], &[b'x'; 40]),
            Close::Cut,
        );
        assert!(
            matches!(
                got,
                Err(ClientError::ShortBody {
                    expected: 100,
                    received: 40
                })
            ),
            "40 of 100 bytes read as a whole body: {got:?}"
        );
        let msg = got.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("100") && msg.contains("40"), "{msg}");
    }

    #[test]
    fn a_complete_body_is_read_whole_with_or_without_close_notify() {
        for close in [Close::Cut, Close::Notify] {
            let got = body_of(
                answer("200 OK", &["Content-Length: 100"], &[b'y'; 100]),
                close,
            );
            assert_eq!(got.ok(), Some(vec![b'y'; 100]), "{close:?}");
        }
    }

    #[test]
    fn bytes_past_the_content_length_are_not_the_body() {
        let got = body_of(
            answer("200 OK", &["Content-Length: 3"], b"abcdef"),
            Close::Notify,
        );
        assert_eq!(got.ok(), Some(b"abc".to_vec()));
    }

    #[test]
    fn a_body_without_a_length_needs_close_notify() {
        let cut = body_of(answer("200 OK", &[], b"partial"), Close::Cut);
        assert!(matches!(cut, Err(ClientError::Cut(_))), "{cut:?}");
        let whole = body_of(answer("200 OK", &[], b"whole"), Close::Notify);
        assert_eq!(whole.ok(), Some(b"whole".to_vec()));
    }

    #[test]
    fn a_chunked_body_must_reach_its_last_chunk() {
        let te = ["Transfer-Encoding: chunked"];
        let whole = body_of(
            answer("200 OK", &te, b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"),
            Close::Cut,
        );
        assert_eq!(whole.ok(), Some(b"abcde".to_vec()));
        for cut in [&b"3\r\nabc\r\n"[..], b"3\r\nab", b"3\r\nabc\r\n0"] {
            let got = body_of(answer("200 OK", &te, cut), Close::Cut);
            assert!(matches!(got, Err(ClientError::Cut(_))), "{cut:?}: {got:?}");
            let got = body_of(answer("200 OK", &te, cut), Close::Notify);
            assert!(
                matches!(got, Err(ClientError::Cut(_))),
                "{cut:?} with close_notify: {got:?}"
            );
        }
    }

    #[test]
    fn lengths_that_cannot_be_trusted_are_refused() {
        for headers in [
            &["Content-Length: 5", "Content-Length: 6"][..],
            &["Content-Length: -1"],
            &["Content-Length: +5"],
        ] {
            let got = body_of(answer("200 OK", headers, b"hello"), Close::Notify);
            assert!(
                matches!(got, Err(ClientError::Protocol(_))),
                "{headers:?}: {got:?}"
            );
        }
    }
}
