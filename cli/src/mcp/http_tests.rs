//! The HTTP transport attacked and used over real sockets, against a
//! stand-in appliance that takes one token and refuses every other.

use super::super::auth;
use super::*;
use crate::testserver;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;

const GOOD: &str = "pdk_good";
/// A token the stand-in rate-limits (as the appliance does after failed
/// authentications from one address).
const LIMITED: &str = "pdk_limited";

/// A server on a loopback port with short limits, in front of a stand-in
/// appliance; returns its port and the appliance's request count.
fn start(limits: Limits) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let (upstream, asked) = testserver::serve_each(|req| {
        let head = String::from_utf8_lossy(req).to_string();
        if head.contains(&format!("Bearer {LIMITED}\r\n")) {
            let body = br#"{"error":"too many failed authentications"}"#;
            let len = format!("Content-Length: {}", body.len());
            return testserver::answer("429 Too Many Requests", &[&len], body);
        }
        if head.starts_with("POST") && head.contains("/exec") {
            // A command that takes a while.
            std::thread::sleep(Duration::from_millis(1500));
        }
        if head.contains(&format!("Bearer {GOOD}\r\n")) {
            testserver::answer("200 OK", &["Content-Length: 17"], br#"{"workspaces":[]}"#)
        } else {
            let body = br#"{"error":"unknown or expired token"}"#;
            let len = format!("Content-Length: {}", body.len());
            testserver::answer("401 Unauthorized", &[&len], body)
        }
    });
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = std_listener.local_addr().expect("addr").port();
    std_listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let _ = run(listener, upstream, limits).await;
        });
    });
    (port, asked)
}

fn short() -> Limits {
    Limits {
        connections: 4,
        calls: 2,
        head: Duration::from_millis(500),
        body: Duration::from_millis(500),
    }
}

/// One request on a fresh connection; the answer's status and body.
fn post(port: u16, headers: &[&str], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    read_answer(&mut s)
}

fn read_answer(s: &mut TcpStream) -> (u16, String) {
    let mut got = String::new();
    s.read_to_string(&mut got).expect("read");
    let status = got
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, got)
}

const INIT: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
const JSON: &str = "Content-Type: application/json";

#[test]
fn a_client_with_the_appliances_token_gets_answers() {
    let (port, _) = start(short());
    let bearer = format!("Authorization: Bearer {GOOD}");
    let (status, text) = post(port, &[JSON, &bearer], INIT);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""protocolVersion":"2025-06-18""#), "{text}");
    assert!(text
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    // A notification is accepted with nothing to say.
    let (status, text) = post(
        port,
        &[JSON, &bearer, "MCP-Protocol-Version: 2025-06-18"],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(status, 202, "{text}");
    let (status, text) = post(
        port,
        &[JSON, &bearer],
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("run_command"), "{text}");
}

#[test]
fn no_token_or_a_token_the_appliance_refuses_is_turned_away() {
    let (port, asked) = start(short());
    let (status, text) = post(port, &[JSON], INIT);
    assert_eq!(status, 401, "{text}");
    assert!(text
        .to_ascii_lowercase()
        .contains("www-authenticate: bearer"));
    assert_eq!(asked.load(Ordering::SeqCst), 0, "nothing to ask about");
    // A header injection attempt never reaches the appliance.
    let (status, _) = post(port, &[JSON, "Authorization: Bearer a b"], INIT);
    assert_eq!(status, 401);
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    let (status, text) = post(port, &[JSON, "Authorization: Bearer pdk_wrong"], INIT);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("unknown or expired token"), "{text}");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    // A refused token is not remembered as good.
    let (status, _) = post(port, &[JSON, "Authorization: Bearer pdk_wrong"], INIT);
    assert_eq!(status, 401);
    assert_eq!(asked.load(Ordering::SeqCst), 2);
}

#[test]
fn an_appliance_that_cannot_say_is_not_taken_for_a_yes() {
    let (port, asked) = start(short());
    let bearer = format!("Authorization: Bearer {LIMITED}");
    for n in 1..=2 {
        let (status, text) = post(port, &[JSON, &bearer], INIT);
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("too many failed"), "{text}");
        assert_eq!(asked.load(Ordering::SeqCst), n, "asked again, not cached");
    }
}

#[test]
fn one_token_cannot_take_every_call_slot() {
    let mut limits = short();
    limits.calls = 16;
    limits.connections = 16;
    let (port, _) = start(limits);
    let bearer = format!("Authorization: Bearer {GOOD}");
    let run = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"run_command","arguments":{"workspace_id":"ws_1","command":"sleep 1"}}}"#;
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..auth::CALLS_PER_TOKEN + 2)
            .map(|_| s.spawn(|| post(port, &[JSON, &bearer], run).0))
            .collect();
        calls.into_iter().map(|c| c.join().expect("call")).collect()
    });
    let busy = statuses.iter().filter(|s| **s == 429).count();
    assert!(busy >= 2, "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 1,
        "{statuses:?}"
    );
    // Its slots come back.
    let (status, text) = post(port, &[JSON, &bearer], INIT);
    assert_eq!(status, 200, "{text}");
}

