//! The test suite's diagnostics (docs/appliance.md): a scan of every
//! process's command line and environment for a secret, dropping the page
//! cache, a workspace's console, and opening a stopped workspace's disk
//! with its key. Compiled only into test images (feature `test-probes`,
//! built by `just static-test`): a product image answers 404 to them
//! whatever its configuration says, so a changed config.json on the ESP
//! cannot turn them on.

use super::{error, Control, Outcome};
use crate::tokens::TokenRecord;
use paddock_api_channel::Call;
use paddock_api_channel::Verdict;

/// What a caller sees of a probe it may not use: the same 404 as any
/// unknown path.
fn absent(call: &Call) -> Outcome {
    let endpoint = match call {
        Call::ScanProcesses { .. } => "POST /v1/debug/process-scan".to_string(),
        Call::DropCaches => "POST /v1/debug/drop-caches".to_string(),
        Call::KillNetServices => "POST /v1/debug/kill-net-services".to_string(),
        Call::ReadConsole { name } => format!("GET /v1/debug/console/{name}"),
        Call::ProbeDisk { .. } => "POST /v1/debug/open-disk".to_string(),
        _ => "that".to_string(),
    };
    error(Verdict::NotFound, format!("no such endpoint: {endpoint}"))
}

impl Control {
    #[cfg(not(feature = "test-probes"))]
    pub(super) fn probe(
        &self,
        _tok: &TokenRecord,
        call: Call,
        _what: &str,
    ) -> Result<Outcome, Outcome> {
        Err(absent(&call))
    }

    #[cfg(feature = "test-probes")]
    pub(super) fn probe(
        &self,
        tok: &TokenRecord,
        call: Call,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        use super::reply;
        use crate::tokens::Scope;
        use crate::{console, runner};
        use serde_json::json;
        if !self.probes_on() {
            return Err(absent(&call));
        }
        match call {
            Call::ScanProcesses { needle } => {
                self.need(tok, Scope::Admin, what)?;
                if !(8..=4096).contains(&needle.len()) {
                    return Err(error(Verdict::Invalid, "needle: 8 to 4096 bytes"));
                }
                let (scanned, matches) = crate::procfs::scan_processes(needle.as_bytes());
                Ok(reply(
                    Verdict::Ok,
                    json!({"scanned": scanned, "matches": matches}),
                ))
            }
            Call::DropCaches => {
                self.need(tok, Scope::Admin, what)?;
                nix::unistd::sync();
                std::fs::write("/proc/sys/vm/drop_caches", "3")
                    .map_err(|e| error(Verdict::Failed, format!("dropping caches: {e}")))?;
                Ok(reply(Verdict::Ok, json!({"dropped": true})))
            }
            Call::KillNetServices => {
                self.need(tok, Scope::Admin, what)?;
                match crate::host::get().kill_net_services() {
                    Some(pid) => Ok(reply(
                        Verdict::Ok,
                        json!({"killed": pid, "restarts": crate::host::get().net_services_restarts()}),
                    )),
                    None => Err(error(
                        Verdict::Conflict,
                        "the network services process is not running",
                    )),
                }
            }
            Call::ReadConsole { name } => {
                self.need(tok, Scope::Admin, what)?;
                let log = crate::layout::data_dir(&name).join("console.log");
                let text = console::tail(&log, 64 << 10)
                    .map_err(|e| error(Verdict::NotFound, format!("no console of {name}: {e}")))?;
                Ok(reply(Verdict::Ok, json!({"name": name, "console": text})))
            }
            Call::ProbeDisk { id } => {
                self.need(tok, Scope::Admin, what)?;
                if crate::workspaces::pid(&id).is_some() {
                    return Err(error(
                        Verdict::Conflict,
                        format!("{id} is running; stop it first"),
                    ));
                }
                let disk = crate::layout::data_dir(&id).join("disk.img");
                if !disk.is_file() {
                    return Err(error(
                        Verdict::NotFound,
                        format!("no disk of {id} on the data partition"),
                    ));
                }
                match runner::probe_disk(&id, &disk) {
                    Ok((ext4, table)) => Ok(reply(
                        Verdict::Ok,
                        json!({"opened": true, "ext4": ext4, "table": table}),
                    )),
                    Err(e) => Ok(reply(
                        Verdict::Ok,
                        json!({"opened": false, "error": e.to_string()}),
                    )),
                }
            }
            other => Err(absent(&other)),
        }
    }
}
