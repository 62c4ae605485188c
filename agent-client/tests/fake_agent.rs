//! The client against a scripted fake of the VMM socket and agent: the
//! vsock CONNECT handshake, Hello, and how each reply shape is handled.

use paddock_agent_client::{AgentClient, ClientError, Output, ReadyListener};
use paddock_proto::frame::{read_frame, write_frame};
use paddock_proto::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

fn temp_sock(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("paddock-client-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Serves one connection with `script` after the CONNECT and Hello steps.
fn fake(
    path: &PathBuf,
    connect_reply: &'static str,
    script: impl FnOnce(&mut UnixStream) + Send + 'static,
) {
    let l = UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut line = String::new();
        BufReader::new(s.try_clone().expect("clone"))
            .read_line(&mut line)
            .expect("line");
        assert_eq!(line, format!("CONNECT {AGENT_PORT}\n"));
        s.write_all(connect_reply.as_bytes()).expect("reply");
        if !connect_reply.starts_with("OK") {
            return;
        }
        let hello: HostMsg = read_frame(&mut s).expect("hello");
        assert_eq!(
            hello,
            HostMsg::Hello {
                protocol: PROTOCOL_VERSION
            }
        );
        write_frame(
            &mut s,
            &AgentMsg::HelloOk {
                protocol: PROTOCOL_VERSION,
                agent_version: "fake".into(),
            },
        )
        .expect("hellook");
        script(&mut s);
    });
}

#[test]
fn exec_streams_output_and_returns_the_status() {
    let p = temp_sock("exec");
    fake(&p, "OK 1073741824\n", |s| {
        let req: HostMsg = read_frame(s).expect("req");
        assert!(matches!(req, HostMsg::Exec(ref r) if r.argv == ["echo", "hi"]));
        write_frame(s, &AgentMsg::Started { pid: 7 }).expect("w");
        write_frame(s, &AgentMsg::Stdout(b"hi\n".to_vec())).expect("w");
        write_frame(s, &AgentMsg::Stderr(b"warn\n".to_vec())).expect("w");
        write_frame(
            s,
            &AgentMsg::Exited(ExitStatus {
                code: Some(0),
                signal: None,
                timed_out: false,
            }),
        )
        .expect("w");
    });
    let c = AgentClient::new(&p).with_timeout(Duration::from_secs(5));
    let mut seen = Vec::new();
    let st = c
        .exec(
            ExecRequest {
                argv: vec!["echo".into(), "hi".into()],
                env: vec![],
                cwd: None,
                user: User::Agent,
                stdin: false,
                timeout_ms: None,
            },
            None,
            |o| {
                seen.push(match o {
                    Output::Stdout(d) => format!("out:{}", String::from_utf8_lossy(d)),
                    Output::Stderr(d) => format!("err:{}", String::from_utf8_lossy(d)),
                })
            },
        )
        .expect("exec");
    assert_eq!(st.code, Some(0));
    assert_eq!(seen, vec!["out:hi\n", "err:warn\n"]);
    let _ = std::fs::remove_file(&p);
}

#[test]
fn agent_errors_and_refused_ports_are_typed() {
    let p = temp_sock("err");
    fake(&p, "OK 5\n", |s| {
        let _: HostMsg = read_frame(s).expect("req");
        write_frame(
            s,
            &AgentMsg::Error(ErrorReply {
                kind: ErrorKind::NotFound,
                message: "nope".into(),
            }),
        )
        .expect("w");
    });
    let c = AgentClient::new(&p).with_timeout(Duration::from_secs(5));
    match c.stat("/missing") {
        Err(ClientError::Agent(e)) => assert_eq!(e.kind, ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_file(&p);

    let p = temp_sock("refused");
    fake(&p, "ERR no listener\n", |_| {});
    let c = AgentClient::new(&p).with_timeout(Duration::from_secs(5));
    assert!(matches!(c.health(), Err(ClientError::VsockRefused { .. })));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn a_silent_agent_times_out() {
    let p = temp_sock("silent");
    fake(&p, "OK 5\n", |s| {
        let _: HostMsg = read_frame(s).expect("req");
        std::thread::sleep(Duration::from_secs(2));
    });
    let c = AgentClient::new(&p).with_timeout(Duration::from_millis(200));
    assert!(matches!(c.health(), Err(ClientError::Timeout(_))));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn readiness_is_received_and_waiting_times_out() {
    let vm = temp_sock("ready");
    let l = ReadyListener::bind(&vm).expect("bind");
    let ready_path = paddock_agent_client::ready_socket_path(&vm);
    std::thread::spawn(move || {
        let mut s = UnixStream::connect(ready_path).expect("connect");
        write_frame(
            &mut s,
            &AgentMsg::Ready(ReadyInfo {
                agent_version: "x".into(),
                protocol: 1,
                uptime_ms: 5,
            }),
        )
        .expect("w");
    });
    assert_eq!(l.wait(Duration::from_secs(5)).expect("ready").uptime_ms, 5);
    let _ = std::fs::remove_file(paddock_agent_client::ready_socket_path(&vm));

    let vm2 = temp_sock("never");
    let l2 = ReadyListener::bind(&vm2).expect("bind");
    assert!(matches!(
        l2.wait(Duration::from_millis(100)),
        Err(ClientError::Timeout(_))
    ));
    let _ = std::fs::remove_file(paddock_agent_client::ready_socket_path(&vm2));
}

/// A guest that connects for readiness and then trickles its report a byte
/// at a time must not hold the host past REPORT_TIMEOUT in all (each read
/// alone would be in time).
#[test]
fn a_trickled_readiness_report_is_bounded_in_total() {
    let vm = temp_sock("trickle");
    let l = ReadyListener::bind(&vm).expect("bind");
    let ready_path = paddock_agent_client::ready_socket_path(&vm);
    std::thread::spawn(move || {
        let mut s = UnixStream::connect(ready_path).expect("connect");
        // A frame length far bigger than anything sent: the body never ends.
        let _ = s.write_all(&1000u32.to_le_bytes());
        for _ in 0..600 {
            if s.write_all(&[0]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(l.wait(Duration::from_secs(5)).is_err());
    });
    let limit = paddock_agent_client::REPORT_TIMEOUT + Duration::from_secs(30);
    assert_eq!(
        rx.recv_timeout(limit).ok(),
        Some(true),
        "the wait must end with an error, not hang"
    );
    let _ = std::fs::remove_file(paddock_agent_client::ready_socket_path(&vm));
}
