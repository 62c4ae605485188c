//! Exec: a command run in a workspace through its agent, its output
//! streamed to the client as it comes. The native API streams NDJSON
//! (`POST /v1/workspaces/{id}/exec`); E2B's envd streams Connect messages
//! (crate::envd). One runner serves both, each with its own `ExecFormat`.

use crate::admission::Permits;
use crate::bridge::Exchange;
use crate::handling::{body_refusal, json_error, open_agent, parse_json};
use crate::http;
use crate::shared::{call, Shared};
use paddock_api_channel::{Call, Purpose};
use paddock_api_types::ExecEvent;
use serde_json::Value;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Largest exec request: it carries the command's stdin (base64), which
/// goes to the agent, not over the channel to host-init.
pub const MAX_EXEC_JSON: u64 = 1 << 20;
/// Exec bodies over the channel-sized JSON cap read at once in the whole
/// process: raw and parsed (several times the raw size), a few of them is
/// tens of MiB; more than this at once get 503 rather than pushing the
/// process toward its memory.max.
static LARGE_BODIES: Permits = Permits::new(8);

/// A permit to read a body the size of `req`'s, when it may be large (one
/// of unknown length may be); None when too many are being read at once.
pub fn large_body_permit(req: &http::Request) -> Option<Option<crate::admission::Permit<'static>>> {
    let large =
        req.chunked || req.content_length.unwrap_or(0) > crate::handling::MAX_FORWARDED_JSON;
    match large.then(|| LARGE_BODIES.take(Duration::ZERO)) {
        Some(None) => None,
        Some(Some(permit)) => Some(Some(permit)),
        None => Some(None),
    }
}
/// Most entries in an exec's `env`.
const MAX_ENV: usize = 4096;

/// How one exec's stream is written: its content type, a piece for each
/// output chunk, and its end.
pub trait ExecFormat {
    fn content_type(&self) -> &'static str;
    /// What goes out before any output (envd's start event).
    fn start(&mut self) -> Vec<u8> {
        Vec::new()
    }
    fn output(&mut self, out: paddock_agent_client::Output<'_>) -> Vec<u8>;
    /// The last piece: the exit status, or why the exec failed.
    fn end(
        &mut self,
        result: &Result<paddock_proto::ExitStatus, String>,
        duration_ms: u64,
    ) -> Vec<u8>;
}

/// The native stream: {"stdout": b64} / {"stderr": b64} events, then
/// {"exit_code", "signal", "timed_out", "duration_ms"}.
pub struct Ndjson;

impl ExecFormat for Ndjson {
    fn content_type(&self) -> &'static str {
        "application/x-ndjson"
    }

    fn output(&mut self, out: paddock_agent_client::Output<'_>) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        ndjson_line(&match out {
            paddock_agent_client::Output::Stdout(d) => ExecEvent::Stdout {
                stdout: b64.encode(d),
            },
            paddock_agent_client::Output::Stderr(d) => ExecEvent::Stderr {
                stderr: b64.encode(d),
            },
        })
    }

    fn end(
        &mut self,
        result: &Result<paddock_proto::ExitStatus, String>,
        duration_ms: u64,
    ) -> Vec<u8> {
        ndjson_line(&match result {
            Ok(st) => ExecEvent::Exit {
                exit_code: st.code,
                signal: st.signal,
                timed_out: st.timed_out,
                duration_ms,
            },
            Err(e) => ExecEvent::Error {
                error: e.clone(),
                duration_ms,
            },
        })
    }
}

/// One line of an exec's NDJSON stream.
fn ndjson_line(event: &ExecEvent) -> Vec<u8> {
    // An ExecEvent holds only strings and numbers: it always serializes.
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    line
}

/// `POST /v1/workspaces/{id}/exec`: the body read and parsed, then run.
pub fn exec(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
) -> Option<(u16, Value)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    // A body of unknown length may be large.
    let large =
        req.chunked || req.content_length.unwrap_or(0) > crate::handling::MAX_FORWARDED_JSON;
    let large = match large.then(|| LARGE_BODIES.take(Duration::ZERO)) {
        Some(None) => {
            return Some(json_error(
                503,
                "too many large exec requests are being read at once; retry shortly",
            ))
        }
        Some(Some(permit)) => Some(permit),
        None => None,
    };
    let raw = match http::read_body(req, &mut io.body, MAX_EXEC_JSON) {
        Ok(b) => b,
        Err(e) => return Some(body_refusal(e, "exec request")),
    };
    // Parsed straight into its type: no intermediate JSON tree.
    let mut body: paddock_api_types::ExecRequest = match parse_json(&raw) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    drop(raw);
    let stdin = match body.stdin.take().map(|s| b64.decode(s)) {
        None => None,
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => return Some(json_error(422, format!("stdin: not base64: {e}"))),
    };
    let stdin = stdin.map(|bytes| Stdin {
        bytes: std::io::Cursor::new(bytes),
        large,
    });
    run(shared, &req.bearer, id, body, stdin, io, &mut Ndjson)
}

