//! The secret broker's cost, on the real network services process
//! (confined as on the appliance) in a network namespace: HTTPS from a
//! "workspace" to an HTTPS server (HTTP/1.1 and HTTP/2 by ALPN), three
//! ways in one run: straight to the server (no proxy), through the proxy
//! passed through (a workspace without secrets), and through the broker
//! with a secret put in (TLS ended and opened again, headers rewritten,
//! the answer scrubbed). Time to first byte on a new connection (curl's
//! `time_starttransfer`: connect, both TLS handshakes, the request) and
//! throughput of a 32 MiB answer. Loopback only; no VM. Needs root and
//! curl. Prints a table.

use paddock_api_types::SecretPlace;
use paddock_init::control::egress_ca::{self, EgressCa};
use paddock_init::net_services::secrets;
use paddock_net_services::broker::{Brokered, SecretValue};
use paddock_tests::echo_https;
use paddock_tests::proxybed::{BedOptions, ProxyBed, UPSTREAM_HTTP};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

const HOST: &str = "api.bench.test";
const PLACEHOLDER: &str = "paddock_secret_0123456789abcdef0123456789abcdef";

/// One curl: (time to first byte s, bytes per second).
fn curl(from: Option<Ipv4Addr>, ca: &Path, path: &str, h2: bool) -> Result<(f64, f64), String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "--max-time", "120"]);
    if let Some(ip) = from {
        cmd.arg("--interface").arg(ip.to_string());
    }
    cmd.arg("--cacert")
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{HOST}:443:{UPSTREAM_HTTP}"))
        .arg(if h2 { "--http2" } else { "--http1.1" })
        .args(["-H", &format!("Authorization: Bearer {PLACEHOLDER}")])
        .args(["-w", "%{http_code} %{time_starttransfer} %{speed_download}"])
        .arg(format!("https://{HOST}{path}"));
    let out = cmd.output().map_err(|e| format!("curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.first() != Some(&"200") {
        return Err(format!(
            "curl answered {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((num(1), num(2)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), String> {
    let exe = std::env::var_os("PADDOCK_INIT_BIN")
        .map(std::path::PathBuf::from)
        .ok_or("PADDOCK_INIT_BIN: the paddock-init to run (just bench-broker sets it)")?;
    let runs: usize = std::env::var("PADDOCK_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let (upstream_ca, tls) = echo_https::test_pki(&[HOST]);
    let bed = ProxyBed::start_with(
        &exe,
        2,
        BedOptions {
            domains: vec![format!("{HOST}:443")],
            https: Some(tls),
        },
    )
    .map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("paddock-bench-broker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (ca, _) = EgressCa::generate().map_err(|e| e.to_string())?;
    let egress_pem = dir.join("egress.pem");
    let upstream_pem = dir.join("upstream.pem");
    std::fs::write(&egress_pem, &ca.cert_pem).map_err(|e| e.to_string())?;
    std::fs::write(&upstream_pem, &upstream_ca).map_err(|e| e.to_string())?;
    egress_ca::install(ca);
    secrets::set(
        "ws_bed1",
        vec![Brokered {
            name: "API_KEY".into(),
            placeholder: PLACEHOLDER.into(),
            value: SecretValue::new("sk-bench-0123456789abcdef".into()),
            hosts: vec![HOST.into()],
            header: None,
            format: "{}".into(),
            replace_in: vec![SecretPlace::Headers],
            allow_plain_http: false,
            upstream_ca: Some(upstream_ca.clone()),
        }],
    )
    .map_err(|e| e.to_string())?;
    let paths: [(&str, Option<Ipv4Addr>, &Path); 3] = [
        ("direct (no proxy)", None, &upstream_pem),
        ("proxy, passed through", Some(bed.guests[1]), &upstream_pem),
        ("proxy, secret brokered", Some(bed.guests[0]), &egress_pem),
    ];
    println!(
        "{:<24} {:>6} {:>16} {:>16}",
        "path", "http", "first byte p50", "32 MiB MiB/s"
    );
    for h2 in [false, true] {
        for (name, from, ca) in &paths {
            let ttfb = (0..runs)
                .map(|_| curl(*from, ca, "/small", h2).map(|r| r.0))
                .collect::<Result<Vec<_>, _>>()?;
            let big = (0..5)
                .map(|_| curl(*from, ca, "/big", h2).map(|r| r.1))
                .collect::<Result<Vec<_>, _>>()?;
            println!(
                "{:<24} {:>6} {:>13.2} ms {:>16.0}",
                name,
                if h2 { "2" } else { "1.1" },
                median(ttfb) * 1000.0,
                median(big) / (1 << 20) as f64
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
