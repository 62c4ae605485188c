//! The commands, built and parsed; `execute` does the session work common
//! to all of them (nonces, HMACs, parameter encryption, response checks).

use crate::consts::*;
use crate::kdf::{kdfa, kdfe, sha256, DIGEST_LEN};
use crate::policy::PcrSelection;
use crate::session::{Session, SessionKind, NONCE_LEN};
use crate::transport::Transport;
use crate::wire::{Reader, Writer};
use crate::TpmError;
use ring::rand::{SecureRandom, SystemRandom};

pub struct Tpm {
    transport: Box<dyn Transport>,
    rng: SystemRandom,
}

/// How one handle of a command is authorized.
pub enum Auth<'a> {
    /// A plaintext password (empty for hierarchies nobody set one on).
    Password(&'a [u8]),
    /// A session; `auth_value` is the entity's when it is part of the HMAC
    /// (HMAC sessions), empty for policy sessions. A session listed beyond
    /// the authorized handles only encrypts (`SA_DECRYPT`/`SA_ENCRYPT`).
    Session {
        session: &'a mut Session,
        auth_value: &'a [u8],
        attrs: u8,
    },
}

struct Command<'a> {
    name: &'static str,
    code: u32,
    handles: &'a [u32],
    /// The handles' names, for cpHash (a hierarchy's name is its handle).
    names: &'a [&'a [u8]],
    params: Vec<u8>,
    response_handles: usize,
}

/// The TPM's primary ECC key, to salt sessions with.
#[derive(Clone, Debug)]
pub struct EccKey {
    pub handle: u32,
    pub x: Vec<u8>,
    pub y: Vec<u8>,
    /// nameAlg || H(public area): what we pin to detect a swapped TPM.
    pub name: Vec<u8>,
}

/// An NV index's public area, as the TPM reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvPublic {
    pub index: u32,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub size: u16,
    pub name: Vec<u8>,
}

fn nv_public_body(index: u32, attributes: u32, auth_policy: &[u8], size: u16) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(index)
        .u16(ALG_SHA256)
        .u32(attributes)
        .tpm2b(auth_policy)
        .u16(size);
    w.into_vec()
}

fn name_of(body: &[u8]) -> Vec<u8> {
    let mut n = ALG_SHA256.to_be_bytes().to_vec();
    n.extend_from_slice(&sha256(&[body]));
    n
}

/// The public template of the storage primary: ECC P-256, restricted
/// decrypt (AES-128-CFB), fixed to this TPM, no auth. The same template
/// always yields the same key from the same owner seed.
fn ecc_primary_template() -> Vec<u8> {
    let attrs: u32 = (1 << 1) // fixedTPM
        | (1 << 4) // fixedParent
        | (1 << 5) // sensitiveDataOrigin
        | (1 << 6) // userWithAuth
        | (1 << 10) // noDA
        | (1 << 16) // restricted
        | (1 << 17); // decrypt
    let mut w = Writer::new();
    w.u16(ALG_ECC)
        .u16(ALG_SHA256)
        .u32(attrs)
        .tpm2b(&[])
        .u16(ALG_AES)
        .u16(128)
        .u16(ALG_CFB)
        .u16(ALG_NULL)
        .u16(ECC_NIST_P256)
        .u16(ALG_NULL)
        .tpm2b(&[])
        .tpm2b(&[]);
    w.into_vec()
}

impl Tpm {
    pub fn new(transport: Box<dyn Transport>) -> Tpm {
        Tpm {
            transport,
            rng: SystemRandom::new(),
        }
    }

    fn random(&self, n: usize) -> Result<Vec<u8>, TpmError> {
        let mut v = vec![0u8; n];
        self.rng
            .fill(&mut v)
            .map_err(|_| TpmError::Crypto("no randomness from the kernel"))?;
        Ok(v)
    }

