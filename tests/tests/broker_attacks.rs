//! The attacks an outside review made on the secret broker (each worked
//! against the first version), through the real confined network
//! services process (the bench of broker_path), with a TLS client of its
//! own so it can send what curl will not: an open connection after a
//! rotation and a removal; the value echoed percent-encoded, gzipped, or
//! read back later without a placeholder; one workspace flooding the
//! audit events; bodies and heads that grow 87-fold with the value in;
//! a Host or method long enough to overflow a report. Loopback in a
//! network namespace of its own; needs root.

use paddock_api_types::SecretPlace;
use paddock_init::control::egress_ca::{self, EgressCa};
use paddock_init::net_services::{secrets, supervisor};
use paddock_net_services::broker::events::{self, Misuse, SecretEvent};
use paddock_net_services::broker::{Brokered, SecretValue};
use paddock_tests::echo_https::{self, Seen};
use paddock_tests::proxybed::{services_rss_kib, BedOptions, ProxyBed};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BROKERED: &str = "api.broker.test";
const OTHER: &str = "other.broker.test";
const VALUE: &str = "sk-live-7f3a9c0e5d1b42a8";
const VALUE2: &str = "sk-live-ROTATED-99887766";
const QVALUE: &str = "sk/live+q=1&x";
const PH: &str = "paddock_secret_00112233445566778899aabbccddeeff";
const QPH: &str = "paddock_secret_11112233445566778899aabbccddeeff";
const BPH: &str = "paddock_secret_22222233445566778899aabbccddeeff";

fn secret(name: &str, ph: &str, value: &str, places: Vec<SecretPlace>, ca: &str) -> Brokered {
    Brokered {
        name: name.into(),
        placeholder: ph.into(),
        value: SecretValue::new(value.into()),
        hosts: vec![BROKERED.into()],
        header: None,
        format: "{}".into(),
        replace_in: places,
        allow_plain_http: false,
        upstream_ca: Some(ca.into()),
    }
}

fn base(ca: &str, value: &str) -> Vec<Brokered> {
    vec![
        secret("API_KEY", PH, value, vec![SecretPlace::Headers], ca),
        secret("QK", QPH, QVALUE, vec![SecretPlace::Query], ca),
    ]
}

struct Client {
    r: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

fn tcp_from(guest: Ipv4Addr, port: u16) -> TcpStream {
    let s = ProxyBed::connect_from_port(guest, port).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("t");
    s
}

impl Client {
    fn new(guest: Ipv4Addr, ca_pem: &str, sni: &str) -> Client {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.expect("pem")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("v")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            rustls::pki_types::ServerName::try_from(sni.to_string()).expect("name"),
        )
        .expect("client");
        Client {
            r: BufReader::new(rustls::StreamOwned::new(conn, tcp_from(guest, 443))),
        }
    }

    /// Sends raw request bytes; reads one answer: (status line, head, raw body).
    fn ask(&mut self, req: &[u8]) -> std::io::Result<(String, String, Vec<u8>)> {
        self.r.get_mut().write_all(req)?;
        self.r.get_mut().flush()?;
        let mut status = String::new();
        self.r.read_line(&mut status)?;
        let mut head = String::new();
        let mut len = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse::<usize>().ok();
            }
            if l.starts_with("transfer-encoding:") && l.contains("chunked") {
                chunked = true;
            }
            head.push_str(&line);
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                self.r.read_exact(&mut chunk)?;
                body.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = len {
            let mut b = vec![0u8; n];
            self.r.read_exact(&mut b)?;
            body = b;
        }
        Ok((status.trim_end().to_string(), head, body))
    }
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {BROKERED}\r\n{extra}\r\n").into_bytes()
}

fn seen_since(log: &echo_https::Log, from: usize) -> Vec<Seen> {
    log.lock().map(|l| l[from..].to_vec()).unwrap_or_default()
}

fn count(log: &echo_https::Log) -> usize {
    log.lock().map(|l| l.len()).unwrap_or(0)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    memchr::memmem::find(hay, needle.as_bytes()).is_some()
}

/// Whether the process was restarted within 10 s (two report ticks and
/// then some).
fn wait_restart(old: u32) -> bool {
    (0..100).any(|_| {
        let back = supervisor::pid().is_some_and(|p| p != old);
        if !back {
            std::thread::sleep(Duration::from_millis(100));
        }
        back
    })
}

