//! Brokered secrets on the control plane's side: the checks a secret
//! passes before it is kept, the record kept for it (everything but its
//! value, which is sealed under the workspace's key with its env), and
//! what the network services process is given for it.

use paddock_api_types::{Secret, SecretPlace, SecretSpec};
use paddock_net::policy::Egress;
use paddock_net_services::broker::{Brokered, SecretValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MAX_SECRETS: usize = 8;
pub const MAX_VALUE: usize = 4096;
/// Shorter values would be scrubbed out of answers where they merely
/// occur, and confirm guesses of them.
pub const MIN_VALUE: usize = 8;
pub const MAX_HOSTS: usize = 8;
pub const MAX_CA_PEM: usize = 8192;
const MAX_NAME: usize = 64;
const MAX_FORMAT: usize = 256;
/// What every placeholder starts with (then 32 hex digits).
pub const PLACEHOLDER_PREFIX: &str = "paddock_secret_";

/// Headers a secret may not set: they frame the request or name its
/// host, which the broker decides.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// A secret as its workspace's record keeps it: no value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    pub name: String,
    pub placeholder: String,
    pub hosts: Vec<String>,
    pub header: Option<String>,
    pub format: Option<String>,
    pub replace_in: Vec<SecretPlace>,
    pub allow_plain_http: bool,
    pub upstream_ca: Option<String>,
    pub updated_at: u64,
}

fn name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every problem with secret `name` for a workspace whose egress is
/// `egress` (each names the field).
pub fn problems(name: &str, spec: &SecretSpec, egress: Option<&Egress>) -> Vec<String> {
    let mut p = Vec::new();
    let at = |field: &str| format!("secrets.{name}.{field}");
    if !name_ok(name) {
        p.push(format!(
            "secrets: {name:?} is not a name (1-{MAX_NAME} of letters, digits and '_', not starting with a digit)"
        ));
    }
    if spec.value.len() < MIN_VALUE || spec.value.len() > MAX_VALUE {
        p.push(format!("{}: {MIN_VALUE} to {MAX_VALUE} bytes", at("value")));
    } else if spec.value.chars().any(|c| c.is_control() && c != '\t') {
        p.push(format!(
            "{}: control characters (a header could not carry it)",
            at("value")
        ));
    }
    if spec.hosts.is_empty() || spec.hosts.len() > MAX_HOSTS {
        p.push(format!("{}: 1 to {MAX_HOSTS} host names", at("hosts")));
    }
    for host in &spec.hosts {
        let port = if spec.allow_plain_http { 80 } else { 443 };
        match paddock_net_services::requests::checked(host, 443) {
            Ok(h) if h == *host => {}
            Ok(h) => p.push(format!("{}: write {host:?} as {h:?}", at("hosts"))),
            Err(e) => p.push(format!("{}: {host:?}: {e}", at("hosts"))),
        }
        if let Some(egress) = egress {
            if !egress.allows(host, 443) {
                p.push(format!(
                    "{}: {host} is not on the workspace's egress allowlist for port 443",
                    at("hosts")
                ));
            } else if port == 80 && !egress.allows(host, 80) {
                p.push(format!(
                    "{}: {host} is not on the workspace's egress allowlist for port 80 (allow_plain_http)",
                    at("hosts")
                ));
            }
        }
    }
    match (&spec.header, &spec.format) {
        (None, Some(_)) => p.push(format!("{}: only with a header", at("format"))),
        (Some(h), _)
            if http::HeaderName::from_bytes(h.as_bytes()).is_err()
                || RESERVED_HEADERS.contains(&h.to_ascii_lowercase().as_str()) =>
        {
            p.push(format!(
                "{}: {h:?} is not a header a secret may set",
                at("header")
            ));
        }
        _ => {}
    }
    if let Some(f) = &spec.format {
        if f.matches("{}").count() != 1 || f.len() > MAX_FORMAT || f.chars().any(char::is_control) {
            p.push(format!(
                "{}: one line of at most {MAX_FORMAT} bytes with exactly one {{}}",
                at("format")
            ));
        }
    }
    if spec.replace_in.is_empty() && spec.header.is_none() {
        p.push(format!(
            "{}: empty, and no header: the secret would go nowhere",
            at("replace_in")
        ));
    }
    if let Some(ca) = &spec.upstream_ca {
        use rustls::pki_types::pem::PemObject;
        let certs: Result<Vec<_>, _> =
            rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()).collect();
        match certs {
            _ if ca.len() > MAX_CA_PEM => {
                p.push(format!("{}: at most {MAX_CA_PEM} bytes", at("upstream_ca")))
            }
            Ok(c) if !c.is_empty() => {}
            _ => p.push(format!(
                "{}: not PEM certificates (-----BEGIN CERTIFICATE-----)",
                at("upstream_ca")
            )),
        }
    }
    p
}

