//! Every command the key store uses, against a real TPM 2.0 implementation
//! (swtpm, libtpms) on a socket.

use paddock_tpm::consts::*;
use paddock_tpm::transport::{Stream, Transport};
use paddock_tpm::{policy, Auth, PcrSelection, SessionKind, Tpm, TpmError};

mod common;
use common::{ok, Swtpm, INDEX};

#[test]
fn random_bytes_come_in_the_size_asked() {
    let sw = Swtpm::start("random");
    let mut tpm = sw.tpm();
    let a = ok(tpm.get_random(100), "GetRandom");
    let b = ok(tpm.get_random(100), "GetRandom");
    assert_eq!(a.len(), 100);
    assert_ne!(a, b);
}

#[test]
fn pcr_policy_digest_computed_here_matches_the_tpms() {
    let sw = Swtpm::start("policy");
    let mut tpm = sw.tpm();
    let sel = ok(PcrSelection::new(&[4, 7, 16]), "selection");
    let before = ok(tpm.pcr_read(&sel), "PCR_Read");
    ok(tpm.pcr_extend(16, &[0xAB; 32]), "PCR_Extend");
    let after = ok(tpm.pcr_read(&sel), "PCR_Read");
    assert_eq!(before[0], after[0]);
    assert_ne!(before[2], after[2], "PCR 16 must change when extended");

    let trial = ok(tpm.start_session(SessionKind::Trial, None), "trial session");
    ok(tpm.policy_pcr(&trial, &sel), "PolicyPCR");
    let theirs = ok(tpm.policy_get_digest(&trial), "PolicyGetDigest");
    tpm.close(trial);
    assert_eq!(theirs, policy::pcr_policy_digest(&sel, &after).to_vec());
}

/// The key store's whole life on one index: define with a PCR policy and a
/// recovery auth value, write and read under the policy through salted,
/// encrypted sessions, fail closed when the PCRs change, read with the
/// recovery value, refuse a wrong one, delete.
#[test]
fn a_pcr_bound_nv_secret_is_released_only_in_its_boot_state_or_with_recovery() {
    let sw = Swtpm::start("nv");
    let mut tpm = sw.tpm();
    let sel = ok(PcrSelection::new(&[7, 16]), "selection");
    let values = ok(tpm.pcr_read(&sel), "PCR_Read");
    let digest = policy::pcr_policy_digest(&sel, &values);
    let key = ok(tpm.create_primary_ecc(), "CreatePrimary");
    let again = ok(tpm.create_primary_ecc(), "CreatePrimary");
    assert_eq!(key.name, again.name, "the primary is derived, not random");
    ok(tpm.flush(again.handle), "flush");

    let recovery = [0x5A; 32];
    let attrs = NV_AUTHWRITE | NV_POLICYWRITE | NV_AUTHREAD | NV_POLICYREAD | NV_NO_DA;
    let mut owner = ok(
        tpm.start_session(SessionKind::Hmac, Some(&key)),
        "salted session",
    );
    ok(
        tpm.nv_define(&mut owner, INDEX, attrs, &recovery, &digest, 32),
        "NV_DefineSpace",
    );
    let e = tpm.nv_define(&mut owner, INDEX, attrs, &recovery, &digest, 32);
    assert!(
        e.as_ref().err().is_some_and(|e| e.is_nv_defined()),
        "{:?}",
        e.err()
    );

    let secret = [0x42; 32];
    let write = |tpm: &mut Tpm, data: &[u8]| -> Result<(), TpmError> {
        tpm.with_pcr_policy(&key, &sel, SA_DECRYPT, |tpm, auths| {
            tpm.nv_write(INDEX, data, auths)
        })
    };
    let read = |tpm: &mut Tpm| -> Result<Vec<u8>, TpmError> {
        tpm.with_pcr_policy(&key, &sel, SA_ENCRYPT, |tpm, auths| {
            tpm.nv_read(INDEX, 32, auths)
        })
    };
    ok(write(&mut tpm, &secret), "NV_Write under the policy");
    assert_eq!(ok(read(&mut tpm), "NV_Read under the policy"), secret);
    let public = ok(tpm.nv_read_public(INDEX), "NV_ReadPublic");
    assert!(public.attributes & NV_WRITTEN != 0);
    assert_eq!(public.auth_policy, digest.to_vec());

    // Another boot state: the policy no longer holds.
    ok(tpm.pcr_extend(16, &[1; 32]), "PCR_Extend");
    let e = read(&mut tpm).err();
    assert!(e.as_ref().is_some_and(|e| e.is_policy_fail()), "{e:?}");
    assert!(write(&mut tpm, &[0; 32])
        .err()
        .is_some_and(|e| e.is_policy_fail()));

    // The recovery value opens it in any state, through an HMAC session
    // (the value never crosses the bus) that also encrypts the answer.
    let by_recovery = |tpm: &mut Tpm, value: &[u8]| -> Result<Vec<u8>, TpmError> {
        let mut s = tpm.start_session(SessionKind::Hmac, Some(&key))?;
        let r = tpm.nv_read(
            INDEX,
            32,
            &mut [Auth::Session {
                session: &mut s,
                auth_value: value,
                attrs: SA_CONTINUE | SA_ENCRYPT,
            }],
        );
        tpm.close(s);
        r
    };
    assert_eq!(
        ok(by_recovery(&mut tpm, &recovery), "recovery read"),
        secret
    );
    let e = by_recovery(&mut tpm, &[0x5B; 32]).err();
    assert!(e.as_ref().is_some_and(|e| e.is_bad_auth()), "{e:?}");

    ok(tpm.nv_undefine(&mut owner, INDEX), "NV_UndefineSpace");
    assert!(tpm
        .nv_read_public(INDEX)
        .err()
        .is_some_and(|e| e.is_missing_handle()));
    tpm.close(owner);
    ok(tpm.flush(key.handle), "flush");
    let _ = sw.path();
}

