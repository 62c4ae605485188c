//! One exec session: start the command, stream its output as it comes,
//! feed it stdin and signals from the host, and report how it ended.

use crate::cgroup::ExecCgroup;
use crate::conn::{Conn, ConnError};
use crate::pump::pump;
use crate::reaper::{self, Ended};
use crate::users;
use paddock_proto::{AgentMsg, ErrorKind, ExecRequest, ExitStatus, HostMsg};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub static RUNNING: AtomicU32 = AtomicU32::new(0);

/// How long output still arriving after the command exited is waited for
/// (from processes it left running that hold its stdout).
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

pub fn validate(req: &ExecRequest) -> Result<(), String> {
    if req.argv.is_empty() || req.argv[0].is_empty() {
        return Err("argv is empty".into());
    }
    let nul = |s: &str| s.contains('\0');
    if req.argv.iter().any(|a| nul(a)) {
        return Err("argv contains a NUL byte".into());
    }
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || nul(k) || nul(v) {
            return Err(format!("invalid environment variable name {k:?}"));
        }
    }
    if let Some(cwd) = &req.cwd {
        if !cwd.starts_with('/') || nul(cwd) {
            return Err("cwd must be an absolute path".into());
        }
    }
    Ok(())
}

/// A command's whole environment, in order: where a name comes twice the
/// later one wins (as `Command::envs` applies it), so the request's own
/// variables, last, override the defaults before them.
pub fn command_env<'a>(
    account: &'a users::Account,
    terminal: bool,
    trust_ca: bool,
    requested: &'a [(String, String)],
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOME", account.home.as_str()),
        ("USER", account.name.as_str()),
        ("LOGNAME", account.name.as_str()),
        ("LANG", "C.UTF-8"),
    ];
    if terminal {
        env.push(("TERM", "xterm-256color"));
    }
    if trust_ca {
        env.extend(crate::trust::ENV);
    }
    env.extend(requested.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    env
}

/// A command started for the host.
pub struct Launched {
    pub child: std::process::Child,
    /// Its exit, from the reaper.
    pub ended: std::sync::mpsc::Receiver<Ended>,
    pub pid: i32,
    /// Kills it and everything it started (its process group and its
    /// cgroup).
    pub kill_tree: Arc<dyn Fn() + Send + Sync>,
    /// Its cgroup, removed when this is dropped (after it ended).
    pub cgroup: Option<ExecCgroup>,
}

/// How a command's standard streams are connected.
pub enum Stdio3 {
    /// stdout and stderr piped; stdin piped when `stdin` is set, else
    /// /dev/null.
    Pipes,
    /// All three on this terminal (the slave side of a pty), which becomes
    /// the command's controlling terminal.
    Terminal(std::os::fd::OwnedFd),
}

