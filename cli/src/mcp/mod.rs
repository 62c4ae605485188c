//! `paddock mcp`: a Model Context Protocol server on stdio (or streamable
//! HTTP on loopback: mcp::http), so agent
//! frameworks reach Paddock's workspaces as tools. JSON-RPC 2.0, one
//! message per line (MCP's stdio transport), the `initialize` handshake of
//! the protocol revisions in `VERSIONS`; the tools (mcp::tools) call the
//! appliance's API with the saved session's token, so the token's scopes
//! and limits are the agent's. Hand-written rather than a framework: the
//! protocol's stdio part is a handful of messages, and the CLI stays one
//! small static binary.

mod auth;
pub mod http;
mod jobs;
mod tools;

use crate::client::Api;
use crate::CliError;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::sync::Arc;

/// The revisions this server speaks, newest first: a client asking for
/// one of them gets it, any other the newest.
const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Longest message taken (a write_file's content is in one).
const MAX_LINE: usize = 48 << 20;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Serves stdin/stdout until stdin ends.
pub fn serve(api: Api) -> Result<(), CliError> {
    let server = tools::Tools::new(Arc::new(api));
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = read_line(&mut input, &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if let Some(answer) = handle(&server, text) {
            let mut out = std::io::stdout().lock();
            // Serialized JSON holds no raw newline: one message, one line.
            let mut bytes = answer.to_string().into_bytes();
            bytes.push(b'\n');
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .map_err(|e| CliError::Api(format!("writing to stdout: {e}")))?;
        }
    }
}

/// One line, at most MAX_LINE bytes (a longer one is an error for the
/// client, and skipped).
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> Result<usize, CliError> {
    let mut total = 0;
    loop {
        let buf = input
            .fill_buf()
            .map_err(|e| CliError::Api(format!("reading stdin: {e}")))?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take <= MAX_LINE {
            line.extend_from_slice(&buf[..take]);
        } else {
            // Kept short so it parses as an error below.
            line.clear();
            line.extend_from_slice(b"\x00too long");
        }
        input.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// The answer to one message; None for a notification.
fn handle(tools: &tools::Tools, text: &[u8]) -> Option<Value> {
    let msg: Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(error(
                Value::Null,
                PARSE_ERROR,
                format!("not JSON (or over {MAX_LINE} bytes): {e}"),
            ))
        }
    };
    let Some(obj) = msg.as_object() else {
        return Some(error(
            Value::Null,
            INVALID_REQUEST,
            "a message is one JSON object (batches are not part of MCP)",
        ));
    };
    let method = obj.get("method").and_then(Value::as_str);
    let id = obj.get("id").cloned();
    let (Some(method), Some(id)) = (method, id) else {
        // A notification (no id) or an answer to us (we ask nothing).
        return None;
    };
    let params = obj.get("params").cloned().unwrap_or(json!({}));
    let result = match method {
        "initialize" => Ok(initialize(&params)),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools::Tools::list() })),
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str);
            let args = params.get("arguments").cloned().unwrap_or(json!({}));
            match name {
                Some(name) if tools::Tools::has(name) => Ok(tools.call(name, &args)),
                Some(name) => Err((INVALID_PARAMS, format!("no tool named {name:?}"))),
                None => Err((INVALID_PARAMS, "params.name: which tool".to_string())),
            }
        }
        other => Err((
            METHOD_NOT_FOUND,
            format!("{other} is not a method this server has"),
        )),
    };
    Some(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => error(id, code, message),
    })
}

fn initialize(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .filter(|v| VERSIONS.contains(v))
        .unwrap_or(VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "paddock", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "Paddock workspaces are microVMs with their own kernel, an encrypted disk and deny-by-default egress. Create one, run commands in it (run_command, or start_command then get_command for long ones), move files, and delete it when done; it also ends at its ttl_s.",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> tools::Tools {
        tools::Tools::new(Arc::new(Api {
            host: "127.0.0.1".into(),
            // Nothing listens: a tool that calls the API fails, cleanly.
            port: 1,
            token: String::new(),
            pin: crate::pinned::Pinned::new(None),
        }))
    }

    fn ask(text: &str) -> Option<Value> {
        handle(&tools(), text.as_bytes())
    }

    #[test]
    fn the_handshake_agrees_on_a_revision() {
        let a = ask(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#)
            .expect("answer");
        assert_eq!(a["id"], 1);
        assert_eq!(a["result"]["protocolVersion"], "2025-06-18");
        assert!(a["result"]["capabilities"]["tools"].is_object());
        let a = ask(r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}"#)
            .expect("answer");
        assert_eq!(a["result"]["protocolVersion"], VERSIONS[0]);
        assert!(ask(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_none());
    }

    #[test]
    fn malformed_messages_get_the_protocol_errors() {
        assert_eq!(
            ask("{not json").expect("answer")["error"]["code"],
            PARSE_ERROR
        );
        assert_eq!(
            ask("[1,2]").expect("answer")["error"]["code"],
            INVALID_REQUEST
        );
        let a = ask(r#"{"jsonrpc":"2.0","id":"x","method":"resources/list"}"#).expect("answer");
        assert_eq!(
            (a["id"].clone(), a["error"]["code"].clone()),
            (json!("x"), json!(METHOD_NOT_FOUND))
        );
        let a = ask(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope"}}"#)
            .expect("answer");
        assert_eq!(a["error"]["code"], INVALID_PARAMS);
    }

    #[test]
    fn every_tool_is_listed_with_an_object_schema_and_bad_arguments_are_tool_errors() {
        let a = ask(r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#).expect("answer");
        let list = a["result"]["tools"].as_array().expect("tools");
        assert!(list.len() >= 10);
        for t in list {
            assert_eq!(t["inputSchema"]["type"], "object", "{t}");
            assert!(
                t["description"].as_str().is_some_and(|d| d.len() > 20),
                "{t}"
            );
        }
        // A missing argument is the tool's error, said to the model.
        let a = ask(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"run_command","arguments":{}}}"#)
            .expect("answer");
        assert_eq!(a["result"]["isError"], true);
        let text = a["result"]["content"][0]["text"].as_str().expect("text");
        assert!(text.contains("workspace_id"), "{text}");
        // An unreachable appliance, too.
        let a = ask(
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"list_workspaces"}}"#,
        )
        .expect("answer");
        assert_eq!(a["result"]["isError"], true);
    }
}
