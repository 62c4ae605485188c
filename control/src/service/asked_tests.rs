//! Yellow actions and their approvals, attacked the way a tenant would:
//! against a real store, token tree and audit log (no VM runs, so a port
//! or a link that would need the firewall fails at the decision, which
//! must then leave nothing behind).

use super::tests::{events, plane, put_workspace, tenant, ADMIN};
use crate::audit::now_s;
use crate::store::{APPROVALS, WORKSPACES};
use crate::workspace::WorkspaceRecord;
use paddock_api_channel::{Call, Verdict};
use paddock_api_types::{Approval, ApprovalState};
use serde_json::{json, Value};

/// A token minted by the holder of `parent`: (id, secret), or the refusal.
fn mint(c: &super::Control, parent: &str, request: Value) -> Result<(String, String), String> {
    let out = c.call(parent, Call::CreateToken { request });
    if out.reply.verdict != Verdict::Created {
        return Err(format!("{:?}: {}", out.reply.verdict, out.reply.body));
    }
    let b = out.reply.body;
    Ok((
        b["id"].as_str().expect("id").into(),
        b["secret"].as_str().expect("secret").into(),
    ))
}

/// A tenant under the admin whose policy and quotas are given.
fn tenant_with(c: &super::Control, actions: Value, max_ttl_s: u64) -> (String, String) {
    mint(
        c,
        ADMIN,
        json!({"name": "yellow", "scopes": ["create", "read", "exec", "delete"],
               "quotas": {"max_ttl_s": max_ttl_s}, "actions": actions}),
    )
    .expect("admin mints")
}

fn set_ttl(
    c: &super::Control,
    secret: &str,
    id: &str,
    ttl_s: u64,
    reason: &str,
) -> (Verdict, Value) {
    let out = c.call(
        secret,
        Call::SetTtl {
            id: id.into(),
            ttl_s,
            reason: Some(reason.into()),
        },
    );
    (out.reply.verdict, out.reply.body)
}

fn expires_at(c: &super::Control, id: &str) -> u64 {
    c.store
        .get::<WorkspaceRecord>(WORKSPACES, id)
        .expect("get")
        .expect("there")
        .expires_at
}

fn approval(c: &super::Control, id: &str) -> Approval {
    c.store.get(APPROVALS, id).expect("get").expect("there")
}

fn decide(c: &super::Control, secret: &str, id: &str, decision: Value) -> (Verdict, Value) {
    let out = c.call(
        secret,
        Call::DecideApproval {
            id: id.into(),
            request: decision,
        },
    );
    (out.reply.verdict, out.reply.body)
}

#[test]
fn a_policy_only_narrows_down_a_tree() {
    let p = plane("asked-mint");
    let c = &p.control;
    let (_, asker) = tenant_with(c, json!({"extend_ttl": "ask", "link": "allow"}), 3600);
    // A child cannot be let do alone what its parent may only ask for,
    // nor live past the parent's TTL quota.
    for wider in [
        json!({"name": "c", "scopes": ["create"], "actions": {"extend_ttl": "allow"}}),
        json!({"name": "c", "scopes": ["create"], "actions": {"publish_port": "ask"}}),
        json!({"name": "c", "scopes": ["create"], "quotas": {"max_ttl_s": 3601}}),
    ] {
        let refused = mint(c, &asker, wider.clone()).expect_err("wider than its parent");
        assert!(refused.starts_with("Forbidden"), "{wider}: {refused}");
    }
    let refused = mint(
        c,
        &asker,
        json!({"name": "c", "scopes": ["create"], "actions": {"extend_ttl": "maybe"}}),
    )
    .expect_err("an unknown rule");
    assert!(refused.starts_with("Invalid"), "{refused}");
    // Narrower is fine; absent is deny for each, whatever the parent has.
    mint(
        c,
        &asker,
        json!({"name": "c", "scopes": ["create"], "actions": {"link": "ask"}}),
    )
    .expect("narrower");
    let (child, _) = mint(c, &asker, json!({"name": "c", "scopes": ["create"]})).expect("plain");
    let list = c.call(ADMIN, Call::ListTokens);
    let shown = list.reply.body["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == child.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(
        shown["actions"],
        json!({"extend_ttl": "deny", "publish_port": "deny", "link": "deny"})
    );
    assert_eq!(shown["quotas"]["max_ttl_s"], 3600, "the quota is inherited");
}

