//! docs/openapi.yaml matches the server: schemathesis (from PyPI, installed
//! by `just schemathesis`) generates requests from the document, valid and
//! not, and checks every answer against it. The server is the real one:
//! the API process as PID 1 starts it, answering from the real control plane
//! (state database, tokens, audit log) on a scratch directory. Workspaces
//! cannot boot here, so the token schemathesis uses has a quota of zero
//! workspaces: a valid create is refused with 409 before any VM would start.

use paddock_init::control::service::Control;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

mod common;
use common::KillOnDrop;

fn schemathesis() -> PathBuf {
    let st = std::env::var("PADDOCK_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!("PADDOCK_SCHEMATHESIS is not set: run `just schemathesis` (it prints the path)")
    });
    let st = PathBuf::from(st);
    assert!(st.is_file(), "{} does not exist", st.display());
    st
}

#[test]
fn the_openapi_document_matches_the_server() {
    let st = schemathesis();
    let dir = std::env::temp_dir().join(format!("paddock-openapi-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).expect("state dir");
    // The control plane asks PID 1's side of things as it would on the box.
    paddock_init::host::install();
    let control = Arc::new(
        Control::open(
            &dir.join("state"),
            &dir.join("audit"),
            Some("/nonexistent-template".into()),
        )
        .expect("control plane"),
    );
    // Software keys in the scratch directory: GET /v1/keys answers, and
    // recovery says there is nothing to recover.
    let keys = paddock_init::keys::init_at(
        &dir.join("keys"),
        &paddock_init::keys::Options {
            tpm: paddock_init::keys::TpmSource::Device(dir.join("no-tpm")),
            pcrs: paddock_init::keys::DEFAULT_PCRS.to_vec(),
            allow_software_keys: true,
            recovery_key_sha256: None,
            signed: None,
        },
    );
    assert!(keys.ready, "{}", keys.summary);
    let admin = "pdk_admin_openapi_conformance_test_secret";
    control
        .add_bootstrap(&paddock_init::control::tokens::hash_secret(admin))
        .expect("bootstrap token");
    // Every scope, but no workspace may start.
    let out = control.call(
        admin,
        paddock_init::api::channel::Call::CreateToken {
            request: serde_json::json!({
                "name": "schemathesis",
                "scopes": ["admin"],
                "quotas": {"max_workspaces": 0}
            }),
        },
    );
    assert_eq!(
        out.reply.verdict,
        paddock_init::api::channel::Verdict::Created,
        "{}",
        out.reply.body
    );
    let secret = out.reply.body["secret"]
        .as_str()
        .expect("secret")
        .to_string();

    let running = common::real_api::spawn_api(&control, None);
    let _guard = KillOnDrop(running.pid);

    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    let out = Command::new(&st)
        .arg("run")
        .arg(&doc)
        .arg("--url")
        .arg(format!("https://127.0.0.1:{}", running.port))
        .args(["--tls-verify", "false"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {secret}"))
        // A valid create is refused by the quota (no VM can boot here), so
        // "valid data is accepted" cannot hold in this setting.
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        // Rotating the TLS identity restarts the API process, which this
        // harness does not do; the appliance test covers that call.
        .args(["--exclude-operation-id", "rotateTls"])
        // Signing in hands out a session cookie, which schemathesis's HTTP
        // client keeps and sends with every later call, its "no token"
        // checks included: they would then be made with the session. The
        // session has tests of its own (api_session.rs, the console's).
        .args(["--exclude-operation-id", "openSession"])
        // An update needs the boot manager's slots, which this harness (a
        // process on the build machine) has not: every upload would be
        // refused with 503 before its body mattered. The appliance's
        // updates test sends real and broken bundles to a box that has
        // them and checks every answer.
        .args(["--exclude-operation-id", "systemUpdate"])
        // A backup is encrypted to the TPM's key and the recovery secret's,
        // and this harness's key store (software keys, no TPM) has neither:
        // every call is refused with 503 saying so. The appliance's backups
        // test makes and restores real ones (restores are checked here:
        // every broken body is refused with 4xx).
        .args(["--exclude-operation-id", "systemBackup"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "30", "--workers", "1", "--seed", "1"])
        .arg("--no-color")
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(&dir)
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found mismatches:\n{report}"
    );
    // It really exercised the server: the audit log saw its refusals.
    let audit = std::fs::read_to_string(dir.join("audit/audit.log")).unwrap_or_default();
    assert!(audit.contains("request_refused"), "no refusals recorded");
    let _ = std::fs::remove_dir_all(&dir);
}
