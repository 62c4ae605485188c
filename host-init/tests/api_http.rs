//! The API process's HTTP on tokio and hyper (issue 15): connections kept
//! alive, HTTP/2 by ALPN, bodies without a length, and the limits that
//! make those safe: a connection that says nothing, says half a head, or
//! opens HTTP/2 and waits is closed; an upload cut before its last chunk
//! writes nothing. Loopback only; each test runs its own API process.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;
use common::fake_api::*;

/// Waits (30 s at most, which only detects a hang) until the server closes
/// `c`; how long that took.
fn wait_closed(c: &mut TlsClient) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if closed(c) {
            return Some(started.elapsed());
        }
    }
    None
}

#[test]
fn connections_are_kept_alive_and_speak_http2() {
    let api = start();
    let base = format!("https://127.0.0.1:{}", api.port);
    let health = format!("{base}/v1/health");
    let list = format!("{base}/v1/workspaces");
    // Three requests, one connection: curl counts the connections it made.
    let out = Command::new("curl")
        .args(["-sk", "--http1.1", "-o", "/dev/null", "-o", "/dev/null"])
        .args(["-o", "/dev/null", "-H", "Authorization: Bearer tenant"])
        .args(["-w", "%{http_code} %{num_connects} %{http_version}\n"])
        .args([&health, &list, &list])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["200 1 1.1", "200 0 1.1", "200 0 1.1"],
        "{text}"
    );
    // HTTP/2 when the client offers it, the same answers.
    let out = Command::new("curl")
        .args(["-sk", "--http2", "-H", "Authorization: Bearer tenant"])
        .args(["-w", "\n%{http_code} %{http_version}", &list])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("200 2"), "{text}");
    assert!(text.contains("workspaces"), "{text}");
    let out = Command::new("curl")
        .args(["-sk", "--http2", "-w", "\n%{http_code}", &list])
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("401"),
        "HTTP/2 is authenticated like HTTP/1.1"
    );
    // An exec streams over HTTP/2 too.
    let out = Command::new("curl")
        .args(["-sk", "--http2", "-H", "Authorization: Bearer tenant"])
        .args(["--data-binary", r#"{"argv":["echo","over","h2"]}"#])
        .arg(format!("{base}/v1/workspaces/ws_a/exec"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#""stdout":"b3ZlciBoMg==""#) && text.contains(r#""exit_code":0"#),
        "{text}"
    );
}

#[test]
fn bodies_without_a_length_are_taken_and_a_cut_one_writes_nothing() {
    let api = start();
    let base = format!("https://127.0.0.1:{}", api.port);
    let (code, body) = curl(
        "127.0.0.30",
        &[
            "-H",
            "Authorization: Bearer tenant",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "{}",
            &format!("{base}/v1/workspaces"),
        ],
    );
    assert_eq!(code, "200", "a chunked JSON body: {body}");
    assert!(api.seen.forwarded.load(Ordering::SeqCst) >= 1);

    // An upload from a pipe: curl sends it chunked, with no length known.
    let size = 3 << 20;
    let mut child = Command::new("curl")
        .args(["-sk", "--http1.1", "-H", "Authorization: Bearer tenant"])
        .args(["-T", "-"])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{base}/v1/workspaces/ws_a/files?path=/piped"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&vec![b'z'; size]).expect("upload");
    drop(stdin);
    let out = child.wait_with_output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("200"), "{text}");
    assert!(text.contains(&format!(r#""bytes":{size}"#)), "{text}");
    assert_eq!(api.seen.uploaded_bytes.load(Ordering::SeqCst), size as u64);
    assert_eq!(api.seen.uploads_done.load(Ordering::SeqCst), 1);

    // Chunks, then the client goes away before the last one: the agent's
    // session ends without DataEnd, so no file replaces the old one.
    let mut c = tls_from(&api, "127.0.0.30");
    let head = "PUT /v1/workspaces/ws_a/files?path=/cut HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tenant\r\nTransfer-Encoding: chunked\r\n\r\n";
    c.write_all(head.as_bytes()).expect("head");
    c.write_all(b"400\r\n").expect("chunk size");
    c.write_all(&[b'y'; 0x400]).expect("chunk");
    c.write_all(b"\r\n").expect("chunk end");
    c.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(500));
    drop(c);
    let until = Instant::now() + Duration::from_secs(20);
    while api.seen.uploads_cut.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(api.seen.uploads_cut.load(Ordering::SeqCst), 1, "cut");
    assert_eq!(api.seen.uploads_done.load(Ordering::SeqCst), 1, "not done");
}

#[test]
fn silent_slow_and_idle_connections_are_closed() {
    let api = start();
    // TLS, then nothing.
    let mut silent = tls_from(&api, "127.0.0.31");
    silent
        .conn
        .complete_io(&mut silent.sock)
        .expect("handshake");
    // HTTP/2: the preface and empty settings, then nothing.
    let mut h2 = tls_alpn(&api, "127.0.0.31", &[b"h2"]);
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .expect("preface");
    h2.flush().expect("flush");
    assert_eq!(h2.conn.alpn_protocol(), Some(&b"h2"[..]));
    // One request answered, then half of the next head, a byte a second.
    let mut slow = tls_from(&api, "127.0.0.31");
    slow.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    slow.flush().expect("flush");
    let mut answer = [0u8; 512];
    let n = loop {
        match slow.read(&mut answer) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("reading the answer: {e}"),
        }
    };
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "kept alive");
    let trickler = std::thread::spawn(move || {
        for b in
            b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if slow.write_all(&[*b]).and_then(|()| slow.flush()).is_err() {
                return true;
            }
            if closed(&mut slow) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(800));
        }
        false
    });
    let silent_for = wait_closed(&mut silent);
    let h2_for = wait_closed(&mut h2);
    assert!(silent_for.is_some(), "a silent connection stayed open");
    assert!(h2_for.is_some(), "a silent HTTP/2 connection stayed open");
    assert!(
        trickler.join().expect("trickler"),
        "a head trickled after a kept-alive answer stayed open"
    );
    println!("closed after: silent {silent_for:?}, HTTP/2 {h2_for:?}");
    assert_eq!(api.seen.who_am_i.load(Ordering::SeqCst), 0);
}