    /// Runs one command; returns the response's handles and parameters
    /// (decrypted when a session encrypted them).
    fn execute(
        &mut self,
        cmd: Command,
        auths: &mut [Auth],
    ) -> Result<(Vec<u32>, Vec<u8>), TpmError> {
        let mut params = cmd.params;
        for a in auths.iter_mut() {
            if let Auth::Session { session, .. } = a {
                if !session.open {
                    return Err(TpmError::Transport(format!(
                        "{}: session {:#x} was already closed",
                        cmd.name, session.handle
                    )));
                }
                session.nonce_caller = self.random(NONCE_LEN)?;
            }
        }
        let attrs_of = |a: &Auth| match a {
            Auth::Session { attrs, .. } => *attrs,
            Auth::Password(_) => 0,
        };
        let decrypt_at = auths.iter().position(|a| attrs_of(a) & SA_DECRYPT != 0);
        let encrypt_at = auths.iter().position(|a| attrs_of(a) & SA_ENCRYPT != 0);
        mask_first_param(auths, decrypt_at, &mut params, cmd.name, true)?;
        let names: Vec<u8> = cmd.names.concat();
        let cp_hash = sha256(&[&cmd.code.to_be_bytes(), &names, &params]);
        // The first session's HMAC also covers the nonces of separate
        // decrypt and encrypt sessions, binding them to this command.
        let mut extra = Vec::new();
        let nonce_of = |a: &Auth| match a {
            Auth::Session { session, .. } => session.nonce_tpm.clone(),
            Auth::Password(_) => Vec::new(),
        };
        if let Some(i) = decrypt_at.filter(|i| *i != 0) {
            extra.extend(nonce_of(&auths[i]));
        }
        if let Some(i) = encrypt_at.filter(|i| *i != 0 && Some(*i) != decrypt_at) {
            extra.extend(nonce_of(&auths[i]));
        }

        let mut area = Writer::new();
        for (i, a) in auths.iter().enumerate() {
            match a {
                Auth::Password(p) => {
                    area.u32(RS_PW).tpm2b(&[]).u8(SA_CONTINUE).tpm2b(p);
                }
                Auth::Session {
                    session,
                    auth_value,
                    attrs,
                } => {
                    let hmac = if session.key.is_empty() && auth_value.is_empty() {
                        Vec::new()
                    } else {
                        let e = if i == 0 { &extra[..] } else { &[] };
                        session
                            .command_hmac(auth_value, &cp_hash, e, *attrs)
                            .to_vec()
                    };
                    area.u32(session.handle)
                        .tpm2b(&session.nonce_caller)
                        .u8(*attrs)
                        .tpm2b(&hmac);
                }
            }
        }
        let mut body = Writer::new();
        for h in cmd.handles {
            body.u32(*h);
        }
        if !auths.is_empty() {
            body.u32(area.len() as u32).bytes(area.as_slice());
        }
        body.bytes(&params);
        let mut w = Writer::new();
        w.u16(if auths.is_empty() {
            ST_NO_SESSIONS
        } else {
            ST_SESSIONS
        })
        .u32(10 + body.len() as u32)
        .u32(cmd.code)
        .bytes(body.as_slice());

        let reply = self.transport.transact(w.as_slice())?;
        let mut r = Reader::new(&reply, cmd.name);
        let tag = r.u16()?;
        let size = r.u32()? as usize;
        if size != reply.len() {
            return Err(TpmError::Malformed(format!(
                "{}: header says {size} bytes, got {}",
                cmd.name,
                reply.len()
            )));
        }
        let code = r.u32()?;
        if code != 0 {
            return Err(TpmError::Response {
                command: cmd.name,
                code,
            });
        }
        let mut handles = Vec::with_capacity(cmd.response_handles);
        for _ in 0..cmd.response_handles {
            handles.push(r.u32()?);
        }
        if auths.is_empty() {
            if tag != ST_NO_SESSIONS {
                return Err(TpmError::Malformed(format!(
                    "{}: sessions in the reply to a command without",
                    cmd.name
                )));
            }
            return Ok((handles, r.rest().to_vec()));
        }
        if tag != ST_SESSIONS {
            return Err(TpmError::Malformed(format!(
                "{}: no sessions in the reply",
                cmd.name
            )));
        }
        let param_size = r.u32()? as usize;
        let mut out = r.take(param_size)?.to_vec();
        let rp_hash = sha256(&[&0u32.to_be_bytes(), &cmd.code.to_be_bytes(), &out]);
        for a in auths.iter_mut() {
            let nonce = r.tpm2b_max(64)?;
            let attrs = r.u8()?;
            let hmac = r.tpm2b_max(64)?;
            if let Auth::Session {
                session,
                auth_value,
                ..
            } = a
            {
                session.nonce_tpm = nonce.to_vec();
                if attrs & SA_CONTINUE == 0 {
                    session.open = false;
                }
                if !(session.key.is_empty() && auth_value.is_empty()) {
                    let want = session.response_hmac(auth_value, &rp_hash, attrs);
                    if !same(&want, hmac) {
                        return Err(TpmError::ResponseHmac(cmd.name));
                    }
                }
            }
        }
        r.finish()?;
        mask_first_param(auths, encrypt_at, &mut out, cmd.name, false)?;
        Ok((handles, out))
    }

