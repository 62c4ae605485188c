//! `paddock shell` in a real terminal (tmux), as a person uses it: a login
//! shell in the workspace, python3 typed into and read off the screen, the
//! window resized under it, detached with Ctrl-] and reattached, and the
//! shell's exit code as the command's.

use paddock_tests::appliance::Appliance;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    session: String,
}

impl Tmux {
    fn run(args: &[&str]) -> String {
        let out = Command::new("tmux").args(args).output().expect("tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        Tmux::run(&args);
    }

    fn screen(&self) -> String {
        Tmux::run(&["capture-pane", "-p", "-t", &self.session])
    }

    /// Waits (up to a generous bound, for an emulated machine) for the
    /// screen to show `text`; the screen.
    fn wait_for(&self, text: &str) -> String {
        let until = Instant::now() + Duration::from_secs(180);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < until,
                "{text:?} never appeared; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .output();
    }
}

pub fn shell_session(app: &Appliance, admin: &str, fingerprint: &str, scratch: &Path) {
    let config = scratch.join("shell-config.json");
    let bin = crate::cli_login(app, admin, fingerprint, &config);
    let (code, body) = app
        .api("POST", "/v1/workspaces", admin, Some(br#"{"ttl_s": 900}"#))
        .expect("create");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let ws: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let id = ws["id"].as_str().expect("id").to_string();
    let status = scratch.join("shell-status");
    let paddock = format!("PADDOCK_CONFIG={} {}", config.display(), bin.display());
    let tmux = Tmux {
        session: format!("paddock-shell-{}", std::process::id()),
    };
    // The first attach, then (after Ctrl-]) a reattach by the pid it
    // printed, then the exit code written where the test reads it.
    Tmux::run(&[
        "new-session",
        "-d",
        "-s",
        &tmux.session,
        "-x",
        "100",
        "-y",
        "30",
        "bash",
        "--norc",
        "--noprofile",
    ]);
    tmux.keys(&[&format!("{paddock} shell {id}"), "Enter"]);
    tmux.wait_for("agent@");
    tmux.keys(&["python3", "Enter"]);
    // (capture-pane drops a line's trailing spaces: the prompt reads ">>>")
    tmux.wait_for(">>>");
    tmux.keys(&["print(6 * 7)", "Enter"]);
    tmux.wait_for("\n42\n");
    tmux.keys(&["import os; print('size', os.get_terminal_size())", "Enter"]);
    tmux.wait_for("columns=100, lines=30");
    Tmux::run(&[
        "resize-window",
        "-t",
        &tmux.session,
        "-x",
        "120",
        "-y",
        "40",
    ]);
    // SIGWINCH reaches the paddock CLI, which resizes the workspace's
    // terminal (a call to the appliance); python sees it on a later call.
    let mut resized = false;
    for _ in 0..60 {
        tmux.keys(&["print('after', os.get_terminal_size())", "Enter"]);
        std::thread::sleep(Duration::from_secs(1));
        if tmux
            .screen()
            .contains("after os.terminal_size(columns=120, lines=40)")
        {
            resized = true;
            break;
        }
    }
    assert!(
        resized,
        "the resize never reached the workspace:\n{}",
        tmux.screen()
    );
    // Detach: the terminal goes on; the CLI says how to come back.
    tmux.keys(&["C-]"]);
    let screen = tmux.wait_for("--attach ");
    let pid: String = screen
        .split("--attach ")
        .nth(1)
        .unwrap_or("")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(!pid.is_empty(), "{screen}");
    Tmux::run(&["send-keys", "-t", &tmux.session, "clear", "Enter"]);
    tmux.keys(&[
        &format!(
            "{paddock} shell {id} --attach {pid}; echo status=$? > {}",
            status.display()
        ),
        "Enter",
    ]);
    tmux.keys(&["print('back', 40 + 2)", "Enter"]);
    tmux.wait_for("back 42");
    tmux.keys(&["exit()", "Enter"]);
    tmux.keys(&["exit 3", "Enter"]);
    let until = Instant::now() + Duration::from_secs(120);
    let code = loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            break text;
        }
        assert!(
            Instant::now() < until,
            "no exit status; the screen:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        code.trim(),
        "status=3",
        "the shell's exit code is paddock's"
    );
    let (code, _) = app
        .api("DELETE", &format!("/v1/workspaces/{id}"), admin, None)
        .expect("delete");
    assert_eq!(code, 200);
}
