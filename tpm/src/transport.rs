//! How command bytes reach a TPM: the kernel's resource-managed character
//! device on the appliance, or swtpm's socket in tests.

use crate::TpmError;
use std::io::{Read, Write};
use std::path::Path;

/// Largest response we accept; TPM 2.0 buffers are at most a few KiB.
pub const MAX_RESPONSE: usize = 8192;

pub trait Transport: Send {
    /// Sends one command and returns the TPM's whole response.
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError>;
}

/// /dev/tpmrm0: one write per command, one read per response (the
/// kernel's resource manager swaps contexts, so transient objects and
/// sessions of other users never collide with ours).
pub struct Device {
    file: std::fs::File,
}

impl Device {
    pub fn open(path: &Path) -> Result<Device, TpmError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| TpmError::Transport(format!("opening {}: {e}", path.display())))?;
        Ok(Device { file })
    }
}

impl Transport for Device {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        self.file
            .write_all(command)
            .map_err(|e| TpmError::Transport(format!("writing a command: {e}")))?;
        let mut buf = vec![0u8; MAX_RESPONSE];
        let n = self
            .file
            .read(&mut buf)
            .map_err(|e| TpmError::Transport(format!("reading a response: {e}")))?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// A stream that carries raw TPM commands, each answered by one response
/// whose header says its length: swtpm's `--server type=unixio`.
pub struct Stream<S: Read + Write + Send> {
    stream: S,
}

impl Stream<std::os::unix::net::UnixStream> {
    pub fn connect(path: &Path) -> Result<Self, TpmError> {
        let stream = std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| TpmError::Transport(format!("connecting to {}: {e}", path.display())))?;
        Ok(Stream { stream })
    }
}

impl<S: Read + Write + Send> Transport for Stream<S> {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        let fail = |what: &str, e: std::io::Error| TpmError::Transport(format!("{what}: {e}"));
        self.stream
            .write_all(command)
            .map_err(|e| fail("writing a command", e))?;
        let mut head = [0u8; 10];
        self.stream
            .read_exact(&mut head)
            .map_err(|e| fail("reading a response header", e))?;
        let size = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        if !(10..=MAX_RESPONSE).contains(&size) {
            return Err(TpmError::Malformed(format!(
                "response header announces {size} bytes"
            )));
        }
        let mut buf = head.to_vec();
        buf.resize(size, 0);
        self.stream
            .read_exact(&mut buf[10..])
            .map_err(|e| fail("reading a response body", e))?;
        Ok(buf)
    }
}
