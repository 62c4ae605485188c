//! The secret broker through the real, confined network services process
//! (tests/src/proxybed.rs): curl in a "workspace" holds only a
//! placeholder; an HTTPS server upstream that echoes what it received
//! shows the value arrived there, over HTTP/1.1 and HTTP/2, and only
//! there. Then the attacks: the placeholder sent to another allowed
//! host, over plain HTTP, under another Host on a brokered connection; an
//! echoing upstream trying to hand the value back; a workspace without
//! secrets (never intercepted). Loopback in a network namespace of its
//! own; needs root and curl.

use paddock_api_types::SecretPlace;
use paddock_init::control::egress_ca::{self, EgressCa};
use paddock_init::net_services::{secrets, supervisor};
use paddock_net_services::broker::{Brokered, SecretValue};
use paddock_tests::echo_https::{self, Seen};
use paddock_tests::proxybed::{BedOptions, ProxyBed, UPSTREAM_HTTP};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

const BROKERED: &str = "api.broker.test";
const HEADER_HOST: &str = "gh.broker.test";
const OTHER: &str = "other.broker.test";
const VALUE: &str = "sk-live-7f3a9c0e5d1b42a8";
const GH_VALUE: &str = "ghp-0c1d2e3f4a5b6c7d";
const PLACEHOLDER: &str = "paddock_secret_00112233445566778899aabbccddeeff";

fn brokered(upstream_ca: &str) -> Vec<Brokered> {
    vec![
        Brokered {
            name: "API_KEY".into(),
            placeholder: PLACEHOLDER.into(),
            value: SecretValue::new(VALUE.into()),
            hosts: vec![BROKERED.into()],
            header: None,
            format: "{}".into(),
            replace_in: vec![SecretPlace::Headers],
            allow_plain_http: false,
            upstream_ca: Some(upstream_ca.into()),
        },
        Brokered {
            name: "GH".into(),
            placeholder: "paddock_secret_ffeeddccbbaa99887766554433221100".into(),
            value: SecretValue::new(GH_VALUE.into()),
            hosts: vec![HEADER_HOST.into()],
            header: Some("X-Api-Key".into()),
            format: "token {}".into(),
            replace_in: vec![SecretPlace::Headers],
            allow_plain_http: false,
            upstream_ca: Some(upstream_ca.into()),
        },
    ]
}

/// curl from `guest` to `url` (every name resolving to the upstream):
/// (status, body, HTTP version).
fn curl(guest: Ipv4Addr, ca: &Path, url: &str, extra: &[&str]) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "--interface"])
        .arg(guest.to_string())
        .arg("--cacert")
        .arg(ca);
    for host in [BROKERED, HEADER_HOST, OTHER] {
        for port in [80, 443] {
            cmd.arg("--resolve")
                .arg(format!("{host}:{port}:{UPSTREAM_HTTP}"));
        }
    }
    cmd.args(["-w", "\n%{http_code} %{http_version}"])
        .args(extra)
        .arg(url);
    let out = cmd.output().expect("curl (install-deps puts it there)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut tail = tail.split(' ');
    let status = tail.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = tail.next().unwrap_or("").to_string();
    assert!(
        !text.contains(VALUE) && !text.contains(GH_VALUE),
        "a value reached the workspace: {text}"
    );
    (status, body.to_string(), version)
}

fn seen_since(log: &echo_https::Log, from: usize) -> Vec<Seen> {
    log.lock().map(|l| l[from..].to_vec()).unwrap_or_default()
}

fn count(log: &echo_https::Log) -> usize {
    log.lock().map(|l| l.len()).unwrap_or(0)
}