/// Runs `body` in workspace `id` as `bearer`, streaming its output in
/// `format`. A refusal before the stream starts is returned (the caller
/// answers it); after, it ends the stream.
/// A command's argv, env size and user, checked as every API checks them;
/// the user it runs as.
pub fn check_command(
    argv: &[String],
    env: usize,
    user: Option<&str>,
) -> Result<paddock_proto::User, (u16, Value)> {
    if argv.is_empty() || argv.len() > 4096 || argv.iter().any(|a| a.contains('\0')) {
        return Err(json_error(
            422,
            "argv: 1 to 4096 arguments without NUL bytes",
        ));
    }
    if env > MAX_ENV {
        return Err(json_error(422, format!("env: at most {MAX_ENV} variables")));
    }
    match user {
        None | Some("agent") => Ok(paddock_proto::User::Agent),
        Some("root") => Ok(paddock_proto::User::Root),
        Some(other) => Err(json_error(
            422,
            format!("user: {other:?} is not \"agent\" or \"root\""),
        )),
    }
}

pub fn run(
    shared: &Shared,
    bearer: &str,
    id: &str,
    body: paddock_api_types::ExecRequest,
    stdin: Option<Stdin>,
    io: &mut Exchange,
    format: &mut dyn ExecFormat,
) -> Option<(u16, Value)> {
    let user = match check_command(&body.argv, body.env.len(), body.user.as_deref()) {
        Ok(u) => u,
        Err(refusal) => return Some(refusal),
    };
    let argv0 = body.argv[0].clone();
    let command = paddock_api_channel::command_digest(&body.argv);
    let purpose = Purpose::Exec {
        argv0: argv0.clone(),
        root: user == paddock_proto::User::Root,
        terminal: false,
    };
    let (reply, stream) = match open_agent(shared, bearer, id, purpose) {
        Ok(r) => r,
        Err(refusal) => return Some(refusal),
    };
    let mut env: std::collections::BTreeMap<String, String> =
        serde_json::from_value(reply.get("env").cloned().unwrap_or_default()).unwrap_or_default();
    env.extend(body.env);
    let request = paddock_proto::ExecRequest {
        argv: body.argv,
        env: env.into_iter().collect(),
        cwd: body.cwd,
        user,
        stdin: stdin.is_some(),
        timeout_ms: body.timeout_s.map(|s| s.saturating_mul(1000)),
    };
    let started = std::time::Instant::now();
    // Ending the agent session ends the command (the agent kills what a
    // session leaves behind): done when the client is gone, so a long exec
    // never outlives the client that holds its tenant's slot.
    let agent_end = match stream.try_clone() {
        Ok(a) => Arc::new(a),
        Err(_) => return Some(json_error(503, "out of descriptors; retry shortly")),
    };
    if http::start_stream(&mut io.out, format.content_type()).is_err() {
        return None;
    }
    let first = format.start();
    if !first.is_empty() && io.out.send(&first).is_err() {
        return None;
    }
    let client = paddock_agent_client::AgentClient::from_connected(stream);
    let input = stdin.map(|s| Box::new(s) as Box<dyn Read + Send>);
    // The client hanging up (or resetting its HTTP/2 stream) drops the
    // answer's body, which ends the agent session even while the command
    // prints nothing; `done` stops the watcher when the exec is over.
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    if let Some(gone) = io.out.gone() {
        let agent = agent_end.clone();
        io.out.runtime().spawn(async move {
            tokio::select! {
                _ = gone => {
                    let _ = agent.shutdown(std::net::Shutdown::Both);
                }
                _ = finished => {}
            }
        });
    }
    let out = &mut io.out;
    let result = {
        let mut client_gone = false;
        let result = client.exec(request, input, |o| {
            let piece = format.output(o);
            if !client_gone {
                if let Err(e) = out.send(&piece) {
                    // Said, so a stream cut short can be told from a
                    // command that printed nothing (an appliance test saw
                    // one under load and nothing said why).
                    log::info!("exec in {id}: its answer was cut off: {e}");
                    client_gone = true;
                    let _ = agent_end.shutdown(std::net::Shutdown::Both);
                }
            }
        });
        drop(done);
        result.map_err(|e| e.to_string())
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let last = format.end(&result, duration_ms);
    match io.out.send(&last) {
        Ok(()) => io.out.finish(),
        Err(e) => log::info!("exec in {id}: its last line was not sent: {e}"),
    }
    let (exit_code, signal) = match &result {
        Ok(st) => (st.code, st.signal),
        Err(_) => (None, None),
    };
    let _ = call(
        shared,
        bearer,
        Call::ExecEnded {
            id: id.to_string(),
            argv0,
            exit_code,
            signal,
            duration_ms,
            command,
        },
    );
    None
}

/// An exec's stdin, held until the agent has taken it all: then its memory
/// and its `LARGE_BODIES` permit (if it came in a large request) go back.
pub struct Stdin {
    bytes: std::io::Cursor<Vec<u8>>,
    large: Option<crate::admission::Permit<'static>>,
}

impl std::io::Read for Stdin {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.bytes.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.bytes = std::io::Cursor::new(Vec::new());
            self.large = None;
        }
        Ok(n)
    }
}
