//! The `paddock` CLI against the appliance: login with a pinned
//! fingerprint and a session of its commands.

use super::*;

/// A whole session through the `paddock` CLI: login (pinning the
/// fingerprint the console showed), create, exec python, copy a file in
/// and out, delete.
pub(crate) fn cli_session(app: &Appliance, admin: &str, fingerprint: &str) {
    let dir = scratch("cli");
    let cli = |args: &[&str]| {
        let bin = PathBuf::from(std::env::var("PADDOCK_STATIC_BIN").expect("PADDOCK_STATIC_BIN"))
            .join("paddock");
        let out = Command::new(bin)
            .args(args)
            .env("PADDOCK_CONFIG", dir.join("config.json"))
            .output()
            .expect("run paddock");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let url = format!("https://127.0.0.1:{}", app.port);
    let (code, _, err) = cli(&["login", &url, admin]);
    assert_eq!(
        code,
        Some(2),
        "login without a fingerprint asks for one: {err}"
    );
    assert!(
        err.contains(fingerprint),
        "it shows what the appliance presents: {err}"
    );
    let wrong = "00:".repeat(31) + "00";
    let (code, _, err) = cli(&["login", &url, admin, "--fingerprint", &wrong]);
    assert_eq!(code, Some(1), "a different certificate is refused: {err}");
    let (code, out, err) = cli(&["login", &url, admin, "--fingerprint", fingerprint]);
    assert_eq!(code, Some(0), "{out}{err}");

    // The box, as `paddock system` shows it: the fingerprint just pinned,
    // the disk keys sealed, a sample of the host.
    let (code, out, err) = cli(&["system"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("tls      {fingerprint}")), "{out}");
    assert!(out.contains("keys     ready"), "{out}");
    assert!(
        out.contains("data     ") && out.contains("host     "),
        "{out}"
    );
    let (code, out, err) = cli(&["--json", "system", "metrics"]);
    assert_eq!(code, Some(0), "{err}");
    let m: paddock_api_types::HostMetrics = serde_json::from_str(&out).expect("HostMetrics");
    assert!(!m.samples.is_empty(), "{out}");

    let (code, id, err) = cli(&[
        "create",
        "--ttl",
        "900",
        "--memory-mib",
        "256",
        "--disk-mib",
        "512",
        "--label",
        "via=cli",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let id = id.trim().to_string();
    let (code, out, _) = cli(&["ls", "--label", "via=cli"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&id) && out.contains("running"), "{out}");
    let (code, out, err) = cli(&[
        "exec",
        &id,
        "--",
        "python3",
        "-c",
        "import sys; print(sum(range(10))); sys.exit(3)",
    ]);
    assert_eq!(
        (code, out.as_str()),
        (Some(3), "45\n"),
        "exec exits with the command's code: {err}"
    );
    let local = dir.join("in.txt");
    std::fs::write(&local, "round trip\n").expect("write");
    let remote = format!("{id}:/tmp/in.txt");
    assert_eq!(cli(&["cp", &local.to_string_lossy(), &remote]).0, Some(0));
    let back = dir.join("out.txt");
    assert_eq!(cli(&["cp", &remote, &back.to_string_lossy()]).0, Some(0));
    assert_eq!(
        std::fs::read_to_string(&back).expect("read back"),
        "round trip\n"
    );
    let (code, out, _) = cli(&["--json", "events", "--workspace", &id]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("exec_started") && out.contains("file_written"),
        "{out}"
    );
    assert_eq!(cli(&["rm", &id]).0, Some(0));
    let (code, _, err) = cli(&["exec", &id, "--", "true"]);
    assert_eq!(code, Some(1), "the workspace is gone: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `paddock` CLI of the image under test, logged in to `app` as
/// `token` (pinning `fingerprint`) into the session file `config`.
pub(crate) fn cli_login(app: &Appliance, token: &str, fingerprint: &str, config: &Path) -> PathBuf {
    let bin = PathBuf::from(std::env::var("PADDOCK_STATIC_BIN").expect("PADDOCK_STATIC_BIN"))
        .join("paddock");
    let url = format!("https://127.0.0.1:{}", app.port);
    let login = Command::new(&bin)
        .args(["login", &url, token, "--fingerprint", fingerprint])
        .env("PADDOCK_CONFIG", config)
        .output()
        .expect("paddock login");
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    bin
}
