//! What the broker did, for PID 1's audit log (`secret_used`,
//! `secret_misuse`): the workspace, the secret's name, the host, the
//! method and path (never the query, which may hold a value), and for a
//! refusal one of a few fixed reasons, counted by key between reports.
//! Never a value, and never more than a bounded amount of what a guest
//! wrote: every field is cut where it is recorded, and each workspace has
//! its own budget of keys, so one workspace can neither make a report too
//! big to send nor push another's events out.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// Secret events per report to PID 1: each is bounded here to well under
/// 1 KiB, so a report of this many stays under the channel's cap.
pub const SECRET_EVENT_CHUNK: usize = 32;

/// Distinct keys kept between reports, per workspace and in all; past
/// them, a workspace's new keys are counted under one "(more)" key.
const MAX_KEYS_PER_WORKSPACE: usize = 64;
const MAX_KEYS: usize = 8192;
const MAX_PATH: usize = 200;
const MAX_METHOD: usize = 16;
const MAX_HOST: usize = 253;
const MAX_NAME: usize = 64;

/// Why a request was refused (fixed text: nothing a guest wrote).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misuse {
    /// The placeholder went to a host that is not one of the secret's.
    OtherHost,
    /// Over plain HTTP, which the secret does not allow.
    PlainHttp,
    /// On a brokered connection, a request naming another host.
    Misdirected,
}

impl Misuse {
    pub fn text(self) -> &'static str {
        match self {
            Misuse::OtherHost => "its placeholder was sent to a host that is not one of its hosts",
            Misuse::PlainHttp => {
                "its placeholder was sent over plain HTTP, which it does not allow"
            }
            Misuse::Misdirected => {
                "its placeholder was in a request naming another host than the connection's"
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretEvent {
    pub workspace: String,
    pub secret: String,
    pub host: String,
    pub method: String,
    pub path: String,
    /// Why it was refused; none for a secret put in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misuse: Option<Misuse>,
}

#[derive(Default)]
struct Kept {
    counts: HashMap<SecretEvent, u64>,
    keys_of: HashMap<String, usize>,
}

static EVENTS: Mutex<Option<Kept>> = Mutex::new(None);

fn cut(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// The path of a request target, without its query, cut to MAX_PATH.
pub fn path_only(target: &str) -> String {
    cut(target.split(['?', '#']).next().unwrap_or(""), MAX_PATH)
}

pub fn record(mut event: SecretEvent) {
    event.path = path_only(&event.path);
    event.method = cut(&event.method, MAX_METHOD);
    event.host = cut(&event.host, MAX_HOST);
    event.secret = cut(&event.secret, MAX_NAME);
    event.workspace = cut(&event.workspace, MAX_NAME);
    let mut kept = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
    let kept = kept.get_or_insert_with(Kept::default);
    if !kept.counts.contains_key(&event) {
        let mine = kept.keys_of.get(&event.workspace).copied().unwrap_or(0);
        if mine >= MAX_KEYS_PER_WORKSPACE || kept.counts.len() >= MAX_KEYS {
            event.path = "(more)".into();
            event.method = String::new();
            event.host = String::new();
        }
        if !kept.counts.contains_key(&event) {
            if kept.counts.len() >= MAX_KEYS + 1024 {
                return;
            }
            *kept.keys_of.entry(event.workspace.clone()).or_default() += 1;
        }
    }
    *kept.counts.entry(event).or_default() += 1;
}

/// Everything recorded since the last call.
pub fn take() -> Vec<(SecretEvent, u64)> {
    EVENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(|k| k.counts.into_iter().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_never_reaches_the_record() {
        assert_eq!(path_only("/v1/x?key=secret"), "/v1/x");
        assert_eq!(path_only(&"é".repeat(300)).chars().count(), 200);
    }

    #[test]
    fn a_flood_stays_small_and_leaves_others_their_events() {
        let huge = "A".repeat(70_000);
        for i in 0..10_000 {
            record(SecretEvent {
                workspace: "ws_flood".into(),
                secret: "K".into(),
                host: format!("{huge}{i}"),
                method: huge.clone(),
                path: format!("/{i}"),
                misuse: Some(Misuse::Misdirected),
            });
        }
        record(SecretEvent {
            workspace: "ws_quiet".into(),
            secret: "K".into(),
            host: "api.test".into(),
            method: "GET".into(),
            path: "/x".into(),
            misuse: None,
        });
        let all = take();
        let flood: Vec<_> = all
            .iter()
            .filter(|(e, _)| e.workspace == "ws_flood")
            .collect();
        assert!(flood.len() <= MAX_KEYS_PER_WORKSPACE + 1, "{}", flood.len());
        assert_eq!(flood.iter().map(|(_, n)| n).sum::<u64>(), 10_000);
        assert!(all.iter().any(|(e, _)| e.workspace == "ws_quiet"));
        // Every chunk a report sends fits the channel.
        for chunk in all.chunks(SECRET_EVENT_CHUNK) {
            let n = serde_json::to_vec(&chunk).expect("json").len();
            assert!(n < 60 * 1024, "{n}");
        }
    }
}
