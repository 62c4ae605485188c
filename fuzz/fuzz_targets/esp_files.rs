//! What the box reads from its ESP, which anyone holding the disk can
//! write, and the update bundles an admin uploads: UKIs (PE sections and
//! their os-release), slot file names, the images' PCR signature files,
//! and a bundle's framing up to its signature check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = paddock_image::pe::sections(input);
    let _ = paddock_image::pe::osrel_value(input, "VERSION_ID");
    if let Ok(name) = std::str::from_utf8(input) {
        if let Some(n) = paddock_image::slots::UkiName::parse(name) {
            let _ = (n.is_bad(), n.blessed());
        }
    }
    let _ = paddock_keys::signed::PcrSignature::parse(input);
    let _ = paddock_keys::signed::SignedImages::gather(input, &[("f".into(), input.to_vec())]);
    let _ = paddock_update::verify(&mut std::io::Cursor::new(input), &[7u8; 32], "0.1.0", false);
});
