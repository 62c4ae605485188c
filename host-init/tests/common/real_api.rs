//! The real API process in front of the real control plane (tokens,
//! scopes, audit) on a scratch directory: what the console's tests attack.
//! Workspaces cannot boot here (no template, no KVM).

use super::KillOnDrop;
use paddock_init::api::channel::{Call, Init, PlainHttp, StatusReply, Verdict};
use paddock_init::api::supervisor::{spawn, Running};
use paddock_init::control::service::Control;
use std::path::Path;
use std::sync::Arc;

pub struct RealApi {
    pub control: Arc<Control>,
    pub admin: String,
    /// https://127.0.0.1:PORT
    pub base: String,
    /// http://127.0.0.1:PORT, the plain listener (on lo).
    pub plain: String,
    _guard: KillOnDrop,
    dir: std::path::PathBuf,
}

impl Drop for RealApi {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts one, its scratch directory named after `name`.
pub fn start(name: &str) -> RealApi {
    let dir = std::env::temp_dir().join(format!("paddock-session-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).expect("state dir");
    paddock_init::host::install();
    let control = Arc::new(
        Control::open(
            &dir.join("state"),
            &dir.join("audit"),
            Some("/nonexistent-template".into()),
        )
        .expect("control plane"),
    );
    let admin = "pdk_admin_session_test_secret".to_string();
    control
        .add_bootstrap(&paddock_init::control::tokens::hash_secret(&admin))
        .expect("bootstrap token");
    // As PID 1 does: the host's and workspaces' figures every 5 s.
    let sampler = control.clone();
    std::thread::spawn(move || sampler.sample_loop());
    let running = spawn_api(
        &control,
        Some(PlainHttp {
            interface: "lo".into(),
            port: 0,
        }),
    );
    let plain = running.plain_port.expect("a plain listener on lo");
    RealApi {
        control,
        admin,
        base: format!("https://127.0.0.1:{}", running.port),
        plain: format!("http://127.0.0.1:{plain}"),
        _guard: KillOnDrop(running.pid),
        dir,
    }
}

/// A token minted by the admin: its secret.
pub fn mint(b: &RealApi, name: &str, scopes: &[&str]) -> (String, String) {
    let out = b.control.call(
        &b.admin,
        Call::CreateToken {
            request: serde_json::json!({"name": name, "scopes": scopes, "ttl_s": 3600}),
        },
    );
    assert_eq!(out.reply.verdict, Verdict::Created, "{}", out.reply.body);
    (
        out.reply.body["id"].as_str().expect("id").to_string(),
        out.reply.body["secret"]
            .as_str()
            .expect("secret")
            .to_string(),
    )
}

/// The API process (a fresh TLS identity, an ephemeral port) answering
/// from `control`, as PID 1 would start it.
pub fn spawn_api(control: &Arc<Control>, plain_http: Option<PlainHttp>) -> Running {
    let id = paddock_init::tls::generate().expect("identity");
    let init = Init {
        cert_pem: id.cert_pem,
        key_pem: id.key_pem,
        port: 0,
        plain_http,
        domain: None,
    };
    let c = control.clone();
    spawn(
        Path::new(env!("CARGO_BIN_EXE_paddock-init")),
        &init,
        None,
        || StatusReply {
            version: env!("CARGO_PKG_VERSION").into(),
            state: "ready".into(),
            workspaces: 0,
            uptime_s: 1,
        },
        move |auth, call| c.call(auth, call),
    )
    .expect("API process starts")
}
