//! HMAC keys derived inside the TPM (a primary KEYEDHASH key under a
//! policy), against a real TPM 2.0 (swtpm): the same template gives the
//! same key, in this run and after a restart on the same state; another
//! policy gives another key; the key works only under a policy session that
//! holds, and its answer crosses the bus encrypted.

use paddock_tpm::consts::*;
use paddock_tpm::exercise::Record;
use paddock_tpm::transport::Stream;
use paddock_tpm::{policy, Auth, EccKey, PcrSelection, SessionKind, Tpm, TpmError, MAX_HMAC_DATA};
use std::sync::{Arc, Mutex};

mod common;
use common::{ok, Swtpm};

const UNIQUE: &[u8] = b"paddock test hmac";
const DATA: &[u8] = b"derive me a key";

/// The policy "these PCRs hold what they hold now".
fn pcr_policy(tpm: &mut Tpm, sel: &PcrSelection) -> [u8; 32] {
    let values = ok(tpm.pcr_read(sel), "PCR_Read");
    policy::pcr_policy_digest(sel, &values)
}

/// HMAC of `data` with a primary made for `digest`, used under a policy
/// session satisfied by PolicyPCR over `sel`, the answer encrypted. The key
/// is flushed whatever happens.
fn derive(
    tpm: &mut Tpm,
    salt: &EccKey,
    digest: &[u8; 32],
    sel: &PcrSelection,
    data: &[u8],
) -> Result<[u8; 32], TpmError> {
    let key = tpm.create_primary_hmac(digest, UNIQUE)?;
    let r = tpm.with_pcr_policy(salt, sel, SA_ENCRYPT, |tpm, auths| {
        tpm.hmac(key.handle, data, auths)
    });
    ok(tpm.flush(key.handle), "flush");
    r
}

#[test]
fn the_same_template_gives_the_same_key_and_another_policy_another() {
    let sw = Swtpm::start("hmac-same");
    let mut tpm = sw.tpm();
    let salt = ok(tpm.create_primary_ecc(), "CreatePrimary ECC");
    let sel = ok(PcrSelection::new(&[16]), "selection");
    let digest = pcr_policy(&mut tpm, &sel);

    let a = ok(tpm.create_primary_hmac(&digest, UNIQUE), "CreatePrimary");
    let b = ok(tpm.create_primary_hmac(&digest, UNIQUE), "CreatePrimary");
    assert_eq!(a.name, b.name, "the primary is derived, not random");
    ok(tpm.flush(a.handle), "flush");
    ok(tpm.flush(b.handle), "flush");
    let first = ok(derive(&mut tpm, &salt, &digest, &sel, DATA), "HMAC");
    let again = ok(derive(&mut tpm, &salt, &digest, &sel, DATA), "HMAC");
    assert_eq!(first, again);
    assert_ne!(
        ok(
            derive(&mut tpm, &salt, &digest, &sel, b"other data"),
            "HMAC"
        ),
        first
    );
    // Empty data and the most one command takes both work.
    ok(
        derive(&mut tpm, &salt, &digest, &sel, &[]),
        "HMAC of nothing",
    );
    ok(
        derive(&mut tpm, &salt, &digest, &sel, &[7; MAX_HMAC_DATA]),
        "HMAC of 1024 bytes",
    );

    // Another policy, also satisfied now: another key.
    let wider = ok(PcrSelection::new(&[7, 16]), "selection");
    let other_digest = pcr_policy(&mut tpm, &wider);
    assert_ne!(other_digest, digest);
    let other = ok(derive(&mut tpm, &salt, &other_digest, &wider, DATA), "HMAC");
    assert_ne!(other, first, "another policy, another key");
    // Another unique: another key too.
    let k = ok(
        tpm.create_primary_hmac(&digest, b"another purpose"),
        "CreatePrimary",
    );
    let r = tpm.with_pcr_policy(&salt, &sel, SA_ENCRYPT, |tpm, auths| {
        tpm.hmac(k.handle, DATA, auths)
    });
    ok(tpm.flush(k.handle), "flush");
    assert_ne!(ok(r, "HMAC"), first);
    ok(tpm.flush(salt.handle), "flush");
}

