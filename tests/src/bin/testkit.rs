//! Test helper that runs inside test VMs (guest side: vsock, boot timer)
//! and in the harness's L1 (host side: the VMM's Unix sockets).
//! Prints facts as `key=value`; the Rust tests judge them.

use paddock_proto::vsock;
use paddock_tests::pattern::{hex, pattern_sha256, Pattern};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "\
usage: paddock-testkit boot-timer
       paddock-testkit pattern SEED LEN            (raw bytes to stdout)
       paddock-testkit pattern-sha SEED LEN
       paddock-testkit sha-stdin                   (len and sha256 of stdin)
       paddock-testkit vsock-send PORT TEXT        (guest: connect to host PORT, send TEXT)
       paddock-testkit vsock-send-pattern PORT SEED LEN
       paddock-testkit vsock-serve PORT            (guest: accept one, hash until EOF, reply)
       paddock-testkit uds-recv PATH [--text]      (host: accept one on PATH, hash or print)
       paddock-testkit uds-send-pattern SOCK PORT SEED LEN  (host: CONNECT PORT, send, read reply)
       paddock-testkit measure GUEST_MIB MARKER -- CMD...  (times a VM process, samples its memory)
       paddock-testkit agent-wait-ready VM_SOCK TIMEOUT_S  (binds VM_SOCK_1023, waits for the agent)
       paddock-testkit agent-suite VM_SOCK             (every agent check, as facts)
       paddock-testkit agent-write VM_SOCK PATH TEXT
       paddock-testkit agent-read VM_SOCK PATH
       paddock-testkit agent-exec VM_SOCK ARGV...       (as root; prints status and stdout)
       paddock-testkit agent-bench VM_SOCK -- VMM_CMD...   (launch -> agent ready -> first exec output)
       paddock-testkit agent-bench-restore VM_SOCK -- VMM_CMD...  (launch -> first exec output -> renewed)
       paddock-testkit agent-bench-provision VM_SOCK SECTORS -- VMM_CMD...  (a template clone: launch -> provisioned -> first exec output)
       paddock-testkit agent-renew VM_SOCK HOSTNAME    (after a restore: reseed, clock, machine-id)
       paddock-testkit agent-provision VM_SOCK HOSTNAME SECTORS  (a template clone made a workspace)
       paddock-testkit vmm-pause CONTROL_SOCK | vmm-resume CONTROL_SOCK
       paddock-testkit vmm-snapshot CONTROL_SOCK DIR   (pause and write DIR/state, DIR/memory)
       paddock-testkit mem-sum PID...                  (RSS, PSS, shared and private memory, summed)";

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}\n{USAGE}"))?
        .parse::<T>()
        .map_err(|_| format!("bad {what}: {:?}", args[i]).into())
}

/// Copies `len` pattern bytes into `w` in 64 KiB chunks.
fn send_pattern(w: &mut impl Write, seed: u64, len: u64) -> Result<()> {
    let mut p = Pattern::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        p.fill(&mut buf[..n]);
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    w.flush()?;
    Ok(())
}

/// Reads to EOF and returns (length, sha256 hex).
fn hash_all(r: &mut impl Read) -> Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&h.finalize())))
}

