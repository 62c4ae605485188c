//! TPM 2.0 marshalling: big-endian integers and size-prefixed buffers.
//! The reader never trusts a length it is given: every read is checked
//! against what is left, so a broken or hostile TPM gets an error, not a
//! panic.

use crate::TpmError;

#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// A TPM2B: u16 size, then the bytes. Callers keep buffers far below
    /// 64 KiB (the TPM's own limit is a few KiB), so the size fits.
    pub fn tpm2b(&mut self, v: &[u8]) -> &mut Self {
        self.u16(v.len().min(u16::MAX as usize) as u16);
        self.bytes(&v[..v.len().min(u16::MAX as usize)])
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    /// What is being parsed, for the error message.
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, at: 0, what }
    }
    fn short(&self, need: usize) -> TpmError {
        TpmError::Malformed(format!(
            "{}: needs {need} more byte(s) at offset {}, has {}",
            self.what,
            self.at,
            self.left()
        ))
    }
    pub fn left(&self) -> usize {
        self.buf.len() - self.at
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], TpmError> {
        if self.left() < n {
            return Err(self.short(n));
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, TpmError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, TpmError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, TpmError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn tpm2b(&mut self) -> Result<&'a [u8], TpmError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    /// A TPM2B whose size may not exceed `max` (a digest, a nonce).
    pub fn tpm2b_max(&mut self, max: usize) -> Result<&'a [u8], TpmError> {
        let v = self.tpm2b()?;
        if v.len() > max {
            return Err(TpmError::Malformed(format!(
                "{}: a {}-byte field where at most {max} fit",
                self.what,
                v.len()
            )));
        }
        Ok(v)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.at..];
        self.at = self.buf.len();
        s
    }
    /// Fails unless everything was consumed: trailing bytes mean the reply
    /// is not what we think it is.
    pub fn finish(&self) -> Result<(), TpmError> {
        if self.left() != 0 {
            return Err(TpmError::Malformed(format!(
                "{}: {} unexpected trailing byte(s)",
                self.what,
                self.left()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written() {
        let mut w = Writer::new();
        w.u8(1).u16(0x0203).u32(0x0405_0607).tpm2b(b"abc");
        let v = w.into_vec();
        let mut r = Reader::new(&v, "t");
        assert_eq!(r.u8().ok(), Some(1));
        assert_eq!(r.u16().ok(), Some(0x0203));
        assert_eq!(r.u32().ok(), Some(0x0405_0607));
        assert_eq!(r.tpm2b().ok(), Some(&b"abc"[..]));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn a_length_past_the_end_is_an_error() {
        let v = [0x00, 0x10, 1, 2];
        let mut r = Reader::new(&v, "reply");
        let e = r.tpm2b().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("needs 16 more"), "{e}");
        let mut r = Reader::new(&[0, 3, 1, 2, 3], "reply");
        assert!(r.tpm2b_max(2).is_err());
    }
}
