//! Signals of a looping or misbehaving agent: what a workspace is watched
//! for, the threshold of each, and what the box does when one fires (the
//! audit log always records it). Set at create as `signals`; a signal left
//! out keeps its default.

use serde::{Deserialize, Serialize};

/// What the box does when a signal fires, besides recording it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalAction {
    /// Only the audit event and the metric.
    #[default]
    Record,
    /// Stop the workspace (its disk stays; delete or let its TTL end it).
    Stop,
    /// Quarantine it: frozen, cut off, its scoped tokens revoked, a
    /// forensic snapshot taken.
    Quarantine,
}

/// One signal's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalRule {
    /// What fires it; its unit is the signal's (see `SignalRules`).
    pub threshold: u64,
    /// Over how many seconds (5 to 86400; disk_full takes none).
    #[serde(default)]
    pub window_s: u64,
    #[serde(default)]
    pub action: SignalAction,
    /// Off: never fires.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub off: bool,
}

/// The signals a workspace is watched for. Each fires once when its
/// condition starts to hold, and again only after it stopped holding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalRules {
    /// Refused lookups, connections and packets: `threshold` of them in
    /// `window_s` (default 20 in 60 s). An agent retrying a destination it
    /// may not reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_burst: Option<SignalRule>,
    /// The same command (the whole argv) ending in failure `threshold`
    /// times in `window_s` (default 5 in 600 s) with no success of it
    /// between: an agent repeating what does not work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated_failure: Option<SignalRule>,
    /// CPU at or above `threshold` percent of its vCPUs for `window_s`
    /// (default 95 % for 600 s): a spin, or work that never ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pinned: Option<SignalRule>,
    /// Its disk at or above `threshold` percent full (default 95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_full: Option<SignalRule>,
    /// Outbound traffic allowed out: lookups answered and connections the
    /// egress proxy let through, `threshold` of them in `window_s`
    /// (default 600 in 60 s). An agent calling an API in a tight loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_rate: Option<SignalRule>,
}

/// The names of the signals, as audit events and metrics say them.
pub const SIGNALS: [&str; 5] = [
    "denied_burst",
    "repeated_failure",
    "cpu_pinned",
    "disk_full",
    "outbound_rate",
];

impl SignalRules {
    /// A signal's rule in force: the one given, or its default.
    pub fn rule(&self, signal: &str) -> Option<SignalRule> {
        let (given, default) = match signal {
            "denied_burst" => (self.denied_burst, rule(20, 60)),
            "repeated_failure" => (self.repeated_failure, rule(5, 600)),
            "cpu_pinned" => (self.cpu_pinned, rule(95, 600)),
            "disk_full" => (self.disk_full, rule(95, 0)),
            "outbound_rate" => (self.outbound_rate, rule(600, 60)),
            _ => return None,
        };
        Some(given.unwrap_or(default))
    }

    /// Every rule in force, defaults filled in (what a workspace shows).
    pub fn effective(&self) -> SignalRules {
        SignalRules {
            denied_burst: self.rule("denied_burst"),
            repeated_failure: self.rule("repeated_failure"),
            cpu_pinned: self.rule("cpu_pinned"),
            disk_full: self.rule("disk_full"),
            outbound_rate: self.rule("outbound_rate"),
        }
    }

    /// What is wrong with the rules given, if anything.
    pub fn check(&self) -> Result<(), String> {
        for name in SIGNALS {
            let given = match name {
                "denied_burst" => self.denied_burst,
                "repeated_failure" => self.repeated_failure,
                "cpu_pinned" => self.cpu_pinned,
                "outbound_rate" => self.outbound_rate,
                _ => self.disk_full,
            };
            let Some(r) = given else { continue };
            let percent = matches!(name, "cpu_pinned" | "disk_full");
            if r.threshold == 0 || (percent && r.threshold > 100) || r.threshold > 1_000_000 {
                return Err(format!(
                    "signals.{name}.threshold: {} is not {}",
                    r.threshold,
                    if percent {
                        "1 to 100 (percent)"
                    } else {
                        "1 to 1000000"
                    }
                ));
            }
            if name != "disk_full" && !(5..=86_400).contains(&r.window_s) {
                return Err(format!(
                    "signals.{name}.window_s: {} is not 5 to 86400 seconds",
                    r.window_s
                ));
            }
        }
        Ok(())
    }
}

fn rule(threshold: u64, window_s: u64) -> SignalRule {
    SignalRule {
        threshold,
        window_s,
        action: SignalAction::Record,
        off: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_is_not_given_and_bad_rules_are_named() {
        let r: SignalRules = serde_json::from_str(
            r#"{"repeated_failure": {"threshold": 3, "window_s": 60, "action": "stop"}}"#,
        )
        .expect("parse");
        assert!(r.check().is_ok());
        let e = r.effective();
        assert_eq!(e.repeated_failure.map(|x| x.threshold), Some(3));
        assert_eq!(e.denied_burst.map(|x| x.threshold), Some(20));
        assert_eq!(e.disk_full.map(|x| x.action), Some(SignalAction::Record));
        for (bad, what) in [
            (
                r#"{"cpu_pinned": {"threshold": 101, "window_s": 60}}"#,
                "cpu_pinned.threshold",
            ),
            (
                r#"{"denied_burst": {"threshold": 0, "window_s": 60}}"#,
                "denied_burst.threshold",
            ),
            (
                r#"{"denied_burst": {"threshold": 5, "window_s": 1}}"#,
                "denied_burst.window_s",
            ),
        ] {
            let r: SignalRules = serde_json::from_str(bad).expect("parse");
            assert!(r.check().is_err_and(|e| e.contains(what)), "{bad}");
        }
        assert!(serde_json::from_str::<SignalRules>(r#"{"loops": {}}"#).is_err());
        assert!(serde_json::from_str::<SignalRules>(
            r#"{"disk_full": {"threshold": 90, "action": "explode"}}"#
        )
        .is_err());
    }
}
