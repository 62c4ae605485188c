//! paddock-agent: PID 1 of every workspace.

mod cgroup;
mod changes;
mod conn;
mod exec;
mod files;
mod init;
mod log;
mod net;
mod procs;
mod provision;
mod pty;
mod pump;
mod reaper;
mod renew;
mod server;
mod sys;
mod trust;
mod users;
mod watch;

/// Logs why the workspace cannot go on and ends the VM. PID 1 exiting makes
/// the kernel panic, which the VMM reports as a non-zero exit with the
/// panic line, so a host can tell this from an ordinary reboot; the reason
/// itself is the line before it on the console the host keeps.
fn fatal(what: &str) -> ! {
    info!("fatal: {what}; ending the workspace");
    // SAFETY: sync takes no arguments.
    unsafe { libc::sync() };
    std::process::exit(1)
}

/// The agent holds descriptors for every connection, watched process and
/// watch: lift the soft limit on open files (1024 by default) to the hard
/// one.
fn raise_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one rlimit struct
    // for the call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A cold boot: the root, the names and the NIC from the command line.
fn become_workspace(opts: &init::BootOptions, cmdline: &str) {
    if let Err(e) = init::switch_to_workspace_root(opts) {
        fatal(&e.to_string());
    }
    if let Err(e) = init::late_mounts() {
        fatal(&e.to_string());
    }
    init::set_hostname(&opts.hostname);
    // A workspace without a NIC (or a malformed description) simply has
    // no network; the agent still serves.
    if let Some(cfg) = net::from_cmdline(cmdline) {
        if let Err(e) = net::configure(cfg) {
            eprintln!("paddock-agent: network: {e}");
        }
    }
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("paddock-agent: must run as PID 1 of a workspace VM");
        std::process::exit(2);
    }
    if let Err(e) = init::early_mounts() {
        fatal(&e.to_string());
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let opts = init::BootOptions::from_cmdline(&cmdline);
    // Before anything is spawned: every child of PID 1 is reaped by it
    // (the writable disk's mke2fs included).
    if let Err(e) = std::thread::Builder::new()
        .name("reaper".into())
        .spawn(reaper::run)
    {
        fatal(&format!("starting the reaper: {e}"));
    }
    if opts.provision_wait {
        // A template boot: the root, the names and the NIC come with the
        // host's Provision, once per clone of this VM's snapshot.
        provision::wait_for_host();
    } else {
        become_workspace(&opts, &cmdline);
    }
    init::seed_entropy();
    raise_open_files();
    if let Err(e) = server::serve() {
        fatal(&format!("serving on vsock: {e}"));
    }
    fatal("the server stopped")
}
