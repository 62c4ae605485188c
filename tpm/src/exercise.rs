//! One pass over every command and response parser, in a fixed order: the
//! fuzz target replays TPM answers into it, and a swtpm test runs it
//! against a real TPM (and records those answers as the fuzzer's seed).

use crate::consts::{SA_CONTINUE, SA_DECRYPT, SA_ENCRYPT};
use crate::transport::Transport;
use crate::{Auth, PcrSelection, SessionKind, Tpm, TpmError};

pub const INDEX: u32 = 0x0150_01F0;

/// Runs the sequence; stops at the first error (a fuzzed answer will
/// usually fail early, which is the point: it must fail, not crash).
pub fn exercise(tpm: &mut Tpm) -> Result<Vec<u8>, TpmError> {
    tpm.get_random(40)?;
    let sel = PcrSelection::new(&[4, 7])?;
    let values = tpm.pcr_read(&sel)?;
    let digest = crate::policy::pcr_policy_digest(&sel, &values);
    let key = tpm.create_primary_ecc()?;
    // Before the first salted session: no response HMAC keeps a fuzzed
    // answer from these parsers (a policy session alone has none).
    let hmac_key = tpm.create_primary_hmac(&digest, b"exercise")?;
    let mut pol = tpm.start_session(SessionKind::Policy, None)?;
    tpm.policy_pcr(&pol, &sel)?;
    tpm.hmac(
        hmac_key.handle,
        b"data",
        &mut [Auth::Session {
            session: &mut pol,
            auth_value: &[],
            attrs: 0,
        }],
    )?;
    tpm.close(pol);
    tpm.flush(hmac_key.handle)?;
    let mut owner = tpm.start_session(SessionKind::Hmac, Some(&key))?;
    let attrs = crate::consts::NV_AUTHWRITE
        | crate::consts::NV_POLICYREAD
        | crate::consts::NV_AUTHREAD
        | crate::consts::NV_NO_DA;
    tpm.nv_define(&mut owner, INDEX, attrs, b"recovery", &digest, 16)?;
    tpm.nv_write(
        INDEX,
        b"sixteen bytes!!!",
        &mut [Auth::Session {
            session: &mut owner,
            auth_value: b"recovery",
            attrs: SA_CONTINUE | SA_DECRYPT,
        }],
    )?;
    let policy = tpm.start_session(SessionKind::Policy, None)?;
    tpm.policy_pcr(&policy, &sel)?;
    tpm.policy_get_digest(&policy)?;
    let mut policy = policy;
    let mut enc = tpm.start_session(SessionKind::Hmac, Some(&key))?;
    let data = tpm.nv_read(
        INDEX,
        16,
        &mut [
            Auth::Session {
                session: &mut policy,
                auth_value: &[],
                attrs: 0,
            },
            Auth::Session {
                session: &mut enc,
                auth_value: &[],
                attrs: SA_ENCRYPT,
            },
        ],
    )?;
    tpm.close(policy);
    tpm.close(enc);
    tpm.nv_undefine(&mut owner, INDEX)?;
    tpm.close(owner);
    tpm.flush(key.handle)?;
    Ok(data)
}

/// Answers each command with the next length-prefixed (u16, little
/// endian) chunk of a fuzzer's input.
pub struct Replay {
    data: Vec<u8>,
    at: usize,
}

impl Replay {
    pub fn new(data: &[u8]) -> Replay {
        Replay {
            data: data.to_vec(),
            at: 0,
        }
    }
}

impl Transport for Replay {
    fn transact(&mut self, _command: &[u8]) -> Result<Vec<u8>, TpmError> {
        let rest = &self.data[self.at.min(self.data.len())..];
        if rest.len() < 2 {
            return Err(TpmError::Transport("replay: no more answers".into()));
        }
        let n = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        self.at += 2 + n;
        Ok(rest[2..2 + n].to_vec())
    }
}

/// Passes commands through and keeps every answer in Replay's format.
pub struct Record<T: Transport> {
    pub inner: T,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl<T: Transport> Transport for Record<T> {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        let r = self.inner.transact(command)?;
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.extend_from_slice(&(r.len() as u16).to_le_bytes());
        log.extend_from_slice(&r);
        Ok(r)
    }
}
