//! Every way writing or reading a backup fails, in an operator's words.

use crate::slot::SlotKind;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "not a Paddock backup (it does not start with {:?})",
        crate::MAGIC_TEXT
    )]
    NotABackup,
    #[error("this backup is format {found}; this box reads format {}: it was made by another Paddock version", crate::FORMAT)]
    UnsupportedVersion { found: String },
    #[error("the backup's header is malformed: {0}")]
    Header(String),
    #[error("the backup is truncated: it ends after {at} bytes, {what}")]
    Truncated { at: u64, what: &'static str },
    #[error("the backup is damaged or was altered: chunk {chunk} (at byte {at}) fails its authentication check, or the header it is bound to was changed")]
    Damaged { chunk: u64, at: u64 },
    #[error("the backup has no {kind} key slot (its slots: {have})")]
    NoSlot { kind: SlotKind, have: String },
    #[error("{}", wrong_key(*.0))]
    WrongKey(SlotKind),
    #[error("bad entry name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("over the backup format's limit: {0}")]
    OverCap(String),
    #[error("entry {name:?} was announced as {said} bytes but its reader gave {gave}")]
    EntryLength {
        name: String,
        said: u64,
        gave: String,
    },
    #[error("the key slots asked for: {0}")]
    Slots(String),
    #[error("the backup's contents are malformed although they authenticate (made by a faulty writer, or by someone holding a key): {0}")]
    Malformed(String),
    #[error("there is data after the end of the backup (at byte {at})")]
    Trailing { at: u64 },
    #[error("an earlier error stopped this backup; it cannot go on")]
    Stopped,
    #[error("the system's random number generator failed")]
    Random,
    #[error("encryption failed: {0}")]
    Crypto(&'static str),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn wrong_key(kind: SlotKind) -> &'static str {
    match kind {
        SlotKind::Tpm => {
            "this box's TPM (in this boot state) did not make this backup \
             (another box, a reset TPM, or changed firmware or boot measurements; \
             use the recovery secret), or its TPM key slot is damaged"
        }
        SlotKind::Recovery => {
            "the recovery secret does not open this backup \
             (a different secret, or its recovery key slot is damaged)"
        }
    }
}

/// Wraps an I/O error with what was being done when it happened.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

impl BackupError {
    /// The error an entry's `Read` gave, if it came from the backup itself
    /// rather than from the I/O under it: lets a caller that copied an
    /// entry with `std::io::copy` report the backup's own words.
    pub fn from_io(e: std::io::Error) -> BackupError {
        if e.get_ref().is_some_and(|inner| inner.is::<BackupError>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(b) = inner.downcast::<BackupError>() {
                    return *b;
                }
            }
            return BackupError::Stopped;
        }
        BackupError::Io {
            what: "reading an entry".into(),
            source: e,
        }
    }

    /// As an `io::Error` for `Read` impls, recoverable with `from_io`.
    pub(crate) fn into_io(self) -> std::io::Error {
        let kind = match &self {
            BackupError::Io { source, .. } => source.kind(),
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, self)
    }
}
