//! PCR selections and the policy digest a PCR policy produces, computed
//! here so an NV index can be defined with the policy of a boot state.

use crate::consts::{ALG_SHA256, CC_POLICY_PCR};
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
    let joined: Vec<&[u8]> = values.iter().map(|v| &v[..]).collect();
    let pcr_digest = sha256(&joined);
    let mut w = Writer::new();
    selection.marshal(&mut w);
    sha256(&[
        &[0u8; DIGEST_LEN],
        &CC_POLICY_PCR.to_be_bytes(),
        w.as_slice(),
        &pcr_digest,
    ])
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
