//! An attacker's review of the yellow actions, as tests: each of these
//! succeeded against the first version (a pre-update record stopping every
//! expiry, a take-back forgotten while the port stayed open, a guest
//! locking its owner out of asking, an approval shortening a workspace, a
//! re-ask reopening an approval while it was carried out).

use super::tests::{plane, put_workspace, ADMIN};
use crate::audit::now_s;
use crate::store::{APPROVALS, WORKSPACES};
use crate::workspace::{Published, WorkspaceRecord};
use paddock_api_channel::{Call, Verdict};
use paddock_api_types::{Approval, ApprovalAction, ApprovalState};
use paddock_net_services::requests::Ask;
use serde_json::{json, Value};

fn mint(c: &super::Control, request: Value) -> (String, String) {
    let out = c.call(ADMIN, Call::CreateToken { request });
    assert_eq!(out.reply.verdict, Verdict::Created, "{}", out.reply.body);
    let b = out.reply.body;
    (
        b["id"].as_str().expect("there").into(),
        b["secret"].as_str().expect("there").into(),
    )
}

/// A token that may only ask to publish ports (what the port tests' asker is).
fn port_asker(c: &super::Control) -> String {
    let request =
        json!({"name": "t", "scopes": ["create", "read"], "actions": {"publish_port": "ask"}});
    mint(c, request).0
}

fn ws(c: &super::Control, id: &str) -> WorkspaceRecord {
    c.store.get(WORKSPACES, id).expect("get").expect("there")
}

/// Port 80 of `workspace` published at 20000 by an approval of `asker`'s
/// that holds until `expires_at`, as a decision leaves it.
fn port_in_force(
    c: &super::Control,
    workspace: &str,
    id: &str,
    asker: &str,
    expires_at: u64,
) -> Approval {
    let mut w = ws(c, workspace);
    w.published.push(Published {
        port: 80,
        host_port: 20000,
        published_by: Some(id.into()),
    });
    c.store.put(WORKSPACES, workspace, &w).expect("put");
    let a = Approval {
        id: id.into(),
        workspace: workspace.into(),
        action: ApprovalAction::PublishPort {
            port: 80,
            host_port: Some(20000),
        },
        asked_by: Some(asker.into()),
        reason: String::new(),
        state: ApprovalState::Approved,
        asked_at: 1,
        asks: 1,
        decided_by: Some("tok_bootstrap".into()),
        decided_at: Some(1),
        decision_reason: None,
        expires_at: Some(expires_at),
    };
    c.store.put(APPROVALS, &a.id, &a).expect("put");
    a
}

/// An approval stored before this change (egress, no `kind`) makes every
/// list of APPROVALS fail: expiry stops for all grants, and the guest's
/// per-workspace cap is gone (asked() reads a failed list as 0 pending).
#[test]
fn a_pre_upgrade_approval_stops_every_expiry() {
    let p = plane("review-legacy");
    let c = &p.control;
    put_workspace(c, "ws_old", "tok_x", "stopped", u64::MAX / 2);
    let mut w = ws(c, "ws_old");
    w.egress.domains.push("api.example.com:443".into());
    c.store.put(WORKSPACES, "ws_old", &w).expect("put");
    // Exactly what the previous release wrote for an approved egress ask.
    c.store
        .put(
            APPROVALS,
            "apr_00000000000000aa",
            &json!({"id": "apr_00000000000000aa", "workspace": "ws_old",
                    "host": "api.example.com", "port": 443, "reason": "",
                    "state": "approved", "asked_at": 1, "asks": 1,
                    "decided_by": "tok_admin", "decided_at": 1, "expires_at": 100}),
        )
        .expect("put");
    let listed = c.call(ADMIN, Call::ListApprovals { state: None });
    assert_eq!(listed.reply.verdict, Verdict::Ok, "{}", listed.reply.body);
    c.expire_approvals(now_s());
    assert!(
        !ws(c, "ws_old")
            .egress
            .domains
            .contains(&"api.example.com:443".to_string()),
        "a grant approved before the upgrade is never taken out"
    );
}

