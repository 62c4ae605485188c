//! The two image slots (A/B). Each slot is a UKI on the ESP,
//! `EFI/Linux/paddock-<slot>[+LEFT[-DONE]].efi`, and a template partition,
//! `paddock-tmpl-<slot>`. systemd-boot boots the newest version whose
//! tries are not used up, counting down `+LEFT-DONE` in the file name on
//! each try (the Boot Loader Specification's boot counting); host-init
//! blesses a slot that came up by renaming its file to drop the counter.
//! The name is the whole protocol, so it is parsed strictly here and
//! nowhere else.

use std::fmt;

/// Where systemd-boot looks for UKIs (type #2 entries) on the ESP.
pub const UKI_DIR: &str = "EFI/Linux";
/// systemd-boot's configuration on the ESP.
pub const LOADER_CONF: &str = "loader/loader.conf";
/// No menu, no editing of the kernel command line at the console, no
/// entries it would invent: the box boots what the slots hold.
pub const LOADER_CONF_TEXT: &str = "timeout 0\neditor no\nauto-entries no\nauto-firmware no\n";
/// Tries a new slot gets before systemd-boot gives up on it.
pub const TRIES: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn letter(self) -> char {
        match self {
            Slot::A => 'a',
            Slot::B => 'b',
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    /// The GPT name of the slot's template partition.
    pub fn template_label(self) -> &'static str {
        match self {
            Slot::A => "paddock-tmpl-a",
            Slot::B => "paddock-tmpl-b",
        }
    }
    /// Its UKI's path on the ESP with `tries` left on a counter (None: a
    /// blessed slot, no counter).
    pub fn uki_path(self, tries: Option<u32>) -> String {
        match tries {
            Some(n) => format!("{UKI_DIR}/paddock-{}+{n}.efi", self.letter()),
            None => format!("{UKI_DIR}/paddock-{}.efi", self.letter()),
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// A slot's UKI file name, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UkiName {
    pub slot: Slot,
    /// `(left, done)` while it is on trial; None once blessed.
    pub tries: Option<(u32, u32)>,
}

impl UkiName {
    /// Reads `paddock-a.efi`, `paddock-b+3.efi`, `paddock-b+2-1.efi` (a path
    /// is read by its last component, with `/` or `\` separators, in any
    /// case, as FAT and EFI variables spell it). Anything else is None.
    pub fn parse(path: &str) -> Option<UkiName> {
        let name = path.rsplit(['/', '\\']).next()?.to_ascii_lowercase();
        let stem = name.strip_prefix("paddock-")?.strip_suffix(".efi")?;
        let (slot, counter) = match stem.split_once('+') {
            Some((s, c)) => (s, Some(c)),
            None => (stem, None),
        };
        let slot = match slot {
            "a" => Slot::A,
            "b" => Slot::B,
            _ => return None,
        };
        let number = |s: &str| -> Option<u32> {
            if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let tries = match counter {
            None => None,
            Some(c) => Some(match c.split_once('-') {
                Some((left, done)) => (number(left)?, number(done)?),
                None => (number(c)?, 0),
            }),
        };
        Some(UkiName { slot, tries })
    }

    /// Used up: systemd-boot boots it only when nothing else is left.
    pub fn is_bad(&self) -> bool {
        matches!(self.tries, Some((0, _)))
    }

    /// The file name once blessed.
    pub fn blessed(&self) -> String {
        format!("paddock-{}.efi", self.slot.letter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_systemd_boot_writes_them() {
        let p = |s| UkiName::parse(s);
        assert_eq!(
            p("paddock-a.efi"),
            Some(UkiName {
                slot: Slot::A,
                tries: None
            })
        );
        assert_eq!(
            p("\\EFI\\Linux\\paddock-b+2-1.efi"),
            Some(UkiName {
                slot: Slot::B,
                tries: Some((2, 1))
            })
        );
        assert_eq!(
            p("EFI/Linux/PADDOCK-B+3.EFI"),
            Some(UkiName {
                slot: Slot::B,
                tries: Some((3, 0))
            })
        );
        assert!(p("paddock-b+0-3.efi").is_some_and(|n| n.is_bad()));
        assert_eq!(
            p("paddock-b+0-3.efi").map(|n| n.blessed()),
            Some("paddock-b.efi".into())
        );
        for bad in [
            "paddock-c.efi",
            "paddock-a",
            "paddock-a+.efi",
            "paddock-a+1-.efi",
            "paddock-a+-1.efi",
            "paddock-a+99999.efi",
            "paddock-a+1-2-3.efi",
            "other-a.efi",
            "paddock-a.efi.tmp",
            "",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths_and_labels() {
        assert_eq!(Slot::A.uki_path(None), "EFI/Linux/paddock-a.efi");
        assert_eq!(Slot::B.uki_path(Some(TRIES)), "EFI/Linux/paddock-b+3.efi");
        assert_eq!(Slot::A.other().template_label(), "paddock-tmpl-b");
        for s in [Slot::A, Slot::B] {
            let path = s.uki_path(Some(2));
            assert_eq!(UkiName::parse(&path).map(|n| n.slot), Some(s));
        }
    }
}
