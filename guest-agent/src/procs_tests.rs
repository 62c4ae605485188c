//! Spawned processes, run for real on the build machine (as its root,
//! without cgroups), driven over socket pairs as the host would.

use super::*;
use paddock_proto::frame::{decode, read_frame_bytes, write_frame};
use paddock_proto::{ExecRequest, Tagged, User};
use std::os::unix::net::UnixStream;
use std::sync::Once;

fn reaper() {
    static START: Once = Once::new();
    START.call_once(|| {
        std::thread::spawn(crate::reaper::run);
    });
}

/// The host's end of a connection whose agent end runs `serve`.
fn connect(serve: impl FnOnce(&Conn) + Send + 'static) -> UnixStream {
    reaper();
    let (host, agent) = UnixStream::pair().expect("pair");
    host.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let conn = Conn::new(File::from(std::os::fd::OwnedFd::from(agent))).expect("conn");
    std::thread::spawn(move || serve(&conn));
    host
}

fn recv(s: &mut UnixStream) -> AgentMsg {
    let body = read_frame_bytes(s).expect("a frame");
    decode(&body, AgentMsg::VARIANTS).expect("decodes")
}

fn request(argv: &[&str], stdin: bool, timeout_ms: Option<u64>) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        env: vec![],
        cwd: Some("/".into()),
        user: User::Root,
        stdin,
        timeout_ms,
    }
}

fn spawn(req: SpawnRequest) -> (UnixStream, u32) {
    let mut s = connect(move |c| {
        let _ = super::spawn(c, req);
    });
    match recv(&mut s) {
        AgentMsg::Started { pid } => (s, pid),
        other => panic!("expected Started, got {other:?}"),
    }
}

/// One operation on its own connection; its answer.
fn op(msg: HostMsg) -> AgentMsg {
    let mut s = connect(move |c| {
        let _ = operate(c, msg);
    });
    recv(&mut s)
}

