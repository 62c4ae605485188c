//! Times one VM process from launch: until a marker line on its console,
//! until it exits, and its resident memory beyond guest RAM at the marker.
//! The same method for every VMM measured, so their figures compare.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("starting {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{0} produced no marker before exiting")]
    NoMarker(String),
    #[error("waiting for the VM process: {0}")]
    Wait(std::io::Error),
}

#[derive(Clone, Debug, Default)]
pub struct Measurement {
    pub launch_to_marker_ms: f64,
    pub launch_to_exit_ms: f64,
    /// Resident set minus the guest-RAM mapping, sampled at the marker.
    pub rss_overhead_kib: Option<u64>,
    /// What the VMM's own boot timer reported (paddock-vmm only).
    pub boot_timer_ms: Option<f64>,
    pub exit_code: i32,
}

impl Measurement {
    pub fn to_fact(&self) -> String {
        let mut s = format!(
            "marker_ms={:.3},exit_ms={:.3},exit_code={}",
            self.launch_to_marker_ms, self.launch_to_exit_ms, self.exit_code
        );
        if let Some(r) = self.rss_overhead_kib {
            s.push_str(&format!(",rss_overhead_kib={r}"));
        }
        if let Some(b) = self.boot_timer_ms {
            s.push_str(&format!(",boot_timer_ms={b:.3}"));
        }
        s
    }

    pub fn parse(fact: &str) -> Measurement {
        let mut m = Measurement::default();
        for kv in fact.split(',') {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            match k {
                "marker_ms" => m.launch_to_marker_ms = v.parse().unwrap_or(f64::NAN),
                "exit_ms" => m.launch_to_exit_ms = v.parse().unwrap_or(f64::NAN),
                "exit_code" => m.exit_code = v.parse().unwrap_or(-1),
                "rss_overhead_kib" => m.rss_overhead_kib = v.parse().ok(),
                "boot_timer_ms" => m.boot_timer_ms = v.parse().ok(),
                _ => {}
            }
        }
        m
    }
}

/// Sum of Rss over all mappings of `pid` except those exactly `guest_kib`
/// large (guest RAM is one anonymous mapping of that size in both VMMs).
fn rss_overhead_kib(pid: u32, guest_kib: u64) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut total = 0u64;
    let mut current_is_guest = false;
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("Size:") => {
                let size: u64 = parts.next()?.parse().ok()?;
                current_is_guest = size == guest_kib;
            }
            Some("Rss:") if !current_is_guest => {
                total += parts.next()?.parse::<u64>().ok()?;
            }
            _ => {}
        }
    }
    Some(total)
}

fn boot_timer_from(line: &str) -> Option<f64> {
    let rest = line.split("guest init reached ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

pub fn measure(cmd: &[String], guest_mib: u64, marker: &str) -> Result<Measurement, MeasureError> {
    let started = Instant::now();
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| MeasureError::Spawn {
            cmd: cmd[0].clone(),
            source,
        })?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<Instant>();
    let stdout = child.stdout.take();
    let marker_text = marker.to_string();
    let out_reader = std::thread::spawn(move || {
        let mut sent = false;
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if !sent && line.contains(&marker_text) {
                    let _ = tx.send(Instant::now());
                    sent = true;
                }
            }
        }
    });
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut timer = None;
        if let Some(err) = stderr {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if timer.is_none() {
                    timer = boot_timer_from(&line);
                }
            }
        }
        timer
    });
    let marker_at = rx.recv_timeout(Duration::from_secs(600)).ok();
    let rss = marker_at.and_then(|_| rss_overhead_kib(pid, guest_mib * 1024));
    let status = child.wait().map_err(MeasureError::Wait)?;
    let exited = started.elapsed();
    let _ = out_reader.join();
    let boot_timer_ms = err_reader.join().ok().flatten();
    let marker_at = marker_at.ok_or_else(|| MeasureError::NoMarker(cmd[0].clone()))?;
    Ok(Measurement {
        launch_to_marker_ms: (marker_at - started).as_secs_f64() * 1000.0,
        launch_to_exit_ms: exited.as_secs_f64() * 1000.0,
        rss_overhead_kib: rss,
        boot_timer_ms,
        exit_code: status.code().unwrap_or(-1),
    })
}

/// Launches a workspace VM and times launch -> the agent's readiness
/// report -> the first output of a first exec; then kills the VM. Returns
/// `ready_ms=..,first_output_ms=..` (the second counted from readiness).
/// Runs `echo hello` as the agent user; returns when its first output came,
/// measured from `started`.
fn first_exec_output(
    client: &paddock_agent_client::AgentClient,
    started: Instant,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let req = paddock_proto::ExecRequest {
        argv: vec!["echo".into(), "hello".into()],
        env: Vec::new(),
        cwd: None,
        user: paddock_proto::User::Agent,
        stdin: false,
        timeout_ms: Some(60_000),
    };
    let mut first = None;
    client.exec(req, None, |_| {
        if first.is_none() {
            first = Some(started.elapsed());
        }
    })?;
    Ok(first.ok_or("the first exec printed nothing")?)
}

