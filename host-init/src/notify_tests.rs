use super::*;
use std::io::{BufRead, BufReader, Read, Write};

#[test]
fn urls_are_checked_and_parsed() {
    let t = parse_url("https://hooks.example.com/paddock?k=1").expect("ok");
    assert_eq!(
        (t.tls, t.host.as_str(), t.port, t.path.as_str()),
        (true, "hooks.example.com", 443, "/paddock?k=1")
    );
    let t = parse_url("http://192.0.2.7:8080").expect("ok");
    assert_eq!((t.tls, t.port, t.path.as_str()), (false, 8080, "/"));
    for bad in [
        "ftp://x.test/",
        "https://user@x.test/",
        "https://x.test:0/",
        "https://x.test:99999/",
        "https:///path",
        "https://bad host/",
        "https://x.test/a b",
    ] {
        assert!(parse_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_configuration_names_what_is_wrong() {
    let c = |v: serde_json::Value| from_config(v);
    assert_eq!(c(serde_json::json!({})), Ok(None));
    let hook = c(serde_json::json!({"webhook": {"url": "https://h.test/x"}}))
        .expect("ok")
        .expect("some");
    assert!(hook.events.contains("egress_requested") && hook.events.contains("secret_misuse"));
    for (v, want) in [
        (
            serde_json::json!({"webhook": {"url": "h.test"}}),
            "webhook.url",
        ),
        (
            serde_json::json!({"webhook": {"url": "https://h.test", "events": []}}),
            "webhook.events",
        ),
        (
            serde_json::json!({"webhook": {"url": "https://h.test", "events": ["Bad Event"]}}),
            "webhook.events",
        ),
        (
            serde_json::json!({"webhook": {"url": "https://h.test", "secret": "short"}}),
            "webhook.secret",
        ),
        (
            serde_json::json!({"webhook": {"url": "https://h.test", "ca": "nope"}}),
            "webhook.ca",
        ),
        (
            serde_json::json!({"webhook": {"url": "https://h.test", "bogus": 1}}),
            "bogus",
        ),
    ] {
        let e = c(v.clone()).expect_err(&v.to_string());
        assert!(e.contains(want), "{v}: {e}");
    }
}

/// Reads one HTTP/1.1 request: (head, body).
fn read_request(conn: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("line");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).expect("body");
    (head, body)
}

#[test]
fn an_event_is_posted_signed_and_a_refusal_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for status in ["200 OK", "500 Internal Server Error"] {
            let (mut conn, _) = listener.accept().expect("accept");
            seen.push(read_request(&mut conn));
            let _ = conn.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
        seen
    });
    let hook = Webhook {
        target: parse_url(&format!("http://127.0.0.1:{port}/hook")).expect("url"),
        events: DEFAULT_EVENTS.iter().map(|e| e.to_string()).collect(),
        secret: Some("a-shared-secret-of-the-admins".into()),
        ca: None,
    };
    let body = br#"{"ts":1,"event":"secret_misuse","workspace":"ws_1","secret":"K"}"#;
    deliver(&hook, body).expect("delivered");
    let e = deliver(&hook, body).expect_err("a 500 is not delivered");
    assert!(e.contains("500"), "{e}");
    let seen = server.join().expect("server");
    let (head, got) = &seen[0];
    assert_eq!(got.as_slice(), body);
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("post /hook http/1.1"), "{head}");
    assert!(lower.contains("x-paddock-event: secret_misuse"), "{head}");
    assert!(lower.contains("content-type: application/json"), "{head}");
    // The receiver checks the signature with the shared secret.
    let want = signature("a-shared-secret-of-the-admins", body);
    assert!(
        lower.contains(&format!("x-paddock-signature: {want}")),
        "{head}"
    );
}
