//! `paddock mcp` driven by the `mcp` Python package (pinned, from PyPI:
//! scripts/mcp-client.sh) as an agent framework would drive it: the
//! handshake, the tool list, and each tool on a booted appliance (a
//! workspace created, commands run to their end and in the background,
//! files written, read, listed and removed, its events, refusals as tool
//! errors), all through the CLI's saved, pinned session. Then the same
//! client over streamable HTTP (`paddock mcp --listen`), where each client
//! is its own bearer token: a sibling token cannot poll another's
//! background command or reach its workspace, and a wrong token, no token
//! or a foreign Host is turned away at the door.

use paddock_tests::appliance::Appliance;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const SCRIPT: &str = r#"
import asyncio, json, os, signal
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

# The client must never hang: the whole session has a deadline.
signal.alarm(900)

def say(*a):
    print(*a, flush=True)

def is_error(r):
    e = getattr(r, "isError", None)
    return getattr(r, "is_error", False) if e is None else e

async def main():
    params = StdioServerParameters(
        command=os.environ["PADDOCK_BIN"], args=["mcp"],
        env={"PADDOCK_CONFIG": os.environ["PADDOCK_CONFIG"]},
    )
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await asyncio.wait_for(s.initialize(), 60)
            tools = await asyncio.wait_for(s.list_tools(), 60)
            say("tools", ",".join(sorted(t.name for t in tools.tools)))

            async def call(name, **args):
                res = await asyncio.wait_for(s.call_tool(name, args), 600)
                text = res.content[0].text
                if is_error(res):
                    return True, text
                return False, json.loads(text)

            err, ws = await call("create_workspace", ttl_s=600, labels={"via": "mcp"})
            assert not err, ws
            wid = ws["id"]
            say("created", wid.startswith("ws_"), ws["labels"]["via"])
            err, r = await call("run_command", workspace_id=wid, command="echo hi; echo oops >&2; exit 4")
            say("run", err, r["exit_code"], r["stdout"].strip(), r["stderr"].strip())
            err, r = await call("run_command", workspace_id=wid, command="cat; id -un", stdin="piped|")
            say("stdin", r["stdout"].replace("\n", ""))
            err, r = await call("run_command", workspace_id=wid, command="id -un", user="root")
            say("root", r["stdout"].strip())
            err, r = await call("make_directory", workspace_id=wid, path="/tmp/m/n")
            say("mkdir", err)
            err, r = await call("write_file", workspace_id=wid, path="/tmp/m/a.txt", content="from mcp\n")
            say("write", err, r.get("bytes") if not err else r)
            err, r = await call("read_file", workspace_id=wid, path="/tmp/m/a.txt")
            say("read", repr(r["content"]), r["encoding"])
            err, r = await call("list_files", workspace_id=wid, path="/tmp/m")
            say("list", sorted(f"{e['name']}:{e['kind']}" for e in r["entries"]))
            err, r = await call("start_command", workspace_id=wid, command="for i in 1 2 3; do echo tick $i; sleep 1; done; exit 5")
            cid = r["command_id"]
            out, p = "", {}
            for _ in range(120):
                err, p = await call("get_command", command_id=cid, wait_s=5)
                out += p["stdout"]
                if not p["running"]:
                    break
            say("long", "|".join(out.split("\n")), p["exit_code"], p["running"])
            err, r = await call("remove_file", workspace_id=wid, path="/tmp/m", recursive=True)
            say("remove", err)
            err, r = await call("list_files", workspace_id=wid, path="/tmp/m")
            say("gone", err, "404" in r)
            err, r = await call("workspace_events", workspace_id=wid, limit=200)
            kinds = {e["event"] for e in r["events"]}
            say("events", all(k in kinds for k in ["workspace_created", "exec_started", "file_written", "file_changed"]))
            err, r = await call("run_command", workspace_id="ws_0000nosuch", command="true")
            say("missing", err)
            err, r = await call("run_command", workspace_id=wid)
            say("bad args", err, "command is required" in r)
            err, r = await call("run_command", workspace_id=wid, command="true", shell="bash")
            say("typo", err, "shell" in r)
            err, r = await call("pause_workspace", workspace_id=wid, ttl_s=0)
            say("pause bad ttl", err, "ttl_s" in r)
            err, r = await call("resume_workspace", workspace_id=wid)
            say("resume running", err, "only a paused workspace" in r)
            err, r = await call("delete_workspace", workspace_id=wid)
            say("deleted", err)

