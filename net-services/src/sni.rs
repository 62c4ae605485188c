//! What a workspace's client says it is connecting to: the server name of
//! a TLS ClientHello, or the Host of an HTTP request. The bytes come from
//! the guest: every length is checked against what is there.

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// Not enough bytes yet to tell.
    NeedMore,
    Name(String),
    /// A TLS ClientHello offering Encrypted Client Hello: its outer name
    /// is not where the connection really goes, so it is refused.
    Ech,
    /// Could not find a name (no SNI, no Host, not TLS or HTTP).
    NoName(&'static str),
}

/// TLS records are at most 2^14 bytes of payload (plus the header); HTTP
/// request heads we read up to the same size.
pub const MAX_PEEK: usize = 16 * 1024 + 5;

const EXT_SERVER_NAME: u16 = 0;
const EXT_ECH: u16 = 0xfe0d;

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

/// Decides from the first bytes of a connection.
pub fn peek(buf: &[u8]) -> Peek {
    match buf.first() {
        None => Peek::NeedMore,
        Some(0x16) => client_hello(buf),
        Some(_) => http_host(buf),
    }
}

fn client_hello(buf: &[u8]) -> Peek {
    let mut c = Cursor { b: buf };
    let (Some(_), Some(_), Some(len)) = (c.u8(), c.u16(), c.u16()) else {
        return Peek::NeedMore;
    };
    let Some(record) = c.take(len) else {
        return if buf.len() >= MAX_PEEK {
            Peek::NoName("TLS record longer than allowed")
        } else {
            Peek::NeedMore
        };
    };
    let mut r = Cursor { b: record };
    // A ClientHello in one record: handshake type 1, its whole body here.
    if r.u8() != Some(1) {
        return Peek::NoName("TLS, but not a ClientHello");
    }
    let Some(body) = r.u24().and_then(|n| r.take(n)) else {
        return Peek::NoName("ClientHello split over TLS records");
    };
    let mut h = Cursor { b: body };
    let fields = (|| {
        h.take(2 + 32)?; // version, random
        let n = h.u8()?;
        h.take(n)?; // session id
        let n = h.u16()?;
        h.take(n)?; // cipher suites
        let n = h.u8()?;
        h.take(n)?; // compression methods
        let n = h.u16()?;
        h.take(n)
    })();
    let Some(exts) = fields else {
        return Peek::NoName("malformed ClientHello");
    };
    let mut e = Cursor { b: exts };
    let mut name = None;
    while !e.b.is_empty() {
        let (Some(kind), Some(data)) = (e.u16(), e.u16().and_then(|n| e.take(n))) else {
            return Peek::NoName("malformed ClientHello extension");
        };
        match kind as u16 {
            EXT_ECH => return Peek::Ech,
            EXT_SERVER_NAME => name = server_name(data),
            _ => {}
        }
    }
    match name {
        Some(n) => Peek::Name(n),
        None => Peek::NoName("ClientHello without a server name"),
    }
}

fn server_name(data: &[u8]) -> Option<String> {
    let mut c = Cursor { b: data };
    let list = c.u16().and_then(|n| c.take(n))?;
    let mut l = Cursor { b: list };
    while !l.b.is_empty() {
        let kind = l.u8()?;
        let name = l.u16().and_then(|n| l.take(n))?;
        if kind == 0 {
            return hostname(name);
        }
    }
    None
}

/// A host name as clients send it: LDH labels, none empty, at most one
/// trailing dot (dropped); lower-cased.
fn hostname(b: &[u8]) -> Option<String> {
    let b = b.strip_suffix(b".").unwrap_or(b);
    let ok = !b.is_empty()
        && b.len() <= 253
        && b.split(|c| *c == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        });
    ok.then(|| String::from_utf8_lossy(b).to_ascii_lowercase())
}

