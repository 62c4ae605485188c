//! What the egress proxy refused: counted per workspace (reported to PID 1
//! for /metrics), logged within a bound, and recorded with the workspace's
//! connections; a refused request that carried a secret's placeholder is
//! audited as its misuse.

use crate::http_stream::Refused;
use std::net::SocketAddrV4;

/// Refusals logged per workspace; the rest are only counted.
const MAX_LOGGED: u64 = 20;

pub(crate) static REFUSED: crate::refusals::Refusals = crate::refusals::Refusals::new();

/// Refused connections counted since the last call (the network services
/// process reports them to PID 1, which keeps the totals).
pub fn new_refusals() -> Vec<(String, u64)> {
    REFUSED.take_new()
}

pub fn forget(id: &str) {
    REFUSED.forget(id);
}

fn refuse(id: &str, why: &str) {
    if REFUSED.count(id) <= MAX_LOGGED {
        log::info!("workspace {id}: egress refused: {why}");
    }
}

/// A refused connection, counted and recorded (`net::activity`) with
/// the name it gave, if any, and where it was aimed.
pub(crate) fn refused(id: &str, name: &str, dest: Option<SocketAddrV4>, why: &str, logged: &str) {
    refuse(id, logged);
    crate::activity::connection(crate::activity::Connection {
        id,
        name,
        dest,
        denied: Some(why),
        bytes_up: 0,
        bytes_down: 0,
        upstream_failed: false,
        mismatched: false,
        brokered: None,
    });
}

/// A plain-HTTP request `splice` refused on workspace `id`'s connection
/// to `name`: counted, recorded, and audited as a secret's misuse where a
/// placeholder was the reason.
pub(crate) fn refused_request(id: &str, name: &str, request: &Refused) {
    refused(id, "", None, &request.why, &request.why);
    let Some(secret) = &request.secret else {
        return;
    };
    let kind = crate::broker::table::secrets_of(id)
        .and_then(|all| {
            all.iter()
                .find(|s| s.name == *secret)
                .map(|s| crate::broker::rules::misuse_kind(s, name, false))
        })
        .unwrap_or(crate::broker::events::Misuse::OtherHost);
    crate::broker::events::record(crate::broker::events::SecretEvent {
        workspace: id.to_string(),
        secret: secret.clone(),
        host: name.to_string(),
        method: String::new(),
        path: String::new(),
        misuse: Some(kind),
    });
}
