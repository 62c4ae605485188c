//! The appliance's egress CA: the certificate authority every workspace
//! trusts (the agent installs it at each start) so the secret broker can
//! end a workspace's TLS to a brokered host. Made on first use and kept
//! in `/data/state/egress-ca.json`: the certificate in the clear, its key
//! sealed under a key-store key of its own (`egress-ca`), so it is never
//! on the data partition in the clear and a key-store erasure takes it.
//!
//! Only PID 1 holds the CA's key: it issues one short-lived certificate
//! per brokered host and gives the network services process those alone,
//! so a compromise of that process can impersonate the hosts secrets are
//! brokered for (whose traffic it sees anyway), not every host.

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const CA_FILE: &str = "/data/state/egress-ca.json";
const KEY_NAME: &str = "egress-ca";
const DAY: i64 = 24 * 3600;
/// A host certificate lasts this long, and is made again when it has
/// less than `RENEW_S` left.
pub const LEAF_LIFETIME_S: i64 = 90 * DAY;
pub const RENEW_S: i64 = 30 * DAY;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the egress CA's file {0} is damaged: {1}")]
    Damaged(PathBuf, String),
    #[error("making a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("the key store: {0}")]
    Keys(String),
}

/// What is kept on disk.
#[derive(Serialize, Deserialize)]
struct Stored {
    /// The CA's common name (the issuer name every host certificate
    /// carries).
    cn: String,
    cert_pem: String,
    /// The key (PKCS#8 PEM), sealed; base64.
    key_sealed: String,
}

/// How the CA's key is sealed at rest (the key store on the box; tests
/// use their own).
pub trait Sealer {
    fn seal(&self, data: &[u8]) -> Result<Vec<u8>, CaError>;
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CaError>;
}

/// The key store, under the CA's own key name.
pub struct KeyStoreSealer;

impl Sealer for KeyStoreSealer {
    fn seal(&self, data: &[u8]) -> Result<Vec<u8>, CaError> {
        let store = paddock_keys::store().map_err(|e| CaError::Keys(e.to_string()))?;
        store
            .disk_key(KEY_NAME)
            .and_then(|_| store.seal(KEY_NAME, data))
            .map_err(|e| CaError::Keys(e.to_string()))
    }
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CaError> {
        let store = paddock_keys::store().map_err(|e| CaError::Keys(e.to_string()))?;
        store
            .open_sealed(KEY_NAME, sealed)
            .map_err(|e| CaError::Keys(e.to_string()))
    }
}

pub struct EgressCa {
    pub cert_pem: String,
    issuer: rcgen::Certificate,
    key: KeyPair,
}

/// A host certificate: the leaf and CA as PEM, its key, when it ends.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub not_after: i64,
}

