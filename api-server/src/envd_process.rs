//! E2B's envd process service (`process.Process/*`, Connect with JSON),
//! on the agent's spawned processes: Start and Connect stream a process's
//! events; List, SendInput, StreamInput, CloseStdin, SendSignal and Update
//! act on one by pid or tag. A started process outlives the call that
//! started it (E2B's background commands), bounded by the call's own
//! `Connect-Timeout-Ms` as envd bounds it; all of it needs the exec scope.

use crate::bridge::Exchange;
use crate::connect::{self, frame, refuse, rpc_error, unary_body, CONTENT_TYPE, END_STREAM};
use crate::http;
use crate::shared::Shared;
use crate::watch_stream::WatchFormat;
use paddock_agent_client::{AgentClient, Event, Watch};
use paddock_api_channel::{ProcessAction, Purpose};
use paddock_proto::{ProcRef, PtySize, SpawnRequest, User};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct ProcessConfig {
    cmd: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
}

#[derive(Deserialize)]
struct Size {
    #[serde(default)]
    cols: u16,
    #[serde(default)]
    rows: u16,
}

#[derive(Deserialize)]
struct Pty {
    size: Option<Size>,
}

#[derive(Deserialize)]
struct StartRequest {
    process: ProcessConfig,
    #[serde(default)]
    pty: Option<Pty>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    stdin: Option<bool>,
}

/// `{"pid": N}` or `{"tag": "..."}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Selector {
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    tag: Option<String>,
}

impl Selector {
    fn to_ref(&self) -> Result<ProcRef, (u16, Value)> {
        match (self.pid, &self.tag) {
            (Some(pid), None) => Ok(ProcRef::Pid(pid)),
            (None, Some(tag)) => Ok(ProcRef::Tag(tag.clone())),
            _ => Err(rpc_error(400, "process: name it by pid or by tag")),
        }
    }
}

#[derive(Deserialize)]
struct Selected {
    process: Selector,
}

/// `{"stdin": b64}` or `{"pty": b64}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    pty: Option<String>,
}

impl Input {
    fn bytes(&self) -> Result<Vec<u8>, (u16, Value)> {
        use base64::Engine as _;
        let text = match (&self.stdin, &self.pty) {
            (Some(t), None) | (None, Some(t)) => t,
            _ => return Err(rpc_error(400, "input: stdin or pty, one of them")),
        };
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| rpc_error(400, format!("input: not base64: {e}")))
    }
}

#[derive(Deserialize)]
struct SendInput {
    process: Selector,
    input: Input,
}

#[derive(Deserialize)]
struct SendSignal {
    process: Selector,
    signal: Value,
}

#[derive(Deserialize)]
struct Update {
    process: Selector,
    #[serde(default)]
    pty: Option<Pty>,
}

/// Largest message of an input stream (its data base64): the stream is
/// read a message at a time, so this bounds what one holds.
const MAX_INPUT_MESSAGE: usize = 64 << 10;

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, (u16, Value)> {
    serde_json::from_value(v).map_err(|e| rpc_error(400, e.to_string()))
}

/// One `process.Process` method.
pub fn rpc(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
    method: &str,
) -> Option<(u16, Value)> {
    match method {
        "Start" => start(shared, req, io, id),
        "Connect" => connect(shared, req, io, id),
        "StreamInput" => stream_input(shared, req, io, id),
        _ => Some(unary(shared, req, io, id, method).unwrap_or_else(|e| e)),
    }
}

/// An agent connection for a process operation, as `bearer`.
fn agent(
    shared: &Shared,
    bearer: &str,
    id: &str,
    purpose: Purpose,
) -> Result<(Value, AgentClient), (u16, Value)> {
    crate::handling::open_agent(shared, bearer, id, purpose)
        .map(|(reply, stream)| (reply, AgentClient::from_connected(stream)))
        .map_err(|(status, body)| rpc_error(status, body["error"].as_str().unwrap_or("refused")))
}

