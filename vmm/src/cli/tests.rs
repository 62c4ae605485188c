use super::*;
use crate::rate_limit::RateLimit;
use clap::CommandFactory;

/// Through `Flags::try_parse_from`, as `parse` does, with the program name
/// clap expects first.
fn run(a: &[&str]) -> Result<Command, ConfigError> {
    parse(std::iter::once("paddock-vmm").chain(a.iter().copied()))
}

fn config(a: &[&str]) -> VmConfig {
    match run(a) {
        Ok(Command::Run(c)) => *c,
        Ok(Command::Help) => panic!("{a:?}: help instead of a config"),
        Err(e) => panic!("{a:?}: {e}"),
    }
}

fn refusal(a: &[&str]) -> ConfigError {
    match run(a) {
        Err(e) => e,
        Ok(_) => panic!("{a:?} should fail"),
    }
}

fn clap_kind(a: &[&str]) -> Option<ErrorKind> {
    Flags::try_parse_from(std::iter::once("paddock-vmm").chain(a.iter().copied()))
        .err()
        .map(|e| e.kind())
}

#[test]
fn flags_build_a_config() {
    let c = config(&[
        "--kernel",
        "/k",
        "--vcpus",
        "2",
        "--memory-mib",
        "128",
        "--drive",
        "id=root,path=/r.img,ro",
        "--vsock",
        "cid=3,uds=/tmp/v.sock",
        "--no-rng",
    ]);
    assert_eq!(c.vcpus, 2);
    assert_eq!(c.memory_mib, 128);
    assert!(c.drives[0].read_only);
    assert_eq!(c.vsock.as_ref().map(|v| v.cid), Some(3));
    assert!(!c.rng);
}

#[test]
fn drives_take_rate_limits_and_refuse_bad_ones() {
    let c = config(&[
        "--kernel",
        "/k",
        "--drive",
        "id=data,path=/d.img,bps=1048576,iops=200",
    ]);
    assert_eq!(c.drives[0].rate.bytes_per_s, Some(1 << 20));
    assert_eq!(c.drives[0].rate.ops_per_s, Some(200));
    assert!(run(&["--kernel", "/k", "--drive", "id=d,path=/d,bps=fast"]).is_err());
    let c = config(&["--kernel", "/k", "--drive", "id=d,path=/d,iops=0"]);
    let errors = c.validate(1 << 20, 8);
    assert!(
        errors.iter().any(|e| e.field == "drives[0].rate.ops_per_s"),
        "{errors:?}"
    );
}

#[test]
fn bad_flags_name_themselves() {
    for (a, field) in [
        (vec!["--kernel"], "--kernel"),
        (vec!["--kernel", "/k", "--vcpus", "x"], "--vcpus"),
        (vec!["--kernel", "/k", "--vcpus", "300"], "--vcpus"),
        (vec!["--kernel", "/k", "--bogus", "1"], "--bogus"),
        (vec!["--kernel", "/k", "--drive", "path=/x"], "--drive"),
        (vec!["--config", "/c", "--vcpus", "1"], "--config"),
        (vec![], "--kernel"),
    ] {
        assert_eq!(refusal(&a).field, field, "{a:?}");
    }
}

/// What host-init's runner passes (control/runner.rs), every flag at once.
#[test]
fn runner_command_line() {
    let a = [
        "--kernel",
        "/usr/lib/paddock/vmlinux",
        "--initramfs",
        "/usr/lib/paddock/agent-initramfs.cpio",
        "--vcpus",
        "2",
        "--memory-mib",
        "1024",
        "--drive",
        "id=template,path=/dev/mapper/tpl,ro",
        "--drive",
        "id=data,path=/dev/vg/ws_1,bps=104857600,iops=2000",
        "--vsock",
        "cid=3,uds=/run/paddock/ws/ws_1/vsock",
        "--control",
        "/run/paddock/ws/ws_1/control",
        "--console",
        "stdout",
        "--net",
        "fd=3,mac=02:00:0a:c8:00:02,bps=12500000",
        "--cmdline",
        "paddock.hostname=ws-1 paddock.net=10.200.0.2/30,10.200.0.1",
    ];
    let flags = Flags::try_parse_from(std::iter::once("paddock-vmm").chain(a))
        .expect("the runner's command line parses");
    let Ok(Command::Run(c)) = flags.into_command() else {
        panic!("expected a config");
    };
    let want = VmConfig {
        kernel: "/usr/lib/paddock/vmlinux".into(),
        initramfs: Some("/usr/lib/paddock/agent-initramfs.cpio".into()),
        cmdline: "paddock.hostname=ws-1 paddock.net=10.200.0.2/30,10.200.0.1".into(),
        vcpus: 2,
        memory_mib: 1024,
        drives: vec![
            DriveConfig {
                id: "template".into(),
                path: "/dev/mapper/tpl".into(),
                read_only: true,
                rate: RateLimit::default(),
            },
            DriveConfig {
                id: "data".into(),
                path: "/dev/vg/ws_1".into(),
                read_only: false,
                rate: RateLimit {
                    bytes_per_s: Some(104_857_600),
                    ops_per_s: Some(2000),
                },
            },
        ],
        vsock: Some(VsockConfig {
            cid: 3,
            uds_path: "/run/paddock/ws/ws_1/vsock".into(),
        }),
        console: Console::Stdout,
        rng: true,
        seccomp: true,
        control: Some("/run/paddock/ws/ws_1/control".into()),
        net: Some(NetConfig {
            tap_fd: 3,
            mac: "02:00:0a:c8:00:02".into(),
            rate: RateLimit {
                bytes_per_s: Some(12_500_000),
                ops_per_s: None,
            },
        }),
        restore: None,
        restore_copy: false,
    };
    assert_eq!(*c, want);
}

