//! Signed update bundles (docs/updates.md). A bundle is one file:
//!
//! ```text
//! "PDKUPD01"            8 bytes
//! manifest length       u32, big-endian, at most 64 KiB
//! manifest              JSON: format, version, parts (name, size, sha256)
//! signature             64 bytes: Ed25519 over SIGNING_CONTEXT || manifest
//! parts                 each part's bytes, in the manifest's order
//! ```
//!
//! The box checks everything before it writes anything: the magic, the
//! manifest's shape, the signature against the update key built into its
//! image, the version against its own, the length of the whole file, and
//! every part's SHA-256. Each refusal says which check failed.

mod bundle;
mod version;

pub use bundle::{
    verify, write, BundleError, Manifest, Part, PartName, Verified, MAGIC, MAX_MANIFEST,
    SIGNING_CONTEXT,
};
pub use version::compare as compare_versions;

/// Where the update key's public half is in the image (32 bytes).
pub const UPDATE_KEY_FILE: &str = "/usr/lib/paddock/update.pub";
