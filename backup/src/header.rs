//! The header: what it says (`Meta`, the chunk size, the slots), its JSON,
//! and the checks every field gets before anything else is read.

use crate::error::BackupError;
use crate::slot::{Slot, SlotKind, SEALED_LEN};
use crate::{FORMAT, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use serde::{Deserialize, Serialize};

const MAX_BOX_VERSION: usize = 64;
const MAX_BOX_ID: usize = 128;

/// What a backup says about itself, in clear in its header. Before
/// `Reader::unlock` these are only the file's claims; after it they are
/// authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// When the backup was made, Unix seconds.
    pub created_at: u64,
    /// The Paddock version that made it: printable ASCII, 1 to 64 bytes.
    pub box_version: String,
    /// Which box made it, if the writer says: printable ASCII, 1 to 128
    /// bytes. Stored as `box` in the header.
    pub box_id: Option<String>,
}

/// The parsed, checked header.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub meta: Meta,
    pub chunk_size: u32,
    pub slots: Vec<Slot>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderJson {
    format: u32,
    created_at: u64,
    box_version: String,
    #[serde(rename = "box", default, skip_serializing_if = "Option::is_none")]
    box_id: Option<String>,
    chunk_size: u32,
    slots: Vec<SlotJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotJson {
    kind: SlotKind,
    context: String,
    nonce: String,
    sealed: String,
}

/// Only the version, read first so that a header from another format
/// says so rather than which field this version misses.
#[derive(Deserialize)]
struct FormatOnly {
    format: serde_json::Value,
}

fn bad<T>(what: String) -> Result<T, BackupError> {
    Err(BackupError::Header(what))
}

/// Printable ASCII only: these are shown to operators and logged before
/// anything in the file is authenticated.
fn check_text(field: &str, s: &str, max: usize) -> Result<(), BackupError> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return bad(format!(
            "{field} must be 1 to {max} printable ASCII characters (it is {} bytes)",
            s.len()
        ));
    }
    Ok(())
}

pub(crate) fn check_meta(m: &Meta) -> Result<(), BackupError> {
    check_text("box_version", &m.box_version, MAX_BOX_VERSION)?;
    if let Some(id) = &m.box_id {
        check_text("box", id, MAX_BOX_ID)?;
    }
    Ok(())
}

pub(crate) fn check_chunk_size(size: u32) -> Result<(), BackupError> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size) {
        return bad(format!(
            "chunk_size {size} (it must be {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE})"
        ));
    }
    Ok(())
}

/// At least one slot, at most one of each kind: with two slots of a kind
/// a reader could not say which one a key was meant for.
pub(crate) fn check_slot_kinds(kinds: &[SlotKind]) -> Result<(), &'static str> {
    if kinds.is_empty() {
        return Err("there is no key slot");
    }
    for (i, k) in kinds.iter().enumerate() {
        if kinds[..i].contains(k) {
            return Err(match k {
                SlotKind::Tpm => "there are two tpm key slots",
                SlotKind::Recovery => "there are two recovery key slots",
            });
        }
    }
    Ok(())
}

pub(crate) fn encode(h: &Header) -> Result<Vec<u8>, BackupError> {
    let json = HeaderJson {
        format: FORMAT,
        created_at: h.meta.created_at,
        box_version: h.meta.box_version.clone(),
        box_id: h.meta.box_id.clone(),
        chunk_size: h.chunk_size,
        slots: h
            .slots
            .iter()
            .map(|s| SlotJson {
                kind: s.kind,
                context: to_hex(&s.context),
                nonce: to_hex(&s.nonce),
                sealed: to_hex(&s.sealed),
            })
            .collect(),
    };
    serde_json::to_vec(&json).map_err(|e| BackupError::Header(format!("encoding it: {e}")))
}

