//! What systemd-stub measures into PCR 11 when it boots a unified kernel
//! image, computed from the UKI file: for each of its payload sections, in
//! the stub's own order (not the file's), the section's name with its
//! terminating NUL, then the section's bytes, each extended as a SHA-256
//! digest into a PCR that starts at zero. `.pcrsig` is never measured (it
//! carries signatures of this very value). The test against systemd's own
//! `systemd-measure` (tests/pcr_measure.rs) holds this to the stub's rule.
//!
//! A key store sealed to "any PCR 11 value the image key signed" then
//! opens in every image built and signed by us, and in no other.

use crate::pe::{sections, PeError};
use sha2::{Digest, Sha256};

/// The sections systemd-stub (252) measures, in the order it measures them.
pub const MEASURED: [&str; 7] = [
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey",
];

/// `H(pcr || H(data))`.
fn extend(pcr: &mut [u8; 32], data: &[u8]) {
    let mut h = Sha256::new();
    h.update(*pcr);
    h.update(Sha256::digest(data));
    pcr.copy_from_slice(&h.finalize());
}

/// PCR 11 (SHA-256 bank) after systemd-stub has booted `uki`, before
/// anything else extends it.
pub fn pcr11(uki: &[u8]) -> Result<[u8; 32], PeError> {
    let all = sections(uki)?;
    let mut pcr = [0u8; 32];
    for wanted in MEASURED {
        let mut found = all.iter().filter(|s| s.name == wanted);
        let Some(section) = found.next() else {
            continue;
        };
        if found.next().is_some() {
            return Err(PeError::Twice(wanted.to_string()));
        }
        let mut name = wanted.as_bytes().to_vec();
        name.push(0);
        extend(&mut pcr, &name);
        extend(&mut pcr, &section.mapped());
    }
    Ok(pcr)
}

/// Signs the disk keys' policy for a UKI whose PCR 11 will be `value`
/// with the image key (P-256, PKCS#8 DER): the file the ESP carries.
/// RFC 6979 nonces: the same image and key give the same bytes.
pub fn sign_policy(
    pkcs8: &[u8],
    value: &[u8; 32],
    image: &str,
) -> Result<paddock_keys::signed::PcrSignature, String> {
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use p256::pkcs8::DecodePrivateKey;
    use paddock_keys::signed::{approved_for, hex, PcrSignature, POLICY_REF, SIGNED_PCRS};
    let key = SigningKey::from_pkcs8_der(pkcs8)
        .map_err(|e| format!("the image key is not a P-256 key in PKCS#8 DER: {e}"))?;
    let point = key.verifying_key().to_encoded_point(false);
    let public = paddock_tpm::PolicyKey::from_sec1(point.as_bytes()).map_err(|e| e.to_string())?;
    let approved = approved_for(value);
    let mut msg = approved.to_vec();
    msg.extend_from_slice(POLICY_REF);
    let sig: Signature = key.sign(&msg);
    Ok(PcrSignature {
        image: image.to_string(),
        pcr: SIGNED_PCRS[0],
        value: hex(value),
        policy: hex(&approved),
        key: hex(&public.name()),
        signature: hex(&sig.to_bytes()),
    })
}

/// The image key's public half: the uncompressed point the image holds.
pub fn public_point(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    use p256::pkcs8::DecodePrivateKey;
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(pkcs8)
        .map_err(|e| format!("the image key is not a P-256 key in PKCS#8 DER: {e}"))?;
    Ok(key
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE: MZ, PE header, no optional header, `secs` sections.
    fn pe(secs: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut b = vec![0u8; 0x40];
        b[..2].copy_from_slice(b"MZ");
        b[0x3C..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        b.extend_from_slice(b"PE\0\0");
        let mut coff = [0u8; 20];
        coff[2..4].copy_from_slice(&(secs.len() as u16).to_le_bytes());
        b.extend_from_slice(&coff);
        let data_at = b.len() + 40 * secs.len();
        let mut data = Vec::new();
        for (name, bytes, vsize) in secs {
            let mut h = [0u8; 40];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[8..12].copy_from_slice(&vsize.to_le_bytes());
            h[16..20].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            h[20..24].copy_from_slice(&((data_at + data.len()) as u32).to_le_bytes());
            b.extend_from_slice(&h);
            data.extend_from_slice(bytes);
        }
        b.extend_from_slice(&data);
        b
    }

    #[test]
    fn measures_in_the_stubs_order_name_then_bytes() {
        let image = pe(&[
            (".initrd", b"ramfs", 5),
            (".linux", b"kernel", 6),
            (".text", b"stub", 4),
        ]);
        let mut want = [0u8; 32];
        for part in [&b".linux\0"[..], b"kernel", b".initrd\0", b"ramfs"] {
            extend(&mut want, part);
        }
        assert_eq!(pcr11(&image).expect("measured"), want);
    }

    #[test]
    fn a_section_is_measured_as_mapped_zeros_past_its_raw_data_and_no_further() {
        let long = pe(&[(".cmdline", b"abc", 5)]);
        let secs = sections(&long).expect("sections");
        assert_eq!(secs[0].mapped(), b"abc\0\0");
        let short = pe(&[(".cmdline", b"abcdef", 3)]);
        assert_eq!(sections(&short).expect("sections")[0].mapped(), b"abc");
    }

    #[test]
    fn a_signature_is_the_same_bytes_twice_and_reads_back_for_its_value() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .expect("a key");
        let a = sign_policy(pkcs8.as_ref(), &[9; 32], "1.0").expect("signed");
        let b = sign_policy(pkcs8.as_ref(), &[9; 32], "1.0").expect("signed");
        assert_eq!(a, b, "RFC 6979: no random nonce");
        let public = public_point(pkcs8.as_ref()).expect("public");
        let bytes = serde_json::to_vec(&a).expect("json");
        let (images, left_out) =
            paddock_keys::signed::SignedImages::gather(&public, &[("a".into(), bytes)])
                .expect("gathered");
        assert!(left_out.is_empty(), "{left_out:?}");
        assert!(images.for_value(&[9; 32]).is_some());
        assert!(sign_policy(b"not a key", &[0; 32], "x").is_err());
    }

    #[test]
    fn what_is_not_a_pe_image_is_an_error() {
        assert!(pcr11(b"").is_err());
        assert!(pcr11(b"MZ").is_err());
        let mut image = pe(&[(".linux", b"k", 1)]);
        image.truncate(image.len() - 1);
        assert!(matches!(pcr11(&image), Err(PeError::OutOfFile { .. })));
        let twice = pe(&[(".linux", b"a", 1), (".linux", b"b", 1)]);
        assert!(matches!(pcr11(&twice), Err(PeError::Twice(_))));
    }
}