fn process_purpose(action: ProcessAction, to: &ProcRef) -> Purpose {
    let (pid, tag) = match to {
        ProcRef::Pid(p) => (Some(*p), None),
        ProcRef::Tag(t) => (None, Some(t.clone())),
    };
    Purpose::Process { action, pid, tag }
}

fn unary(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
    method: &str,
) -> Result<(u16, Value), (u16, Value)> {
    let body: Value = unary_body(req, io)?;
    match method {
        "List" => {
            let purpose = Purpose::Process {
                action: ProcessAction::List,
                pid: None,
                tag: None,
            };
            let (_, client) = agent(shared, &req.bearer, id, purpose)?;
            let procs = client.list_procs().map_err(connect::agent_error)?;
            let processes: Vec<Value> = crate::processes::trusted_procs(procs)
                .map(|p| {
                    let (cmd, args) = p
                        .argv
                        .split_first()
                        .map_or((String::new(), &[][..]), |(c, a)| (c.clone(), a));
                    // The environment is left out: it holds the
                    // workspace's secrets.
                    let mut info = json!({
                        "config": {"cmd": cmd, "args": args, "envs": {}, "cwd": p.cwd},
                        "pid": p.pid,
                    });
                    if let Some(tag) = p.tag {
                        info["tag"] = json!(tag);
                    }
                    info
                })
                .collect();
            Ok((200, json!({ "processes": processes })))
        }
        "SendInput" => {
            let r: SendInput = parse(body)?;
            let to = r.process.to_ref()?;
            let data = r.input.bytes()?;
            let action = ProcessAction::Input {
                bytes: data.len() as u64,
            };
            let (_, client) = agent(shared, &req.bearer, id, process_purpose(action, &to))?;
            client.input(to, data).map_err(connect::agent_error)?;
            Ok((200, json!({})))
        }
        "CloseStdin" => {
            let r: Selected = parse(body)?;
            let to = r.process.to_ref()?;
            let purpose = process_purpose(ProcessAction::CloseInput, &to);
            let (_, client) = agent(shared, &req.bearer, id, purpose)?;
            client.close_input(to).map_err(connect::agent_error)?;
            Ok((200, json!({})))
        }
        "SendSignal" => {
            let r: SendSignal = parse(body)?;
            let to = r.process.to_ref()?;
            let signal = match &r.signal {
                Value::String(s) if s == "SIGNAL_SIGKILL" => 9,
                Value::String(s) if s == "SIGNAL_SIGTERM" => 15,
                Value::Number(n) if n.as_u64() == Some(9) || n.as_u64() == Some(15) => {
                    n.as_u64().unwrap_or(15) as i32
                }
                other => {
                    return Err(rpc_error(
                        400,
                        format!("signal: SIGNAL_SIGKILL or SIGNAL_SIGTERM, not {other}"),
                    ))
                }
            };
            let purpose = process_purpose(ProcessAction::Signal { signal }, &to);
            let (_, client) = agent(shared, &req.bearer, id, purpose)?;
            client.signal(to, signal).map_err(connect::agent_error)?;
            Ok((200, json!({})))
        }
        "Update" => {
            let r: Update = parse(body)?;
            let to = r.process.to_ref()?;
            let Some(size) = r.pty.and_then(|p| p.size) else {
                // Nothing to change.
                return Ok((200, json!({})));
            };
            let purpose = process_purpose(ProcessAction::Resize, &to);
            let (_, client) = agent(shared, &req.bearer, id, purpose)?;
            let size = PtySize {
                cols: size.cols,
                rows: size.rows,
            };
            client.resize(to, size).map_err(connect::agent_error)?;
            Ok((200, json!({})))
        }
        other => Err(rpc_error(
            404,
            format!("process.Process/{other} is not a method envd serves"),
        )),
    }
}

