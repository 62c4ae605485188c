//! Images an update would bring, made from the test image's UKI without a
//! second image build: its os-release version raised, so the boot manager
//! prefers it and systemd-stub measures another PCR 11; and, when asked,
//! its PCR signature by the image key the build used.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The image key build-image.sh signed with: PADDOCK_IMAGE_KEY, or the
/// development key it made in the cache.
pub fn image_key() -> PathBuf {
    std::env::var_os("PADDOCK_IMAGE_KEY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("PADDOCK_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                        .join(".cache/paddock")
                });
            cache.join("image-key/development.pk8")
        })
}

/// `images`' UKI with its VERSION_ID's last digit raised by `bump` (1 to
/// 7; the same length, so the PE layout stays), written to `dir/NAME.efi`;
/// with `sign`, its PCR signature too. Panics on what a test cannot go on
/// from.
pub fn another(
    images: &Path,
    dir: &Path,
    name: &str,
    bump: u32,
    sign: bool,
) -> (PathBuf, Option<Vec<u8>>) {
    let uki = images.join("paddock.efi");
    let osrel = dir.join(format!("{name}.osrel"));
    let out = Command::new("objcopy")
        .args(["-O", "binary", "--only-section=.osrel"])
        .arg(&uki)
        .arg(&osrel)
        .status()
        .expect("objcopy");
    assert!(out.success());
    let text = std::fs::read_to_string(&osrel).expect("os-release");
    let changed: String = text
        .lines()
        .map(|l| match l.strip_prefix("VERSION_ID=") {
            Some(v) if !v.is_empty() => {
                let mut v = v.to_string();
                let last = v.pop().and_then(|c| c.to_digit(10)).unwrap_or(9);
                assert!(
                    last + bump <= 9,
                    "the test image's VERSION_ID ends in {last}"
                );
                v.push(char::from_digit(last + bump, 10).unwrap_or('9'));
                format!("VERSION_ID={v}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert_eq!(changed.len(), text.len(), "{changed}");
    std::fs::write(&osrel, changed).expect("os-release");
    let efi = dir.join(format!("{name}.efi"));
    let out = Command::new("objcopy")
        .arg(format!("--update-section=.osrel={}", osrel.display()))
        .arg(&uki)
        .arg(&efi)
        .status()
        .expect("objcopy");
    assert!(out.success());
    if !sign {
        return (efi, None);
    }
    let key = image_key();
    let sig = dir.join(format!("{name}.json"));
    let out = Command::new(
        PathBuf::from(std::env::var("PADDOCK_STATIC_BIN").expect("PADDOCK_STATIC_BIN"))
            .join("paddock-image"),
    )
    .args(["pcr-sign", "--image", name, "--uki"])
    .arg(&efi)
    .arg("--key")
    .arg(&key)
    .arg("--out")
    .arg(&sig)
    .status()
    .expect("paddock-image pcr-sign");
    assert!(out.success(), "signing with {}", key.display());
    (efi, Some(std::fs::read(&sig).expect("signature")))
}
