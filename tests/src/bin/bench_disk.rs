//! Encrypted workspace disks against unencrypted ones, in one appliance
//! run: sequential and random I/O inside a workspace (O_DIRECT on a file
//! of its ext4 disk, the host's page cache dropped before each phase), and
//! create and delete latency with the key work in it (delete rotates the
//! key store's epoch in the TPM). The unencrypted
//! peer is a test image's `test_unencrypted_disk` workspace: the same VMM
//! and guest, the disk file handed to the VMM without dm-crypt. Prints a
//! table; records nothing.

use paddock_tests::appliance::Appliance;
use paddock_tests::bench::{self, json, median};
use std::time::{Duration, Instant};

/// Runs in the guest as root, one phase per exec (the host drops its page
/// cache between them, so reads reach dm-crypt): 64 MiB written in 1 MiB
/// blocks and 1000 random 4 KiB writes; 1000 random 4 KiB reads; the 64 MiB
/// read back in 1 MiB blocks. All O_DIRECT (no guest cache).
const IO_SCRIPT: &str = r#"
import os, mmap, time, random, json, sys
path, size, bs, n = '/srv/bench.dat', 64 << 20, 1 << 20, 1000
big = mmap.mmap(-1, bs); big.write(os.urandom(bs))
small = mmap.mmap(-1, 4096)
blocks = size // 4096
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
r = {}
if sys.argv[1] == 'write':
    t = time.monotonic()
    for i in range(size // bs): os.pwritev(fd, [big], i * bs)
    os.fsync(fd); r['seq_write'] = size / (time.monotonic() - t) / 2**20
    t = time.monotonic()
    for _ in range(n): os.pwritev(fd, [small], random.randrange(blocks) * 4096)
    os.fsync(fd); r['rand_write'] = n / (time.monotonic() - t)
elif sys.argv[1] == 'randread':
    t = time.monotonic()
    for _ in range(n): os.preadv(fd, [small], random.randrange(blocks) * 4096)
    r['rand_read'] = n / (time.monotonic() - t)
else:
    t = time.monotonic()
    for i in range(size // bs): os.preadv(fd, [big], i * bs)
    r['seq_read'] = size / (time.monotonic() - t) / 2**20
print(json.dumps(r))
"#;

const METRICS: [(&str, &str); 6] = [
    ("create", "create (s)"),
    ("delete", "delete (s)"),
    ("seq_write", "sequential write (MiB/s)"),
    ("seq_read", "sequential read (MiB/s)"),
    ("rand_read", "random 4 KiB read (IOPS)"),
    ("rand_write", "random 4 KiB write (IOPS)"),
];

fn main() -> std::process::ExitCode {
    bench::exit("bench-disk", run())
}

/// One workspace's round: create, the I/O script, delete.
fn round(app: &Appliance, token: &str, encrypted: bool) -> Result<Vec<(String, f64)>, String> {
    let spec = format!(
        r#"{{"ttl_s": 1800, "memory_mib": 256, "disk_mib": 512, "test_unencrypted_disk": {}}}"#,
        !encrypted
    );
    let call =
        |m: &str, p: &str, b: Option<&[u8]>| app.api(m, p, token, b).map_err(|e| e.to_string());
    let t = Instant::now();
    let (code, body) = call("POST", "/v1/workspaces", Some(spec.as_bytes()))?;
    let create = t.elapsed().as_secs_f64();
    if code != 201 {
        return Err(format!("create: {code} {}", String::from_utf8_lossy(&body)));
    }
    let ws = json(&body)?;
    let id = ws["id"].as_str().unwrap_or_default().to_string();
    if ws["disk_encrypted"] != encrypted {
        return Err(format!("asked encrypted={encrypted}, got {ws}"));
    }
    let mut io = serde_json::Map::new();
    for phase in ["write", "randread", "seqread"] {
        let (code, body) = call("POST", "/v1/debug/drop-caches", None)?;
        if code != 200 {
            return Err(format!(
                "drop-caches: {code} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let exec = serde_json::json!({"argv": ["python3", "-c", IO_SCRIPT, phase], "user": "root"});
        let (code, stream) = call(
            "POST",
            &format!("/v1/workspaces/{id}/exec"),
            Some(exec.to_string().as_bytes()),
        )?;
        if code != 200 {
            return Err(format!("exec: {code}"));
        }
        let out = bench::exec_stdout(&stream)?;
        match json(&out)? {
            serde_json::Value::Object(m) => io.extend(m),
            other => return Err(format!("{phase}: {other}")),
        }
    }
    let t = Instant::now();
    let (code, _) = call("DELETE", &format!("/v1/workspaces/{id}"), None)?;
    let delete = t.elapsed().as_secs_f64();
    if code != 200 {
        return Err(format!("delete: {code}"));
    }
    let mut r = vec![
        ("create".to_string(), create),
        ("delete".to_string(), delete),
    ];
    for (k, _) in &METRICS[2..] {
        let v = io.get(*k).and_then(|v| v.as_f64());
        r.push((k.to_string(), v.ok_or(format!("{k} missing: {io:?}"))?));
    }
    Ok(r)
}

fn run() -> Result<(), String> {
    let runs = bench::runs();
    let work = std::env::temp_dir().join(format!("paddock-bench-disk-{}", std::process::id()));
    let (mut app, token) = Appliance::boot_fresh(&work, 8 << 30).map_err(|e| e.to_string())?;
    let mut results: [Vec<Vec<(String, f64)>>; 2] = [Vec::new(), Vec::new()];
    // Interleaved, so drift in the emulated machine hits both alike.
    for i in 0..runs {
        for (slot, encrypted) in [(0, true), (1, false)] {
            let r = round(&app, &token, encrypted)?;
            eprintln!("run {i} encrypted={encrypted}: {r:?}");
            results[slot].push(r);
        }
    }
    let _ = app.power_button(Duration::from_secs(120));
    drop(app);
    let _ = std::fs::remove_dir_all(&work);

    println!("\nWorkspace disk, median of {runs} (1 vCPU, 256 MiB, 512 MiB disk)\n");
    println!("| | dm-crypt (AES-256-XTS) | unencrypted | ratio |");
    println!("| --- | --- | --- | --- |");
    for (key, label) in METRICS {
        let m = |slot: usize| {
            median(
                &results[slot]
                    .iter()
                    .filter_map(|r| r.iter().find(|(k, _)| k == key).map(|(_, v)| *v))
                    .collect::<Vec<_>>(),
            )
        };
        let (e, p) = (m(0), m(1));
        println!("| {label} | {e:.2} | {p:.2} | {:.2} |", e / p);
    }
    Ok(())
}
