//! `paddock-init jail`: runs a program (meant for: a workspace's VMM; not yet
//! wired into the runner, see docs/threat-model.md) in a jail built before its
//! first instruction. Started as root by host-init (already in the
//! workspace's cgroup), it makes new mount, PID, IPC, UTS and network
//! namespaces and forks. The child becomes PID 1 of the new PID namespace,
//! builds an empty root on a tmpfs holding only what the VM needs (bind
//! mounts at the same paths as outside, so the VMM's arguments do not
//! change), pivots into it, closes every other descriptor, sets rlimits,
//! drops to the workspace's uid and gid (no capabilities, no_new_privs),
//! and executes the VMM with an empty environment. The parent drops to the
//! same uid, turns SIGTERM and SIGINT into a kill of the child, and exits
//! as the child did; if it is killed, the kernel kills the child
//! (parent-death signal), and with it the whole PID namespace.
//!
//! `paddock-init jail-probe` is what tests run in place of the VMM: it
//! reports, as JSON on stdout, what a process in the jail can see.
//!
//! `seccomp_rules` holds the seccomp pieces the confined processes (the
//! API, the network services) share. A crate of its own because none of
//! it needs the rest of host-init, and the jail should be read alone.

#[cfg(feature = "seccomp-probe")]
pub mod seccomp_probe;
pub mod seccomp_rules;

use std::ffi::CString;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("jail: {0}")]
    Usage(String),
    #[error("jail: {what}: {source}")]
    Sys { what: String, source: nix::Error },
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> JailError {
    let what = what.into();
    move |source| JailError::Sys { what, source }
}

/// One path made visible inside the jail, at the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub path: PathBuf,
    pub writable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailSpec {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups the jailed process keeps (e.g. the group that
    /// may open /dev/kvm).
    pub groups: Vec<u32>,
    /// An empty directory the jail's root tmpfs is mounted on.
    pub root: PathBuf,
    pub binds: Vec<Bind>,
    pub max_fds: u64,
    /// A descriptor the program is given, as its fd 3 (a workspace's tap).
    pub keep_fd: Option<i32>,
    pub program: PathBuf,
    pub args: Vec<String>,
}

pub const USAGE: &str = "paddock-init jail --uid N --gid N [--group N]... --root DIR \
[--bind PATH[:rw]]... [--max-fds N] [--keep-fd N] -- PROGRAM [ARGS...]";

fn number<T: std::str::FromStr>(flag: &str, v: Option<&String>) -> Result<T, JailError> {
    v.and_then(|s| s.parse().ok())
        .ok_or_else(|| JailError::Usage(format!("{flag} needs a number")))
}

impl JailSpec {
    pub fn parse(args: &[String]) -> Result<JailSpec, JailError> {
        let (mut uid, mut gid, mut root) = (None, None, None);
        let mut groups = Vec::new();
        let mut binds = Vec::new();
        let mut max_fds = 1024;
        let mut keep_fd = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--uid" => uid = Some(number::<u32>("--uid", it.next())?),
                "--gid" => gid = Some(number::<u32>("--gid", it.next())?),
                "--group" => groups.push(number::<u32>("--group", it.next())?),
                "--max-fds" => max_fds = number::<u64>("--max-fds", it.next())?,
                "--keep-fd" => {
                    let fd = number::<i32>("--keep-fd", it.next())?;
                    if fd < 3 {
                        return Err(JailError::Usage(format!(
                            "--keep-fd {fd} is stdio; give the descriptor to pass on"
                        )));
                    }
                    keep_fd = Some(fd);
                }
                "--root" => {
                    root = it.next().map(PathBuf::from);
                }
                "--bind" => {
                    let v = it
                        .next()
                        .ok_or_else(|| JailError::Usage("--bind needs a path".into()))?;
                    let (path, writable) = match v.strip_suffix(":rw") {
                        Some(p) => (p, true),
                        None => (v.as_str(), false),
                    };
                    binds.push(Bind {
                        path: PathBuf::from(path),
                        writable,
                    });
                }
                "--" => break,
                other => return Err(JailError::Usage(format!("unknown argument {other:?}"))),
            }
        }
        let rest: Vec<String> = it.cloned().collect();
        let (program, args) = rest
            .split_first()
            .ok_or_else(|| JailError::Usage("no program after --".into()))?;
        let spec = JailSpec {
            uid: uid.ok_or_else(|| JailError::Usage("--uid is required".into()))?,
            gid: gid.ok_or_else(|| JailError::Usage("--gid is required".into()))?,
            groups,
            root: root.ok_or_else(|| JailError::Usage("--root is required".into()))?,
            binds,
            max_fds,
            keep_fd,
            program: PathBuf::from(program),
            args: args.to_vec(),
        };
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), JailError> {
        if self.uid == 0 || self.gid == 0 {
            return Err(JailError::Usage(
                "the jailed uid and gid must not be 0".into(),
            ));
        }
        for p in self
            .binds
            .iter()
            .map(|b| &b.path)
            .chain([&self.root, &self.program])
        {
            let clean = p.is_absolute()
                && p.components()
                    .all(|c| !matches!(c, std::path::Component::ParentDir));
            if !clean || p == Path::new("/") {
                return Err(JailError::Usage(format!(
                    "{} must be an absolute path without '..', not /",
                    p.display()
                )));
            }
        }
        if !self.binds.iter().any(|b| b.path == self.program) {
            return Err(JailError::Usage(format!(
                "the program {} must be one of the --bind paths",
                self.program.display()
            )));
        }
        Ok(())
    }
}

