//! The whole egress path of a workspace's plain-HTTP connection through
//! the real, confined network services process (tests/src/proxybed.rs):
//! redirected by nf_tables, the name checked, resolved by the resolver,
//! relayed; every request on a keep-alive connection checked; and the
//! same after the process is killed and PID 1's supervisor restarts it.
//! Loopback in a network namespace of its own; needs root.

use paddock_init::net_services::supervisor;
use paddock_tests::proxybed::{request, ProxyBed, ALLOWED, BODY};

fn allowed_works(bed: &ProxyBed) {
    let mut c = ProxyBed::connect_from(bed.guests[0]).expect("connect");
    let (status, body) = request(&mut c, ALLOWED).expect("answer");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, BODY);
}

#[test]
fn plain_http_egress_through_the_confined_proxy() {
    // The paddock-init the image is built from (the Justfile sets it).
    let exe = std::env::var_os("PADDOCK_STATIC_BIN")
        .map(|d| std::path::PathBuf::from(d).join("paddock-init"))
        .expect("PADDOCK_STATIC_BIN: the directory of the static paddock-init (just test sets it)");
    let bed = ProxyBed::start(&exe, 2).expect("the bench (root, ip(8))");
    allowed_works(&bed);

    // Another name on the same address: refused by the proxy, which says why.
    let mut c = ProxyBed::connect_from(bed.guests[1]).expect("connect");
    let (status, body) = request(&mut c, "other.test").expect("answer");
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    assert!(
        String::from_utf8_lossy(&body).contains("not on this workspace's allowlist"),
        "{body:?}"
    );

    // A second request on an allowed keep-alive connection is checked too.
    let mut c = ProxyBed::connect_from(bed.guests[0]).expect("connect");
    let (status, _) = request(&mut c, ALLOWED).expect("first answer");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (status, _) = request(&mut c, "other.test").expect("second answer");
    assert!(
        status.starts_with("HTTP/1.1 403"),
        "the second request: {status}"
    );

    // Killed, it comes back with the policy: the same request works.
    let killed = supervisor::kill_running().expect("a running process");
    let back = ProxyBed::restarted_after(killed);
    assert!(
        back,
        "no new network services process after {killed} was killed"
    );
    allowed_works(&bed);
    assert_eq!(supervisor::restarts(), 1);
}
