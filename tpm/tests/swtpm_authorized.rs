//! Authorized policies against a real TPM 2.0 (swtpm): one NV index whose
//! policy is "any PCR 11 value the image key signed, and PCR 7 as it was",
//! opened in a first boot state, and again after an "update" (another PCR
//! 11 value, signed by the same key) without touching the index; refused
//! for an unsigned state, a signature by another key, a forged signature,
//! and a changed PCR 7.

use paddock_tpm::consts::*;
use paddock_tpm::policy::{self, authorization_hash, PolicyKey, SignedPolicy};
use paddock_tpm::{EccKey, PcrSelection, SessionKind, Tpm, TpmError};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

mod common;
use common::{ok, Swtpm, INDEX};

const REF: &[u8] = b"paddock test";

struct Signer(EcdsaKeyPair);

impl Signer {
    fn new() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("a P-256 key");
        Signer(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .expect("the key reads back"),
        )
    }

    fn public(&self) -> PolicyKey {
        PolicyKey::from_sec1(self.0.public_key().as_ref()).expect("an uncompressed point")
    }

    /// Signs "PCR 11 holds `value`" as the image build does.
    fn sign(&self, value: &[u8; 32]) -> SignedPolicy {
        let sel = PcrSelection::new(&[11]).expect("PCR 11");
        let approved = policy::pcr_policy_digest(&sel, &[*value]);
        let mut msg = approved.to_vec();
        msg.extend_from_slice(REF);
        let sig = self.0.sign(&SystemRandom::new(), &msg).expect("signing");
        let (r, s) = sig.as_ref().split_at(32);
        SignedPolicy {
            approved,
            r: r.try_into().expect("32 bytes"),
            s: s.try_into().expect("32 bytes"),
        }
    }
}

fn pcr(tpm: &mut Tpm, n: u8) -> [u8; 32] {
    let sel = ok(PcrSelection::new(&[n]), "selection");
    ok(tpm.pcr_read(&sel), "PCR_Read")[0]
}

struct Bound {
    salt: EccKey,
    key: PolicyKey,
    signed_pcrs: PcrSelection,
    also: PcrSelection,
}

impl Bound {
    fn read(&self, tpm: &mut Tpm, signed: &SignedPolicy) -> Result<Vec<u8>, TpmError> {
        tpm.with_authorized_policy(
            &self.salt,
            &self.key,
            signed,
            REF,
            &self.signed_pcrs,
            &self.also,
            SA_ENCRYPT,
            |tpm, auths| tpm.nv_read(INDEX, 32, auths),
        )
    }
    fn write(&self, tpm: &mut Tpm, signed: &SignedPolicy, data: &[u8]) -> Result<(), TpmError> {
        tpm.with_authorized_policy(
            &self.salt,
            &self.key,
            signed,
            REF,
            &self.signed_pcrs,
            &self.also,
            SA_DECRYPT,
            |tpm, auths| tpm.nv_write(INDEX, data, auths),
        )
    }
}

#[test]
fn the_authorize_digest_computed_here_matches_the_tpms() {
    let sw = Swtpm::start("authorize-digest");
    let mut tpm = sw.tpm();
    let signer = Signer::new();
    let key = signer.public();
    let handle = ok(tpm.load_policy_key(&key), "LoadExternal");
    let v11 = pcr(&mut tpm, 11);
    let signed = signer.sign(&v11);
    let ticket = ok(
        tpm.verify_policy_signature(handle, &key, &signed, REF),
        "VerifySignature",
    );
    ok(tpm.flush(handle), "flush");
    let trial = ok(tpm.start_session(SessionKind::Trial, None), "trial");
    let sel11 = ok(PcrSelection::new(&[11]), "selection");
    ok(tpm.policy_pcr(&trial, &sel11), "PolicyPCR");
    ok(
        tpm.policy_authorize(&trial, &signed.approved, REF, &key, &ticket),
        "PolicyAuthorize",
    );
    let sel7 = ok(PcrSelection::new(&[7]), "selection");
    ok(tpm.policy_pcr(&trial, &sel7), "PolicyPCR");
    let theirs = ok(tpm.policy_get_digest(&trial), "PolicyGetDigest");
    tpm.close(trial);
    let v7 = pcr(&mut tpm, 7);
    let ours = policy::pcr_policy_after(&policy::authorize_digest(&key.name(), REF), &sel7, &[v7]);
    assert_eq!(theirs, ours.to_vec());
    // ring's signature is over H(approved || ref), which is what the TPM verified.
    assert_eq!(
        authorization_hash(&signed.approved, REF).len(),
        32,
        "a SHA-256 digest"
    );
}

