//! Brokered secrets: values the egress proxy adds to a workspace's
//! requests to named hosts, while the workspace itself only ever holds a
//! placeholder (docs/secrets.md).

use serde::{Deserialize, Serialize};

/// Where in a request the proxy looks for a secret's placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretPlace {
    /// Header values (the default).
    Headers,
    /// The request target's query string.
    Query,
    /// The body (buffered, up to 1 MiB).
    Body,
}

fn default_places() -> Vec<SecretPlace> {
    vec![SecretPlace::Headers]
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A secret as it is given, at create (`secrets` of a workspace spec) or
/// by `PUT /v1/workspaces/{id}/secrets/{name}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// The secret itself; never shown again, never given to the workspace.
    pub value: String,
    /// The hosts it may be sent to (exact names, 1 to 8; each must be on
    /// the workspace's egress allowlist for port 443, or 80 with
    /// `allow_plain_http`).
    pub hosts: Vec<String>,
    /// A header the proxy sets on every request to those hosts, to
    /// `format` with `{}` replaced by the value (for example
    /// `Authorization` and `Bearer {}`). Without it the proxy only
    /// replaces the placeholder where it finds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Where the placeholder is replaced by the value: `headers` unless
    /// told otherwise.
    #[serde(default = "default_places")]
    pub replace_in: Vec<SecretPlace>,
    /// Send it over plain HTTP too (off: only over TLS).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_plain_http: bool,
    /// PEM certificates the real hosts' certificates must chain to instead
    /// of the public roots (a private API's own CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca: Option<String>,
}

impl std::fmt::Debug for SecretSpec {
    /// Everything but the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSpec")
            .field("value", &"(hidden)")
            .field("hosts", &self.hosts)
            .field("header", &self.header)
            .field("format", &self.format)
            .field("replace_in", &self.replace_in)
            .field("allow_plain_http", &self.allow_plain_http)
            .field("upstream_ca", &self.upstream_ca.is_some())
            .finish()
    }
}

/// A secret as answers show it: everything but its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    /// What the workspace holds instead, in the environment variable
    /// `name` of every command it runs.
    pub placeholder: String,
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub replace_in: Vec<SecretPlace>,
    pub allow_plain_http: bool,
    /// Whether it names its own upstream CA.
    pub upstream_ca: bool,
    /// When its value was last set, Unix seconds.
    pub updated_at: u64,
}

/// `GET /v1/workspaces/{id}/secrets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretList {
    pub secrets: Vec<Secret>,
    /// The CA the workspace trusts for brokered hosts (PEM).
    pub egress_ca: String,
}

/// The answer to a removal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRemoved {
    pub workspace: String,
    pub removed: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_needs_a_value_and_hosts_and_hides_its_value_when_printed() {
        let s: SecretSpec =
            serde_json::from_str(r#"{"value":"sk-123","hosts":["api.example.com"]}"#)
                .expect("parse");
        assert_eq!(s.replace_in, vec![SecretPlace::Headers]);
        assert!(!format!("{s:?}").contains("sk-123"));
        assert!(serde_json::from_str::<SecretSpec>(r#"{"hosts":["a.example"]}"#).is_err());
        assert!(
            serde_json::from_str::<SecretSpec>(r#"{"value":"x","hosts":[],"bogus":1}"#).is_err()
        );
    }
}