/// Entry point of `paddock-init jail`. Returns only on failure (or, in the
/// parent, with the child's exit code).
pub fn main(args: &[String]) -> std::process::ExitCode {
    let spec = match JailSpec::parse(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}\nusage: {USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&spec) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(125)
        }
    }
}

fn run(spec: &JailSpec) -> Result<u8, JailError> {
    use nix::sched::{unshare, CloneFlags};
    use nix::unistd::{fork, ForkResult};
    // Everything the child needs, prepared while allocating is still safe.
    let prepared = Prepared::new(spec)?;
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWNET,
    )
    .map_err(sys("unshare"))?;
    // The child learns that the parent is gone from this pipe (the PID
    // namespace hides the parent, so getppid cannot tell it).
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // SAFETY: this process is single-threaded here (host-init runs it as a
    // fresh process), so the child may do anything the parent could.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(alive_w);
            let err = prepared.enter(alive_r);
            // Only reached on failure: say why and leave.
            eprintln!("{err}");
            // SAFETY: ends the child at once without running the parent's
            // atexit handlers or flushing its buffers twice.
            unsafe { libc::_exit(125) }
        }
        ForkResult::Parent { child } => {
            drop(alive_r);
            // Held open for the parent's lifetime.
            let _alive = alive_w;
            supervise(spec, child)
        }
    }
}

/// The parent: unprivileged, waits for the jailed child and exits as it did.
///
/// Single-threaded on purpose: after unshare(CLONE_NEWPID) the kernel
/// refuses to create threads in this process (EINVAL), so stop requests and
/// the child's end are both taken from one sigwait loop.
fn supervise(spec: &JailSpec, child: nix::unistd::Pid) -> Result<u8, JailError> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        set.add(s);
    }
    set.thread_block().map_err(sys("blocking signals"))?;
    drop_privileges(spec.uid, spec.gid, &[])?;
    loop {
        // The child may have ended before SIGCHLD was blocked: look first.
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code as u8),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128u8.saturating_add(sig as u8)),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(sys("waiting for the jailed process")(e)),
        }
        match set.wait() {
            // The jailed program is PID 1 of its namespace, where a signal
            // it has no handler for is ignored, and the VMM has no graceful
            // stop yet: a request to stop is passed on as SIGKILL. The
            // parent stays until the child is gone, so that when host-init
            // sees the jail end, the jail's mounts are released too.
            Ok(Signal::SIGTERM | Signal::SIGINT) => {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            }
            // EINTR: woken for something else (the cgroup freezer does
            // this); look again.
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(sys("waiting for signals")(e)),
        }
    }
}

fn drop_privileges(uid: u32, gid: u32, groups: &[u32]) -> Result<(), JailError> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(sys("setgroups"))?;
    let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
    setresgid(g, g, g).map_err(sys("setresgid"))?;
    setresuid(u, u, u).map_err(sys("setresuid"))?;
    // Leaving uid 0 cleared every capability; no exec may gain any back.
    // SAFETY: prctl with plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(sys("no_new_privs")(nix::Error::last()));
    }
    Ok(())
}

