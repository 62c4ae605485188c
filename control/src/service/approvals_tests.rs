//! Egress requests and their approvals against a real store and audit log
//! (no VM: the workspace is recorded running when it asks, stopped when
//! the decision lands, so no firewall is touched).

use super::tests::{events, plane, put_workspace, tenant, ADMIN};
use crate::store::WORKSPACES;
use crate::workspace::WorkspaceRecord;
use paddock_api_channel::{Call, Verdict};
use paddock_net_services::requests::{approval_id, Ask};
use serde_json::json;

fn ask(host: &str, reason: &str) -> Ask {
    Ask {
        workspace: "ws_apr1".into(),
        host: host.into(),
        port: 443,
        reason: reason.into(),
    }
}

/// The test workspace's record as stored now.
fn record(c: &super::Control) -> WorkspaceRecord {
    c.store
        .get(WORKSPACES, "ws_apr1")
        .expect("get")
        .expect("there")
}

fn stop(c: &super::Control) {
    let mut ws: WorkspaceRecord = record(c);
    ws.state = crate::workspace::WsState::Stopped;
    c.store.put(WORKSPACES, "ws_apr1", &ws).expect("put");
}

#[test]
fn an_ask_is_pending_until_an_admin_approves_it_for_a_while_then_it_expires() {
    let p = plane("approvals");
    let c = &p.control;
    let (_, tenant_secret) = tenant(c);
    put_workspace(c, "ws_apr1", "tok_x", "running", u64::MAX / 2);
    c.asked(vec![ask("api.example.com", "the task needs its API")]);
    c.asked(vec![ask("api.example.com", "asking again")]);
    c.asked(vec![Ask {
        workspace: "ws_nosuch".into(),
        ..ask("x.example.com", "")
    }]);
    let list = c.call(
        ADMIN,
        Call::ListApprovals {
            state: Some("pending".into()),
        },
    );
    assert_eq!(list.reply.verdict, Verdict::Ok);
    let approvals = list.reply.body["approvals"]
        .as_array()
        .expect("list")
        .clone();
    assert_eq!(
        approvals.len(),
        1,
        "one per destination, none for a workspace that is not there"
    );
    let a = &approvals[0];
    let id = approval_id("ws_apr1", "api.example.com", 443);
    assert_eq!(
        (a["id"].as_str(), a["asks"].as_u64()),
        (Some(id.as_str()), Some(2))
    );
    assert_eq!(a["reason"], "asking again");
    assert_eq!(
        events(c, "egress_requested"),
        1,
        "the repeat is counted, not audited"
    );

    // Only an admin decides.
    // A tenant's list holds only its own asks: none of a workspace's.
    let theirs = c.call(&tenant_secret, Call::ListApprovals { state: None });
    assert_eq!(theirs.reply.verdict, Verdict::Ok);
    assert_eq!(theirs.reply.body["approvals"], json!([]));
    let refused = c.call(
        &tenant_secret,
        Call::DecideApproval {
            id: id.clone(),
            request: json!({"approve": true}),
        },
    );
    assert_eq!(refused.reply.verdict, Verdict::Forbidden);
    for bad in [
        json!({"approve": true, "ttl_s": 5}),
        json!({"approve": "yes"}),
        json!({"approve": true, "reason": "a\nb"}),
    ] {
        let out = c.call(
            ADMIN,
            Call::DecideApproval {
                id: id.clone(),
                request: bad.clone(),
            },
        );
        assert_eq!(
            out.reply.verdict,
            Verdict::Invalid,
            "{bad}: {}",
            out.reply.body
        );
    }

    stop(c);
    let out = c.call(
        ADMIN,
        Call::DecideApproval {
            id: id.clone(),
            request: json!({"approve": true, "ttl_s": 600, "reason": "fine"}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Ok, "{}", out.reply.body);
    let expires = out.reply.body["expires_at"].as_u64().expect("expires_at");
    // Asked again once approved: counted, but the words the approver read
    // stay.
    c.asked(vec![ask("api.example.com", "different words now")]);
    let list = c.call(
        ADMIN,
        Call::ListApprovals {
            state: Some("approved".into()),
        },
    );
    let a = &list.reply.body["approvals"][0];
    assert_eq!(
        (a["reason"].as_str(), a["asks"].as_u64()),
        (Some("asking again"), Some(2))
    );
    let ws: WorkspaceRecord = record(c);
    assert!(ws
        .egress
        .domains
        .contains(&"api.example.com:443".to_string()));
    // Decided once.
    let again = c.call(
        ADMIN,
        Call::DecideApproval {
            id: id.clone(),
            request: json!({"approve": false}),
        },
    );
    assert_eq!(again.reply.verdict, Verdict::Conflict);
    // Not yet due; then due.
    c.expire_approvals(expires - 1);
    let ws: WorkspaceRecord = record(c);
    assert!(ws
        .egress
        .domains
        .contains(&"api.example.com:443".to_string()));
    c.expire_approvals(expires);
    let ws: WorkspaceRecord = record(c);
    assert!(!ws
        .egress
        .domains
        .contains(&"api.example.com:443".to_string()));
    assert_eq!(events(c, "egress_approved"), 1);
    assert_eq!(events(c, "egress_grant_expired"), 1);
    let expired = c.call(
        ADMIN,
        Call::ListApprovals {
            state: Some("expired".into()),
        },
    );
    assert_eq!(
        expired.reply.body["approvals"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn a_denied_ask_stays_out_and_an_unknown_one_is_not_found() {
    let p = plane("approvals-deny");
    let c = &p.control;
    put_workspace(c, "ws_apr1", "tok_x", "running", u64::MAX / 2);
    c.asked(vec![ask("exfil.example.com", "please")]);
    let id = approval_id("ws_apr1", "exfil.example.com", 443);
    let out = c.call(
        ADMIN,
        Call::DecideApproval {
            id: id.clone(),
            request: json!({"approve": false, "reason": "no"}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Ok, "{}", out.reply.body);
    assert_eq!(out.reply.body["state"], "denied");
    let ws: WorkspaceRecord = record(c);
    assert!(ws.egress.domains.is_empty());
    assert_eq!(events(c, "egress_denied"), 1);
    // Asked again after a denial: pending again, for a person to see.
    c.asked(vec![ask("exfil.example.com", "pretty please")]);
    let list = c.call(
        ADMIN,
        Call::ListApprovals {
            state: Some("pending".into()),
        },
    );
    assert_eq!(list.reply.body["approvals"][0]["asks"], 2);
    let out = c.call(
        ADMIN,
        Call::DecideApproval {
            id: "apr_0000".into(),
            request: json!({"approve": true}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::NotFound);
}

#[test]
fn an_expiry_never_brings_a_quarantined_workspace_back() {
    let p = plane("approvals-quarantine");
    let c = &p.control;
    put_workspace(c, "ws_apr1", "tok_x", "running", u64::MAX / 2);
    c.asked(vec![ask("api.example.com", "why")]);
    stop(c);
    let id = approval_id("ws_apr1", "api.example.com", 443);
    let out = c.call(
        ADMIN,
        Call::DecideApproval {
            id,
            request: json!({"approve": true, "ttl_s": 10}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Ok, "{}", out.reply.body);
    let expires = out.reply.body["expires_at"].as_u64().expect("expires_at");
    // Quarantined meanwhile (its record says so).
    let mut ws: WorkspaceRecord = record(c);
    ws.state = crate::workspace::WsState::Quarantined;
    c.store.put(WORKSPACES, "ws_apr1", &ws).expect("put");
    c.expire_approvals(expires);
    let ws: WorkspaceRecord = record(c);
    assert_eq!(
        ws.state,
        crate::workspace::WsState::Quarantined,
        "not written back over"
    );
    let expired = c.call(
        ADMIN,
        Call::ListApprovals {
            state: Some("expired".into()),
        },
    );
    assert_eq!(
        expired.reply.body["approvals"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn only_an_admin_may_give_a_signal_the_quarantine_action() {
    let p = plane("signal-quarantine");
    let c = &p.control;
    let (_, tenant_secret) = tenant(c);
    let spec = json!({"ttl_s": 60, "signals": {"repeated_failure": {"threshold": 1, "window_s": 5, "action": "quarantine"}}});
    let out = c.call(&tenant_secret, Call::CreateWorkspace { spec: spec.clone() });
    assert_eq!(out.reply.verdict, Verdict::Forbidden, "{}", out.reply.body);
    assert!(out.reply.body.to_string().contains("quarantine action"));
    // An admin passes that check (and meets the next: no template here).
    let out = c.call(ADMIN, Call::CreateWorkspace { spec });
    assert_ne!(out.reply.verdict, Verdict::Forbidden, "{}", out.reply.body);
    // Stop is the tenant's to ask for.
    let stop = json!({"ttl_s": 60, "signals": {"repeated_failure": {"threshold": 1, "window_s": 5, "action": "stop"}}});
    let out = c.call(&tenant_secret, Call::CreateWorkspace { spec: stop });
    assert_ne!(out.reply.verdict, Verdict::Forbidden, "{}", out.reply.body);
}