asyncio.run(main())
"#;

const HTTP_SCRIPT: &str = r#"
import asyncio, json, os, signal
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

signal.alarm(600)
URL = os.environ["MCP_URL"]

def say(*a):
    print(*a, flush=True)

def is_error(r):
    e = getattr(r, "isError", None)
    return getattr(r, "is_error", False) if e is None else e

class Agent:
    def __init__(self, token):
        self.token = token
    async def __aenter__(self):
        self.stack = contextlib.AsyncExitStack()
        http = await self.stack.enter_async_context(
            create_mcp_http_client(headers={"Authorization": f"Bearer {self.token}"}))
        streams = await self.stack.enter_async_context(streamable_http_client(URL, http_client=http))
        self.s = await self.stack.enter_async_context(ClientSession(streams[0], streams[1]))
        self.init = await asyncio.wait_for(self.s.initialize(), 60)
        return self
    async def __aexit__(self, *exc):
        await self.stack.aclose()
    async def call(self, name, **args):
        res = await asyncio.wait_for(self.s.call_tool(name, args), 600)
        text = res.content[0].text
        return (True, text) if is_error(res) else (False, json.loads(text))

import contextlib

async def raw(headers):
    async with create_mcp_http_client(headers=headers) as c:
        r = await asyncio.wait_for(c.post(URL, json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}},
            headers={"accept": "application/json, text/event-stream"}), 60)
        return r.status_code

async def main():
    async with Agent(os.environ["TOKEN_A"]) as a, Agent(os.environ["TOKEN_B"]) as b:
        say("http init", a.init.protocolVersion if hasattr(a.init, "protocolVersion") else a.init.protocol_version)
        err, ws = await a.call("create_workspace", ttl_s=600, labels={"via": "mcp-http"})
        assert not err, ws
        wid = ws["id"]
        err, r = await a.call("run_command", workspace_id=wid, command="echo over-http; id -un")
        say("http run", err, r["exit_code"], r["stdout"].replace("\n", "|"))
        err, r = await a.call("start_command", workspace_id=wid, command="sleep 20; echo late")
        cid = r["command_id"]
        # The sibling token: neither the background command nor the workspace.
        err1, r1 = await b.call("get_command", command_id=cid)
        err2, r2 = await b.call("run_command", workspace_id=wid, command="echo stolen")
        say("http sibling", err1, err2, "stolen" in str(r2))
        err, p = await a.call("get_command", command_id=cid)
        say("http own", err, p["running"])
        err, r = await a.call("delete_workspace", workspace_id=wid)
        say("http deleted", err)
    say("http refused", await raw({"Authorization": "Bearer pdk_not_a_token"}), await raw({}),
        await raw({"Authorization": f"Bearer {os.environ['TOKEN_A']}", "Host": "evil.example"}))

asyncio.run(main())
"#;