    fn simple(
        &mut self,
        name: &'static str,
        code: u32,
        params: Vec<u8>,
    ) -> Result<Vec<u8>, TpmError> {
        let cmd = Command {
            name,
            code,
            handles: &[],
            names: &[],
            params,
            response_handles: 0,
        };
        Ok(self.execute(cmd, &mut [])?.1)
    }

    /// `n` bytes from the TPM's own RNG.
    pub fn get_random(&mut self, n: usize) -> Result<Vec<u8>, TpmError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let want = (n - out.len()).min(DIGEST_LEN) as u16;
            let mut w = Writer::new();
            w.u16(want);
            let reply = self.simple("GetRandom", CC_GET_RANDOM, w.into_vec())?;
            let mut r = Reader::new(&reply, "GetRandom");
            let bytes = r.tpm2b_max(want as usize)?;
            r.finish()?;
            if bytes.is_empty() {
                return Err(TpmError::Malformed("GetRandom returned nothing".into()));
            }
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }

    /// The SHA-256 values of the selected PCRs, in ascending order.
    pub fn pcr_read(
        &mut self,
        selection: &PcrSelection,
    ) -> Result<Vec<[u8; DIGEST_LEN]>, TpmError> {
        let mut w = Writer::new();
        selection.marshal(&mut w);
        let reply = self.simple("PCR_Read", CC_PCR_READ, w.into_vec())?;
        let mut r = Reader::new(&reply, "PCR_Read");
        let _update_counter = r.u32()?;
        let got = PcrSelection::unmarshal(&mut r)?;
        if &got != selection {
            return Err(TpmError::Malformed(format!(
                "PCR_Read answered for PCRs {:?}, asked {:?} (is the SHA-256 bank active?)",
                got.pcrs(),
                selection.pcrs()
            )));
        }
        let count = r.u32()? as usize;
        if count != selection.pcrs().len() {
            return Err(TpmError::Malformed(format!(
                "PCR_Read gave {count} values for {} PCRs",
                selection.pcrs().len()
            )));
        }
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            let d = r.tpm2b()?;
            let v: [u8; DIGEST_LEN] = d.try_into().map_err(|_| {
                TpmError::Malformed(format!("a {}-byte SHA-256 PCR value", d.len()))
            })?;
            values.push(v);
        }
        r.finish()?;
        Ok(values)
    }

    /// Extends a PCR (SHA-256 bank) with `digest`; the tests use this to
    /// stand for a different boot.
    pub fn pcr_extend(&mut self, pcr: u32, digest: &[u8; DIGEST_LEN]) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.u32(1).u16(ALG_SHA256).bytes(digest);
        let handle = pcr.to_be_bytes();
        let cmd = Command {
            name: "PCR_Extend",
            code: CC_PCR_EXTEND,
            handles: &[pcr],
            names: &[&handle],
            params: w.into_vec(),
            response_handles: 0,
        };
        self.execute(cmd, &mut [Auth::Password(&[])])?;
        Ok(())
    }

    /// Creates (or re-derives: same seed, same template, same key) the
    /// owner hierarchy's ECC storage key, as a transient object.
    pub fn create_primary_ecc(&mut self) -> Result<EccKey, TpmError> {
        let template = ecc_primary_template();
        let mut w = Writer::new();
        // inSensitive: no userAuth, no data.
        w.u16(4).u16(0).u16(0);
        w.tpm2b(&template).tpm2b(&[]).u32(0);
        let owner = RH_OWNER.to_be_bytes();
        let cmd = Command {
            name: "CreatePrimary",
            code: CC_CREATE_PRIMARY,
            handles: &[RH_OWNER],
            names: &[&owner],
            params: w.into_vec(),
            response_handles: 1,
        };
        let (handles, out) = self.execute(cmd, &mut [Auth::Password(&[])])?;
        let handle = handles[0];
        let parsed = (|| {
            let mut r = Reader::new(&out, "CreatePrimary");
            let public = r.tpm2b()?;
            let mut p = Reader::new(public, "CreatePrimary public area");
            let (kind, name_alg) = (p.u16()?, p.u16()?);
            let _attrs = p.u32()?;
            let _policy = p.tpm2b()?;
            let (sym, _bits, _mode) = (p.u16()?, p.u16()?, p.u16()?);
            let (scheme, curve, kdf) = (p.u16()?, p.u16()?, p.u16()?);
            let x = p.tpm2b_max(32)?.to_vec();
            let y = p.tpm2b_max(32)?.to_vec();
            p.finish()?;
            if kind != ALG_ECC
                || name_alg != ALG_SHA256
                || sym != ALG_AES
                || scheme != ALG_NULL
                || curve != ECC_NIST_P256
                || kdf != ALG_NULL
                || x.len() != 32
                || y.len() != 32
            {
                return Err(TpmError::Malformed(
                    "CreatePrimary returned a key other than the P-256 one asked for".into(),
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
            Ok(EccKey { handle, x, y, name })
        })();
        if parsed.is_err() {
            let _ = self.flush(handle);
        }
        parsed
    }

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
        let mut pol = self.start_session(SessionKind::Policy, None)?;
        let mut enc = match self.start_session(SessionKind::Hmac, Some(key)) {
            Ok(s) => s,
            Err(e) => {
                self.close(pol);
                return Err(e);
            }
        };
        let r = self.policy_pcr(&pol, pcrs).and_then(|_| {
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

    /// An NV index's public area and name; the name is checked against the
    /// area, so a later HMAC over it binds what we read.
    pub fn nv_read_public(&mut self, index: u32) -> Result<NvPublic, TpmError> {
        let h = index.to_be_bytes();
        let cmd = Command {
            name: "NV_ReadPublic",
            code: CC_NV_READ_PUBLIC,
            handles: &[index],
            names: &[&h],
            params: Vec::new(),
            response_handles: 0,
        };
        let (_, out) = self.execute(cmd, &mut [])?;
        let mut r = Reader::new(&out, "NV_ReadPublic");
        let body = r.tpm2b()?;
        let name = r.tpm2b_max(34)?.to_vec();
        r.finish()?;
        let mut p = Reader::new(body, "NV public area");
        let got_index = p.u32()?;
        let name_alg = p.u16()?;
        let attributes = p.u32()?;
        let auth_policy = p.tpm2b_max(64)?.to_vec();
        let size = p.u16()?;
        p.finish()?;
        if got_index != index || name_alg != ALG_SHA256 || name != name_of(body) {
            return Err(TpmError::Malformed(format!(
                "NV_ReadPublic for {index:#x} describes index {got_index:#x} (name algorithm {name_alg:#x}) or a name that is not its own"
            )));
        }
        Ok(NvPublic {
            index,
            attributes,
            auth_policy,
            size,
            name,
        })
    }

    /// Defines an NV index, authorized by the owner hierarchy (empty owner
    /// auth) through `session`, a salted HMAC session, which also encrypts
    /// the new index's auth value on its way in.
    pub fn nv_define(
        &mut self,
        session: &mut Session,
        index: u32,
        attributes: u32,
        auth_value: &[u8],
        auth_policy: &[u8],
        size: u16,
    ) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.tpm2b(auth_value)
            .tpm2b(&nv_public_body(index, attributes, auth_policy, size));
        let owner = RH_OWNER.to_be_bytes();
        let cmd = Command {
            name: "NV_DefineSpace",
            code: CC_NV_DEFINE_SPACE,
            handles: &[RH_OWNER],
            names: &[&owner],
            params: w.into_vec(),
            response_handles: 0,
        };
        self.execute(
            cmd,
            &mut [Auth::Session {
                session,
                auth_value: &[],
                attrs: SA_CONTINUE | SA_DECRYPT,
            }],
        )?;
        Ok(())
    }

    /// Deletes an NV index (owner authorization, as for define).
    pub fn nv_undefine(&mut self, session: &mut Session, index: u32) -> Result<(), TpmError> {
        let public = self.nv_read_public(index)?;
        let owner = RH_OWNER.to_be_bytes();
        let cmd = Command {
            name: "NV_UndefineSpace",
            code: CC_NV_UNDEFINE_SPACE,
            handles: &[RH_OWNER, index],
            names: &[&owner, &public.name],
            params: Vec::new(),
            response_handles: 0,
        };
        self.execute(
            cmd,
            &mut [Auth::Session {
                session,
                auth_value: &[],
                attrs: SA_CONTINUE,
            }],
        )?;
        Ok(())
    }

    /// A command on an index that authorizes itself (its handle twice:
    /// as the authorization and as the index), named as the TPM reports
    /// it now (the name changes once the index is first written).
    fn nv_command(
        &mut self,
        name: &'static str,
        code: u32,
        index: u32,
        params: Vec<u8>,
        auths: &mut [Auth],
    ) -> Result<Vec<u8>, TpmError> {
        let public = self.nv_read_public(index)?;
        let cmd = Command {
            name,
            code,
            handles: &[index, index],
            names: &[&public.name, &public.name],
            params,
            response_handles: 0,
        };
        Ok(self.execute(cmd, auths)?.1)
    }

    /// Writes `data` at offset 0 of an index that authorizes itself
    /// (AUTHWRITE or POLICYWRITE); `auths` is that authorization, then
    /// optionally a session that encrypts the data (`SA_DECRYPT`).
    pub fn nv_write(
        &mut self,
        index: u32,
        data: &[u8],
        auths: &mut [Auth],
    ) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.tpm2b(data).u16(0);
        self.nv_command("NV_Write", CC_NV_WRITE, index, w.into_vec(), auths)?;
        Ok(())
    }

    /// Reads `size` bytes at offset 0 of an index that authorizes itself;
    /// `auths` as for `nv_write` (`SA_ENCRYPT` for the answer).
    pub fn nv_read(
        &mut self,
        index: u32,
        size: u16,
        auths: &mut [Auth],
    ) -> Result<Vec<u8>, TpmError> {
        let mut w = Writer::new();
        w.u16(size).u16(0);
        let out = self.nv_command("NV_Read", CC_NV_READ, index, w.into_vec(), auths)?;
        let mut r = Reader::new(&out, "NV_Read");
        let data = r.tpm2b()?.to_vec();
        r.finish()?;
        if data.len() != size as usize {
            return Err(TpmError::Malformed(format!(
                "NV_Read returned {} bytes, asked {size}",
                data.len()
            )));
        }
        Ok(data)
    }
}

/// Applies session `at`'s XOR mask to the TPM2B `params` start with: on
/// the way out (`outgoing`) the caller's nonce is the newer, on the way
/// back the TPM's.
fn mask_first_param(
    auths: &[Auth],
    at: Option<usize>,
    params: &mut [u8],
    name: &str,
    outgoing: bool,
) -> Result<(), TpmError> {
    let Some(Auth::Session {
        session,
        auth_value,
        ..
    }) = at.and_then(|i| auths.get(i))
    else {
        return Ok(());
    };
    let n = first_param_len(params, name)?;
    let (newer, older) = if outgoing {
        (&session.nonce_caller, &session.nonce_tpm)
    } else {
        (&session.nonce_tpm, &session.nonce_caller)
    };
    session.xor(auth_value, newer, older, &mut params[2..2 + n]);
    Ok(())
}

/// Compares without an early exit, so timing says nothing of where two
/// HMACs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The length of the TPM2B a command's or response's parameters start
/// with (the one parameter encryption covers).
fn first_param_len(params: &[u8], name: &str) -> Result<usize, TpmError> {
    if params.len() < 2 {
        return Err(TpmError::Malformed(format!(
            "{name}: no parameter to encrypt"
        )));
    }
    let n = u16::from_be_bytes([params[0], params[1]]) as usize;
    if params.len() < 2 + n {
        return Err(TpmError::Malformed(format!(
            "{name}: first parameter runs past the end"
        )));
    }
    Ok(n)
}
