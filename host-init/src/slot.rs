//! Which image slot this boot is, from what systemd-boot tells the OS in
//! its EFI variables, and blessing it once the box is really up
//! (image-build's `slots` has the naming protocol; docs/updates.md the
//! whole scheme).
//!
//! - `LoaderBootCountPath`: set only when the booted UKI carries a boot
//!   counter, i.e. this slot is on trial. Its path, with the counter
//!   removed, is the blessed name.
//! - `LoaderEntrySelected`: the entry systemd-boot booted (its file name).
//!
//! Neither exists when something else booted the kernel (QEMU's direct
//! kernel boot for benchmarks, an image from before the slots): then the
//! slot is unknown, the box runs from slot A's template (or the old single
//! template partition), and there is nothing to bless.

use log::{info, warn};
use paddock_image::slots::{Slot, UkiName};

/// The largest file read as a slot's UKI.
const MAX_UKI: u64 = 512 << 20;
const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
const EFIVARS: &str = "/sys/firmware/efi/efivars";

/// An EFI variable of systemd-boot's as a string: 4 bytes of attributes,
/// then UTF-16LE up to a NUL.
fn loader_var(name: &str) -> Option<String> {
    let raw = std::fs::read(format!("{EFIVARS}/{name}-{LOADER_GUID}")).ok()?;
    decode_var(&raw)
}

fn decode_var(raw: &[u8]) -> Option<String> {
    let body = raw.get(4..)?;
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    let s = String::from_utf16(&units).ok()?;
    (!s.is_empty() && s.len() <= 512).then_some(s)
}

/// Whether the firmware booted with Secure Boot on (its `SecureBoot`
/// variable: 4 bytes of attributes, then 1).
pub fn secure_boot() -> bool {
    std::fs::read(format!(
        "{EFIVARS}/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    ))
    .map(|v| v.get(4) == Some(&1))
    .unwrap_or(false)
}

/// What this boot is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Booted {
    pub slot: Option<Slot>,
    /// The booted UKI's path on the ESP ('/'-separated) while it is on
    /// trial (a boot counter in its name); None once blessed.
    pub on_trial: Option<String>,
}

impl Booted {
    /// From the two variables' values.
    fn from_vars(count_path: Option<String>, selected: Option<String>) -> Booted {
        let trial = count_path.and_then(|p| {
            let name = UkiName::parse(&p)?;
            let path = p.trim_start_matches('\\').replace('\\', "/");
            // Exactly EFI/Linux/<a slot's name>: nothing else is renamed.
            let file = path.strip_prefix(&format!("{}/", paddock_image::slots::UKI_DIR))?;
            (!file.contains('/') && UkiName::parse(file).is_some()).then_some(())?;
            Some((name, format!("{}/{file}", paddock_image::slots::UKI_DIR)))
        });
        if let Some((name, path)) = trial {
            return Booted {
                slot: Some(name.slot),
                on_trial: name.tries.is_some().then_some(path),
            };
        }
        Booted {
            slot: selected.and_then(|s| UkiName::parse(&s)).map(|n| n.slot),
            on_trial: None,
        }
    }

    /// Read from the firmware's variables (efivarfs must be mounted).
    pub fn read() -> Booted {
        let b = Booted::from_vars(
            loader_var("LoaderBootCountPath"),
            loader_var("LoaderEntrySelected"),
        );
        match (&b.slot, &b.on_trial) {
            (Some(s), Some(p)) => info!("booted slot {s} on trial ({p})"),
            (Some(s), None) => info!("booted slot {s}"),
            (None, _) => info!("booted without systemd-boot's word on the slot: slot A's template"),
        }
        b
    }
}

/// A slot's UKI as the ESP holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotFile {
    pub name: UkiName,
    /// Its os-release VERSION_ID, when it reads.
    pub version: Option<String>,
}

/// The slots' UKIs under `esp_root` (mounted), one per slot at most: were
/// there two for one slot (a crash between writing and removing), the one
/// systemd-boot would take is the one counting, so that one is listed.
pub fn list(esp_root: &std::path::Path) -> Vec<SlotFile> {
    let mut out: Vec<SlotFile> = Vec::new();
    let Ok(dir) = std::fs::read_dir(esp_root.join(paddock_image::slots::UKI_DIR)) else {
        return out;
    };
    let mut names: Vec<(UkiName, std::path::PathBuf)> = dir
        .flatten()
        .filter_map(|e| {
            let n = UkiName::parse(&e.file_name().to_string_lossy())?;
            Some((n, e.path()))
        })
        .collect();
    names.sort_by_key(|(n, _)| (n.slot.letter(), n.tries.is_none()));
    for (name, path) in names {
        if out.iter().any(|f| f.name.slot == name.slot) {
            continue;
        }
        // A UKI is tens of MiB; anything far bigger is not one.
        let version = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.len() <= MAX_UKI)
            .and_then(|_| std::fs::read(&path).ok())
            .and_then(|b| {
                paddock_image::pe::osrel_value(&b, "VERSION_ID")
                    .ok()
                    .flatten()
            });
        out.push(SlotFile { name, version });
    }
    out
}