#[test]
fn a_signed_boot_state_opens_the_index_and_an_update_signed_by_the_same_key_does_too() {
    let sw = Swtpm::start("authorized");
    let mut tpm = sw.tpm();
    let signer = Signer::new();
    let salt = ok(tpm.create_primary_ecc(), "CreatePrimary");
    let bound = Bound {
        salt: salt.clone(),
        key: signer.public(),
        signed_pcrs: ok(PcrSelection::new(&[11]), "selection"),
        also: ok(PcrSelection::new(&[7]), "selection"),
    };
    // Boot 1: the image's measurements in PCR 11.
    ok(tpm.pcr_extend(11, &[0x11; 32]), "PCR_Extend");
    let v1 = signer.sign(&pcr(&mut tpm, 11));
    let v7 = pcr(&mut tpm, 7);
    let auth_policy = policy::pcr_policy_after(
        &policy::authorize_digest(&bound.key.name(), REF),
        &bound.also,
        &[v7],
    );
    let mut owner = ok(tpm.start_session(SessionKind::Hmac, Some(&salt)), "session");
    let attrs = NV_AUTHWRITE | NV_POLICYWRITE | NV_AUTHREAD | NV_POLICYREAD | NV_NO_DA;
    ok(
        tpm.nv_define(&mut owner, INDEX, attrs, &[0x5A; 32], &auth_policy, 32),
        "NV_DefineSpace",
    );
    ok(
        bound.write(&mut tpm, &v1, &[0x42; 32]),
        "write under v1's signature",
    );
    assert_eq!(
        ok(bound.read(&mut tpm, &v1), "read under v1"),
        vec![0x42; 32]
    );

    // An update: a new image measures differently. The old signature is
    // for the old state; a signature of the new one by the same key opens
    // the same index, which nobody redefined.
    ok(tpm.pcr_extend(11, &[0x22; 32]), "PCR_Extend");
    let e = bound.read(&mut tpm, &v1).err();
    assert!(
        e.as_ref().is_some_and(|e| e.is_value()),
        "the old image's signature is for another state: {e:?}"
    );
    let v2 = signer.sign(&pcr(&mut tpm, 11));
    assert_eq!(
        ok(bound.read(&mut tpm, &v2), "read under v2"),
        vec![0x42; 32]
    );
    ok(bound.write(&mut tpm, &v2, &[0x43; 32]), "write under v2");

    // The same state signed by another key: refused.
    let other = Signer::new();
    let forged_by_other = other.sign(&pcr(&mut tpm, 11));
    let e = bound.read(&mut tpm, &forged_by_other).err();
    assert!(
        e.as_ref().is_some_and(|e| e.is_bad_signature()),
        "another key's signature does not verify with ours: {e:?}"
    );
    let mut as_other = Bound {
        salt: salt.clone(),
        key: other.public(),
        signed_pcrs: bound.signed_pcrs.clone(),
        also: bound.also.clone(),
    };
    let e = as_other.read(&mut tpm, &forged_by_other).err();
    assert!(
        e.as_ref().is_some_and(|e| e.is_policy_fail()),
        "another key, consistently: the index's policy names ours: {e:?}"
    );
    as_other.key = bound.key.clone();

    // A signature altered by one bit: the TPM says it does not verify.
    let mut bent = v2.clone();
    bent.s[5] ^= 1;
    let e = bound.read(&mut tpm, &bent).err();
    assert!(e.as_ref().is_some_and(|e| e.is_bad_signature()), "{e:?}");
    // A signature moved onto another approved policy: does not verify.
    let mut moved = v2.clone();
    moved.approved = v1.approved;
    let e = bound.read(&mut tpm, &moved).err();
    assert!(e.as_ref().is_some_and(|e| e.is_bad_signature()), "{e:?}");

    // The Secure Boot state changes: even a good signature is refused.
    ok(tpm.pcr_extend(7, &[0x77; 32]), "PCR_Extend");
    let e = bound.read(&mut tpm, &v2).err();
    assert!(e.as_ref().is_some_and(|e| e.is_policy_fail()), "{e:?}");

    ok(tpm.nv_undefine(&mut owner, INDEX), "NV_UndefineSpace");
    tpm.close(owner);
    ok(tpm.flush(salt.handle), "flush");
}

#[test]
fn a_point_that_is_not_uncompressed_p256_is_refused() {
    assert!(PolicyKey::from_sec1(&[4; 64]).is_err());
    assert!(PolicyKey::from_sec1(&[2; 65]).is_err());
    assert!(PolicyKey::from_sec1(&[]).is_err());
}
