//! The API process against what api_flood.rs leaves out (issue 14, item
//! 2): clients over the connection caps, bodies trickled before
//! authentication, execs whose client went away, uploads streamed to a
//! (fake) agent, JSON bodies built to take many times their size once
//! parsed, and token guessing. Loopback only; each test runs its own API process.

use paddock_api_server::admission::{MAX_CONNECTIONS, MAX_PER_ADDRESS};
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;
use common::fake_api::*;

#[test]
fn clients_over_the_caps_get_answers_not_resets() {
    let api = start();
    let base = format!("https://127.0.0.1:{}", api.port);
    let health = format!("{base}/v1/health");
    let list = format!("{base}/v1/workspaces");
    // One address holds its whole share with connections that never even
    // start TLS (each would be cut at the head deadline, 10 s).
    let mut held: Vec<TcpStream> = (0..MAX_PER_ADDRESS)
        .map(|_| connect_from("127.0.0.10", api.port))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        curl("127.0.0.10", &[&health]).0,
        "200",
        "health from the address over its cap"
    );
    let (code, body) = curl("127.0.0.10", &["-H", "Authorization: Bearer tenant", &list]);
    assert_eq!(code, "503", "a tenant over its address's cap: {body}");
    assert!(body.contains("connection limit"), "says why: {body}");
    assert_eq!(
        curl("127.0.0.10", &["-H", "Authorization: Bearer admin", &list]).0,
        "200",
        "an admin over its address's cap"
    );

    // More addresses take every connection the process serves.
    let mut n = MAX_PER_ADDRESS;
    let mut host = 11;
    while n < MAX_CONNECTIONS {
        let from = format!("127.0.0.{host}");
        for _ in 0..MAX_PER_ADDRESS.min(MAX_CONNECTIONS - n) {
            held.push(connect_from(&from, api.port));
            n += 1;
        }
        host += 1;
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        curl("127.0.0.40", &[&health]).0,
        "200",
        "health over the global cap"
    );
    assert_eq!(
        curl("127.0.0.40", &["-H", "Authorization: Bearer admin", &list]).0,
        "200",
        "an admin over the global cap"
    );
    let (code, body) = curl("127.0.0.41", &["-H", "Authorization: Bearer tenant", &list]);
    assert_eq!(code, "503", "a tenant over the global cap: {body}");
    drop(held);
}

#[test]
fn trickled_bodies_before_authentication_are_cut_off() {
    let api = start();
    // Heads the server answers without a token (health, no such path) or
    // refuses (a bad token), each promising a body sent a byte a second.
    let heads = [
        "GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        "POST /v1/nothing-here HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        "POST /v1/workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 100000\r\n\r\n",
    ];
    let mut clients: Vec<TlsClient> = heads
        .iter()
        .map(|head| {
            let mut c = tls_from(&api, "127.0.0.20");
            c.write_all(head.as_bytes()).expect("head");
            c.flush().expect("flush");
            c
        })
        .collect();
    let mut open = vec![true; clients.len()];
    // The old server read such bodies with a 15 s timeout per read, so a
    // byte a second held the connection for ever; now each is cut within
    // the drain deadline (2 s). 30 s only detects a hang.
    let until = Instant::now() + Duration::from_secs(30);
    while open.iter().any(|o| *o) && Instant::now() < until {
        for (c, o) in clients.iter_mut().zip(open.iter_mut()) {
            if *o && (c.write_all(b"x").and_then(|()| c.flush()).is_err() || closed(c)) {
                *o = false;
            }
        }
        std::thread::sleep(Duration::from_millis(800));
    }
    for (head, o) in heads.iter().zip(&open) {
        assert!(!o, "still open while trickling a body after {head:?}");
    }
    assert_eq!(api.seen.forwarded.load(Ordering::SeqCst), 0);
}

