//! Authorized policies (TPM2_PolicyAuthorize): an NV index whose policy
//! says "whatever policy this key signed", so that the same index opens in
//! every boot state the key signs for (each signed image), and in no other.
//! The key is loaded as a public key only (TPM2_LoadExternal), the
//! signature checked by the TPM (TPM2_VerifySignature), and the ticket it
//! gives turns the session's digest into the authorized one.

use super::*;
use crate::policy::{authorization_hash, PolicyKey, SignedPolicy};

/// TPMT_TK_VERIFIED: the TPM's word that a key it holds verified a digest.
#[derive(Clone, Debug)]
pub struct Verified {
    hierarchy: u32,
    digest: Vec<u8>,
}

impl Tpm {
    /// Loads a policy key's public part into the owner hierarchy (the null
    /// hierarchy's tickets are empty and PolicyAuthorize refuses them).
    /// Returns its handle; the name the TPM computed must be ours.
    pub fn load_policy_key(&mut self, key: &PolicyKey) -> Result<u32, TpmError> {
        let mut w = Writer::new();
        w.tpm2b(&[]).tpm2b(&key.public_area()).u32(RH_OWNER);
        let cmd = Command {
            name: "LoadExternal",
            code: CC_LOAD_EXTERNAL,
            handles: &[],
            names: &[],
            params: w.into_vec(),
            response_handles: 1,
        };
        let (handles, out) = self.execute(cmd, &mut [])?;
        let handle = handles[0];
        let checked = (|| {
            let mut r = Reader::new(&out, "LoadExternal");
            let name = r.tpm2b_max(34)?.to_vec();
            r.finish()?;
            if name != key.name() {
                return Err(TpmError::Malformed(
                    "LoadExternal: the TPM named the policy key differently from its public area"
                        .into(),
                ));
            }
            Ok(handle)
        })();
        if checked.is_err() {
            let _ = self.flush(handle);
        }
        checked
    }

    /// Has the TPM verify `signed`'s signature with the loaded key
    /// `handle`, for `policy_ref`; its ticket proves it to PolicyAuthorize.
    pub fn verify_policy_signature(
        &mut self,
        handle: u32,
        key: &PolicyKey,
        signed: &SignedPolicy,
        policy_ref: &[u8],
    ) -> Result<Verified, TpmError> {
        let mut w = Writer::new();
        w.tpm2b(&authorization_hash(&signed.approved, policy_ref))
            .u16(ALG_ECDSA)
            .u16(ALG_SHA256)
            .tpm2b(&signed.r)
            .tpm2b(&signed.s);
        let name = key.name();
        let cmd = Command {
            name: "VerifySignature",
            code: CC_VERIFY_SIGNATURE,
            handles: &[handle],
            names: &[&name],
            params: w.into_vec(),
            response_handles: 0,
        };
        let (_, out) = self.execute(cmd, &mut [])?;
        let mut r = Reader::new(&out, "VerifySignature");
        let (tag, hierarchy) = (r.u16()?, r.u32()?);
        let digest = r.tpm2b_max(64)?.to_vec();
        r.finish()?;
        if tag != ST_VERIFIED || hierarchy != RH_OWNER || digest.is_empty() {
            return Err(TpmError::Malformed(format!(
                "VerifySignature gave a ticket of tag {tag:#x} for hierarchy {hierarchy:#x} ({} bytes): not one PolicyAuthorize takes",
                digest.len()
            )));
        }
        Ok(Verified { hierarchy, digest })
    }

    /// Replaces the session's digest, which must be `approved`, by the
    /// authorization of `key` for `policy_ref`.
    pub fn policy_authorize(
        &mut self,
        session: &Session,
        approved: &[u8; DIGEST_LEN],
        policy_ref: &[u8],
        key: &PolicyKey,
        ticket: &Verified,
    ) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.tpm2b(approved)
            .tpm2b(policy_ref)
            .tpm2b(&key.name())
            .u16(ST_VERIFIED)
            .u32(ticket.hierarchy)
            .tpm2b(&ticket.digest);
        let h = session.handle.to_be_bytes();
        let cmd = Command {
            name: "PolicyAuthorize",
            code: CC_POLICY_AUTHORIZE,
            handles: &[session.handle],
            names: &[&h],
            params: w.into_vec(),
            response_handles: 0,
        };
        self.execute(cmd, &mut [])?;
        Ok(())
    }

    /// Like [`Tpm::with_pcr_policy`], for an index whose policy is
    /// `PolicyAuthorize(key, policy_ref)` then `PolicyPCR(also)`: the
    /// session is brought to `signed.approved` by PolicyPCR over `signed_pcrs`
    /// (it gets there only if those PCRs hold the values the key signed),
    /// authorized with the TPM's ticket for the signature, then bound to
    /// `also`'s current values.
    #[allow(clippy::too_many_arguments)]
    pub fn with_authorized_policy<T>(
        &mut self,
        salt: &EccKey,
        key: &PolicyKey,
        signed: &SignedPolicy,
        policy_ref: &[u8],
        signed_pcrs: &PcrSelection,
        also: &PcrSelection,
        encrypt: u8,
        f: impl FnOnce(&mut Tpm, &mut [Auth]) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let handle = self.load_policy_key(key)?;
        let ticket = self.verify_policy_signature(handle, key, signed, policy_ref);
        let _ = self.flush(handle);
        let ticket = ticket?;
        self.with_policy_session(
            salt,
            encrypt,
            |tpm, pol| {
                tpm.policy_pcr(pol, signed_pcrs)?;
                tpm.policy_authorize(pol, &signed.approved, policy_ref, key, &ticket)?;
                if also.is_empty() {
                    Ok(())
                } else {
                    tpm.policy_pcr(pol, also)
                }
            },
            f,
        )
    }
}
