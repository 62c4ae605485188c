//! Sessions: started (salted by ECDH with the TPM's primary key when
//! asked), bound to PCR policies, flushed; and the policy session a
//! sealed object's use runs under.

use super::*;

impl Tpm {
    /// Starts a session. With `salt_key`, the session is salted by ECDH
    /// with that key, so its key (and everything it encrypts) is known
    /// only to us and the TPM holding the key's private part.
    pub fn start_session(
        &mut self,
        kind: SessionKind,
        salt_key: Option<&EccKey>,
    ) -> Result<Session, TpmError> {
        let nonce_caller = self.random(NONCE_LEN)?;
        let mut w = Writer::new();
        w.tpm2b(&nonce_caller);
        let mut salt = None;
        match salt_key {
            Some(k) => {
                use ring::agreement::{
                    agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256,
                };
                let ours = EphemeralPrivateKey::generate(&ECDH_P256, &self.rng)
                    .map_err(|_| TpmError::Crypto("generating an ephemeral key"))?;
                let pub_ours = ours
                    .compute_public_key()
                    .map_err(|_| TpmError::Crypto("computing the ephemeral public key"))?;
                let p = pub_ours.as_ref();
                if p.len() != 65 || p[0] != 4 {
                    return Err(TpmError::Crypto("unexpected ephemeral point encoding"));
                }
                let (ox, oy) = (&p[1..33], &p[33..65]);
                let mut theirs = vec![4u8];
                theirs.extend_from_slice(&k.x);
                theirs.extend_from_slice(&k.y);
                let peer = UnparsedPublicKey::new(&ECDH_P256, theirs);
                let s = agree_ephemeral(ours, &peer, |z| kdfe(z, "SECRET", ox, &k.x, 256))
                    .map_err(|_| TpmError::Crypto("the TPM's key is not a valid P-256 point"))?;
                salt = Some(s);
                let mut point = Writer::new();
                point.tpm2b(ox).tpm2b(oy);
                w.tpm2b(point.as_slice());
            }
            None => {
                w.tpm2b(&[]);
            }
        }
        w.u8(kind.code());
        if salt.is_some() {
            w.u16(ALG_XOR).u16(ALG_SHA256);
        } else {
            w.u16(ALG_NULL);
        }
        w.u16(ALG_SHA256);
        let key_handle = salt_key.map(|k| k.handle).unwrap_or(RH_NULL);
        let cmd = Command {
            name: "StartAuthSession",
            code: CC_START_AUTH_SESSION,
            handles: &[key_handle, RH_NULL],
            names: &[],
            params: w.into_vec(),
            response_handles: 1,
        };
        let (handles, out) = self.execute(cmd, &mut [])?;
        let handle = handles[0];
        let mut r = Reader::new(&out, "StartAuthSession");
        let nonce_tpm = match r.tpm2b_max(64).and_then(|n| r.finish().map(|_| n)) {
            Ok(n) => n.to_vec(),
            Err(e) => {
                let _ = self.flush(handle);
                return Err(e);
            }
        };
        let key = match salt {
            Some(s) => kdfa(&s, "ATH", &nonce_tpm, &nonce_caller, 256),
            None => Vec::new(),
        };
        Ok(Session {
            handle,
            kind,
            key,
            nonce_caller,
            nonce_tpm,
            open: true,
        })
    }

    /// Frees a transient object or session.
    pub fn flush(&mut self, handle: u32) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.u32(handle);
        self.simple("FlushContext", CC_FLUSH_CONTEXT, w.into_vec())?;
        Ok(())
    }

    /// Flushes a session unless the TPM already has.
    pub fn close(&mut self, session: Session) {
        if session.open {
            let _ = self.flush(session.handle);
        }
    }

    /// Adds "the selected PCRs hold their current values" to a policy.
    pub fn policy_pcr(
        &mut self,
        session: &Session,
        selection: &PcrSelection,
    ) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.tpm2b(&[]);
        selection.marshal(&mut w);
        let h = session.handle.to_be_bytes();
        let cmd = Command {
            name: "PolicyPCR",
            code: CC_POLICY_PCR,
            handles: &[session.handle],
            names: &[&h],
            params: w.into_vec(),
            response_handles: 0,
        };
        self.execute(cmd, &mut [])?;
        Ok(())
    }

    pub fn policy_get_digest(&mut self, session: &Session) -> Result<Vec<u8>, TpmError> {
        let h = session.handle.to_be_bytes();
        let cmd = Command {
            name: "PolicyGetDigest",
            code: CC_POLICY_GET_DIGEST,
            handles: &[session.handle],
            names: &[&h],
            params: Vec::new(),
            response_handles: 0,
        };
        let (_, out) = self.execute(cmd, &mut [])?;
        let mut r = Reader::new(&out, "PolicyGetDigest");
        let d = r.tpm2b_max(64)?.to_vec();
        r.finish()?;
        Ok(d)
    }

    /// Runs `f` with the authorizations of an index that a PCR policy
    /// guards: a policy session satisfied by the PCRs' current values, then
    /// a session salted by `key` that encrypts the first parameter
    /// (`encrypt`: `SA_DECRYPT` on the way in, `SA_ENCRYPT` on the way
    /// back). Both sessions are closed whatever happens.
    pub fn with_pcr_policy<T>(
        &mut self,
        key: &EccKey,
        pcrs: &PcrSelection,
        encrypt: u8,
        f: impl FnOnce(&mut Tpm, &mut [Auth]) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        self.with_policy_session(key, encrypt, |tpm, pol| tpm.policy_pcr(pol, pcrs), f)
    }

    /// The plumbing every policy-guarded use shares: a policy session that
    /// `satisfy` brings to the object's policy, and a session salted by
    /// `key` that encrypts the first parameter; `f` runs with both, and
    /// both are closed whatever happens.
    pub(crate) fn with_policy_session<T>(
        &mut self,
        key: &EccKey,
        encrypt: u8,
        satisfy: impl FnOnce(&mut Tpm, &Session) -> Result<(), TpmError>,
        f: impl FnOnce(&mut Tpm, &mut [Auth]) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let mut pol = self.start_session(SessionKind::Policy, None)?;
        let mut enc = match self.start_session(SessionKind::Hmac, Some(key)) {
            Ok(s) => s,
            Err(e) => {
                self.close(pol);
                return Err(e);
            }
        };
        let r = satisfy(self, &pol).and_then(|_| {
            f(
                self,
                &mut [
                    Auth::Session {
                        session: &mut pol,
                        auth_value: &[],
                        attrs: 0,
                    },
                    Auth::Session {
                        session: &mut enc,
                        auth_value: &[],
                        attrs: encrypt,
                    },
                ],
            )
        });
        self.close(pol);
        self.close(enc);
        r
    }
}
