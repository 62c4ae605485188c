//! The appliance image's formats: the deterministic initramfs writer and
//! the GPT reader/writer (which host-init also uses to grow its data
//! partition), plus, with the `tool` feature, the ESP and image listing.

pub mod cpio;
#[cfg(feature = "tool")]
pub mod esp;
pub mod gpt;
#[cfg(feature = "tool")]
pub mod inspect;
#[cfg(feature = "tool")]
pub mod pcr;
pub mod pe;
pub mod slots;

/// GPT labels the image build writes and host-init looks for.
pub const LABEL_ESP: &str = "paddock-esp";
/// The template partition of images from before the A/B slots (each slot
/// has its own now: `slots::Slot::template_label`).
pub const LABEL_TEMPLATE: &str = "paddock-tmpl";
pub const LABEL_DATA: &str = "paddock-data";

/// First bytes of a data partition that host-init may format: anything
/// else there is somebody's data, and is never formatted.
pub const DATA_BLANK_MARKER: &[u8] = b"PADDOCK-DATA-PARTITION-BLANK\n";