#[test]
fn probes_and_refusals_get_nothing_before_authentication() {
    let api = start();
    let base = format!("https://127.0.0.1:{}", api.port);
    // The test probes' paths: refused before anything reaches host-init
    // (they once skipped authentication and admission in the API process).
    for (method, path) in [
        ("POST", "/v1/debug/process-scan"),
        ("POST", "/v1/debug/drop-caches"),
        ("GET", "/v1/debug/console/x"),
    ] {
        let (code, body) = curl(
            "127.0.0.32",
            &[
                "-X",
                method,
                "--data-binary",
                "{}",
                &format!("{base}{path}"),
            ],
        );
        assert_eq!(code, "401", "{method} {path}: {body}");
    }
    assert_eq!(
        api.seen.calls.load(Ordering::SeqCst),
        0,
        "a probe without a token reached host-init"
    );
    // A refusal closes an HTTP/1.1 connection; health keeps it.
    let out = Command::new("curl")
        .args(["-sk", "--http1.1", "-o", "/dev/null", "-o", "/dev/null"])
        .args(["-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n"])
        .arg(format!("{base}/v1/health"))
        .arg(format!("{base}/v1/workspaces"))
        .arg(format!("{base}/v1/workspaces"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["200 1", "401 0", "401 1"],
        "{text}"
    );
    // An upload over HTTP/2 without a length is refused (a reset stream
    // would end it as cleanly as a finished one).
    let mut child = Command::new("curl")
        .args([
            "-sk",
            "--http2",
            "-H",
            "Authorization: Bearer tenant",
            "-T",
            "-",
        ])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{base}/v1/workspaces/ws_a/files?path=/h2"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(b"some bytes");
    drop(stdin);
    let out = child.wait_with_output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("411"), "{text}");
    assert_eq!(api.seen.uploads_done.load(Ordering::SeqCst), 0);
}
