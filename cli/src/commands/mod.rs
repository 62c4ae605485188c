//! What each command sends, and how it shows the answer: under `--json`
//! the appliance's JSON exactly as it came, for scripts; otherwise a line
//! or a table read from the answer's shared type where one exists.

mod admin;
mod review;
mod secrets;
mod shell;
mod system;
mod workspace;

use crate::args::{Cli, Command};
use crate::client::{Answer, Api, ClientError};
use crate::{config, CliError};
use clap::CommandFactory;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;
use std::process::ExitCode;

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let json = cli.json;
    // Only login and completions run without a saved session.
    let ctx = || config::load().map(|api| Ctx { api, json });
    match cli.command {
        Command::Login {
            url,
            token,
            fingerprint,
        } => config::login(url, token, fingerprint),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "paddock",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Exec(args) => return workspace::exec(&ctx()?, args),
        Command::Shell(args) => return shell::shell(ctx()?, args),
        Command::Create(args) => workspace::create(&ctx()?, args),
        Command::Ls { labels } => workspace::ls(&ctx()?, &labels),
        Command::Cp { src, dst } => workspace::cp(&ctx()?, &src, &dst),
        Command::Stop { id } => ctx()?.call("POST", &ws_path(&id, "/stop")).map(drop),
        Command::Pause { id, ttl } => workspace::pause(&ctx()?, &id, ttl),
        Command::Resume { id } => workspace::resume(&ctx()?, &id),
        Command::Rm { id } => ctx()?.call("DELETE", &ws_path(&id, "")).map(drop),
        Command::Limits { id, limits } => workspace::limits(&ctx()?, &id, &limits),
        Command::Egress { id, allow } => workspace::egress(&ctx()?, &id, allow),
        Command::Publish { id, port } => workspace::publish(&ctx()?, &id, &port),
        Command::Ttl { id, ttl } => workspace::ttl(&ctx()?, &id, &ttl),
        Command::Unpublish { id, port } => ctx()?
            .call("DELETE", &ws_path(&id, &format!("/ports/{port}")))
            .map(drop),
        Command::Quarantine { id } => workspace::quarantine(&ctx()?, &id),
        Command::Link(cmd) => admin::link(&ctx()?, cmd),
        Command::Forensics(args) => admin::forensics(&ctx()?, args),
        Command::Token(cmd) => admin::token(&ctx()?, cmd),
        Command::Tls(cmd) => admin::tls(&ctx()?, cmd),
        Command::Keys { command } => admin::keys(&ctx()?, command),
        Command::System { command } => system::system(&ctx()?, command),
        Command::Events(args) => admin::events(&ctx()?, &args),
        Command::NetLog(args) => review::net_log(&ctx()?, &args),
        Command::Report { id } => review::report(&ctx()?, &id),
        Command::Secrets(args) => secrets::list(&ctx()?, &args),
        Command::Secret(cmd) => secrets::secret(&ctx()?, cmd),
        Command::Approvals { all, id } => review::approvals(&ctx()?, all, id.as_deref()),
        Command::Approve { id, ttl, reason } => {
            review::decide(&ctx()?, &id, true, Some(ttl), reason)
        }
        Command::Deny { id, reason } => review::decide(&ctx()?, &id, false, None, reason),
        Command::Mcp(args) => match args.listen {
            None => crate::mcp::serve(config::load()?),
            Some(addr) => {
                crate::mcp::http::serve(addr, config::load()?, crate::mcp::http::Limits::default())
            }
        },
    }
    .map(|()| ExitCode::SUCCESS)
}

/// The appliance and how to show its answers.
pub struct Ctx {
    pub api: Api,
    pub json: bool,
}

impl Ctx {
    /// A request without a body; the body of its 2xx answer.
    pub fn call(&self, method: &str, path: &str) -> Result<Vec<u8>, CliError> {
        ok(self.api.call(method, path, None)?)
    }

    /// A request with `body` as JSON; the body of its 2xx answer.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Vec<u8>, CliError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| CliError::Api(format!("shaping the request: {e}")))?;
        ok(self.api.call(method, path, Some(&bytes))?)
    }

    /// A request with `body` as JSON that a token's policy may turn into
    /// an ask: the 2xx body, and whether it was (202) an approval.
    pub fn send_or_ask(
        &self,
        method: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<(Vec<u8>, bool), CliError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| CliError::Api(format!("shaping the request: {e}")))?;
        let answer = self.api.call(method, path, Some(&bytes))?;
        let asked = answer.status == 202;
        Ok((ok(answer)?, asked))
    }

    /// An answer that was an ask: the approval, and how to follow it.
    pub fn show_asked(&self, body: &[u8]) -> Result<(), CliError> {
        self.show(body, |a: paddock_api_types::Approval| {
            println!(
                "asked: approval {} ({}) waits for an admin; `paddock approvals {}` shows it",
                a.id,
                a.action.kind(),
                a.id
            )
        })
    }

    /// Under `--json` the answer as sent (if it is JSON at all), else
    /// `human` of it read as a `T`.
    pub fn show<T: DeserializeOwned>(
        &self,
        body: &[u8],
        human: impl FnOnce(T),
    ) -> Result<(), CliError> {
        if self.json {
            let text = body.trim_ascii();
            let text: &[u8] = if text.is_empty() { b"null" } else { text };
            parse::<IgnoredAny>(text)?;
            // JSON that parsed is UTF-8.
            println!("{}", String::from_utf8_lossy(text));
        } else {
            human(parse(body)?);
        }
        Ok(())
    }
}

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, CliError> {
    serde_json::from_slice(body)
        .map_err(|e| ClientError::Protocol(format!("not the JSON expected: {e}")).into())
}

/// The body of a 2xx answer; any other answer as the error it carries.
pub fn ok(answer: Answer) -> Result<Vec<u8>, CliError> {
    if (200..300).contains(&answer.status) {
        Ok(answer.body)
    } else {
        Err(api_error(&answer))
    }
}

pub use crate::client::{api_error, enc, ws_path};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_and_errors() {
        assert_eq!(enc("/tmp/a b&c"), "/tmp/a%20b%26c");
        assert_eq!(ws_path("ws 1", "/stop"), "/v1/workspaces/ws%201/stop");
        let err = |status, body: &[u8]| {
            api_error(&Answer {
                status,
                body: body.to_vec(),
            })
            .to_string()
        };
        assert_eq!(
            err(404, br#"{"error":"no such workspace"}"#),
            "404: no such workspace"
        );
        assert_eq!(err(502, b"Bad Gateway\n"), "502: Bad Gateway");
        assert_eq!(err(500, b""), "500: (an empty answer)");
    }
}