/// `Start`: spawns the process and streams its events.
fn start(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
) -> Option<(u16, Value)> {
    let message = match connect::stream_request(req, io) {
        Ok(m) => m,
        Err((status, body)) => {
            refuse(
                io,
                status,
                body["message"].as_str().unwrap_or("bad request"),
            );
            return None;
        }
    };
    let start: StartRequest = match crate::handling::parse_json(&message) {
        Ok(s) => s,
        Err((status, body)) => {
            refuse(io, status, body["error"].as_str().unwrap_or("StartRequest"));
            return None;
        }
    };
    drop(message);
    let p = start.process;
    if p.args.len() > 4096 || p.envs.len() > 4096 || p.cmd.is_empty() {
        refuse(io, 400, "a cmd, at most 4096 args and 4096 envs");
        return None;
    }
    let pty = match start.pty {
        None => None,
        Some(Pty { size: Some(s) }) => Some(PtySize {
            cols: s.cols,
            rows: s.rows,
        }),
        Some(Pty { size: None }) => {
            refuse(io, 400, "pty: a size (cols, rows)");
            return None;
        }
    };
    let mut argv = vec![p.cmd];
    argv.extend(p.args);
    let spawn = SpawnRequest {
        exec: paddock_proto::ExecRequest {
            argv,
            env: p.envs.into_iter().collect(),
            cwd: p.cwd.filter(|c| !c.is_empty()),
            user: if connect::envd_root(req) {
                User::Root
            } else {
                User::Agent
            },
            // envd's default when the request does not say (older SDKs).
            stdin: start.stdin.unwrap_or(true) || pty.is_some(),
            timeout_ms: req.connect_timeout_ms.filter(|t| *t > 0),
        },
        tag: start.tag,
        pty,
    };
    let mut format = ConnectEvents {
        pty: spawn.pty.is_some(),
    };
    let spawned =
        crate::processes::spawn_and_stream(shared, &req.bearer, id, spawn, io, &mut format);
    if let Err((status, body)) = spawned {
        refuse(io, status, body["error"].as_str().unwrap_or("refused"));
    }
    None
}

/// `Connect`: streams a running process's events from now on.
fn connect(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
) -> Option<(u16, Value)> {
    let message = match connect::stream_request(req, io) {
        Ok(m) => m,
        Err((status, body)) => {
            refuse(
                io,
                status,
                body["message"].as_str().unwrap_or("bad request"),
            );
            return None;
        }
    };
    let to = match serde_json::from_slice::<Selected>(&message)
        .map_err(|e| rpc_error(400, e.to_string()))
        .and_then(|s| s.process.to_ref())
    {
        Ok(to) => to,
        Err((status, body)) => {
            refuse(
                io,
                status,
                body["message"].as_str().unwrap_or("ConnectRequest"),
            );
            return None;
        }
    };
    // Whether it runs on a terminal decides how its output is labelled
    // (the SDK's terminal handle reads only `pty` data).
    let list = Purpose::Process {
        action: ProcessAction::List,
        pid: None,
        tag: None,
    };
    let pty = agent(shared, &req.bearer, id, list)
        .and_then(|(_, client)| client.list_procs().map_err(connect::agent_error))
        .map(|procs| {
            procs.iter().any(|p| {
                p.pty
                    && match &to {
                        ProcRef::Pid(pid) => p.pid == *pid,
                        ProcRef::Tag(tag) => p.tag.as_ref() == Some(tag),
                    }
            })
        });
    let watched = pty.and_then(|pty| {
        let (_, client) = agent(
            shared,
            &req.bearer,
            id,
            process_purpose(ProcessAction::Attach, &to),
        )?;
        Ok((client.attach(to).map_err(connect::agent_error)?, pty))
    });
    match watched {
        Ok((watch, pty)) => {
            stream_events(io, watch, pty);
        }
        Err((status, body)) => refuse(io, status, body["message"].as_str().unwrap_or("refused")),
    }
    None
}

/// envd's process events: start, data (stdout, stderr, or pty for a
/// terminal), end, in Connect messages.
struct ConnectEvents {
    pty: bool,
}

