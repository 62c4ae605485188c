//! API tokens: random secrets shown once and stored as SHA-256 hashes, with
//! scopes, an expiry, quotas and optional limits to labelled workspaces or
//! to given workspace ids. A token can only mint tokens weaker than itself.

use paddock_api_types::SecretFormat;
use paddock_net::policy::CheckEgress as _;
use paddock_net::policy::EgressRequest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Default lifetime of a minted token.
pub const DEFAULT_TTL_S: u64 = 30 * 24 * 3600;
const SECRET_PREFIX: &str = "pdk_";

/// Scopes, quotas and the mint request: the API's wire types.
pub use paddock_api_types::{ActionPolicy, ActionRule, MintRequest, Quotas, Scope};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    pub scopes: Vec<Scope>,
    pub created_at: u64,
    /// Unix seconds; None only for the bootstrap admin credential.
    pub expires_at: Option<u64>,
    pub revoked: bool,
    pub parent: Option<String>,
    pub quotas: Quotas,
    /// Workspaces this token may touch must carry all these labels.
    pub labels: BTreeMap<String, String>,
    /// If set, only these workspaces.
    pub workspace_ids: Option<Vec<String>>,
    /// The egress entries this token may put on workspaces it creates.
    /// Admin tokens may grant any; for others None grants nothing.
    #[serde(default)]
    pub egress_allow: Option<EgressRequest>,
    /// How its secrets look; rotation keeps it.
    #[serde(default)]
    pub secret_format: SecretFormat,
    /// Which yellow actions it may do or ask for (admins: all of them).
    #[serde(default)]
    pub actions: ActionPolicy,
}

/// The yellow actions, for a token's rule about one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Yellow {
    ExtendTtl,
    PublishPort,
    Link,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("a token cannot grant more than it has: {0}")]
    Escalation(String),
}

pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    if getrandom(&mut raw).is_err() {
        // /dev/urandom as a fallback; never a predictable value.
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = std::io::Read::read_exact(&mut f, &mut raw);
        }
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    // SAFETY: the pointer and length describe `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n as usize == buf.len() {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn new_secret(format: SecretFormat) -> String {
    match format {
        SecretFormat::Paddock => format!("{SECRET_PREFIX}{}", random_hex(32)),
        // E2B's key shape: 160 random bits.
        SecretFormat::E2b => format!("e2b_{}", random_hex(20)),
    }
}

fn check_name(name: &str) -> Result<(), TokenError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c))
    {
        return Err(TokenError::Invalid(
            "name must be 1-64 characters of letters, digits, '-', '_', '.', ' '".into(),
        ));
    }
    Ok(())
}

fn within(child: Option<u64>, parent: Option<u64>, what: &str) -> Result<Option<u64>, TokenError> {
    match (child, parent) {
        (c, None) => Ok(c),
        (None, Some(p)) => Ok(Some(p)),
        (Some(c), Some(p)) if c <= p => Ok(Some(c)),
        (Some(c), Some(p)) => Err(TokenError::Escalation(format!(
            "{what} {c} exceeds the parent's {p}"
        ))),
    }
}

