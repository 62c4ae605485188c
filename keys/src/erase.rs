//! Erasure: a key made unrecoverable by rotating the epoch every other
//! wrapped key is re-wrapped under, and a rotation cut short by a crash
//! finished (or undone) at the next open.

use super::*;

impl KeyStore {
    /// Makes `name`'s key unrecoverable: rotates the epoch, re-wrapping
    /// every other key under the new one, then drops `name`'s wrapped key.
    /// Old copies of any wrapped key need the old epoch, which the TPM
    /// overwrote. A failure before the TPM write changes nothing; after it,
    /// boot finishes the renames (`finish_interrupted_rotation`).
    pub fn erase(&self, name: &str) -> Result<(), KeyError> {
        let mut state = self.lock();
        let State::Ready { root, epoch } = &mut *state else {
            return Err(match &*state {
                State::Locked { why, .. } => KeyError::Locked(why.clone()),
                State::Unavailable(why) => KeyError::Unavailable(why.clone()),
                State::Ready { .. } => KeyError::NoKey(name.into()),
            });
        };
        let target = self.key_path(name);
        if !target.exists() {
            return Ok(());
        }
        let next = Epoch::fresh(epoch.generation + 1)?;
        let mut staged = Vec::new();
        let result = (|| {
            for entry in std::fs::read_dir(&self.dir).map_err(|e| KeyError::Io {
                what: "listing",
                path: self.dir.clone(),
                source: e,
            })? {
                let Ok(entry) = entry else { continue };
                let file_name = entry.file_name().to_string_lossy().into_owned();
                let Some(other) = file_name.strip_suffix(".key") else {
                    continue;
                };
                if other == name {
                    continue;
                }
                let path = entry.path();
                let file = std::fs::read(&path).map_err(|e| KeyError::Io {
                    what: "reading",
                    path: path.clone(),
                    source: e,
                })?;
                // Disk keys and the recovery backup key (a shorter one)
                // alike.
                let carried = wrap::rewrap(
                    &epoch.secret,
                    epoch.generation,
                    &next.secret,
                    next.generation,
                    other,
                    &file,
                )
                .map_err(|source| KeyError::Wrap {
                    name: other.into(),
                    source,
                })?;
                let rewrapped = match carried {
                    wrap::Rewrapped::Done(r) => r,
                    wrap::Rewrapped::Unreadable(e) => {
                        // Unreadable already (a leftover of an earlier
                        // erase): nothing to carry over.
                        warn!("key store: {other}: {e}; dropped");
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                };
                let new_path = path.with_extension("key.new");
                private_file::write_private(&new_path, &rewrapped).map_err(|e| KeyError::Io {
                    what: "writing",
                    path: new_path.clone(),
                    source: e,
                })?;
                staged.push((new_path, path));
            }
            files::sync_dir(&self.dir)?;
            root.write(&next)
        })();
        if let Err(e) = result {
            for (new, _) in &staged {
                let _ = std::fs::remove_file(new);
            }
            return Err(e);
        }
        // The point of no return has passed: the old epoch is gone.
        *epoch = next;
        for (new, old) in &staged {
            if let Err(e) = std::fs::rename(new, old) {
                warn!("key store: renaming {}: {e}", new.display());
            }
        }
        let _ = std::fs::remove_file(&target);
        let _ = files::sync_dir(&self.dir);
        info!(
            "key store: {name} erased; epoch now {}, {} key(s) re-wrapped",
            epoch.generation,
            staged.len()
        );
        Ok(())
    }

    /// After a crash mid-rotation: staged files of the current generation
    /// replace their originals; staged files of the previous one (the TPM
    /// write never happened) are dropped.
    pub(crate) fn finish_interrupted_rotation(&self) {
        let state = self.lock();
        let State::Ready { epoch, .. } = &*state else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.to_string_lossy().ends_with(".key.new") {
                continue;
            }
            let current = std::fs::read(&path)
                .ok()
                .and_then(|f| wrap::generation_of(&f))
                == Some(epoch.generation);
            let done = if current {
                std::fs::rename(&path, path.with_extension(""))
            } else {
                std::fs::remove_file(&path)
            };
            info!(
                "key store: finished an interrupted rotation for {} ({})",
                path.display(),
                if done.is_ok() { "kept" } else { "failed" }
            );
        }
        let _ = files::sync_dir(&self.dir);
    }
}
