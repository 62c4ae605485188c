//! Backups (issue 20): a box's state database and audit log, saved by the
//! CLI, are put back on the same machine after a reflash (a new disk, the
//! same TPM) without any secret, and on a machine with another TPM with
//! the recovery secret; every backup the box must refuse (changed,
//! truncated, the wrong secret, a box with workspaces, a token without
//! admin) changes nothing.

use super::*;

/// POSTs `file` to /v1/system/restore: (status, answer).
fn restore(
    app: &Appliance,
    token: &str,
    file: &Path,
    secret: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut cmd = app.command("curl");
    cmd.args([
        "-skS",
        "--max-time",
        "600",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ])
    .arg("-H")
    .arg(format!("Authorization: Bearer {token}"))
    .args(["-H", "Content-Type: application/octet-stream"]);
    if let Some(s) = secret {
        cmd.arg("-H").arg(format!("X-Paddock-Recovery-Secret: {s}"));
    }
    let out = cmd
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("https://127.0.0.1:{}/v1/system/restore", app.port))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A first boot of `disk` on the TPM in `state`: the box, its bootstrap
/// admin credential and its recovery secret.
fn first_boot(disk: &Path, state: &Path, log: &Path) -> (Appliance, String, String) {
    let mut app = Appliance::boot(disk, state, log).expect("boot");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("disk-key recovery secret", BOOT_GUARD))
        .expect("first boot");
    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    let recovery = console
        .lines()
        .skip_while(|l| !l.contains("(POST /v1/keys/recover)"))
        .nth(1)
        .map(|l| l.trim().to_string())
        .expect("the recovery secret on the first boot's screen");
    (app, admin, recovery)
}

fn power_off(mut app: Appliance) {
    let exited = app.power_button(Duration::from_secs(180)).expect("QMP");
    assert!(exited.is_some(), "powered off:\n{}", app.console());
}

