use super::*;
use nix::sys::wait::{waitpid, WaitStatus};

/// Runs `probe` in a forked child that has installed the filters of
/// `kinds`, in order (as a thread inherits its creator's); returns how
/// the child ended.
fn under(kinds: &[ThreadKind], probe: fn() -> i32) -> WaitStatus {
    let filters = Filters::compile().expect("filters compile");
    // SAFETY: the child only installs prebuilt filters, makes raw system
    // calls and leaves with _exit; it allocates nothing.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            for k in kinds {
                if filters.apply(*k).is_err() {
                    // SAFETY: leaving the forked child at once.
                    unsafe { libc::_exit(90) };
                }
            }
            let code = probe();
            // SAFETY: as above.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => waitpid(child, None).expect("wait"),
    }
}

/// Without the report handler (these children have none), a forbidden
/// call ends the process by SIGSYS.
fn killed(s: &WaitStatus) -> bool {
    matches!(
        s,
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)
    )
}

#[test]
fn with_the_handler_a_forbidden_call_is_reported_and_ends_the_process() {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let filters = Filters::compile().expect("filters compile");
    // SAFETY: the child installs a handler and prebuilt filters, moves
    // its stderr onto the pipe and makes raw system calls.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: dup2 onto stderr in the forked child.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&w), 2) };
            if install_report_handler().is_err() || filters.apply(ThreadKind::Block).is_err() {
                // SAFETY: leaving the forked child at once.
                unsafe { libc::_exit(90) };
            }
            // SAFETY: a plain socket() call, forbidden to block workers.
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let status = waitpid(child, None).expect("wait");
            assert_eq!(status, WaitStatus::Exited(child, FORBIDDEN_EXIT));
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut text).expect("read");
            assert_eq!(
                text,
                format!(
                    "paddock-vmm: seccomp: forbidden system call {} (arguments 0x{:x}, 0x{:x}) in a virtio-blk thread; stopping the VM\n",
                    libc::SYS_socket,
                    libc::AF_UNIX,
                    libc::SOCK_STREAM
                )
            );
        }
    }
}

fn exited_zero(s: &WaitStatus) -> bool {
    matches!(s, WaitStatus::Exited(_, 0))
}

#[test]
fn a_forbidden_call_kills_every_kind_of_thread() {
    for kind in ThreadKind::ALL {
        // No VMM thread has any business making a network socket.
        let s = under(&[kind], || {
            // SAFETY: a plain socket() call; its result is not used.
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            0
        });
        assert!(killed(&s), "{kind:?}: {s:?}");
        // Nor in starting programs.
        let s = under(&[kind], || {
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: execve with NUL-terminated arrays of C strings.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            0
        });
        assert!(killed(&s), "{kind:?}: {s:?}");
    }
}

#[test]
fn no_thread_may_rename_mappings_or_move_memory_to_a_fixed_address() {
    for kind in ThreadKind::ALL {
        let s = under(&[kind], || {
            // PR_SET_VMA (0x53564d41) with PR_SET_VMA_ANON_NAME (0).
            // SAFETY: prctl with constant arguments; it only names memory.
            unsafe { libc::prctl(0x5356_4d41, 0, 0, 0, 0) };
            0
        });
        assert!(killed(&s), "{kind:?} renamed a mapping: {s:?}");
        let s = under(&[kind], || {
            // SAFETY: mremap of an unmapped address fails; only the
            // filter's answer to MREMAP_FIXED is under test.
            unsafe {
                libc::mremap(
                    0x1000 as *mut libc::c_void,
                    4096,
                    4096,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    0x2000 as *mut libc::c_void,
                )
            };
            0
        });
        assert!(
            killed(&s),
            "{kind:?} moved memory to a fixed address: {s:?}"
        );
    }
}

#[test]
fn no_thread_may_duplicate_a_shared_mapping() {
    for kind in ThreadKind::ALL {
        // mremap with an old size of 0 gives a second mapping of a
        // shared region's pages (what guest RAM is).
        let s = under(&[kind], || {
            // SAFETY: mremap of an unmapped address fails; only the
            // filter's answer to an old size of 0 is under test.
            unsafe { libc::mremap(0x1000 as *mut libc::c_void, 0, 4096, libc::MREMAP_MAYMOVE) };
            0
        });
        assert!(killed(&s), "{kind:?} duplicated a mapping: {s:?}");
        // Growing a block (realloc's use) stays allowed: it fails
        // here (nothing is mapped there) but is not killed.
        let s = under(&[kind], || {
            // SAFETY: as above; the address is unmapped, so it fails.
            let r = unsafe {
                libc::mremap(
                    0x1000 as *mut libc::c_void,
                    4096,
                    8192,
                    libc::MREMAP_MAYMOVE,
                )
            };
            i32::from(r != libc::MAP_FAILED)
        });
        assert!(exited_zero(&s), "{kind:?} could not grow a block: {s:?}");
    }
}

