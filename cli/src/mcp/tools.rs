//! The MCP tools: each one's schema for the model, and its call on the
//! appliance's API. A tool that fails answers `isError` with the reason
//! (the API's own message), which the model reads and can act on.

use super::jobs::{self, Jobs, Outcome};
use crate::client::Api;
use crate::client::{api_error, enc, ws_path};
use paddock_api_types::ExecRequest;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest file read_file returns.
const MAX_READ: usize = 1 << 20;
/// Longest wait of get_command.
const MAX_WAIT_S: u64 = 30;
/// run_command's default limit; the longest any command may be given.
const DEFAULT_TIMEOUT_S: u64 = 120;
const MAX_TIMEOUT_S: u64 = 3600;

pub struct Tools {
    api: Arc<Api>,
    jobs: Jobs,
}

type Args<'a> = &'a Map<String, Value>;

fn id_schema() -> Value {
    json!({"type": "string", "description": "The workspace's id (ws_...)."})
}

fn user_schema() -> Value {
    json!({"type": "string", "enum": ["agent", "root"], "description": "Who runs it in the workspace (default agent; root needs the exec scope)."})
}

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": properties, "required": required, "additionalProperties": false},
    })
}

impl Tools {
    pub fn new(api: Arc<Api>) -> Tools {
        Tools {
            api,
            jobs: Jobs::default(),
        }
    }

    /// Whether a background command it started still runs.
    pub fn any_running(&self) -> bool {
        self.jobs.any_running()
    }

