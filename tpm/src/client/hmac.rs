//! HMAC keys derived inside the TPM: a primary KEYEDHASH key whose value
//! never leaves the TPM, usable only under its policy, and TPM2_HMAC with
//! it. A primary is a function of the hierarchy's seed and its template, so
//! the same TPM gives the same key for the same template after any reboot
//! or reinstall, and no other TPM can.

use super::*;

/// The most data one TPM2_HMAC takes (TPM2B_MAX_BUFFER: MAX_DIGEST_BUFFER,
/// 1024 on every TPM we know of).
pub const MAX_HMAC_DATA: usize = 1024;

/// A KEYEDHASH primary's `unique` is a digest of its name algorithm.
const MAX_UNIQUE: usize = DIGEST_LEN;

/// A loaded HMAC key: its transient handle and its name (nameAlg ||
/// H(public area)), which commands using it bind into their HMACs.
#[derive(Clone, Debug)]
pub struct HmacKey {
    pub handle: u32,
    pub name: Vec<u8>,
}

/// No userWithAuth: only a policy session that reaches `authPolicy` can use
/// it (an empty password cannot). adminWithPolicy for the same reason on
/// the admin role. fixedTPM and sensitiveDataOrigin: the TPM made it and
/// will not export it, so it exists only inside this TPM.
const HMAC_KEY_ATTRS: u32 = (1 << 1) // fixedTPM
    | (1 << 4) // fixedParent
    | (1 << 5) // sensitiveDataOrigin
    | (1 << 7) // adminWithPolicy
    | (1 << 10) // noDA
    | (1 << 18); // sign

fn hmac_primary_template(auth_policy: &[u8; DIGEST_LEN], unique: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u16(ALG_KEYEDHASH)
        .u16(ALG_SHA256)
        .u32(HMAC_KEY_ATTRS)
        .tpm2b(auth_policy)
        .u16(ALG_HMAC)
        .u16(ALG_SHA256)
        .tpm2b(unique);
    w.into_vec()
}

fn too_long(command: &'static str, what: &'static str, len: usize, max: usize) -> TpmError {
    TpmError::TooLong {
        command,
        what,
        len,
        max,
    }
}

impl Tpm {
    /// Creates (or re-derives: same owner seed, same template, same key)
    /// an HMAC-SHA256 primary key in the owner hierarchy that only a policy
    /// session reaching `auth_policy` can use. `unique` (at most 32 bytes)
    /// is part of the template: a different one gives an unrelated key.
    pub fn create_primary_hmac(
        &mut self,
        auth_policy: &[u8; DIGEST_LEN],
        unique: &[u8],
    ) -> Result<HmacKey, TpmError> {
        if unique.len() > MAX_UNIQUE {
            return Err(too_long(
                "CreatePrimary",
                "the template's unique field",
                unique.len(),
                MAX_UNIQUE,
            ));
        }
        let (handle, out) = self.create_primary(&hmac_primary_template(auth_policy, unique))?;
        let parsed = parse_hmac_primary(&out, auth_policy).map(|name| HmacKey { handle, name });
        if parsed.is_err() {
            let _ = self.flush(handle);
        }
        parsed
    }

    /// A loaded object's name, as the TPM computes it; checked against the
    /// public area it reports, so an HMAC bound to it binds that area.
    pub fn read_public_name(&mut self, handle: u32) -> Result<Vec<u8>, TpmError> {
        let h = handle.to_be_bytes();
        let cmd = Command {
            name: "ReadPublic",
            code: CC_READ_PUBLIC,
            handles: &[handle],
            names: &[&h],
            params: Vec::new(),
            response_handles: 0,
        };
        let (_, out) = self.execute(cmd, &mut [])?;
        let mut r = Reader::new(&out, "ReadPublic");
        let public = r.tpm2b()?;
        let name = r.tpm2b_max(34)?.to_vec();
        let _qualified = r.tpm2b_max(34)?;
        r.finish()?;
        if name != name_of(public) {
            return Err(TpmError::Malformed(format!(
                "ReadPublic for {handle:#x}: the name is not its public area's"
            )));
        }
        Ok(name)
    }

