//! Secure Boot for the appliance tests: EFI programs signed (sbsign) with
//! the test key Debian's OVMF "snakeoil" build has enrolled as PK, KEK and
//! db (`firmware/boot-appliance.sh --secure-boot`). The key is public: a
//! test's, never a product's.

use std::path::Path;
use std::process::Command;

pub const KEY: &str = "/usr/share/ovmf/PkKek-1-snakeoil.key";
pub const CERT: &str = "/usr/share/ovmf/PkKek-1-snakeoil.pem";
/// The key file's passphrase, as Debian's ovmf README gives it.
const PASSPHRASE: &str = "snakeoil";

/// `program` signed for Secure Boot with the test key.
pub fn sign(program: &[u8]) -> Result<Vec<u8>, String> {
    let dir = tempdir()?;
    let (input, output) = (dir.join("in.efi"), dir.join("out.efi"));
    let result = std::fs::write(&input, program)
        .map_err(|e| format!("writing {}: {e}", input.display()))
        .and_then(|_| sign_file(&input, &output))
        .and_then(|_| {
            std::fs::read(&output).map_err(|e| format!("reading {}: {e}", output.display()))
        });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Signs `input` into `output` with the test key, and checks the signature.
pub fn sign_file(input: &Path, output: &Path) -> Result<(), String> {
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd
            .output()
            .map_err(|e| format!("{what} (apt-get install sbsigntool): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    // sbsign cannot be given a passphrase: the key, decrypted, beside
    // the output for as long as it signs.
    let key = output.with_extension("key");
    let signed = run(
        Command::new("openssl")
            .args(["pkey", "-in", KEY, "-passin"])
            .arg(format!("pass:{PASSPHRASE}"))
            .arg("-out")
            .arg(&key),
        "openssl pkey",
    )
    .and_then(|_| {
        run(
            Command::new("sbsign")
                .arg("--key")
                .arg(&key)
                .args(["--cert", CERT, "--output"])
                .arg(output)
                .arg(input),
            "sbsign",
        )
    });
    let _ = std::fs::remove_file(&key);
    signed?;
    run(
        Command::new("sbverify").args(["--cert", CERT]).arg(output),
        "sbverify",
    )
}

fn tempdir() -> Result<std::path::PathBuf, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "paddock-sbsign-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("making {}: {e}", dir.display()))?;
    Ok(dir)
}