pub fn agent_ready(
    vm_socket: &std::path::Path,
    cmd: &[String],
) -> Result<String, Box<dyn std::error::Error>> {
    use paddock_agent_client::{AgentClient, ReadyListener};
    let listener = ReadyListener::bind(vm_socket)?;
    let started = Instant::now();
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| -> Result<String, Box<dyn std::error::Error>> {
        listener.wait(Duration::from_secs(300))?;
        let ready = started.elapsed();
        let client = AgentClient::new(vm_socket);
        let first = first_exec_output(&client, started)?;
        Ok(format!(
            "ready_ms={:.3},first_output_ms={:.3}",
            ready.as_secs_f64() * 1000.0,
            (first - ready).as_secs_f64() * 1000.0
        ))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// How a restored clone is made its own before anything runs in it.
#[derive(Clone, Copy, Debug)]
pub enum MakeOwn {
    /// A snapshot of a whole workspace: `Renew`.
    Renew,
    /// A template snapshot (`paddock.provision=wait`): `Provision` with a
    /// writable disk of this many sectors.
    Provision { data_sectors: u64 },
}

/// Launches `cmd` (a VMM restoring a workspace from a snapshot) and times
/// launch -> `Renew` or `Provision` done -> first output of an exec in it,
/// in the order a host must follow (nothing runs in a clone before it is
/// its own). There is no readiness report to wait for: the agent was ready
/// when the snapshot was taken, so it is asked as soon as the VM's socket
/// exists.
pub fn agent_restored(
    vm_socket: &std::path::Path,
    cmd: &[String],
    make_own: MakeOwn,
) -> Result<String, Box<dyn std::error::Error>> {
    use paddock_agent_client::AgentClient;
    let _ = std::fs::remove_file(vm_socket);
    let started = Instant::now();
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // The VMM's own words, for a run that fails.
    let stderr = child.stderr.take();
    let said = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        text
    });
    let result = (|| -> Result<String, Box<dyn std::error::Error>> {
        let deadline = started + Duration::from_secs(300);
        while !vm_socket.exists() {
            if Instant::now() > deadline {
                return Err("the restored VM never made its socket".into());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let client = AgentClient::new(vm_socket);
        // The socket's file appears at bind(), a moment before listen():
        // a connection in between is refused.
        let own = || match make_own {
            MakeOwn::Renew => client.renew("bench"),
            MakeOwn::Provision { data_sectors } => client.provision("bench", data_sectors, None),
        };
        loop {
            match own() {
                Ok(()) => break,
                Err(paddock_agent_client::ClientError::Connect { source, .. })
                    if source.kind() == std::io::ErrorKind::ConnectionRefused
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let renewed = started.elapsed();
        let first = first_exec_output(&client, started)?;
        let own_key = match make_own {
            MakeOwn::Renew => "renewed_ms",
            MakeOwn::Provision { .. } => "provisioned_ms",
        };
        Ok(format!(
            "first_output_ms={:.3},{own_key}={:.3}",
            first.as_secs_f64() * 1000.0,
            renewed.as_secs_f64() * 1000.0
        ))
    })();
    let exited = child.try_wait().ok().flatten();
    // Whether anything listened at the path when the run failed
    // (/proc/net/unix: flags 00010000 is a listener, state 01 unconnected).
    let name = vm_socket.to_string_lossy().to_string();
    let sock_state: Vec<String> = std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&name))
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let said = said.join().unwrap_or_default();
    result.map_err(|e| {
        let last = said.lines().last().unwrap_or("").to_string();
        format!("{e} (VMM exited: {exited:?}; its last words: {last:?}; the socket then: {sock_state:?})").into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_own_facts() {
        let m = Measurement {
            launch_to_marker_ms: 12.5,
            launch_to_exit_ms: 20.0,
            rss_overhead_kib: Some(3000),
            boot_timer_ms: Some(11.0),
            exit_code: 0,
        };
        let p = Measurement::parse(&m.to_fact());
        assert_eq!(p.rss_overhead_kib, Some(3000));
        assert_eq!(p.boot_timer_ms, Some(11.0));
        assert!((p.launch_to_exit_ms - 20.0).abs() < 1e-9);
    }

    #[test]
    fn finds_the_boot_timer_line() {
        let l = "paddock-vmm: boot-timer: guest init reached 4416.724 ms after VMM start";
        assert_eq!(boot_timer_from(l), Some(4416.724));
    }

    #[test]
    fn measures_a_real_process() {
        let cmd: Vec<String> = ["sh", "-c", "echo MARK; sleep 0.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = measure(&cmd, 1, "MARK").expect("measure");
        assert_eq!(m.exit_code, 0);
        assert!(m.launch_to_exit_ms >= m.launch_to_marker_ms);
        assert!(m.rss_overhead_kib.is_some_and(|r| r > 0));
    }
}
