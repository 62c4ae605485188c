//! A snapshot's state file is input: damaged on disk, from another
//! version, or forged. Decoding must refuse it with an error, never crash;
//! the input also goes in behind a valid header, so the body parser and
//! the bounds on what a restore would act on are reached past the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_vmm::snapshot::file::{decode, frame};

fuzz_target!(|data: &[u8]| {
    let _ = decode(data);
    if let Ok(snapshot) = decode(&frame(data)) {
        // What was accepted must be within the bounds check() promises.
        assert!(!snapshot.vcpus.is_empty());
        assert!(snapshot.devices.len() <= paddock_vmm::snapshot::state::MAX_DEVICES);
    }
});
