//! host-init at its descriptor limit (found by the appliance's proxy
//! fair-share check: one workspace's proxied connections ran PID 1 out of
//! descriptors): the API request whose socket cannot be received is lost,
//! the channel is not. A binary of its own, with this one test, because it
//! lowers the whole process's descriptor limit.

use paddock_init::api::channel::{ChannelError, Endpoint, Open};
use std::os::unix::net::UnixStream;

fn set_soft_limit(soft: libc::rlim_t) -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with pointers to a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let before = lim.rlim_cur;
        lim.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        before
    }
}

#[test]
fn a_receiver_out_of_descriptors_loses_one_message_not_the_channel() {
    let (a, b) = Endpoint::pair().expect("pair");
    let (x, _y) = UnixStream::pair().expect("pair");
    a.send(&Open, Some(&x)).expect("send");
    a.send(&Open, Some(&x)).expect("send");
    // Below every free slot: the kernel can install no descriptor it
    // receives (before the fix the channel read this as a bad message).
    let normal = set_soft_limit(0);
    let first = b.recv::<Open>();
    set_soft_limit(normal);
    assert!(
        matches!(first, Err(ChannelError::DescriptorLost)),
        "{:?}",
        first.map(|(_, fd)| fd.is_some())
    );
    let (Open, fd) = b.recv::<Open>().expect("the next message");
    assert!(fd.is_some(), "the next message brings its descriptor");
}