#[test]
fn a_pre_upgrade_approval_lifts_the_guests_cap() {
    let p = plane("review-legacy-cap");
    let c = &p.control;
    put_workspace(c, "ws_g", "tok_x", "running", u64::MAX / 2);
    c.store
        .put(
            APPROVALS,
            "apr_00000000000000bb",
            &json!({"id": "apr_00000000000000bb", "workspace": "ws_other",
                    "host": "a.example.com", "port": 443, "reason": "",
                    "state": "denied", "asked_at": 1, "asks": 1}),
        )
        .expect("put");
    let asks = (0..100)
        .map(|i| Ask {
            workspace: "ws_g".into(),
            host: format!("h{i}.example.com"),
            port: 443,
            reason: String::new(),
        })
        .collect();
    c.asked(asks);
    let pending = c
        .store
        .list::<Value>(APPROVALS)
        .expect("raw list")
        .iter()
        .filter(|a| a["workspace"] == "ws_g" && a["state"] == "pending")
        .count();
    assert!(pending <= 32, "{pending} pending for one workspace");
}

/// withdraw_port writes the store first, then the firewall: when the
/// firewall refuses, the record says unpublished while the kernel still
/// forwards, and the next sweep finds nothing to take back and ends the
/// approval as expired. (Before this change, unpublish applied the
/// firewall first.) No firewall runs in unit tests: every apply fails.
#[test]
fn a_failed_take_back_is_forgotten_and_the_port_stays_open() {
    let p = plane("review-withdraw");
    let c = &p.control;
    let asker = port_asker(c);
    put_workspace(c, "ws_pub", &asker, "running", now_s() + 3600);
    // As decide_approval + carry_out leave a port in force.
    let a = port_in_force(c, "ws_pub", "apr_00000000000000cc", &asker, 2);
    c.expire_approvals(now_s()); // the firewall refuses: not taken back
    c.expire_approvals(now_s()); // retried
    let a: Approval = c.store.get(APPROVALS, &a.id).expect("get").expect("there");
    let still = ws(c, "ws_pub").published;
    assert!(
        a.state == ApprovalState::Approved || !still.is_empty(),
        "approval {:?} and record {still:?}: the firewall never took port 80 back, yet nothing is left to retry",
        a.state
    );
}

