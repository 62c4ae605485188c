//! Length-prefixed frames of postcard-encoded messages.

use crate::MAX_FRAME;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unknown operation (message tag {0})")]
    UnknownOperation(u64),
    #[error("encoding a message: {0}")]
    Encode(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Whether the peer can still be told what went wrong on this connection.
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self,
            FrameError::TooLarge(_) | FrameError::Malformed(_) | FrameError::UnknownOperation(_)
        )
    }
}

/// Writes one message as a frame and flushes.
pub fn write_frame<T: Serialize, W: Write>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let body = postcard::to_stdvec(msg).map_err(|e| FrameError::Encode(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame's bytes. A clean EOF before the length is `Closed`.
pub fn read_frame_bytes<R: Read>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Malformed("truncated frame length".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Malformed(format!("frame truncated (expected {len} bytes)"))
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(body)
}

/// Decodes a message; `variants` is how many variants the enum has, so an
/// out-of-range tag is reported as an unknown operation, not as garbage.
pub fn decode<T: DeserializeOwned>(body: &[u8], variants: u64) -> Result<T, FrameError> {
    match postcard::from_bytes::<T>(body) {
        Ok(m) => Ok(m),
        Err(e) => match leading_varint(body) {
            Some(tag) if tag >= variants => Err(FrameError::UnknownOperation(tag)),
            _ => Err(FrameError::Malformed(e.to_string())),
        },
    }
}

/// Reads and decodes one message.
pub fn read_frame<T: DeserializeOwned + crate::messages::Tagged, R: Read>(
    r: &mut R,
) -> Result<T, FrameError> {
    let body = read_frame_bytes(r)?;
    decode(&body, T::VARIANTS)
}

fn leading_varint(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{AgentMsg, HostMsg};

    #[test]
    fn round_trips_and_rejects_bad_frames() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &HostMsg::Stdin(b"hello".to_vec())).expect("write");
        let m: HostMsg = read_frame(&mut buf.as_slice()).expect("read");
        assert_eq!(m, HostMsg::Stdin(b"hello".to_vec()));

        let big = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_frame::<HostMsg, _>(&mut &big[..]),
            Err(FrameError::TooLarge(_))
        ));
        let mut truncated = 10u32.to_le_bytes().to_vec();
        truncated.extend_from_slice(&[1, 2]);
        assert!(matches!(
            read_frame::<HostMsg, _>(&mut truncated.as_slice()),
            Err(FrameError::Malformed(_))
        ));
        let mut unknown = 1u32.to_le_bytes().to_vec();
        unknown.push(120);
        assert!(matches!(
            read_frame::<HostMsg, _>(&mut unknown.as_slice()),
            Err(FrameError::UnknownOperation(120))
        ));
        assert!(matches!(
            read_frame::<AgentMsg, _>(&mut &[][..]),
            Err(FrameError::Closed)
        ));
    }
}
