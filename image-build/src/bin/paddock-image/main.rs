//! paddock-image: the deterministic steps of building the appliance image
//! (initramfs archive, ESP and GPT disk) and listing what an image holds.

use paddock_image::{cpio, esp, gpt, inspect, slots, DATA_BLANK_MARKER, LABEL_DATA, LABEL_ESP};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: paddock-image initramfs --root DIR --out FILE
       paddock-image disk --uki FILE --boot-loader FILE --template FILE --out FILE
                          [--esp-config FILE] [--pcr-signature FILE] [--esp-mib N]
                          [--template-mib N] [--data-mib N]
       paddock-image list DISK [--check-no-shell]
       paddock-image pcr-key --out KEY --public FILE
       paddock-image pcr-public --key KEY --out FILE
       paddock-image pcr-sign --uki FILE --key KEY --image NAME --out FILE
       paddock-image update-key --out KEY --public FILE
       paddock-image update-public --key KEY --out FILE
       paddock-image bundle --uki FILE --template FILE --pcr-signature FILE
                            --version V --key KEY --out FILE

pcr-key makes an image key (P-256, PKCS#8 DER, written 0600) and its
public half; pcr-public writes the public half of an existing key (what
goes into the image); pcr-sign computes PCR 11 as systemd-stub will
measure the UKI and signs the disk keys' policy for it. update-key makes
the update key (Ed25519, PKCS#8 DER, 0600); bundle writes a signed update
bundle of an image's parts (docs/updates.md).

Timestamps and GUIDs come from SOURCE_DATE_EPOCH, which must be set for
initramfs and disk: the same inputs always give the same bytes.";

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Image(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CliError {
    let path = path.to_path_buf();
    move |source| CliError::Io { what, path, source }
}

fn epoch() -> Result<u32, CliError> {
    let v = std::env::var("SOURCE_DATE_EPOCH")
        .map_err(|_| CliError::Usage("SOURCE_DATE_EPOCH is not set".into()))?;
    v.parse().map_err(|_| {
        CliError::Usage(format!(
            "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
        ))
    })
}

struct Flags {
    values: Vec<(String, String)>,
    switches: Vec<String>,
    positional: Vec<String>,
}

fn parse_flags(args: &[String], with_value: &[&str]) -> Result<Flags, CliError> {
    let mut f = Flags {
        values: Vec::new(),
        switches: Vec::new(),
        positional: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if with_value.contains(&a.as_str()) {
            let v = it
                .next()
                .ok_or_else(|| CliError::Usage(format!("{a} needs a value")))?;
            f.values.push((a.clone(), v.clone()));
        } else if a.starts_with("--") {
            f.switches.push(a.clone());
        } else {
            f.positional.push(a.clone());
        }
    }
    Ok(f)
}

impl Flags {
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn path(&self, name: &str) -> Result<PathBuf, CliError> {
        self.get(name)
            .map(PathBuf::from)
            .ok_or_else(|| CliError::Usage(format!("{name} is required")))
    }
    fn mib(&self, name: &str, default: u64) -> Result<u64, CliError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=1 << 20).contains(n))
                .ok_or_else(|| {
                    CliError::Usage(format!("{name} {v:?}: expected MiB, 1 to 1048576"))
                }),
        }
    }
}

fn cmd_initramfs(args: &[String]) -> Result<(), CliError> {
    let f = parse_flags(args, &["--root", "--out"])?;
    let root = f.path("--root")?;
    let out = f.path("--out")?;
    let mtime = epoch()?;
    let mut entries = cpio::entries_from_dir(&root).map_err(io("reading", &root))?;
    if !entries.iter().any(|e| e.path() == "dev") {
        entries.push(cpio::Entry::Dir {
            path: "dev".into(),
            mode: 0o755,
        });
    }
    // The kernel opens /dev/console for init before devtmpfs exists.
    entries.push(cpio::Entry::CharDev {
        path: "dev/console".into(),
        mode: 0o600,
        major: 5,
        minor: 1,
    });
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    let mut bytes = Vec::new();
    cpio::write_archive(&mut bytes, &entries, mtime).map_err(io("writing", &out))?;
    std::fs::write(&out, bytes).map_err(io("writing", &out))
}

