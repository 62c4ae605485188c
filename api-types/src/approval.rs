//! What a person approves: a destination a workspace asks for (at
//! `http://paddock.internal/egress-requests`), or an action a token's policy
//! says it may only ask for (a TTL past its quota, a published port, a
//! link). An admin approves it for a while, or denies it
//! (`/v1/approvals`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Asked, not decided yet.
    Pending,
    /// In its allowlist until `expires_at`.
    Approved,
    Denied,
    /// Was approved; its time ran out and the entry left the allowlist.
    Expired,
}

/// What was asked for, named by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApprovalAction {
    /// The workspace itself asked to reach `host:port`; approved, the
    /// entry is on its allowlist until the approval expires.
    Egress { host: String, port: u16 },
    /// A token asked to end the workspace `ttl_s` seconds after the
    /// decision, past its `max_ttl_s` quota. Done once; it does not expire.
    ExtendTtl { ttl_s: u64 },
    /// A token asked to publish the workspace's `port` on the uplink;
    /// approved, it is published (at `host_port`) until the approval
    /// expires.
    PublishPort {
        port: u16,
        /// The one asked for, then the one given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_port: Option<u16>,
    },
    /// A token asked that the workspace may connect to `to` on `port`;
    /// approved, the link (`link`) holds until the approval expires.
    Link {
        to: String,
        port: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<String>,
    },
}

impl ApprovalAction {
    /// Its `kind`, as the wire and the audit name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ApprovalAction::Egress { .. } => "egress",
            ApprovalAction::ExtendTtl { .. } => "extend_ttl",
            ApprovalAction::PublishPort { .. } => "publish_port",
            ApprovalAction::Link { .. } => "link",
        }
    }
}

/// One thing asked for one workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ApprovalWire")]
pub struct Approval {
    /// Stable for the workspace, the asker and what was asked: asking
    /// again is the same approval.
    pub id: String,
    pub workspace: String,
    #[serde(flatten)]
    pub action: ApprovalAction,
    /// The token that asked; absent when the workspace itself asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_by: Option<String>,
    /// The asker's own words (its latest ask's).
    pub reason: String,
    pub state: ApprovalState,
    /// When it was (last) asked, Unix seconds, and how many asks so far.
    pub asked_at: u64,
    pub asks: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// How an approval reads: every kind's fields side by side, and `kind`
/// absent in records written before there were kinds (each of those is a
/// workspace's egress request), so a box's stored approvals still read
/// after an update.
#[derive(Deserialize)]
struct ApprovalWire {
    id: String,
    workspace: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    ttl_s: Option<u64>,
    #[serde(default)]
    host_port: Option<u16>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    asked_by: Option<String>,
    reason: String,
    state: ApprovalState,
    asked_at: u64,
    asks: u64,
    #[serde(default)]
    decided_by: Option<String>,
    #[serde(default)]
    decided_at: Option<u64>,
    #[serde(default)]
    decision_reason: Option<String>,
    #[serde(default)]
    expires_at: Option<u64>,
}

impl TryFrom<ApprovalWire> for Approval {
    type Error = String;

    fn try_from(w: ApprovalWire) -> Result<Approval, String> {
        let need = |what: &str| {
            format!(
                "{} approval without {what}",
                w.kind.as_deref().unwrap_or("an egress")
            )
        };
        let port = w.port.ok_or_else(|| need("port"));
        let action = match w.kind.as_deref() {
            None | Some("egress") => ApprovalAction::Egress {
                host: w.host.clone().ok_or_else(|| need("host"))?,
                port: port?,
            },
            Some("extend_ttl") => ApprovalAction::ExtendTtl {
                ttl_s: w.ttl_s.ok_or_else(|| need("ttl_s"))?,
            },
            Some("publish_port") => ApprovalAction::PublishPort {
                port: port?,
                host_port: w.host_port,
            },
            Some("link") => ApprovalAction::Link {
                to: w.to.clone().ok_or_else(|| need("to"))?,
                port: port?,
                link: w.link.clone(),
            },
            Some(other) => return Err(format!("unknown approval kind {other:?}")),
        };
        Ok(Approval {
            id: w.id,
            workspace: w.workspace,
            action,
            asked_by: w.asked_by,
            reason: w.reason,
            state: w.state,
            asked_at: w.asked_at,
            asks: w.asks,
            decided_by: w.decided_by,
            decided_at: w.decided_at,
            decision_reason: w.decision_reason,
            expires_at: w.expires_at,
        })
    }
}

/// `GET /v1/approvals`, newest ask first: every one for an admin, the
/// ones it asked for any other token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalList {
    pub approvals: Vec<Approval>,
}

/// `POST /v1/approvals/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    pub approve: bool,
    /// How long an approval holds (10 to 604800 s; default 3600): an
    /// egress entry, a published port or a link is taken away after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_from_before_kinds_read_as_egress_and_bad_ones_say_why() {
        let old = r#"{"id": "apr_1", "workspace": "ws_1", "host": "api.example.com", "port": 443,
                      "reason": "", "state": "approved", "asked_at": 1, "asks": 1, "expires_at": 9}"#;
        let a: Approval = serde_json::from_str(old).expect("an old record");
        assert_eq!(
            a.action,
            ApprovalAction::Egress {
                host: "api.example.com".into(),
                port: 443
            }
        );
        let back: Approval =
            serde_json::from_str(&serde_json::to_string(&a).expect("json")).expect("back");
        assert_eq!(back, a);
        for (bad, why) in [
            (r#""kind": "link", "port": 80"#, "without to"),
            (r#""kind": "reboot""#, "unknown approval kind"),
            (r#""kind": "extend_ttl""#, "without ttl_s"),
        ] {
            let text = format!(
                r#"{{"id": "apr_1", "workspace": "ws_1", {bad}, "reason": "", "state": "pending", "asked_at": 1, "asks": 1}}"#
            );
            let e = serde_json::from_str::<Approval>(&text).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }
}
