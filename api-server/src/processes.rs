//! Processes and terminals on the native API (docs/api.md, "Processes and
//! terminals"): `POST .../processes` starts one that outlives the call and
//! streams its events as NDJSON (`{"pid"}` first, then the exec's events);
//! `GET .../processes` lists them; `GET .../processes/{pid}/output`
//! watches one again from now on; `POST .../processes/{pid}/input` (the
//! body's bytes), `close-input`, `signal` and `resize` act on it. All need
//! the exec scope; input, closing, signals and watching are audited.

use crate::bridge::Exchange;
use crate::dirs::agent_refusal;
use crate::handling::{json_error, open_agent, read_json};
use crate::http;
use crate::routes::ProcessOp as Op;
use crate::shared::{call, Shared};
use crate::watch_stream::WatchFormat;
use paddock_agent_client::{AgentClient, Event};
use paddock_api_channel::{Call, ProcessAction, Purpose};
use paddock_api_types::{
    ExecEvent, ProcessInfo, ProcessList, ProcessRequest, PtySize, SignalRequest,
};
use paddock_proto::ProcRef;
use serde_json::Value;

/// Largest input in one call: keystrokes and pastes, not uploads.
const MAX_INPUT: u64 = 64 << 10;

/// The native stream: `{"pid"}`, output events, then the exit.
struct Ndjson;

fn line(event: &ExecEvent) -> Vec<u8> {
    // Only strings and numbers: it always serializes.
    let mut l = serde_json::to_vec(event).unwrap_or_default();
    l.push(b'\n');
    l
}

impl WatchFormat for Ndjson {
    fn content_type(&self) -> &'static str {
        "application/x-ndjson"
    }

    fn started(&mut self, pid: u32) -> Vec<u8> {
        line(&ExecEvent::Started { pid })
    }

    fn output(&mut self, event: Event) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        match event {
            Event::Stdout(d) => line(&ExecEvent::Stdout {
                stdout: b64.encode(d),
            }),
            Event::Stderr(d) => line(&ExecEvent::Stderr {
                stderr: b64.encode(d),
            }),
            Event::Exited(_) => Vec::new(),
        }
    }

    fn end(&mut self, result: &Result<paddock_proto::ExitStatus, String>) -> Vec<u8> {
        line(&match result {
            Ok(st) => ExecEvent::Exit {
                exit_code: st.code,
                signal: st.signal,
                timed_out: st.timed_out,
                duration_ms: 0,
            },
            Err(e) => ExecEvent::Error {
                error: e.clone(),
                duration_ms: 0,
            },
        })
    }
}

fn agent(
    shared: &Shared,
    bearer: &str,
    id: &str,
    action: ProcessAction,
    pid: Option<u32>,
) -> Result<AgentClient, (u16, Value)> {
    let purpose = Purpose::Process {
        action,
        pid,
        tag: None,
    };
    let (_, stream) = open_agent(shared, bearer, id, purpose)?;
    Ok(AgentClient::from_connected(stream))
}

pub fn handle(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
    op: Op,
) -> Option<(u16, Value)> {
    let bearer = &req.bearer;
    let done = |r: Result<(), (u16, Value)>| {
        Some(
            r.map(|()| (200, serde_json::json!({})))
                .unwrap_or_else(|e| e),
        )
    };
    match op {
        Op::Start => start(shared, req, io, id),
        Op::List => Some(list(shared, bearer, id).unwrap_or_else(|e| e)),
        Op::Output(pid) => {
            match agent(shared, bearer, id, ProcessAction::Attach, Some(pid))
                .and_then(|c| c.attach(ProcRef::Pid(pid)).map_err(agent_refusal))
            {
                Ok(watch) => {
                    crate::watch_stream::stream(io, watch, &mut Ndjson);
                    None
                }
                Err(e) => Some(e),
            }
        }
        Op::Input(pid) => {
            if req.content_length.unwrap_or(0) > MAX_INPUT {
                return Some(json_error(
                    413,
                    format!("input: at most {MAX_INPUT} bytes a call"),
                ));
            }
            let data = match http::read_body(req, &mut io.body, MAX_INPUT) {
                Ok(d) => d,
                Err(e) => return Some(crate::handling::body_refusal(e, "input")),
            };
            let action = ProcessAction::Input {
                bytes: data.len() as u64,
            };
            done(
                agent(shared, bearer, id, action, Some(pid))
                    .and_then(|c| c.input(ProcRef::Pid(pid), data).map_err(agent_refusal)),
            )
        }
        Op::CloseInput(pid) => done(
            agent(shared, bearer, id, ProcessAction::CloseInput, Some(pid))
                .and_then(|c| c.close_input(ProcRef::Pid(pid)).map_err(agent_refusal)),
        ),
        Op::Signal(pid) => {
            let r: SignalRequest = match read_json(req, io) {
                Ok(r) => r,
                Err(e) => return Some(e),
            };
            if !(1..=64).contains(&r.signal) {
                return Some(json_error(422, "signal: 1 to 64"));
            }
            let action = ProcessAction::Signal { signal: r.signal };
            done(
                agent(shared, bearer, id, action, Some(pid))
                    .and_then(|c| c.signal(ProcRef::Pid(pid), r.signal).map_err(agent_refusal)),
            )
        }
        Op::Resize(pid) => {
            let size: PtySize = match read_json(req, io) {
                Ok(r) => r,
                Err(e) => return Some(e),
            };
            let size = paddock_proto::PtySize {
                cols: size.cols,
                rows: size.rows,
            };
            done(
                agent(shared, bearer, id, ProcessAction::Resize, Some(pid))
                    .and_then(|c| c.resize(ProcRef::Pid(pid), size).map_err(agent_refusal)),
            )
        }
    }
}

