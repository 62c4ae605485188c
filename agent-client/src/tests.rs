//! `trust_ca` against a scripted fake of the VMM socket and agent (the
//! other calls are covered by tests/fake_agent.rs).

use super::*;
use paddock_proto::frame::read_frame;
use paddock_proto::{ErrorKind, ErrorReply};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;

/// Serves one connection: the CONNECT and Hello steps, then reads one
/// request, hands it to `check` and sends `answer`.
fn fake(name: &str, check: fn(HostMsg), answer: AgentMsg) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "paddock-client-unit-{name}-{}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).expect("bind");
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut line = String::new();
        BufReader::new(s.try_clone().expect("clone"))
            .read_line(&mut line)
            .expect("line");
        assert_eq!(line, format!("CONNECT {AGENT_PORT}\n"));
        s.write_all(b"OK 1\n").expect("reply");
        let hello: HostMsg = read_frame(&mut s).expect("hello");
        assert!(matches!(hello, HostMsg::Hello { .. }));
        let ok = AgentMsg::HelloOk {
            protocol: PROTOCOL_VERSION,
            agent_version: "fake".into(),
        };
        write_frame(&mut s, &ok).expect("hellook");
        check(read_frame(&mut s).expect("request"));
        write_frame(&mut s, &answer).expect("answer");
    });
    path
}

const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

#[test]
fn trust_ca_sends_the_pem_and_takes_done() {
    let check = |m| assert_eq!(m, HostMsg::TrustCa { pem: PEM.into() });
    let path = fake("trust-ok", check, AgentMsg::Done);
    let client = AgentClient::new(&path).with_timeout(Duration::from_secs(5));
    client.trust_ca(PEM).expect("trusted");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn trust_ca_refused_is_an_agent_error() {
    let check = |m| assert!(matches!(m, HostMsg::TrustCa { .. }));
    let refusal = AgentMsg::Error(ErrorReply {
        kind: ErrorKind::InvalidRequest,
        message: "CA: no certificate".into(),
    });
    let path = fake("trust-refused", check, refusal);
    let client = AgentClient::new(&path).with_timeout(Duration::from_secs(5));
    match client.trust_ca("junk") {
        Err(ClientError::Agent(e)) => assert_eq!(e.kind, ErrorKind::InvalidRequest),
        other => panic!("expected the agent's refusal, got {other:?}"),
    }
    let _ = std::fs::remove_file(&path);
}