#[test]
fn brokered_secrets_through_the_confined_proxy() {
    let exe = std::env::var_os("PADDOCK_STATIC_BIN")
        .map(|d| std::path::PathBuf::from(d).join("paddock-init"))
        .expect("PADDOCK_STATIC_BIN: the directory of the static paddock-init (just test sets it)");
    let (upstream_ca, upstream_tls) = echo_https::test_pki(&[BROKERED, HEADER_HOST, OTHER]);
    let bed = ProxyBed::start_with(
        &exe,
        2,
        BedOptions {
            domains: vec![
                format!("{BROKERED}:443+80"),
                format!("{HEADER_HOST}:443"),
                format!("{OTHER}:443"),
            ],
            https: Some(upstream_tls),
        },
    )
    .expect("the bench (root, ip(8))");
    let log = bed.echo.clone().expect("the HTTPS upstream");
    let dir = std::env::temp_dir().join(format!("paddock-broker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca, _) = EgressCa::generate().expect("egress CA");
    let egress_ca_pem = dir.join("egress-ca.pem");
    std::fs::write(&egress_ca_pem, &ca.cert_pem).expect("write");
    let upstream_ca_pem = dir.join("upstream-ca.pem");
    std::fs::write(&upstream_ca_pem, &upstream_ca).expect("write");
    egress_ca::install(ca);
    let (ws1, ws2) = (bed.guests[0], bed.guests[1]);
    secrets::set("ws_bed1", brokered(&upstream_ca)).expect("pushed");
    let auth = format!("Authorization: Bearer {PLACEHOLDER}");

    // 1. The round trip, HTTP/1.1 then HTTP/2 from the workspace: the
    //    value arrives upstream, the workspace sees only the placeholder
    //    (the echo, body and header, scrubbed on the way back).
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let before = count(&log);
        let (status, body, v) = curl(
            ws1,
            &egress_ca_pem,
            &format!("https://{BROKERED}/echo?q=1"),
            &[flag, "-H", &auth, "-D", "-"],
        );
        assert_eq!((status, v.as_str()), (200, version), "{body}");
        assert!(
            body.contains(PLACEHOLDER),
            "the echo comes back scrubbed: {body}"
        );
        assert!(
            body.to_ascii_lowercase()
                .contains("x-echo-authorization: bearer paddock_secret_"),
            "{body}"
        );
        let seen = seen_since(&log, before);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            seen[0].header("authorization"),
            Some(format!("Bearer {VALUE}").as_str()),
            "{seen:?}"
        );
        assert_eq!(seen[0].path, "/echo?q=1");
    }

    // 2. A header secret is set on every request to its host.
    let before = count(&log);
    let (status, _, _) = curl(
        ws1,
        &egress_ca_pem,
        &format!("https://{HEADER_HOST}/user"),
        &[],
    );
    assert_eq!(status, 200);
    let seen = seen_since(&log, before);
    assert_eq!(
        seen[0].header("x-api-key"),
        Some(format!("token {GH_VALUE}").as_str())
    );

    // 3. API_KEY's placeholder to a host it is not for (one brokered for
    //    GH): refused by the broker, never sent on.
    let before = count(&log);
    let (status, body, _) = curl(
        ws1,
        &egress_ca_pem,
        &format!("https://{HEADER_HOST}/steal"),
        &["-H", &auth],
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not one of its hosts"), "{body}");
    assert!(
        seen_since(&log, before).is_empty(),
        "it reached the upstream"
    );

    // 4. On a brokered connection, a request naming another host.
    let before = count(&log);
    let (status, body, _) = curl(
        ws1,
        &egress_ca_pem,
        &format!("https://{BROKERED}/x"),
        &["-H", &auth, "-H", &format!("Host: {OTHER}")],
    );
    assert_eq!(status, 421, "{body}");
    assert!(seen_since(&log, before).is_empty());

    // 5. Plain HTTP to its own host (allowed on port 80, but the secret
    //    allows HTTPS only): refused by the plain path's checker.
    let (status, body, _) = curl(
        ws1,
        &egress_ca_pem,
        &format!("http://{BROKERED}/"),
        &["-H", &auth],
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("over HTTPS only"), "{body}");

    // 6. A host no secret names is passed through untouched: the workspace
    //    talks TLS to the real server (it trusts the upstream's CA, not
    //    the egress CA), and the placeholder arrives as it was sent.
    let before = count(&log);
    let (status, _, _) = curl(
        ws1,
        &upstream_ca_pem,
        &format!("https://{OTHER}/pass"),
        &["-H", "X-Note: plain"],
    );
    assert_eq!(status, 200);
    assert_eq!(seen_since(&log, before).len(), 1);
    // The other workspace has no secrets: never intercepted, even for
    // the brokered host, and its literal "placeholder" goes as sent.
    let before = count(&log);
    let (status, _, _) = curl(
        ws2,
        &upstream_ca_pem,
        &format!("https://{BROKERED}/mine"),
        &["-H", &auth],
    );
    assert_eq!(status, 200);
    let seen = seen_since(&log, before);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {PLACEHOLDER}").as_str())
    );
    // ...and the egress CA means nothing to it there.
    let (status, _, _) = curl(ws2, &egress_ca_pem, &format!("https://{BROKERED}/"), &[]);
    assert_eq!(status, 0, "curl must refuse the upstream's certificate");

    // 7. Killed, the process comes back with the secrets and certificates.
    let killed = supervisor::kill_running().expect("a running process");
    let back = ProxyBed::restarted_after(killed);
    assert!(back, "no new network services process");
    let before = count(&log);
    let (status, _, _) = curl(
        ws1,
        &egress_ca_pem,
        &format!("https://{BROKERED}/again"),
        &["-H", &auth],
    );
    assert_eq!(status, 200);
    assert_eq!(
        seen_since(&log, before)[0].header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );

    // 8. Removed, nothing is brokered any more: the connection is passed
    //    through and the egress CA no longer vouches for the host.
    secrets::set("ws_bed1", Vec::new()).expect("cleared");
    let (status, _, _) = curl(ws1, &egress_ca_pem, &format!("https://{BROKERED}/"), &[]);
    assert_eq!(status, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