fn boot_timer() -> Result<()> {
    const ADDR: libc::off_t = 0xd000_0000;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mem")?;
    // SAFETY: mapping one page of /dev/mem at the boot-timer address; the
    // pointer is used for a single volatile store and then unmapped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            ADDR,
        );
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().into());
        }
        std::ptr::write_volatile(p.cast::<u8>(), 123);
        libc::munmap(p, 4096);
    }
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("boot-timer") => boot_timer(),
        Some("pattern") => {
            let (seed, len) = (arg(args, 1, "SEED")?, arg(args, 2, "LEN")?);
            send_pattern(&mut std::io::stdout().lock(), seed, len)
        }
        Some("pattern-sha") => {
            println!(
                "{}",
                pattern_sha256(arg(args, 1, "SEED")?, arg(args, 2, "LEN")?)
            );
            Ok(())
        }
        Some("sha-stdin") => {
            let (len, sha) = hash_all(&mut std::io::stdin().lock())?;
            println!("len={len} sha256={sha}");
            Ok(())
        }
        Some("vsock-send") => {
            let port: u32 = arg(args, 1, "PORT")?;
            let text: String = arg(args, 2, "TEXT")?;
            let mut s = vsock::connect(vsock::HOST_CID, port)?;
            s.write_all(text.as_bytes())?;
            Ok(())
        }
        Some("vsock-send-pattern") => {
            let port: u32 = arg(args, 1, "PORT")?;
            let mut s = vsock::connect(vsock::HOST_CID, port)?;
            send_pattern(&mut s, arg(args, 2, "SEED")?, arg(args, 3, "LEN")?)
        }
        Some("vsock-serve") => {
            let mut s = vsock::accept_one(arg(args, 1, "PORT")?)?;
            let (len, sha) = hash_all(&mut s)?;
            s.write_all(format!("len={len} sha256={sha}\n").as_bytes())?;
            vsock::shutdown_write(&s)?;
            // Wait for the host to close, so the reply isn't cut off by our exit.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            Ok(())
        }
        Some("uds-recv") => {
            let path: String = arg(args, 1, "PATH")?;
            let listener = UnixListener::bind(&path)?;
            let mut s = accept_within(&listener, std::time::Duration::from_secs(300))?;
            if args.get(2).map(String::as_str) == Some("--text") {
                let mut text = String::new();
                s.read_to_string(&mut text)?;
                println!("text={text}");
            } else {
                let (len, sha) = hash_all(&mut s)?;
                println!("len={len} sha256={sha}");
            }
            Ok(())
        }
        Some("uds-send-pattern") => {
            let sock: String = arg(args, 1, "SOCK")?;
            let port: u32 = arg(args, 2, "PORT")?;
            let (seed, len): (u64, u64) = (arg(args, 3, "SEED")?, arg(args, 4, "LEN")?);
            let s = connect_retry(&sock, port)?;
            let mut w = s.try_clone()?;
            send_pattern(&mut w, seed, len)?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut reply = String::new();
            BufReader::new(s).read_line(&mut reply)?;
            println!("reply_{}", reply.trim());
            Ok(())
        }
        Some("measure") => {
            let guest_mib: u64 = arg(args, 1, "GUEST_MIB")?;
            let marker: String = arg(args, 2, "MARKER")?;
            if args.get(3).map(String::as_str) != Some("--") || args.len() < 5 {
                return Err(USAGE.into());
            }
            let m = paddock_tests::measure::measure(&args[4..], guest_mib, &marker)?;
            println!("{}", m.to_fact());
            Ok(())
        }
        Some("agent-wait-ready") => {
            let sock: String = arg(args, 1, "VM_SOCK")?;
            let secs: u64 = arg(args, 2, "TIMEOUT_S")?;
            let started = std::time::Instant::now();
            let l = paddock_agent_client::ReadyListener::bind(std::path::Path::new(&sock))?;
            // Tell whoever started us that the listener is up.
            println!("listening=1");
            std::io::stdout().flush()?;
            let info = l.wait(std::time::Duration::from_secs(secs))?;
            println!(
                "ready=1 agent_version={} guest_uptime_ms={} waited_ms={}",
                info.agent_version,
                info.uptime_ms,
                started.elapsed().as_millis()
            );
            Ok(())
        }
        Some("agent-suite") => {
            paddock_tests::agent_suite::run_suite(&arg::<String>(args, 1, "VM_SOCK")?);
            Ok(())
        }
        Some("agent-write") => {
            let c = paddock_agent_client::AgentClient::new(arg::<String>(args, 1, "VM_SOCK")?);
            let text: String = arg(args, 3, "TEXT")?;
            c.write_file(&arg::<String>(args, 2, "PATH")?, 0o644, text.as_bytes())?;
            Ok(())
        }
        Some("agent-read") => {
            let c = paddock_agent_client::AgentClient::new(arg::<String>(args, 1, "VM_SOCK")?);
            let mut out = Vec::new();
            c.read_file(&arg::<String>(args, 2, "PATH")?, &mut out)?;
            println!("{}", String::from_utf8_lossy(&out));
            Ok(())
        }
        Some("agent-bench") => {
            let sock: String = arg(args, 1, "VM_SOCK")?;
            if args.get(2).map(String::as_str) != Some("--") || args.len() < 4 {
                return Err(USAGE.into());
            }
            let m = paddock_tests::measure::agent_ready(std::path::Path::new(&sock), &args[3..])?;
            println!("{m}");
            Ok(())
        }
        Some("agent-exec") => {
            let c = paddock_agent_client::AgentClient::new(arg::<String>(args, 1, "VM_SOCK")?);
            if args.len() < 3 {
                return Err(USAGE.into());
            }
            let req = paddock_proto::ExecRequest {
                argv: args[2..].to_vec(),
                env: Vec::new(),
                cwd: None,
                user: paddock_proto::User::Root,
                stdin: false,
                timeout_ms: None,
            };
            let started = std::time::Instant::now();
            let mut first_output_ms = None;
            let mut out = Vec::new();
            let st = c.exec(req, None, |o| {
                if first_output_ms.is_none() {
                    first_output_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                }
                if let paddock_agent_client::Output::Stdout(d) = o {
                    out.extend_from_slice(d);
                }
            })?;
            println!(
                "code={} first_output_ms={:.3} stdout={}",
                st.code.map_or("-".into(), |c| c.to_string()),
                first_output_ms.unwrap_or(f64::NAN),
                String::from_utf8_lossy(&out).trim()
            );
            Ok(())
        }
        Some(op @ ("agent-bench-restore" | "agent-bench-provision")) => {
            use paddock_tests::measure::{agent_restored, MakeOwn};
            let sock: String = arg(args, 1, "VM_SOCK")?;
            let (make_own, rest) = if op == "agent-bench-provision" {
                let data_sectors = arg::<u64>(args, 2, "SECTORS")?;
                (MakeOwn::Provision { data_sectors }, 3)
            } else {
                (MakeOwn::Renew, 2)
            };
            if args.get(rest).map(String::as_str) != Some("--") || args.len() < rest + 2 {
                return Err(USAGE.into());
            }
            let m = agent_restored(std::path::Path::new(&sock), &args[rest + 1..], make_own)?;
            println!("{m}");
            Ok(())
        }
        Some("agent-renew") => {
            let c = paddock_agent_client::AgentClient::new(arg::<String>(args, 1, "VM_SOCK")?);
            c.renew(&arg::<String>(args, 2, "HOSTNAME")?)?;
            Ok(())
        }
        Some("agent-provision") => {
            let c = paddock_agent_client::AgentClient::new(arg::<String>(args, 1, "VM_SOCK")?);
            let started = std::time::Instant::now();
            c.provision(
                &arg::<String>(args, 2, "HOSTNAME")?,
                arg::<u64>(args, 3, "SECTORS")?,
                None,
            )?;
            println!("ms={:.1}", started.elapsed().as_secs_f64() * 1000.0);
            Ok(())
        }
        Some(op @ ("vmm-pause" | "vmm-resume" | "vmm-snapshot")) => {
            use paddock_proto::vmm_control::VmmRequest;
            use paddock_vmm::control_client;
            let sock = std::path::PathBuf::from(arg::<String>(args, 1, "CONTROL_SOCK")?);
            let started = std::time::Instant::now();
            match op {
                "vmm-pause" => control_client::request(&sock, &VmmRequest::Pause {}, &[])?,
                "vmm-resume" => control_client::request(&sock, &VmmRequest::Resume {}, &[])?,
                _ => {
                    let dir = std::path::PathBuf::from(arg::<String>(args, 2, "DIR")?);
                    control_client::snapshot_into(&sock, &dir)?;
                }
            }
            println!("ms={:.1}", started.elapsed().as_secs_f64() * 1000.0);
            Ok(())
        }
        Some("mem-sum") => {
            let pids: Vec<u32> = (1..args.len())
                .map(|i| arg(args, i, "PID"))
                .collect::<Result<_>>()?;
            if pids.is_empty() {
                return Err(USAGE.into());
            }
            println!("{}", mem_sum(&pids)?);
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}