/// Every problem with a create's secrets (with its env and egress).
pub fn problems_all(
    secrets: &BTreeMap<String, SecretSpec>,
    env: &BTreeMap<String, String>,
    egress: Option<&Egress>,
) -> Vec<String> {
    let mut p = Vec::new();
    if secrets.len() > MAX_SECRETS {
        p.push(format!("secrets: more than {MAX_SECRETS}"));
    }
    for (name, spec) in secrets {
        if env.contains_key(name) {
            p.push(format!("secrets.{name}: also in env (one or the other)"));
        }
        if let Some((other, _)) = secrets.iter().find(|(n, o)| {
            *n != name
                && o.upstream_ca != spec.upstream_ca
                && o.hosts.iter().any(|h| spec.hosts.contains(h))
        }) {
            p.push(format!(
                "secrets.{name}.upstream_ca: secret {other} goes to one of its hosts with another upstream_ca; secrets for one host must trust the same CA"
            ));
        }
        p.extend(problems(name, spec, egress));
    }
    p
}

/// A fresh, unguessable placeholder.
pub fn placeholder() -> String {
    format!("{PLACEHOLDER_PREFIX}{}", crate::tokens::random_hex(16))
}

impl SecretMeta {
    pub fn new(name: &str, spec: &SecretSpec, placeholder: String, now: u64) -> SecretMeta {
        SecretMeta {
            name: name.to_string(),
            placeholder,
            hosts: spec.hosts.clone(),
            header: spec.header.clone(),
            format: spec.format.clone(),
            replace_in: spec.replace_in.clone(),
            allow_plain_http: spec.allow_plain_http,
            upstream_ca: spec.upstream_ca.clone(),
            updated_at: now,
        }
    }

    pub fn public(&self) -> Secret {
        Secret {
            name: self.name.clone(),
            placeholder: self.placeholder.clone(),
            hosts: self.hosts.clone(),
            header: self.header.clone(),
            format: self.format.clone(),
            replace_in: self.replace_in.clone(),
            allow_plain_http: self.allow_plain_http,
            upstream_ca: self.upstream_ca.is_some(),
            updated_at: self.updated_at,
        }
    }

    /// What the proxy is given for it, with its value.
    pub fn brokered(&self, value: &str) -> Brokered {
        Brokered {
            name: self.name.clone(),
            placeholder: self.placeholder.clone(),
            value: SecretValue::new(value.to_string()),
            hosts: self.hosts.clone(),
            header: self.header.clone(),
            format: self.format.clone().unwrap_or_else(|| "{}".into()),
            replace_in: self.replace_in.clone(),
            allow_plain_http: self.allow_plain_http,
            upstream_ca: self.upstream_ca.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_net::policy::{CheckEgress as _, EgressRequest};

    fn egress(domains: &[&str]) -> Egress {
        EgressRequest {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            cidrs: Vec::new(),
        }
        .check()
        .expect("valid")
    }

    fn spec(json: &str) -> SecretSpec {
        serde_json::from_str(json).expect("parse")
    }

    #[test]
    fn a_good_secret_passes_and_each_bad_field_is_named() {
        let e = egress(&["api.example.test"]);
        let good = spec(
            r#"{"value":"sk-12345678","hosts":["api.example.test"],"header":"Authorization","format":"Bearer {}"}"#,
        );
        assert!(problems("OPENAI_KEY", &good, Some(&e)).is_empty());
        let bad = spec(
            r#"{"value":"a\r\nX-Evil: 1","hosts":["other.test","NOT A HOST"],"header":"Host","format":"{} {}","upstream_ca":"nope"}"#,
        );
        let p = problems("1bad", &bad, Some(&e));
        for want in [
            "is not a name",
            "value: control characters",
            "other.test is not on the workspace's egress allowlist",
            "\"NOT A HOST\"",
            "not a header a secret may set",
            "exactly one {}",
            "upstream_ca: not PEM",
        ] {
            assert!(p.iter().any(|x| x.contains(want)), "{want}: {p:?}");
        }
        // Plain HTTP needs port 80 allowed too.
        let plain =
            spec(r#"{"value":"value-123","hosts":["api.example.test"],"allow_plain_http":true}"#);
        let p = problems("K", &plain, Some(&egress(&["api.example.test:443"])));
        assert!(p.iter().any(|x| x.contains("port 80")), "{p:?}");
        assert!(problems("K", &plain, Some(&egress(&["api.example.test:443+80"]))).is_empty());
    }

    #[test]
    fn a_secret_and_an_env_variable_may_not_share_a_name() {
        let secrets = BTreeMap::from([(
            "TOKEN".to_string(),
            spec(r#"{"value":"value-123","hosts":["a.test"]}"#),
        )]);
        let env = BTreeMap::from([("TOKEN".to_string(), "x".to_string())]);
        let p = problems_all(&secrets, &env, Some(&egress(&["a.test"])));
        assert!(p.iter().any(|x| x.contains("also in env")), "{p:?}");
    }

    #[test]
    fn placeholders_differ_and_never_hold_the_value() {
        let a = placeholder();
        assert!(a.starts_with(PLACEHOLDER_PREFIX) && a.len() == PLACEHOLDER_PREFIX.len() + 32);
        assert_ne!(a, placeholder());
        let meta = SecretMeta::new(
            "K",
            &spec(r#"{"value":"sk-live","hosts":["a.test"]}"#),
            a,
            1,
        );
        let shown = serde_json::to_string(&meta.public()).expect("json");
        assert!(!shown.contains("sk-live"));
        assert!(!format!("{:?}", meta.brokered("sk-live")).contains("sk-live"));
    }
}
