//! Yellow actions through approval against the booted appliance (issue 17,
//! part 2): a token whose policy says "ask" asks to publish a port, to live
//! past its TTL quota and to link two workspaces; nothing happens until an
//! admin approves; approved, the port is reachable from the uplink until
//! the approval runs out and then not; a child cannot widen the policy;
//! an ask whose asker was revoked is void when approved. The webhook tells
//! a person at once, signed.

use super::{exec_output, json};
use paddock_tests::appliance::Appliance;
use paddock_tests::fakenet::FakeNet;
use serde_json::{json as j, Value};
use sha2::{Digest, Sha256};
use std::process::Command;
use std::time::Duration;

/// The webhook's signing secret in this test's appliance configuration.
pub const HOOK_SECRET: &str = "paddock-network-test-webhook";

/// HMAC-SHA256 (RFC 2104), written out so the check does not share the
/// appliance's code.
fn hmac_sha256(key: &[u8], body: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(body)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits for the webhook receiver to get `event` about `approval`; its
/// body, checked against its signature.
pub fn hooked(net: &FakeNet, event: &str, approval: &str) -> Value {
    for _ in 0..120 {
        let seen = net.hooks.lock().map(|l| l.clone()).unwrap_or_default();
        if let Some(s) = seen.iter().find(|s| {
            s.header("x-paddock-event") == Some(event)
                && String::from_utf8_lossy(&s.body).contains(approval)
        }) {
            let want = format!("sha256={}", hmac_sha256(HOOK_SECRET.as_bytes(), &s.body));
            assert_eq!(
                s.header("x-paddock-signature"),
                Some(want.as_str()),
                "signed"
            );
            assert_eq!(s.path, "/hook");
            return json(&s.body);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("no {event} for {approval} reached the webhook receiver");
}

fn call(app: &Appliance, token: &str, m: &str, p: &str, b: Option<Value>) -> (u16, Value) {
    let body = b.map(|v| v.to_string());
    let (code, out) = app
        .api(m, p, token, body.as_deref().map(str::as_bytes))
        .expect("curl");
    let v = if out.is_empty() {
        Value::Null
    } else {
        json(&out)
    };
    (code, v)
}

/// The admin's approval of `id`, which must succeed; the approval as
/// decided.
fn approve(app: &Appliance, admin: &str, id: &str, decision: Value) -> Value {
    let (code, decided) = call(
        app,
        admin,
        "POST",
        &format!("/v1/approvals/{id}"),
        Some(decision),
    );
    assert_eq!(code, 200, "{decided}");
    decided
}

/// A shell command in a workspace as the admin: (output, exit code).
fn sh(app: &Appliance, admin: &str, id: &str, script: &str) -> (String, i64) {
    let body = j!({"argv": ["bash", "-c", format!("{script} 2>&1")], "timeout_s": 300}).to_string();
    let (code, stream) = app
        .api(
            "POST",
            &format!("/v1/workspaces/{id}/exec"),
            admin,
            Some(body.as_bytes()),
        )
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&stream));
    let (out, last) = exec_output(&stream);
    (out, last["exit_code"].as_i64().unwrap_or(-1))
}

/// The asker, `a` and `b` running (created by the admin); `fake_net` is the
/// fake internet's namespace, whose 127.0.0.1:18080 reaches the
/// appliance's uplink port 20080.
pub fn asked_actions(app: &Appliance, admin: &str, net: &FakeNet, a: &str, b: &str) {
    let fake_net = net.name.as_str();
    let (code, minted) = call(
        app,
        admin,
        "POST",
        "/v1/tokens",
        Some(j!({"name": "agent", "scopes": ["create", "read", "exec"],
                 "workspace_ids": [a, b], "quotas": {"max_ttl_s": 1800},
                 "actions": {"extend_ttl": "ask", "publish_port": "ask", "link": "ask"}})),
    );
    assert_eq!(code, 201, "{minted}");
    let agent = minted["secret"].as_str().expect("secret").to_string();
    let agent_id = minted["id"].as_str().expect("id").to_string();

    // Its children may only narrow what it may do.
    let (code, body) = call(
        app,
        &agent,
        "POST",
        "/v1/tokens",
        Some(
            j!({"name": "wider", "scopes": ["create"], "workspace_ids": [a],
                 "actions": {"publish_port": "allow"}}),
        ),
    );
    assert_eq!(
        code, 403,
        "a child allowed what its parent may only ask: {body}"
    );

    // A published port, asked for: nothing reaches it until approved, then
    // the uplink does, until the approval runs out.
    let outside = || {
        let out = Command::new("ip")
            .args(["netns", "exec", fake_net, "curl", "-s", "--max-time", "10"])
            .arg("http://127.0.0.1:18080/")
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let published = |id: &str| {
        call(app, admin, "GET", &format!("/v1/workspaces/{id}"), None).1["published"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    };
    let (asked, before, during, after) = std::thread::scope(|scope| {
        let server = scope.spawn(|| sh(app, admin, a, "timeout 600 python3 -m http.server 8000"));
        let (up, _) = sh(
            app,
            admin,
            a,
            "for i in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:8000/ && echo up && break; sleep 0.3; done",
        );
        assert!(up.contains("up"), "the server in {a} never came up");
        let (code, asked) = call(
            app,
            &agent,
            "POST",
            &format!("/v1/workspaces/{a}/ports"),
            Some(j!({"port": 8000, "host_port": 20080, "reason": "show the demo"})),
        );
        assert_eq!(code, 202, "{asked}");
        let before = outside();
        let id = asked["id"].as_str().expect("id").to_string();
        let told = hooked(net, "approval_requested", &id);
        assert_eq!(
            (told["kind"].as_str(), told["reason"].as_str()),
            (Some("publish_port"), Some("show the demo")),
            "{told}"
        );
        let (code, mine) = call(app, &agent, "GET", &format!("/v1/approvals/{id}"), None);
        assert_eq!(
            (code, mine["state"].as_str()),
            (200, Some("pending")),
            "{mine}"
        );
        let decided = approve(
            app,
            admin,
            &id,
            j!({"approve": true, "ttl_s": 20, "reason": "for the demo"}),
        );
        assert_eq!(
            (decided["state"].as_str(), decided["host_port"].as_u64()),
            (Some("approved"), Some(20080)),
            "{decided}"
        );
        let during = outside();
        // Taken back by the sample loop once its 20 s end.
        let mut gone = false;
        for _ in 0..120 {
            if published(a) == 0 {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        assert!(gone, "the approval ran out but the port stayed published");
        let after = outside();
        sh(app, admin, a, "pkill -f 'http[.]server 8000'");
        let _ = server.join();
        (asked, before, during, after)
    });
    assert_eq!(
        (asked["kind"].as_str(), asked["asked_by"].as_str()),
        (Some("publish_port"), Some(agent_id.as_str())),
        "{asked}"
    );
    assert_eq!(before, "", "reachable before it was approved");
    assert!(during.contains("Directory listing"), "approved: {during:?}");
    assert_eq!(after, "", "reachable after the approval ran out");

    // A TTL past the quota: asked, then run from the decision.
    let (code, asked) = call(
        app,
        &agent,
        "POST",
        &format!("/v1/workspaces/{b}/ttl"),
        Some(j!({"ttl_s": 3600, "reason": "a long build"})),
    );
    assert_eq!(
        (code, asked["kind"].as_str()),
        (202, Some("extend_ttl")),
        "{asked}"
    );
    let id = asked["id"].as_str().expect("id");
    let decided = approve(app, admin, id, j!({"approve": true}));
    let decided_at = decided["decided_at"].as_u64().expect("decided_at");
    let ends = call(app, admin, "GET", &format!("/v1/workspaces/{b}"), None).1["expires_at"]
        .as_u64()
        .expect("expires_at");
    assert!(
        (decided_at + 3590..=decided_at + 3610).contains(&ends),
        "ends at {ends}, decided at {decided_at}"
    );

    // A link asked for by a child that is revoked before the decision: void.
    let (code, child) = call(
        app,
        &agent,
        "POST",
        "/v1/tokens",
        Some(
            j!({"name": "child", "scopes": ["create"], "workspace_ids": [a, b],
                 "actions": {"link": "ask"}}),
        ),
    );
    assert_eq!(code, 201, "{child}");
    let child_secret = child["secret"].as_str().expect("secret");
    let (code, asked) = call(
        app,
        child_secret,
        "POST",
        "/v1/links",
        Some(j!({"from": a, "to": b, "port": 8080, "reason": "a needs b's API"})),
    );
    assert_eq!(
        (code, asked["kind"].as_str()),
        (202, Some("link")),
        "{asked}"
    );
    let void_id = asked["id"].as_str().expect("id").to_string();
    let child_id = child["id"].as_str().expect("id");
    let (code, _) = call(
        app,
        &agent,
        "DELETE",
        &format!("/v1/tokens/{child_id}"),
        None,
    );
    assert_eq!(code, 200);
    let (code, refused) = call(
        app,
        admin,
        "POST",
        &format!("/v1/approvals/{void_id}"),
        Some(j!({"approve": true})),
    );
    assert_eq!(code, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("void")),
        "{refused}"
    );
    let (_, links) = call(app, admin, "GET", "/v1/links", None);
    assert_eq!(links["links"], j!([]), "nothing linked by a void approval");

    // The same ask by the live parent: approved, linked, and its own to
    // list and remove.
    let (code, asked) = call(
        app,
        &agent,
        "POST",
        "/v1/links",
        Some(j!({"from": a, "to": b, "port": 8080})),
    );
    assert_eq!(code, 202, "{asked}");
    let id = asked["id"].as_str().expect("id");
    let decided = approve(app, admin, id, j!({"approve": true, "ttl_s": 600}));
    let link = decided["link"].as_str().expect("the link made").to_string();
    let (code, mine) = call(app, &agent, "GET", "/v1/links", None);
    assert_eq!(code, 200);
    assert_eq!(mine["links"][0]["id"], link.as_str(), "{mine}");
    let (code, body) = call(app, &agent, "DELETE", &format!("/v1/links/{link}"), None);
    assert_eq!(code, 200, "{body}");

    // The asker's own list; what the audit says.
    let (_, list) = call(app, &agent, "GET", "/v1/approvals", None);
    let kinds: Vec<&str> = list["approvals"]
        .as_array()
        .expect("approvals")
        .iter()
        .filter_map(|x| x["kind"].as_str())
        .collect();
    assert_eq!(kinds.len(), 3, "its own asks only: {list}");
    let (_, audit) = app
        .api("GET", "/v1/audit?limit=2000", admin, None)
        .expect("curl");
    let audit = String::from_utf8_lossy(&audit);
    for event in [
        "approval_requested",
        "approval_approved",
        "approval_expired",
        "port_unpublished",
    ] {
        assert!(audit.contains(event), "{event} not audited");
    }

    // What its approvals gave ends with the token: revoked, the port it
    // was given for an hour goes with the next sweep.
    let (code, asked) = call(
        app,
        &agent,
        "POST",
        &format!("/v1/workspaces/{a}/ports"),
        Some(j!({"port": 8001})),
    );
    assert_eq!(code, 202, "{asked}");
    let id = asked["id"].as_str().expect("id");
    approve(app, admin, id, j!({"approve": true, "ttl_s": 3600}));
    assert_eq!(published(a), 1);
    let (code, _) = call(
        app,
        admin,
        "DELETE",
        &format!("/v1/tokens/{agent_id}"),
        None,
    );
    assert_eq!(code, 200);
    let mut gone = false;
    for _ in 0..120 {
        if published(a) == 0 {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(gone, "the revoked asker's port stayed published");
}
