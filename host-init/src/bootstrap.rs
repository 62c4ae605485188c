//! The bootstrap admin credential: made on first boot, shown once on the
//! console, stored only as a SHA-256 hash. (The API that accepts it comes
//! with tokens; this is where it is born.)

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const HASH_FILE: &str = "bootstrap-admin.sha256";

#[derive(Debug, thiserror::Error)]
#[error("bootstrap credential: {0}")]
pub struct BootstrapError(#[from] std::io::Error);

/// Returns the new credential when this boot created it.
pub fn ensure(state_dir: &Path) -> Result<Option<String>, BootstrapError> {
    let path = state_dir.join(HASH_FILE);
    if path.exists() {
        return Ok(None);
    }
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let credential = format!("pdk_admin_{secret}");
    let hash: String = Sha256::digest(credential.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(hash.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(Some(credential))
}