/// GUIDs that are stable for a given build (and differ per name).
fn stable_guid(seed: u32, what: &str) -> gpt::Guid {
    let h = Sha256::digest(format!("paddock-image {seed} {what}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    gpt::Guid::from_bytes(b)
}

/// A template slot's size: room for a bigger template in a later update
/// (an update whose template does not fit its slot is refused).
fn template_slot_mib(template_bytes: u64) -> u64 {
    let mib = template_bytes.div_ceil(1 << 20);
    mib + (mib / 2).max(64)
}

fn cmd_disk(args: &[String]) -> Result<(), CliError> {
    let f = parse_flags(
        args,
        &[
            "--uki",
            "--boot-loader",
            "--template",
            "--out",
            "--esp-config",
            "--pcr-signature",
            "--esp-mib",
            "--template-mib",
            "--data-mib",
        ],
    )?;
    let seed = epoch()?;
    let uki_path = f.path("--uki")?;
    let loader_path = f.path("--boot-loader")?;
    let tmpl_path = f.path("--template")?;
    let out = f.path("--out")?;
    let esp_mib = f.mib("--esp-mib", 128)?;
    let data_mib = f.mib("--data-mib", 64)?;
    let uki = std::fs::read(&uki_path).map_err(io("reading", &uki_path))?;
    let loader = std::fs::read(&loader_path).map_err(io("reading", &loader_path))?;
    let tmpl = std::fs::read(&tmpl_path).map_err(io("reading", &tmpl_path))?;
    let tmpl_mib = f.mib("--template-mib", template_slot_mib(tmpl.len() as u64))?;
    if (tmpl.len() as u64) > tmpl_mib << 20 {
        return Err(CliError::Image(format!(
            "the template ({} bytes) does not fit a {tmpl_mib} MiB slot",
            tmpl.len()
        )));
    }
    // Slot A holds this image; slot B is empty until the first update.
    let mut files = vec![
        (esp::DEFAULT_LOADER.to_string(), loader),
        (
            slots::LOADER_CONF.to_string(),
            slots::LOADER_CONF_TEXT.as_bytes().to_vec(),
        ),
        (slots::Slot::A.uki_path(None), uki),
    ];
    if let Some(p) = f.get("--esp-config") {
        let bytes = std::fs::read(p).map_err(io("reading", Path::new(p)))?;
        files.push((esp::CONFIG_PATH.to_string(), bytes));
    }
    if let Some(p) = f.get("--pcr-signature") {
        let bytes = std::fs::read(p).map_err(io("reading", Path::new(p)))?;
        files.push((
            format!("{}/a.json", paddock_keys::signed::SIGNATURE_DIR),
            bytes,
        ));
    }
    let esp =
        esp::build(&files, esp_mib << 20, seed).map_err(|e| CliError::Image(e.to_string()))?;

    let mib_sectors = (1u64 << 20) / gpt::SECTOR;
    // 1 MiB before the first partition, alignment gaps and the backup table.
    let total = (1 + esp_mib + 1 + 2 * tmpl_mib + 1 + data_mib + 1) * mib_sectors + mib_sectors;
    let mut table = gpt::Gpt::new(total, stable_guid(seed, "disk"))
        .map_err(|e| CliError::Image(e.to_string()))?;
    let img_err = |e: gpt::GptError| CliError::Image(e.to_string());
    table
        .add(
            LABEL_ESP,
            gpt::TYPE_ESP,
            stable_guid(seed, "esp"),
            esp_mib * mib_sectors,
        )
        .map_err(img_err)?;
    for slot in [slots::Slot::A, slots::Slot::B] {
        table
            .add(
                slot.template_label(),
                gpt::TYPE_LINUX,
                stable_guid(seed, slot.template_label()),
                tmpl_mib * mib_sectors,
            )
            .map_err(img_err)?;
    }
    table
        .add(LABEL_DATA, gpt::TYPE_LINUX, stable_guid(seed, "data"), 0)
        .map_err(img_err)?;
    let mut disk = std::io::Cursor::new(vec![0u8; (total * gpt::SECTOR) as usize]);
    table.write(&mut disk).map_err(img_err)?;
    let mut disk = disk.into_inner();
    let mut put = |name: &str, bytes: &[u8]| -> Result<(), CliError> {
        let (_, p) = table
            .find(name)
            .ok_or_else(|| CliError::Image(format!("no {name}")))?;
        let at = (p.first_lba * gpt::SECTOR) as usize;
        disk[at..at + bytes.len()].copy_from_slice(bytes);
        Ok(())
    };
    put(LABEL_ESP, &esp)?;
    put(slots::Slot::A.template_label(), &tmpl)?;
    put(LABEL_DATA, DATA_BLANK_MARKER)?;
    std::fs::write(&out, disk).map_err(io("writing", &out))
}

fn cmd_list(args: &[String]) -> Result<(), CliError> {
    let f = parse_flags(args, &[])?;
    let [disk_path] = f.positional.as_slice() else {
        return Err(CliError::Usage("list takes one disk image".into()));
    };
    let disk = std::fs::read(disk_path).map_err(io("reading", Path::new(disk_path)))?;
    let (lines, entries) = inspect::list_disk(&disk).map_err(|e| CliError::Image(e.to_string()))?;
    for l in lines {
        println!("{l}");
    }
    if f.switches.iter().any(|s| s == "--check-no-shell") {
        let bad: Vec<String> = entries
            .iter()
            .filter_map(inspect::forbidden_reason)
            .collect();
        if entries.is_empty() {
            return Err(CliError::Image(
                "the UKI holds no initramfs to check".into(),
            ));
        }
        if !bad.is_empty() {
            return Err(CliError::Image(format!(
                "the image holds what it must not:\n  {}",
                bad.join("\n  ")
            )));
        }
        println!(
            "check: {} initramfs entries, no shell, no interpreter, no script",
            entries.len()
        );
    }
    Ok(())
}

mod pcr;
mod update;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("initramfs") => cmd_initramfs(&args[1..]),
        Some("disk") => cmd_disk(&args[1..]),
        Some("list") => cmd_list(&args[1..]),
        Some("pcr-key") => pcr::key(&args[1..]),
        Some("pcr-public") => pcr::public(&args[1..]),
        Some("pcr-sign") => pcr::sign(&args[1..]),
        Some("update-key") => update::key(&args[1..]),
        Some("update-public") => update::public(&args[1..]),
        Some("bundle") => update::bundle(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(CliError::Usage(format!("unknown command {other:?}"))),
        None => Err(CliError::Usage("no command given".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paddock-image: {e}");
            ExitCode::from(2)
        }
    }
}