fn http_host(buf: &[u8]) -> Peek {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() < MAX_PEEK => Peek::NeedMore,
        Ok(httparse::Status::Partial) => Peek::NoName("HTTP request head too long"),
        Err(_) => Peek::NoName("neither TLS nor HTTP"),
        Ok(httparse::Status::Complete(_)) => {
            if req.method == Some("CONNECT") {
                return Peek::NoName("CONNECT is not served");
            }
            let mut hosts = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("host"));
            let (Some(h), None) = (hosts.next(), hosts.next()) else {
                return Peek::NoName("HTTP request without exactly one Host header");
            };
            match host_header_name(h.value) {
                Some(n) => Peek::Name(n),
                None => Peek::NoName("HTTP Host is not a host name"),
            }
        }
    }
}

/// The lower-case name in a Host value (or URI authority): "name" or
/// "name:port"; an IPv6 literal is no name.
pub fn host_header_name(value: &[u8]) -> Option<String> {
    let value = value.trim_ascii();
    let name = match value.iter().rposition(|c| *c == b':') {
        Some(i) if value[i + 1..].iter().all(u8::is_ascii_digit) => &value[..i],
        _ => value,
    };
    hostname(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with the given extensions.
    pub fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut e = Vec::new();
        for (k, d) in exts {
            e.extend_from_slice(&k.to_be_bytes());
            e.extend_from_slice(&(d.len() as u16).to_be_bytes());
            e.extend_from_slice(d);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(e.len() as u16).to_be_bytes());
        body.extend_from_slice(&e);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut d = (entry.len() as u16).to_be_bytes().to_vec();
        d.extend_from_slice(&entry);
        (EXT_SERVER_NAME, d)
    }

    #[test]
    fn finds_the_server_name_and_waits_for_a_whole_record() {
        let h = hello(&[(10, vec![0, 2, 0, 29]), sni("Allowed.Test")]);
        assert_eq!(peek(&h), Peek::Name("allowed.test".into()));
        for cut in [1, 4, 5, h.len() - 1] {
            assert_eq!(peek(&h[..cut]), Peek::NeedMore, "cut at {cut}");
        }
    }

    #[test]
    fn ech_no_sni_and_garbage_are_refused() {
        assert_eq!(
            peek(&hello(&[sni("public.test"), (EXT_ECH, vec![0; 8])])),
            Peek::Ech
        );
        assert!(matches!(peek(&hello(&[])), Peek::NoName(_)));
        assert!(matches!(peek(&hello(&[sni("bad name!")])), Peek::NoName(_)));
        // An extension claiming more bytes than there are.
        let mut h = hello(&[sni("a.test")]);
        let n = h.len();
        h[n - 13] = 0xff;
        assert!(matches!(peek(&h), Peek::NoName(_)));
        assert!(matches!(peek(&[0x16, 3, 1, 0, 1, 2]), Peek::NoName(_)));
    }

    #[test]
    fn http_host_with_and_without_port() {
        assert_eq!(
            peek(b"GET / HTTP/1.1\r\nHost: Allowed.test:80\r\n\r\n"),
            Peek::Name("allowed.test".into())
        );
        assert_eq!(peek(b"GET / HTTP/1.1\r\nHost: a.test\r\n"), Peek::NeedMore);
        assert!(matches!(peek(b"GET / HTTP/1.1\r\n\r\n"), Peek::NoName(_)));
        assert!(matches!(
            peek(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
            Peek::NoName(_)
        ));
        assert!(matches!(
            peek(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n"),
            Peek::NoName(_)
        ));
        assert!(matches!(peek(b"\x00\x01binary"), Peek::NoName(_)));
        // Found by fuzzing: a Host of dots only named nothing.
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: .\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n",
        ] {
            assert!(matches!(peek(bad), Peek::NoName(_)), "{bad:?}");
        }
        assert_eq!(
            peek(b"GET / HTTP/1.1\r\nHost: a.test.\r\n\r\n"),
            Peek::Name("a.test".into())
        );
    }
}