#[test]
fn a_refused_request_does_not_keep_its_connection() {
    // Idle connections are kept 10 minutes here: only the refusal closes it.
    let mut limits = short();
    limits.head = Duration::from_secs(600);
    let (port, _) = start(limits);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET /mcp HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    // Read to the end: the server closes now, not after its idle limit.
    let (status, text) = read_answer(&mut s);
    assert_eq!(status, 405, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
}

#[test]
fn a_page_on_another_site_cannot_reach_it_by_dns_rebinding() {
    let (port, asked) = start(short());
    let bearer = format!("Authorization: Bearer {GOOD}");
    for (host, origin) in [
        ("evil.example", None),
        ("127.0.0.1", Some("http://evil.example")),
        ("localhost", Some("null")),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\n{origin}{JSON}\r\n{bearer}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INIT}",
            INIT.len()
        );
        s.write_all(req.as_bytes()).expect("send");
        let (status, text) = read_answer(&mut s);
        assert_eq!(status, 403, "{host} {origin}: {text}");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    let (status, text) = post(
        port,
        &[JSON, &bearer, "Origin: http://localhost:3000"],
        INIT,
    );
    assert_eq!(status, 200, "a local page may: {text}");
}

#[test]
fn what_it_does_not_serve_is_said() {
    let (port, _) = start(short());
    let bearer = format!("Authorization: Bearer {GOOD}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(
        format!("GET /mcp HTTP/1.1\r\nHost: localhost\r\n{bearer}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("send");
    let (status, text) = read_answer(&mut s);
    assert_eq!(status, 405, "{text}");
    assert!(
        text.contains("Allow: POST") || text.contains("allow: POST"),
        "{text}"
    );
    let (status, _) = post(port, &[&bearer], INIT);
    assert_eq!(status, 415, "no JSON content type");
    let (status, text) = post(
        port,
        &[JSON, &bearer, "MCP-Protocol-Version: 1999-01-01"],
        INIT,
    );
    assert_eq!(status, 400, "{text}");
    let (status, text) = post(port, &[JSON, &bearer], "{not json");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("-32700"), "{text}");
}

#[test]
fn a_body_over_the_limit_is_refused_unread() {
    let (port, _) = start(short());
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\n{JSON}\r\nAuthorization: Bearer {GOOD}\r\nContent-Length: {}\r\n\r\n",
        crate::mcp::MAX_LINE + 1
    );
    s.write_all(head.as_bytes()).expect("send");
    let (status, text) = read_answer(&mut s);
    assert_eq!(status, 413, "{text}");
}

#[test]
fn half_a_header_or_an_idle_connection_does_not_hold_a_slot() {
    let limits = short();
    let (port, _) = start(limits);
    // Every slot taken: one by half a request head, the others idle after
    // a whole request.
    let mut held = Vec::new();
    for n in 0..limits.connections {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        if n == 0 {
            s.write_all(b"POST /mcp HTTP/1.1\r\nHost: loc")
                .expect("send");
        } else {
            let req = format!(
                "POST /mcp HTTP/1.1\r\nHost: localhost\r\n{JSON}\r\nAuthorization: Bearer {GOOD}\r\nContent-Length: {}\r\n\r\n{INIT}",
                INIT.len()
            );
            s.write_all(req.as_bytes()).expect("send");
        }
        held.push(s);
    }
    // The server closes each of them in its own time: read to the end.
    for (n, mut s) in held.into_iter().enumerate() {
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let read = s.read_to_end(&mut rest);
        assert!(read.is_ok(), "connection {n} was not closed: {read:?}");
    }
    let (status, text) = post(
        port,
        &[JSON, &format!("Authorization: Bearer {GOOD}")],
        INIT,
    );
    assert_eq!(status, 200, "a slot is free again: {text}");
}

#[test]
fn only_loopback_names_count_as_loopback() {
    for ok in [
        "localhost",
        "LOCALHOST:8808",
        "127.0.0.1",
        "127.0.0.1:1",
        "[::1]",
        "[::1]:80",
    ] {
        assert!(is_loopback_authority(ok), "{ok}");
    }
    for bad in [
        "",
        "evil.example",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "127.0.0.2",
        "[::2]",
        "[::1]x",
        "localhost:port",
        "localhost:99999",
        "null",
    ] {
        assert!(!is_loopback_authority(bad), "{bad}");
    }
}

#[test]
fn it_will_not_listen_beyond_loopback() {
    let (upstream, _) = testserver::serve_each(|_| Vec::new());
    let e = serve(
        "0.0.0.0:0".parse().expect("addr"),
        upstream,
        Limits::default(),
    )
    .expect_err("refused");
    assert!(matches!(e, CliError::Usage(_)), "{e}");
    assert!(e.to_string().contains("loopback"), "{e}");
}
