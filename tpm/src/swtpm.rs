//! A swtpm (libtpms) TPM 2.0 on a Unix socket, for tests: started in a
//! directory of the caller's, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Swtpm {
    child: Child,
    dir: PathBuf,
}

impl Swtpm {
    /// Starts swtpm with its state in `dir`, already powered on and
    /// started (TPM2_Startup done), serving raw commands on `socket()`.
    pub fn start(dir: &Path) -> Result<Swtpm, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // A socket left by an earlier swtpm on the same state (a test's
        // "reboot") would be taken for this one's before it listens.
        for stale in ["data", "ctrl"] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--server")
            .arg(format!("type=unixio,path={}", dir.join("data").display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", dir.join("ctrl").display()))
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.display()))
            .spawn()
            .map_err(|e| {
                format!("starting swtpm (apt-get install swtpm; `just deps` does): {e}")
            })?;
        let mut sw = Swtpm {
            child,
            dir: dir.to_path_buf(),
        };
        let until = Instant::now() + Duration::from_secs(10);
        // The socket's file appears at bind(), before swtpm listens on it:
        // a client that only waited for the file could be refused. A
        // connection swtpm accepts and sees closed costs it nothing.
        while std::os::unix::net::UnixStream::connect(sw.socket()).is_err() {
            if Instant::now() >= until {
                let _ = sw.child.kill();
                return Err("swtpm did not accept connections on its socket within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(sw)
    }

    /// The socket carrying TPM commands (transport::Stream connects to it).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