    pub fn list() -> Vec<Value> {
        let command =
            json!({"type": "string", "description": "A shell command line (run with sh -c)."});
        vec![
            tool(
                "create_workspace",
                "Create a workspace: a microVM with its own kernel, encrypted disk and deny-by-default egress. Returns it, with its id.",
                json!({
                    "template": {"type": "string", "description": "Template (default \"default\")."},
                    "ttl_s": {"type": "integer", "minimum": 1, "description": "Seconds it lives (default 3600)."},
                    "vcpus": {"type": "integer", "minimum": 1},
                    "memory_mib": {"type": "integer", "minimum": 64},
                    "disk_mib": {"type": "integer", "minimum": 64},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Environment for its commands (secrets stay out of answers)."},
                    "egress_domains": {"type": "array", "items": {"type": "string"}, "description": "Domains it may reach (nothing else)."},
                }),
                &[],
            ),
            tool("list_workspaces", "The workspaces this token sees, with their state and expiry.", json!({}), &[]),
            tool("delete_workspace", "Delete a workspace and its disk.", json!({"workspace_id": id_schema()}), &["workspace_id"]),
            tool(
                "pause_workspace",
                "Pause a running workspace: its memory, processes and disk kept (encrypted) and its TTL stopped until resume_workspace; deleted after ttl_s paused (default a day).",
                json!({"workspace_id": id_schema(), "ttl_s": {"type": "integer", "minimum": 1, "description": "Seconds it may stay paused."}}),
                &["workspace_id"],
            ),
            tool("resume_workspace", "Resume a paused workspace where it was.", json!({"workspace_id": id_schema()}), &["workspace_id"]),
            tool(
                "run_command",
                "Run a command in a workspace and wait for it: exit code, stdout and stderr (the first 256 KiB of each). For long commands use start_command.",
                json!({
                    "workspace_id": id_schema(), "command": command, "user": user_schema(),
                    "cwd": {"type": "string", "description": "Absolute working directory (default the user's home)."},
                    "timeout_s": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_S, "description": "Killed after this long (default 120)."},
                    "stdin": {"type": "string", "description": "Text given to it as its standard input."},
                }),
                &["workspace_id", "command"],
            ),
            tool(
                "start_command",
                "Start a long command in a workspace without waiting; returns a command_id for get_command.",
                json!({
                    "workspace_id": id_schema(), "command": command, "user": user_schema(),
                    "cwd": {"type": "string"},
                    "timeout_s": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_S, "description": "Killed after this long (default 3600)."},
                }),
                &["workspace_id", "command"],
            ),
            tool(
                "get_command",
                "A started command's output since the last call, and whether it is still running (then its exit code).",
                json!({
                    "command_id": {"type": "string"},
                    "wait_s": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_S, "description": "Wait up to this long for it to end (default 0)."},
                }),
                &["command_id"],
            ),
            tool(
                "read_file",
                "Read a file from a workspace (at most 1 MiB): its text, or base64 when it is not UTF-8.",
                json!({"workspace_id": id_schema(), "path": {"type": "string", "description": "Absolute path."}, "user": user_schema()}),
                &["workspace_id", "path"],
            ),
            tool(
                "write_file",
                "Write a file in a workspace (replacing it).",
                json!({
                    "workspace_id": id_schema(), "path": {"type": "string", "description": "Absolute path."},
                    "content": {"type": "string"},
                    "encoding": {"type": "string", "enum": ["utf-8", "base64"], "description": "How content is written (default utf-8)."},
                    "mode": {"type": "string", "pattern": "^[0-7]{3,4}$", "description": "Octal permissions (default 644)."},
                    "user": user_schema(),
                }),
                &["workspace_id", "path", "content"],
            ),
            tool(
                "list_files",
                "A directory's entries in a workspace: name, kind, size, mode, modification time.",
                json!({"workspace_id": id_schema(), "path": {"type": "string", "description": "Absolute path."}, "user": user_schema()}),
                &["workspace_id", "path"],
            ),
            tool(
                "remove_file",
                "Remove a file, or a directory (with all it holds when recursive).",
                json!({"workspace_id": id_schema(), "path": {"type": "string"}, "recursive": {"type": "boolean"}, "user": user_schema()}),
                &["workspace_id", "path"],
            ),
            tool(
                "make_directory",
                "Make a directory (and its parents) in a workspace.",
                json!({"workspace_id": id_schema(), "path": {"type": "string"}, "user": user_schema()}),
                &["workspace_id", "path"],
            ),
            tool(
                "workspace_events",
                "The workspace's recent audit events (created, commands, files, refusals), newest last. The audit log needs an admin token.",
                json!({"workspace_id": id_schema(), "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}),
                &["workspace_id"],
            ),
        ]
    }

    pub fn has(name: &str) -> bool {
        Tools::list().iter().any(|t| t["name"] == name)
    }

    /// A tool's result, as MCP's CallToolResult.
    pub fn call(&self, name: &str, args: &Value) -> Value {
        let empty = Map::new();
        let args = match args {
            Value::Object(m) => m,
            Value::Null => &empty,
            _ => return failure("arguments: an object".into()),
        };
        let done = match name {
            "create_workspace" => self.create(args),
            "list_workspaces" => self.json("GET", "/v1/workspaces", None),
            "delete_workspace" => {
                workspace(args).and_then(|id| self.json("DELETE", &ws_path(&id, ""), None))
            }
            "pause_workspace" => workspace(args).and_then(|id| {
                let ttl_s = match args.get("ttl_s") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_u64()
                            .filter(|t| *t > 0)
                            .ok_or("ttl_s: a whole number of seconds, at least 1")?,
                    ),
                };
                let body = serde_json::to_vec(&paddock_api_types::PauseRequest { ttl_s })
                    .map_err(|e| e.to_string())?;
                self.json("POST", &ws_path(&id, "/pause"), Some(&body))
            }),
            "resume_workspace" => {
                workspace(args).and_then(|id| self.json("POST", &ws_path(&id, "/resume"), None))
            }
            "run_command" => self.run(args),
            "start_command" => self.start(args),
            "get_command" => self.poll(args),
            "read_file" => self.read(args),
            "write_file" => self.write(args),
            "list_files" => self.file_call(args, "GET", "/dir", false),
            "make_directory" => self.file_call(args, "POST", "/dir", false),
            "remove_file" => self.file_call(args, "DELETE", "/files", true),
            "workspace_events" => self.events(args),
            other => Err(format!("no tool named {other:?}")),
        };
        match done {
            Ok(v) => json!({
                "content": [{"type": "text", "text": v.to_string()}],
                "structuredContent": v,
                "isError": false,
            }),
            Err(e) => failure(e),
        }
    }

    /// An API call's JSON answer, or its error as the API says it.
    fn json(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Value, String> {
        let answer = self
            .api
            .call(method, path, body)
            .map_err(|e| e.to_string())?;
        if !(200..300).contains(&answer.status) {
            return Err(api_error(&answer).to_string());
        }
        if answer.body.trim_ascii().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&answer.body).map_err(|e| format!("the API's answer: {e}"))
    }

    fn create(&self, args: Args) -> Result<Value, String> {
        let mut spec = Map::new();
        spec.insert("ttl_s".into(), json!(3600));
        for key in [
            "template",
            "ttl_s",
            "vcpus",
            "memory_mib",
            "disk_mib",
            "labels",
            "env",
        ] {
            if let Some(v) = args.get(key) {
                spec.insert(key.into(), v.clone());
            }
        }
        if let Some(d) = args.get("egress_domains") {
            spec.insert("egress".into(), json!({ "domains": d }));
        }
        unknown(
            args,
            &[
                "template",
                "ttl_s",
                "vcpus",
                "memory_mib",
                "disk_mib",
                "labels",
                "env",
                "egress_domains",
            ],
        )?;
        let body = Value::Object(spec).to_string();
        self.json("POST", "/v1/workspaces", Some(body.as_bytes()))
    }

    fn exec_request(args: Args, default_timeout: u64) -> Result<ExecRequest, String> {
        let command = text(args, "command")?;
        let timeout = match args.get("timeout_s") {
            None => default_timeout,
            Some(v) => v
                .as_u64()
                .filter(|t| (1..=MAX_TIMEOUT_S).contains(t))
                .ok_or(format!("timeout_s: 1 to {MAX_TIMEOUT_S}"))?,
        };
        let stdin = match args.get("stdin") {
            None => None,
            Some(Value::String(s)) => {
                use base64::Engine as _;
                Some(base64::engine::general_purpose::STANDARD.encode(s))
            }
            Some(_) => return Err("stdin: text".into()),
        };
        Ok(ExecRequest {
            argv: vec!["sh".into(), "-c".into(), command],
            user: user(args)?,
            cwd: args.get("cwd").and_then(Value::as_str).map(str::to_string),
            timeout_s: Some(timeout),
            stdin,
            ..ExecRequest::default()
        })
    }

    fn run(&self, args: Args) -> Result<Value, String> {
        let id = workspace(args)?;
        unknown(
            args,
            &[
                "workspace_id",
                "command",
                "user",
                "cwd",
                "timeout_s",
                "stdin",
            ],
        )?;
        let req = Tools::exec_request(args, DEFAULT_TIMEOUT_S)?;
        let out = Mutex::new(Outcome::default());
        jobs::exec(&self.api, &id, &req, &out);
        let o = out.into_inner().unwrap_or_else(|p| p.into_inner());
        if let (Some(e), None, None) = (&o.error, o.exit_code, o.signal) {
            return Err(e.clone());
        }
        Ok(outcome(&o, &o.stdout, &o.stderr))
    }

    fn start(&self, args: Args) -> Result<Value, String> {
        let id = workspace(args)?;
        unknown(
            args,
            &["workspace_id", "command", "user", "cwd", "timeout_s"],
        )?;
        let req = Tools::exec_request(args, MAX_TIMEOUT_S)?;
        let command = text(args, "command")?;
        let cmd = self.jobs.start(self.api.clone(), id, command, req)?;
        Ok(json!({"command_id": cmd, "running": true}))
    }

    fn poll(&self, args: Args) -> Result<Value, String> {
        let cmd = text(args, "command_id")?;
        let wait = match args.get("wait_s") {
            None => 0,
            Some(v) => v
                .as_u64()
                .filter(|w| *w <= MAX_WAIT_S)
                .ok_or(format!("wait_s: 0 to {MAX_WAIT_S}"))?,
        };
        let p = self
            .jobs
            .poll(&cmd, Duration::from_secs(wait))
            .ok_or(format!("no command {cmd:?} (started by this server)"))?;
        let mut v = outcome(&p.outcome, &p.stdout, &p.stderr);
        v["command_id"] = json!(cmd);
        v["workspace_id"] = json!(p.workspace);
        v["command"] = json!(p.command);
        v["running"] = json!(p.running);
        v["seconds"] = json!((p.seconds * 10.0).round() / 10.0);
        if let (false, Some(e)) = (p.running, &p.outcome.error) {
            v["error"] = json!(e);
        }
        Ok(v)
    }

    fn read(&self, args: Args) -> Result<Value, String> {
        let id = workspace(args)?;
        unknown(args, &["workspace_id", "path", "user"])?;
        let path = abs_path(args)?;
        let q = user_query(args)?;
        let mut r = self
            .api
            .request(
                "GET",
                &ws_path(&id, &format!("/files?path={}{q}", enc(&path))),
                None,
            )
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            let body = r.body_up_to(64 << 10).unwrap_or_default();
            let answer = crate::client::Answer {
                status: r.status,
                body,
            };
            return Err(api_error(&answer).to_string());
        }
        // Refused before it is read when it is too big: a workspace may
        // hold a file of any size.
        let body = r
            .body_up_to(MAX_READ as u64)
            .map_err(|e| format!("{path}: {e}; read_file returns at most {MAX_READ} bytes"))?;
        let size = body.len();
        Ok(match String::from_utf8(body) {
            Ok(text) => json!({"path": path, "size": size, "encoding": "utf-8", "content": text}),
            Err(e) => {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD.encode(e.into_bytes());
                json!({"path": path, "size": size, "encoding": "base64", "content": b64})
            }
        })
    }

    fn write(&self, args: Args) -> Result<Value, String> {
        let id = workspace(args)?;
        unknown(
            args,
            &[
                "workspace_id",
                "path",
                "content",
                "encoding",
                "mode",
                "user",
            ],
        )?;
        let path = abs_path(args)?;
        let content = text(args, "content")?;
        let bytes = match args.get("encoding").and_then(Value::as_str) {
            None | Some("utf-8") => content.into_bytes(),
            Some("base64") => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(content)
                    .map_err(|e| format!("content: not base64: {e}"))?
            }
            Some(other) => return Err(format!("encoding: utf-8 or base64, not {other:?}")),
        };
        let mode = match args.get("mode").and_then(Value::as_str) {
            None => String::new(),
            Some(m) => format!("&mode={}", enc(m)),
        };
        let q = user_query(args)?;
        let p = ws_path(&id, &format!("/files?path={}{mode}{q}", enc(&path)));
        self.json("PUT", &p, Some(&bytes))
    }

    /// A directory or removal call: `path` and `user` (and, for a removal,
    /// `recursive`) as the query.
    fn file_call(
        &self,
        args: Args,
        method: &str,
        what: &str,
        removal: bool,
    ) -> Result<Value, String> {
        let id = workspace(args)?;
        if removal {
            unknown(args, &["workspace_id", "path", "user", "recursive"])?;
        } else {
            unknown(args, &["workspace_id", "path", "user"])?;
        }
        let extra = match args.get("recursive") {
            None | Some(Value::Bool(false)) => "",
            Some(Value::Bool(true)) => "&recursive=true",
            Some(_) => return Err("recursive: true or false".into()),
        };
        let path = abs_path(args)?;
        let q = user_query(args)?;
        let p = ws_path(&id, &format!("{what}?path={}{q}{extra}", enc(&path)));
        self.json(method, &p, None)
    }

    fn events(&self, args: Args) -> Result<Value, String> {
        let id = workspace(args)?;
        unknown(args, &["workspace_id", "limit"])?;
        let limit = match args.get("limit") {
            None => 50,
            Some(v) => v
                .as_u64()
                .filter(|l| (1..=1000).contains(l))
                .ok_or("limit: 1 to 1000")?,
        };
        self.json(
            "GET",
            &format!("/v1/audit?workspace={}&limit={limit}", enc(&id)),
            None,
        )
    }
}