/// Parses and checks header bytes; its length is already capped.
pub(crate) fn parse(bytes: &[u8]) -> Result<Header, BackupError> {
    let format: FormatOnly = serde_json::from_slice(bytes)
        .map_err(|e| BackupError::Header(format!("it is not JSON with a format field ({e})")))?;
    if format.format != FORMAT {
        return Err(BackupError::UnsupportedVersion {
            found: shown(&format.format.to_string()),
        });
    }
    let json: HeaderJson =
        serde_json::from_slice(bytes).map_err(|e| BackupError::Header(e.to_string()))?;
    let meta = Meta {
        created_at: json.created_at,
        box_version: json.box_version,
        box_id: json.box_id,
    };
    check_meta(&meta)?;
    check_chunk_size(json.chunk_size)?;
    let kinds: Vec<SlotKind> = json.slots.iter().map(|s| s.kind).collect();
    check_slot_kinds(&kinds).map_err(|why| BackupError::Header(format!("slots: {why}")))?;
    let mut slots = Vec::with_capacity(json.slots.len());
    for s in &json.slots {
        let field = |name: &str| format!("the {} slot's {name}", s.kind);
        slots.push(Slot {
            kind: s.kind,
            context: from_hex(&s.context).ok_or_else(|| {
                BackupError::Header(format!("{} is not 64 hex digits", field("context")))
            })?,
            nonce: from_hex(&s.nonce).ok_or_else(|| {
                BackupError::Header(format!("{} is not 24 hex digits", field("nonce")))
            })?,
            sealed: from_hex::<SEALED_LEN>(&s.sealed).ok_or_else(|| {
                BackupError::Header(format!(
                    "{} is not {} hex digits",
                    field("sealed key"),
                    2 * SEALED_LEN
                ))
            })?,
        });
    }
    Ok(Header {
        meta,
        chunk_size: json.chunk_size,
        slots,
    })
}

/// A value from the file, cut short and made printable for a message.
fn shown(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(32) {
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    if s.chars().count() > 32 {
        out.push('…');
    }
    out
}

pub(crate) fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Exactly `2 * N` hex digits (either case), or nothing.
pub(crate) fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

    fn header_json(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = serde_json::json!({
            "format": 1,
            "created_at": 1_700_000_000u64,
            "box_version": "0.1.0",
            "box": "box-1",
            "chunk_size": 65536,
            "slots": [{
                "kind": "recovery",
                "context": "00".repeat(32),
                "nonce": "11".repeat(12),
                "sealed": "22".repeat(48),
            }],
        });
        edit(&mut v);
        serde_json::to_vec(&v).expect("json")
    }

    fn refused(bytes: &[u8]) -> String {
        match parse(bytes) {
            Ok(_) => String::from("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_well_formed_header_parses() {
        let h = parse(&header_json(|_| {})).expect("parsed");
        assert_eq!(h.meta.box_id.as_deref(), Some("box-1"));
        assert_eq!(h.slots[0].kind, SlotKind::Recovery);
        assert_eq!(h.slots[0].sealed, [0x22; 48]);
        let h = parse(&header_json(|v| v["box"] = serde_json::Value::Null)).expect("no box");
        assert_eq!(h.meta.box_id, None);
    }

    #[test]
    fn each_malformed_field_is_named() {
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|v| v["format"] = 2.into()), "format 2"),
            (Box::new(|v| v["format"] = "x\n".into()), "format \"x\\n\""),
            (Box::new(|v| v["box_version"] = "".into()), "box_version"),
            (
                Box::new(|v| v["box_version"] = "a\u{7}".into()),
                "box_version",
            ),
            (Box::new(|v| v["box"] = "x".repeat(129).into()), "box must"),
            (Box::new(|v| v["chunk_size"] = 0.into()), "chunk_size 0"),
            (
                Box::new(|v| v["chunk_size"] = (1u64 << 31).into()),
                "chunk_size",
            ),
            (
                Box::new(|v| v["slots"] = serde_json::json!([])),
                "no key slot",
            ),
            (
                Box::new(|v| {
                    let s = v["slots"][0].clone();
                    v["slots"] = serde_json::json!([s.clone(), s]);
                }),
                "two recovery",
            ),
            (
                Box::new(|v| v["slots"][0]["kind"] = "usb".into()),
                "unknown variant",
            ),
            (
                Box::new(|v| v["slots"][0]["context"] = "00".into()),
                "context is not 64",
            ),
            (
                Box::new(|v| v["slots"][0]["nonce"] = "zz".repeat(12).into()),
                "nonce",
            ),
            (
                Box::new(|v| v["slots"][0]["sealed"] = "22".repeat(47).into()),
                "sealed key",
            ),
            (Box::new(|v| v["extra"] = 1.into()), "unknown field"),
            (
                Box::new(|v| {
                    v.as_object_mut().map(|o| o.remove("created_at"));
                }),
                "created_at",
            ),
        ];
        for (edit, want) in cases {
            let e = refused(&header_json(edit));
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
        assert!(refused(b"\xff\xfe").contains("not JSON"));
        assert!(refused(b"[]").contains("not JSON"));
    }

    #[test]
    fn hex_is_exact() {
        assert_eq!(from_hex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(from_hex::<2>("0aF"), None);
        assert_eq!(from_hex::<1>("+1"), None);
        assert_eq!(from_hex::<1>("é"), None);
        assert_eq!(to_hex(&[0, 0xab]), "00ab");
    }
}
