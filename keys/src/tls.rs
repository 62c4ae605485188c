//! The API's TLS identity: a self-signed certificate made on first boot and
//! kept on the data partition; clients pin its SHA-256 fingerprint, which
//! the status screen shows.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("making the certificate: {0}")]
    Generate(String),
    #[error("{0} holds no PEM certificate")]
    BadPem(PathBuf),
}

pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    /// Upper-case hex pairs joined by ':' (as `openssl x509 -fingerprint`).
    pub fingerprint: String,
}

pub fn fingerprint(cert_der: &[u8]) -> String {
    Sha256::digest(cert_der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.to_vec())
}

fn write_private(path: &Path, data: &str) -> Result<(), TlsError> {
    crate::private_file::write_private(path, data.as_bytes()).map_err(|source| TlsError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    })
}

/// The box's domain (config `api.domain`), set once at boot: certificates
/// made from then on name it and `*.{domain}` too.
static DOMAIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn set_domain(domain: &str) {
    let _ = DOMAIN.set(domain.to_string());
}

/// The names a new certificate holds.
fn names() -> Vec<String> {
    let mut names = vec!["paddock".to_string(), "localhost".to_string()];
    if let Some(d) = DOMAIN.get() {
        names.push(d.clone());
        names.push(format!("*.{d}"));
    }
    names
}

/// Whether a certificate names `*.{domain}` (a DNS name is stored as its
/// ASCII bytes in the DER, so finding them is exact enough to decide
/// whether to tell the owner to rotate).
pub fn names_domain(cert_pem: &str, domain: &str) -> bool {
    let wanted = format!("*.{domain}");
    pem_to_der(cert_pem).is_some_and(|der| {
        der.windows(wanted.len())
            .any(|w| w.eq_ignore_ascii_case(wanted.as_bytes()))
    })
}

/// Makes a fresh self-signed identity (ECDSA P-256).
pub fn generate() -> Result<Identity, TlsError> {
    let ck = rcgen::generate_simple_self_signed(names())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(Identity {
        fingerprint: fingerprint(ck.cert.der()),
        cert_pem: ck.cert.pem(),
        key_pem: ck.key_pair.serialize_pem(),
    })
}

const CERT_FILE: &str = "api-cert.pem";
const KEY_FILE: &str = "api-key.pem";
/// Suffix of a rotation's new files until both are in place.
const NEW: &str = "new";

/// Replaces the identity in `dir` with a fresh one (an operator's rotation).
/// Both new files are written and synced under `.new` names before either
/// replaces the old one; a rotation cut short is finished by the next
/// `load_or_create`, so the key and certificate never come from different
/// identities.
pub fn rotate(dir: &Path) -> Result<Identity, TlsError> {
    let id = generate()?;
    write_private(
        &dir.join(KEY_FILE).with_extension(format!("pem.{NEW}")),
        &id.key_pem,
    )?;
    write_private(
        &dir.join(CERT_FILE).with_extension(format!("pem.{NEW}")),
        &id.cert_pem,
    )?;
    finish_rotation(dir)?;
    Ok(id)
}

/// Moves a rotation's `.new` files into place (the key first; the
/// certificate's `.new` file is what marks a rotation in progress).
fn finish_rotation(dir: &Path) -> Result<(), TlsError> {
    let cert_new = dir.join(CERT_FILE).with_extension(format!("pem.{NEW}"));
    if !cert_new.exists() {
        return Ok(());
    }
    for file in [KEY_FILE, CERT_FILE] {
        let from = dir.join(file).with_extension(format!("pem.{NEW}"));
        let to = dir.join(file);
        if from.exists() {
            std::fs::rename(&from, &to).map_err(|source| TlsError::Io {
                what: "renaming",
                path: from.clone(),
                source,
            })?;
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Loads the identity from `dir`, making one on first use.
pub fn load_or_create(dir: &Path) -> Result<(Identity, bool), TlsError> {
    finish_rotation(dir)?;
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TlsError::Io {
                what: "reading",
                path: p.to_path_buf(),
                source,
            })
        };
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let der = pem_to_der(&cert_pem).ok_or_else(|| TlsError::BadPem(cert_path.clone()))?;
        return Ok((
            Identity {
                fingerprint: fingerprint(&der),
                cert_pem,
                key_pem,
            },
            false,
        ));
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        what: "creating",
        path: dir.to_path_buf(),
        source,
    })?;
    let id = generate()?;
    write_private(&key_path, &id.key_pem)?;
    write_private(&cert_path, &id.cert_pem)?;
    Ok((id, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_replaces_both_files_and_an_interrupted_one_completes() {
        let dir = std::env::temp_dir().join(format!("paddock-tls-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (first, _) = load_or_create(&dir).expect("first");
        let second = rotate(&dir).expect("rotate");
        assert_ne!(first.fingerprint, second.fingerprint);
        let (loaded, fresh) = load_or_create(&dir).expect("load");
        assert!(!fresh);
        assert_eq!(loaded.fingerprint, second.fingerprint);
        assert_eq!(loaded.key_pem, second.key_pem);
        // Cut short after the key moved: the next load finishes the move.
        let third = generate().expect("generate");
        std::fs::write(dir.join(KEY_FILE), &third.key_pem).expect("key");
        std::fs::write(dir.join("api-cert.pem.new"), &third.cert_pem).expect("cert");
        let (loaded, _) = load_or_create(&dir).expect("load");
        assert_eq!(loaded.fingerprint, third.fingerprint);
        assert_eq!(loaded.key_pem, third.key_pem);
        assert!(!dir.join("api-cert.pem.new").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_domain_set_at_boot_is_named_by_new_certificates() {
        let before = generate().expect("generate");
        assert!(!names_domain(&before.cert_pem, "paddock.test"));
        set_domain("paddock.test");
        let after = generate().expect("generate");
        assert!(names_domain(&after.cert_pem, "paddock.test"));
        assert!(!names_domain(&after.cert_pem, "other.test"));
    }

    #[test]
    fn identity_persists_and_fingerprint_matches_the_der() {
        let dir = std::env::temp_dir().join(format!("paddock-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, fresh) = load_or_create(&dir).expect("create");
        assert!(fresh);
        let (b, fresh) = load_or_create(&dir).expect("load");
        assert!(!fresh);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let der = pem_to_der(&a.cert_pem).expect("der");
        assert_eq!(fingerprint(&der), a.fingerprint);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
