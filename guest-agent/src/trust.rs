//! The appliance's egress CA: its egress proxy terminates TLS for some
//! hosts with certificates that CA signs, so every workspace must trust it.
//!
//! The host sends it (`TrustCa`) after every `Ready`. The agent writes it
//! where `update-ca-certificates` finds local CAs, so a bundle rebuilt
//! inside the workspace keeps it, and adds it to the system bundle itself
//! as a marked block: the next call (after a restart on the same disk,
//! perhaps from another appliance with another CA) replaces that block
//! rather than piling up CAs. From then on every command the agent starts
//! is pointed at the bundle (`ENV`), for the tools that ignore the
//! system's default paths.

use crate::conn::{Conn, ConnError};
use crate::info;
use paddock_proto::{AgentMsg, ErrorKind, MAX_CA_PEM};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Where local CAs go on Debian-like systems (`update-ca-certificates`
/// reads every `*.crt` here).
pub const CA_FILE: &str = "/usr/local/share/ca-certificates/paddock-egress.crt";
/// The system bundle OpenSSL, Go, curl and most distributions read.
pub const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The lines around our block in the bundle. PEM readers skip text
/// outside BEGIN/END lines, so the markers are harmless to them.
pub const MARK_BEGIN: &str = "# paddock egress CA (installed by paddock-agent)";
pub const MARK_END: &str = "# end of paddock egress CA";

const BEGIN_CERT: &str = "-----BEGIN CERTIFICATE-----";
const END_CERT: &str = "-----END CERTIFICATE-----";

/// What every command gets once the CA is installed (before the request's
/// own variables, which may override them): tools that bring their own CA
/// store (Python's requests, Node) or may not look at the system's.
pub const ENV: [(&str, &str); 4] = [
    ("SSL_CERT_FILE", BUNDLE),
    ("REQUESTS_CA_BUNDLE", BUNDLE),
    ("CURL_CA_BUNDLE", BUNDLE),
    // Node adds these to its own store: the CA alone, not the bundle.
    ("NODE_EXTRA_CA_CERTS", CA_FILE),
];

/// Set once a `TrustCa` succeeded in this boot.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Installs read, change and replace the bundle: one at a time, or two
/// at once could each drop the other's block.
static INSTALLING: Mutex<()> = Mutex::new(());

/// Whether commands started now should be pointed at the CA.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst)
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("the CA text is {0} bytes; at most {MAX_CA_PEM} are accepted")]
    TooLarge(usize),
    #[error("no certificate: expected {BEGIN_CERT} ... {END_CERT} blocks")]
    NoCertificate,
    #[error("line {0}: only certificate blocks and whitespace may be sent")]
    Stray(usize),
    #[error("line {0}: not base64 inside a certificate block")]
    NotBase64(usize),
    #[error("line {0}: a certificate block with nothing in it")]
    Empty(usize),
    #[error("the certificate block that starts on line {0} never ends")]
    Unterminated(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(transparent)]
    Invalid(#[from] PemError),
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl TrustError {
    /// How the host hears of it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TrustError::Invalid(_) => ErrorKind::InvalidRequest,
            TrustError::Io { source, .. } => crate::files::io_kind(source),
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TrustError {
    let path = path.to_path_buf();
    move |source| TrustError::Io { what, path, source }
}

/// Checks that `pem` is certificate blocks and whitespace only, and
/// returns them normalized: each line trimmed, no blank lines, a newline
/// after each. Only the shape is checked (the base64 is not decoded): a
/// certificate OpenSSL cannot read is skipped by it, and the text can
/// never smuggle other lines (such as our markers) into the bundle.
pub fn normalize(pem: &str) -> Result<String, PemError> {
    if pem.len() > MAX_CA_PEM {
        return Err(PemError::TooLarge(pem.len()));
    }
    let mut out = String::with_capacity(pem.len());
    // The line the open block started on, and whether it has contents.
    let mut open: Option<(usize, bool)> = None;
    let mut blocks = 0;
    for (i, line) in pem.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        match open {
            None if line.is_empty() => {}
            None if line == BEGIN_CERT => {
                open = Some((n, false));
                out.push_str(BEGIN_CERT);
                out.push('\n');
            }
            None => return Err(PemError::Stray(n)),
            Some(_) if line.is_empty() => {}
            Some((_, false)) if line == END_CERT => return Err(PemError::Empty(n)),
            Some(_) if line == END_CERT => {
                open = None;
                blocks += 1;
                out.push_str(END_CERT);
                out.push('\n');
            }
            Some((start, _)) => {
                let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
                if !line.chars().all(base64) {
                    return Err(PemError::NotBase64(n));
                }
                open = Some((start, true));
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if let Some((start, _)) = open {
        return Err(PemError::Unterminated(start));
    }
    if blocks == 0 {
        return Err(PemError::NoCertificate);
    }
    Ok(out)
}

/// The bundle `old` (None: there is none) with our block, holding the
/// normalized `certs`, at its end instead of wherever an earlier call
/// put one. Everything else is kept as it was. A begin marker without
/// its end (only a hand edit makes one: the bundle is replaced whole)
/// runs to the end of the text, since we always append ours last.
pub fn bundle_with(old: Option<&str>, certs: &str) -> String {
    let mut out = String::with_capacity(old.map_or(0, str::len) + certs.len() + 100);
    let mut inside = false;
    for line in old.unwrap_or("").split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if inside {
            inside = bare != MARK_END;
        } else if bare == MARK_BEGIN {
            inside = true;
        } else {
            out.push_str(line);
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(MARK_BEGIN);
    out.push('\n');
    out.push_str(certs);
    out.push_str(MARK_END);
    out.push('\n');
    out
}

/// Replaces `path` with `contents`, mode 0644, through a temporary file
/// in the same directory, so a reader (or a crash) sees the old file or
/// the new one, never half of one.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), TrustError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io("writing", path)(std::io::Error::other(
            "not a file path",
        )));
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    // A fixed name: installs are serialized, and one a crash left behind
    // is simply replaced (the directories are root's alone).
    let tmp = dir.join(format!(".{}.paddock-tmp", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(contents)?;
            // The umask may have taken bits from the mode asked for.
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io("writing", path))
}

/// Validates `pem`, writes it to `ca_file` and puts it in `bundle`. A
/// bundle that is a symlink (as some distributions make it) is changed
/// where it points, so its other names see the CA too.
pub fn install(ca_file: &Path, bundle: &Path, pem: &str) -> Result<usize, TrustError> {
    let certs = normalize(pem)?;
    let count = certs.matches(BEGIN_CERT).count();
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    write_atomic(ca_file, certs.as_bytes())?;
    let target = match std::fs::canonicalize(bundle) {
        Ok(t) => t,
        // Missing, or a dangling symlink: a new file at its name.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bundle.to_path_buf(),
        Err(e) => return Err(io("resolving", bundle)(e)),
    };
    let old = match std::fs::read(&target) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("reading", &target)(e)),
    };
    // Bundles are ASCII PEM, at most with UTF-8 comments; anything else
    // could only be in a comment, where a replacement character is
    // harmless, and refusing would leave the workspace without its CA.
    let old = old.as_deref().map(String::from_utf8_lossy);
    let new = bundle_with(old.as_deref(), &certs);
    write_atomic(&target, new.as_bytes())?;
    Ok(count)
}

/// Serves `TrustCa`: `Done` once the CA is in place.
pub fn trust(conn: &Conn, pem: &str) -> Result<(), ConnError> {
    match install(Path::new(CA_FILE), Path::new(BUNDLE), pem) {
        Ok(count) => {
            INSTALLED.store(true, Ordering::SeqCst);
            info!("trusting the egress CA ({count} certificates)");
            conn.send(&AgentMsg::Done)
        }
        Err(e) => conn.error(e.kind(), format!("installing the CA: {e}")),
    }
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
