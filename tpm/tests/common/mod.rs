//! What the swtpm tests share: a swtpm of their own, and unwrapping with
//! the TPM's word on what failed.
#![allow(dead_code)]

use paddock_tpm::transport::Stream;
use paddock_tpm::{Tpm, TpmError};
use std::path::{Path, PathBuf};

/// swtpm in a directory of its own, removed with it.
pub struct Swtpm {
    inner: Option<paddock_tpm::swtpm::Swtpm>,
    dir: PathBuf,
}

impl Swtpm {
    pub fn start(name: &str) -> Swtpm {
        let dir = std::env::temp_dir().join(format!("paddock-swtpm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let inner = paddock_tpm::swtpm::Swtpm::start(&dir).unwrap_or_else(|e| panic!("{e}"));
        Swtpm {
            inner: Some(inner),
            dir,
        }
    }

    pub fn tpm(&self) -> Tpm {
        Tpm::new(Box::new(
            Stream::connect(&self.path().join("data")).expect("connect"),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        drop(self.inner.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const INDEX: u32 = 0x0150_0100;

pub fn ok<T>(r: Result<T, TpmError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}
