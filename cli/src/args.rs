//! The command line. Spellings are an interface: scripts and the
//! appliance tests drive `paddock` with them, so none may change.
//!
//! Where a command's flags are exactly the fields of the JSON body it
//! sends and no shared type exists for that body, the flags' struct is
//! the body (it derives `Serialize`), so its shape is written once.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use paddock_api_types::{Egress, Scope, SecretPlace};
use serde::Serialize;
use std::path::PathBuf;

/// How long a workspace lives when `create` is not told.
pub const DEFAULT_TTL_S: u64 = 3600;

#[derive(Debug, Parser)]
#[command(
    name = "paddock",
    version,
    about = "The command-line client of a Paddock appliance's API",
    after_help = "The configuration lives in $PADDOCK_CONFIG (default ~/.config/paddock/config.json).",
    arg_required_else_help = true
)]
pub struct Cli {
    /// Print the appliance's JSON answers as they come (for scripts)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pin the appliance's certificate and save the token
    Login {
        /// https://HOST[:PORT] (port 8443 when left out)
        url: String,
        /// An API token
        token: String,
        /// The SHA-256 of the appliance's certificate, from its console (32
        /// hex bytes, colons optional); without it, login prints what the
        /// appliance presents and stops
        #[arg(long, value_name = "SHA256", value_parser = fingerprint)]
        fingerprint: Option<String>,
    },
    /// Create a workspace and print its id
    Create(CreateArgs),
    /// List workspaces
    Ls {
        /// Only those with this label (repeatable: all must match)
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
    },
    /// Run a command in a workspace: streams its output, exits with its code
    Exec(ExecArgs),
    /// An interactive terminal in a workspace, like ssh: raw mode, resized
    /// with the window, exits with the shell's code; Ctrl-] detaches
    Shell(ShellArgs),
    /// Copy a file into or out of a workspace
    #[command(after_help = "Exactly one of SRC and DST is ID:/path inside the workspace.")]
    Cp { src: String, dst: String },
    /// Stop a workspace (its disk stays)
    Stop { id: String },
    /// Pause a running workspace: its memory and processes kept, encrypted,
    /// until `resume` (deleted after --ttl seconds paused, default a day)
    Pause {
        id: String,
        /// Seconds it may stay paused before it is deleted
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
    },
    /// Resume a paused workspace where it was
    Resume { id: String },
    /// Delete a workspace
    Rm { id: String },
    /// New rate limits for a running workspace (admin)
    Limits {
        id: String,
        #[command(flatten)]
        limits: LimitsRequest,
    },
    /// Replace a workspace's egress allowlist (admin); with none given it
    /// reaches nothing
    Egress {
        id: String,
        #[command(flatten)]
        allow: AllowArgs,
    },
    /// Private links: FROM may connect to TO on PORT (admin, or a token whose policy allows
    /// or asks for links)
    #[command(subcommand)]
    Link(LinkCommand),
    /// Reach a workspace port from the uplink (admin, or a token whose policy allows or asks)
    Publish {
        id: String,
        #[command(flatten)]
        port: PublishRequest,
    },
    /// Stop publishing a workspace port
    Unpublish { id: String, port: u16 },
    /// End a running workspace SECONDS from now (past the token's max_ttl_s, its policy says
    /// whether that is refused, asked for or done)
    Ttl {
        id: String,
        #[command(flatten)]
        ttl: TtlArgs,
    },
    /// Freeze a workspace, revoke its tokens, take a forensic snapshot (admin)
    Quarantine { id: String },
    /// Download a file of a forensic snapshot, checked against its manifest;
    /// or `forensics rm ID` (admin)
    Forensics(ForensicsArgs),
    /// API tokens (admin)
    #[command(subcommand)]
    Token(TokenCommand),
    /// The API's TLS certificate (admin)
    #[command(subcommand)]
    Tls(TlsCommand),
    /// How the disk keys are held (sealed to the TPM, locked, ...)
    Keys {
        #[command(subcommand)]
        command: Option<KeysCommand>,
    },
    /// The box: version, uptime, TLS fingerprint, disk keys, data partition
    /// use, host CPU and memory (admin)
    System {
        #[command(subcommand)]
        command: Option<SystemCommand>,
    },
    /// The audit log
    Events(EventsArgs),
    /// Where a workspace connected: its lookups and proxied connections, counted per minute
    NetLog(NetLogArgs),
    /// What to review before trusting a workspace's output: commands, signals, network, changed files
    Report { id: String },
    /// What waits for a person: destinations workspaces asked for at http://paddock.internal,
    /// and actions tokens asked for (every one for an admin, your own asks for any other token);
    /// pending ones unless --all, or one approval by its id
    Approvals {
        #[arg(long)]
        all: bool,
        id: Option<String>,
    },
    /// A workspace's brokered secrets: names, hosts, placeholders (never values)
    Secrets(SecretsArgs),
    /// Add, rotate or remove a brokered secret: the egress proxy puts it into the
    /// workspace's requests to named hosts, the workspace only ever holds a placeholder
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Approve a pending approval (admin): a destination joins the workspace's allowlist for
    /// --ttl, an asked-for action is done (a port or a link taken back after --ttl)
    Approve {
        id: String,
        /// Seconds it holds (10 to 604800)
        #[arg(long, value_name = "S", default_value_t = 3600)]
        ttl: u64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a pending approval (admin)
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Serve the workspace tools to agents over MCP: on stdio as the saved session's token, or
    /// with --listen over streamable HTTP as each client's own bearer token
    Mcp(McpArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Serve MCP's streamable HTTP transport at http://ADDR/mcp instead of stdio (a loopback
    /// address, e.g. 127.0.0.1:8808; port 0 picks one). Each client sends a Paddock token as
    /// `Authorization: Bearer`; the saved session gives only the appliance's URL and pin
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Seconds it lives
    #[arg(long, value_name = "S", default_value_t = DEFAULT_TTL_S)]
    pub ttl: u64,
    #[arg(long, value_name = "N")]
    pub vcpus: Option<u32>,
    #[arg(long, value_name = "N")]
    pub memory_mib: Option<u64>,
    #[arg(long, value_name = "N")]
    pub disk_mib: Option<u64>,
    /// A label (repeatable)
    #[arg(long = "label", value_name = "K=V", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// A variable for its commands (repeatable); never shown back
    #[arg(long = "env", value_name = "K=V", value_parser = key_value)]
    pub env: Vec<(String, String)>,
    #[command(flatten)]
    pub allow: AllowArgs,
    /// Brokered secrets, as a JSON object of NAME: {"value", "hosts", "header",
    /// "format", "replace_in", "allow_plain_http", "upstream_ca"} (value and
    /// hosts required; `-` reads it from stdin). A file, not flags, so values
    /// stay out of argv and shell history
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
}

/// What a workspace may reach; nothing unless named.
#[derive(Debug, Args)]
pub struct AllowArgs {
    /// A domain it may reach (repeatable)
    #[arg(long = "allow", value_name = "DOMAIN[:PORTS]")]
    pub domains: Vec<String>,
    /// A network it may reach (repeatable)
    #[arg(long = "allow-cidr", value_name = "NET:PORTS")]
    pub cidrs: Vec<String>,
}

impl AllowArgs {
    pub fn egress(self) -> Egress {
        Egress {
            domains: self.domains,
            cidrs: self.cidrs,
        }
    }
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run as root instead of the workspace's user
    #[arg(long)]
    pub root: bool,
    /// Seconds before the command is killed
    #[arg(long, value_name = "S")]
    pub timeout: Option<u64>,
    pub id: String,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Run as root instead of the workspace's user
    #[arg(long)]
    pub root: bool,
    /// Reattach to a terminal left with Ctrl-] (its pid)
    #[arg(long, value_name = "PID", conflicts_with_all = ["root", "command"])]
    pub attach: Option<u32>,
    pub id: String,
    /// What to run instead of a login shell, after `--`
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The body of `POST /v1/workspaces/{id}/limits`: only what is given.
#[derive(Debug, Args, Serialize)]
pub struct LimitsRequest {
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_mib_per_s: Option<u64>,
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_iops: Option<u64>,
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_mib_per_s: Option<u64>,
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_connections_per_s: Option<u64>,
}

/// The body of `POST /v1/workspaces/{id}/ports`.
#[derive(Debug, Args, Serialize)]
pub struct PublishRequest {
    /// The workspace's port
    pub port: u16,
    /// The uplink's port (the appliance picks one when left out)
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// Why, for the admin who approves it when this token may only ask
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `POST /v1/workspaces/{id}/ttl`.
#[derive(Debug, Args, Serialize)]
pub struct TtlArgs {
    /// Seconds from now
    #[serde(rename = "ttl_s")]
    pub seconds: u64,
    /// Why, for the admin who approves it when this token may only ask
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// List the links
    Ls,
    /// Let FROM connect to TO on PORT
    Add(LinkRequest),
    /// Remove a link
    Rm { link: String },
}

/// The body of `POST /v1/links`.
#[derive(Debug, Args, Serialize)]
pub struct LinkRequest {
    pub from: String,
    pub to: String,
    pub port: u16,
    /// Why, for the admin who approves it when this token may only ask
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Either `forensics ID FILE DEST` or `forensics rm ID`: `rm` is read as
/// the subcommand, anything else as a workspace id.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ForensicsArgs {
    #[command(subcommand)]
    pub command: Option<ForensicsCommand>,
    #[arg(required = true)]
    pub id: Option<String>,
    #[arg(value_enum, required = true)]
    pub file: Option<SnapshotFile>,
    /// Where to save it
    #[arg(required = true)]
    pub dest: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ForensicsCommand {
    /// Delete a workspace's snapshot (nothing else ever does)
    Rm { id: String },
}

/// The files of a snapshot, named as the API's paths name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SnapshotFile {
    Manifest,
    Memory,
    Disk,
    Audit,
    Network,
}

impl SnapshotFile {
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// The actions a token's policy names (`actions` in the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum YellowAction {
    /// A TTL past its max_ttl_s
    ExtendTtl,
    PublishPort,
    Link,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token, below the one you use; its secret is shown once
    Create {
        name: String,
        /// What it may do (repeatable)
        #[arg(long = "scope", value_name = "SCOPE", value_parser = scope())]
        scopes: Vec<Scope>,
        /// Seconds it lives
        #[arg(long, value_name = "S")]
        ttl: Option<u64>,
        /// A label (repeatable)
        #[arg(long = "label", value_name = "K=V", value_parser = key_value)]
        labels: Vec<(String, String)>,
        /// A secret in E2B's API-key shape (`e2b_` + 40 hex), for E2B's SDKs
        #[arg(long)]
        e2b: bool,
        /// The longest a workspace it creates or extends may live, in seconds
        #[arg(long, value_name = "S")]
        max_ttl: Option<u64>,
        /// A yellow action it may do alone (repeatable)
        #[arg(long = "allow", value_name = "ACTION")]
        allow: Vec<YellowAction>,
        /// A yellow action it may ask an admin for (repeatable)
        #[arg(long = "ask", value_name = "ACTION")]
        ask: Vec<YellowAction>,
    },
    /// List tokens
    Ls,
    /// Revoke a token and those it minted
    Revoke { id: String },
    /// A new secret for a token (tok_bootstrap: the admin credential)
    Rotate { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// The API's certificate (PEM) as the pinned appliance presents it: for
    /// clients that verify against a file, such as E2B's SDK (SSL_CERT_FILE)
    Cert,
    /// A new TLS certificate for the API; pin its fingerprint again
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal locked disk keys to this boot state; reads the recovery
    /// secret from stdin
    Recover,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// The host's CPU, memory and load every 5 s over the last hour
    Metrics {
        /// Only samples from this Unix second on
        #[arg(long)]
        since: Option<u64>,
    },
    /// Install a signed update bundle into the slot this boot does not run
    /// (docs/updates.md); `paddock system` then shows its progress
    Update {
        /// The bundle (`just update-bundle` makes one)
        file: std::path::PathBuf,
        /// When to reboot into it: now, next-boot, or Unix seconds
        #[arg(long, default_value = "next-boot", value_parser = update_at)]
        at: String,
        /// Take a bundle that is not newer than the running version
        #[arg(long)]
        force: bool,
    },
    /// Save an encrypted backup of the box's state database and audit log
    /// (docs/runbook.md): opened later by this box's TPM, or anywhere with
    /// the box's recovery secret
    Backup {
        /// Where to write it (not overwritten if it exists)
        out: std::path::PathBuf,
    },
    /// Put a backup in place of this box's tokens, workspace records and
    /// audit history (a box with no workspaces, e.g. freshly flashed)
    Restore {
        /// The backup (`paddock system backup` made it)
        file: std::path::PathBuf,
        /// Read the recovery secret of the box that made it from stdin
        /// (when this box's TPM cannot open it)
        #[arg(long)]
        recovery_secret_stdin: bool,
    },
}

fn update_at(s: &str) -> Result<String, String> {
    if s == "now"
        || s == "next-boot"
        || (!s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()))
    {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?}: now, next-boot or Unix seconds"))
    }
}

#[derive(Debug, Args)]
#[command(after_help = "--json prints the appliance's answer, egress CA included.")]
pub struct SecretsArgs {
    pub id: String,
    /// Print only the CA (PEM) the workspace trusts for brokered hosts, even
    /// with --json: for tools in it that keep their own trust store
    #[arg(long)]
    pub ca: bool,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Add a secret, or rotate one (its placeholder stays); the value is read
    /// from stdin unless --value-file names a file, never from an argument
    Set(SecretSetArgs),
    /// Remove a secret: its placeholder goes nowhere any more
    Rm { id: String, name: String },
}

#[derive(Debug, Args)]
#[command(after_help = "One trailing newline of the value is dropped. \
Example: printf %s \"$KEY\" | paddock secret set ws_1 OPENAI_API_KEY \
--host api.openai.com --header Authorization --format 'Bearer {}'")]
pub struct SecretSetArgs {
    pub id: String,
    /// The variable its commands see the placeholder in
    pub name: String,
    /// A host it may be sent to (repeatable, 1 to 8; each on the workspace's
    /// egress allowlist)
    #[arg(long = "host", value_name = "HOST", required = true)]
    pub hosts: Vec<String>,
    /// A header the proxy sets on every request to those hosts
    #[arg(long, value_name = "NAME")]
    pub header: Option<String>,
    /// The header's value, `{}` standing for the secret (default `{}`)
    #[arg(long, value_name = "TEMPLATE", requires = "header")]
    pub format: Option<String>,
    /// Where the placeholder is replaced by the value (default headers)
    #[arg(long, value_name = "PLACES", value_delimiter = ',', value_parser = secret_place())]
    pub replace_in: Vec<SecretPlace>,
    /// Send it over plain HTTP too (otherwise only over TLS)
    #[arg(long)]
    pub allow_plain_http: bool,
    /// PEM certificates the real hosts must chain to instead of the public roots
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Read the value from this file instead of stdin
    #[arg(long, value_name = "FILE")]
    pub value_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events of this workspace
    #[arg(long, value_name = "ID")]
    pub workspace: Option<String>,
    /// Only events of this kind
    #[arg(long, value_name = "NAME")]
    pub event: Option<String>,
    /// At most this many, the newest
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct NetLogArgs {
    pub id: String,
    /// Only records whose window ends at or after this Unix second
    #[arg(long, value_name = "S")]
    pub since: Option<u64>,
    /// Only the denied ones
    #[arg(long, conflicts_with = "allowed")]
    pub denied: bool,
    /// Only the allowed ones
    #[arg(long)]
    pub allowed: bool,
    /// At most this many, the newest
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub limit: Option<u64>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("KEY=VALUE, not {s:?}"))
}

fn fingerprint(s: &str) -> Result<String, String> {
    crate::pinned::normalise(s).ok_or_else(|| "32 hex bytes, with or without colons".into())
}

/// Scopes by the names the API gives them, so the list cannot drift from
/// the shared type.
fn scope() -> impl TypedValueParser<Value = Scope> {
    let name = |s: &Scope| match serde_json::to_value(s) {
        Ok(serde_json::Value::String(n)) => n,
        _ => format!("{s:?}"),
    };
    PossibleValuesParser::new(Scope::ALL.iter().map(name)).try_map(|s: String| {
        serde_json::from_value::<Scope>(serde_json::Value::String(s)).map_err(|e| e.to_string())
    })
}

/// Where a secret's placeholder is replaced, by the names the API gives
/// them (read through the shared type, so the two cannot drift).
fn secret_place() -> impl TypedValueParser<Value = SecretPlace> {
    PossibleValuesParser::new(["headers", "query", "body"]).try_map(|s: String| {
        serde_json::from_value::<SecretPlace>(serde_json::Value::String(s))
            .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests;
