//! What the broker did, for PID 1's audit log (`secret_used`,
//! `secret_misuse`): the workspace, the secret's name, the host, the
//! method and path (never the query, which may hold a value), counted
//! by key between reports. Never a value.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// Distinct events kept between reports (all workspaces); past it, new
/// keys are counted under one "(more)" path per workspace and secret.
const MAX_KEYS: usize = 4096;
/// Longest path kept.
const MAX_PATH: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretEvent {
    pub workspace: String,
    pub secret: String,
    pub host: String,
    pub method: String,
    pub path: String,
    /// Why it was refused; none for a secret put in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misuse: Option<String>,
}

static EVENTS: Mutex<Option<HashMap<SecretEvent, u64>>> = Mutex::new(None);

/// The path of a request target, without its query, cut to MAX_PATH.
pub fn path_only(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let mut end = path.len().min(MAX_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path[..end].to_string()
}

pub fn record(mut event: SecretEvent) {
    event.path = path_only(&event.path);
    let mut all = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
    let all = all.get_or_insert_with(HashMap::new);
    if !all.contains_key(&event) && all.len() >= MAX_KEYS {
        event.path = "(more)".into();
        event.method = String::new();
        if !all.contains_key(&event) && all.len() >= MAX_KEYS + 256 {
            return;
        }
    }
    *all.entry(event).or_default() += 1;
}

/// Everything recorded since the last call.
pub fn take() -> Vec<(SecretEvent, u64)> {
    EVENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_never_reaches_the_record() {
        assert_eq!(path_only("/v1/x?key=secret"), "/v1/x");
        assert_eq!(path_only(&"é".repeat(150)).len(), 200);
    }
}
