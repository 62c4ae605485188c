//! The control plane's own decisions, against a real store and audit log
//! in a scratch directory (no VM runs here): who may end a quarantined
//! workspace, and what a failed TTL expiry keeps.

use super::Control;
use crate::run_error::RunError;
use crate::store::WORKSPACES;
use crate::tokens::hash_secret;
use crate::workspace::{WorkspaceRecord, WsState};
use paddock_api_channel::Call;
use paddock_api_channel::Verdict;
use serde_json::json;
use std::cell::Cell;
use std::path::PathBuf;

pub(super) const ADMIN: &str = "pdk_admin_service_tests_bootstrap_secret";

pub(super) struct Plane {
    pub(super) control: Control,
    dir: PathBuf,
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.control.close();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn plane(name: &str) -> Plane {
    let dir = std::env::temp_dir().join(format!("paddock-service-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).expect("state dir");
    let control = Control::open(&dir.join("state"), &dir.join("audit"), None).expect("open");
    control
        .add_bootstrap(&hash_secret(ADMIN))
        .expect("bootstrap");
    Plane { control, dir }
}

/// A tenant token straight under the admin: (id, secret).
pub(super) fn tenant(c: &Control) -> (String, String) {
    let out = c.call(
        ADMIN,
        Call::CreateToken {
            request: json!({"name": "tenant", "scopes": ["create", "read", "exec", "files", "delete"]}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Created, "{}", out.reply.body);
    let body = out.reply.body;
    (
        body["id"].as_str().expect("id").into(),
        body["secret"].as_str().expect("secret").into(),
    )
}

pub(super) fn put_workspace(c: &Control, id: &str, owner: &str, state: &str, expires_at: u64) {
    let ws: WorkspaceRecord = serde_json::from_value(json!({
        "id": id, "owner": owner, "template": "default", "vcpus": 1,
        "memory_mib": 128, "disk_mib": 256, "labels": {}, "env": {},
        "created_at": 1, "expires_at": expires_at, "state": state, "uid": 200000
    }))
    .expect("record");
    c.store.put(WORKSPACES, id, &ws).expect("put");
}

fn state_of(c: &Control, id: &str) -> Option<WsState> {
    c.store
        .get::<WorkspaceRecord>(WORKSPACES, id)
        .expect("get")
        .map(|w| w.state)
}

pub(super) fn events(c: &Control, kind: &str) -> usize {
    c.audit
        .read(&[("event".to_string(), kind.to_string())], 1000)
        .len()
}

#[test]
fn only_an_admin_stops_or_deletes_a_quarantined_workspace() {
    let p = plane("quarantine");
    let c = &p.control;
    let (owner, secret) = tenant(c);
    put_workspace(c, "ws_evidence", &owner, "quarantined", u64::MAX);
    for call in [
        Call::StopWorkspace {
            id: "ws_evidence".into(),
        },
        Call::DeleteWorkspace {
            id: "ws_evidence".into(),
        },
    ] {
        let out = c.call(&secret, call);
        assert_eq!(out.reply.verdict, Verdict::Forbidden, "{}", out.reply.body);
        assert!(
            out.reply.body.to_string().contains("only an admin"),
            "{}",
            out.reply.body
        );
    }
    // The evidence is untouched and its owner still sees it.
    assert_eq!(state_of(c, "ws_evidence"), Some(WsState::Quarantined));
    let out = c.call(
        &secret,
        Call::GetWorkspace {
            id: "ws_evidence".into(),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Ok, "{}", out.reply.body);
    // The same owner still ends its workspaces that are not quarantined.
    put_workspace(c, "ws_plain", &owner, "stopped", u64::MAX);
    let out = c.call(
        &secret,
        Call::StopWorkspace {
            id: "ws_plain".into(),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Ok, "{}", out.reply.body);
}

#[test]
fn a_failed_expiry_keeps_the_record_and_is_retried_later() {
    let p = plane("expiry");
    let c = &p.control;
    let (owner, _) = tenant(c);
    put_workspace(c, "ws_due", &owner, "stopped", 1000);
    put_workspace(c, "ws_later", &owner, "stopped", 5000);
    put_workspace(c, "ws_held", &owner, "quarantined", 10);
    let attempts = Cell::new(0);
    let failing = |id: &str| {
        assert_eq!(
            id, "ws_due",
            "only the expired, unquarantined one is destroyed"
        );
        attempts.set(attempts.get() + 1);
        Err(RunError::NotReady("keys are locked".into()))
    };
    c.expire_due(1000, failing);
    assert_eq!(attempts.get(), 1);
    assert_eq!(state_of(c, "ws_due"), Some(WsState::Stopped), "record kept");
    assert_eq!(events(c, "workspace_expiry_failed"), 1);
    // Not hammered: the next tries wait out the retry interval.
    c.expire_due(1001, failing);
    c.expire_due(1000 + super::EXPIRY_RETRY_S - 1, failing);
    assert_eq!(attempts.get(), 1);
    // Tried again after it, still failing: one audit event, not one a try.
    c.expire_due(1000 + super::EXPIRY_RETRY_S, failing);
    assert_eq!(attempts.get(), 2);
    assert_eq!(events(c, "workspace_expiry_failed"), 1);
    // Once the destroy works, the record goes and the expiry is audited.
    let destroyed = Cell::new(0);
    c.expire_due(1000 + 2 * super::EXPIRY_RETRY_S, |id| {
        assert_eq!(id, "ws_due");
        destroyed.set(destroyed.get() + 1);
        Ok(())
    });
    assert_eq!(destroyed.get(), 1);
    assert_eq!(state_of(c, "ws_due"), None);
    assert_eq!(events(c, "workspace_expired"), 1);
    assert_eq!(state_of(c, "ws_later"), Some(WsState::Stopped));
    assert_eq!(state_of(c, "ws_held"), Some(WsState::Quarantined));
}

/// The probes: absent (404) until enabled, and then an admin's only.
/// Without the feature, enabling them is refused and they stay absent.
#[test]
fn probes_are_absent_unless_built_and_enabled_and_then_admin_only() {
    let p = plane("probes");
    let c = &p.control;
    let (_, tenant_secret) = tenant(c);
    let console = || Call::ReadConsole {
        name: "ws_nothing".into(),
    };
    assert_eq!(c.call(ADMIN, console()).reply.verdict, Verdict::NotFound);
    let enabled = c.enable_test_probes();
    assert_eq!(enabled, cfg!(feature = "test-probes"));
    if !enabled {
        assert_eq!(c.call(ADMIN, console()).reply.verdict, Verdict::NotFound);
        return;
    }
    assert_eq!(
        c.call(&tenant_secret, console()).reply.verdict,
        Verdict::Forbidden
    );
    assert_eq!(
        c.call(&tenant_secret, Call::DropCaches).reply.verdict,
        Verdict::Forbidden
    );
    assert_eq!(
        c.call(&tenant_secret, Call::KillNetServices).reply.verdict,
        Verdict::Forbidden
    );
    // An admin's kill with no process running (none in this test).
    assert_eq!(
        c.call(ADMIN, Call::KillNetServices).reply.verdict,
        Verdict::Conflict
    );
    assert_eq!(
        c.call(
            &tenant_secret,
            Call::ScanProcesses {
                needle: "a-long-enough-needle".into()
            }
        )
        .reply
        .verdict,
        Verdict::Forbidden
    );
    // An admin gets past the scope check (no console of that name here).
    assert_eq!(c.call(ADMIN, console()).reply.verdict, Verdict::NotFound);
    assert!(c
        .call(ADMIN, console())
        .reply
        .body
        .to_string()
        .contains("no console of ws_nothing"));
}

#[test]
fn a_ttl_is_moved_only_by_its_creators_within_the_limits() {
    let p = plane("ttl");
    let c = &p.control;
    let (owner, secret) = tenant(c);
    put_workspace(c, "ws_ttl", &owner, "running", 10);
    let set = |secret: &str, ttl_s: u64| {
        c.call(
            secret,
            Call::SetTtl {
                id: "ws_ttl".into(),
                ttl_s,
                reason: None,
            },
        )
    };
    let out = set(&secret, 600);
    assert_eq!(out.reply.verdict, Verdict::Ok, "{}", out.reply.body);
    let expires = out.reply.body["expires_at"].as_u64().expect("expires_at");
    let now = crate::audit::now_s();
    assert!((now + 590..=now + 610).contains(&expires), "{expires}");
    for bad in [0, crate::workspace::MAX_TTL_S + 1] {
        assert_eq!(set(&secret, bad).reply.verdict, Verdict::Invalid);
    }
    // A token without create scope, and one that cannot see it.
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
    assert_eq!(set(&reader, 60).reply.verdict, Verdict::Forbidden);
    // Create scope moves the end later, never sooner: that is deleting.
    let extender = c.call(
        &secret,
        Call::CreateToken {
            request: json!({"name": "extender", "scopes": ["create", "read"], "workspace_ids": ["ws_ttl"]}),
        },
    );
    let extender = extender.reply.body["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_eq!(set(&extender, 900).reply.verdict, Verdict::Ok);
    assert_eq!(set(&extender, 5).reply.verdict, Verdict::Forbidden);
    let (_, stranger) = tenant(c);
    assert_eq!(set(&stranger, 60).reply.verdict, Verdict::Forbidden);
    // Only a running workspace.
    put_workspace(c, "ws_ttl", &owner, "stopped", 10);
    assert_eq!(set(&secret, 60).reply.verdict, Verdict::Conflict);
}
