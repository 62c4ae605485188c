//! What the appliance benchmarks share: how many runs, the median, an
//! exec's output, and a main that reports an error and fails.

/// Runs asked for in PADDOCK_BENCH_RUNS (the Justfile's `runs`), else 3.
pub fn runs() -> usize {
    std::env::var("PADDOCK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn json(b: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(b).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(b)))
}

/// The stdout an exec's NDJSON stream carried (its `stdout` events, base64).
pub fn exec_stdout(stream: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for line in stream.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Some(d) = json(line)?.get("stdout").and_then(|d| d.as_str()) {
            out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(d)
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(out)
}

/// A benchmark's exit: its error on stderr, named, and a failure status.
pub fn exit(name: &str, result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