fn failure(message: String) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

/// A command's outcome for the model.
fn outcome(o: &Outcome, stdout: &[u8], stderr: &[u8]) -> Value {
    let mut v = json!({
        "exit_code": o.exit_code,
        "stdout": String::from_utf8_lossy(stdout),
        "stderr": String::from_utf8_lossy(stderr),
    });
    if let Some(s) = o.signal {
        v["signal"] = json!(s);
    }
    if o.timed_out {
        v["timed_out"] = json!(true);
    }
    if o.dropped > 0 {
        v["output_dropped_bytes"] = json!(o.dropped);
    }
    v
}

fn text(args: Args, key: &str) -> Result<String, String> {
    match args.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!("{key}: a non-empty string")),
        None => Err(format!("{key} is required")),
    }
}

fn workspace(args: Args) -> Result<String, String> {
    let id = text(args, "workspace_id")?;
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("workspace_id: {id:?} is not a workspace id"));
    }
    Ok(id)
}

fn abs_path(args: Args) -> Result<String, String> {
    let path = text(args, "path")?;
    if !path.starts_with('/') {
        return Err(format!("path: {path:?} must be absolute"));
    }
    Ok(path)
}

fn user(args: Args) -> Result<Option<String>, String> {
    match args.get("user").map(|u| u.as_str()) {
        None => Ok(None),
        Some(Some(u @ ("agent" | "root"))) => Ok(Some(u.to_string())),
        Some(_) => Err("user: \"agent\" or \"root\"".into()),
    }
}

fn user_query(args: Args) -> Result<String, String> {
    Ok(match user(args)? {
        Some(u) => format!("&user={u}"),
        None => String::new(),
    })
}

/// Arguments the tool does not take are refused, not ignored: a model's
/// typo should not pass silently.
fn unknown(args: Args, known: &[&str]) -> Result<(), String> {
    match args.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{k}: not an argument of this tool (it takes {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}
