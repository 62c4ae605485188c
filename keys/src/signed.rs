//! Disk keys that survive updates: the epoch is sealed not to one image's
//! measurements but to "any PCR 11 value the image key signed" (TPM2
//! PolicyAuthorize) and to PCR 7 (the Secure Boot state) as it was. Each
//! image build measures its own UKI as systemd-stub will (paddock-image's
//! `pcr` module), signs the PCR 11 policy with the image key, and puts the
//! signature on the ESP; the key's public half is inside the image (and so
//! inside what PCR 11 measures). The next signed image opens the keys
//! without the recovery secret; an unsigned or altered one does not.
//!
//! Everything read here comes from the ESP, which anyone with the disk can
//! write: a file that does not parse is left out with a word in the log,
//! and what does parse proves nothing until the TPM verifies its signature.

use paddock_tpm::policy::{self, PolicyKey, SignedPolicy};
use paddock_tpm::PcrSelection;
use serde::{Deserialize, Serialize};

/// The PCRs the image key signs values of: what systemd-stub measured.
pub const SIGNED_PCRS: &[u8] = &[11];
/// The PCRs the keys stay bound to as they were at sealing.
pub const BOUND_PCRS: &[u8] = &[7];
/// Signed with every policy: a signature made for another purpose, by the
/// same key, is not one for the disk keys.
pub const POLICY_REF: &[u8] = b"paddock disk keys v1";
/// The image key's public half (65 bytes, an uncompressed P-256 point), in
/// the image.
pub const POLICY_KEY_FILE: &str = "/usr/lib/paddock/pcr-policy.pub";
/// Where the signatures are on the ESP, one file per image.
pub const SIGNATURE_DIR: &str = "paddock/pcrsig";
/// Most signature files read, and the longest.
pub const MAX_SIGNATURES: usize = 16;
pub const MAX_SIGNATURE_FILE: usize = 4096;

/// A signature file, as the image build writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcrSignature {
    /// The image it was made for (its version), for people.
    pub image: String,
    pub pcr: u8,
    /// The PCR's value when that image has booted (hex).
    pub value: String,
    /// PolicyPCR over that value: what the key approved (hex).
    pub policy: String,
    /// The name of the key that signed (hex): nameAlg || H(public area).
    pub key: String,
    /// ECDSA P-256 over SHA-256(policy || POLICY_REF): r || s (hex).
    pub signature: String,
}

fn unhex<const N: usize>(s: &str, what: &str) -> Result<[u8; N], String> {
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} is not {N} bytes of hex"));
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(out)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn selection() -> PcrSelection {
    // SIGNED_PCRS holds PCR numbers below 24.
    PcrSelection::new(SIGNED_PCRS).unwrap_or_else(|_| unreachable!("PCR 11 exists"))
}

/// The policy the image key approves for one PCR 11 value.
pub fn approved_for(value: &[u8; 32]) -> [u8; 32] {
    policy::pcr_policy_digest(&selection(), &[*value])
}

impl PcrSignature {
    /// Reads one file: its shape, and that its policy is the one its value
    /// gives (the signature itself only the TPM checks).
    pub fn parse(bytes: &[u8]) -> Result<(PcrSignature, SignedPolicy), String> {
        if bytes.len() > MAX_SIGNATURE_FILE {
            return Err(format!(
                "{} bytes, more than {MAX_SIGNATURE_FILE}",
                bytes.len()
            ));
        }
        let file: PcrSignature = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.pcr != SIGNED_PCRS[0] {
            return Err(format!("signs PCR {}, not {}", file.pcr, SIGNED_PCRS[0]));
        }
        let value: [u8; 32] = unhex(&file.value, "value")?;
        let approved: [u8; 32] = unhex(&file.policy, "policy")?;
        if approved != approved_for(&value) {
            return Err("its policy is not PolicyPCR over its value".into());
        }
        let _: [u8; 34] = unhex(&file.key, "key")?;
        let sig: [u8; 64] = unhex(&file.signature, "signature")?;
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&sig[..32]);
        s.copy_from_slice(&sig[32..]);
        Ok((file, SignedPolicy { approved, r, s }))
    }
}

/// The image key and the signatures found for it.
#[derive(Clone, Debug)]
pub struct SignedImages {
    pub key: PolicyKey,
    pub signatures: Vec<(String, SignedPolicy)>,
}

impl SignedImages {
    /// The image's key (`POLICY_KEY_FILE`'s bytes) and the ESP's signature
    /// files (name, bytes). Returns what to use and, for the log, what was
    /// left out and why.
    pub fn gather(
        key: &[u8],
        files: &[(String, Vec<u8>)],
    ) -> Result<(SignedImages, Vec<String>), String> {
        let key = PolicyKey::from_sec1(key).map_err(|e| format!("the image key: {e}"))?;
        let name = hex(&key.name());
        let mut signatures = Vec::new();
        let mut left_out = Vec::new();
        for (file, bytes) in files.iter().take(MAX_SIGNATURES) {
            match PcrSignature::parse(bytes) {
                Ok((sig, _)) if sig.key != name => left_out.push(format!(
                    "{file}: signed by another key ({}…)",
                    sig.key.get(..12).unwrap_or_default()
                )),
                Ok((sig, policy)) => signatures.push((sig.image, policy)),
                Err(e) => left_out.push(format!("{file}: {e}")),
            }
        }
        if files.len() > MAX_SIGNATURES {
            left_out.push(format!(
                "{} signature files past the first {MAX_SIGNATURES}",
                files.len() - MAX_SIGNATURES
            ));
        }
        Ok((SignedImages { key, signatures }, left_out))
    }

