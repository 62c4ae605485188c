//! What the network services process knows of brokered secrets, as PID 1
//! pushed it: each workspace's secrets, and a ready TLS server
//! configuration per brokered host (its certificate from PID 1).

use super::{Brokered, HostCert};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

type Secrets = HashMap<String, Arc<Vec<Brokered>>>;
type Servers = HashMap<String, Arc<rustls::ServerConfig>>;

static SECRETS: RwLock<Option<Secrets>> = RwLock::new(None);
static SERVERS: RwLock<Option<Servers>> = RwLock::new(None);

/// Workspace `id`'s secrets, replacing what it had (none: it has none).
pub fn set_secrets(id: String, secrets: Vec<Brokered>) {
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    let all = all.get_or_insert_with(HashMap::new);
    if secrets.is_empty() {
        all.remove(&id);
    } else {
        all.insert(id, Arc::new(secrets));
    }
}

pub fn secrets_of(id: &str) -> Option<Arc<Vec<Brokered>>> {
    SECRETS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|all| all.get(id).cloned())
}

/// The TLS server configuration shown for `cert.host` from now on.
pub fn set_cert(cert: &HostCert) -> Result<(), String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the certificate for {}: {e}", cert.host))?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.expose().as_bytes())
        .map_err(|e| format!("the key for {}: {e}", cert.host))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate for {}: {e}", cert.host))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut all = SERVERS.write().unwrap_or_else(|e| e.into_inner());
    all.get_or_insert_with(HashMap::new)
        .insert(cert.host.clone(), Arc::new(config));
    Ok(())
}

/// A connection the broker takes over: the workspace's secrets, and for
/// TLS the configuration to end the guest's TLS with.
pub struct Plan {
    pub secrets: Arc<Vec<Brokered>>,
    pub server: Option<Arc<rustls::ServerConfig>>,
}

/// Whether workspace `id`'s connection to `name` (TLS or not) goes
/// through the broker: only when one of its secrets may go there. A TLS
/// host whose certificate has not arrived is passed through as before
/// (its secrets then simply do not go in).
pub fn plan(id: &str, name: &str, tls: bool) -> Option<Plan> {
    let secrets = secrets_of(id)?;
    if !secrets.iter().any(|s| s.goes_to(name, tls)) {
        return None;
    }
    let server = if tls {
        let all = SERVERS.read().unwrap_or_else(|e| e.into_inner());
        match all.as_ref().and_then(|a| a.get(name)) {
            Some(s) => Some(s.clone()),
            None => {
                log::warn!("secret broker: no certificate for {name} yet; passing through");
                return None;
            }
        }
    } else {
        None
    };
    Some(Plan { secrets, server })
}
