//! The state file's container: a fixed header, then the postcard-encoded
//! `VmSnapshot`.
//!
//! ```text
//! 0   8  magic "PDKSNAP\0"
//! 8   4  format version (little-endian)
//! 12  4  reserved, zero
//! 16  8  body length
//! 24  32 SHA-256 of the body
//! 56  .. body
//! ```
//!
//! A snapshot file is input: it may be damaged, truncated, from another
//! version, or written by someone hostile. `decode` checks each of those
//! before the body is parsed, and the parsed state is bounded by
//! `VmSnapshot::check`; every refusal names what was wrong.

use super::state::{StateError, VmSnapshot};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"PDKSNAP\0";
/// Bumped whenever the body's layout changes; a reader takes only its own.
pub const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 56;
/// A state file is a few tens of KiB per vCPU; anything near this is not one.
pub const MAX_STATE_LEN: u64 = 16 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("{0} bytes is too short for a snapshot header ({HEADER_LEN} bytes)")]
    Short(usize),
    #[error("not a Paddock snapshot (wrong magic bytes)")]
    Magic,
    #[error("snapshot format version {0}; this VMM reads only version {FORMAT_VERSION}")]
    Version(u32),
    #[error("the header's reserved field is {0:#x}, not zero")]
    Reserved(u32),
    #[error("the header says the body is {said} bytes but {found} follow (truncated or padded)")]
    Length { said: u64, found: u64 },
    #[error("the body's SHA-256 does not match the header: the file is damaged")]
    Checksum,
    #[error("the body does not decode: {0}")]
    Body(String),
    #[error("the body decodes but cannot be restored: {0}")]
    State(#[from] StateError),
}

/// The whole state file for `snapshot`.
pub fn encode(snapshot: &VmSnapshot) -> Result<Vec<u8>, FormatError> {
    let body = postcard::to_stdvec(snapshot).map_err(|e| FormatError::Body(e.to_string()))?;
    Ok(frame(&body))
}

/// `body` behind a header that vouches for it: what `encode` writes, and
/// how the fuzzer reaches the body parser past the checksum.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(body));
    out.extend_from_slice(body);
    out
}

/// The whole file's length a header announces (header and body), if
/// `header` starts like a snapshot's: how a state kept on a block device,
/// which is longer than what was written, is read to its end and no further.
pub fn framed_len(header: &[u8]) -> Option<u64> {
    if header.len() < HEADER_LEN || &header[..8] != MAGIC {
        return None;
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[16..24]);
    u64::from_le_bytes(len).checked_add(HEADER_LEN as u64)
}

