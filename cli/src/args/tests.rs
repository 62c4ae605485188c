//! The command line as scripts and the appliance tests write it.

use super::*;
use clap::error::ErrorKind;
use clap::CommandFactory;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("paddock").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn refused(args: &[&str]) -> ErrorKind {
    match Cli::try_parse_from(std::iter::once("paddock").chain(args.iter().copied())) {
        Ok(c) => panic!("{args:?} parsed as {c:?}"),
        Err(e) => e.kind(),
    }
}

#[test]
fn the_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn exec_takes_everything_after_the_dashes_as_the_command() {
    let cli = parse(&["exec", "--root", "ws_1", "--", "sh", "-c", "x", "--json"]);
    assert!(!cli.json, "--json after -- is the command's");
    let Command::Exec(e) = cli.command else {
        panic!("{cli:?}")
    };
    assert!(e.root);
    assert_eq!(e.id, "ws_1");
    assert_eq!(e.command, ["sh", "-c", "x", "--json"]);
    let Command::Exec(e) = parse(&["exec", "ws_1", "--timeout", "5", "--", "true"]).command else {
        panic!()
    };
    assert_eq!((e.timeout, e.root), (Some(5), false));
    assert_eq!(
        refused(&["exec", "ws_1", "true"]),
        ErrorKind::UnknownArgument
    );
    assert_eq!(
        refused(&["exec", "ws_1", "--"]),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn json_is_global_before_or_after_the_command() {
    assert!(parse(&["--json", "events", "--workspace", "ws_1"]).json);
    let cli = parse(&["events", "--workspace", "ws_1", "--limit", "5", "--json"]);
    assert!(cli.json);
    let Command::Events(e) = cli.command else {
        panic!()
    };
    assert_eq!(e.workspace.as_deref(), Some("ws_1"));
    assert_eq!((e.event, e.limit), (None, Some(5)));
    assert!(!parse(&["ls"]).json);
}

#[test]
fn create_flags_repeat_and_default() {
    let cli = parse(&[
        "create",
        "--ttl",
        "900",
        "--memory-mib",
        "256",
        "--disk-mib",
        "512",
        "--label",
        "via=cli",
        "--label",
        "a=b=c",
        "--env",
        "K=V",
        "--allow",
        "pypi.org",
        "--allow",
        "*.example.com:443",
        "--allow-cidr",
        "203.0.113.0/24:8080",
    ]);
    let Command::Create(c) = cli.command else {
        panic!()
    };
    assert_eq!(
        (c.ttl, c.vcpus, c.memory_mib, c.disk_mib),
        (900, None, Some(256), Some(512))
    );
    assert_eq!(
        c.labels,
        [("via".into(), "cli".into()), ("a".into(), "b=c".into())]
    );
    assert_eq!(c.env, [("K".to_string(), "V".to_string())]);
    let egress = c.allow.egress();
    assert_eq!(egress.domains, ["pypi.org", "*.example.com:443"]);
    assert_eq!(egress.cidrs, ["203.0.113.0/24:8080"]);
    let Command::Create(c) = parse(&["create"]).command else {
        panic!()
    };
    assert_eq!(c.ttl, DEFAULT_TTL_S);
    assert_eq!(
        refused(&["create", "--label", "novalue"]),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        refused(&["create", "--ttl", "soon"]),
        ErrorKind::ValueValidation
    );
}

#[test]
fn login_normalises_the_fingerprint() {
    let fp = "ab".repeat(32);
    let cli = parse(&["login", "https://box", "pdk_x", "--fingerprint", &fp]);
    let Command::Login {
        url,
        token,
        fingerprint,
    } = cli.command
    else {
        panic!()
    };
    assert_eq!((url.as_str(), token.as_str()), ("https://box", "pdk_x"));
    assert_eq!(fingerprint, crate::pinned::normalise(&fp));
    assert!(matches!(
        parse(&["login", "https://box", "pdk_x"]).command,
        Command::Login {
            fingerprint: None,
            ..
        }
    ));
    assert_eq!(
        refused(&["login", "https://box", "pdk_x", "--fingerprint", "zz"]),
        ErrorKind::ValueValidation
    );
}

#[test]
fn forensics_reads_rm_as_the_subcommand_and_anything_else_as_an_id() {
    let Command::Forensics(f) = parse(&["forensics", "ws_1", "memory", "./m.raw"]).command else {
        panic!()
    };
    assert!(f.command.is_none());
    assert_eq!(f.id.as_deref(), Some("ws_1"));
    assert_eq!(f.file.map(SnapshotFile::name).as_deref(), Some("memory"));
    assert_eq!(f.dest.as_deref(), Some("./m.raw"));
    let Command::Forensics(f) = parse(&["forensics", "rm", "ws_1"]).command else {
        panic!()
    };
    assert!(matches!(f.command, Some(ForensicsCommand::Rm { id }) if id == "ws_1"));
    assert_eq!(
        refused(&["forensics", "ws_1", "kernel", "./k"]),
        ErrorKind::InvalidValue
    );
    assert_eq!(
        refused(&["forensics", "ws_1", "disk"]),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn subcommands_of_subcommands() {
    let cli = parse(&[
        "token",
        "create",
        "ci",
        "--scope",
        "create",
        "--scope",
        "exec",
        "--ttl",
        "60",
        "--label",
        "team=x",
        "--e2b",
        "--max-ttl",
        "3600",
        "--ask",
        "extend-ttl",
        "--allow",
        "link",
    ]);
    let Command::Token(TokenCommand::Create {
        name,
        scopes,
        ttl,
        labels,
        e2b,
        max_ttl,
        allow,
        ask,
    }) = cli.command
    else {
        panic!()
    };
    assert_eq!(name, "ci");
    assert_eq!(scopes, [Scope::Create, Scope::Exec]);
    assert_eq!(ttl, Some(60));
    assert_eq!(labels, [("team".to_string(), "x".to_string())]);
    assert!(e2b);
    assert_eq!(max_ttl, Some(3600));
    assert_eq!(
        (allow, ask),
        (vec![YellowAction::Link], vec![YellowAction::ExtendTtl])
    );
    assert_eq!(
        refused(&["token", "create", "ci", "--ask", "reboot"]),
        ErrorKind::InvalidValue
    );
    assert!(matches!(
        parse(&["ttl", "ws_1", "7200", "--reason", "a long build"]).command,
        Command::Ttl { id, ttl } if id == "ws_1" && ttl.seconds == 7200 && ttl.reason.as_deref() == Some("a long build")
    ));
    assert!(matches!(
        parse(&["approvals", "apr_1"]).command,
        Command::Approvals { all: false, id: Some(id) } if id == "apr_1"
    ));
    assert_eq!(
        refused(&["token", "create", "ci", "--scope", "everything"]),
        ErrorKind::InvalidValue
    );
    assert!(matches!(
        parse(&["token", "ls"]).command,
        Command::Token(TokenCommand::Ls)
    ));
    assert!(
        matches!(parse(&["token", "rotate", "tok_bootstrap"]).command, Command::Token(TokenCommand::Rotate { id }) if id == "tok_bootstrap")
    );
    assert!(matches!(
        parse(&["keys"]).command,
        Command::Keys { command: None }
    ));
    assert!(matches!(
        parse(&["keys", "recover"]).command,
        Command::Keys {
            command: Some(KeysCommand::Recover)
        }
    ));
    assert!(matches!(
        parse(&["system"]).command,
        Command::System { command: None }
    ));
    assert!(matches!(
        parse(&["system", "update", "b.update", "--at", "now", "--force"]).command,
        Command::System {
            command: Some(SystemCommand::Update { at, force: true, .. })
        } if at == "now"
    ));
    assert!(Cli::try_parse_from(["paddock", "system", "update", "b", "--at", "soon"]).is_err());
    assert!(matches!(
        parse(&["system", "metrics", "--since", "5"]).command,
        Command::System {
            command: Some(SystemCommand::Metrics { since: Some(5) })
        }
    ));
    assert!(matches!(
        parse(&["tls", "rotate"]).command,
        Command::Tls(TlsCommand::Rotate)
    ));
    let Command::Link(LinkCommand::Add(l)) =
        parse(&["link", "add", "ws_a", "ws_b", "5432"]).command
    else {
        panic!()
    };
    assert_eq!(
        serde_json::to_value(&l).expect("json"),
        serde_json::json!({"from": "ws_a", "to": "ws_b", "port": 5432})
    );
    assert_eq!(
        refused(&["link", "add", "ws_a", "ws_b", "99999"]),
        ErrorKind::ValueValidation
    );
    assert_eq!(refused(&["keys", "forget"]), ErrorKind::InvalidSubcommand);
}

#[test]
fn bodies_carry_only_the_flags_given() {
    let Command::Limits { id, limits } = parse(&[
        "limits",
        "ws_1",
        "--disk-iops",
        "100",
        "--net-mib-per-s",
        "5",
    ])
    .command
    else {
        panic!()
    };
    assert_eq!(id, "ws_1");
    assert_eq!(
        serde_json::to_value(&limits).expect("json"),
        serde_json::json!({"disk_iops": 100, "net_mib_per_s": 5})
    );
    let Command::Publish { id, port } = parse(&["publish", "ws_1", "8080"]).command else {
        panic!()
    };
    assert_eq!(id, "ws_1");
    assert_eq!(
        serde_json::to_value(&port).expect("json"),
        serde_json::json!({"port": 8080})
    );
    let Command::Publish { port, .. } =
        parse(&["publish", "ws_1", "8080", "--host-port", "20001"]).command
    else {
        panic!()
    };
    assert_eq!(
        serde_json::to_value(&port).expect("json"),
        serde_json::json!({"port": 8080, "host_port": 20001})
    );
}

#[test]
fn usage_errors() {
    assert_eq!(refused(&["launch"]), ErrorKind::InvalidSubcommand);
    assert_eq!(
        refused(&["cp", "only-one"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        refused(&["stop", "ws_1", "ws_2"]),
        ErrorKind::UnknownArgument
    );
    assert_eq!(refused(&["ls", "--bogus"]), ErrorKind::UnknownArgument);
    assert_eq!(
        refused(&["pause", "ws_1", "--ttl", "soon"]),
        ErrorKind::ValueValidation
    );
    assert_eq!(refused(&["resume"]), ErrorKind::MissingRequiredArgument);
    assert_eq!(
        refused(&[]),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    assert_eq!(refused(&["exec", "--help"]), ErrorKind::DisplayHelp);
    let e = Cli::try_parse_from(["paddock", "launch"])
        .err()
        .map(|e| e.exit_code());
    assert_eq!(e, Some(2));
}

#[test]
fn completions_for_the_shells() {
    for shell in ["bash", "zsh", "fish"] {
        assert!(matches!(
            parse(&["completions", shell]).command,
            Command::Completions { .. }
        ));
    }
    assert_eq!(
        refused(&["completions", "cmd.exe"]),
        ErrorKind::InvalidValue
    );
}

#[test]
fn secrets_are_listed_set_and_removed_without_a_value_in_argv() {
    let Command::Secrets(s) = parse(&["secrets", "ws_1", "--ca"]).command else {
        panic!()
    };
    assert_eq!((s.id.as_str(), s.ca), ("ws_1", true));
    assert!(parse(&["secrets", "ws_1", "--json"]).json);
    let cli = parse(&[
        "secret",
        "set",
        "ws_1",
        "API_KEY",
        "--host",
        "api.example.com",
        "--host",
        "uploads.example.com",
        "--header",
        "Authorization",
        "--format",
        "Bearer {}",
        "--replace-in",
        "headers,body",
        "--replace-in",
        "query",
        "--allow-plain-http",
        "--upstream-ca",
        "ca.pem",
        "--value-file",
        "key.txt",
    ]);
    let Command::Secret(SecretCommand::Set(s)) = cli.command else {
        panic!()
    };
    assert_eq!((s.id.as_str(), s.name.as_str()), ("ws_1", "API_KEY"));
    assert_eq!(s.hosts, ["api.example.com", "uploads.example.com"]);
    assert_eq!(
        (s.header.as_deref(), s.format.as_deref()),
        (Some("Authorization"), Some("Bearer {}"))
    );
    assert_eq!(
        s.replace_in,
        [SecretPlace::Headers, SecretPlace::Body, SecretPlace::Query]
    );
    assert!(s.allow_plain_http);
    assert_eq!(
        s.upstream_ca.as_deref(),
        Some(std::path::Path::new("ca.pem"))
    );
    assert_eq!(
        s.value_file.as_deref(),
        Some(std::path::Path::new("key.txt"))
    );
    let Command::Secret(SecretCommand::Set(s)) =
        parse(&["secret", "set", "ws_1", "K", "--host", "a.example"]).command
    else {
        panic!()
    };
    assert!(s.replace_in.is_empty() && s.value_file.is_none() && !s.allow_plain_http);
    // The value is never an argument.
    assert_eq!(
        refused(&[
            "secret",
            "set",
            "ws_1",
            "K",
            "sk-123",
            "--host",
            "a.example"
        ]),
        ErrorKind::UnknownArgument
    );
    assert_eq!(
        refused(&["secret", "set", "ws_1", "K"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        refused(&["secret", "set", "ws_1", "K", "--host", "a", "--format", "{}"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        refused(&[
            "secret",
            "set",
            "ws_1",
            "K",
            "--host",
            "a",
            "--replace-in",
            "cookies"
        ]),
        ErrorKind::InvalidValue
    );
    assert!(
        matches!(parse(&["secret", "rm", "ws_1", "K"]).command, Command::Secret(SecretCommand::Rm { id, name }) if id == "ws_1" && name == "K")
    );
    let Command::Create(c) = parse(&["create", "--secrets-file", "-"]).command else {
        panic!()
    };
    assert_eq!(c.secrets_file.as_deref(), Some(std::path::Path::new("-")));
}