/// Starts `req` as its user, in its own session and cgroup.
pub fn launch(req: &ExecRequest, stdio: Stdio3) -> Result<Launched, (ErrorKind, String)> {
    validate(req).map_err(|m| (ErrorKind::InvalidRequest, m))?;
    let Some(account) = users::lookup(req.user) else {
        return Err((
            ErrorKind::InvalidRequest,
            format!("no such user {:?} in this workspace", req.user),
        ));
    };
    let cgroup = ExecCgroup::create();
    let mut cmd = Command::new(&req.argv[0]);
    let terminal = matches!(stdio, Stdio3::Terminal(_));
    cmd.args(&req.argv[1..])
        .env_clear()
        .envs(command_env(
            &account,
            terminal,
            crate::trust::installed(),
            &req.env,
        ))
        .current_dir(req.cwd.as_deref().unwrap_or(&account.home));
    match stdio {
        Stdio3::Pipes => {
            cmd.stdin(if req.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        }
        Stdio3::Terminal(slave) => {
            let dup = |fd: &std::os::fd::OwnedFd| {
                fd.try_clone()
                    .map(Stdio::from)
                    .map_err(|e| (ErrorKind::SpawnFailed, format!("terminal: {e}")))
            };
            cmd.stdin(dup(&slave)?)
                .stdout(dup(&slave)?)
                .stderr(Stdio::from(slave));
        }
    }
    let (uid, gid) = (account.uid, account.gid);
    let procs_fd = cgroup.as_ref().and_then(ExecCgroup::procs_fd);
    // SAFETY: the closure only makes async-signal-safe system calls
    // (write, setsid, ioctl, setgroups, setgid, setuid) on values copied in
    // before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = procs_fd {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The new session's controlling terminal: its stdin.
            if terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if uid != 0 || gid != 0 {
                let groups = [gid];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let spawned = reaper::spawn_watched(|| {
        cmd.spawn().map(|child| {
            let pid = child.id() as i32;
            (child, pid)
        })
    });
    // The parent's copies of the terminal's slave side close with `cmd`.
    drop(cmd);
    let (child, ended) = spawned.map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::SpawnFailed,
        };
        (kind, format!("cannot start {:?}: {e}", req.argv[0]))
    })?;
    let pid = child.id() as i32;
    let cg = cgroup.as_ref().map(ExecCgroup::kill_file);
    let kill_tree = Arc::new(move || {
        // SAFETY: kill on our child's process group; harmless if gone.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        if let Some(p) = &cg {
            let _ = std::fs::write(p, b"1");
        }
    });
    Ok(Launched {
        child,
        ended,
        pid,
        kill_tree,
        cgroup,
    })
}

pub fn run(conn: &Conn, req: ExecRequest) -> Result<(), ConnError> {
    let launched = match launch(&req, Stdio3::Pipes) {
        Ok(l) => l,
        Err((kind, message)) => return conn.error(kind, message),
    };
    let Launched {
        mut child,
        ended,
        pid,
        kill_tree,
        cgroup: _cgroup,
    } = launched;
    RUNNING.fetch_add(1, Ordering::SeqCst);
    let _running = scopeguard(|| {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    });
    conn.send(&AgentMsg::Started { pid: pid as u32 })?;

    let out = {
        let conn = conn.clone();
        pump(child.stdout.take(), move |d| {
            conn.send(&AgentMsg::Stdout(d)).is_ok()
        })
    };
    let err = {
        let conn = conn.clone();
        pump(child.stderr.take(), move |d| {
            conn.send(&AgentMsg::Stderr(d)).is_ok()
        })
    };
    let stdin = child.stdin.take();
    let host_gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let finished = finished.clone();
        // Host messages while the command runs: stdin, signals, or the host leaving.
        let conn = conn.clone();
        let kill = kill_tree.clone();
        let gone = host_gone.clone();
        std::thread::spawn(move || host_input(conn, stdin, pid, kill, gone, finished));
    }

    let (status, timed_out) = wait(&ended, req.timeout_ms, &*kill_tree);
    // Output written just before exit is still in the pipes; take it, but
    // don't wait forever on background processes that kept them open.
    out.finish(DRAIN_AFTER_EXIT);
    err.finish(DRAIN_AFTER_EXIT);
    // From here the pid may be reused: the input thread must not signal it.
    finished.store(true, Ordering::SeqCst);
    if host_gone.load(Ordering::SeqCst) {
        return Err(ConnError::Closed);
    }
    let exit = exit_status(status, timed_out);
    conn.send(&AgentMsg::Exited(exit))
}

/// Waits for a command's end, killing it (and all it started) once
/// `timeout_ms` has passed. Says whether it was killed for that.
pub fn wait(
    ended: &std::sync::mpsc::Receiver<Ended>,
    timeout_ms: Option<u64>,
    kill_tree: &dyn Fn(),
) -> (Ended, bool) {
    let gone = Ended::Signal(libc::SIGKILL);
    match timeout_ms.map(Duration::from_millis) {
        Some(t) => match ended.recv_timeout(t) {
            Ok(s) => (s, false),
            Err(_) => {
                kill_tree();
                (ended.recv().unwrap_or(gone), true)
            }
        },
        None => (ended.recv().unwrap_or(gone), false),
    }
}