#[test]
fn the_broker_withstands_the_reviews_attacks() {
    let exe = std::env::var_os("PADDOCK_STATIC_BIN")
        .map(|d| std::path::PathBuf::from(d).join("paddock-init"))
        .expect("PADDOCK_STATIC_BIN: the directory of the static paddock-init (just test sets it)");
    let (upstream_ca, upstream_tls) = echo_https::test_pki(&[BROKERED, OTHER]);
    let bed = ProxyBed::start_with(
        &exe,
        2,
        BedOptions {
            domains: vec![format!("{BROKERED}:443+80"), format!("{OTHER}:443")],
            https: Some(upstream_tls),
        },
    )
    .expect("the bench (root, ip(8))");
    let log = bed.echo.clone().expect("upstream");
    let (ca, _) = EgressCa::generate().expect("egress CA");
    let ca_pem = ca.cert_pem.clone();
    egress_ca::install(ca);
    let ws1 = bed.guests[0];
    secrets::set("ws_bed1", base(&upstream_ca, VALUE)).expect("pushed");
    let auth = format!("Authorization: Bearer {PH}\r\n");
    let never = |what: &str, bytes: &[u8]| {
        for v in [VALUE, VALUE2, QVALUE, "sk%2Flive%2Bq%3D1%26x"] {
            assert!(!contains(bytes, v), "{what}: the value reached the guest");
        }
    };

    // A1. Rotation and removal reach an open brokered connection: its
    //     next request is refused (421, connect again) and the connection
    //     ends; the old value never goes out after the change.
    {
        let mut c = Client::new(ws1, &ca_pem, BROKERED);
        let before = count(&log);
        let (st, _, _) = c.ask(&get("/r1", &auth)).expect("r1");
        assert!(st.contains("200"), "{st}");
        assert_eq!(
            seen_since(&log, before)[0].header("authorization"),
            Some(format!("Bearer {VALUE}").as_str())
        );
        secrets::set("ws_bed1", base(&upstream_ca, VALUE2)).expect("rotated");
        let before = count(&log);
        if let Ok((st, _, _)) = c.ask(&get("/after-rotation", &auth)) {
            assert!(st.contains("421"), "after rotation: {st}");
        }
        assert!(
            seen_since(&log, before).is_empty(),
            "a request went out on the old connection"
        );
        // A new connection gets the new value.
        let mut c = Client::new(ws1, &ca_pem, BROKERED);
        let before = count(&log);
        let (st, _, _) = c.ask(&get("/rotated", &auth)).expect("rotated");
        assert!(st.contains("200"), "{st}");
        assert_eq!(
            seen_since(&log, before)[0].header("authorization"),
            Some(format!("Bearer {VALUE2}").as_str())
        );
        secrets::set("ws_bed1", Vec::new()).expect("removed");
        std::thread::sleep(Duration::from_secs(2));
        let before = count(&log);
        let _ = c.ask(&get("/after-removal", &auth));
        assert!(
            seen_since(&log, before)
                .iter()
                .all(|s| !s.text().contains(VALUE2) && !s.text().contains(VALUE)),
            "a removed secret was sent"
        );
        secrets::set("ws_bed1", base(&upstream_ca, VALUE)).expect("back");
    }

    // A2. The percent-encoded form of a query value is scrubbed from the
    //     echo.
    {
        let mut c = Client::new(ws1, &ca_pem, BROKERED);
        let (st, head, body) = c.ask(&get(&format!("/echo?k={QPH}"), "")).expect("q");
        assert!(st.contains("200"), "{st}");
        never("A2 head", head.as_bytes());
        never("A2 body", &body);
        assert!(
            contains(&body, QPH),
            "positive control: {}",
            String::from_utf8_lossy(&body)
        );
    }

    // A3. A client asking for gzip: the broker asks the host for identity
    //     (scrubbable), whatever the client said.
    {
        let mut c = Client::new(ws1, &ca_pem, BROKERED);
        let (st, head, body) = c
            .ask(&get("/echo", &format!("{auth}Accept-Encoding: gzip\r\n")))
            .expect("gz");
        assert!(st.contains("200"), "{st}");
        assert!(
            !head.to_ascii_lowercase().contains("content-encoding: gzip"),
            "{head}"
        );
        never("A3", &body);
    }

    // A4. Stored with the value in, read back by a request without a
    //     placeholder: every answer on a brokered connection is scrubbed.
    {
        let mut c = Client::new(ws1, &ca_pem, BROKERED);
        let _ = c
            .ask(&get("/store", &format!("X-Note: {PH}\r\n")))
            .expect("store");
        let (_, _, body) = c.ask(&get("/last", "")).expect("last");
        never("A4", &body);
        assert!(
            contains(&body, PH),
            "positive control: {}",
            String::from_utf8_lossy(&body)
        );
    }

    // A5. One workspace floods the event table; another's still arrive.
    {
        let _ = events::take();
        for i in 0..5000 {
            events::record(SecretEvent {
                workspace: "ws_attacker".into(),
                secret: "K".into(),
                host: format!("h{i}.test"),
                method: "GET".into(),
                path: format!("/{i}"),
                misuse: Some(Misuse::Misdirected),
            });
        }
        events::record(SecretEvent {
            workspace: "ws_victim".into(),
            secret: "V".into(),
            host: BROKERED.into(),
            method: "GET".into(),
            path: "/".into(),
            misuse: None,
        });
        let got = events::take();
        assert!(got.iter().any(|(e, _)| e.workspace == "ws_victim"));
    }

    // A6. A 1 MiB body of placeholders for a 4 KiB value (87-fold): refused
    //     before it grows, memory stays flat, nothing reaches the host.
    {
        let big: String = (0..4096)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let mut s = base(&upstream_ca, VALUE);
        s.push(secret(
            "BK",
            BPH,
            &big,
            vec![SecretPlace::Body],
            &upstream_ca,
        ));
        secrets::set("ws_bed1", s).expect("bk");
        let rss0 = services_rss_kib().unwrap_or(0);
        let peak = Arc::new(AtomicU64::new(rss0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, st) = (peak.clone(), stop.clone());
        let sampler = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if let Some(r) = services_rss_kib() {
                    p.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let body = BPH.repeat((1 << 20) / BPH.len());
        let before = count(&log);
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (ca_pem, body) = (ca_pem.clone(), body.clone());
                std::thread::spawn(move || {
                    let mut c = Client::new(ws1, &ca_pem, BROKERED);
                    let mut req = format!(
                        "POST /sink HTTP/1.1\r\nHost: {BROKERED}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    req.extend_from_slice(body.as_bytes());
                    c.ask(&req).map(|(s, _, _)| s)
                })
            })
            .collect();
        for t in threads {
            let answer = t.join().expect("thread").expect("an answer");
            assert!(answer.contains("413"), "{answer}");
        }
        // Headers too: 40 placeholders for the 4 KiB value in one header.
        let many = format!("X-Many: {}\r\n", PH.repeat(40));
        let mut s = base(&upstream_ca, &"w".repeat(4096));
        s.truncate(1);
        secrets::set("ws_bed1", s).expect("long value");
        let mut c2 = Client::new(ws1, &ca_pem, BROKERED);
        let (st, _, _) = c2.ask(&get("/many", &many)).expect("many");
        assert!(st.contains("431"), "{st}");
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        assert!(
            seen_since(&log, before).is_empty(),
            "something reached the host"
        );
        let peak = peak.load(Ordering::Relaxed);
        assert!(
            peak < rss0 + 64 * 1024,
            "the network services grew from {rss0} KiB to {peak} KiB"
        );
        secrets::set("ws_bed1", base(&upstream_ca, VALUE)).expect("back");
    }

    // A7. A Host or a method long enough to overflow a report: answered,
    //     and the shared process goes on.
    for (label, req) in [
        (
            "a long Host with the placeholder",
            format!(
                "GET / HTTP/1.1\r\nHost: {}\r\n{auth}\r\n",
                "a".repeat(60_000)
            ),
        ),
        (
            "a long method with the placeholder",
            format!(
                "{} / HTTP/1.1\r\nHost: {BROKERED}\r\n{auth}\r\n",
                "X".repeat(60_000)
            ),
        ),
    ] {
        let old = supervisor::pid().expect("running");
        let mut c = Client::new(ws1, &ca_pem, BROKERED);
        let _ = c.ask(req.as_bytes());
        // Two report ticks.
        assert!(
            !wait_restart(old),
            "{label}: the network services process was restarted"
        );
    }
}