impl WatchFormat for ConnectEvents {
    fn content_type(&self) -> &'static str {
        CONTENT_TYPE
    }

    fn started(&mut self, pid: u32) -> Vec<u8> {
        frame(0, &json!({"event": {"start": {"pid": pid}}}))
    }

    fn output(&mut self, event: Event) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let piece = match event {
            Event::Stdout(d) if self.pty => json!({"pty": b64.encode(d)}),
            Event::Stdout(d) => json!({"stdout": b64.encode(d)}),
            Event::Stderr(d) => json!({"stderr": b64.encode(d)}),
            Event::Exited(_) => return Vec::new(),
        };
        frame(0, &json!({"event": {"data": piece}}))
    }

    fn end(&mut self, result: &Result<paddock_proto::ExitStatus, String>) -> Vec<u8> {
        match result {
            // The call's own deadline passed (it is the process's too): as
            // envd, the stream ends with deadline_exceeded, which the SDK
            // raises as its TimeoutException.
            Ok(st) if st.timed_out => frame(
                END_STREAM,
                &json!({"error": {"code": "deadline_exceeded", "message": "the command ran past its timeout and was killed"}}),
            ),
            Ok(st) => {
                let mut out = frame(0, &json!({"event": {"end": connect::end_event(st)}}));
                out.extend(frame(END_STREAM, &json!({})));
                out
            }
            Err(e) => frame(
                END_STREAM,
                &json!({"error": {"code": "unavailable", "message": e}}),
            ),
        }
    }
}

fn stream_events(io: &mut Exchange, watch: Watch, pty: bool) -> Option<paddock_proto::ExitStatus> {
    crate::watch_stream::stream(io, watch, &mut ConnectEvents { pty })
}

/// `StreamInput` (client stream): a start naming the process, then data
/// events, each fed to it as it comes.
fn stream_input(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
) -> Option<(u16, Value)> {
    #[derive(Deserialize)]
    struct Start {
        process: Selector,
    }
    #[derive(Deserialize)]
    struct Data {
        input: Input,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Message {
        Start(Start),
        Data(Data),
        Keepalive(serde::de::IgnoredAny),
    }
    if req.content_type.as_deref() != Some(CONTENT_TYPE) {
        refuse(
            io,
            415,
            "StreamInput is a Connect stream (application/connect+json)",
        );
        return None;
    }
    let mut to: Option<ProcRef> = None;
    let outcome = loop {
        let message = match connect::next_message(&mut io.body, MAX_INPUT_MESSAGE) {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(e) => break Err(rpc_error(400, e)),
        };
        let parsed: Message = match crate::handling::parse_json(&message) {
            Ok(m) => m,
            Err((status, body)) => {
                break Err(rpc_error(
                    status,
                    body["error"].as_str().unwrap_or("StreamInputRequest"),
                ))
            }
        };
        let step = match (parsed, &to) {
            // The key's right to the process is checked at once, before
            // any input is read.
            (Message::Start(s), None) => s.process.to_ref().and_then(|r| {
                let check = Purpose::Process {
                    action: ProcessAction::List,
                    pid: None,
                    tag: None,
                };
                agent(shared, &req.bearer, id, check)?;
                to = Some(r);
                Ok(())
            }),
            (Message::Start(_), Some(_)) => Err(rpc_error(400, "one start per stream")),
            (Message::Data(_), None) => Err(rpc_error(400, "a start comes first")),
            (Message::Data(d), Some(target)) => d.input.bytes().and_then(|data| {
                let action = ProcessAction::Input {
                    bytes: data.len() as u64,
                };
                let (_, client) = agent(shared, &req.bearer, id, process_purpose(action, target))?;
                client
                    .input(target.clone(), data)
                    .map_err(connect::agent_error)
            }),
            (Message::Keepalive(_), _) => Ok(()),
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    let last = match outcome {
        Ok(()) => {
            let mut out = frame(0, &json!({}));
            out.extend(frame(END_STREAM, &json!({})));
            out
        }
        Err((_, body)) => frame(END_STREAM, &json!({ "error": body })),
    };
    if http::start_stream(&mut io.out, CONTENT_TYPE).is_ok() && io.out.send(&last).is_ok() {
        io.out.finish();
    }
    None
}
