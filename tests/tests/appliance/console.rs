//! The web console against a booted appliance, in Debian's Chromium (issue
//! 19): console/tests/appliance.mjs signs in with a scoped token, creates a
//! workspace through the form, types into its terminal and reads `42`, sees
//! graphs from the box's samples, and an admin approves the token's ask for
//! a longer TTL; this side checks what the API then says.

use super::*;

#[test]
fn the_console_drives_a_workspace_in_a_real_browser() {
    let chromium = std::env::var("PADDOCK_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `just deps` installs it"
    );
    let console = repo_root().join("console");
    assert!(
        console.join("node_modules/playwright-core").is_dir(),
        "console/node_modules is missing: console/build.sh installs it"
    );
    let dir = scratch("console");
    let (app, admin) = Appliance::boot_fresh(&dir, DISK_BYTES).expect("the appliance boots");
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).expect("JSON");
    // Another tenant's workspace, which the user must not see.
    let (code, body) = app
        .api("POST", "/v1/workspaces", &admin, Some(br#"{"ttl_s": 900}"#))
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let other = json(&body)["id"].as_str().expect("id").to_string();
    let (code, body) = app
        .api(
            "POST",
            "/v1/tokens",
            &admin,
            Some(
                br#"{"name": "console-user", "scopes": ["create", "read", "exec", "delete"],
                     "quotas": {"max_ttl_s": 1800}, "actions": {"extend_ttl": "ask"}}"#,
            ),
        )
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let user = json(&body)["secret"].as_str().expect("secret").to_string();

    let mut cmd = Command::new("node");
    cmd.arg(console.join("tests/appliance.mjs"))
        .current_dir(&console)
        .env("PADDOCK_URL", format!("https://127.0.0.1:{}", app.port))
        .env("PADDOCK_ADMIN", &admin)
        .env("PADDOCK_USER", &user)
        .env("PADDOCK_OTHER_WORKSPACE", &other)
        .env("PADDOCK_CHROMIUM", &chromium);
    if let Ok(shots) = std::env::var("PADDOCK_CONSOLE_SHOTS") {
        cmd.env("PADDOCK_SHOTS", shots);
    }
    let out = cmd.output().expect("run node");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    assert!(out.status.success(), "the browser checks failed:\n{report}");
    let said = |prefix: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line:\n{report}"))
            .trim()
            .to_string()
    };
    let created = said("created ");
    let approval = said("approved ");
    assert_eq!(
        said("fingerprint "),
        app.served_fingerprint().expect("the served certificate"),
        "the box page shows the certificate the API port serves"
    );

    // What the browser did, as the API tells it.
    let (code, body) = app
        .api("GET", &format!("/v1/workspaces/{created}"), &admin, None)
        .expect("curl");
    assert_eq!(code, 200);
    let ws = json(&body);
    assert_eq!(ws["labels"]["made-by"], "console", "{ws}");
    assert_eq!(ws["memory_mib"], 512, "{ws}");
    assert_eq!(ws["disk_mib"], 256, "{ws}");
    let (code, body) = app
        .api("GET", &format!("/v1/approvals/{approval}"), &admin, None)
        .expect("curl");
    assert_eq!(code, 200);
    let decided = json(&body);
    assert_eq!(decided["state"], "approved", "{decided}");
    assert_eq!(decided["decision_reason"], "fine for today", "{decided}");
    let left = ws["expires_at"].as_u64().expect("expires_at")
        - ws["created_at"].as_u64().expect("created_at");
    assert!(left > 1800, "the TTL was extended past the quota: {ws}");
    // The terminal's input and the sign-ins are in the audit log.
    let (_, body) = app
        .api("GET", "/v1/audit?event=console_signed_in", &admin, None)
        .expect("curl");
    assert!(json(&body)["events"]
        .as_array()
        .is_some_and(|e| e.len() >= 2));
    let (_, body) = app
        .api(
            "GET",
            &format!("/v1/audit?event=process_input&workspace={created}"),
            &admin,
            None,
        )
        .expect("curl");
    assert!(
        json(&body)["events"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "the keys typed reached the workspace as audited input"
    );
}