/// A guest fills its workspace's shared 32-pending cap with egress asks:
/// the owner's token can no longer ask for anything about it (and the
/// reverse: a token's asks make the guest's later asks vanish silently
/// behind a 202 from the request endpoint).
#[test]
fn a_guest_locks_its_owner_out_of_asking() {
    let p = plane("review-cap");
    let c = &p.control;
    let (owner, secret) = mint(
        c,
        json!({"name": "t", "scopes": ["create", "read"], "quotas": {"max_ttl_s": 3600},
               "actions": {"extend_ttl": "ask"}}),
    );
    put_workspace(c, "ws_cap", &owner, "running", now_s() + 600);
    let asks = (0..32)
        .map(|i| Ask {
            workspace: "ws_cap".into(),
            host: format!("h{i}.example.com"),
            port: 443,
            reason: String::new(),
        })
        .collect();
    c.asked(asks);
    let out = c.call(
        &secret,
        Call::SetTtl {
            id: "ws_cap".into(),
            ttl_s: 7200,
            reason: None,
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Accepted, "{}", out.reply.body);
}

/// An extend_ttl approval shortens: the asker (create, no delete scope)
/// asked for 2 h when the workspace had 1 h left; an admin since gave it
/// 7 days; approving the ask cuts that back to 2 h, which the asker could
/// not do itself (ending sooner takes the delete scope).
#[test]
fn an_extend_ttl_approval_ends_a_workspace_sooner() {
    let p = plane("review-shorten");
    let c = &p.control;
    let (owner, secret) = mint(
        c,
        json!({"name": "t", "scopes": ["create", "read"], "quotas": {"max_ttl_s": 3600},
               "actions": {"extend_ttl": "ask"}}),
    );
    put_workspace(c, "ws_s", &owner, "running", now_s() + 3600);
    let out = c.call(
        &secret,
        Call::SetTtl {
            id: "ws_s".into(),
            ttl_s: 7200,
            reason: None,
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Accepted, "{}", out.reply.body);
    let id = out.reply.body["id"].as_str().expect("there").to_string();
    let out = c.call(
        ADMIN,
        Call::SetTtl {
            id: "ws_s".into(),
            ttl_s: 7 * 24 * 3600,
            reason: None,
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Ok, "{}", out.reply.body);
    let before = ws(c, "ws_s").expires_at;
    // The asker alone may not end it sooner:
    let out = c.call(
        &secret,
        Call::SetTtl {
            id: "ws_s".into(),
            ttl_s: 60,
            reason: None,
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Forbidden, "{}", out.reply.body);
    let out = c.call(
        ADMIN,
        Call::DecideApproval {
            id: id.clone(),
            request: json!({"approve": true}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Conflict, "{}", out.reply.body);
    assert!(out.reply.body["error"]
        .as_str()
        .is_some_and(|e| e.contains("later than asked")));
    let after = ws(c, "ws_s").expires_at;
    assert_eq!(
        after, before,
        "an extend_ttl approval cut the end from {before} to {after}"
    );
    let a: Approval = c.store.get(APPROVALS, &id).expect("get").expect("there");
    assert_eq!(a.state, ApprovalState::Denied, "void");
}

/// put_in_force's last write does not check that the record is still the
/// approval it carried out: a re-ask landing while the action is being
/// done turns it back to pending (expires_at None) after it was done. For
/// a port or a link, that grant is then never taken back (no expiry); shown
/// here with extend_ttl, the only kind a unit test can carry out.
#[test]
fn a_reask_during_the_decision_leaves_a_done_action_pending() {
    let p = plane("review-race");
    let c = &p.control;
    let (owner, secret) = mint(
        c,
        json!({"name": "t", "scopes": ["create", "read"], "quotas": {"max_ttl_s": 3600},
               "actions": {"extend_ttl": "ask"}}),
    );
    put_workspace(c, "ws_r", &owner, "running", now_s() + 600);
    for round in 0..50 {
        let out = c.call(
            &secret,
            Call::SetTtl {
                id: "ws_r".into(),
                ttl_s: 7200,
                reason: None,
            },
        );
        assert_eq!(out.reply.verdict, Verdict::Accepted, "{}", out.reply.body);
        let id = out.reply.body["id"].as_str().expect("there").to_string();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = c.call(
                        &secret,
                        Call::SetTtl {
                            id: "ws_r".into(),
                            ttl_s: 7200,
                            reason: None,
                        },
                    );
                }
            });
            let out = c.call(
                ADMIN,
                Call::DecideApproval {
                    id: id.clone(),
                    request: json!({"approve": true}),
                },
            );
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            // Carried out, the decision's answer is the record as decided:
            // never one an ask reopened meanwhile.
            if out.reply.verdict == Verdict::Ok {
                assert_eq!(
                    out.reply.body["state"], "approved",
                    "round {round}: the decision answered 200 {}",
                    out.reply.body
                );
            }
        });
        // Back to pending for the next round if it ended approved.
        let _ = c.call(
            &secret,
            Call::SetTtl {
                id: "ws_r".into(),
                ttl_s: 7200,
                reason: None,
            },
        );
    }
}

/// The reverse: a token's asks about a workspace never silence the
/// workspace's own egress requests; and words that would read as other
/// words (a right-to-left override, a zero-width space) are refused.
#[test]
fn a_token_cannot_silence_its_workspace_or_hide_its_words() {
    let p = plane("review-cap-reverse");
    let c = &p.control;
    let (owner, secret) = mint(
        c,
        json!({"name": "t", "scopes": ["create", "read"], "actions": {"publish_port": "ask"}}),
    );
    put_workspace(c, "ws_rev", &owner, "running", now_s() + 600);
    for port in 1..=32u16 {
        let out = c.call(
            &secret,
            Call::PublishPort {
                id: "ws_rev".into(),
                request: json!({"port": port}),
            },
        );
        assert_eq!(out.reply.verdict, Verdict::Accepted, "{}", out.reply.body);
    }
    let out = c.call(
        &secret,
        Call::PublishPort {
            id: "ws_rev".into(),
            request: json!({"port": 33}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::TooMany);
    assert!(
        !out.reply.body["error"]
            .as_str()
            .expect("error")
            .contains("32"),
        "no counts in the refusal: {}",
        out.reply.body
    );
    c.asked(vec![Ask {
        workspace: "ws_rev".into(),
        host: "api.example.com".into(),
        port: 443,
        reason: "safe\u{202e}txt.exe".into(),
    }]);
    let egress: Vec<Approval> = c
        .store
        .list_readable::<Approval>(APPROVALS)
        .expect("list")
        .into_iter()
        .filter(|a| matches!(a.action, ApprovalAction::Egress { .. }))
        .collect();
    assert_eq!(egress.len(), 1, "the workspace's own ask is recorded");
    assert_eq!(
        egress[0].reason, "safetxt.exe",
        "invisible characters dropped"
    );
    for hidden in ["a\u{202e}b", "a\u{200b}b", "a\u{2028}b", "a\u{2066}b"] {
        let out = c.call(
            &secret,
            Call::PublishPort {
                id: "ws_rev".into(),
                request: json!({"port": 34, "reason": hidden}),
            },
        );
        assert_eq!(out.reply.verdict, Verdict::Invalid, "{hidden:?}");
    }
}

/// A port or link a token's approval gave ends with that token: revoked,
/// its grants are taken back by the next sweep, not a week later.
#[test]
fn revoking_the_asker_takes_its_grants_back() {
    let p = plane("review-revoke-grants");
    let c = &p.control;
    let asker = port_asker(c);
    // Stopped, so the take-back needs no firewall here.
    put_workspace(c, "ws_grant", &asker, "stopped", now_s() + 3600);
    let a = port_in_force(
        c,
        "ws_grant",
        "apr_00000000000000dd",
        &asker,
        now_s() + 7 * 24 * 3600,
    );
    c.expire_approvals(now_s());
    assert_eq!(
        ws(c, "ws_grant").published.len(),
        1,
        "held while the asker lives"
    );
    let out = c.call(ADMIN, Call::RevokeToken { id: asker });
    assert_eq!(out.reply.verdict, Verdict::Ok, "{}", out.reply.body);
    c.expire_approvals(now_s());
    let a: Approval = c.store.get(APPROVALS, &a.id).expect("get").expect("there");
    assert_eq!(a.state, ApprovalState::Expired);
    assert!(ws(c, "ws_grant").published.is_empty(), "taken back");
}

/// An approval's port, taken back by hand and published again at the same
/// host port by an admin (no approval): when the approval ended, its
/// take-back matched by port and host port and closed the admin's.
#[test]
fn an_ending_approval_takes_back_only_the_port_it_gave() {
    let p = plane("review-republished");
    let c = &p.control;
    let asker = port_asker(c);
    // Stopped: no firewall to apply in a unit test; the records decide.
    put_workspace(c, "ws_re", &asker, "stopped", now_s() + 3600);
    let a = port_in_force(c, "ws_re", "apr_00000000000000dd", &asker, 2);
    let mut w = ws(c, "ws_re");
    w.published = vec![Published {
        port: 80,
        host_port: 20000,
        published_by: Some("tok_bootstrap".into()),
    }];
    c.store.put(WORKSPACES, "ws_re", &w).expect("put");
    c.expire_approvals(now_s());
    let a: Approval = c.store.get(APPROVALS, &a.id).expect("get").expect("there");
    assert_eq!(a.state, ApprovalState::Expired, "{a:?}");
    assert_eq!(
        ws(c, "ws_re").published.len(),
        1,
        "the admin's own port 80 was taken back with the approval's"
    );
    // The approval's own port does go.
    port_in_force(c, "ws_re", "apr_00000000000000de", &asker, 2);
    c.expire_approvals(now_s());
    let left = ws(c, "ws_re").published;
    assert!(
        left.len() == 1 && left[0].published_by.as_deref() == Some("tok_bootstrap"),
        "{left:?}"
    );
}

/// A port an approval gave before `published_by` existed has none: the
/// approval's end still takes it back (by its host port).
#[test]
fn a_port_given_before_published_by_is_still_taken_back() {
    let p = plane("review-legacy-port");
    let c = &p.control;
    let asker = port_asker(c);
    put_workspace(c, "ws_old", &asker, "stopped", now_s() + 3600);
    port_in_force(c, "ws_old", "apr_00000000000000ef", &asker, 2);
    let mut w = ws(c, "ws_old");
    w.published[0].published_by = None;
    c.store.put(WORKSPACES, "ws_old", &w).expect("put");
    c.expire_approvals(now_s());
    assert!(ws(c, "ws_old").published.is_empty());
}
