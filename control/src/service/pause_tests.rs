//! Pause and resume as the control plane decides them (no VM runs here):
//! who may, in which states, for how long, and what a paused workspace's
//! TTL does. The VM's side is the appliance suite's (pause_resume.rs).

use super::tests::{events, plane, put_workspace, tenant, ADMIN};
use crate::store::WORKSPACES;
use crate::workspace::{PausedAt, WorkspaceRecord, WsState};
use paddock_api_channel::{Call, Verdict};
use serde_json::json;
use std::cell::Cell;

fn pause(id: &str, ttl_s: Option<u64>) -> Call {
    Call::PauseWorkspace {
        id: id.into(),
        ttl_s,
    }
}

fn resume(id: &str) -> Call {
    Call::ResumeWorkspace { id: id.into() }
}

fn set_paused(c: &super::Control, id: &str, at: u64, ttl_left_s: u64) {
    c.store
        .update(WORKSPACES, id, |w: &mut WorkspaceRecord| {
            w.paused = Some(PausedAt {
                at,
                ttl_left_s,
                for_reboot: false,
            });
            Ok::<(), String>(())
        })
        .expect("update");
}

#[test]
fn only_a_running_workspace_pauses_and_only_a_paused_one_resumes() {
    let p = plane("pause-states");
    let c = &p.control;
    let (owner, secret) = tenant(c);
    for state in ["stopped", "lost", "starting"] {
        let id = format!("ws_{state}");
        put_workspace(c, &id, &owner, state, u64::MAX);
        let out = c.call(&secret, pause(&id, None));
        assert_eq!(out.reply.verdict, Verdict::Conflict, "{}", out.reply.body);
        assert!(
            out.reply
                .body
                .to_string()
                .contains("only a running workspace"),
            "{}",
            out.reply.body
        );
        let out = c.call(&secret, resume(&id));
        assert_eq!(out.reply.verdict, Verdict::Conflict, "{}", out.reply.body);
    }
    // A record that says paused without its pause (damaged) is not resumed.
    put_workspace(c, "ws_half", &owner, "paused", u64::MAX);
    let out = c.call(&secret, resume("ws_half"));
    assert_eq!(out.reply.verdict, Verdict::Conflict, "{}", out.reply.body);
    // A paused workspace is not stopped behind its pause: resume or delete.
    put_workspace(c, "ws_paused", &owner, "paused", u64::MAX);
    set_paused(c, "ws_paused", 10, 100);
    let out = c.call(
        &secret,
        Call::StopWorkspace {
            id: "ws_paused".into(),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Conflict, "{}", out.reply.body);
    let out = c.call(&secret, pause("ws_paused", None));
    assert_eq!(out.reply.verdict, Verdict::Conflict, "{}", out.reply.body);
}

/// The attacks: a sibling tenant, a token without the scope, a paused TTL
/// past the token's quota, and a nonsense TTL.
#[test]
fn pausing_takes_the_delete_scope_within_the_tree_and_the_quota() {
    let p = plane("pause-who");
    let c = &p.control;
    let (owner, secret) = tenant(c);
    let (_, sibling) = tenant(c);
    put_workspace(c, "ws_a", &owner, "running", u64::MAX);
    for call in [pause("ws_a", None), resume("ws_a")] {
        let out = c.call(&sibling, call);
        assert_eq!(out.reply.verdict, Verdict::Forbidden, "{}", out.reply.body);
    }
    let reader = c.call(
        &secret,
        Call::CreateToken {
            request: json!({"name": "reader", "scopes": ["read"]}),
        },
    );
    let reader = reader.reply.body["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let out = c.call(&reader, pause("ws_a", None));
    assert_eq!(out.reply.verdict, Verdict::Forbidden, "{}", out.reply.body);
    let short = c.call(
        &secret,
        Call::CreateToken {
            request: json!({"name": "short", "scopes": ["read", "create", "delete"], "quotas": {"max_ttl_s": 600}}),
        },
    );
    assert_eq!(
        short.reply.verdict,
        Verdict::Created,
        "{}",
        short.reply.body
    );
    let short_id = short.reply.body["id"].as_str().expect("id").to_string();
    let short = short.reply.body["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    put_workspace(c, "ws_s", &short_id, "running", u64::MAX);
    let out = c.call(&short, pause("ws_s", Some(3600)));
    assert_eq!(out.reply.verdict, Verdict::Forbidden, "{}", out.reply.body);
    assert!(
        out.reply.body.to_string().contains("max_ttl_s"),
        "{}",
        out.reply.body
    );
    for ttl in [0, 10 * 24 * 3600] {
        let out = c.call(&secret, pause("ws_a", Some(ttl)));
        assert_eq!(out.reply.verdict, Verdict::Invalid, "{}", out.reply.body);
    }
    // Nothing was paused by any of it.
    let ws: WorkspaceRecord = c
        .store
        .get(WORKSPACES, "ws_a")
        .expect("get")
        .expect("there");
    assert_eq!(ws.state, WsState::Running);
    assert_eq!(events(c, "workspace_paused"), 0);
}

/// While paused, `expires_at` is the paused TTL's end: the workspace is
/// destroyed then like any other, unless a resume is under way.
#[test]
fn a_paused_workspace_is_deleted_when_its_paused_ttl_ends() {
    let p = plane("pause-ttl");
    let c = &p.control;
    let (owner, _) = tenant(c);
    put_workspace(c, "ws_p", &owner, "paused", 1000);
    set_paused(c, "ws_p", 10, 5000);
    let destroyed = Cell::new(0);
    c.expire_due(999, |_| {
        destroyed.set(destroyed.get() + 1);
        Ok(())
    });
    assert_eq!(destroyed.get(), 0, "its run TTL left is not its end");
    let busy = c.mark_busy("ws_p", super::pause_calls::Busy::Resuming);
    assert!(busy.is_ok());
    c.expire_due(1000, |_| {
        destroyed.set(destroyed.get() + 1);
        Ok(())
    });
    assert_eq!(destroyed.get(), 0, "not while a resume is under way");
    drop(busy);
    c.expire_due(1000, |id| {
        assert_eq!(id, "ws_p");
        destroyed.set(destroyed.get() + 1);
        Ok(())
    });
    assert_eq!(destroyed.get(), 1);
    assert_eq!(events(c, "workspace_expired"), 1);
}

/// A workspace being paused or resumed is not stopped, deleted, or paused
/// twice meanwhile.
#[test]
fn nothing_overlaps_a_pause_or_resume() {
    let p = plane("pause-busy");
    let c = &p.control;
    put_workspace(c, "ws_b", "tok_bootstrap", "running", u64::MAX);
    let _busy = c
        .mark_busy("ws_b", super::pause_calls::Busy::Pausing)
        .map_err(|_| "busy")
        .expect("marked");
    for call in [
        Call::StopWorkspace { id: "ws_b".into() },
        Call::DeleteWorkspace { id: "ws_b".into() },
        pause("ws_b", None),
        resume("ws_b"),
    ] {
        let out = c.call(ADMIN, call);
        assert_eq!(out.reply.verdict, Verdict::Conflict, "{}", out.reply.body);
        assert!(
            out.reply.body.to_string().contains("being paused"),
            "{}",
            out.reply.body
        );
    }
}

/// A quarantine does not land in the middle of a pause (which would end
/// the VM it freezes), nor a signal's stop.
#[test]
fn a_quarantine_waits_for_no_pause() {
    let p = plane("pause-quarantine");
    let c = &p.control;
    put_workspace(c, "ws_q", "tok_bootstrap", "running", u64::MAX);
    let busy = c
        .mark_busy("ws_q", super::pause_calls::Busy::Pausing)
        .map_err(|_| "busy")
        .expect("marked");
    let out = c.call(ADMIN, Call::QuarantineWorkspace { id: "ws_q".into() });
    assert_eq!(out.reply.verdict, Verdict::Conflict, "{}", out.reply.body);
    assert!(
        out.reply.body.to_string().contains("being paused"),
        "{}",
        out.reply.body
    );
    drop(busy);
    let ws: WorkspaceRecord = c
        .store
        .get(WORKSPACES, "ws_q")
        .expect("get")
        .expect("there");
    assert_eq!(ws.state, WsState::Running, "untouched");
}

/// The attack: pause two workspaces, create a third, resume both at once.
/// A workspace being resumed counts against its token's quota from the
/// moment its resume is admitted, though its record still says paused.
#[test]
fn a_resume_under_way_counts_against_the_quota() {
    let p = plane("pause-quota");
    let c = &p.control;
    let (_, secret) = tenant(c);
    let limited = c.call(
        &secret,
        Call::CreateToken {
            request: json!({"name": "limited", "scopes": ["read", "create", "delete"], "quotas": {"max_memory_mib": 256}}),
        },
    );
    assert_eq!(
        limited.reply.verdict,
        Verdict::Created,
        "{}",
        limited.reply.body
    );
    let limited_id = limited.reply.body["id"].as_str().expect("id").to_string();
    put_workspace(c, "ws_live", &limited_id, "running", u64::MAX);
    put_workspace(c, "ws_back", &limited_id, "paused", u64::MAX);
    set_paused(c, "ws_back", 10, 100);
    let all: Vec<WorkspaceRecord> = c.store.list(WORKSPACES).expect("list");
    let tok = c.tree().get(&limited_id).cloned().expect("token");
    // 128 MiB live: another 128 fits while the paused one is only paused.
    assert!(c
        .tree()
        .quota_problem(&tok, &c.as_admitted(all.clone()), 1, 128, 256)
        .is_none());
    let _busy = c
        .mark_busy("ws_back", super::pause_calls::Busy::Resuming)
        .map_err(|_| "busy")
        .expect("marked");
    let why = c
        .tree()
        .quota_problem(&tok, &c.as_admitted(all), 1, 128, 256)
        .expect("refused while the paused one is being resumed");
    assert!(why.contains("max_memory_mib"), "{why}");
}
