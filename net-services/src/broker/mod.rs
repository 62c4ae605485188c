//! The secret broker, in the egress proxy: for a host one of a
//! workspace's brokered secrets names, the proxy ends the guest's TLS
//! itself (with a certificate PID 1 issued from the appliance's egress
//! CA, which every workspace trusts), checks each request, puts the
//! secret where the placeholder was (or sets the secret's header), and
//! sends the request on over its own TLS connection to the real host.
//! Every other host keeps the plain pass-through: nothing is decrypted
//! that does not have to be.
//!
//! `table` is what PID 1 pushed (secrets per workspace, certificates per
//! host), `rules` decides per request (pure), `intercept` serves one
//! connection on hyper, `upstream` is its side towards the real host, and
//! `events` what is reported back for the audit log (names, never values).

pub mod events;
pub mod intercept;
mod io;
pub mod rules;
pub mod table;
pub mod upstream;

use paddock_api_types::SecretPlace;
use serde::{Deserialize, Serialize};

/// A secret's value: never printed, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: String) -> SecretValue {
        SecretValue(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// One brokered secret as the proxy needs it (PID 1 → network services).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brokered {
    pub name: String,
    pub placeholder: String,
    pub value: SecretValue,
    /// Lower case, no trailing dot.
    pub hosts: Vec<String>,
    pub header: Option<String>,
    /// With exactly one `{}`.
    pub format: String,
    pub replace_in: Vec<SecretPlace>,
    pub allow_plain_http: bool,
    /// PEM; when set, the only roots the real host's certificate may
    /// chain to.
    pub upstream_ca: Option<String>,
}

impl Brokered {
    /// Whether it may be sent to `host` over this kind of connection.
    pub fn goes_to(&self, host: &str, tls: bool) -> bool {
        (tls || self.allow_plain_http) && self.hosts.iter().any(|h| h == host)
    }

    /// What its header is set to.
    pub fn formatted(&self) -> String {
        self.format.replacen("{}", self.value.expose(), 1)
    }
}

/// The certificate the proxy shows a workspace for one brokered host,
/// issued by PID 1 from the egress CA (PID 1 → network services).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCert {
    pub host: String,
    /// The leaf, then the CA.
    pub chain_pem: String,
    pub key_pem: SecretValue,
}
