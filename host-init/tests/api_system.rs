//! `GET /v1/system` and `GET /v1/system/metrics` (the box page of the web
//! console, `paddock system`) through the real API process and control
//! plane, with curl: an admin reads the certificate the API really serves,
//! the data partition and the host's samples; any other token, however
//! wide its other scopes, gets a 403 and learns nothing of the host; a bad
//! `since` is a 422. Loopback only.

use paddock_api_types::{ErrorBody, HostMetrics, SystemStatus};
use std::process::Command;

mod common;
use common::real_api::{mint, start};

/// GET `url` with a bearer: (status, body, the served certificate as PEM).
fn get(url: &str, secret: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "30", "-o", "-", "-w"])
        .arg("\n--paddock-status %{http_code}\n%{certs}")
        .args(["-H", &format!("Authorization: Bearer {secret}"), url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, rest) = text
        .split_once("\n--paddock-status ")
        .expect("curl's write-out");
    let (code, certs) = rest.split_once('\n').unwrap_or((rest, ""));
    (
        code.trim().parse().unwrap_or(0),
        body.to_string(),
        certs.to_string(),
    )
}

#[test]
fn an_admin_sees_the_box_and_no_one_else_does() {
    let b = start("system");
    let (status, body, certs) = get(&format!("{}/v1/system", b.base), &b.admin);
    assert_eq!(status, 200, "{body}");
    let system: SystemStatus = serde_json::from_str(&body).expect("a SystemStatus");
    let served = paddock_init::tls::pem_to_der(&certs).expect("curl showed the certificate");
    assert_eq!(
        system.tls_fingerprint.as_deref(),
        Some(paddock_init::tls::fingerprint(&served).as_str()),
        "the fingerprint is the one of the certificate the API serves"
    );
    assert_eq!(system.version, env!("CARGO_PKG_VERSION"));
    let host = system.host.expect("the first sample is taken at start");
    assert!(host.cpus >= 1 && host.memory_total_bytes > 0, "{host:?}");
    assert!(host.memory_used_bytes <= host.memory_total_bytes);
    assert!((0.0..=100.0).contains(&host.cpu_pct));
    // The data partition is not mounted on a build machine: zeros, not an error.
    assert!(system.data.used_bytes <= system.data.total_bytes);

    // A second sample 5 s on: the graph has a line, and `since` cuts it.
    let samples = loop {
        let (status, body, _) = get(&format!("{}/v1/system/metrics", b.base), &b.admin);
        assert_eq!(status, 200, "{body}");
        let m: HostMetrics = serde_json::from_str(&body).expect("HostMetrics");
        if m.samples.len() >= 2 {
            break m.samples;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(samples.windows(2).all(|w| w[0].t <= w[1].t), "oldest first");
    let last = samples.last().expect("samples").t;
    let (_, body, _) = get(
        &format!("{}/v1/system/metrics?since={last}", b.base),
        &b.admin,
    );
    let m: HostMetrics = serde_json::from_str(&body).expect("HostMetrics");
    assert!(m.samples.iter().all(|s| s.t >= last) && !m.samples.is_empty());
    for bad in ["abc", "-1", "1e3", ""] {
        let (status, body, _) = get(
            &format!("{}/v1/system/metrics?since={bad}", b.base),
            &b.admin,
        );
        assert_eq!(status, 422, "since={bad:?}: {body}");
        let e: ErrorBody = serde_json::from_str(&body).expect("an error body");
        assert!(e.error.contains("since"), "{}", e.error);
    }

    // Every scope but admin: refused, and nothing of the host in the answer.
    let (_, wide) = mint(&b, "wide", &["create", "exec", "files", "delete", "read"]);
    for path in ["/v1/system", "/v1/system/metrics"] {
        let (status, body, _) = get(&format!("{}{path}", b.base), &wide);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            !body.contains("memory") && !body.contains("fingerprint"),
            "{path}: {body}"
        );
    }
    let (status, _, _) = get(&format!("{}/v1/system", b.base), "pdk_nobody");
    assert_eq!(status, 401);
}