#[test]
fn a_vcpu_may_run_kvm_but_no_other_ioctl() {
    // KVM_RUN on a descriptor that is not a vCPU fails, but is allowed.
    let s = under(&[ThreadKind::Vcpu], || {
        // SAFETY: an ioctl on an invalid descriptor; it fails with EBADF.
        unsafe { libc::ioctl(-1, KVM_RUN as _, 0) };
        0
    });
    assert!(exited_zero(&s), "{s:?}");
    let s = under(&[ThreadKind::Vcpu], || {
        // KVM_CREATE_VCPU would let a subverted vCPU thread grow the VM.
        // SAFETY: as above.
        unsafe { libc::ioctl(-1, 0xae41 as _, 0) };
        0
    });
    assert!(killed(&s), "{s:?}");
}

#[test]
fn opening_files_is_refused_not_fatal() {
    for kind in ThreadKind::ALL {
        let s = under(&[kind], || {
            let path = c"/proc/sys/vm/overcommit_memory";
            // SAFETY: a plain open of a NUL-terminated path.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
            // SAFETY: reading errno right after the call.
            let errno = unsafe { *libc::__errno_location() };
            i32::from(!(fd < 0 && errno == libc::EACCES))
        });
        assert!(exited_zero(&s), "{kind:?}: {s:?}");
    }
}

static CONTROL_LISTENER: std::sync::OnceLock<std::os::unix::net::UnixListener> =
    std::sync::OnceLock::new();

#[test]
fn the_control_thread_answers_a_request_under_its_filter() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("paddock-seccomp-ctl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("control.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    assert!(CONTROL_LISTENER.set(listener).is_ok());
    // Connected and written before the child starts: it finds the
    // request waiting in the backlog.
    let mut client = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    client.write_all(b"request\n").expect("write");
    // The same std calls control::serve makes; nothing that allocates.
    let s = under(&[ThreadKind::Control], || {
        let Some(l) = CONTROL_LISTENER.get() else {
            return 2;
        };
        let Ok((mut conn, _)) = l.accept() else {
            return 3;
        };
        let mut buf = [0u8; 64];
        if conn.read(&mut buf).is_err() || conn.write_all(b"ok\n").is_err() {
            return 4;
        }
        0
    });
    assert!(exited_zero(&s), "{s:?}");
    let mut reply = String::new();
    client.read_to_string(&mut reply).expect("read");
    assert_eq!(reply, "ok\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn only_unix_sockets_for_vsock_and_workers_narrow_the_spawner() {
    let unix_socket = || {
        // SAFETY: socket() with constant arguments; the fd is left open
        // until _exit.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
        i32::from(fd < 0)
    };
    let s = under(&[ThreadKind::Spawner, ThreadKind::Vsock], unix_socket);
    assert!(exited_zero(&s), "{s:?}");
    // The block worker started by the spawner cannot make sockets.
    let s = under(&[ThreadKind::Spawner, ThreadKind::Block], unix_socket);
    assert!(killed(&s), "{s:?}");
    let s = under(&[ThreadKind::Spawner, ThreadKind::Vsock], || {
        // SAFETY: as above, with a family the VMM never uses.
        unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) };
        0
    });
    assert!(killed(&s), "{s:?}");
}

/// The snapshot ioctls are computed from structure sizes: check them
/// against the numbers the kernel headers give.
#[test]
fn snapshot_ioctl_numbers_match_the_kernel() {
    use super::kvm_state_ioctls::{VCPU, VM};
    assert_eq!(VCPU[0], 0x8090_ae81, "KVM_GET_REGS");
    assert_eq!(VCPU[1], 0x8138_ae83, "KVM_GET_SREGS");
    assert_eq!(VCPU[3], 0x8400_ae8e, "KVM_GET_LAPIC");
    assert_eq!(VCPU[7], 0x9000_aea4, "KVM_GET_XSAVE");
    assert_eq!(VM[0], 0xc208_ae62, "KVM_GET_IRQCHIP");
    assert_eq!(VM[2], 0x8030_ae7c, "KVM_GET_CLOCK");
}