/// Runs the CLI logged in with `config`, `stdin` on its standard input:
/// (exit code, stdout, stderr).
fn cli(
    bin: &Path,
    config: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (Option<i32>, String, String) {
    let mut child = Command::new(bin)
        .args(args)
        .env("PADDOCK_CONFIG", config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run paddock");
    if let Some(mut i) = child.stdin.take() {
        if let Some(s) = stdin {
            i.write_all(format!("{s}\n").as_bytes()).expect("stdin");
        }
    }
    let out = child.wait_with_output().expect("paddock");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn code_of(app: &Appliance, method: &str, path: &str, token: &str) -> u16 {
    app.api(method, path, token, None).expect("curl").0
}

fn events(app: &Appliance, admin: &str, query: &str) -> Vec<serde_json::Value> {
    let (code, body) = app
        .api("GET", &format!("/v1/audit?limit=10000{query}"), admin, None)
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    json(&body)["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_backup_comes_back_after_a_reflash_and_on_another_tpm_with_the_recovery_secret() {
    let dir = scratch("backups");
    let tpm = dir.join("state");
    let disk1 = dir.join("one");
    std::fs::create_dir_all(&disk1).expect("dir");
    let disk1 = fresh_disk(&disk1);

    // Box 1: a token, a workspace, then a backup through the CLI.
    let (app, admin, recovery) = first_boot(&disk1, &tpm, &dir.join("b1.log"));
    let (code, body) = app
        .api(
            "POST",
            "/v1/tokens",
            &admin,
            Some(br#"{"name": "kept", "scopes": ["create", "read", "exec", "files", "delete"]}"#),
        )
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let kept = json(&body)["secret"].as_str().expect("secret").to_string();
    let (code, body) = app
        .api(
            "POST",
            "/v1/workspaces",
            &kept,
            Some(br#"{"ttl_s": 3600, "memory_mib": 256, "disk_mib": 256}"#),
        )
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let ws = json(&body)["id"].as_str().expect("id").to_string();

    assert_eq!(
        code_of(&app, "GET", "/v1/system/backup", &kept),
        403,
        "a backup holds every tenant's records: admin only"
    );
    let (code, body) = app.api("GET", "/v1/system", &admin, None).expect("curl");
    assert_eq!(code, 200);
    let fingerprint = json(&body)["tls_fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let config = dir.join("cli1.json");
    let bin = cli_login(&app, &admin, &fingerprint, &config);
    let backup = dir.join("box1.pdkbak");
    let backup_arg = backup.to_str().expect("utf-8");
    let took = std::time::Instant::now();
    let (code, out, err) = cli(&bin, &config, &["system", "backup", backup_arg], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("saved to"), "{out}");
    let bytes = std::fs::read(&backup).expect("backup");
    // BENCHMARKS.md: a backup and a restore on the emulated box.
    eprintln!(
        "backups: {} KiB backup made and saved by the CLI in {:.2} s",
        bytes.len() >> 10,
        took.elapsed().as_secs_f64()
    );
    assert_eq!(&bytes[..8], b"PDKBAK01", "the backup format");
    for needle in ["kept", ws.as_str(), "token_issued"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} is not in the backup in the clear"
        );
    }
    let (code, _, err) = cli(&bin, &config, &["system", "backup", backup_arg], None);
    assert_ne!(code, Some(0), "an existing file is not overwritten");
    assert!(err.contains("exists"), "{err}");
    assert_eq!(std::fs::read(&backup).expect("backup"), bytes, "untouched");
    let made = events(&app, &admin, "&event=backup_made");
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["slots"], serde_json::json!(["tpm", "recovery"]));

    // Not onto a box with workspaces: it would orphan them.
    let (code, answer) = restore(&app, &admin, &backup, None);
    assert_eq!(code, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no workspaces"),
        "{answer}"
    );
    power_off(app);

    // The same machine, reflashed: a new disk, the same TPM.
    let disk2 = dir.join("two");
    std::fs::create_dir_all(&disk2).expect("dir");
    let disk2 = fresh_disk(&disk2);
    let (app, admin2, _) = first_boot(&disk2, &tpm, &dir.join("b2.log"));
    assert_eq!(
        code_of(&app, "GET", "/v1/workspaces", &kept),
        401,
        "box 1's tokens are not here yet"
    );

    // Refused, each for its reason, changing nothing.
    let mut changed = bytes.clone();
    let n = changed.len();
    changed[n - 40] ^= 0x01;
    let changed_file = dir.join("changed.pdkbak");
    std::fs::write(&changed_file, &changed).expect("write");
    let truncated = dir.join("truncated.pdkbak");
    std::fs::write(&truncated, &bytes[..n - 20]).expect("write");
    let not_one = dir.join("not-one.pdkbak");
    std::fs::write(&not_one, b"PDKUPD01 not a backup at all").expect("write");
    let (code, body) = app
        .api(
            "POST",
            "/v1/tokens",
            &admin2,
            Some(br#"{"name": "wide", "scopes": ["create", "read", "exec", "files", "delete"]}"#),
        )
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let wide = json(&body)["secret"].as_str().expect("secret").to_string();
    for (file, token, secret, want, why) in [
        (&changed_file, &admin2, None, 422, "damaged"),
        (&truncated, &admin2, None, 422, "truncated"),
        (&not_one, &admin2, None, 422, "not a paddock backup"),
        (
            &backup,
            &admin2,
            Some("00000000-00000000-00000000-00000000-00000000-00000000-00000000-00000000"),
            422,
            "recovery secret",
        ),
        (&backup, &wide, None, 403, "admin"),
    ] {
        let (code, answer) = restore(&app, token, file, secret);
        assert_eq!(code, want, "{}: {answer}", file.display());
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains(why),
            "{}: {answer}",
            file.display()
        );
    }
    assert_eq!(
        code_of(&app, "GET", "/v1/workspaces", &kept),
        401,
        "nothing restored"
    );
    assert_eq!(
        code_of(&app, "GET", "/v1/workspaces", &wide),
        200,
        "this box's tokens kept"
    );
    assert_eq!(
        events(&app, &admin2, "&event=restore_refused").len(),
        4,
        "each refusal audited"
    );

    // The good one, opened by the TPM alone.
    let took = std::time::Instant::now();
    let (code, answer) = restore(&app, &admin2, &backup, None);
    assert_eq!(code, 200, "{answer}");
    eprintln!(
        "backups: restored (opened by the TPM) in {:.2} s",
        took.elapsed().as_secs_f64()
    );
    assert_eq!(answer["opened_with"], "tpm", "{answer}");
    assert_eq!(answer["workspaces"], 1, "{answer}");
    assert_eq!(answer["tokens"], 2, "{answer}");
    assert_eq!(
        code_of(&app, "GET", "/v1/workspaces", &kept),
        200,
        "box 1's token works"
    );
    assert_eq!(
        code_of(&app, "GET", "/v1/system", &admin),
        200,
        "box 1's admin works"
    );
    assert_eq!(
        code_of(&app, "GET", "/v1/workspaces", &admin2),
        401,
        "this box's own are gone"
    );
    assert_eq!(code_of(&app, "GET", "/v1/workspaces", &wide), 401);
    let (code, body) = app
        .api("GET", &format!("/v1/workspaces/{ws}"), &kept, None)
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        json(&body)["state"],
        "lost",
        "its disk was not in the backup"
    );
    // Box 1's history (up to the backup: its own `backup_made` came
    // after), the boundary, this box's own events, then the restore.
    let all = events(&app, &admin, "");
    let pos = |kind: &str| all.iter().position(|e| e["event"] == kind);
    let created = all
        .iter()
        .position(|e| e["event"] == "workspace_created" && e["workspace"] == ws.as_str())
        .expect("box 1's workspace_created");
    let boundary = pos("restored_history_ends").expect("the boundary");
    let refused = pos("restore_refused").expect("box 2's refusals");
    let restored = pos("backup_restored").expect("the restore");
    assert!(
        created < boundary && boundary < refused && refused < restored,
        "in order: {created} {boundary} {refused} {restored}"
    );
    assert_eq!(
        all[boundary]["backup_created_at"],
        answer["backup_created_at"]
    );
    power_off(app);

    // Another machine (another TPM): only the recovery secret opens it.
    let disk3 = dir.join("three");
    std::fs::create_dir_all(&disk3).expect("dir");
    let disk3 = fresh_disk(&disk3);
    let (app, admin3, _) = first_boot(&disk3, &dir.join("other-tpm"), &dir.join("b3.log"));
    let (code, answer) = restore(&app, &admin3, &backup, None);
    assert_eq!(code, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("recovery secret"),
        "says what would open it: {answer}"
    );
    let (code, body) = app.api("GET", "/v1/system", &admin3, None).expect("curl");
    assert_eq!(code, 200);
    let fingerprint = json(&body)["tls_fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let config = dir.join("cli3.json");
    let bin = cli_login(&app, &admin3, &fingerprint, &config);
    let (code, out, err) = cli(
        &bin,
        &config,
        &["system", "restore", backup_arg, "--recovery-secret-stdin"],
        Some(&recovery),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("opened with the recovery secret"), "{out}");
    assert_eq!(
        code_of(&app, "GET", "/v1/workspaces", &kept),
        200,
        "box 1's token works"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