/// A transport that flips one bit in the parameters of every answer to
/// NV_Read: what an attacker on the bus would do.
struct Tamper(Box<dyn Transport>);
impl Transport for Tamper {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        let mut r = self.0.transact(command)?;
        let code = u32::from_be_bytes([command[6], command[7], command[8], command[9]]);
        if code == CC_NV_READ && r.len() > 20 {
            r[16] ^= 1;
        }
        Ok(r)
    }
}

#[test]
fn an_altered_answer_fails_its_hmac() {
    let sw = Swtpm::start("tamper");
    let mut tpm = sw.tpm();
    let key = ok(tpm.create_primary_ecc(), "CreatePrimary");
    let mut owner = ok(tpm.start_session(SessionKind::Hmac, Some(&key)), "session");
    let attrs = NV_AUTHWRITE | NV_AUTHREAD | NV_NO_DA;
    ok(
        tpm.nv_define(&mut owner, INDEX, attrs, b"pw", &[], 8),
        "define",
    );
    let mut s = ok(tpm.start_session(SessionKind::Hmac, Some(&key)), "session");
    ok(
        tpm.nv_write(
            INDEX,
            b"12345678",
            &mut [Auth::Session {
                session: &mut s,
                auth_value: b"pw",
                attrs: SA_CONTINUE | SA_DECRYPT,
            }],
        ),
        "write",
    );
    let mut bad = Tpm::new(Box::new(Tamper(Box::new(
        Stream::connect(&sw.path().join("data")).expect("connect"),
    ))));
    drop(tpm);
    let mut s = ok(bad.start_session(SessionKind::Hmac, Some(&key)), "session");
    let e = bad
        .nv_read(
            INDEX,
            8,
            &mut [Auth::Session {
                session: &mut s,
                auth_value: b"pw",
                attrs: SA_CONTINUE,
            }],
        )
        .err();
    assert!(matches!(e, Some(TpmError::ResponseHmac(_))), "{e:?}");
}

/// The fuzz target's sequence against the real TPM; its answers are the
/// fuzzer's seed (`PADDOCK_TPM_SEED=FILE` writes them there).
#[test]
fn the_fuzzers_sequence_runs_against_a_real_tpm() {
    use paddock_tpm::exercise::{exercise, Record, Replay};
    let sw = Swtpm::start("exercise");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = Record {
        inner: Stream::connect(&sw.path().join("data")).expect("connect"),
        log: log.clone(),
    };
    let mut tpm = Tpm::new(Box::new(rec));
    let data = ok(exercise(&mut tpm), "the sequence");
    assert_eq!(data, b"sixteen bytes!!!");
    let answers = log.lock().expect("log").clone();
    if let Ok(path) = std::env::var("PADDOCK_TPM_SEED") {
        std::fs::write(path, &answers).expect("writing the seed");
    }
    // Replayed answers get the sequence as far as the first fresh nonce:
    // the first session's salt differs, so its response HMAC fails.
    let mut replay = Tpm::new(Box::new(Replay::new(&answers)));
    let e = exercise(&mut replay).err();
    assert!(matches!(e, Some(TpmError::ResponseHmac(_))), "{e:?}");
}
