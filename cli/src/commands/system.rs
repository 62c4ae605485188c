//! The box itself: `paddock system` (version, uptime, certificate, disk
//! keys, data partition, host now, image slots) and `paddock system metrics` (the
//! host's samples over the last hour).

use super::Ctx;
use crate::args::SystemCommand;
use crate::CliError;
use paddock_api_types::{
    HostMetrics, HostSample, RestoreReport, SlotInfo, SlotState, SystemStatus, UpdateState,
    UpdateStatus,
};

/// Bytes as the largest binary unit that keeps a number of at least 1.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn host_line(h: &HostSample) -> String {
    format!(
        "cpu {:.1}% of {}, memory {} of {}, load {:.2}",
        h.cpu_pct,
        h.cpus,
        size(h.memory_used_bytes),
        size(h.memory_total_bytes),
        h.load1
    )
}

fn slot_line(s: &SlotInfo) -> String {
    let state = match s.state {
        SlotState::Good => "good".to_string(),
        SlotState::Trial => format!("on trial, {} tries left", s.tries_left.unwrap_or(0)),
        SlotState::Bad => "bad (its tries ran out)".to_string(),
        SlotState::Empty => "empty".to_string(),
    };
    format!(
        "{} {state}{}",
        s.version.as_deref().unwrap_or("-"),
        if s.booted { " (booted)" } else { "" }
    )
}

pub fn system(ctx: &Ctx, cmd: Option<SystemCommand>) -> Result<(), CliError> {
    match cmd {
        None => {
            let body = ctx.call("GET", "/v1/system")?;
            ctx.show(&body, |s: SystemStatus| {
                let keys = serde_json::to_value(s.keys.state).unwrap_or_default();
                println!("version  {}", s.version);
                println!("uptime   {} s", s.uptime_s);
                println!(
                    "tls      {}",
                    s.tls_fingerprint.as_deref().unwrap_or("(none)")
                );
                println!(
                    "keys     {}: {}",
                    keys.as_str().unwrap_or("?"),
                    s.keys.detail
                );
                println!(
                    "data     {} used of {}, {} available",
                    size(s.data.used_bytes),
                    size(s.data.total_bytes),
                    size(s.data.available_bytes)
                );
                match s.host {
                    Some(h) => println!("host     {}", host_line(&h)),
                    None => println!("host     (no sample yet)"),
                }
                for slot in &s.slots {
                    println!("slot {}   {}", slot.slot, slot_line(slot));
                }
                if let Some(u) = &s.update {
                    let state = match u.state {
                        UpdateState::Writing => "being written".to_string(),
                        UpdateState::Ready => "written; the next boot tries it".to_string(),
                        UpdateState::Failed => {
                            format!("failed: {}", u.detail.as_deref().unwrap_or("?"))
                        }
                    };
                    println!("update   {} to slot {}: {state}", u.version, u.slot);
                }
            })
        }
        Some(SystemCommand::Update { file, at, force }) => {
            // Held whole: bundles are a few hundred MiB; the API streams
            // what it receives to the box's disk.
            let bundle = std::fs::read(&file)
                .map_err(|e| CliError::Usage(format!("reading {}: {e}", file.display())))?;
            let mut path = format!("/v1/system/update?at={at}");
            if force {
                path.push_str("&force=true");
            }
            let body = super::ok(ctx.api.call("POST", &path, Some(&bundle))?)?;
            ctx.show(&body, |u: UpdateStatus| {
                println!(
                    "update {} verified; writing it to slot {} ({})",
                    u.version,
                    u.slot,
                    match u.reboot_at {
                        Some(t) => format!("reboots into it at {t}"),
                        None => "the next reboot tries it".into(),
                    }
                );
                eprintln!("(`paddock system` shows when it is written)");
            })
        }
        Some(SystemCommand::Backup { out }) => backup(ctx, &out),
        Some(SystemCommand::Restore {
            file,
            recovery_secret_stdin,
        }) => restore(ctx, &file, recovery_secret_stdin),
        Some(SystemCommand::Metrics { since }) => {
            let path = match since {
                Some(t) => format!("/v1/system/metrics?since={t}"),
                None => "/v1/system/metrics".into(),
            };
            let body = ctx.call("GET", &path)?;
            ctx.show(&body, |m: HostMetrics| {
                for h in m.samples {
                    println!("{}  {}", h.t, host_line(&h));
                }
            })
        }
    }
}

/// What `system backup FILE` saved, for scripts: the CLI's own answer.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    bytes: usize,
    saved: String,
}

fn backup(ctx: &Ctx, out: &std::path::Path) -> Result<(), CliError> {
    // A new file, made before the box is asked (never over an older
    // backup); the backup is held whole (the state and at most ~150 MiB of
    // audit log) and written once it all arrived, the file removed if it
    // did not: never a half one.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| CliError::Usage(format!("{}: {e}", out.display())))?;
    let fetched = ctx
        .api
        .call("GET", "/v1/system/backup", None)
        .map_err(CliError::from)
        .and_then(super::ok);
    let written = fetched.and_then(|data| {
        std::io::Write::write_all(&mut f, &data)
            .and_then(|_| f.sync_all())
            .map(|_| data)
            .map_err(|e| CliError::Config(format!("{}: {e}", out.display())))
    });
    let data = match written {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(out);
            return Err(e);
        }
    };
    let saved = Saved {
        bytes: data.len(),
        saved: out.display().to_string(),
    };
    let body = serde_json::to_vec(&saved).unwrap_or_default();
    ctx.show(&body, |s: Saved| {
        println!("backup: {} saved to {}", size(s.bytes as u64), s.saved)
    })
}

fn restore(ctx: &Ctx, file: &std::path::Path, secret_stdin: bool) -> Result<(), CliError> {
    let data = std::fs::read(file)
        .map_err(|e| CliError::Usage(format!("reading {}: {e}", file.display())))?;
    let mut secret = String::new();
    if secret_stdin {
        // From stdin, not an argument: argv is visible to every process
        // on the operator's machine.
        std::io::stdin()
            .read_line(&mut secret)
            .map_err(|e| CliError::Usage(format!("reading the recovery secret: {e}")))?;
    }
    let secret = secret.trim();
    let headers: Vec<(&'static str, &str)> = if secret_stdin {
        vec![("x-paddock-recovery-secret", secret)]
    } else {
        Vec::new()
    };
    let answer = ctx
        .api
        .call_with("POST", "/v1/system/restore", Some(&data), &headers)?;
    let body = super::ok(answer)?;
    ctx.show(&body, |r: RestoreReport| {
        println!(
            "restored the backup of {} (version {}, opened with the {}): {} token(s), {} workspace record(s) (all lost: a backup holds no disks), {} approval(s), {} of audit log",
            r.backup_created_at,
            r.backup_version,
            if r.opened_with == "tpm" { "TPM" } else { "recovery secret" },
            r.tokens,
            r.workspaces,
            r.approvals,
            size(r.audit_bytes)
        );
        eprintln!("(the tokens are the backup's now: sign in with one of them)");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(8 << 30), "8.0 GiB");
        assert_eq!(size(u64::MAX), "16.0 EiB");
    }
}
