//! Paddock's backup file: the box's state (its database as JSON, its audit
//! logs) as one encrypted, authenticated file, written by the export
//! (`GET /v1/system/backup`) and read back by a restore, possibly on
//! another, freshly flashed box. A restore reads a file from outside:
//! this crate treats it as hostile until every tag verified.
//!
//! # Layout
//!
//! ```text
//! offset  size   field
//! 0       8      magic "PDKBAK01"
//! 8       4      header length H, u32 big-endian, 1 ..= 65536
//! 12      H      header, JSON (below)
//! 12+H    ...    chunks, each:
//!                  u32 big-endian length L, 17 ..= chunk_size + 16
//!                  L bytes: AES-256-GCM ciphertext, then its 16-byte tag
//! ```
//!
//! The header, all fields required except `box`, unknown fields refused:
//!
//! ```json
//! {"format": 1, "created_at": 1700000000, "box_version": "0.1.0",
//!  "box": "optional box identity", "chunk_size": 65536,
//!  "slots": [{"kind": "tpm", "context": "<64 hex>", "nonce": "<24 hex>",
//!             "sealed": "<96 hex>"}]}
//! ```
//!
//! `created_at` is Unix seconds; `box_version` (1 to 64 bytes) and `box`
//! (1 to 128 bytes) are printable ASCII; `chunk_size` is 64 to 1 MiB
//! (the box writes 64 KiB). One or two slots, at most one of each `kind`
//! (`tpm`, `recovery`).
//!
//! # Keys
//!
//! Each backup has a new random 32-byte data key D. A slot holds D sealed
//! for one caller key K (32 bytes):
//!
//! ```text
//! slot key  = HKDF-SHA256(salt = context, ikm = K,
//!                         info = "paddock backup v1 slot key " || kind)
//! sealed    = AES-256-GCM(slot key, nonce, D,
//!                         ad = "paddock backup v1 slot\0" || kind)   (32 + 16 bytes)
//! ```
//!
//! `context` is 32 random bytes per slot per backup, `nonce` 12 random
//! bytes. The TPM slot's K is the TPM's derivation from the context (so
//! only this box, in the boot state it had, opens it); the recovery slot's
//! K is the admin's recovery secret. K must be a full-strength key: HKDF
//! does not stretch a passphrase.
//!
//! # Payload
//!
//! The plaintext is one stream, cut into chunks of exactly `chunk_size`
//! bytes except the last, which holds 1 to `chunk_size`. Chunk i (from 0)
//! is sealed with D:
//!
//! ```text
//! nonce = 00 00 00 || i as u64 big-endian || 01 if it is the last chunk, else 00
//! ad    = "paddock backup v1 chunk\0" || SHA-256(bytes 0 .. 12+H of the file)
//! ```
//!
//! The stream is the entries, then an end marker:
//!
//! ```text
//! entry       u16 big-endian name length N (1 ..= 128), N bytes name,
//!             u64 big-endian length, that many bytes
//! end marker  u16 0, which must end the last chunk exactly
//! ```
//!
//! A name is ASCII letters, digits, `.`, `_`, `-` and `/`, 1 to 128 bytes,
//! no leading `/`, no empty, `.` or `..` component; each name appears
//! once. Nothing may follow the last chunk.
//!
//! # Limits
//!
//! Header at most [`MAX_HEADER`] bytes, at most [`MAX_ENTRIES`] entries,
//! whose lengths total at most [`MAX_TOTAL`] (1 GiB), names at most
//! [`MAX_NAME`] bytes, chunks at most [`MAX_CHUNK_SIZE`]. A reader checks
//! every length against these before acting on it: it holds the header
//! and one chunk (twice) in memory, whatever the file says.
//!
//! # What it protects against, and what not
//!
//! Without a slot's key nobody reads the entries (names included) or
//! changes anything undetected: a changed header fails every chunk (its
//! hash is in their AD), a changed, dropped, reordered, repeated or
//! foreign chunk fails its tag (its index, its being last, and its file
//! are in its nonce and AD), a cut after any chunk shows (the last chunk
//! is marked as such), and so does anything appended. Entry bytes are
//! handed out only from chunks whose tag verified, but a file cut short
//! shows only at its end: a restore stages everything and acts only once
//! [`Unlocked::finish`] succeeded.
//!
//! Not protected: the header is in clear (when, which version, which
//! box, and from the file's length roughly how much data); before
//! [`Reader::unlock`] it is only a claim. Whoever holds a slot's key (the
//! recovery secret, or this box's TPM in the same boot state) can make a
//! backup that reads as genuine: there is no signature. An older genuine
//! backup reads as well as a new one; whether to restore it is the
//! caller's decision (`created_at`). A hostile file can make a reader work
//! through up to the limits above before it fails.

mod chunk;
mod error;
mod header;
mod name;
mod reader;
mod slot;
mod writer;

#[cfg(any(test, fuzzing))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use error::BackupError;
pub use header::Meta;
pub use reader::{Entry, Reader, Unlocked};
pub use slot::{new_context, Slot, SlotKey, SlotKind};
pub use writer::Writer;

pub const MAGIC: &[u8; 8] = b"PDKBAK01";
pub(crate) const MAGIC_TEXT: &str = "PDKBAK01";
/// The header's `format`.
pub const FORMAT: u32 = 1;
pub const MAX_HEADER: u32 = 64 << 10;
/// The plaintext chunk size the box writes.
pub const CHUNK_SIZE: u32 = 64 << 10;
pub const MIN_CHUNK_SIZE: u32 = 64;
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;
pub const MAX_ENTRIES: usize = 256;
/// The most the entries' lengths add up to (the box's state is ~150 MiB).
pub const MAX_TOTAL: u64 = 1 << 30;
pub const MAX_NAME: usize = 128;