/// Runs HTTP_SCRIPT against `paddock mcp --listen` with two sibling tokens.
fn mcp_http_session(app: &Appliance, admin: &str, bin: &Path, config: &Path, scratch: &Path) {
    let python = std::env::var("PADDOCK_MCP_PYTHON").expect("PADDOCK_MCP_PYTHON");
    let mint = |name: &str| {
        let body = format!(
            r#"{{"name": "{name}", "scopes": ["create", "read", "exec", "files", "delete"]}}"#
        );
        let (code, minted) = app
            .api("POST", "/v1/tokens", admin, Some(body.as_bytes()))
            .expect("mint");
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&minted));
        let minted: serde_json::Value = serde_json::from_slice(&minted).expect("json");
        minted["secret"].as_str().expect("secret").to_string()
    };
    let (a, b) = (mint("mcp-http-a"), mint("mcp-http-b"));
    let mut server = Command::new(bin)
        .args(["mcp", "--listen", "127.0.0.1:0"])
        .env("PADDOCK_CONFIG", config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("paddock mcp --listen");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .expect("stderr");
        if let Some(url) = line.split(" at ").nth(1) {
            break url.trim().to_string();
        }
    };
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );
    let script = scratch.join("mcp_http_client.py");
    std::fs::write(&script, HTTP_SCRIPT).expect("script");
    let out = Command::new(python)
        .arg(&script)
        .env("MCP_URL", &url)
        .env("TOKEN_A", &a)
        .env("TOKEN_B", &b)
        .output()
        .expect("python");
    let _ = server.kill();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}\n{err}"))
            .to_string()
    };
    let init = line("http init ");
    assert!(
        init.starts_with("http init 20"),
        "a revision agreed: {init}"
    );
    assert_eq!(line("http run "), "http run False 0 over-http|agent|");
    assert_eq!(
        line("http sibling "),
        "http sibling True True False",
        "a sibling token reached another's command or workspace"
    );
    assert_eq!(line("http own "), "http own False True");
    assert_eq!(line("http deleted "), "http deleted False");
    assert_eq!(line("http refused "), "http refused 401 401 403");
}

/// Runs SCRIPT against `app` through `paddock mcp`, logged in as `admin`.
pub fn mcp_session(app: &Appliance, admin: &str, fingerprint: &str, scratch: &Path) {
    let python = std::env::var("PADDOCK_MCP_PYTHON").unwrap_or_else(|_| {
        panic!("PADDOCK_MCP_PYTHON is not set: the Justfile's test recipe sets it")
    });
    let config = scratch.join("mcp-config.json");
    let bin = crate::cli_login(app, admin, fingerprint, &config);
    let script = scratch.join("mcp_client.py");
    std::fs::write(&script, SCRIPT).expect("script");
    let out = Command::new(python)
        .arg(&script)
        .env("PADDOCK_BIN", &bin)
        .env("PADDOCK_CONFIG", &config)
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}\n{err}"))
            .to_string()
    };
    assert_eq!(
        line("tools "),
        "tools create_workspace,delete_workspace,get_command,list_files,list_workspaces,make_directory,pause_workspace,read_file,remove_file,resume_workspace,run_command,start_command,workspace_events,write_file"
    );
    assert_eq!(line("created "), "created True mcp");
    assert_eq!(line("run "), "run False 4 hi oops");
    assert_eq!(line("stdin "), "stdin piped|agent");
    assert_eq!(line("root "), "root root");
    assert_eq!(line("mkdir "), "mkdir False");
    assert_eq!(line("write "), "write False 9");
    assert_eq!(line("read "), "read 'from mcp\\n' utf-8");
    assert_eq!(line("list "), "list ['a.txt:file', 'n:dir']");
    assert_eq!(line("long "), "long tick 1|tick 2|tick 3| 5 False");
    assert_eq!(line("remove "), "remove False");
    assert_eq!(line("gone "), "gone True True");
    assert_eq!(line("events "), "events True");
    assert_eq!(line("missing "), "missing True");
    assert_eq!(line("bad args "), "bad args True True");
    assert_eq!(line("typo "), "typo True True");
    assert_eq!(line("pause bad ttl "), "pause bad ttl True True");
    assert_eq!(line("resume running "), "resume running True True");
    assert_eq!(line("deleted "), "deleted False");
    mcp_http_session(app, admin, &bin, &config, scratch);
}
