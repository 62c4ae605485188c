//! The bootstrap admin credential: made on first boot, shown once on the
//! console, stored only as a SHA-256 hash (here, as the marker that it was
//! made, and in the state database as the bootstrap admin token).

use crate::control::tokens::{hash_secret, random_hex};
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
    let credential = format!("pdk_admin_{}", random_hex(32));
    crate::fsutil::write_private(&path, hash_secret(&credential).as_bytes())?;
    Ok(Some(credential))
}
