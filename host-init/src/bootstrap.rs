//! The bootstrap admin credential: made on first boot and shown once on the
//! console, or chosen at image build time (only its SHA-256 travels in the
//! image's configuration). Stored only as a hash: here, as the marker that
//! it exists, and in the state database as the bootstrap admin token.

use crate::control::tokens::{hash_secret, random_hex};
use std::path::Path;

pub const HASH_FILE: &str = "bootstrap-admin.sha256";

#[derive(Debug, thiserror::Error)]
#[error("bootstrap credential: {0}")]
pub struct BootstrapError(#[from] std::io::Error);

/// What first boot did about the credential.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Not a first boot: it exists already.
    Exists,
    /// Made now; the secret is to be shown once.
    Made { secret: String, hash: String },
    /// Chosen at build time; nothing to show.
    Given { hash: String },
}

/// Makes (or takes from the build, when `given_hash` is set) the bootstrap
/// admin credential on first boot.
pub fn ensure(state_dir: &Path, given_hash: Option<&str>) -> Result<Bootstrap, BootstrapError> {
    let path = state_dir.join(HASH_FILE);
    if path.exists() {
        return Ok(Bootstrap::Exists);
    }
    let made = match given_hash {
        Some(h) => Bootstrap::Given {
            hash: h.to_string(),
        },
        None => {
            let secret = format!("pdk_admin_{}", random_hex(32));
            let hash = hash_secret(&secret);
            Bootstrap::Made { secret, hash }
        }
    };
    let (Bootstrap::Given { hash } | Bootstrap::Made { hash, .. }) = &made else {
        return Ok(made);
    };
    crate::fsutil::write_private(&path, hash.as_bytes())?;
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_or_taken_from_the_build() {
        let dir = std::env::temp_dir().join(format!("paddock-bootstrap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let Bootstrap::Made { secret, hash } = ensure(&dir, None).expect("first") else {
            panic!("first boot makes one");
        };
        assert!(secret.starts_with("pdk_admin_"));
        assert_eq!(hash, hash_secret(&secret));
        assert_eq!(ensure(&dir, None).expect("second"), Bootstrap::Exists);

        std::fs::remove_dir_all(&dir).expect("clean");
        std::fs::create_dir_all(&dir).expect("dir");
        let given = hash_secret("pdk_admin_chosen_by_the_operator");
        assert_eq!(
            ensure(&dir, Some(&given)).expect("given"),
            Bootstrap::Given {
                hash: given.clone()
            }
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(HASH_FILE)).expect("marker"),
            given
        );
        assert_eq!(
            ensure(&dir, Some(&given)).expect("again"),
            Bootstrap::Exists
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
