//! Writing and verifying a bundle (the layout is in the crate's comment).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"PDKUPD01";
pub const MAX_MANIFEST: u32 = 64 << 10;
/// Signed before the manifest: a signature made for anything else by the
/// same key is not one for an update.
pub const SIGNING_CONTEXT: &[u8] = b"paddock update bundle v1\0";
const SIGNATURE_LEN: usize = 64;
const FORMAT: u32 = 1;

/// Largest part of each kind the box takes.
fn max_size(name: PartName) -> u64 {
    match name {
        PartName::Uki => 512 << 20,
        PartName::Template => 16 << 30,
        PartName::PcrSignature => 4096,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartName {
    /// The unified kernel image: kernel, initramfs, command line.
    Uki,
    /// The default workspace template (erofs).
    Template,
    /// The UKI's PCR 11 signed by the image key (keys::signed).
    PcrSignature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub name: PartName,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The image's version (its os-release VERSION_ID).
    pub version: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not an update bundle (it does not start with {MAGIC:?})")]
    NotABundle,
    #[error("the bundle is truncated: {0}")]
    Truncated(String),
    #[error("the bundle's manifest: {0}")]
    Manifest(String),
    #[error("the bundle is not signed (its signature is empty)")]
    Unsigned,
    #[error("the bundle's signature is not by this box's update key (signed by another key, or altered after signing)")]
    WrongKey,
    #[error("the bundle is version {bundle}, not newer than the running {running} (force to install it anyway)")]
    NotNewer { bundle: String, running: String },
    #[error("the bundle's part {0:?} is corrupted: its SHA-256 is not the manifest's")]
    Corrupted(PartName),
    #[error("the bundle has {0} bytes past its last part")]
    Trailing(u64),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the update key: {0}")]
    Key(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BundleError {
    let what = what.into();
    move |source| BundleError::Io { what, source }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What `verify` found: the manifest, and where each part starts.
#[derive(Clone, Debug)]
pub struct Verified {
    pub manifest: Manifest,
    pub parts: Vec<(Part, u64)>,
}

impl Verified {
    pub fn part(&self, name: PartName) -> Option<&(Part, u64)> {
        self.parts.iter().find(|(p, _)| p.name == name)
    }
}

fn check_manifest(m: &Manifest) -> Result<(), BundleError> {
    let bad = |s: String| Err(BundleError::Manifest(s));
    if m.format != FORMAT {
        return bad(format!("format {} (this box reads {FORMAT})", m.format));
    }
    // Numbers and dots only: the box and systemd-boot order such versions
    // the same way (with letters, "~" or "-" they can disagree, and an
    // update the box took as newer would never be booted).
    if m.version.is_empty()
        || m.version.len() > 64
        || m.version
            .split('.')
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad(format!(
            "version {:?}: numbers separated by dots (1.2.3), at most 64 characters",
            m.version
        ));
    }
    for want in [PartName::Uki, PartName::Template, PartName::PcrSignature] {
        match m.parts.iter().filter(|p| p.name == want).count() {
            1 => {}
            0 => return bad(format!("no {want:?} part")),
            n => return bad(format!("{n} {want:?} parts")),
        }
    }
    if m.parts.len() != 3 {
        return bad(format!("{} parts where there are 3", m.parts.len()));
    }
    for p in &m.parts {
        if p.size == 0 || p.size > max_size(p.name) {
            return bad(format!(
                "part {:?} of {} bytes (1 to {})",
                p.name,
                p.size,
                max_size(p.name)
            ));
        }
        if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(format!("part {:?}: sha256 is not 64 hex digits", p.name));
        }
    }
    Ok(())
}

/// Writes a bundle of `version` from the parts' files, signed with the
/// update key (Ed25519, PKCS#8). Ed25519 is deterministic: the same parts
/// and key give the same bytes.
pub fn write(
    out: &mut impl Write,
    version: &str,
    parts: &[(PartName, &Path)],
    pkcs8: &[u8],
) -> Result<Manifest, BundleError> {
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8)
        .map_err(|e| BundleError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
    let mut manifest = Manifest {
        format: FORMAT,
        version: version.to_string(),
        parts: Vec::new(),
    };
    for (name, path) in parts {
        let mut f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
        let mut h = Sha256::new();
        let size =
            std::io::copy(&mut f, &mut h).map_err(io(format!("reading {}", path.display())))?;
        manifest.parts.push(Part {
            name: *name,
            size,
            sha256: hex(&h.finalize()),
        });
    }
    check_manifest(&manifest)?;
    let text = serde_json::to_vec(&manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
    let mut signed = SIGNING_CONTEXT.to_vec();
    signed.extend_from_slice(&text);
    let sig = pair.sign(&signed);
    out.write_all(MAGIC).map_err(io("writing"))?;
    out.write_all(&(text.len() as u32).to_be_bytes())
        .map_err(io("writing"))?;
    out.write_all(&text).map_err(io("writing"))?;
    out.write_all(sig.as_ref()).map_err(io("writing"))?;
    for (_, path) in parts {
        let mut f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
        std::io::copy(&mut f, out).map_err(io(format!("copying {}", path.display())))?;
    }
    Ok(manifest)
}

/// Checks a whole bundle against the update key `key` (32 bytes) and the
/// running version, every part's hash included, reading it once. With
/// `force` an older (or the same) version is taken.
pub fn verify(
    f: &mut (impl Read + Seek),
    key: &[u8],
    running: &str,
    force: bool,
) -> Result<Verified, BundleError> {
    let total = f.seek(SeekFrom::End(0)).map_err(io("sizing the bundle"))?;
    f.seek(SeekFrom::Start(0))
        .map_err(io("reading the bundle"))?;
    let mut head = [0u8; 12];
    if total < head.len() as u64 {
        return Err(if total >= 8 {
            BundleError::Truncated("no manifest".into())
        } else {
            BundleError::NotABundle
        });
    }
    f.read_exact(&mut head).map_err(io("reading the bundle"))?;
    if &head[..8] != MAGIC {
        return Err(BundleError::NotABundle);
    }
    let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    if len == 0 || len > MAX_MANIFEST {
        return Err(BundleError::Manifest(format!(
            "{len} bytes (1 to {MAX_MANIFEST})"
        )));
    }
    let after_sig = 12 + len as u64 + SIGNATURE_LEN as u64;
    if total < after_sig {
        return Err(BundleError::Truncated(format!(
            "{total} bytes, its manifest and signature need {after_sig}"
        )));
    }
    let mut text = vec![0u8; len as usize];
    f.read_exact(&mut text)
        .map_err(io("reading the manifest"))?;
    let mut sig = [0u8; SIGNATURE_LEN];
    f.read_exact(&mut sig)
        .map_err(io("reading the signature"))?;
    // The signature first: nothing an unsigned file says is believed.
    if sig.iter().all(|b| *b == 0) {
        return Err(BundleError::Unsigned);
    }
    let mut signed = SIGNING_CONTEXT.to_vec();
    signed.extend_from_slice(&text);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(&signed, &sig)
        .map_err(|_| BundleError::WrongKey)?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| BundleError::Manifest(e.to_string()))?;
    check_manifest(&manifest)?;
    if !force && crate::version::compare(&manifest.version, running) != std::cmp::Ordering::Greater
    {
        return Err(BundleError::NotNewer {
            bundle: manifest.version,
            running: running.to_string(),
        });
    }
    let need: u64 = after_sig + manifest.parts.iter().map(|p| p.size).sum::<u64>();
    if total < need {
        return Err(BundleError::Truncated(format!(
            "{total} bytes of the {need} its manifest says"
        )));
    }
    if total > need {
        return Err(BundleError::Trailing(total - need));
    }
    let mut at = after_sig;
    let mut parts = Vec::new();
    for p in &manifest.parts {
        let mut h = Sha256::new();
        let copied = std::io::copy(&mut (&mut *f).take(p.size), &mut h)
            .map_err(io(format!("reading part {:?}", p.name)))?;
        if copied != p.size || hex(&h.finalize()) != p.sha256.to_ascii_lowercase() {
            return Err(BundleError::Corrupted(p.name));
        }
        parts.push((p.clone(), at));
        at += p.size;
    }
    Ok(Verified { manifest, parts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use std::io::Cursor;

    struct Fixture {
        dir: std::path::PathBuf,
        pkcs8: Vec<u8>,
        public: Vec<u8>,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir =
                std::env::temp_dir().join(format!("paddock-bundle-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("dir");
            for (f, b) in [
                ("uki", &b"MZ kernel"[..]),
                ("tmpl", b"erofs bytes"),
                ("sig", b"{}"),
            ] {
                std::fs::write(dir.join(f), b).expect("part");
            }
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                .expect("key")
                .as_ref()
                .to_vec();
            let public = Ed25519KeyPair::from_pkcs8(&pkcs8)
                .expect("key")
                .public_key()
                .as_ref()
                .to_vec();
            Fixture { dir, pkcs8, public }
        }
        fn bundle(&self, version: &str, pkcs8: &[u8]) -> Vec<u8> {
            let parts = [
                (PartName::Uki, self.dir.join("uki")),
                (PartName::Template, self.dir.join("tmpl")),
                (PartName::PcrSignature, self.dir.join("sig")),
            ];
            let parts: Vec<(PartName, &Path)> =
                parts.iter().map(|(n, p)| (*n, p.as_path())).collect();
            let mut out = Vec::new();
            write(&mut out, version, &parts, pkcs8).expect("written");
            out
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn check(
        bytes: &[u8],
        key: &[u8],
        running: &str,
        force: bool,
    ) -> Result<Verified, BundleError> {
        verify(&mut Cursor::new(bytes.to_vec()), key, running, force)
    }

    #[test]
    fn a_signed_newer_bundle_verifies_and_says_where_its_parts_are() {
        let fx = Fixture::new("good");
        let b = fx.bundle("0.2.0", &fx.pkcs8);
        assert_eq!(b, fx.bundle("0.2.0", &fx.pkcs8), "the same bytes twice");
        let v = check(&b, &fx.public, "0.1.0", false).expect("verified");
        assert_eq!(v.manifest.version, "0.2.0");
        let (part, at) = v.part(PartName::Template).expect("template").clone();
        assert_eq!(&b[at as usize..(at + part.size) as usize], b"erofs bytes");
    }

    #[test]
    fn every_kind_of_bad_bundle_is_refused_with_why() {
        let fx = Fixture::new("bad");
        let good = fx.bundle("0.2.0", &fx.pkcs8);
        let other = Fixture::new("other");
        let refused = |bytes: &[u8], running: &str| {
            check(bytes, &fx.public, running, false)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        // Signed by another key.
        assert!(refused(&fx.bundle("0.2.0", &other.pkcs8), "0.1.0")
            .contains("not by this box's update key"));
        // Unsigned.
        let mut unsigned = good.clone();
        let len = u32::from_be_bytes([good[8], good[9], good[10], good[11]]) as usize;
        unsigned[12 + len..12 + len + 64].fill(0);
        assert!(refused(&unsigned, "0.1.0").contains("not signed"));
        // A manifest altered after signing (a bigger version).
        let mut altered = good.clone();
        let at = 12
            + good[12..]
                .windows(5)
                .position(|w| w == b"0.2.0")
                .expect("version");
        altered[at] = b'9';
        assert!(refused(&altered, "0.1.0").contains("not by this box's update key"));
        // A corrupted part.
        let mut corrupted = good.clone();
        let n = corrupted.len();
        corrupted[n - 3] ^= 1;
        assert!(
            refused(&corrupted, "0.1.0").contains("corrupted"),
            "{}",
            refused(&corrupted, "0.1.0")
        );
        // Older or the same: refused unless forced.
        assert!(refused(&good, "0.3.0").contains("not newer than the running 0.3.0"));
        assert!(refused(&good, "0.2.0").contains("not newer"));
        assert!(check(&good, &fx.public, "0.3.0", true).is_ok(), "forced");
        // Truncated anywhere, and bytes after the end.
        for cut in [4, 11, 20, 12 + len + 10, good.len() - 1] {
            let e = refused(&good[..cut], "0.1.0");
            assert!(
                e.contains("truncated") || e.contains("not an update bundle"),
                "cut at {cut}: {e}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(refused(&long, "0.1.0").contains("past its last part"));
        // Not a bundle at all.
        assert!(refused(b"\x7fELF and so on", "0.1.0").contains("not an update bundle"));
        assert!(refused(b"", "0.1.0").contains("not an update bundle"));
    }

    #[test]
    fn a_manifest_must_have_each_part_once_within_its_limits() {
        let ok = Manifest {
            format: 1,
            version: "1.0".into(),
            parts: [PartName::Uki, PartName::Template, PartName::PcrSignature]
                .into_iter()
                .map(|name| Part {
                    name,
                    size: 1,
                    sha256: "0".repeat(64),
                })
                .collect(),
        };
        assert!(check_manifest(&ok).is_ok());
        let mut m = ok.clone();
        m.parts.pop();
        assert!(check_manifest(&m).is_err(), "a part missing");
        let mut m = ok.clone();
        m.parts[2].name = PartName::Uki;
        assert!(check_manifest(&m).is_err(), "a part twice");
        let mut m = ok.clone();
        m.parts[2].size = 5000;
        assert!(check_manifest(&m).is_err(), "a PCR signature too big");
        for v in ["1.0; rm -rf", "1.0-rc1", "1.0~1", "1..0", ".1", "1.", "a"] {
            let mut m = ok.clone();
            m.version = v.into();
            assert!(check_manifest(&m).is_err(), "{v}");
        }
        let mut m = ok;
        m.format = 2;
        assert!(check_manifest(&m).is_err());
    }
}