pub fn exit_status(ended: Ended, timed_out: bool) -> ExitStatus {
    match ended {
        Ended::Code(c) => ExitStatus {
            code: Some(c),
            signal: None,
            timed_out,
        },
        Ended::Signal(s) => ExitStatus {
            code: None,
            signal: Some(s),
            timed_out,
        },
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

fn host_input(
    conn: Conn,
    mut stdin: Option<std::process::ChildStdin>,
    pid: i32,
    kill: Arc<dyn Fn() + Send + Sync>,
    gone: Arc<std::sync::atomic::AtomicBool>,
    finished: Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        if finished.load(Ordering::SeqCst) {
            return;
        }
        match conn.recv() {
            Ok(HostMsg::Stdin(data)) => {
                if let Some(s) = stdin.as_mut() {
                    if s.write_all(&data).is_err() {
                        // The command closed its stdin; later data is dropped.
                        stdin = None;
                    }
                }
            }
            Ok(HostMsg::StdinEof) => stdin = None,
            Ok(HostMsg::Signal(sig)) if (1..=64).contains(&sig) => {
                if !finished.load(Ordering::SeqCst) {
                    // SAFETY: kill on the command's process group, still ours.
                    unsafe { libc::kill(-pid, sig) };
                }
            }
            Ok(other) => {
                let _ = conn.error(
                    ErrorKind::UnexpectedMessage,
                    format!(
                        "{} is not valid while a command runs",
                        crate::conn::name(&other)
                    ),
                );
            }
            Err(e) if e.is_protocol_error() => {
                let _ = conn.error(e.kind(), e.to_string());
            }
            Err(_) => {
                // The host went away: nothing may outlive its session.
                if !finished.load(Ordering::SeqCst) {
                    gone.store(true, Ordering::SeqCst);
                    kill();
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> users::Account {
        users::Account {
            name: "agent".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/agent".into(),
            shell: "/bin/bash".into(),
        }
    }

    /// What a process sees: the last value each name was given.
    fn effective(env: &[(&str, &str)], name: &str) -> Option<String> {
        env.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    #[test]
    fn ca_variables_come_only_once_trusted_and_before_the_request() {
        let account = agent();
        let requested = vec![
            ("SSL_CERT_FILE".to_string(), "/mine.pem".to_string()),
            ("TERM".to_string(), "dumb".to_string()),
        ];
        let plain = command_env(&account, false, false, &requested);
        assert!(effective(&plain, "REQUESTS_CA_BUNDLE").is_none());
        assert!(effective(&plain, "NODE_EXTRA_CA_CERTS").is_none());

        let env = command_env(&account, true, true, &requested);
        let names: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "USER",
                "LOGNAME",
                "LANG",
                "TERM",
                "SSL_CERT_FILE",
                "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE",
                "NODE_EXTRA_CA_CERTS",
                "SSL_CERT_FILE",
                "TERM",
            ]
        );
        let bundle = Some(crate::trust::BUNDLE.to_string());
        assert_eq!(effective(&env, "REQUESTS_CA_BUNDLE"), bundle);
        assert_eq!(effective(&env, "CURL_CA_BUNDLE"), bundle);
        assert_eq!(
            effective(&env, "NODE_EXTRA_CA_CERTS"),
            Some(crate::trust::CA_FILE.to_string())
        );
        // The request's own values win.
        assert_eq!(
            effective(&env, "SSL_CERT_FILE").as_deref(),
            Some("/mine.pem")
        );
        assert_eq!(effective(&env, "TERM").as_deref(), Some("dumb"));
        assert_eq!(effective(&env, "HOME").as_deref(), Some("/home/agent"));
    }
}
