//! One HTTPS request per connection to the appliance's API, with the body
//! either read whole or streamed (chunked NDJSON for exec).

use crate::pinned::Pinned;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

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
}

pub struct Api {
    pub host: String,
    pub port: u16,
    pub token: String,
    pub pin: Arc<Pinned>,
}

pub struct Response {
    pub status: u16,
    pub chunked: bool,
    reader: Box<dyn BufRead>,
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
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = TcpStream::connect(&addr).map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
        tcp.set_read_timeout(Some(Duration::from_secs(600)))?;
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
            let n = reader.read_until(b'\n', &mut raw)?;
            if n == 0 || raw.ends_with(b"\r\n\r\n") || raw.len() > 64 * 1024 {
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
        let chunked = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && String::from_utf8_lossy(h.value).contains("chunked")
        });
        Ok(Response {
            status,
            chunked,
            reader,
        })
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let mut r = self.request(method, path, bytes.as_deref())?;
        let body = r.body()?;
        let v = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ClientError::Protocol(format!("not JSON: {e}")))?
        };
        Ok((r.status, v))
    }
}

impl Response {
    /// The whole body (the server closes after each response).
    pub fn body(&mut self) -> Result<Vec<u8>, ClientError> {
        if self.chunked {
            let mut out = Vec::new();
            while let Some(c) = self.next_chunk()? {
                out.extend(c);
            }
            return Ok(out);
        }
        let mut out = Vec::new();
        match self.reader.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            // A peer that closes without close_notify still sent the body.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(out),
            Err(e) => Err(e.into()),
        }
    }

    /// The next chunk of a chunked body; None at its end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim(), 16)
            .map_err(|_| ClientError::Protocol(format!("chunk size {line:?}")))?;
        if size == 0 {
            return Ok(None);
        }
        if size > 16 << 20 {
            return Err(ClientError::Protocol("chunk over 16 MiB".into()));
        }
        let mut data = vec![0u8; size + 2];
        self.reader.read_exact(&mut data)?;
        data.truncate(size);
        Ok(Some(data))
    }
}
