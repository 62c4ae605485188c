//! The update key's commands: make one, give its public half (which goes
//! into the image), and write a signed bundle of an image's parts.

use super::{io, parse_flags, CliError};
use paddock_update::PartName;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::path::Path;

fn public_of(path: &Path) -> Result<(Vec<u8>, Vec<u8>), CliError> {
    let pkcs8 = std::fs::read(path).map_err(io("reading", path))?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| {
        CliError::Image(format!(
            "{} is not an Ed25519 key in PKCS#8 DER ({e}); `paddock-image update-key` makes one",
            path.display()
        ))
    })?;
    let public = pair.public_key().as_ref().to_vec();
    Ok((pkcs8, public))
}

/// `update-key --out KEY --public FILE`.
pub fn key(args: &[String]) -> Result<(), CliError> {
    let f = parse_flags(args, &["--out", "--public"])?;
    let out = f.path("--out")?;
    if out.exists() {
        return Err(CliError::Image(format!(
            "{} exists: an update key is made once (every box takes only its updates)",
            out.display()
        )));
    }
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|e| CliError::Image(format!("making an Ed25519 key: {e}")))?;
    paddock_keys::private_file::write_private(&out, pkcs8.as_ref()).map_err(io("writing", &out))?;
    let (_, public) = public_of(&out)?;
    let p = f.path("--public")?;
    std::fs::write(&p, public).map_err(io("writing", &p))
}

/// `update-public --key KEY --out FILE`: 32 bytes.
pub fn public(args: &[String]) -> Result<(), CliError> {
    let f = parse_flags(args, &["--key", "--out"])?;
    let (_, public) = public_of(&f.path("--key")?)?;
    let out = f.path("--out")?;
    std::fs::write(&out, public).map_err(io("writing", &out))
}

/// `bundle --uki --template --pcr-signature --version --key --out`.
pub fn bundle(args: &[String]) -> Result<(), CliError> {
    let f = parse_flags(
        args,
        &[
            "--uki",
            "--template",
            "--pcr-signature",
            "--version",
            "--key",
            "--out",
        ],
    )?;
    let (pkcs8, _) = public_of(&f.path("--key")?)?;
    let version = f
        .get("--version")
        .ok_or_else(|| CliError::Usage("--version is required".into()))?;
    let (uki, template, sig) = (
        f.path("--uki")?,
        f.path("--template")?,
        f.path("--pcr-signature")?,
    );
    let out = f.path("--out")?;
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(&out).map_err(io("creating", &out))?);
    let manifest = paddock_update::write(
        &mut file,
        version,
        &[
            (PartName::Uki, uki.as_path()),
            (PartName::Template, template.as_path()),
            (PartName::PcrSignature, sig.as_path()),
        ],
        &pkcs8,
    )
    .map_err(|e| CliError::Image(e.to_string()))?;
    std::io::Write::flush(&mut file).map_err(io("writing", &out))?;
    let bytes: u64 = manifest.parts.iter().map(|p| p.size).sum();
    eprintln!(
        "paddock-image: {} is version {} ({} bytes of parts), signed",
        out.display(),
        manifest.version,
        bytes
    );
    Ok(())
}