/// What the child needs, with every string converted before the fork.
struct Prepared {
    spec: JailSpec,
    program: CString,
    argv: Vec<CString>,
}

impl Prepared {
    fn new(spec: &JailSpec) -> Result<Prepared, JailError> {
        let c = |s: &str| {
            CString::new(s).map_err(|_| JailError::Usage(format!("{s:?} contains a NUL byte")))
        };
        let program = c(&spec.program.to_string_lossy())?;
        let mut argv = vec![program.clone()];
        for a in &spec.args {
            argv.push(c(a)?);
        }
        Ok(Prepared {
            spec: spec.clone(),
            program,
            argv,
        })
    }

    /// The child: builds the jail and executes the program in it. Returns
    /// only the error that stopped it.
    fn enter(&self, parent_alive: std::os::fd::OwnedFd) -> JailError {
        match self.build(parent_alive) {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    fn build(
        &self,
        parent_alive: std::os::fd::OwnedFd,
    ) -> Result<std::convert::Infallible, JailError> {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let spec = &self.spec;
        // Dies with the parent: host-init's SIGKILL to it ends the jail.
        // SAFETY: prctl with plain integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } < 0 {
            return Err(sys("parent-death signal")(nix::Error::last()));
        }
        // If the parent ended before that, its end of the pipe is closed.
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&parent_alive),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO);
        if fds[0]
            .revents()
            .is_some_and(|r| r.intersects(nix::poll::PollFlags::POLLHUP))
        {
            return Err(JailError::Usage("the parent ended during start-up".into()));
        }
        drop(parent_alive);
        // Nothing mounted here may leak back to the host's namespace.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys("making mounts private"))?;
        let root = &spec.root;
        std::fs::create_dir_all(root)
            .map_err(|e| JailError::Usage(format!("creating {}: {e}", root.display())))?;
        mount(
            Some("tmpfs"),
            root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID,
            Some("size=1m,mode=0755"),
        )
        .map_err(sys("mounting the jail's root"))?;
        for b in &spec.binds {
            let inside = root.join(b.path.strip_prefix("/").unwrap_or(&b.path));
            let is_dir = std::fs::metadata(&b.path)
                .map_err(|e| JailError::Usage(format!("{}: {e}", b.path.display())))?
                .is_dir();
            if let Some(parent_dir) = inside.parent() {
                std::fs::create_dir_all(parent_dir).map_err(|e| {
                    JailError::Usage(format!("creating {}: {e}", parent_dir.display()))
                })?;
            }
            if is_dir {
                std::fs::create_dir_all(&inside)
            } else {
                std::fs::File::create(&inside).map(drop)
            }
            .map_err(|e| JailError::Usage(format!("creating {}: {e}", inside.display())))?;
            mount(
                Some(&b.path),
                &inside,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys(format!("binding {}", b.path.display())))?;
            let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID;
            if !b.writable {
                flags |= MsFlags::MS_RDONLY;
            }
            mount(None::<&str>, &inside, None::<&str>, flags, None::<&str>)
                .map_err(sys(format!("restricting {}", b.path.display())))?;
        }
        // A /proc of the new PID namespace: it shows the jail's processes
        // and nothing else.
        let proc_dir = root.join("proc");
        std::fs::create_dir_all(&proc_dir)
            .map_err(|e| JailError::Usage(format!("creating {}: {e}", proc_dir.display())))?;
        mount(
            Some("proc"),
            &proc_dir,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(sys("mounting /proc"))?;
        nix::unistd::sethostname("paddock-vmm").map_err(sys("hostname"))?;
        nix::unistd::chdir(root).map_err(sys("entering the jail's root"))?;
        match nix::unistd::pivot_root(".", ".") {
            // The old root is stacked under the new one: detach it.
            Ok(()) => {
                umount2(".", MntFlags::MNT_DETACH).map_err(sys("detaching the host's root"))?
            }
            // The appliance's root is the initramfs (rootfs), which cannot
            // be pivoted away from. Move the jail's root over it instead and
            // chroot there; without capabilities nothing can undo either.
            Err(nix::Error::EINVAL) => {
                mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                    .map_err(sys("moving the jail's root over /"))?;
                nix::unistd::chroot(".").map_err(sys("chroot"))?;
            }
            Err(e) => return Err(sys("pivot_root")(e)),
        }
        nix::unistd::chdir("/").map_err(sys("chdir /"))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
            None::<&str>,
        )
        .map_err(sys("making the jail's root read-only"))?;
        // The one descriptor passed on becomes fd 3 (without close-on-exec:
        // dup2 clears it, and fcntl where it already is 3).
        let first_closed: u32 = match spec.keep_fd {
            Some(fd) => {
                // SAFETY: dup2/fcntl on descriptors this process owns.
                let r = unsafe {
                    if fd == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, 3)
                    }
                };
                if r < 0 {
                    return Err(sys(format!("passing on descriptor {fd}"))(
                        nix::Error::last(),
                    ));
                }
                4
            }
            None => 3,
        };
        // SAFETY: close_range on descriptors this process owns; stdio stays.
        if unsafe { libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, 0u32) } < 0 {
            return Err(sys("closing descriptors")(nix::Error::last()));
        }
        let limits = [(libc::RLIMIT_NOFILE, spec.max_fds), (libc::RLIMIT_CORE, 0)];
        for (which, value) in limits {
            let r = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            // SAFETY: setrlimit with a pointer to a local.
            if unsafe { libc::setrlimit(which, &r) } < 0 {
                return Err(sys("rlimits")(nix::Error::last()));
            }
        }
        drop_privileges(spec.uid, spec.gid, &spec.groups)?;
        let env: [CString; 0] = [];
        nix::unistd::execve(&self.program, &self.argv, &env)
            .map_err(sys(format!("executing {}", spec.program.display())))
    }
}