    /// The signature for the boot state whose PCR 11 is `value`, and the
    /// image it names (the first of them: see `all_for_value`).
    pub fn for_value(&self, value: &[u8; 32]) -> Option<(&str, &SignedPolicy)> {
        self.all_for_value(value)
            .next()
            .map(|(image, p)| (image.as_str(), p))
    }

    /// Every signature claiming the boot state whose PCR 11 is `value`: a
    /// forged file may claim it too, so the TPM tries each in turn.
    pub fn all_for_value(
        &self,
        value: &[u8; 32],
    ) -> impl Iterator<Item = &(String, SignedPolicy)> + '_ {
        let want = approved_for(value);
        self.signatures
            .iter()
            .filter(move |(_, p)| p.approved == want)
    }

    /// The key's name, hex, as the key store's record keeps it.
    pub fn key_name(&self) -> String {
        hex(&self.key.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn key() -> (Vec<u8>, Vec<u8>) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("a key")
            .as_ref()
            .to_vec();
        let public = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .expect("reads back")
            .public_key()
            .as_ref()
            .to_vec();
        (pkcs8, public)
    }

    /// What the image build does (paddock-image's `pcr::sign_policy`,
    /// there with deterministic nonces).
    fn sign(pkcs8: &[u8], value: &[u8; 32], image: &str) -> PcrSignature {
        let rng = ring::rand::SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).expect("a key");
        let key = PolicyKey::from_sec1(pair.public_key().as_ref()).expect("a point");
        let approved = approved_for(value);
        let mut msg = approved.to_vec();
        msg.extend_from_slice(POLICY_REF);
        PcrSignature {
            image: image.into(),
            pcr: 11,
            value: hex(value),
            policy: hex(&approved),
            key: hex(&key.name()),
            signature: hex(pair.sign(&rng, &msg).expect("signed").as_ref()),
        }
    }

    #[test]
    fn a_signature_round_trips_and_is_found_for_its_value_only() {
        let (pkcs8, public) = key();
        let sig = sign(&pkcs8, &[7; 32], "0.2.0");
        let bytes = serde_json::to_vec(&sig).expect("json");
        let (images, left_out) =
            SignedImages::gather(&public, &[("a.json".into(), bytes)]).expect("gathered");
        assert!(left_out.is_empty(), "{left_out:?}");
        assert_eq!(images.for_value(&[7; 32]).map(|(i, _)| i), Some("0.2.0"));
        assert!(images.for_value(&[8; 32]).is_none());
    }

    #[test]
    fn files_that_do_not_read_or_are_another_keys_are_left_out_with_why() {
        let (pkcs8, public) = key();
        let (other, _) = key();
        let good = sign(&pkcs8, &[1; 32], "good");
        let by_other = sign(&other, &[2; 32], "other");
        let mut lying = good.clone();
        lying.value = hex(&[3; 32]);
        let mut wide = good.clone();
        wide.pcr = 4;
        let files: Vec<(String, Vec<u8>)> = vec![
            ("good".into(), serde_json::to_vec(&good).expect("json")),
            ("other".into(), serde_json::to_vec(&by_other).expect("json")),
            ("lying".into(), serde_json::to_vec(&lying).expect("json")),
            ("wide".into(), serde_json::to_vec(&wide).expect("json")),
            ("junk".into(), b"{\"image\": 1".to_vec()),
            ("huge".into(), vec![b' '; MAX_SIGNATURE_FILE + 1]),
            (
                "short".into(),
                br#"{"image":"x","pcr":11,"value":"00","policy":"00","key":"00","signature":"00"}"#
                    .to_vec(),
            ),
        ];
        let (images, left_out) = SignedImages::gather(&public, &files).expect("gathered");
        assert_eq!(images.signatures.len(), 1);
        let said = left_out.join("\n");
        for (name, why) in [
            ("other", "another key"),
            ("lying", "not PolicyPCR over its value"),
            ("wide", "signs PCR 4"),
            ("junk", "expected a string"),
            ("huge", "more than"),
            ("short", "not 32 bytes of hex"),
        ] {
            assert!(
                left_out
                    .iter()
                    .any(|l| l.starts_with(name) && l.contains(why)),
                "{name}: {why}\n{said}"
            );
        }
        assert!(
            SignedImages::gather(&[4; 64], &[]).is_err(),
            "a key that is not a point"
        );
    }
}
