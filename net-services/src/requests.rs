//! The box's request endpoint, `http://paddock.internal` (each
//! workspace's gateway address, port 80; the firewall sends it to the
//! proxy whatever the allowlist): where an agent asks for a destination
//! its allowlist lacks, with its reason. Runs in the network services
//! process like the rest of the proxy; an ask is queued here and reported
//! to PID 1, which records it as a pending approval for a person to decide
//! (control::service::approvals).
//!
//!   POST /egress-requests   {"host": "api.example.com", "port": 443, "reason": "..."}
//!        202 {"id", "status": "pending", ...}, or 200 "allowed" when it already is
//!   GET  /egress-requests?host=api.example.com&port=443
//!        {"status": "allowed" | "not_allowed"}
//!   GET  /   how to ask
//!
//! One request per connection, a head of at most 8 KiB and a body of at
//! most 4 KiB; asks are bounded per workspace between reports.

use paddock_net::policy::{CheckEgress as _, Egress, EgressRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

const MAX_HEAD: usize = 8 << 10;
const MAX_BODY: usize = 4 << 10;
const MAX_REASON: usize = 500;
/// Asks queued for the next report, per workspace and in all.
const MAX_QUEUED_PER_WORKSPACE: usize = 8;
const MAX_QUEUED: usize = 256;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole request, head and body: a guest sending a byte every few
/// seconds would otherwise hold this request's thread indefinitely.
const REQUEST_DEADLINE: Duration = Duration::from_secs(20);

/// A destination a workspace asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    pub workspace: String,
    pub host: String,
    pub port: u16,
    pub reason: String,
}

static QUEUED: Mutex<Vec<Ask>> = Mutex::new(Vec::new());

/// The asks since the last call (the reporter sends them to PID 1).
pub fn take() -> Vec<Ask> {
    std::mem::take(&mut *QUEUED.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The approval's id for a destination of a workspace: the same ask gives
/// the same id (asking again is no new request).
pub fn approval_id(workspace: &str, host: &str, port: u16) -> String {
    let d = Sha256::digest(format!("{workspace}\0{host}\0{port}").as_bytes());
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("apr_{hex}")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskBody {
    host: String,
    port: u16,
    #[serde(default)]
    reason: String,
}

/// How to ask, for a refusal's text and `GET /`.
pub const HOW_TO_ASK: &str = "ask for a destination with: curl -s http://paddock.internal/egress-requests -d '{\"host\": \"NAME\", \"port\": 443, \"reason\": \"why\"}'";

/// Serves one request on `conn` from workspace `id` under `egress`;
/// `first` is what the proxy already read of it.
pub fn serve(mut conn: TcpStream, id: &str, egress: &Egress, first: Vec<u8>) {
    let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
    let deadline = std::time::Instant::now() + REQUEST_DEADLINE;
    let (status, body) = match read_request(&mut conn, first, deadline) {
        Ok((method, path, body)) => route(id, egress, &method, &path, &body),
        Err(why) => (400, json!({"error": why})),
    };
    let text = format!("{body}\n");
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        _ => "Bad Request",
    };
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    );
    let _ = conn.shutdown(Shutdown::Both);
}

/// Method, path (with query) and body of one request.
/// One read that ends by `deadline` at the latest.
fn read_before(
    conn: &mut TcpStream,
    buf: &mut [u8],
    deadline: std::time::Instant,
) -> std::io::Result<usize> {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    conn.set_read_timeout(Some(left.min(READ_TIMEOUT)))?;
    conn.read(buf)
}

fn read_request(
    conn: &mut TcpStream,
    mut got: Vec<u8>,
    deadline: std::time::Instant,
) -> Result<(String, String, Vec<u8>), String> {
    let mut buf = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if got.len() > MAX_HEAD {
            return Err(format!("a request head is at most {MAX_HEAD} bytes"));
        }
        match read_before(conn, &mut buf, deadline) {
            Ok(0) | Err(_) => return Err("the request ended before its head did".into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&got[..head_end]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("not an HTTP/1.1 request".into()),
    }
    let method = req.method.unwrap_or("").to_string();
    let path = req.path.unwrap_or("").to_string();
    let length = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| "Content-Length: a number".to_string())
        })
        .transpose()?
        .unwrap_or(0);
    if req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err("send the body with a Content-Length".into());
    }
    if length > MAX_BODY {
        return Err(format!("a body is at most {MAX_BODY} bytes"));
    }
    let mut body = got[head_end..].to_vec();
    while body.len() < length {
        match read_before(conn, &mut buf, deadline) {
            Ok(0) | Err(_) => return Err("the body ended early".into()),
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    body.truncate(length);
    Ok((method, path, body))
}

fn query<'a>(q: &'a str, key: &str) -> Option<&'a str> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Checks a destination the way an allowlist entry is checked; the name
/// as it is recorded (lower case, no trailing dot).
pub fn checked(host: &str, port: u16) -> Result<String, String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    EgressRequest {
        domains: vec![format!("{host}:{port}")],
        cidrs: Vec::new(),
    }
    .check()
    .map_err(|p| p.join("; "))?;
    if host.contains('*') {
        return Err("ask for one name, not a wildcard".into());
    }
    Ok(host)
}