/// `paddock-init jail-probe [PATH...]`: what the jailed process sees.
pub fn probe(paths: &[String]) -> std::process::ExitCode {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let pids: Vec<String> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
                .collect()
        })
        .unwrap_or_default();
    let root: Vec<String> = std::fs::read_dir("/")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    let visible: Vec<(String, bool)> = paths
        .iter()
        .map(|p| (p.clone(), Path::new(p).exists()))
        .collect();
    // Sockets among them: can this process connect (as a VMM must to its
    // own socket directory's listeners)?
    let connects: Vec<(String, String)> = paths
        .iter()
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                .unwrap_or(false)
        })
        .map(|p| {
            let r = std::os::unix::net::UnixStream::connect(p)
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.to_string());
            (p.clone(), r)
        })
        .collect();
    let report = serde_json::json!({
        "pid": std::process::id(),
        "uid": field("Uid"),
        "gid": field("Gid"),
        "groups": field("Groups"),
        "cap_eff": field("CapEff"),
        "cap_prm": field("CapPrm"),
        "no_new_privs": field("NoNewPrivs"),
        "env": std::env::vars_os().count(),
        "proc_pids": pids,
        "root_entries": root,
        "open_fds": fds,
        // What a VMM given a tap finds at fd 3 (`--keep-fd`).
        "fd3": std::fs::read_link("/proc/self/fd/3").ok().map(|p| p.to_string_lossy().to_string()),
        "hostname": nix::unistd::gethostname().map(|h| h.to_string_lossy().to_string()).unwrap_or_default(),
        "visible": visible,
        "connects": connects,
    });
    println!("{report}");
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_and_refuses_what_would_weaken_the_jail() {
        let spec = JailSpec::parse(&args(
            "--uid 200000 --gid 200000 --group 901 --root /run/j --bind /usr/lib/vmm --bind /data/ws:rw -- /usr/lib/vmm --kernel k",
        ))
        .expect("valid");
        assert_eq!(spec.groups, [901]);
        assert_eq!(
            spec.binds[1],
            Bind {
                path: "/data/ws".into(),
                writable: true
            }
        );
        assert_eq!(spec.args, ["--kernel", "k"]);
        for bad in [
            "--uid 0 --gid 5 --root /r --bind /p -- /p",
            "--uid 5 --gid 5 --root /r --bind /p/../etc -- /p",
            "--uid 5 --gid 5 --root /r --bind / -- /p",
            "--uid 5 --gid 5 --root /r --bind /q -- /p",
            "--uid 5 --gid 5 --root r --bind /p -- /p",
            "--uid x --gid 5 --root /r --bind /p -- /p",
            "--uid 5 --gid 5 --root /r --bind /p",
            "--uid 5 --gid 5 --root /r --frobnicate --bind /p -- /p",
        ] {
            assert!(JailSpec::parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
