//! One HTTPS request per connection to the appliance's API, on hyper's
//! HTTP/1.1 client over tokio-rustls with the pinning verifier, the body
//! either read whole or streamed (chunked NDJSON for exec).
//!
//! A body counts only when it is known to be complete: as long as its
//! Content-Length, up to the last chunk, or (with neither) up to a TLS
//! close_notify. Anything in the path can cut a TCP connection, and a
//! download cut short must fail rather than leave a shorter file behind.
//! hyper enforces the framing; this module says which way an answer was
//! cut, and what was missed.

use crate::pinned::Pinned;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

/// Largest answer head read.
const MAX_HEAD: usize = 64 * 1024;

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
    body: Incoming,
    /// Bytes of the body handed out so far.
    received: u64,
    /// How long a read may wait; None: as long as the stream is silent.
    wait: Option<Duration>,
    /// Drives the connection while a read waits (its task is on it).
    rt: tokio::runtime::Runtime,
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

/// Waits for `f` on `rt`, at most `wait`.
fn block<T>(
    rt: &tokio::runtime::Runtime,
    wait: Option<Duration>,
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    rt.block_on(async {
        match wait {
            Some(w) => tokio::time::timeout(w, f).await.unwrap_or_else(|_| {
                Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer in {} s", w.as_secs()),
                )))
            }),
            None => f.await,
        }
    })
}

impl Api {
    /// A request whose answer may pause 10 minutes at most.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        self.request_with(method, path, body, &[], Some(Duration::from_secs(600)))
    }

    /// A request whose answer is a stream that may be silent for as long
    /// as its process is (an exec, a terminal).
    pub fn stream(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        self.request_with(method, path, body, &[], None)
    }

    fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&'static str, &str)],
        wait: Option<Duration>,
    ) -> Result<Response, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let request = self.build(method, path, body, headers)?;
        let (status, framing, body) = block(&rt, wait, self.send(request))?;
        Ok(Response {
            status,
            framing,
            body,
            received: 0,
            wait,
            rt,
        })
    }

    fn build(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&'static str, &str)],
    ) -> Result<hyper::Request<Full<Bytes>>, ClientError> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONNECTION, "close");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if !self.token.is_empty() {
            request = request.header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        }
        let body = Bytes::copy_from_slice(body.unwrap_or_default());
        request
            .header(hyper::header::CONTENT_LENGTH, body.len())
            .body(Full::new(body))
            .map_err(|e| ClientError::Protocol(format!("the request: {e}")))
    }

    async fn send(
        &self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<(u16, Framing, Incoming), ClientError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
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
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let (mut send, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD.max(8192))
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let answer = send.send_request(request).await.map_err(|e| {
            if e.is_parse() || e.is_parse_status() {
                ClientError::Protocol(e.to_string())
            } else {
                ClientError::Cut(format!("before the answer's head: {e}"))
            }
        })?;
        let status = answer.status().as_u16();
        let framing = framing(status, answer.headers())?;
        Ok((status, framing, answer.into_body()))
    }

    /// A request and its whole answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, ClientError> {
        self.call_with(method, path, body, &[])
    }

    /// `call` with more headers.
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&'static str, &str)],
    ) -> Result<Answer, ClientError> {
        let wait = Some(Duration::from_secs(600));
        let mut r = self.request_with(method, path, body, headers, wait)?;
        let body = r.body()?;
        Ok(Answer {
            status: r.status,
            body,
        })
    }
}

/// How the answer's body ends (hyper has already refused what RFC 9112
/// makes unreadable: lengths that disagree or do not parse).
fn framing(status: u16, headers: &hyper::HeaderMap) -> Result<Framing, ClientError> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Length(0));
    }
    let chunked = headers
        .get_all(hyper::header::TRANSFER_ENCODING)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
        });
    if chunked {
        return Ok(Framing::Chunked);
    }
    match headers.get(hyper::header::CONTENT_LENGTH) {
        None => Ok(Framing::Close),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse().ok())
            .map(Framing::Length)
            .ok_or_else(|| ClientError::Protocol(format!("Content-Length {v:?}"))),
    }
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
        let mut out = Vec::new();
        while let Some(c) = self.next_chunk()? {
            out.extend(c);
        }
        Ok(out)
    }

    /// The next piece of the body as it arrives; None at its end, an error
    /// if the connection ended before the body did.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let (framing, received) = (self.framing, self.received);
        let cut = move |e: hyper::Error| {
            match framing {
            Framing::Length(expected) => ClientError::ShortBody { expected, received },
            Framing::Chunked => ClientError::Cut(format!(
                "the connection closed before the body's last chunk ({e})"
            )),
            Framing::Close => ClientError::Cut(format!(
                "the connection closed without TLS close_notify after {received} bytes of a body with no length"
            )),
        }
        };
        let body = &mut self.body;
        loop {
            let frame = block(&self.rt, self.wait, async {
                body.frame().await.transpose().map_err(cut)
            })?;
            let Some(frame) = frame else {
                return Ok(None);
            };
            // Trailers carry nothing for us; only data counts.
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    self.received += data.len() as u64;
                    return Ok(Some(data.to_vec()));
                }
            }
        }
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
