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

mod authorize;
mod hmac;
mod nv;
mod sessions;
pub use authorize::Verified;
pub use hmac::{HmacKey, MAX_HMAC_DATA};
pub use nv::NvPublic;

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

    /// TPM2_CreatePrimary in the owner hierarchy (empty owner auth) with
    /// `template`, no userAuth and no data (the TPM derives the key from
    /// its seed and the template): the transient handle and the response
    /// parameters, for the caller to check.
    pub(crate) fn create_primary(&mut self, template: &[u8]) -> Result<(u32, Vec<u8>), TpmError> {
        let mut w = Writer::new();
        // inSensitive: no userAuth, no data.
        w.u16(4).u16(0).u16(0);
        w.tpm2b(template).tpm2b(&[]).u32(0);
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
        let handle = handles
            .first()
            .copied()
            .ok_or_else(|| TpmError::Malformed("CreatePrimary returned no handle".into()))?;
        Ok((handle, out))
    }

    /// Creates (or re-derives: same seed, same template, same key) the
    /// owner hierarchy's ECC storage key, as a transient object.
    pub fn create_primary_ecc(&mut self) -> Result<EccKey, TpmError> {
        let (handle, out) = self.create_primary(&ecc_primary_template())?;
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