#[test]
fn a_ttl_past_the_quota_is_refused_or_waits_for_an_admin_and_runs_from_the_decision() {
    let p = plane("asked-ttl");
    let c = &p.control;
    let (deny_id, denier) = tenant_with(c, json!({}), 3600);
    let (asker_id, asker) = tenant_with(c, json!({"extend_ttl": "ask"}), 3600);
    let (_, other) = tenant(c);
    put_workspace(c, "ws_d", &deny_id, "running", now_s() + 60);
    put_workspace(c, "ws_a", &asker_id, "running", now_s() + 60);

    // Within the quota: done. Past it: refused, saying why.
    assert_eq!(set_ttl(c, &denier, "ws_d", 3600, "").0, Verdict::Ok);
    let (v, body) = set_ttl(c, &denier, "ws_d", 7200, "");
    assert_eq!(v, Verdict::Forbidden, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("max_ttl_s 3600"),
        "{body}"
    );
    // A create past it is refused too (asking is for running workspaces).
    let out = c.call(
        &asker,
        Call::CreateWorkspace {
            spec: json!({"ttl_s": 7200}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Forbidden, "{}", out.reply.body);

    // Asking: 202, nothing changes yet.
    let before = expires_at(c, "ws_a");
    let (v, asked) = set_ttl(c, &asker, "ws_a", 7200, "the build takes two hours");
    assert_eq!(v, Verdict::Accepted, "{asked}");
    assert_eq!(asked["kind"], "extend_ttl");
    assert_eq!(asked["state"], "pending");
    assert_eq!(asked["asked_by"], asker_id.as_str());
    assert_eq!(expires_at(c, "ws_a"), before);
    let id = asked["id"].as_str().expect("id").to_string();
    let (v, again) = set_ttl(c, &asker, "ws_a", 7200, "still two hours");
    assert_eq!(
        (v, again["id"].clone(), again["asks"].clone()),
        (Verdict::Accepted, json!(id), json!(2))
    );
    assert_eq!(events(c, "approval_requested"), 1, "the repeat is counted");

    // The asker follows its own ask; nobody else's answer tells it exists.
    let mine = c.call(&asker, Call::GetApproval { id: id.clone() });
    assert_eq!(mine.reply.verdict, Verdict::Ok);
    let theirs = c.call(&other, Call::GetApproval { id: id.clone() });
    assert_eq!(theirs.reply.verdict, Verdict::NotFound);
    let nosuch = c.call(
        &other,
        Call::GetApproval {
            id: "apr_0000000000000000".into(),
        },
    );
    assert_eq!(
        nosuch.reply.body,
        json!({"error": "no approval apr_0000000000000000"})
    );
    assert_eq!(theirs.reply.body["error"], format!("no approval {id}"));
    let list = c.call(&other, Call::ListApprovals { state: None });
    assert_eq!(
        list.reply.body["approvals"],
        json!([]),
        "another tenant's list"
    );
    let list = c.call(&asker, Call::ListApprovals { state: None });
    assert_eq!(list.reply.body["approvals"][0]["id"], id.as_str());

    // Only an admin decides, and not the asker about itself.
    assert_eq!(
        decide(c, &asker, &id, json!({"approve": true})).0,
        Verdict::Forbidden
    );
    let (v, decided) = decide(c, ADMIN, &id, json!({"approve": true, "reason": "ok"}));
    assert_eq!(v, Verdict::Ok, "{decided}");
    assert_eq!(decided["state"], "approved");
    assert!(decided.get("expires_at").is_none(), "a one-off: {decided}");
    let now = now_s();
    let after = expires_at(c, "ws_a");
    assert!((now + 7190..=now + 7210).contains(&after), "{after}");
    assert_eq!(events(c, "approval_approved"), 1);
    let changed = c
        .audit
        .read(&[("event".into(), "workspace_ttl_changed".into())], 10);
    assert!(
        changed
            .iter()
            .any(|e| e.text("approval") == Some(id.as_str())
                && e.text("token") == Some(asker_id.as_str())),
        "{changed:?}"
    );
    // Decided once: a second decision finds it decided.
    assert_eq!(
        decide(c, ADMIN, &id, json!({"approve": true})).0,
        Verdict::Conflict
    );
    // The expiry sweep leaves a one-off alone.
    c.expire_approvals(now + 10 * 24 * 3600);
    assert_eq!(approval(c, &id).state, ApprovalState::Approved);

    // Asked again after it was done: a new ask.
    let (v, anew) = set_ttl(c, &asker, "ws_a", 7200, "once more");
    assert_eq!(
        (v, anew["state"].clone()),
        (Verdict::Accepted, json!("pending"))
    );
}

#[test]
fn an_approval_is_void_once_the_asker_no_longer_may() {
    let p = plane("asked-void");
    let c = &p.control;
    let (asker_id, asker) = tenant_with(c, json!({"extend_ttl": "ask"}), 60);
    put_workspace(c, "ws_v", &asker_id, "running", now_s() + 60);
    let (_, asked) = set_ttl(c, &asker, "ws_v", 600, "");
    let id = asked["id"].as_str().expect("id").to_string();
    let before = expires_at(c, "ws_v");
    let out = c.call(
        ADMIN,
        Call::RevokeToken {
            id: asker_id.clone(),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Ok, "{}", out.reply.body);
    let (v, body) = decide(c, ADMIN, &id, json!({"approve": true}));
    assert_eq!(v, Verdict::Conflict, "{body}");
    assert!(
        body["error"].as_str().expect("error").contains("revoked"),
        "{body}"
    );
    let a = approval(c, &id);
    assert_eq!(a.state, ApprovalState::Denied, "void ends it");
    assert!(a.decision_reason.expect("why").starts_with("void:"));
    assert_eq!(expires_at(c, "ws_v"), before, "nothing was done");
}

#[test]
fn a_tenant_cannot_ask_about_what_it_cannot_see_or_flood_the_queue() {
    let p = plane("asked-attacks");
    let c = &p.control;
    let (asker_id, asker) = tenant_with(c, json!({"publish_port": "ask", "link": "ask"}), 60);
    let (victim, _) = tenant(c);
    put_workspace(c, "ws_mine", &asker_id, "running", now_s() + 60);
    put_workspace(c, "ws_theirs", &victim, "running", now_s() + 60);

    // Another tenant's workspace: the same refusal as for none at all, and
    // nothing recorded for an admin to approve by mistake.
    for id in ["ws_theirs", "ws_nosuch"] {
        let out = c.call(
            &asker,
            Call::PublishPort {
                id: id.into(),
                request: json!({"port": 80}),
            },
        );
        assert_eq!(out.reply.verdict, Verdict::Forbidden, "{id}");
        assert_eq!(out.reply.body["error"], super::NO_SUCH_WORKSPACE);
    }
    let out = c.call(
        &asker,
        Call::CreateLink {
            request: json!({"from": "ws_mine", "to": "ws_theirs", "port": 80}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Forbidden, "{}", out.reply.body);
    assert_eq!(events(c, "approval_requested"), 0);

    // Words that would rewrite an admin's terminal are refused.
    let out = c.call(
        &asker,
        Call::PublishPort {
            id: "ws_mine".into(),
            request: json!({"port": 80, "reason": "fine\u{1b}[2J"}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Invalid, "{}", out.reply.body);

    // At most 32 pending per workspace; then a clear 429, nothing lost.
    for port in 1..=32u16 {
        let out = c.call(
            &asker,
            Call::PublishPort {
                id: "ws_mine".into(),
                request: json!({"port": port}),
            },
        );
        assert_eq!(
            out.reply.verdict,
            Verdict::Accepted,
            "{port}: {}",
            out.reply.body
        );
    }
    let out = c.call(
        &asker,
        Call::PublishPort {
            id: "ws_mine".into(),
            request: json!({"port": 33}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::TooMany, "{}", out.reply.body);
    let pending = c.call(
        &asker,
        Call::ListApprovals {
            state: Some("pending".into()),
        },
    );
    assert_eq!(
        pending.reply.body["approvals"].as_array().map(Vec::len),
        Some(32)
    );

    // Approved while the workspace has no network (no VM here): it cannot be
    // done, so it stays pending, and the record holds no half-published port.
    let id = pending.reply.body["approvals"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (v, body) = decide(c, ADMIN, &id, json!({"approve": true}));
    assert_eq!(v, Verdict::Unavailable, "{body}");
    assert_eq!(approval(c, &id).state, ApprovalState::Pending);
    let ws: WorkspaceRecord = c
        .store
        .get(WORKSPACES, "ws_mine")
        .expect("get")
        .expect("there");
    assert!(ws.published.is_empty(), "{:?}", ws.published);
    // Denied: ends, and is the asker's to read.
    let (v, body) = decide(c, ADMIN, &id, json!({"approve": false, "reason": "no"}));
    assert_eq!((v, body["state"].clone()), (Verdict::Ok, json!("denied")));
    assert_eq!(events(c, "approval_denied"), 1);
}

#[test]
fn a_token_whose_policy_denies_is_refused_before_anything_is_looked_at() {
    let p = plane("asked-deny");
    let c = &p.control;
    let (owner, plain) = tenant(c);
    put_workspace(c, "ws_p", &owner, "running", now_s() + 60);
    let calls = [
        Call::PublishPort {
            id: "ws_p".into(),
            request: json!({"port": 80}),
        },
        Call::UnpublishPort {
            id: "ws_p".into(),
            port: "80".into(),
        },
        Call::CreateLink {
            request: json!({"from": "ws_p", "to": "ws_x", "port": 80}),
        },
        Call::ListLinks,
        Call::DeleteLink { id: "lnk_1".into() },
    ];
    for call in calls {
        let what = format!("{call:?}");
        let out = c.call(&plain, call);
        assert_eq!(out.reply.verdict, Verdict::Forbidden, "{what}");
        assert!(
            out.reply.body["error"]
                .as_str()
                .expect("error")
                .contains("actions."),
            "{what}: {}",
            out.reply.body
        );
    }
    assert_eq!(events(c, "approval_requested"), 0);
}