#[test]
fn an_exec_whose_client_went_away_gives_back_its_slot() {
    let api = start();
    let base = format!("https://127.0.0.1:{}", api.port);
    let exec = format!("{base}/v1/workspaces/ws_a/exec");
    let list = format!("{base}/v1/workspaces");
    // The tenant's whole share of `sleep infinity`, each client giving up
    // after 2 s (curl's --max-time) and closing its connection.
    let execs: Vec<_> = (0..paddock_api_server::admission::MAX_PER_TENANT)
        .map(|_| {
            let url = exec.clone();
            std::thread::spawn(move || {
                Command::new("curl")
                    .args(["-sk", "--interface", "127.0.0.21", "--max-time", "2"])
                    .args(["-H", "Authorization: Bearer tenant", "-X", "POST"])
                    .args(["--data-binary", r#"{"argv":["sleep","infinity"]}"#, &url])
                    .output()
                    .expect("curl")
            })
        })
        .collect();
    for e in execs {
        e.join().expect("exec client");
    }
    // The old server waited on the agent for ever: the tenant's later
    // calls got 429 until the API process restarted. 30 s detects a hang.
    let until = Instant::now() + Duration::from_secs(30);
    let mut code = String::new();
    while Instant::now() < until {
        code = curl("127.0.0.22", &["-H", "Authorization: Bearer tenant", &list]).0;
        if code == "200" {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(code, "200", "the tenant is served again");
    let until = Instant::now() + Duration::from_secs(10);
    while api.seen.exec_sessions_ended.load(Ordering::SeqCst)
        < paddock_api_server::admission::MAX_PER_TENANT
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        api.seen.exec_sessions_ended.load(Ordering::SeqCst),
        paddock_api_server::admission::MAX_PER_TENANT,
        "every agent session ended (the agent kills what a session leaves)"
    );
}

#[test]
fn uploads_stream_and_a_short_one_writes_nothing() {
    let api = start();
    let size: u64 = 192 << 20;
    let big = std::env::temp_dir().join(format!("paddock-upload-{}", std::process::id()));
    let f = std::fs::File::create(&big).expect("file");
    f.set_len(size).expect("sparse file");
    drop(f);
    let url = format!(
        "https://127.0.0.1:{}/v1/workspaces/ws_a/files?path=/big",
        api.port
    );
    let (code, body) = curl(
        "127.0.0.23",
        &[
            "-H",
            "Authorization: Bearer tenant",
            "-T",
            &big.to_string_lossy(),
            &url,
        ],
    );
    let _ = std::fs::remove_file(&big);
    assert_eq!(code, "200", "{body}");
    assert_eq!(api.seen.uploaded_bytes.load(Ordering::SeqCst), size);
    assert_eq!(api.seen.uploads_done.load(Ordering::SeqCst), 1);
    let hwm = proc_kib(api.pid, "VmHWM");
    assert!(
        hwm > 0 && hwm < 48 * 1024,
        "peak RSS {hwm} KiB for a {} MiB upload",
        size >> 20
    );

    // A client that promises 1 MiB, sends 1000 bytes and goes away: the
    // agent's session ends without DataEnd, so no file replaces the old one.
    let mut c = tls_from(&api, "127.0.0.23");
    let head = "PUT /v1/workspaces/ws_a/files?path=/short HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tenant\r\nContent-Length: 1048576\r\n\r\n";
    c.write_all(head.as_bytes()).expect("head");
    c.write_all(&[b'y'; 1000]).expect("some body");
    c.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(500));
    drop(c);
    let until = Instant::now() + Duration::from_secs(20);
    while api.seen.uploads_cut.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        api.seen.uploads_cut.load(Ordering::SeqCst),
        1,
        "the short upload was cut"
    );
    assert_eq!(
        api.seen.uploads_done.load(Ordering::SeqCst),
        1,
        "and never completed"
    );
}

#[test]
fn json_bodies_are_parsed_a_few_at_a_time() {
    let api = start();
    // An exec request of almost 1 MiB: an argv of empty strings, which the
    // parser turns into 24 bytes (or, as a JSON tree, 32) per 3 bytes of
    // text before the argument count is checked.
    let mut body = String::from("{\"argv\":[\"\"");
    while body.len() < (1 << 20) - 16 {
        body.push_str(r#","""#);
    }
    body.push_str("]}");
    let file = std::env::temp_dir().join(format!("paddock-argv-{}", std::process::id()));
    std::fs::write(&file, &body).expect("body file");
    let url = format!("https://127.0.0.1:{}/v1/workspaces/ws_a/exec", api.port);
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (url, file) = (url.clone(), file.to_string_lossy().to_string());
            std::thread::spawn(move || {
                let from = format!("127.0.0.{}", 24 + i);
                curl(
                    &from,
                    &[
                        "-H",
                        "Authorization: Bearer tenant",
                        "-X",
                        "POST",
                        "--data-binary",
                        &format!("@{file}"),
                        &url,
                    ],
                )
                .0
            })
        })
        .collect();
    for c in clients {
        let code = c.join().expect("client");
        assert!(
            code == "422" || code == "503",
            "refused for its argv (or asked to retry): {code}"
        );
    }
    let _ = std::fs::remove_file(&file);
    let hwm = proc_kib(api.pid, "VmHWM");
    // The old server: about 125 MiB; now about 36.
    assert!(hwm < 64 * 1024, "peak RSS {hwm} KiB for 8 such requests");
}

#[test]
fn guessing_tokens_is_slowed_per_address() {
    use paddock_api_server::admission::MAX_AUTH_FAILURES;
    let api = start();
    let list = format!("https://127.0.0.1:{}/v1/workspaces", api.port);
    let tries = MAX_AUTH_FAILURES as usize + 5;
    let codes: Vec<String> = (0..tries)
        .map(|i| {
            let bearer = format!("Authorization: Bearer guess{i}");
            curl("127.0.0.50", &["-H", &bearer, &list]).0
        })
        .collect();
    let refused = codes.iter().filter(|c| *c == "401").count();
    let slowed = codes.iter().filter(|c| *c == "429").count();
    // Every failure is an audit event host-init writes and syncs: the old
    // server let a guesser write them as fast as it could send.
    assert_eq!(
        (refused, slowed),
        (MAX_AUTH_FAILURES as usize, 5),
        "{codes:?}"
    );
    assert_eq!(
        api.seen.who_am_i.load(Ordering::SeqCst),
        MAX_AUTH_FAILURES as usize,
        "the slowed ones never reached host-init"
    );
    assert_eq!(
        curl("127.0.0.51", &["-H", "Authorization: Bearer tenant", &list]).0,
        "200",
        "another address is not slowed"
    );
    assert_eq!(
        curl("127.0.0.50", &["-H", "Authorization: Bearer tenant", &list]).0,
        "200",
        "nor a token that authenticated lately, from the slowed address"
    );
    assert_eq!(
        curl("127.0.0.50", &["-H", "Authorization: Bearer admin", &list]).0,
        "429",
        "a token not seen lately waits out the window there"
    );
}
