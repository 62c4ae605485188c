//! Brokered secrets on a booted appliance in the fake internet (issue 17,
//! part 1): a workspace holds only a placeholder; an HTTPS server out
//! there that keeps what it receives shows the value arrived, over
//! HTTP/1.1 and HTTP/2, from curl and from Python with the guest's stock
//! trust settings; a second allowed host never sees it; the value is in
//! no answer of ours, no audit record, no environment, and not in the
//! workspace's memory (scanned in its forensic snapshot). Rotation,
//! adding and removing on a running workspace, the record of where it
//! connected, and its calls raising the `outbound_rate` signal.

use paddock_tests::appliance::Appliance;
use paddock_tests::echo_https::Seen;
use paddock_tests::fakenet::{FakeNet, BROKER_NAMES};

const VALUE: &str = "sk-live-broker-9c2e7a51f0d34b86";
const ROTATED: &str = "sk-live-rotated-4a1b9e0c7d2f3865";
const ADDED: &str = "ghp-added-51c0de7f9a2b4e36";

fn seen(net: &FakeNet) -> Vec<Seen> {
    net.echo.lock().map(|l| l.clone()).unwrap_or_default()
}

pub fn secrets_brokered(app: &Appliance, admin: &str, net: &FakeNet) {
    let call = |m: &str, p: &str, b: Option<&str>| {
        app.api(m, p, admin, b.map(str::as_bytes)).expect("curl")
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    let (api, second) = (BROKER_NAMES[0], BROKER_NAMES[1]);
    let no_value = |what: &str, t: &str| {
        for v in [VALUE, ROTATED, ADDED] {
            assert!(!t.contains(v), "{what} holds a secret value: {t}");
        }
    };

    // Refused with the field named: a host off the allowlist, a value
    // that would split a header.
    let bad = serde_json::json!({"ttl_s": 600, "egress": {"domains": [api]},
        "secrets": {"K": {"value": "a\r\nX: b", "hosts": [second]}}});
    let (code, body) = call("POST", "/v1/workspaces", Some(&bad.to_string()));
    assert_eq!(code, 422, "{}", text(&body));
    let t = text(&body);
    assert!(
        t.contains("secrets.K.value") && t.contains("secrets.K.hosts"),
        "{t}"
    );
    no_value("a refusal", &t);

    let spec = serde_json::json!({
        "ttl_s": 1800, "memory_mib": 128, "disk_mib": 512,
        "egress": {"domains": [api, second]},
        "secrets": {"API_KEY": {"value": VALUE, "hosts": [api], "upstream_ca": net.echo_ca}},
        // A low outbound rate, which this session's calls exceed.
        "signals": {"outbound_rate": {"threshold": 5, "window_s": 120}},
    });
    let (code, body) = call("POST", "/v1/workspaces", Some(&spec.to_string()));
    assert_eq!(code, 201, "{}", text(&body));
    no_value("the create's answer", &text(&body));
    let ws = crate::json(&body);
    let id = ws["id"].as_str().expect("id").to_string();
    assert_eq!(ws["secrets"], serde_json::json!(["API_KEY"]));
    let (code, body) = call("GET", &format!("/v1/workspaces/{id}/secrets"), None);
    assert_eq!(code, 200);
    no_value("the secrets list", &text(&body));
    let list = crate::json(&body);
    let placeholder = list["secrets"][0]["placeholder"]
        .as_str()
        .expect("placeholder")
        .to_string();
    assert!(placeholder.starts_with("paddock_secret_"), "{list}");
    assert!(
        list["egress_ca"]
            .as_str()
            .is_some_and(|p| p.contains("BEGIN CERTIFICATE")),
        "{list}"
    );

    let sh = |script: &str| {
        let body =
            serde_json::json!({"argv": ["bash", "-c", format!("{script} 2>&1")], "timeout_s": 120})
                .to_string();
        let (code, stream) = call("POST", &format!("/v1/workspaces/{id}/exec"), Some(&body));
        assert_eq!(code, 200, "{}", text(&stream));
        let (out, last) = crate::exec_output(&stream);
        no_value("a command's output", &out);
        (out, last["exit_code"].as_i64().unwrap_or(-1))
    };

    // The workspace holds the placeholder, nowhere the value.
    let (out, code) = sh("printenv API_KEY; env | grep -c sk-live || true");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&placeholder), "{out}");

    // The round trip with curl, HTTP/1.1 and HTTP/2, trusting only what
    // the guest trusts (no -k): the value arrives upstream; the echo
    // comes back with the placeholder.
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let before = seen(net).len();
        let (out, code) = sh(&format!(
            "curl -sS --max-time 30 {flag} -w '\\n%{{http_code}} %{{http_version}}' -H \"Authorization: Bearer $API_KEY\" https://{api}/echo"
        ));
        assert_eq!(code, 0, "{out}");
        assert!(out.trim_end().ends_with(&format!("200 {version}")), "{out}");
        assert!(out.contains(&placeholder), "the echo, scrubbed: {out}");
        let got = seen(net);
        let arrived = got[before..]
            .iter()
            .find(|s| s.path == "/echo")
            .unwrap_or_else(|| panic!("nothing arrived: {got:?}"));
        assert_eq!(
            arrived.header("authorization"),
            Some(format!("Bearer {VALUE}").as_str())
        );
    }
    // Python's own TLS with the guest's defaults (SSL_CERT_FILE).
    let before = seen(net).len();
    let (out, code) = sh(&format!(
        "python3 -c \"import os,urllib.request as u; r=u.urlopen(u.Request('https://{api}/py', headers={{'X-Key': os.environ['API_KEY']}}), timeout=30); print(r.status)\""
    ));
    assert_eq!((code, out.trim()), (0, "200"), "{out}");
    assert_eq!(
        seen(net)[before..]
            .iter()
            .find(|s| s.path == "/py")
            .and_then(|s| s.header("x-key").map(str::to_string)),
        Some(VALUE.to_string())
    );

    // Its placeholder sent to the other allowed host: not brokered there,
    // so passed through untouched (the guest cannot verify that host's
    // certificate: the egress CA is not used for it) - and with -k, the
    // literal placeholder is all that arrives.
    let before = seen(net).len();
    let (out, code) = sh(&format!(
        "curl -sS --max-time 30 -H \"Authorization: Bearer $API_KEY\" https://{second}/steal"
    ));
    assert_ne!(code, 0, "verified a host the broker does not serve: {out}");
    let (_, code) = sh(&format!(
        "curl -sSk --max-time 30 -H \"Authorization: Bearer $API_KEY\" https://{second}/steal"
    ));
    assert_eq!(code, 0);
    assert!(seen(net)[before..]
        .iter()
        .all(|s| !s.text().contains(VALUE)));

    // Added on the running workspace: a header secret for the second
    // host. Then its host is brokered, and API_KEY's placeholder sent
    // there is refused, never sent on.
    let added = serde_json::json!({"value": ADDED, "hosts": [second], "header": "X-Api-Key",
        "format": "token {}", "upstream_ca": net.echo_ca});
    let (code, body) = call(
        "PUT",
        &format!("/v1/workspaces/{id}/secrets/GH"),
        Some(&added.to_string()),
    );
    assert_eq!(code, 201, "{}", text(&body));
    no_value("the added secret's answer", &text(&body));
    let before = seen(net).len();
    let (out, code) = sh(&format!(
        "curl -sS --max-time 30 -o /dev/null -w '%{{http_code}}' https://{second}/user"
    ));
    assert_eq!((code, out.trim()), (0, "200"), "{out}");
    assert_eq!(
        seen(net)[before..][0].header("x-api-key"),
        Some(format!("token {ADDED}").as_str())
    );
    let before = seen(net).len();
    let (out, _) = sh(&format!(
        "curl -sS --max-time 30 -w '\\n%{{http_code}}' -H \"Authorization: Bearer $API_KEY\" https://{second}/steal"
    ));
    assert!(out.trim_end().ends_with("403"), "{out}");
    assert!(out.contains("not one of its hosts"), "{out}");
    assert!(
        seen(net)[before..].is_empty(),
        "the misuse reached the host"
    );

    // Rotated: the same placeholder now carries the new value.
    let rotated = serde_json::json!({"value": ROTATED, "hosts": [api], "upstream_ca": net.echo_ca});
    let (code, body) = call(
        "PUT",
        &format!("/v1/workspaces/{id}/secrets/API_KEY"),
        Some(&rotated.to_string()),
    );
    assert_eq!(code, 200, "{}", text(&body));
    assert_eq!(crate::json(&body)["placeholder"], placeholder.as_str());
    let before = seen(net).len();
    sh(&format!(
        "curl -sS --max-time 30 -H \"Authorization: Bearer $API_KEY\" https://{api}/rotated"
    ));
    assert_eq!(
        seen(net)[before..][0].header("authorization"),
        Some(format!("Bearer {ROTATED}").as_str())
    );

    // The audit log: used and misused, by name, never by value.
    let mut audit = String::new();
    for _ in 0..30 {
        audit = text(&call("GET", "/v1/audit?limit=1000", None).1);
        if audit.contains("secret_used")
            && audit.contains("secret_misuse")
            && audit.contains("\"signal\":\"outbound_rate\"")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    no_value("the audit log", &audit);
    for want in [
        "secret_used",
        "secret_misuse",
        "secret_set",
        "\"secret\":\"API_KEY\"",
        "\"path\":\"/echo\"",
        "\"signal\":\"outbound_rate\"",
    ] {
        assert!(audit.contains(want), "{want} not audited: {audit}");
    }
    // The network record says which connections were brokered.
    let mut record = serde_json::Value::Null;
    for _ in 0..90 {
        record = crate::json(&call("GET", &format!("/v1/workspaces/{id}/network"), None).1);
        let injected: u64 = record["records"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|x| x["name"] == api)
                    .filter_map(|x| x["secrets_injected"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        if injected >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let t = record.to_string();
    no_value("the network record", &t);
    assert!(t.contains("secret broker"), "{t}");

    // Removed: its host is no longer brokered.
    let (code, _) = call("DELETE", &format!("/v1/workspaces/{id}/secrets/GH"), None);
    assert_eq!(code, 200);
    let (_, code) = sh(&format!("curl -sS --max-time 30 https://{second}/"));
    assert_ne!(code, 0, "still intercepted after removal");

    // The workspace's memory: the placeholder is there (the scan sees
    // what the guest holds), no value is.
    let (code, body) = call("POST", &format!("/v1/workspaces/{id}/quarantine"), None);
    assert_eq!(code, 200, "{}", text(&body));
    let (code, memory) = call(
        "GET",
        &format!("/v1/workspaces/{id}/forensics/memory"),
        None,
    );
    assert_eq!(code, 200);
    let has = |needle: &str| memchr::memmem::find(&memory, needle.as_bytes()).is_some();
    assert!(
        has(&placeholder),
        "positive control: the placeholder is in its memory"
    );
    for v in [VALUE, ROTATED, ADDED] {
        assert!(!has(v), "a secret value is in the workspace's memory");
    }
    drop(memory);
    call("DELETE", &format!("/v1/workspaces/{id}"), None);
}
