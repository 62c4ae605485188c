//! What the box shows on its console: a status block redrawn whenever
//! something in it changes (and every few minutes, so a console opened
//! later shows it soon). No login prompt, no shell: this is all there is.

use crate::log;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct Status {
    pub version: String,
    pub kernel: String,
    /// "starting", "ready", "error", "shutting down".
    pub state: String,
    pub error: Option<String>,
    pub addresses: Vec<String>,
    pub api_url: Option<String>,
    pub fingerprint: Option<String>,
    pub workspaces: u32,
    pub demo: Option<String>,
    pub tpm: bool,
    pub data: Option<String>,
    pub notes: Vec<String>,
    /// Shown on the boot that created it, never again.
    pub bootstrap_credential: Option<String>,
    /// How workspace disk keys are held (or why they are not).
    pub keys: Option<String>,
    /// The key store's recovery secret, on the boot that made it only.
    pub recovery_secret: Option<String>,
}

pub struct Screen {
    status: Mutex<(Status, u64)>,
    cv: Condvar,
}

pub static SCREEN: std::sync::LazyLock<Screen> = std::sync::LazyLock::new(|| Screen {
    status: Mutex::new((Status::default(), 0)),
    cv: Condvar::new(),
});

const REFRESH: Duration = Duration::from_secs(300);

impl Screen {
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        let mut g = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g.0);
        g.1 += 1;
        self.cv.notify_all();
    }

    pub fn get(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Redraws on every change; runs forever on its own thread.
    pub fn run(&self) {
        let mut shown = u64::MAX;
        loop {
            let text = {
                let mut g = self.status.lock().unwrap_or_else(|e| e.into_inner());
                if g.1 == shown {
                    g = self
                        .cv
                        .wait_timeout(g, REFRESH)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                shown = g.1;
                render(&g.0)
            };
            log::console(&text);
            // Coalesce bursts of updates into one redraw.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

pub fn render(s: &Status) -> String {
    let rule = "=".repeat(72);
    let mut out = format!(
        "\n{rule}\n  PADDOCK {}  —  microVM workspaces for AI agents\n{rule}\n",
        s.version
    );
    let mut line = |k: &str, v: &str| out.push_str(&format!("  {k:<13}{v}\n"));
    line("State", &s.state);
    if let Some(e) = &s.error {
        line("ERROR", e);
    }
    line("Kernel", &s.kernel);
    if s.addresses.is_empty() {
        line("Address", "(none yet)");
    }
    for a in &s.addresses {
        line("Address", a);
    }
    line("API", s.api_url.as_deref().unwrap_or("(not serving)"));
    line("TLS SHA-256", s.fingerprint.as_deref().unwrap_or("(none)"));
    line("Workspaces", &s.workspaces.to_string());
    if let Some(d) = &s.demo {
        line("Demo", d);
    }
    line(
        "TPM 2.0",
        if s.tpm {
            "present"
        } else {
            "absent (encrypted workspaces need one)"
        },
    );
    if let Some(d) = &s.data {
        line("Data", d);
    }
    if let Some(k) = &s.keys {
        line("Disk keys", k);
    }
    for n in &s.notes {
        line("Note", n);
    }
    if let Some(c) = &s.bootstrap_credential {
        out.push_str(&format!(
            "\n  FIRST BOOT: bootstrap admin credential (shown once, never again):\n    {c}\n"
        ));
    }
    if let Some(r) = &s.recovery_secret {
        out.push_str(&format!(
            "\n  FIRST BOOT: disk-key recovery secret (shown once; write it down and keep it offline).\n  It re-seals the disk keys after a firmware or image update changes the boot\n  measurements (POST /v1/keys/recover):\n    {r}\n"
        ));
    }
    out.push_str(&format!("{rule}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_field_the_operator_needs() {
        let s = Status {
            version: "0.1.0".into(),
            state: "ready".into(),
            addresses: vec!["eth0 10.0.2.15/24 (dhcp)".into()],
            api_url: Some("https://10.0.2.15:8443/".into()),
            fingerprint: Some("AB:CD".into()),
            workspaces: 1,
            bootstrap_credential: Some("pdk_x".into()),
            ..Status::default()
        };
        let t = render(&s);
        for want in [
            "State        ready",
            "https://10.0.2.15:8443/",
            "AB:CD",
            "Workspaces   1",
            "pdk_x",
        ] {
            assert!(t.contains(want), "{want:?} missing from\n{t}");
        }
    }
}
