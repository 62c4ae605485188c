//! A test's own appliance configuration on a copy of the image: the ESP
//! rebuilt around the image's UKI with another `paddock.json`, so one test
//! can turn on what the shared test image leaves off (a webhook aimed into
//! its fake internet, which the other tests must never dial).

use paddock_image::{esp, gpt, LABEL_ESP};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum EspConfigError {
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
}

fn failed(what: impl Into<String>, detail: impl ToString) -> EspConfigError {
    EspConfigError::Failed {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// The test image's configuration (firmware/test-config.json) with `extra`'s
/// top-level keys put over it.
pub fn test_config_with(extra: serde_json::Value) -> Result<Vec<u8>, EspConfigError> {
    let path = crate::appliance::repo_root().join("firmware/test-config.json");
    let text =
        std::fs::read(&path).map_err(|e| failed(format!("reading {}", path.display()), e))?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| failed("firmware/test-config.json", e))?;
    let (Some(base), Some(extra)) = (config.as_object_mut(), extra.as_object()) else {
        return Err(failed("the configuration", "not a JSON object"));
    };
    for (k, v) in extra {
        base.insert(k.clone(), v.clone());
    }
    serde_json::to_vec(&config).map_err(|e| failed("the configuration", e))
}

/// Writes a fresh ESP holding `uki` and `config` over `disk`'s; what the
/// image build put there beside them (the image's PCR signature) stays.
pub fn set(disk: &Path, uki: &Path, config: &[u8]) -> Result<(), EspConfigError> {
    let uki = std::fs::read(uki).map_err(|e| failed(format!("reading {}", uki.display()), e))?;
    rewrite(disk, |loader, old_config, _| {
        *loader = uki;
        *old_config = Some(config.to_vec());
    })
}

/// What an update writes to the ESP, without an update mechanism: the new
/// UKI as the loader and its PCR signature beside the old ones
/// (`signatures`: file name under paddock/pcrsig, bytes).
pub fn install_uki(
    disk: &Path,
    uki: &Path,
    signatures: &[(String, Vec<u8>)],
) -> Result<(), EspConfigError> {
    let uki = std::fs::read(uki).map_err(|e| failed(format!("reading {}", uki.display()), e))?;
    rewrite(disk, |loader, _, kept| {
        *loader = uki;
        for (name, bytes) in signatures {
            kept.push((
                format!("{}/{name}", paddock_keys::signed::SIGNATURE_DIR),
                bytes.clone(),
            ));
        }
    })
}

/// Reads `disk`'s ESP (loader, configuration, every other file), lets
/// `change` alter them, and writes a fresh ESP of the same size.
fn rewrite(
    disk: &Path,
    change: impl FnOnce(&mut Vec<u8>, &mut Option<Vec<u8>>, &mut Vec<(String, Vec<u8>)>),
) -> Result<(), EspConfigError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(|e| failed(format!("opening {}", disk.display()), e))?;
    let table = gpt::Gpt::read(&mut f).map_err(|e| failed("reading the partition table", e))?;
    let (_, p) = table
        .find(LABEL_ESP)
        .ok_or_else(|| failed("the partition table", "no ESP"))?;
    let size = (p.last_lba + 1 - p.first_lba) * gpt::SECTOR;
    let mut old = vec![0u8; size as usize];
    f.seek(SeekFrom::Start(p.first_lba * gpt::SECTOR))
        .and_then(|_| f.read_exact(&mut old))
        .map_err(|e| failed("reading the ESP", e))?;
    let read = |path: &str| esp::read_file(&old, path).map_err(|e| failed("reading the ESP", e));
    let mut loader = read(esp::DEFAULT_LOADER)?;
    let mut config = None;
    let mut kept = Vec::new();
    for (path, _) in esp::list(&old).map_err(|e| failed("listing the ESP", e))? {
        if path == esp::CONFIG_PATH {
            config = Some(read(&path)?);
        } else if path != esp::DEFAULT_LOADER {
            kept.push((path.clone(), read(&path)?));
        }
    }
    change(&mut loader, &mut config, &mut kept);
    let fat = esp::build(&loader, config.as_deref(), &kept, size, 0x7e57_c0f9)
        .map_err(|e| failed("building the ESP", e))?;
    f.seek(SeekFrom::Start(p.first_lba * gpt::SECTOR))
        .and_then(|_| f.write_all(&fat))
        .and_then(|_| f.sync_all())
        .map_err(|e| failed("writing the ESP", e))
}