/// The processes' memory from /proc/PID/smaps_rollup, summed, in KiB:
/// what they hold (RSS), their fair share of it (PSS: a page mapped by N
/// of them counts 1/N to each), and how much of it other mappers share.
fn mem_sum(pids: &[u32]) -> Result<String> {
    let fields = [
        "Rss",
        "Pss",
        "Shared_Clean",
        "Shared_Dirty",
        "Private_Clean",
        "Private_Dirty",
    ];
    let mut sum = [0u64; 6];
    for pid in pids {
        let path = format!("/proc/{pid}/smaps_rollup");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(name), Some(kib)) = (words.next(), words.next()) else {
                continue;
            };
            if let Some(i) = fields
                .iter()
                .position(|f| name.strip_suffix(':') == Some(f))
            {
                sum[i] += kib
                    .parse::<u64>()
                    .map_err(|e| format!("{path}: {line}: {e}"))?;
            }
        }
    }
    Ok(format!(
        "n={},rss_kib={},pss_kib={},shared_kib={},private_kib={}",
        pids.len(),
        sum[0],
        sum[1],
        sum[2] + sum[3],
        sum[4] + sum[5]
    ))
}

/// Accepts one connection, or fails after `limit` (a guest that never
/// connects must not hang the scenario).
fn accept_within(l: &UnixListener, limit: std::time::Duration) -> Result<UnixStream> {
    l.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > deadline {
                    return Err(format!("nobody connected within {limit:?}").into());
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Connects through the VMM's socket, retrying until the guest listens.
fn connect_retry(sock: &str, port: u32) -> Result<UnixStream> {
    let mut last = String::new();
    for _ in 0..600 {
        match UnixStream::connect(sock) {
            Ok(mut s) => {
                s.write_all(format!("CONNECT {port}\n").as_bytes())?;
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone()?);
                r.read_line(&mut line)?;
                if line.starts_with("OK ") {
                    return Ok(s);
                }
                last = format!("reply {line:?}");
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(format!("could not connect to vsock port {port} through {sock}: {last}").into())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("paddock-testkit: {e}");
        std::process::exit(1);
    }
}
