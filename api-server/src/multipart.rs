//! The one file of a `multipart/form-data` upload, streamed: what E2B's SDK
//! sends envd for `files.write` of a string or bytes. Only the first part's
//! content is passed on, never held whole; the body counts as complete
//! only when the closing boundary came and the body ended as framed.

use crate::transfer::Framed;
use std::io::{Error, ErrorKind, Read};

/// Longest part head (its Content-Disposition and Content-Type lines).
const MAX_PART_HEAD: usize = 8 << 10;

/// The boundary of a `multipart/form-data` Content-Type, if it has one.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && (1..=70).contains(&v.len()))
            .then(|| v.to_string())
    })
}

/// The first part's content of a multipart body read from `inner`.
pub struct FirstPart<'a, R: Framed> {
    inner: &'a mut R,
    /// "\r\n--" + boundary: where the content ends.
    delimiter: Vec<u8>,
    /// Bytes read from `inner` and not yet passed on or judged.
    buf: Vec<u8>,
    started: bool,
    /// The delimiter after the content came: nothing more is passed on.
    closed: bool,
}

impl<'a, R: Framed> FirstPart<'a, R> {
    pub fn new(inner: &'a mut R, boundary: &str) -> Self {
        FirstPart {
            inner,
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            buf: Vec::new(),
            started: false,
            closed: false,
        }
    }

    fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.inner.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Reads past the first boundary line and the part's head.
    fn start(&mut self) -> std::io::Result<()> {
        let opening = self.delimiter[2..].to_vec();
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                if !self.buf.starts_with(&opening) {
                    return Err(Error::new(
                        ErrorKind::InvalidData,
                        "the body does not start with its multipart boundary",
                    ));
                }
                self.buf.drain(..end + 4);
                self.started = true;
                return Ok(());
            }
            if self.buf.len() > MAX_PART_HEAD {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    "the multipart part's head is too long",
                ));
            }
            if !self.fill()? {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "the body ended inside the multipart part's head",
                ));
            }
        }
    }
}

impl<R: Framed> FirstPart<'_, R> {
    /// At the delimiter after the content: it must be the closing one
    /// (`--`), and the body must then end whole within a little more (the
    /// epilogue). Only then does the part end (Ok(0)), so that a form cut
    /// here, or one with a second part, never completes a file: the error
    /// reaches the agent session before its end is sent.
    fn close(&mut self) -> std::io::Result<usize> {
        let need = self.delimiter.len() + 2;
        while self.buf.len() < need {
            if !self.fill()? {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "the body ended inside the multipart boundary",
                ));
            }
        }
        if &self.buf[self.delimiter.len()..need] != b"--" {
            return Err(Error::new(
                ErrorKind::InvalidData,
                "one file per form: a second part followed the first",
            ));
        }
        let mut rest = self.buf.len() - need;
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            rest += n;
            if rest > MAX_PART_HEAD {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    "too much after the multipart's closing boundary",
                ));
            }
        }
        if !self.inner.complete() {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "the body did not end whole after the closing boundary",
            ));
        }
        self.buf.clear();
        self.closed = true;
        Ok(0)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl<R: Framed> Read for FirstPart<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if !self.started {
            self.start()?;
        }
        loop {
            if self.closed {
                return Ok(0);
            }
            if let Some(at) = find(&self.buf, &self.delimiter) {
                if at == 0 {
                    return self.close();
                }
                let n = at.min(out.len());
                out[..n].copy_from_slice(&self.buf[..n]);
                self.buf.drain(..n);
                return Ok(n);
            }
            // Everything but a tail that could begin the delimiter is
            // content for sure.
            let safe = self.buf.len().saturating_sub(self.delimiter.len() - 1);
            if safe > 0 {
                let n = safe.min(out.len());
                out[..n].copy_from_slice(&self.buf[..n]);
                self.buf.drain(..n);
                return Ok(n);
            }
            if !self.fill()? {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "the body ended before the multipart's closing boundary",
                ));
            }
        }
    }
}

impl<R: Framed> Framed for FirstPart<'_, R> {
    fn complete(&self) -> bool {
        self.closed && self.inner.complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body in memory that ended whole.
    struct Whole<'a>(&'a [u8]);

    impl Read for Whole<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            // One byte at a time: the delimiter split across every read.
            let n = buf.len().min(self.0.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    impl Framed for Whole<'_> {
        fn complete(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn part(body: &[u8]) -> (std::io::Result<Vec<u8>>, bool) {
        let mut inner = Whole(body);
        let mut p = FirstPart::new(&mut inner, "xyz");
        let mut out = Vec::new();
        let r = p.read_to_end(&mut out).map(|_| out);
        let complete = p.complete();
        (r, complete)
    }

    #[test]
    fn the_first_part_is_passed_on_and_only_a_closed_one_is_complete() {
        assert_eq!(
            boundary("multipart/form-data; boundary=xyz").as_deref(),
            Some("xyz")
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("application/json"), None);
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nline one\r\n--x and --xy\r\n--xyz--\r\n";
        let (r, complete) = part(body);
        assert_eq!(r.expect("read"), b"line one\r\n--x and --xy");
        assert!(complete);
        // Cut before the closing boundary: an error, never complete.
        let (r, complete) = part(&body[..body.len() - 12]);
        assert!(r.is_err() && !complete);
        // Not multipart at all.
        let (r, _) = part(b"plain bytes\r\n\r\n");
        assert!(r.is_err());
        // A second part: refused, not cut to the first.
        let two = b"--xyz\r\n\r\none\r\n--xyz\r\n\r\ntwo\r\n--xyz--\r\n";
        let (r, complete) = part(two);
        assert!(r.is_err() && !complete, "a second part");
        // A delimiter and then the body cut: never complete.
        let (r, complete) = part(b"--xyz\r\n\r\none\r\n--xy");
        assert!(r.is_err() && !complete);
    }
}