#[test]
fn defaults_match_the_json_form() {
    let json = VmConfig::from_json(r#"{"kernel": "/k"}"#).expect("minimal JSON");
    assert_eq!(config(&["--kernel", "/k"]), json);
}

#[test]
fn drives_repeat_in_order_and_other_flags_keep_their_last_value() {
    let c = config(&[
        "--kernel",
        "/k",
        "--drive",
        "id=a,path=/a",
        "--vcpus",
        "1",
        "--drive",
        "id=b,path=/b,ro",
        "--drive",
        "id=c,path=/c",
        "--vcpus",
        "4",
        "--no-rng",
        "--no-rng",
        "--console",
        "off",
    ]);
    let ids: Vec<_> = c.drives.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(c.drives[1].read_only && !c.drives[2].read_only);
    assert_eq!(c.vcpus, 4);
    assert!(!c.rng);
    assert_eq!(c.console, Console::Off);
    assert_eq!(
        config(&["--kernel", "/k", "--console", "/tmp/con"]).console,
        Console::File("/tmp/con".into())
    );
}

#[test]
fn malformed_drive_keeps_its_message() {
    let a = ["--kernel", "/k", "--drive", "id=x,path=/x,fast"];
    assert_eq!(clap_kind(&a), Some(ErrorKind::ValueValidation));
    assert_eq!(
        refusal(&a).to_string(),
        r#"--drive: unknown part "fast" (expected id=, path=, ro, bps=, iops=)"#
    );
    assert_eq!(
        refusal(&["--kernel", "/k", "--drive", "id=x,path=/x,bps=fast"]).to_string(),
        r#"--drive bps: "fast" is not a valid number"#
    );
    assert_eq!(
        refusal(&["--kernel", "/k", "--drive", "path=/x"]).to_string(),
        "--drive: missing id="
    );
    assert_eq!(
        refusal(&["--kernel", "/k", "--net", "fd=3"]).to_string(),
        "--net: missing mac="
    );
    assert_eq!(
        refusal(&["--kernel", "/k", "--vsock", "cid=3,port=1"]).to_string(),
        r#"--vsock: unknown part "port=1" (expected cid=, uds=)"#
    );
}

#[test]
fn unknown_flag_is_a_configuration_error() {
    let a = ["--kernel", "/k", "--turbo", "1"];
    assert_eq!(clap_kind(&a), Some(ErrorKind::UnknownArgument));
    assert_eq!(
        refusal(&a).to_string(),
        "--turbo: unknown flag (see --help)"
    );
    assert_eq!(refusal(&["--kernel", "/k", "stray"]).field, "stray");
    assert_eq!(refusal(&["--kernel", "/k", "-x"]).field, "-x");
}

#[test]
fn help_asks_for_usage_with_or_without_other_flags() {
    for a in [&["--help"][..], &["-h"], &["--kernel", "/k", "--help"]] {
        assert_eq!(clap_kind(a), Some(ErrorKind::DisplayHelp), "{a:?}");
        assert!(matches!(run(a), Ok(Command::Help)), "{a:?}");
    }
    // Should clap ever print help itself, it is what main prints.
    assert_eq!(
        Flags::command().render_help().to_string(),
        format!("{USAGE}\n")
    );
}

#[test]
fn values_are_taken_whatever_they_look_like() {
    let c = config(&["--kernel=/k", "--cmdline", "-v --x", "--initramfs", ""]);
    assert_eq!(c.kernel, PathBuf::from("/k"));
    assert_eq!(c.cmdline, "-v --x");
    assert_eq!(c.initramfs, Some(PathBuf::new()));
    assert_eq!(
        refusal(&["--kernel", "/k", "--memory-mib", "-5"]).to_string(),
        r#"--memory-mib: "-5" is not a valid number"#
    );
    assert_eq!(
        refusal(&["--kernel", "/k", "--vcpus"]).to_string(),
        "--vcpus: needs a value"
    );
}

#[test]
fn config_file_stands_alone() {
    for a in [
        &["--config", "/c", "--no-rng"][..],
        &["--no-seccomp", "--config", "/c"],
        &["--kernel", "/k", "--config", "/c"],
    ] {
        assert_eq!(clap_kind(a), Some(ErrorKind::ArgumentConflict), "{a:?}");
        assert_eq!(
            refusal(a).to_string(),
            "--config: cannot be combined with other flags",
            "{a:?}"
        );
    }
    let e = refusal(&["--config", "/nonexistent/vm.json"]);
    assert_eq!(e.field, "config");
    assert!(e.message.contains("cannot read"), "{e}");
}

#[test]
fn non_utf8_values_name_their_flag() {
    use std::os::unix::ffi::OsStringExt;
    let bad = OsString::from_vec(vec![b'x', 0xff]);
    let args = |flag: &str| -> Vec<OsString> {
        vec![
            "paddock-vmm".into(),
            "--kernel".into(),
            "/k".into(),
            flag.into(),
            bad.clone(),
        ]
    };
    let Ok(Command::Run(c)) = parse(args("--initramfs")) else {
        panic!("a path need not be UTF-8");
    };
    assert_eq!(c.initramfs, Some(PathBuf::from(bad.clone())));
    match parse(args("--drive")) {
        Err(e) => assert_eq!(e.field, "--drive"),
        Ok(_) => panic!("a drive spec must be UTF-8"),
    }
}
