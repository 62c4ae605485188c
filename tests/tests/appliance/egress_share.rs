//! The egress proxy's connections are shared fairly (issue 14, item 7):
//! a workspace that holds every proxied connection it may (keep-alive
//! connections to an allowed name, left open) gets no more past its
//! share, and another workspace still connects meanwhile.

use std::time::Duration;

/// A command in a workspace: (its output, its exit code).
pub type Shell<'a> = dyn Fn(&str, &str) -> (String, i64) + Sync + 'a;

/// What one workspace may hold at once (host-init's net::proxy POOL).
const PER_WORKSPACE: usize = 256;
const TRIES: usize = PER_WORKSPACE + 44;

pub fn a_greedy_workspace_leaves_the_proxy_to_the_others(sh: &Shell, greedy: &str, other: &str) {
    // Each connection asks once and is kept open; one the proxy refused is
    // closed before any answer. The marker file says it is holding them.
    let flood = format!(
        "python3 -c '
import socket, time
held, refused = [], 0
for i in range({TRIES}):
    try:
        s = socket.create_connection((\"allowed.test\", 80), timeout=30)
        s.sendall(b\"GET /keepalive HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n\")
        if s.recv(4096).startswith(b\"HTTP/1.1 200\"):
            held.append(s)
        else:
            refused += 1
            s.close()
    except OSError:
        refused += 1
print(\"held\", len(held), \"refused\", refused, flush=True)
open(\"/tmp/holding\", \"w\").close()
time.sleep(30)
'"
    );
    let (flooded, other_got) = std::thread::scope(|scope| {
        let flooder = scope.spawn(|| sh(greedy, &flood));
        let mut holding = false;
        for _ in 0..60 {
            if sh(greedy, "test -e /tmp/holding").1 == 0 {
                holding = true;
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        let other_got = sh(other, "curl -s --max-time 15 http://allowed.test/").0;
        let flooded = flooder.join().expect("the flooding exec");
        assert!(
            holding,
            "the greedy workspace never held its connections: {flooded:?}"
        );
        (flooded, other_got)
    });
    let (out, code) = flooded;
    assert_eq!(code, 0, "{out}");
    let count = |word: &str| -> usize {
        out.split_whitespace()
            .skip_while(|w| *w != word)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {word} count in {out:?}"))
    };
    let (held, refused) = (count("held"), count("refused"));
    assert!(
        held <= PER_WORKSPACE && refused >= TRIES - PER_WORKSPACE,
        "one workspace held more than its share: {out}"
    );
    assert!(held >= PER_WORKSPACE / 2, "positive control: {out}");
    assert!(
        other_got.starts_with("server=allowed.test"),
        "another workspace could not connect while one held its share: {other_got:?}"
    );
}

/// How long one workspace opens connections as fast as it may.
const FULL_RATE_FOR_S: u64 = 300;
/// How often the other workspace checks its own egress meanwhile.
const PROBE_EVERY: Duration = Duration::from_secs(10);
/// After the network services are killed, how long their restart may take
/// before the other workspace's egress must work again.
const RESTART_GRACE: Duration = Duration::from_secs(20);

/// Issue 15's load: one workspace opens connections (each a DNS lookup, a
/// proxied connection and a request) as fast as it may for five minutes,
/// while another's egress keeps working throughout; halfway, the resolver
/// and proxy are killed (`kill`) and must come back by themselves with
/// every policy. `long` runs a command with a limit of `FULL_RATE_FOR_S`
/// and some.
pub fn a_workspace_at_full_rate_leaves_egress_to_the_others(
    sh: &Shell,
    long: &Shell,
    greedy: &str,
    other: &str,
    kill: &(dyn Fn() + Sync),
) {
    let flood = format!(
        "python3 -c '
import socket, time
t0 = time.time(); ok = failed = 0
while time.time() - t0 < {FULL_RATE_FOR_S}:
    try:
        s = socket.create_connection((\"allowed.test\", 80), timeout=10)
        s.sendall(b\"GET / HTTP/1.1\\r\\nHost: allowed.test\\r\\nConnection: close\\r\\n\\r\\n\")
        if s.recv(4096).startswith(b\"HTTP/1.1 200\"):
            ok += 1
        else:
            failed += 1
        s.close()
    except OSError:
        failed += 1
print(\"ok\", ok, \"failed\", failed, \"seconds\", int(time.time() - t0), flush=True)
'"
    );
    let started = std::time::Instant::now();
    let (flooded, probes, killed_at) = std::thread::scope(|scope| {
        let flooder = scope.spawn(|| long(greedy, &flood));
        let mut probes = Vec::new();
        let mut killed_at = None;
        while !flooder.is_finished() {
            std::thread::sleep(PROBE_EVERY);
            if killed_at.is_none() && started.elapsed().as_secs() >= FULL_RATE_FOR_S / 2 {
                kill();
                killed_at = Some(started.elapsed());
                continue;
            }
            let got = sh(other, "curl -s --max-time 15 http://allowed.test/").0;
            probes.push((started.elapsed(), got));
        }
        (
            flooder.join().expect("the flooding exec"),
            probes,
            killed_at,
        )
    });
    let (out, code) = flooded;
    assert_eq!(code, 0, "{out}");
    let count = |word: &str| -> u64 {
        out.split_whitespace()
            .skip_while(|w| *w != word)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {word} count in {out:?}"))
    };
    let (ok, failed, seconds) = (count("ok"), count("failed"), count("seconds"));
    println!(
        "full-rate egress: {ok} connections answered, {failed} failed in {seconds} s \
         ({:.1}/s); the other workspace's {} probes meanwhile",
        ok as f64 / seconds.max(1) as f64,
        probes.len()
    );
    assert!(ok >= seconds, "positive control: the flood ran: {out}");
    let killed_at = killed_at.expect("the network services were killed mid-test");
    let expected = "server=allowed.test";
    for (at, got) in &probes {
        let restarting = *at > killed_at && *at < killed_at + RESTART_GRACE;
        assert!(
            restarting || got.starts_with(expected),
            "the other workspace's egress failed {at:?} into the flood \
             (services killed at {killed_at:?}): {got:?}"
        );
    }
    let after = probes
        .iter()
        .filter(|(at, _)| *at >= killed_at + RESTART_GRACE)
        .count();
    assert!(after >= 3, "too few probes after the restart: {probes:?}");
}