/// Output until the end: (stdout, stderr, exit).
fn collect(s: &mut UnixStream) -> (String, String, ExitStatus) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match recv(s) {
            AgentMsg::Stdout(d) => out.extend(d),
            AgentMsg::Stderr(d) => err.extend(d),
            AgentMsg::Exited(st) => {
                return (
                    String::from_utf8_lossy(&out).into(),
                    String::from_utf8_lossy(&err).into(),
                    st,
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn listed(pid: u32) -> bool {
    match op(HostMsg::ListProcs) {
        AgentMsg::Procs(p) => p.iter().any(|p| p.pid == pid),
        other => panic!("expected Procs, got {other:?}"),
    }
}

#[test]
fn input_from_another_connection_reaches_stdin_and_output_streams() {
    let (mut s, pid) = spawn(SpawnRequest {
        exec: request(
            &["sh", "-c", "read x; echo got $x; echo oops >&2; cat"],
            true,
            None,
        ),
        tag: None,
        pty: None,
    });
    let to = ProcRef::Pid(pid);
    assert_eq!(
        op(HostMsg::Input {
            to: to.clone(),
            data: b"hello\nrest".to_vec()
        }),
        AgentMsg::Done
    );
    assert_eq!(op(HostMsg::CloseInput(to.clone())), AgentMsg::Done);
    let (out, err, st) = collect(&mut s);
    assert_eq!(out, "got hello\nrest");
    assert_eq!(err, "oops\n");
    assert_eq!(st.code, Some(0));
    // Gone from the table once it ended.
    assert!(!listed(pid));
    assert!(matches!(
        op(HostMsg::Input {
            to,
            data: b"x".to_vec()
        }),
        AgentMsg::Error(ErrorReply {
            kind: ErrorKind::NotFound,
            ..
        })
    ));
}

use paddock_proto::ErrorReply;

#[test]
fn a_process_outlives_its_connection_and_is_found_again_by_tag() {
    let tag = format!("sleeper-{}", std::process::id());
    let (s, pid) = spawn(SpawnRequest {
        exec: request(&["sh", "-c", "echo early; sleep 60"], false, None),
        tag: Some(tag.clone()),
        pty: None,
    });
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
    assert!(listed(pid), "still running after its starter left");
    // A second spawn may not take the same tag.
    let mut dup = connect({
        let tag = tag.clone();
        move |c| {
            let _ = super::spawn(
                c,
                SpawnRequest {
                    exec: request(&["true"], false, None),
                    tag: Some(tag),
                    pty: None,
                },
            );
        }
    });
    assert!(matches!(
        recv(&mut dup),
        AgentMsg::Error(ErrorReply {
            kind: ErrorKind::AlreadyExists,
            ..
        })
    ));
    let mut watcher = connect({
        let tag = tag.clone();
        move |c| {
            let _ = attach(c, &ProcRef::Tag(tag));
        }
    });
    assert_eq!(recv(&mut watcher), AgentMsg::Started { pid });
    assert_eq!(
        op(HostMsg::SignalProc {
            to: ProcRef::Tag(tag),
            signal: libc::SIGKILL
        }),
        AgentMsg::Done
    );
    let (out, _, st) = collect(&mut watcher);
    assert_eq!(out, "", "output before attaching is not replayed");
    assert_eq!(st.signal, Some(libc::SIGKILL));
    assert!(!listed(pid));
}

#[test]
fn a_terminal_has_a_size_that_changes() {
    let (mut s, pid) = spawn(SpawnRequest {
        exec: request(&["sh"], true, None),
        tag: None,
        pty: Some(PtySize { cols: 80, rows: 24 }),
    });
    let to = ProcRef::Pid(pid);
    let input = |text: &str| {
        op(HostMsg::Input {
            to: to.clone(),
            data: text.as_bytes().to_vec(),
        })
    };
    assert_eq!(input("stty size\n"), AgentMsg::Done);
    let mut screen = String::new();
    while !screen.contains("24 80") {
        match recv(&mut s) {
            AgentMsg::Stdout(d) => screen.push_str(&String::from_utf8_lossy(&d)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        op(HostMsg::Resize {
            to: to.clone(),
            size: PtySize {
                cols: 100,
                rows: 30
            }
        }),
        AgentMsg::Done
    );
    assert!(matches!(
        op(HostMsg::CloseInput(to.clone())),
        AgentMsg::Error(ErrorReply {
            kind: ErrorKind::InvalidRequest,
            ..
        })
    ));
    assert_eq!(input("stty size; exit 3\n"), AgentMsg::Done);
    let (out, err, st) = collect(&mut s);
    assert!(out.contains("30 100"), "{out:?}");
    assert_eq!(err, "", "a terminal has one stream");
    assert_eq!(st.code, Some(3));
}

#[test]
fn its_own_timeout_ends_it_whoever_watches() {
    let (s, pid) = spawn(SpawnRequest {
        exec: request(&["sleep", "60"], false, Some(200)),
        tag: None,
        pty: None,
    });
    drop(s);
    let mut watcher = connect(move |c| {
        let _ = attach(c, &ProcRef::Pid(pid));
    });
    match recv(&mut watcher) {
        AgentMsg::Started { pid: p } => assert_eq!(p, pid),
        // Ended before the attach: then it is not found.
        AgentMsg::Error(e) => assert_eq!(e.kind, ErrorKind::NotFound),
        other => panic!("unexpected {other:?}"),
    }
    let mut waited = 0;
    while listed(pid) {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
        assert!(waited < 400, "never timed out");
    }
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let refused = |req: SpawnRequest| {
        let mut s = connect(move |c| {
            let _ = super::spawn(c, req);
        });
        match recv(&mut s) {
            AgentMsg::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    };
    let e = refused(SpawnRequest {
        exec: request(&["true"], false, None),
        tag: Some(String::new()),
        pty: None,
    });
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    let e = refused(SpawnRequest {
        exec: request(&["true"], false, None),
        tag: None,
        pty: Some(PtySize { cols: 0, rows: 24 }),
    });
    assert!(e.message.contains("terminal size"), "{}", e.message);
    let e = refused(SpawnRequest {
        exec: request(&["/no/such/program"], false, None),
        tag: None,
        pty: None,
    });
    assert_eq!(e.kind, ErrorKind::NotFound);
    let (mut s, pid) = spawn(SpawnRequest {
        exec: request(&["sleep", "60"], false, None),
        tag: None,
        pty: None,
    });
    let to = ProcRef::Pid(pid);
    for msg in [
        HostMsg::Resize {
            to: to.clone(),
            size: PtySize { cols: 10, rows: 10 },
        },
        HostMsg::SignalProc {
            to: to.clone(),
            signal: 99,
        },
        HostMsg::Input {
            to: to.clone(),
            data: b"x".to_vec(),
        },
    ] {
        assert!(
            matches!(
                op(msg),
                AgentMsg::Error(ErrorReply {
                    kind: ErrorKind::InvalidRequest,
                    ..
                })
            ),
            "refused"
        );
    }
    // The watching connection takes signals too.
    write_frame(&mut s, &HostMsg::Signal(libc::SIGTERM)).expect("send");
    let (_, _, st) = collect(&mut s);
    assert_eq!(st.signal, Some(libc::SIGTERM));
}

#[test]
fn input_a_process_never_reads_fails_in_time_and_leaves_the_rest_usable() {
    let (s, pid) = spawn(SpawnRequest {
        exec: request(&["sleep", "60"], true, None),
        tag: None,
        pty: None,
    });
    let to = ProcRef::Pid(pid);
    // More than a pipe holds: the write cannot finish.
    match op(HostMsg::Input {
        to: to.clone(),
        data: vec![b'x'; 1 << 20],
    }) {
        AgentMsg::Error(e) => assert!(e.message.contains("reads no more"), "{}", e.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Closing and signalling still answer at once.
    assert_eq!(op(HostMsg::CloseInput(to.clone())), AgentMsg::Done);
    assert_eq!(
        op(HostMsg::SignalProc {
            to,
            signal: libc::SIGKILL
        }),
        AgentMsg::Done
    );
    drop(s);
}

#[test]
fn a_watcher_that_stops_reading_is_dropped_and_the_others_see_it_all() {
    let (mut s, pid) = spawn(SpawnRequest {
        exec: request(
            &["sh", "-c", "read go; head -c 4000000 /dev/zero; echo done"],
            true,
            None,
        ),
        tag: None,
        pty: None,
    });
    // A second watcher that never reads.
    let mut stuck = connect(move |c| {
        let _ = attach(c, &ProcRef::Pid(pid));
    });
    assert_eq!(recv(&mut stuck), AgentMsg::Started { pid });
    assert_eq!(
        op(HostMsg::Input {
            to: ProcRef::Pid(pid),
            data: b"go\n".to_vec()
        }),
        AgentMsg::Done
    );
    let (out, _, st) = collect(&mut s);
    assert_eq!(out.len(), 4_000_000 + 5);
    assert_eq!(st.code, Some(0));
    drop(stuck);
}