/// Bytes a reader takes first to learn the length (`framed_len`).
pub const HEADER_BYTES: usize = HEADER_LEN;

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Parses and checks a whole state file.
pub fn decode(bytes: &[u8]) -> Result<VmSnapshot, FormatError> {
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::Short(bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err(FormatError::Magic);
    }
    let version = le_u32(&bytes[8..12]);
    if version != FORMAT_VERSION {
        return Err(FormatError::Version(version));
    }
    let reserved = le_u32(&bytes[12..16]);
    if reserved != 0 {
        return Err(FormatError::Reserved(reserved));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[16..24]);
    let said = u64::from_le_bytes(len);
    let body = &bytes[HEADER_LEN..];
    if said != body.len() as u64 {
        return Err(FormatError::Length {
            said,
            found: body.len() as u64,
        });
    }
    if Sha256::digest(body).as_slice() != &bytes[24..56] {
        return Err(FormatError::Checksum);
    }
    let (snapshot, rest): (VmSnapshot, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| FormatError::Body(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FormatError::Body(format!(
            "{} bytes follow the state",
            rest.len()
        )));
    }
    snapshot.check()?;
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::state::{QueueState, SerialState, TransportState, VcpuState, VmState};

    fn sample() -> VmSnapshot {
        VmSnapshot {
            vmm_version: "test".into(),
            memory_mib: 256,
            memory_chunks: vec![0; 2],
            vcpus: vec![VcpuState {
                msrs: vec![Default::default(); 2],
                ..VcpuState::zeroed(vec![Default::default(); 3])
            }],
            vm: VmState {
                pic_master: Default::default(),
                pic_slave: Default::default(),
                ioapic: Default::default(),
                pit: Default::default(),
                clock: Default::default(),
            },
            serial: SerialState {
                in_buffer: b"hi".to_vec(),
                ..Default::default()
            },
            devices: vec![TransportState {
                device_type: 19,
                status: 15,
                driver_features: 1 << 32,
                device_features_sel: 0,
                driver_features_sel: 1,
                queue_sel: 2,
                interrupt_status: 1,
                needs_reset: false,
                activated: true,
                queues: vec![QueueState {
                    max_size: 256,
                    next_avail: 7,
                    next_used: 7,
                    event_idx_enabled: false,
                    size: 256,
                    ready: true,
                    desc_table: 0x1000,
                    avail_ring: 0x2000,
                    used_ring: 0x3000,
                }],
            }],
        }
    }

    #[test]
    fn a_snapshot_survives_the_round_trip() {
        let mut s = sample();
        s.vcpus[0].regs.rip = 0xffff_ffff_8100_0000;
        s.vcpus[0].lapic.regs[0x20] = 7;
        let back = decode(&encode(&s).expect("encode")).expect("decode");
        assert_eq!(back.vcpus[0].regs.rip, 0xffff_ffff_8100_0000);
        assert_eq!(back.vcpus[0].lapic.regs[0x20], 7);
        assert_eq!(back.devices, s.devices);
        assert_eq!(back.serial, s.serial);
    }

    #[test]
    fn damage_of_every_kind_is_named() {
        let good = encode(&sample()).expect("encode");
        assert!(matches!(decode(&good[..10]), Err(FormatError::Short(10))));
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(matches!(decode(&magic), Err(FormatError::Magic)));
        let mut version = good.clone();
        version[8] = 9;
        assert!(matches!(decode(&version), Err(FormatError::Version(9))));
        let mut reserved = good.clone();
        reserved[12] = 1;
        assert!(matches!(decode(&reserved), Err(FormatError::Reserved(1))));
        assert!(matches!(
            decode(&good[..good.len() - 1]),
            Err(FormatError::Length { .. })
        ));
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(decode(&flipped), Err(FormatError::Checksum)));
        let text = decode(&flipped)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.contains("damaged"), "{text}");
    }

    /// A body with a valid checksum is still hostile input: a forged file
    /// with absurd counts is refused before a restore acts on it.
    #[test]
    fn a_well_formed_file_with_absurd_contents_is_refused() {
        let mut s = sample();
        s.vcpus[0].msrs = vec![Default::default(); MAX_MSRS_PLUS_ONE];
        assert!(matches!(
            decode(&encode(&s).expect("encode")),
            Err(FormatError::State(StateError::TooMany { what: "MSRs", .. }))
        ));
        let mut s = sample();
        s.vcpus.clear();
        assert!(matches!(
            decode(&encode(&s).expect("encode")),
            Err(FormatError::State(StateError::VcpuCount(0)))
        ));
        let mut s = sample();
        s.memory_mib = 1;
        assert!(matches!(
            decode(&encode(&s).expect("encode")),
            Err(FormatError::State(StateError::Memory(1)))
        ));
        let mut s = sample();
        s.memory_chunks = vec![0; 1 << 20];
        assert!(matches!(
            decode(&encode(&s).expect("encode")),
            Err(FormatError::State(StateError::ChunkList { .. }))
        ));
        // A body whose bytes are not a snapshot at all, correctly summed.
        let forged = frame(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff");
        assert!(matches!(decode(&forged), Err(FormatError::Body(_))));
    }

    /// Writes the fuzzer's seed (the sample's body, unframed) where
    /// PADDOCK_SNAPSHOT_SEED says: `PADDOCK_SNAPSHOT_SEED=fuzz/corpus/
    /// snapshot_state/sample cargo test -p paddock-vmm --lib seed`.
    #[test]
    fn seed_for_the_fuzzer() {
        let body = postcard::to_stdvec(&sample()).expect("encode");
        assert!(decode(&frame(&body)).is_ok());
        if let Some(path) = std::env::var_os("PADDOCK_SNAPSHOT_SEED") {
            std::fs::write(path, body).expect("write the seed");
        }
    }

    const MAX_MSRS_PLUS_ONE: usize = crate::snapshot::state::MAX_MSRS + 1;
}
