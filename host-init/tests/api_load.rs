//! The API process under load (issue 15): a thousand connections at once,
//! two hundred of them sending their heads a byte at a time, while health
//! and an exec keep answering. Loopback only, against the real API process
//! with a fake host-init (common::fake_api); bounded loops that end on
//! their own. The figures it prints (answer times under load, the
//! process's memory) are for reading, not asserted.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::fake_api::*;

/// Kept-alive clients, each asking every `ASK_EVERY`.
const BUSY: usize = 800;
const SLOW: usize = 200;
/// Connections per client address (the cap is per address).
const PER_ADDRESS: usize = 50;
const LOADERS: usize = 8;
const ASK_EVERY: Duration = Duration::from_secs(4);
/// How long the load is held once every connection is open.
const HOLD: Duration = Duration::from_secs(15);

/// Sends `request` on a kept-alive connection and reads one answer; its
/// status, or None when the connection failed or the answer is malformed.
fn ask(c: &mut TlsClient, request: &[u8]) -> Option<u16> {
    c.write_all(request).ok()?;
    c.flush().ok()?;
    let until = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut need = None;
    while Instant::now() < until {
        match c.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
        if need.is_none() {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())?;
                need = Some((end + 4 + len, head[9..12].parse().ok()?));
            }
        }
        if let Some((total, status)) = need {
            if got.len() >= total {
                return Some(status);
            }
        }
    }
    None
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(times: &mut [Duration], p: usize) -> Duration {
    times.sort();
    times[(times.len() * p / 100).min(times.len() - 1)]
}

#[test]
fn a_thousand_connections_two_hundred_slow_leave_health_and_exec_answering() {
    let api = Arc::new(start());
    let idle_rss = rss_kib(api.pid);
    let opened = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // The busy clients: each opens its share, then asks on every
    // connection every ASK_EVERY until told to stop.
    let loaders: Vec<_> = (0..LOADERS)
        .map(|l| {
            let (api, opened, asked, failed, stop) = (
                api.clone(),
                opened.clone(),
                asked.clone(),
                failed.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let share = BUSY / LOADERS;
                let mut conns: Vec<(TlsClient, Vec<u8>)> = (0..share)
                    .map(|i| {
                        let n = l * share + i;
                        let from = format!("127.0.1.{}", 1 + n / PER_ADDRESS);
                        let request = format!(
                            "GET /v1/workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tenant-{n}\r\n\r\n"
                        )
                        .into_bytes();
                        let mut c = tls_from(&api, &from);
                        if ask(&mut c, &request) != Some(200) {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                        opened.fetch_add(1, Ordering::SeqCst);
                        (c, request)
                    })
                    .collect();
                while !stop.load(Ordering::SeqCst) {
                    let round = Instant::now();
                    for (c, request) in conns.iter_mut() {
                        match ask(c, request) {
                            Some(200) => asked.fetch_add(1, Ordering::SeqCst),
                            _ => failed.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                    std::thread::sleep(ASK_EVERY.saturating_sub(round.elapsed()));
                }
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::SeqCst) < BUSY && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        opened.load(Ordering::SeqCst),
        BUSY,
        "busy clients connected"
    );

    // The slow ones: TLS, then a head a byte a second, round robin.
    let mut slow: Vec<TlsClient> = (0..SLOW)
        .map(|n| {
            let mut c = tls_from(&api, &format!("127.0.2.{}", 1 + n / PER_ADDRESS));
            c.conn.complete_io(&mut c.sock).expect("handshake");
            c
        })
        .collect();
    let slow_stop = stop.clone();
    let trickler = std::thread::spawn(move || {
        let head = b"POST /v1/workspaces HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut open = vec![true; slow.len()];
        let mut at = 0;
        while !slow_stop.load(Ordering::SeqCst) && at < head.len() {
            for (c, o) in slow.iter_mut().zip(open.iter_mut()) {
                if *o
                    && c.write_all(&head[at..=at])
                        .and_then(|()| c.flush())
                        .is_err()
                {
                    *o = false;
                }
            }
            at += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
        // Which of them the server has closed by now.
        slow.iter_mut().map(closed).filter(|c| *c).count()
    });

    // Under that load: health and an exec, again and again.
    let base = format!("https://127.0.0.1:{}", api.port);
    let mut health_times = Vec::new();
    let mut exec_times = Vec::new();
    let mut peak_rss = 0;
    let held = Instant::now();
    while held.elapsed() < HOLD {
        peak_rss = peak_rss.max(rss_kib(api.pid));
        let t = Instant::now();
        let (code, body) = curl("127.0.0.1", &[&format!("{base}/v1/health")]);
        health_times.push(t.elapsed());
        assert_eq!(code, "200", "health under load: {body}");
        let t = Instant::now();
        let (code, body) = curl(
            "127.0.0.1",
            &[
                "-H",
                "Authorization: Bearer tenant",
                "--data-binary",
                r#"{"argv":["echo","still","here"]}"#,
                &format!("{base}/v1/workspaces/ws_a/exec"),
            ],
        );
        exec_times.push(t.elapsed());
        assert_eq!(code, "200", "exec under load: {body}");
        assert!(body.contains(r#""exit_code":0"#), "exec under load: {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    for l in loaders {
        l.join().expect("loader");
    }
    let slow_closed = trickler.join().expect("trickler");
    println!(
        "under {BUSY} kept-alive + {SLOW} slow connections: health p50 {:?} max {:?}; \
         exec p50 {:?} max {:?}; {} busy requests answered; API process RSS {idle_rss} KiB idle, \
         {peak_rss} KiB at peak",
        percentile(&mut health_times, 50),
        percentile(&mut health_times, 100),
        percentile(&mut exec_times, 50),
        percentile(&mut exec_times, 100),
        asked.load(Ordering::SeqCst),
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "every busy client's request was answered"
    );
    assert_eq!(slow_closed, SLOW, "every slow head was cut off");
    assert!(
        peak_rss < 256 * 1024,
        "{peak_rss} KiB: over the API process's memory.max"
    );
}