pub fn route(
    id: &str,
    egress: &Egress,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let (path, q) = path.split_once('?').unwrap_or((path, ""));
    match (method, path) {
        ("GET", "/") => (200, json!({"how": HOW_TO_ASK})),
        ("GET", "/egress-requests") => {
            let host = query(q, "host").unwrap_or("");
            let port = query(q, "port").and_then(|p| p.parse::<u16>().ok());
            let Some(port) = port else {
                return (400, json!({"error": "host=NAME&port=N"}));
            };
            match checked(host, port) {
                Ok(host) => {
                    let status = if egress.allows(&host, port) {
                        "allowed"
                    } else {
                        "not_allowed"
                    };
                    (200, json!({"host": host, "port": port, "status": status}))
                }
                Err(why) => (400, json!({"error": why})),
            }
        }
        ("POST", "/egress-requests") => {
            let ask: AskBody = match serde_json::from_slice(body) {
                Ok(a) => a,
                Err(e) => return (400, json!({"error": format!("{e}; {HOW_TO_ASK}")})),
            };
            let host = match checked(&ask.host, ask.port) {
                Ok(h) => h,
                Err(why) => return (400, json!({"error": why})),
            };
            if ask.reason.chars().count() > MAX_REASON || ask.reason.chars().any(char::is_control) {
                return (
                    400,
                    json!({"error": format!("reason: at most {MAX_REASON} characters, one line")}),
                );
            }
            if egress.allows(&host, ask.port) {
                return (
                    200,
                    json!({"host": host, "port": ask.port, "status": "allowed"}),
                );
            }
            let approval = approval_id(id, &host, ask.port);
            {
                let mut queued = QUEUED.lock().unwrap_or_else(|p| p.into_inner());
                let mine = queued.iter().filter(|a| a.workspace == id).count();
                if mine >= MAX_QUEUED_PER_WORKSPACE || queued.len() >= MAX_QUEUED {
                    return (
                        429,
                        json!({"error": "too many asks at once; ask again in a second"}),
                    );
                }
                queued.push(Ask {
                    workspace: id.to_string(),
                    host: host.clone(),
                    port: ask.port,
                    reason: ask.reason,
                });
            }
            (
                202,
                json!({
                    "id": approval, "host": host, "port": ask.port, "status": "pending",
                    "check": format!("GET http://paddock.internal/egress-requests?host={host}&port={}", ask.port),
                }),
            )
        }
        (_, "/" | "/egress-requests") => (405, json!({"error": "GET or POST"})),
        _ => (404, json!({"error": HOW_TO_ASK})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress() -> Egress {
        EgressRequest {
            domains: vec!["allowed.test".into()],
            cidrs: vec![],
        }
        .check()
        .expect("policy")
    }

    /// A client that sends a byte now and then, each within the per-read
    /// timeout, is cut at the request's deadline.
    #[test]
    fn a_trickled_request_ends_at_its_deadline() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (mut conn, _) = l.accept().expect("accept");
        // A head that never ends, a byte every 100 ms for up to 30 s
        // (until the server lets go): without a deadline the read would
        // last that long.
        let trickle = std::thread::spawn(move || {
            let _ = client.write_all(b"GET /v1/status HTTP/1.1\r\nX: ");
            for _ in 0..300 {
                if client.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_millis(800);
        let got = read_request(&mut conn, Vec::new(), deadline);
        assert!(got.is_err(), "{got:?}");
        assert!(
            std::time::Instant::now() < deadline + READ_TIMEOUT,
            "the request outlived its deadline"
        );
        drop(conn);
        let _ = trickle.join();
    }

    #[test]
    fn an_ask_is_checked_queued_once_per_window_and_bounded() {
        let ask = |host: &str, port: u16, reason: &str| {
            let body = json!({"host": host, "port": port, "reason": reason}).to_string();
            route(
                "ws_req1",
                &egress(),
                "POST",
                "/egress-requests",
                body.as_bytes(),
            )
        };
        let (status, answer) = ask("API.Example.com", 443, "the docs say so");
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["id"], approval_id("ws_req1", "api.example.com", 443));
        assert_eq!(ask("allowed.test", 443, "").0, 200, "already allowed");
        for (host, port, reason) in [
            ("*.example.com", 443, "x"),
            ("-bad-", 443, "x"),
            ("api.example.com", 0, "x"),
            ("api.example.com", 443, "two\nlines"),
        ] {
            assert_eq!(ask(host, port, reason).0, 400, "{host}:{port}");
        }
        let (status, _) = route(
            "ws_req1",
            &egress(),
            "POST",
            "/egress-requests",
            b"{\"host\": 1}",
        );
        assert_eq!(status, 400);
        for n in 0..20 {
            let _ = ask(&format!("n{n}.example.com"), 443, "");
        }
        let asks: Vec<Ask> = take()
            .into_iter()
            .filter(|a| a.workspace == "ws_req1")
            .collect();
        assert_eq!(
            asks.len(),
            MAX_QUEUED_PER_WORKSPACE,
            "bounded per workspace"
        );
        assert_eq!(asks[0].host, "api.example.com");
        assert_eq!(asks[0].reason, "the docs say so");
    }

    #[test]
    fn the_status_of_a_destination_and_what_else_is_said() {
        let (s, a) = route(
            "ws_req2",
            &egress(),
            "GET",
            "/egress-requests?host=allowed.test&port=443",
            b"",
        );
        assert_eq!((s, a["status"].as_str()), (200, Some("allowed")));
        let (s, a) = route(
            "ws_req2",
            &egress(),
            "GET",
            "/egress-requests?host=other.test&port=443",
            b"",
        );
        assert_eq!((s, a["status"].as_str()), (200, Some("not_allowed")));
        assert_eq!(route("ws_req2", &egress(), "GET", "/", b"").0, 200);
        assert_eq!(
            route("ws_req2", &egress(), "DELETE", "/egress-requests", b"").0,
            405
        );
        assert_eq!(route("ws_req2", &egress(), "GET", "/secrets", b"").0, 404);
    }
}
