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
