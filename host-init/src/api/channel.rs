//! Messages on the channel between the API process and host-init. One JSON
//! object per line, each line capped, so a compromised API process can
//! neither make the privileged side allocate without bound nor confuse it
//! with a malformed message.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// Longest line either side accepts.
pub const MAX_LINE: usize = 64 * 1024;
/// The descriptor the API process finds the channel on.
pub const CHANNEL_FD: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("channel closed")]
    Closed,
    #[error("message longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// host-init → API, once at start.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Init {
    pub cert_pem: String,
    pub key_pem: String,
    pub port: u16,
}

/// API → host-init, once bound (or failed).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Started {
    pub port: Option<u16>,
    pub error: Option<String>,
}

/// API → host-init.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
}

/// host-init → API.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatusReply {
    pub version: String,
    pub state: String,
    pub workspaces: u32,
    pub uptime_s: u64,
}

pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), ChannelError> {
    let mut line = serde_json::to_vec(msg).map_err(|e| ChannelError::Malformed(e.to_string()))?;
    if line.len() >= MAX_LINE {
        return Err(ChannelError::TooLong);
    }
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()?;
    Ok(())
}

pub fn recv<T: for<'de> Deserialize<'de>>(r: &mut impl BufRead) -> Result<T, ChannelError> {
    let mut line = Vec::new();
    let n = std::io::Read::take(&mut *r, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(ChannelError::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(if n > MAX_LINE {
            ChannelError::TooLong
        } else {
            ChannelError::Closed
        });
    }
    serde_json::from_slice(&line).map_err(|e| ChannelError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn round_trip_and_hostile_lines() {
        let mut buf = Vec::new();
        send(&mut buf, &Request::Status).expect("send");
        let back: Request = recv(&mut BufReader::new(&buf[..])).expect("recv");
        assert_eq!(back, Request::Status);

        let r: Result<Request, _> = recv(&mut BufReader::new(&b"{\"op\":\"format_disk\"}\n"[..]));
        assert!(matches!(r, Err(ChannelError::Malformed(_))));
        let long = vec![b'x'; MAX_LINE + 10];
        let r: Result<Request, _> = recv(&mut BufReader::new(&long[..]));
        assert!(matches!(r, Err(ChannelError::TooLong)));
        let r: Result<Request, _> = recv(&mut BufReader::new(&b""[..]));
        assert!(matches!(r, Err(ChannelError::Closed)));
    }
}