/// The slots for the API: both, each with what its UKI says.
pub fn describe(files: &[SlotFile], booted: &Booted) -> Vec<paddock_api_types::SlotInfo> {
    use paddock_api_types::{SlotInfo, SlotState};
    [Slot::A, Slot::B]
        .into_iter()
        .map(|slot| {
            let file = files.iter().find(|f| f.name.slot == slot);
            let state = match file.map(|f| f.name) {
                None => SlotState::Empty,
                Some(n) if n.is_bad() => SlotState::Bad,
                Some(UkiName { tries: Some(_), .. }) => SlotState::Trial,
                Some(_) => SlotState::Good,
            };
            SlotInfo {
                slot: slot.to_string(),
                version: file.and_then(|f| f.version.clone()),
                state,
                tries_left: file.and_then(|f| f.name.tries.map(|(left, _)| left)),
                booted: booted.slot == Some(slot),
            }
        })
        .collect()
}

/// The slots as last read (at boot, after a blessing), for `GET /v1/system`.
static SLOTS: std::sync::Mutex<Vec<paddock_api_types::SlotInfo>> =
    std::sync::Mutex::new(Vec::new());

pub fn set_slots(slots: Vec<paddock_api_types::SlotInfo>) {
    *SLOTS.lock().unwrap_or_else(|e| e.into_inner()) = slots;
}

/// Reads the slots again from the ESP (after a blessing or an update);
/// `booted` is what this boot is now.
pub fn refresh(esp_dev: &str, booted: &Booted) {
    match crate::storage::with_esp(esp_dev, false, list) {
        Ok(files) => set_slots(describe(&files, booted)),
        Err(e) => warn!("reading the slots again: {e}"),
    }
}

pub fn slots() -> Vec<paddock_api_types::SlotInfo> {
    SLOTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Renames the booted UKI to its blessed name on the ESP (mounted
/// read-write at `esp_root` by the caller): systemd-boot stops counting,
/// and this slot is good from now on.
pub fn bless(esp_root: &std::path::Path, on_trial: &str) -> Result<String, String> {
    let name = UkiName::parse(on_trial).ok_or_else(|| format!("{on_trial}: not a slot's UKI"))?;
    let from = esp_root.join(on_trial);
    let to = from.with_file_name(name.blessed());
    std::fs::rename(&from, &to)
        .map_err(|e| format!("renaming {} to {}: {e}", from.display(), to.display()))?;
    // FAT keeps a rename in the directory's cluster: have it on the disk
    // before anything else happens.
    if let Some(dir) = to.parent() {
        match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            Ok(()) => {}
            Err(e) => warn!("syncing {}: {e}", dir.display()),
        }
    }
    Ok(name.blessed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(s: &str) -> Vec<u8> {
        let mut v = vec![7, 0, 0, 0];
        for u in s.encode_utf16().chain(std::iter::once(0)) {
            v.extend_from_slice(&u.to_le_bytes());
        }
        v
    }

    #[test]
    fn variables_decode_and_junk_does_not() {
        assert_eq!(
            decode_var(&var("paddock-a.efi")).as_deref(),
            Some("paddock-a.efi")
        );
        assert_eq!(decode_var(&[1, 2]), None);
        assert_eq!(decode_var(&var("")), None);
        // An odd trailing byte is ignored, unpaired surrogates are refused.
        let mut odd = var("x");
        odd.push(9);
        assert_eq!(decode_var(&odd).as_deref(), Some("x"));
        assert_eq!(decode_var(&[0, 0, 0, 0, 0x00, 0xD8, 0x41, 0x00]), None);
    }

    #[test]
    fn a_counted_boot_is_on_trial_and_a_selected_one_is_not() {
        let b = Booted::from_vars(
            Some("\\EFI\\Linux\\paddock-b+2-1.efi".into()),
            Some("paddock-b+2-1.efi".into()),
        );
        assert_eq!(b.slot, Some(Slot::B));
        assert_eq!(b.on_trial.as_deref(), Some("EFI/Linux/paddock-b+2-1.efi"));
        let b = Booted::from_vars(None, Some("paddock-a.efi".into()));
        assert_eq!((b.slot, b.on_trial), (Some(Slot::A), None));
        let b = Booted::from_vars(None, Some("something-else.efi".into()));
        assert_eq!(b, Booted::default());
        let b = Booted::from_vars(Some("\\EFI\\Linux\\other+1.efi".into()), None);
        assert_eq!(b, Booted::default(), "a counted path that is not ours");
        for odd in [
            "\\..\\..\\paddock-a+1.efi",
            "\\EFI\\Linux\\..\\paddock-a+1.efi",
            "/etc/paddock-a+1.efi",
        ] {
            let b = Booted::from_vars(Some(odd.into()), None);
            assert_eq!(b.on_trial, None, "{odd}");
        }
    }

    #[test]
    fn blessing_renames_to_the_name_without_a_counter() {
        let dir = std::env::temp_dir().join(format!("paddock-bless-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("EFI/Linux")).expect("dir");
        std::fs::write(dir.join("EFI/Linux/paddock-b+2-1.efi"), b"uki").expect("uki");
        assert_eq!(
            bless(&dir, "EFI/Linux/paddock-b+2-1.efi").as_deref(),
            Ok("paddock-b.efi")
        );
        assert!(dir.join("EFI/Linux/paddock-b.efi").exists());
        assert!(bless(&dir, "EFI/Linux/paddock-b+2-1.efi").is_err(), "gone");
        assert!(bless(&dir, "EFI/Linux/nonsense.efi").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
