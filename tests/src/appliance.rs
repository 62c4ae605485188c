//! Booting the appliance image the way `just run` does (firmware/
//! boot-appliance.sh: OVMF, swtpm, virtio disk and NIC) and watching its
//! serial console, for the end-to-end tests.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    #[error("{0} is not set (the Justfile's test recipe sets it)")]
    MissingVar(&'static str),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("waited {waited:?} for {needle:?} on the appliance's console; it shows:\n{tail}")]
    NotSeen {
        needle: String,
        waited: Duration,
        tail: String,
    },
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("no bootstrap credential on the console")]
    NoCredential,
    #[error("the API presented no certificate: {0}")]
    NoCertificate(String),
    #[error("the image's configuration: {0}")]
    Config(#[from] crate::esp_config::EspConfigError),
}

type Result<T> = std::result::Result<T, ApplianceError>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ApplianceError {
    let what = what.into();
    move |source| ApplianceError::Io { what, source }
}

/// The demo image directory the Justfile built (paddock.img and friends).
pub fn image_dir() -> Result<PathBuf> {
    std::env::var_os("PADDOCK_IMAGE_DIR")
        .map(PathBuf::from)
        .ok_or(ApplianceError::MissingVar("PADDOCK_IMAGE_DIR"))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The plain-HTTP port of firmware/test-config.json.
pub const PLAIN_HTTP_PORT: u16 = 8080;

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

pub struct Appliance {
    qemu: Child,
    pub serial: PathBuf,
    pub state: PathBuf,
    pub port: u16,
    /// Forwarded to the appliance's plain-HTTP port (8080, on in the test
    /// image's configuration).
    pub plain_port: u16,
    started: Instant,
    /// A command prefix (`ip netns exec NAME`) when QEMU runs in a test's
    /// network namespace: the API port is on that namespace's loopback.
    prefix: Vec<String>,
}

impl Appliance {
    /// For the benchmarks: a fresh copy of the image in `work`, grown to
    /// `bytes` (a server's disk), booted to its first-boot screen. Returns
    /// the appliance and the bootstrap admin credential it shows.
    pub fn boot_fresh(work: &Path, bytes: u64) -> Result<(Appliance, String)> {
        Self::boot_fresh_in(work, bytes, &[])
    }

    /// `boot_fresh` with QEMU started through `prefix` (a fake internet).
    pub fn boot_fresh_in(
        work: &Path,
        bytes: u64,
        prefix: &[String],
    ) -> Result<(Appliance, String)> {
        Self::boot_fresh_configured(work, bytes, prefix, None)
    }

    /// `boot_fresh_in` with `config` as the ESP's `paddock.json` in place
    /// of the image's own (e.g. a benchmark's peer with a feature off).
    pub fn boot_fresh_configured(
        work: &Path,
        bytes: u64,
        prefix: &[String],
        config: Option<&[u8]>,
    ) -> Result<(Appliance, String)> {
        std::fs::create_dir_all(work).map_err(io(format!("creating {}", work.display())))?;
        let disk = work.join("disk.img");
        std::fs::copy(image_dir()?.join("paddock.img"), &disk).map_err(io("copying the image"))?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .and_then(|f| f.set_len(bytes))
            .map_err(io("growing the disk"))?;
        if let Some(config) = config {
            crate::esp_config::set(&disk, config)?;
        }
        let guard = Duration::from_secs(600);
        let mut app = Appliance::boot_in(
            &disk,
            &work.join("state"),
            &work.join("serial.log"),
            &[],
            prefix,
        )?;
        let console = app
            .wait_for("API serving TLS", guard)
            .and_then(|_| app.wait_for("bootstrap admin credential", guard))?;
        let token = console
            .split_whitespace()
            .find(|w| w.starts_with("pdk_admin_"))
            .ok_or(ApplianceError::NoCredential)?
            .to_string();
        Ok((app, token))
    }

    /// Boots `disk`; `state` keeps TPM and UEFI state across boots.
    pub fn boot(disk: &Path, state: &Path, serial: &Path) -> Result<Appliance> {
        Self::boot_with(disk, state, serial, &[])
    }

    /// Boots with extra arguments for firmware/boot-appliance.sh (e.g. a
    /// direct kernel boot).
    pub fn boot_with(
        disk: &Path,
        state: &Path,
        serial: &Path,
        extra: &[std::ffi::OsString],
    ) -> Result<Appliance> {
        Self::boot_in(disk, state, serial, extra, &[])
    }

    /// Boots with QEMU started through `prefix` (e.g. `ip netns exec NAME`,
    /// for a fake internet: its user-mode network then opens connections
    /// inside that namespace). With `--tap` among `extra` the uplink is
    /// that tap, and `port`, `plain_port` and the calls through them
    /// (`api`, `https_get`) reach nothing: the caller speaks to the address
    /// it configured.
    pub fn boot_in(
        disk: &Path,
        state: &Path,
        serial: &Path,
        extra: &[std::ffi::OsString],
        prefix: &[String],
    ) -> Result<Appliance> {
        let port = free_port()?;
        let plain_port = free_port()?;
        let _ = std::fs::remove_file(serial);
        std::fs::create_dir_all(state).map_err(io(format!("creating {}", state.display())))?;
        let script = repo_root().join("firmware/boot-appliance.sh");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&script);
                c
            }
            None => Command::new(&script),
        };
        let qemu = cmd
            .arg(disk)
            .arg(state)
            .arg("--serial")
            .arg(serial)
            .arg("--port")
            .arg(port.to_string())
            .arg("--forward")
            .arg(format!("{plain_port}:{PLAIN_HTTP_PORT}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io("starting firmware/boot-appliance.sh"))?;
        Ok(Appliance {
            qemu,
            serial: serial.to_path_buf(),
            state: state.to_path_buf(),
            port,
            plain_port,
            started: Instant::now(),
            prefix: prefix.to_vec(),
        })
    }

    /// A command run where the API port is (through the prefix, if any).
    /// `program` run where the appliance's API port is: through the
    /// prefix (a test's network namespace), if it has one.
    pub fn command(&self, program: &str) -> Command {
        match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// The console so far, with carriage returns and escape sequences gone.
    pub fn console(&self) -> String {
        let raw = std::fs::read(&self.serial).unwrap_or_default();
        let text = String::from_utf8_lossy(&raw).replace('\r', "");
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // Skip CSI sequences (the firmware clears the screen).
                if chars.peek() == Some(&'[') {
                    chars.next();
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
                continue;
            }
            out.push(c);
        }
        out
    }

    /// Waits (up to a generous hang guard) until the console shows `needle`.
    pub fn wait_for(&mut self, needle: &str, guard: Duration) -> Result<String> {
        let until = Instant::now() + guard;
        loop {
            let text = self.console();
            if text.contains(needle) {
                return Ok(text);
            }
            let exited = matches!(self.qemu.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > until {
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                return Err(ApplianceError::NotSeen {
                    needle: needle.to_string(),
                    waited: self.started.elapsed(),
                    tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn qmp(&self, command: &str) -> Result<()> {
        let path = self.state.join("qmp.sock");
        let mut s =
            UnixStream::connect(&path).map_err(io(format!("connecting {}", path.display())))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io("QMP timeout"))?;
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).map_err(io("QMP greeting"))?;
        for cmd in ["qmp_capabilities", command] {
            s.write_all(format!("{{\"execute\":\"{cmd}\"}}\n").as_bytes())
                .map_err(io("QMP write"))?;
            let n = s.read(&mut buf).map_err(io("QMP read"))?;
            let reply = String::from_utf8_lossy(&buf[..n]);
            if !reply.contains("\"return\"") && !reply.contains("\"event\"") {
                return Err(ApplianceError::Qmp(format!("{cmd}: {reply}")));
            }
        }
        Ok(())
    }

    /// Presses the ACPI power button and waits for QEMU to exit.
    pub fn power_button(&mut self, guard: Duration) -> Result<Option<ExitStatus>> {
        self.qmp("system_powerdown")?;
        let until = Instant::now() + guard;
        while Instant::now() < until {
            if let Ok(Some(s)) = self.qemu.try_wait() {
                return Ok(Some(s));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(None)
    }

    /// Waits for QEMU to end on its own (the guest rebooting: QEMU runs
    /// with -no-reboot); None when it still runs after `guard`.
    pub fn wait_exit(&mut self, guard: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + guard;
        while Instant::now() < until {
            if let Ok(Some(s)) = self.qemu.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        None
    }

    /// An HTTPS request to the API through the forwarded port (curl, with
    /// the certificate checked against the pinned fingerprint separately).
    pub fn https_get(&self, path: &str) -> Result<(String, String)> {
        let out = self
            .command("curl")
            .args(["-sk", "--max-time", "30", "-w", "\n%{http_code}"])
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .map_err(io("running curl"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        Ok((code.to_string(), body.to_string()))
    }

    /// One API call with curl: method, path, bearer token (may be empty)
    /// and an optional body; returns the status code and the body.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>)> {
        let mut cmd = self.command("curl");
        cmd.args([
            "-skS",
            // Only a hang meets it: the longest call is a five-minute exec.
            "--max-time",
            "600",
            "-X",
            method,
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ]);
        if !token.is_empty() {
            cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
        }
        if body.is_some() {
            cmd.args([
                "--data-binary",
                "@-",
                "-H",
                "Content-Type: application/json",
            ]);
        }
        cmd.arg(format!("https://127.0.0.1:{}{path}", self.port));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("running curl"))?;
        if let Some(mut i) = child.stdin.take() {
            if let Some(b) = body {
                let _ = i.write_all(b);
            }
        }
        let out = child.wait_with_output().map_err(io("curl"))?;
        let mut raw = out.stdout;
        let split = raw.iter().rposition(|b| *b == b'\n').unwrap_or(0);
        let code = String::from_utf8_lossy(&raw[split..])
            .trim()
            .parse()
            .unwrap_or(0);
        raw.truncate(split);
        if code == 0 {
            // No HTTP answer at all: say what curl saw instead of a body.
            raw = format!(
                "no HTTP response ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into_bytes();
        }
        Ok((code, raw))
    }

    /// The SHA-256 fingerprint of the certificate the API port presents.
    /// The certificate the API presents, as PEM (for clients that verify
    /// it, such as E2B's SDK with SSL_CERT_FILE).
    pub fn served_pem(&self) -> Result<String> {
        let mut s_client = self
            .command("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("running openssl s_client"))?;
        let mut text = String::new();
        if let Some(mut o) = s_client.stdout.take() {
            let _ = o.read_to_string(&mut text);
        }
        let _ = s_client.wait();
        let begin = "-----BEGIN CERTIFICATE-----";
        let end = "-----END CERTIFICATE-----";
        match (text.find(begin), text.find(end)) {
            (Some(b), Some(e)) if b < e => Ok(format!("{}\n", &text[b..e + end.len()])),
            _ => Err(ApplianceError::NoCertificate(text)),
        }
    }

    pub fn served_fingerprint(&self) -> Result<String> {
        let pem = self.served_pem()?;
        let mut x509 = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(io("running openssl x509"))?;
        if let Some(mut i) = x509.stdin.take() {
            let _ = i.write_all(pem.as_bytes());
        }
        let out = x509.wait_with_output().map_err(io("openssl x509"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.trim().rsplit('=').next().unwrap_or("").to_string())
    }

    /// Seconds since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Cuts the power at once, as a pulled plug would (QEMU is killed;
    /// `kill` or drop reaps it).
    pub fn power_cut(&self) {
        // SAFETY: kill(2) on the pid of our own unreaped child.
        unsafe { libc::kill(self.qemu.id() as i32, libc::SIGKILL) };
    }

    pub fn kill(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.kill();
        // Straight to stderr, past libtest's capture: where the suite's
        // time goes shows in every CI log, passed or failed.
        let _ = writeln!(
            std::io::stderr(),
            "appliance {} ran {:.0} s",
            self.serial.display(),
            self.started.elapsed().as_secs_f64()
        );
        // A failed assertion shows only its own message: the appliance's
        // last words are what explains it, so they go with the failure.
        if std::thread::panicking() {
            eprintln!(
                "---- appliance console, last lines without status screens ----\n{}",
                log_tail(&self.console(), 80)
            );
        }
    }
}

/// The last `n` lines of a console, status-screen renderings left out (the
/// screen is redrawn often and would crowd out the log).
pub fn log_tail(console: &str, n: usize) -> String {
    // Screen lines are its rules and its indented fields.
    let lines: Vec<&str> = console
        .lines()
        .filter(|l| !l.starts_with("==") && !l.starts_with("  ") && !l.trim().is_empty())
        .collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..].join("\n")
}

/// The value after `label` on the status screen's last rendering.
pub fn status_field(console: &str, label: &str) -> Option<String> {
    console.lines().rev().find_map(|l| {
        l.trim_start()
            .strip_prefix(label)
            .map(|v| v.trim().to_string())
    })
}
