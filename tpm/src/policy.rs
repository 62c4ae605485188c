//! PCR selections and the policy digests PCR and authorized policies
//! produce, computed here so an NV index can be defined with the policy of
//! a boot state, or of any boot state a key signs for.

use crate::consts::{
    ALG_ECC, ALG_ECDSA, ALG_NULL, ALG_SHA256, CC_POLICY_AUTHORIZE, CC_POLICY_PCR, ECC_NIST_P256,
};
use crate::kdf::{sha256, DIGEST_LEN};
use crate::wire::{Reader, Writer};
use crate::TpmError;

/// A set of PCRs in the SHA-256 bank (0..=23).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcrSelection {
    bits: [u8; 3],
}

impl PcrSelection {
    pub fn new(pcrs: &[u8]) -> Result<Self, TpmError> {
        let mut bits = [0u8; 3];
        for &p in pcrs {
            if p > 23 {
                return Err(TpmError::Malformed(format!("PCR {p} does not exist")));
            }
            bits[(p / 8) as usize] |= 1 << (p % 8);
        }
        Ok(PcrSelection { bits })
    }

    /// The selected PCRs, in the order the TPM reports them (ascending).
    pub fn pcrs(&self) -> Vec<u8> {
        (0..24u8)
            .filter(|p| self.bits[(p / 8) as usize] & (1 << (p % 8)) != 0)
            .collect()
    }

    /// TPML_PCR_SELECTION with one SHA-256 bank entry.
    pub fn marshal(&self, w: &mut Writer) {
        w.u32(1).u16(ALG_SHA256).u8(3).bytes(&self.bits);
    }

    /// Reads a TPML_PCR_SELECTION as a PCR_Read answer echoes it; only a
    /// single SHA-256 bank is accepted.
    pub fn unmarshal(r: &mut Reader) -> Result<Self, TpmError> {
        let count = r.u32()?;
        if count == 0 {
            return Ok(PcrSelection { bits: [0; 3] });
        }
        if count != 1 {
            return Err(TpmError::Malformed(format!(
                "{count} PCR banks where one was asked"
            )));
        }
        let alg = r.u16()?;
        let size = r.u8()? as usize;
        let select = r.take(size)?;
        if alg != ALG_SHA256 || size < 3 || select[3..].iter().any(|b| *b != 0) {
            return Err(TpmError::Malformed(format!(
                "a PCR selection of bank {alg:#x} with {size} bytes"
            )));
        }
        Ok(PcrSelection {
            bits: [select[0], select[1], select[2]],
        })
    }

    pub fn is_empty(&self) -> bool {
        self.bits == [0; 3]
    }
}

/// The policy digest after TPM2_PolicyPCR on a fresh session, for PCR
/// `values` (in selection order): `H(0…0 || CC_PolicyPCR || pcrs || H(values))`.
pub fn pcr_policy_digest(
    selection: &PcrSelection,
    values: &[[u8; DIGEST_LEN]],
) -> [u8; DIGEST_LEN] {
    pcr_policy_after(&[0u8; DIGEST_LEN], selection, values)
}

/// The policy digest after TPM2_PolicyPCR on a session whose digest was
/// `before`.
pub fn pcr_policy_after(
    before: &[u8; DIGEST_LEN],
    selection: &PcrSelection,
    values: &[[u8; DIGEST_LEN]],
) -> [u8; DIGEST_LEN] {
    let joined: Vec<&[u8]> = values.iter().map(|v| &v[..]).collect();
    let pcr_digest = sha256(&joined);
    let mut w = Writer::new();
    selection.marshal(&mut w);
    sha256(&[
        before,
        &CC_POLICY_PCR.to_be_bytes(),
        w.as_slice(),
        &pcr_digest,
    ])
}

/// The policy digest after TPM2_PolicyAuthorize: whatever came before is
/// replaced by "a policy the holder of `key_name` signed, for
/// `policy_ref`": `H(H(0…0 || CC_PolicyAuthorize || keyName) || policyRef)`.
pub fn authorize_digest(key_name: &[u8], policy_ref: &[u8]) -> [u8; DIGEST_LEN] {
    let first = sha256(&[
        &[0u8; DIGEST_LEN],
        &CC_POLICY_AUTHORIZE.to_be_bytes(),
        key_name,
    ]);
    sha256(&[&first, policy_ref])
}

/// What the signer of an authorized policy signs: `H(approvedPolicy ||
/// policyRef)` (TPM2_VerifySignature's digest).
pub fn authorization_hash(approved: &[u8; DIGEST_LEN], policy_ref: &[u8]) -> [u8; DIGEST_LEN] {
    sha256(&[approved, policy_ref])
}

/// A P-256 public key that signs policies (ECDSA with SHA-256), as the TPM
/// loads it: its public area and name are fixed by the point alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyKey {
    pub x: [u8; 32],
    pub y: [u8; 32],
}

impl PolicyKey {
    /// From an uncompressed SEC1 point (`04 || x || y`, 65 bytes).
    pub fn from_sec1(point: &[u8]) -> Result<PolicyKey, TpmError> {
        if point.len() != 65 || point[0] != 4 {
            return Err(TpmError::Malformed(format!(
                "a policy key is an uncompressed P-256 point (65 bytes starting 04), not {} bytes",
                point.len()
            )));
        }
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        x.copy_from_slice(&point[1..33]);
        y.copy_from_slice(&point[33..]);
        Ok(PolicyKey { x, y })
    }

    /// TPMT_PUBLIC: an ECC P-256 signing key (ECDSA, SHA-256), no policy.
    pub fn public_area(&self) -> Vec<u8> {
        let attrs: u32 = (1 << 6) // userWithAuth
            | (1 << 18); // sign
        let mut w = Writer::new();
        w.u16(ALG_ECC)
            .u16(ALG_SHA256)
            .u32(attrs)
            .tpm2b(&[])
            .u16(ALG_NULL)
            .u16(ALG_ECDSA)
            .u16(ALG_SHA256)
            .u16(ECC_NIST_P256)
            .u16(ALG_NULL)
            .tpm2b(&self.x)
            .tpm2b(&self.y);
        w.into_vec()
    }

    /// nameAlg || H(public area).
    pub fn name(&self) -> Vec<u8> {
        let mut n = ALG_SHA256.to_be_bytes().to_vec();
        n.extend_from_slice(&sha256(&[&self.public_area()]));
        n
    }
}

/// A policy approved by a [`PolicyKey`]: the signature (ECDSA P-256,
/// SHA-256; `r` and `s`) over [`authorization_hash`] of `approved` and
/// the `policy_ref` it was signed for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPolicy {
    pub approved: [u8; DIGEST_LEN],
    pub r: [u8; 32],
    pub s: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_round_trip_and_reject_what_is_not_a_pcr() {
        let s = PcrSelection::new(&[7, 4, 23]).ok();
        assert_eq!(s.as_ref().map(|s| s.pcrs()), Some(vec![4, 7, 23]));
        let mut w = Writer::new();
        if let Some(s) = &s {
            s.marshal(&mut w);
        }
        let v = w.into_vec();
        let mut r = Reader::new(&v, "t");
        assert_eq!(PcrSelection::unmarshal(&mut r).ok(), s);
        assert!(PcrSelection::new(&[24]).is_err());
    }
}
