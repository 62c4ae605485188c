//! A hostile or broken TPM: every answer to every command the key store
//! sends comes from the fuzzer. The client must return errors, never crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_tpm::exercise::{exercise, Replay, INDEX};
use paddock_tpm::{Auth, SessionKind, Tpm};

fuzz_target!(|data: &[u8]| {
    let mut tpm = Tpm::new(Box::new(Replay::new(data)));
    let _ = exercise(&mut tpm);
    // Whatever input is left feeds the parsers a salted session's HMAC
    // check keeps the sequence above from reaching.
    let _ = tpm.nv_read_public(INDEX);
    if let Ok(mut s) = tpm.start_session(SessionKind::Policy, None) {
        let _ = tpm.nv_read(
            INDEX,
            32,
            &mut [Auth::Session {
                session: &mut s,
                auth_value: &[],
                attrs: 0,
            }],
        );
    }
});