impl TokenRecord {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    pub fn is_live(&self, now: u64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| now < e)
    }

    /// The bootstrap admin credential's record.
    /// The bootstrap admin token, from its secret's hash.
    pub fn bootstrap(hash: &str, now: u64) -> TokenRecord {
        TokenRecord {
            id: "tok_bootstrap".into(),
            name: "bootstrap admin".into(),
            hash: hash.to_string(),
            scopes: vec![Scope::Admin],
            created_at: now,
            expires_at: None,
            revoked: false,
            parent: None,
            quotas: Quotas::default(),
            labels: BTreeMap::new(),
            workspace_ids: None,
            egress_allow: None,
            secret_format: SecretFormat::Paddock,
            actions: ActionPolicy::default(),
        }
    }

    /// What this token may do about a yellow action: admins do it.
    pub fn rule(&self, action: Yellow) -> ActionRule {
        if self.has(Scope::Admin) {
            return ActionRule::Allow;
        }
        match action {
            Yellow::ExtendTtl => self.actions.extend_ttl,
            Yellow::PublishPort => self.actions.publish_port,
            Yellow::Link => self.actions.link,
        }
    }

    /// The token as an admin's list shows it: never its hash.
    pub fn view(&self) -> paddock_api_types::TokenView {
        paddock_api_types::TokenView {
            id: self.id.clone(),
            name: self.name.clone(),
            scopes: self.scopes.clone(),
            expires_at: self.expires_at,
            revoked: self.revoked,
            parent: self.parent.clone(),
            quotas: self.quotas.clone(),
            labels: self.labels.clone(),
            workspace_ids: self.workspace_ids.clone(),
            egress_allow: self.egress_allow.clone(),
            actions: self.actions,
        }
    }

    /// Whether a label or id limit narrows what this token sees.
    pub fn is_limited(&self) -> bool {
        !self.labels.is_empty() || self.workspace_ids.is_some()
    }

    /// Whether this token may put `egress` on a workspace it creates.
    pub fn may_grant(&self, egress: &EgressRequest) -> Result<(), TokenError> {
        if self.has(Scope::Admin) || (egress.domains.is_empty() && egress.cidrs.is_empty()) {
            return Ok(());
        }
        let wanted = egress
            .check()
            .map_err(|p| TokenError::Invalid(format!("egress: {}", p.join("; "))))?;
        let granted = match &self.egress_allow {
            None => paddock_net::policy::Egress::default(),
            Some(g) => g
                .check()
                .map_err(|p| TokenError::Invalid(format!("egress_allow: {}", p.join("; "))))?,
        };
        wanted.within(&granted).map_err(|e| {
            TokenError::Escalation(format!(
                "egress {e}: this token may not grant it (its egress_allow)"
            ))
        })
    }

    /// Whether this token may touch a workspace with these labels and id.
    pub fn covers(&self, ws_id: &str, ws_labels: &BTreeMap<String, String>) -> bool {
        let labels_ok = self.labels.iter().all(|(k, v)| ws_labels.get(k) == Some(v));
        let ids_ok = self
            .workspace_ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|i| i == ws_id));
        labels_ok && ids_ok
    }

    /// Mints a child token; returns its secret (shown once) and record.
    pub fn mint(&self, req: &MintRequest, now: u64) -> Result<(String, TokenRecord), TokenError> {
        check_name(&req.name)?;
        if req.scopes.is_empty() {
            return Err(TokenError::Invalid("scopes must not be empty".into()));
        }
        if !self.scopes.contains(&Scope::Admin) {
            if let Some(s) = req.scopes.iter().find(|s| !self.scopes.contains(s)) {
                return Err(TokenError::Escalation(format!("scope {s:?}")));
            }
        }
        let ttl = req.ttl_s.unwrap_or(DEFAULT_TTL_S);
        if ttl == 0 || ttl > 10 * 365 * 24 * 3600 {
            return Err(TokenError::Invalid(
                "ttl_s must be 1 second to 10 years".into(),
            ));
        }
        let mut expires_at = now.saturating_add(ttl);
        if let Some(p) = self.expires_at {
            // No ttl asked for: the default, but never past the parent's.
            if req.ttl_s.is_none() {
                expires_at = expires_at.min(p);
            }
            if expires_at > p {
                return Err(TokenError::Escalation(
                    "an expiry later than the parent's".into(),
                ));
            }
        }
        // Label limits: the child keeps every one of the parent's.
        for (k, v) in &self.labels {
            if req.labels.get(k) != Some(v) {
                return Err(TokenError::Escalation(format!(
                    "dropping the label limit {k}={v}"
                )));
            }
        }
        let workspace_ids = match (&self.workspace_ids, &req.workspace_ids) {
            (None, c) => c.clone(),
            (Some(_), None) => {
                return Err(TokenError::Escalation(
                    "dropping the workspace id limit".into(),
                ))
            }
            (Some(p), Some(c)) => {
                if let Some(x) = c.iter().find(|i| !p.contains(i)) {
                    return Err(TokenError::Escalation(format!("workspace {x}")));
                }
                Some(c.clone())
            }
        };
        let quotas = Quotas {
            max_workspaces: within(
                req.quotas.max_workspaces.map(u64::from),
                self.quotas.max_workspaces.map(u64::from),
                "max_workspaces",
            )?
            .map(|v| v as u32),
            max_vcpus: within(
                req.quotas.max_vcpus.map(u64::from),
                self.quotas.max_vcpus.map(u64::from),
                "max_vcpus",
            )?
            .map(|v| v as u32),
            max_memory_mib: within(
                req.quotas.max_memory_mib,
                self.quotas.max_memory_mib,
                "max_memory_mib",
            )?,
            max_disk_mib: within(
                req.quotas.max_disk_mib,
                self.quotas.max_disk_mib,
                "max_disk_mib",
            )?,
            max_ttl_s: within(req.quotas.max_ttl_s, self.quotas.max_ttl_s, "max_ttl_s")?,
        };
        // Absent is the narrowest; never a rule past the parent's.
        let actions = req.actions.unwrap_or_default();
        for (action, name, wanted) in [
            (Yellow::ExtendTtl, "extend_ttl", actions.extend_ttl),
            (Yellow::PublishPort, "publish_port", actions.publish_port),
            (Yellow::Link, "link", actions.link),
        ] {
            if wanted > self.rule(action) {
                return Err(TokenError::Escalation(format!(
                    "actions.{name} {wanted:?} is past the parent's {:?}",
                    self.rule(action)
                )));
            }
        }
        let egress_allow = match &req.egress_allow {
            None => None,
            Some(e) => {
                e.check()
                    .map_err(|p| TokenError::Invalid(format!("egress_allow: {}", p.join("; "))))?;
                self.may_grant(e)?;
                Some(e.clone())
            }
        };
        let secret_format = req.secret_format.unwrap_or_default();
        let secret = new_secret(secret_format);
        let mut scopes = req.scopes.clone();
        scopes.sort();
        scopes.dedup();
        Ok((
            secret.clone(),
            TokenRecord {
                id: format!("tok_{}", random_hex(8)),
                name: req.name.clone(),
                hash: hash_secret(&secret),
                scopes,
                created_at: now,
                expires_at: Some(expires_at),
                revoked: false,
                parent: Some(self.id.clone()),
                quotas,
                labels: req.labels.clone(),
                workspace_ids,
                egress_allow,
                secret_format,
                actions,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(scopes: &[Scope]) -> MintRequest {
        MintRequest {
            name: "t".into(),
            scopes: scopes.to_vec(),
            ..MintRequest::default()
        }
    }

    #[test]
    fn e2b_shaped_secrets_authenticate_like_any() {
        let admin = TokenRecord::bootstrap("pdk_x", 100);
        let (secret, rec) = admin
            .mint(
                &MintRequest {
                    secret_format: Some(SecretFormat::E2b),
                    ..req(&[Scope::Read])
                },
                100,
            )
            .expect("admin mints");
        let hex = secret.strip_prefix("e2b_").expect("e2b_ prefix");
        assert_eq!(hex.len(), 40);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(rec.hash, hash_secret(&secret));
        assert_eq!(rec.secret_format, SecretFormat::E2b, "rotation keeps it");
        // Records written before the format existed read as Paddock's.
        let mut old = serde_json::to_value(&rec).expect("json");
        old.as_object_mut().expect("object").remove("secret_format");
        let old: TokenRecord = serde_json::from_value(old).expect("old record");
        assert_eq!(old.secret_format, SecretFormat::Paddock);
    }

    #[test]
    fn no_escalation_through_minting() {
        let admin = TokenRecord::bootstrap("pdk_x", 100);
        let (secret, exec) = admin
            .mint(
                &MintRequest {
                    quotas: Quotas {
                        max_workspaces: Some(2),
                        ..Quotas::default()
                    },
                    ..req(&[Scope::Exec, Scope::Read])
                },
                100,
            )
            .expect("admin mints");
        assert!(secret.starts_with("pdk_") && secret.len() == 68);
        assert_eq!(exec.hash, hash_secret(&secret));
        assert_eq!(exec.expires_at, Some(100 + DEFAULT_TTL_S));
        assert!(matches!(
            exec.mint(&req(&[Scope::Admin]), 100),
            Err(TokenError::Escalation(_))
        ));
        assert!(matches!(
            exec.mint(&req(&[Scope::Delete]), 100),
            Err(TokenError::Escalation(_))
        ));
        let later = MintRequest {
            ttl_s: Some(DEFAULT_TTL_S + 10),
            ..req(&[Scope::Exec])
        };
        assert!(matches!(
            exec.mint(&later, 100),
            Err(TokenError::Escalation(_))
        ));
        let more = MintRequest {
            quotas: Quotas {
                max_workspaces: Some(3),
                ..Quotas::default()
            },
            ..req(&[Scope::Exec])
        };
        assert!(matches!(
            exec.mint(&more, 100),
            Err(TokenError::Escalation(_))
        ));
        let (_, child) = exec.mint(&req(&[Scope::Exec]), 100).expect("subset");
        assert_eq!(child.quotas.max_workspaces, Some(2), "quotas are inherited");
        let (_, later) = exec
            .mint(&req(&[Scope::Exec]), 5000)
            .expect("a default ttl minted later");
        assert_eq!(
            later.expires_at, exec.expires_at,
            "capped at the parent's expiry"
        );
    }

    #[test]
    fn limits_and_liveness() {
        let admin = TokenRecord::bootstrap("pdk_x", 0);
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), "a".to_string());
        let (_, t) = admin
            .mint(
                &MintRequest {
                    labels: labels.clone(),
                    ttl_s: Some(10),
                    ..req(&[Scope::Read])
                },
                0,
            )
            .expect("mint");
        assert!(t.covers("ws_1", &labels));
        assert!(!t.covers("ws_1", &BTreeMap::new()));
        assert!(
            matches!(
                t.mint(&req(&[Scope::Read]), 0),
                Err(TokenError::Escalation(_))
            ),
            "label limit kept"
        );
        assert!(t.is_live(9) && !t.is_live(10));
        assert!(t.has(Scope::Read) && !t.has(Scope::Exec));
        assert!(admin.has(Scope::Exec));
        assert!(matches!(
            admin.mint(
                &MintRequest {
                    name: String::new(),
                    ..req(&[Scope::Read])
                },
                0
            ),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            admin.mint(&req(&[]), 0),
            Err(TokenError::Invalid(_))
        ));
    }
}