#[test]
fn the_key_works_only_under_a_policy_that_holds() {
    let sw = Swtpm::start("hmac-policy");
    let mut tpm = sw.tpm();
    let salt = ok(tpm.create_primary_ecc(), "CreatePrimary ECC");
    let sel = ok(PcrSelection::new(&[16]), "selection");
    let digest = pcr_policy(&mut tpm, &sel);
    let key = ok(tpm.create_primary_hmac(&digest, UNIQUE), "CreatePrimary");

    // The empty password the owner hierarchy takes is not enough: the key
    // has no userWithAuth.
    let e = tpm.hmac(key.handle, DATA, &mut [Auth::Password(&[])]).err();
    assert!(e.as_ref().is_some_and(|e| e.is_auth_unavailable()), "{e:?}");
    // Nor an HMAC session with the (empty) auth value.
    let mut s = ok(tpm.start_session(SessionKind::Hmac, Some(&salt)), "session");
    let e = tpm
        .hmac(
            key.handle,
            DATA,
            &mut [Auth::Session {
                session: &mut s,
                auth_value: &[],
                attrs: SA_CONTINUE,
            }],
        )
        .err();
    tpm.close(s);
    assert!(e.as_ref().is_some_and(|e| e.is_auth_unavailable()), "{e:?}");
    // A policy session that reached another policy (other PCRs).
    let other = ok(PcrSelection::new(&[7]), "selection");
    let e = tpm
        .with_pcr_policy(&salt, &other, SA_ENCRYPT, |tpm, auths| {
            tpm.hmac(key.handle, DATA, auths)
        })
        .err();
    assert!(e.as_ref().is_some_and(|e| e.is_policy_fail()), "{e:?}");

    // The policy that holds: it works.
    let good = ok(
        tpm.with_pcr_policy(&salt, &sel, SA_ENCRYPT, |tpm, auths| {
            tpm.hmac(key.handle, DATA, auths)
        }),
        "HMAC under its policy",
    );
    // Too much data: refused here, with how much it takes.
    let e = tpm
        .with_pcr_policy(&salt, &sel, SA_ENCRYPT, |tpm, auths| {
            tpm.hmac(key.handle, &[0; MAX_HMAC_DATA + 1], auths)
        })
        .err();
    assert!(
        matches!(
            e,
            Some(TpmError::TooLong {
                len: 1025,
                max: 1024,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(
        tpm.create_primary_hmac(&digest, &[0; 33]).is_err(),
        "a unique longer than a SHA-256 digest"
    );

    // Another boot state: the bound PCR changes, the key no longer opens,
    // even for the same key handle and the same policy commands.
    ok(tpm.pcr_extend(16, &[1; 32]), "PCR_Extend");
    let e = tpm
        .with_pcr_policy(&salt, &sel, SA_ENCRYPT, |tpm, auths| {
            tpm.hmac(key.handle, DATA, auths)
        })
        .err();
    assert!(e.as_ref().is_some_and(|e| e.is_policy_fail()), "{e:?}");
    ok(tpm.flush(key.handle), "flush");
    // A key made for the new state's policy is another key.
    let now = pcr_policy(&mut tpm, &sel);
    let changed = ok(derive(&mut tpm, &salt, &now, &sel, DATA), "HMAC");
    assert_ne!(changed, good);
    ok(tpm.flush(salt.handle), "flush");
}

#[test]
fn the_answer_crosses_the_bus_encrypted() {
    let sw = Swtpm::start("hmac-bus");
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tpm = Tpm::new(Box::new(Record {
        inner: Stream::connect(&sw.path().join("data")).expect("connect"),
        log: log.clone(),
    }));
    let salt = ok(tpm.create_primary_ecc(), "CreatePrimary ECC");
    let sel = ok(PcrSelection::new(&[16]), "selection");
    let digest = pcr_policy(&mut tpm, &sel);
    let derived = ok(derive(&mut tpm, &salt, &digest, &sel, DATA), "HMAC");
    let wire = log.lock().expect("log").clone();
    assert!(
        !wire.windows(derived.len()).any(|w| w == derived),
        "the derived key is in a TPM answer in the clear"
    );
    // Without SA_ENCRYPT the same answer would carry it as it is: the
    // check above can see it.
    let key = ok(tpm.create_primary_hmac(&digest, UNIQUE), "CreatePrimary");
    let mut pol = ok(tpm.start_session(SessionKind::Policy, None), "session");
    ok(tpm.policy_pcr(&pol, &sel), "PolicyPCR");
    let plain = ok(
        tpm.hmac(
            key.handle,
            DATA,
            &mut [Auth::Session {
                session: &mut pol,
                auth_value: &[],
                attrs: 0,
            }],
        ),
        "HMAC without encryption",
    );
    tpm.close(pol);
    ok(tpm.flush(key.handle), "flush");
    assert_eq!(plain, derived);
    let wire = log.lock().expect("log").clone();
    assert!(wire.windows(plain.len()).any(|w| w == plain));
    ok(tpm.flush(salt.handle), "flush");
}

#[test]
fn a_restarted_tpm_on_the_same_state_gives_the_same_key() {
    let dir =
        std::env::temp_dir().join(format!("paddock-swtpm-hmac-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sel = ok(PcrSelection::new(&[16]), "selection");
    let run = || -> [u8; 32] {
        let sw = paddock_tpm::swtpm::Swtpm::start(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut tpm = Tpm::new(Box::new(Stream::connect(&sw.socket()).expect("connect")));
        let salt = ok(tpm.create_primary_ecc(), "CreatePrimary ECC");
        let digest = pcr_policy(&mut tpm, &sel);
        let out = ok(derive(&mut tpm, &salt, &digest, &sel, DATA), "HMAC");
        ok(tpm.flush(salt.handle), "flush");
        out
    };
    let first = run();
    let second = run();
    assert_eq!(first, second, "same owner seed, same template, same key");
    // Another TPM (a fresh state: another owner seed) gives another key.
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(run(), first);
    let _ = std::fs::remove_dir_all(&dir);
}