fn time(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

pub fn now() -> i64 {
    i64::try_from(crate::audit::now_s()).unwrap_or(i64::MAX)
}

fn ca_params(cn: &str, from: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Paddock appliance");
    p.distinguished_name = dn;
    // It signs host certificates only, never another CA.
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = time(from - DAY);
    p.not_after = time(from + 20 * 365 * DAY);
    p
}

impl EgressCa {
    /// A new CA.
    pub fn generate() -> Result<(EgressCa, String), CaError> {
        let cn = format!("Paddock egress CA {}", crate::tokens::random_hex(4));
        let key = KeyPair::generate()?;
        let cert = ca_params(&cn, now()).self_signed(&key)?;
        let ca = EgressCa {
            cert_pem: cert.pem(),
            issuer: cert,
            key,
        };
        Ok((ca, cn))
    }

    /// The CA kept at `path`, made (and kept) if there is none.
    pub fn load_or_create(path: &Path, sealer: &dyn Sealer) -> Result<EgressCa, CaError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::load(path, &bytes, sealer),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (ca, cn) = Self::generate()?;
                let sealed = sealer.seal(ca.key.serialize_pem().as_bytes())?;
                let stored = Stored {
                    cn,
                    cert_pem: ca.cert_pem.clone(),
                    key_sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
                };
                let text = serde_json::to_vec_pretty(&stored)
                    .map_err(|e| CaError::Damaged(path.to_path_buf(), e.to_string()))?;
                paddock_keys::private_file::write_private(path, &text).map_err(|source| {
                    CaError::Io {
                        what: "writing",
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
                Ok(ca)
            }
            Err(source) => Err(CaError::Io {
                what: "reading",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn load(path: &Path, bytes: &[u8], sealer: &dyn Sealer) -> Result<EgressCa, CaError> {
        let damaged = |why: String| CaError::Damaged(path.to_path_buf(), why);
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| damaged(e.to_string()))?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&stored.key_sealed)
            .map_err(|e| damaged(e.to_string()))?;
        let key_pem = sealer.open(&sealed)?;
        let key_pem = String::from_utf8(key_pem).map_err(|e| damaged(e.to_string()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| damaged(e.to_string()))?;
        // The issuer as host certificates name it: the same name and key
        // as the kept certificate (which is what workspaces trust).
        let issuer = ca_params(&stored.cn, now()).self_signed(&key)?;
        Ok(EgressCa {
            cert_pem: stored.cert_pem,
            issuer,
            key,
        })
    }

    /// A certificate for `host`, valid from a day ago for LEAF_LIFETIME_S.
    pub fn issue(&self, host: &str) -> Result<Issued, CaError> {
        let mut p = CertificateParams::new(vec![host.to_string()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        let start = now();
        p.not_before = time(start - DAY);
        p.not_after = time(start + LEAF_LIFETIME_S);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer, &self.key)?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            not_after: start + LEAF_LIFETIME_S,
        })
    }
}

static CA: Mutex<Option<Arc<EgressCa>>> = Mutex::new(None);

/// Makes `ca` the egress CA of this process (a bench or test that plays
/// PID 1 without a key store).
pub fn install(ca: EgressCa) {
    *CA.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(ca));
}

/// The box's egress CA (loaded or made on first use; needs the key store).
pub fn get() -> Result<Arc<EgressCa>, CaError> {
    let mut ca = CA.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ca) = ca.as_ref() {
        return Ok(ca.clone());
    }
    let loaded = Arc::new(EgressCa::load_or_create(
        Path::new(CA_FILE),
        &KeyStoreSealer,
    )?);
    *ca = Some(loaded.clone());
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    struct Plain;
    impl Sealer for Plain {
        fn seal(&self, data: &[u8]) -> Result<Vec<u8>, CaError> {
            Ok(data.iter().map(|b| b ^ 0x5a).collect())
        }
        fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CaError> {
            self.seal(sealed)
        }
    }

    fn verifies(ca_pem: &str, chain_pem: &str, host: &str) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.expect("ca")).expect("root");
        }
        let chain: Vec<CertificateDer> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        use rustls::client::danger::ServerCertVerifier as _;
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(host.to_string()).expect("name"),
                &[],
                UnixTime::now(),
            )
            .is_ok()
    }

    #[test]
    fn a_kept_ca_issues_certificates_its_stored_certificate_verifies() {
        let dir = std::env::temp_dir().join(format!("paddock-egress-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("ca.json");
        let first = EgressCa::load_or_create(&path, &Plain).expect("made");
        let text = std::fs::read_to_string(&path).expect("kept");
        assert!(!text.contains("PRIVATE KEY"), "the key is sealed at rest");
        // Loaded again (a reboot): the same CA, and what it issues now
        // verifies against the certificate workspaces already trust.
        let again = EgressCa::load_or_create(&path, &Plain).expect("loaded");
        assert_eq!(first.cert_pem, again.cert_pem);
        let issued = again.issue("api.example.test").expect("issued");
        assert!(verifies(
            &first.cert_pem,
            &issued.chain_pem,
            "api.example.test"
        ));
        assert!(!verifies(
            &first.cert_pem,
            &issued.chain_pem,
            "other.example.test"
        ));
        // Another box's CA does not vouch for it.
        let (other, _) = EgressCa::generate().expect("other");
        assert!(!verifies(
            &other.cert_pem,
            &issued.chain_pem,
            "api.example.test"
        ));
        // A damaged file is an error that says so, not a new CA.
        std::fs::write(&path, b"{").expect("damage");
        let e = EgressCa::load_or_create(&path, &Plain)
            .err()
            .expect("damaged");
        assert!(e.to_string().contains("damaged"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
