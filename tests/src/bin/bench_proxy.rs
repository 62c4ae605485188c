//! The egress proxy's own costs, measured on the real network services
//! process (confined as on the appliance) in a network namespace, side by
//! side with the same client talking to the same upstream directly:
//! new connections per second (one request each) one at a time and 8 at
//! once, requests per second on one keep-alive connection (each checked
//! by the proxy), and the process's memory per idle proxied connection.
//! Loopback only; no VM, so these are the proxy's figures, not a guest's
//! (bench-net has those). Prints a table. Needs root.

use paddock_tests::proxybed::{request, services_rss_kib, ProxyBed, ALLOWED, BODY};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

/// One new connection and one request on it; its time.
fn one(connect: &dyn Fn() -> Result<TcpStream, String>) -> Result<Duration, String> {
    let t = Instant::now();
    let mut c = connect()?;
    let (status, body) = request(&mut c, ALLOWED).map_err(|e| e.to_string())?;
    if !status.contains(" 200 ") || body != BODY {
        return Err(format!("answered {status:?} {body:?}"));
    }
    Ok(t.elapsed())
}

/// The `pct`-th percentile of `v` (not empty).
fn percentile(v: &mut [Duration], pct: usize) -> Duration {
    v.sort();
    v[(v.len() * pct / 100).min(v.len() - 1)]
}

/// `n` connections one after another: (per second, p50, p99).
fn sequential(
    n: usize,
    connect: &dyn Fn() -> Result<TcpStream, String>,
) -> Result<(f64, Duration, Duration), String> {
    let start = Instant::now();
    let mut times = (0..n)
        .map(|_| one(connect))
        .collect::<Result<Vec<_>, _>>()?;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    Ok((rate, percentile(&mut times, 50), percentile(&mut times, 99)))
}

/// `threads` × `each` connections at once: per second.
fn concurrent(
    threads: usize,
    each: usize,
    guests: &[Ipv4Addr],
    direct: bool,
) -> Result<f64, String> {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let guest = guests[i % guests.len()];
            std::thread::spawn(move || -> Result<(), String> {
                let connect = move || {
                    if direct {
                        ProxyBed::connect_direct()
                    } else {
                        ProxyBed::connect_from(guest)
                    }
                    .map_err(|e| e.to_string())
                };
                for _ in 0..each {
                    one(&connect)?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| "a client thread panicked".to_string())??;
    }
    Ok((threads * each) as f64 / start.elapsed().as_secs_f64())
}

/// `n` requests on one keep-alive connection: per second.
fn keep_alive(n: usize, mut c: TcpStream) -> Result<f64, String> {
    let start = Instant::now();
    for _ in 0..n {
        let (status, _) = request(&mut c, ALLOWED).map_err(|e| e.to_string())?;
        if !status.contains(" 200 ") {
            return Err(format!("answered {status:?}"));
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn run() -> Result<(), String> {
    let exe = std::env::var_os("PADDOCK_INIT_BIN")
        .ok_or("PADDOCK_INIT_BIN: the paddock-init binary to run as the network services")?;
    let n: usize = std::env::var("PADDOCK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let bed = ProxyBed::start(std::path::Path::new(&exe), 4).map_err(|e| e.to_string())?;
    let guest = bed.guests[0];
    let via_proxy = move || ProxyBed::connect_from(guest).map_err(|e| e.to_string());
    let direct = || ProxyBed::connect_direct().map_err(|e| e.to_string());
    // Warm both paths (the resolver's first answer, thread stacks).
    sequential(20, &via_proxy)?;
    sequential(20, &direct)?;

    let (p_rate, p_50, p_99) = sequential(n, &via_proxy)?;
    let (d_rate, d_50, d_99) = sequential(n, &direct)?;
    let p_conc = concurrent(8, n / 8, &bed.guests, false)?;
    let d_conc = concurrent(8, n / 8, &bed.guests, true)?;
    let p_keep = keep_alive(n, ProxyBed::connect_from(guest).map_err(|e| e.to_string())?)?;
    let d_keep = keep_alive(n, ProxyBed::connect_direct().map_err(|e| e.to_string())?)?;

    // Idle connections: each asked once and left open, 200 per guest
    // (a workspace may hold 256).
    std::thread::sleep(Duration::from_secs(1));
    let before = services_rss_kib().ok_or("no RSS of the network services process")?;
    let mut held = Vec::new();
    for g in &bed.guests {
        for _ in 0..200 {
            let mut c = ProxyBed::connect_from(*g).map_err(|e| e.to_string())?;
            request(&mut c, ALLOWED).map_err(|e| e.to_string())?;
            held.push(c);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = services_rss_kib().ok_or("no RSS of the network services process")?;
    let per_conn = (after.saturating_sub(before)) as f64 / held.len() as f64;
    drop(held);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("egress proxy (paddock-init net-services, confined), {n} connections per figure, loopback in a network namespace");
    println!("| | through the proxy | direct (peer) |");
    println!("| --- | --- | --- |");
    println!("| new connections/s, one at a time | {p_rate:.0} | {d_rate:.0} |");
    println!(
        "| connect + request, median ms | {:.2} | {:.2} |",
        ms(p_50),
        ms(d_50)
    );
    println!(
        "| connect + request, p99 ms | {:.2} | {:.2} |",
        ms(p_99),
        ms(d_99)
    );
    println!("| new connections/s, 8 at once | {p_conc:.0} | {d_conc:.0} |");
    println!("| requests/s on one keep-alive connection | {p_keep:.0} | {d_keep:.0} |");
    println!(
        "memory: {} idle proxied connections took the process from {before} KiB to {after} KiB resident: {per_conn:.1} KiB each",
        4 * 200
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paddock-bench-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
