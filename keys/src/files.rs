//! The key store's files: written whole (temporary name, fsync, rename)
//! and the directory synced after, so a crash leaves the old file or the
//! new one and the rename itself survives power loss.

use super::KeyError;
use std::path::Path;

pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), KeyError> {
    crate::private_file::write_private(path, data).map_err(|e| KeyError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source: e,
    })?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

pub fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| KeyError::Io {
            what: "syncing",
            path: dir.to_path_buf(),
            source: e,
        })
}
