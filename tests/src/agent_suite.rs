//! Checks of the guest agent, run from the L1 (or the test host) against a
//! live workspace VM through the client library. Each check prints
//! `key=value` facts; the Rust tests on the build host judge them.

use crate::pattern::{hex, pattern_sha256, Pattern};
use paddock_agent_client::{AgentClient, ClientError, Output};
use paddock_proto::{AgentMsg, ErrorKind, ExecRequest, HostMsg, User, MAX_FRAME};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn fact(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

fn req(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        cwd: None,
        user: User::Root,
        stdin: false,
        timeout_ms: None,
    }
}

fn status_text(r: &Result<paddock_proto::ExitStatus, ClientError>) -> String {
    match r {
        Ok(s) => format!(
            "code:{},signal:{},timed_out:{}",
            s.code.map_or("-".into(), |c| c.to_string()),
            s.signal.map_or("-".into(), |c| c.to_string()),
            s.timed_out
        ),
        Err(e) => format!("error:{e}"),
    }
}

/// A reader producing `len` bytes of the pattern for `seed`.
struct PatternReader {
    p: Pattern,
    left: u64,
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Multiples of 8 keep the stream identical to one long fill().
        let n = (buf.len() as u64 / 8 * 8).min(self.left) as usize;
        self.p.fill(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

struct HashWriter(Sha256, u64);
impl Write for HashWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        self.1 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn basics(c: &AgentClient) {
    let (st, out, _) = c
        .exec_collect(req(&["python3", "-c", "print(6*7)"]))
        .unwrap_or_else(|e| (failed(&e), Vec::new(), Vec::new()));
    fact("python_stdout", String::from_utf8_lossy(&out).trim());
    fact("python_status", status_text(&Ok(st)));
    fact(
        "exit3_status",
        status_text(&c.exec(req(&["sh", "-c", "exit 3"]), None, |_| {})),
    );
    fact(
        "sigkill_status",
        status_text(&c.exec(req(&["sh", "-c", "kill -9 $$"]), None, |_| {})),
    );
    let missing = c.exec(req(&["/no/such/binary"]), None, |_| {});
    fact("missing_binary", error_kind(&missing));
}

fn failed(e: &ClientError) -> paddock_proto::ExitStatus {
    eprintln!("agent-suite: {e}");
    paddock_proto::ExitStatus {
        code: None,
        signal: None,
        timed_out: false,
    }
}

fn error_kind<T>(r: &Result<T, ClientError>) -> String {
    match r {
        Err(ClientError::Agent(e)) => format!("{:?}", e.kind),
        Err(e) => format!("client-error:{e}"),
        Ok(_) => "ok".into(),
    }
}

fn stdin_stream(c: &AgentClient) {
    const LEN: u64 = 50 << 20;
    let mut r = req(&["sha256sum"]);
    r.stdin = true;
    let mut out = Vec::new();
    let started = Instant::now();
    let st = c.exec(
        r,
        Some(Box::new(PatternReader {
            p: Pattern::new(11),
            left: LEN,
        })),
        |o| {
            if let Output::Stdout(d) = o {
                out.extend_from_slice(d)
            }
        },
    );
    fact("stdin50_status", status_text(&st));
    let got = String::from_utf8_lossy(&out);
    fact(
        "stdin50_match",
        got.split_whitespace().next() == Some(pattern_sha256(11, LEN).as_str()),
    );
    fact("stdin50_ms", started.elapsed().as_millis());
}

fn stdout_stream(c: &AgentClient) {
    // 320 chunks of 64 KiB on stdout (20 MiB), a numbered line on stderr after each.
    let script = "import sys\nblock = bytes(range(256)) * 256\nfor i in range(320):\n    sys.stdout.buffer.write(block)\n    sys.stdout.buffer.flush()\n    sys.stderr.write('e%d\\n' % i)\n    sys.stderr.flush()\n";
    let mut h = Sha256::new();
    let mut len = 0u64;
    let mut err = Vec::new();
    let mut switches = 0u32;
    let mut last_out = true;
    let st = c.exec(req(&["python3", "-c", script]), None, |o| match o {
        Output::Stdout(d) => {
            h.update(d);
            len += d.len() as u64;
            if !last_out {
                switches += 1;
            }
            last_out = true;
        }
        Output::Stderr(d) => {
            err.extend_from_slice(d);
            last_out = false;
        }
    });
    let mut want = Sha256::new();
    let block: Vec<u8> = (0..=255u8).collect::<Vec<_>>().repeat(256);
    for _ in 0..320 {
        want.update(&block);
    }
    let lines: Vec<String> = String::from_utf8_lossy(&err)
        .lines()
        .map(str::to_string)
        .collect();
    let in_order =
        lines.len() == 320 && lines.iter().enumerate().all(|(i, l)| *l == format!("e{i}"));
    fact("stdout20_status", status_text(&st));
    fact("stdout20_len", len);
    fact(
        "stdout20_match",
        hex(&h.finalize()) == hex(&want.finalize()),
    );
    fact("stderr_lines_in_order", in_order);
    // Streams arrive interleaved, not stdout first and stderr at the end.
    fact("stream_interleaved", switches > 10);
}

fn files(c: &AgentClient) {
    const LEN: u64 = 100 << 20;
    let path = "/home/agent/big.bin";
    let started = Instant::now();
    let up = c.write_file(
        path,
        0o640,
        PatternReader {
            p: Pattern::new(21),
            left: LEN,
        },
    );
    fact("upload100", error_kind(&up));
    let mut w = HashWriter(Sha256::new(), 0);
    let down = c.read_file(path, &mut w);
    fact("download100", error_kind(&down));
    fact("roundtrip100_len", w.1);
    fact(
        "roundtrip100_match",
        hex(&w.0.finalize()) == pattern_sha256(21, LEN),
    );
    fact("roundtrip100_ms", started.elapsed().as_millis());
    match c.stat(path) {
        Ok(s) => fact("uploaded_mode", format!("{:o}", s.mode)),
        Err(e) => fact("uploaded_mode", format!("error:{e}")),
    }
    fact(
        "mkdir",
        error_kind(&c.make_dir("/home/agent/d1/d2", 0o755, true)),
    );
    fact(
        "list_has_d1",
        c.list_dir("/home/agent")
            .map(|l| l.iter().any(|e| e.name == "d1"))
            .unwrap_or(false),
    );
    fact("remove_dir", error_kind(&c.remove("/home/agent/d1", true)));
    fact("stat_removed", error_kind(&c.stat("/home/agent/d1")));
    fact("relative_path", error_kind(&c.stat("etc/passwd")));
    fact(
        "read_missing",
        error_kind(&c.read_file("/no/such/file", std::io::sink())),
    );
}

/// How many `sleep` processes run in the workspace (the probe commands use sleep).
fn sleeps_running(c: &AgentClient) -> String {
    let probe = req(&["sh", "-c", "ps -eo comm | grep -c '^sleep$' || true"]);
    let (_, out, _) = c
        .exec_collect(probe)
        .unwrap_or_else(|e| (failed(&e), Vec::new(), Vec::new()));
    String::from_utf8_lossy(&out).trim().to_string()
}

fn timeouts_and_concurrency(c: &AgentClient) {
    let mut r = req(&["sh", "-c", "sleep 600 & sleep 600"]);
    r.timeout_ms = Some(2000);
    let started = Instant::now();
    let st = c.exec(r, None, |_| {});
    fact("timeout_status", status_text(&st));
    fact("timeout_elapsed_ms", started.elapsed().as_millis());
    std::thread::sleep(Duration::from_millis(300));
    fact("sleeps_left_after_timeout", sleeps_running(c));

    let handles: Vec<_> = (0..20u32)
        .map(|i| {
            let c = AgentClient::new(c_path(c));
            std::thread::spawn(move || {
                let r = req(&["sh", "-c", &format!("sleep 0.2; echo $(({i} * {i}))")]);
                match c.exec_collect(r) {
                    Ok((st, out, _)) => {
                        st.code == Some(0)
                            && String::from_utf8_lossy(&out).trim() == (i * i).to_string()
                    }
                    Err(_) => false,
                }
            })
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(false))
        .filter(|x| *x)
        .count();
    fact("concurrent_ok", ok);
}

fn c_path(c: &AgentClient) -> std::path::PathBuf {
    c.socket_path().to_path_buf()
}

fn signals(c: &AgentClient) {
    // SIGTERM sent by the host while the command runs.
    let result = (|| -> Result<String, ClientError> {
        let mut s = c.session()?;
        s.send(&HostMsg::Exec(req(&["sleep", "30"])))?;
        match s.recv()? {
            AgentMsg::Started { .. } => {}
            other => return Ok(format!("unexpected:{other:?}")),
        }
        s.send(&HostMsg::Signal(15))?;
        loop {
            match s.recv()? {
                AgentMsg::Exited(st) => return Ok(status_text(&Ok(st))),
                AgentMsg::Stdout(_) | AgentMsg::Stderr(_) => {}
                other => return Ok(format!("unexpected:{other:?}")),
            }
        }
    })();
    fact(
        "sigterm_status",
        result.unwrap_or_else(|e| format!("error:{e}")),
    );
}

fn disconnect_kills(c: &AgentClient) {
    // Start a long command, then vanish without a word.
    if let Ok(mut s) = c.session() {
        let _ = s.send(&HostMsg::Exec(req(&["sh", "-c", "sleep 300 & sleep 300"])));
        let _ = s.recv();
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    fact("sleeps_left_after_disconnect", sleeps_running(c));
}

fn users_and_secrets(c: &AgentClient) {
    let mut r = req(&[
        "sh",
        "-c",
        "id -u; touch /root/owned && echo wrote || echo refused",
    ]);
    r.user = User::Agent;
    let (st, out, _) = c
        .exec_collect(r)
        .unwrap_or_else(|e| (failed(&e), Vec::new(), Vec::new()));
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text.lines().collect();
    fact("agent_uid", lines.first().unwrap_or(&""));
    fact("agent_write_root", lines.get(1).unwrap_or(&""));
    fact("agent_exec_status", status_text(&Ok(st)));
    let mut r = req(&["sh", "-c", "echo \"$PADDOCK_TEST_SECRET\""]);
    r.env = vec![("PADDOCK_TEST_SECRET".into(), "s3cr3t-value-7f9a".into())];
    let (_, out, _) = c
        .exec_collect(r)
        .unwrap_or_else(|e| (failed(&e), Vec::new(), Vec::new()));
    fact(
        "secret_seen_by_process",
        String::from_utf8_lossy(&out).trim() == "s3cr3t-value-7f9a",
    );
}

/// File operations as the agent user (issue 14, item 9): the guest's
/// kernel checks them as that user, so a files-only token reaches neither
/// root's files nor other processes' environments, and plants no setuid
/// binary; as root they still can.
fn files_as_users(c: &AgentClient) {
    let sock = c.socket_path().to_path_buf();
    let agent = AgentClient::new(&sock)
        .with_timeout(Duration::from_secs(60))
        .as_user(User::Agent);
    let root = AgentClient::new(&sock)
        .with_timeout(Duration::from_secs(60))
        .as_user(User::Root);
    // A root-owned secret and a symlink to it the agent user planted.
    let mut r = req(&[
        "sh",
        "-c",
        "umask 077; echo root-only > /root/secret.txt; ln -sf /root/secret.txt /tmp/link; chown -h agent /tmp/link",
    ]);
    r.user = User::Root;
    let _ = c.exec_collect(r);
    let mut sink = Vec::new();
    fact(
        "as_agent_read_environ",
        error_kind(&agent.read_file("/proc/1/environ", &mut sink)),
    );
    fact(
        "as_agent_read_root_file",
        error_kind(&agent.read_file("/root/secret.txt", &mut sink)),
    );
    fact(
        "as_agent_read_via_symlink",
        error_kind(&agent.read_file("/tmp/link", &mut sink)),
    );
    fact(
        "as_agent_write_etc",
        error_kind(&agent.write_file("/etc/planted", 0o644, &b"x"[..])),
    );
    fact(
        "as_agent_setuid",
        error_kind(&agent.write_file("/tmp/suid", 0o4755, &b"x"[..])),
    );
    fact(
        "as_agent_write_tmp",
        error_kind(&agent.write_file("/tmp/mine.txt", 0o600, &b"mine"[..])),
    );
    fact(
        "as_agent_owner",
        match agent.stat("/tmp/mine.txt") {
            Ok(s) => s.uid.to_string(),
            Err(e) => format!("error:{e}"),
        },
    );
    fact(
        "as_root_setuid",
        error_kind(&root.write_file("/tmp/suid", 0o4755, &b"x"[..])),
    );
    fact(
        "as_root_read_root_file",
        error_kind(&root.read_file("/root/secret.txt", &mut sink)),
    );
    match c.health() {
        Ok(_) => fact("health_after_users", "ok"),
        Err(e) => fact("health_after_users", format!("error:{e}")),
    }
}

/// Speaks badly on purpose; the agent must answer and keep serving.
fn hostile(c: &AgentClient) {
    let raw = |bytes: &[u8]| -> String {
        let Ok(mut s) = c.session() else {
            return "no-session".into();
        };
        if s.stream().write_all(bytes).is_err() {
            return "write-failed".into();
        }
        match s.recv() {
            Ok(AgentMsg::Error(e)) => format!("{:?}", e.kind),
            Ok(other) => format!("unexpected:{other:?}"),
            Err(e) => format!("client-error:{e}"),
        }
    };
    let mut garbage = 3u32.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[0x01, 0xff, 0xff]);
    fact("malformed_frame", raw(&garbage));
    fact(
        "oversized_frame",
        raw(&((MAX_FRAME as u32) + 1).to_le_bytes()),
    );
    let mut unknown = 1u32.to_le_bytes().to_vec();
    unknown.push(99);
    fact("unknown_operation", raw(&unknown));
    // A version the agent doesn't speak.
    let version = match c.connect_raw() {
        Ok(mut s) => {
            let _ = paddock_proto::write_frame(&mut s, &HostMsg::Hello { protocol: 999 });
            match paddock_proto::read_frame::<AgentMsg, _>(&mut s) {
                Ok(AgentMsg::Error(e)) if e.kind == ErrorKind::UnsupportedVersion => {
                    "UnsupportedVersion".to_string()
                }
                other => format!("{other:?}"),
            }
        }
        Err(e) => format!("client-error:{e}"),
    };
    fact("bad_version", version);
    match c.health() {
        Ok(h) => fact("health_after_abuse", format!("ok:{}", h.agent_version)),
        Err(e) => fact("health_after_abuse", format!("error:{e}")),
    }
}

pub fn run_suite(sock: &str) {
    let c = AgentClient::new(sock).with_timeout(Duration::from_secs(120));
    basics(&c);
    users_and_secrets(&c);
    hostile(&c);
    stdin_stream(&c);
    stdout_stream(&c);
    files(&c);
    files_as_users(&c);
    timeouts_and_concurrency(&c);
    signals(&c);
    disconnect_kills(&c);
    fact("suite_done", 1);
}
