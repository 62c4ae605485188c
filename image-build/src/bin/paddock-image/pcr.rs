//! The image key's commands: make one, give its public half (which goes
//! into the image), and sign a built UKI's PCR 11 policy with it (which
//! goes onto the ESP). keys::signed says what that buys.

use super::{io, parse_flags, CliError};
use paddock_image::pcr::{pcr11, public_point, sign_policy};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::path::Path;

fn read_key(path: &Path) -> Result<(Vec<u8>, Vec<u8>), CliError> {
    let pkcs8 = std::fs::read(path).map_err(io("reading", path))?;
    let public = public_point(&pkcs8).map_err(|e| {
        CliError::Image(format!(
            "{}: {e}; `paddock-image pcr-key` makes one",
            path.display()
        ))
    })?;
    Ok((pkcs8, public))
}

/// `pcr-key --out KEY --public FILE`: a new image key.
pub fn key(args: &[String]) -> Result<(), CliError> {
    let f = parse_flags(args, &["--out", "--public"])?;
    let out = f.path("--out")?;
    let public = f.path("--public")?;
    if out.exists() {
        return Err(CliError::Image(format!(
            "{} exists: an image key is made once (every image it signed depends on it)",
            out.display()
        )));
    }
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| CliError::Image(format!("making a P-256 key: {e}")))?;
    paddock_keys::private_file::write_private(&out, pkcs8.as_ref()).map_err(io("writing", &out))?;
    let (_, point) = read_key(&out)?;
    std::fs::write(&public, point).map_err(io("writing", &public))
}

/// `pcr-public --key KEY --out FILE`: the key's public half, 65 bytes.
pub fn public(args: &[String]) -> Result<(), CliError> {
    let f = parse_flags(args, &["--key", "--out"])?;
    let (_, point) = read_key(&f.path("--key")?)?;
    let out = f.path("--out")?;
    std::fs::write(&out, point).map_err(io("writing", &out))
}

/// `pcr-sign --uki FILE --key KEY --image NAME --out FILE`.
pub fn sign(args: &[String]) -> Result<(), CliError> {
    let f = parse_flags(args, &["--uki", "--key", "--image", "--out"])?;
    let uki_path = f.path("--uki")?;
    let uki = std::fs::read(&uki_path).map_err(io("reading", &uki_path))?;
    let value = pcr11(&uki).map_err(|e| CliError::Image(format!("{}: {e}", uki_path.display())))?;
    let (pkcs8, _) = read_key(&f.path("--key")?)?;
    let image = f
        .get("--image")
        .ok_or_else(|| CliError::Usage("--image is required".into()))?;
    let sig = sign_policy(&pkcs8, &value, image).map_err(CliError::Image)?;
    let text = serde_json::to_vec_pretty(&sig)
        .map_err(|e| CliError::Image(format!("writing the signature: {e}")))?;
    let out = f.path("--out")?;
    std::fs::write(&out, text).map_err(io("writing", &out))?;
    eprintln!(
        "paddock-image: PCR 11 of {} will be {} (signed)",
        uki_path.display(),
        sig.value
    );
    Ok(())
}