    /// HMAC-SHA256 of `data` (at most [`MAX_HMAC_DATA`] bytes) with the
    /// loaded HMAC key `key`. `auths` authorizes the key's use (for a key
    /// from [`Tpm::create_primary_hmac`], a policy session that reaches its
    /// policy), then optionally a session that encrypts the answer
    /// (`SA_ENCRYPT`), so the result never crosses the bus in the clear.
    pub fn hmac(
        &mut self,
        key: u32,
        data: &[u8],
        auths: &mut [Auth],
    ) -> Result<[u8; DIGEST_LEN], TpmError> {
        if data.len() > MAX_HMAC_DATA {
            return Err(too_long("HMAC", "the data", data.len(), MAX_HMAC_DATA));
        }
        let name = self.read_public_name(key)?;
        let mut w = Writer::new();
        w.tpm2b(data).u16(ALG_SHA256);
        let cmd = Command {
            name: "HMAC",
            code: CC_HMAC,
            handles: &[key],
            names: &[&name],
            params: w.into_vec(),
            response_handles: 0,
        };
        let (_, mut out) = self.execute(cmd, auths)?;
        let parsed = (|| {
            let mut r = Reader::new(&out, "HMAC");
            let digest = r.tpm2b()?;
            r.finish()?;
            <[u8; DIGEST_LEN]>::try_from(digest).map_err(|_| {
                TpmError::Malformed(format!(
                    "HMAC returned {} bytes for HMAC-SHA256",
                    digest.len()
                ))
            })
        })();
        // The answer, decrypted, is a key for whoever asked: not left in
        // freed memory.
        out.fill(0);
        parsed
    }
}

/// Checks a CreatePrimary answer is the key asked for; returns its name.
fn parse_hmac_primary(out: &[u8], auth_policy: &[u8; DIGEST_LEN]) -> Result<Vec<u8>, TpmError> {
    let mut r = Reader::new(out, "CreatePrimary");
    let public = r.tpm2b()?;
    let mut p = Reader::new(public, "CreatePrimary public area");
    let (kind, name_alg, attrs) = (p.u16()?, p.u16()?, p.u32()?);
    let policy = p.tpm2b_max(64)?;
    let (scheme, hash) = (p.u16()?, p.u16()?);
    let unique = p.tpm2b_max(64)?;
    p.finish()?;
    if kind != ALG_KEYEDHASH
        || name_alg != ALG_SHA256
        || attrs != HMAC_KEY_ATTRS
        || policy != auth_policy
        || scheme != ALG_HMAC
        || hash != ALG_SHA256
        || unique.len() != DIGEST_LEN
    {
        return Err(TpmError::Malformed(
            "CreatePrimary returned a key other than the HMAC-SHA256 one asked for".into(),
        ));
    }
    let _creation_data = r.tpm2b()?;
    let _creation_hash = r.tpm2b()?;
    let (_tag, _hierarchy, _digest) = (r.u16()?, r.u32()?, r.tpm2b()?);
    let name = r.tpm2b_max(34)?.to_vec();
    r.finish()?;
    if name != name_of(public) {
        return Err(TpmError::Malformed(
            "CreatePrimary: the key's name does not match its public area".into(),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_for_another_key_is_refused() {
        let policy = [3u8; DIGEST_LEN];
        let good = hmac_primary_template(&policy, &[9; DIGEST_LEN]);
        let reply = |public: &[u8]| {
            let mut w = Writer::new();
            w.tpm2b(public)
                .tpm2b(&[])
                .tpm2b(&[])
                .u16(0x8021)
                .u32(RH_OWNER)
                .tpm2b(&[]);
            w.tpm2b(&name_of(public));
            w.into_vec()
        };
        assert_eq!(
            parse_hmac_primary(&reply(&good), &policy).ok(),
            Some(name_of(&good))
        );
        // Another policy than the one asked (a TPM, or something between,
        // that made a key anyone can use).
        assert!(parse_hmac_primary(&reply(&good), &[4; DIGEST_LEN]).is_err());
        let mut with_user_auth = good.clone();
        with_user_auth[4..8].copy_from_slice(&(HMAC_KEY_ATTRS | (1 << 6)).to_be_bytes());
        assert!(parse_hmac_primary(&reply(&with_user_auth), &policy).is_err());
        // A name that is not the area's.
        let mut bad_name = reply(&good);
        let last = bad_name.len() - 1;
        bad_name[last] ^= 1;
        assert!(parse_hmac_primary(&bad_name, &policy).is_err());
    }
}