/// The agent's list of processes within what an honest agent sends (256
/// processes, 4 KiB of argv each): a hostile guest's agent is cut there.
pub fn trusted_procs(
    procs: Vec<paddock_proto::ProcInfo>,
) -> impl Iterator<Item = paddock_proto::ProcInfo> {
    procs.into_iter().take(256).map(|mut p| {
        let mut bytes = 0;
        p.argv.retain(|a| {
            bytes += a.len();
            bytes <= 4096
        });
        p.tag = p.tag.filter(|t| t.len() <= 256);
        if p.cwd.len() > 4096 {
            let mut end = 4096;
            while !p.cwd.is_char_boundary(end) {
                end -= 1;
            }
            p.cwd.truncate(end);
        }
        p
    })
}

fn list(shared: &Shared, bearer: &str, id: &str) -> Result<(u16, Value), (u16, Value)> {
    let procs = agent(shared, bearer, id, ProcessAction::List, None)?
        .list_procs()
        .map_err(agent_refusal)?;
    let list = ProcessList {
        processes: trusted_procs(procs)
            .map(|p| ProcessInfo {
                pid: p.pid,
                tag: p.tag,
                argv: p.argv,
                cwd: p.cwd,
                pty: p.pty,
            })
            .collect(),
    };
    Ok((200, serde_json::to_value(list).unwrap_or_default()))
}

fn start(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
) -> Option<(u16, Value)> {
    let body: ProcessRequest = match read_json(req, io) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    let user = match crate::exec::check_command(&body.argv, body.env.len(), body.user.as_deref()) {
        Ok(u) => u,
        Err(e) => return Some(e),
    };
    if let Some(p) = body.pty {
        if !(1..=4096).contains(&p.cols) || !(1..=4096).contains(&p.rows) {
            return Some(json_error(422, "pty: cols and rows 1 to 4096"));
        }
    }
    let spawn = paddock_proto::SpawnRequest {
        exec: paddock_proto::ExecRequest {
            argv: body.argv,
            env: body.env.into_iter().collect(),
            cwd: body.cwd,
            user,
            stdin: body.stdin || body.pty.is_some(),
            timeout_ms: body.timeout_s.map(|s| s.saturating_mul(1000)),
        },
        tag: body.tag,
        pty: body.pty.map(|p| paddock_proto::PtySize {
            cols: p.cols,
            rows: p.rows,
        }),
    };
    spawn_and_stream(shared, &req.bearer, id, spawn, io, &mut Ndjson).err()
}

/// Starts `spawn` in workspace `id` as `bearer` (under the workspace's env,
/// which the call's own entries override, as an exec's), streams its
/// events in `format`, and audits its end when it ends while watched. The
/// refusal before the stream starts is returned; the native API and envd's
/// Start both start processes this way.
pub fn spawn_and_stream(
    shared: &Shared,
    bearer: &str,
    id: &str,
    mut spawn: paddock_proto::SpawnRequest,
    io: &mut Exchange,
    format: &mut dyn WatchFormat,
) -> Result<(), (u16, Value)> {
    let argv0 = spawn.exec.argv.first().cloned().unwrap_or_default();
    let command = paddock_api_channel::command_digest(&spawn.exec.argv);
    let purpose = Purpose::Exec {
        argv0: argv0.clone(),
        root: spawn.exec.user == paddock_proto::User::Root,
        terminal: spawn.pty.is_some(),
    };
    let (reply, stream) = open_agent(shared, bearer, id, purpose)?;
    let mut env: std::collections::BTreeMap<String, String> =
        serde_json::from_value(reply.get("env").cloned().unwrap_or_default()).unwrap_or_default();
    env.extend(std::mem::take(&mut spawn.exec.env));
    spawn.exec.env = env.into_iter().collect();
    let watch = AgentClient::from_connected(stream)
        .spawn(spawn)
        .map_err(agent_refusal)?;
    let started = std::time::Instant::now();
    if let Some(st) = crate::watch_stream::stream(io, watch, format) {
        let _ = call(
            shared,
            bearer,
            Call::ExecEnded {
                id: id.to_string(),
                argv0,
                exit_code: st.code,
                signal: st.signal,
                duration_ms: started.elapsed().as_millis() as u64,
                command,
            },
        );
    }
    Ok(())
}
