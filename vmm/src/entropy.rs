//! Randomness straight from the kernel's `getrandom(2)`.
//!
//! The VMM is a static binary that runs in a jail without device files. The
//! `getrandom` crate looks the libc function up at run time, finds nothing in
//! a static executable and falls back to opening `/dev/urandom`, which the
//! jail does not have (and the seccomp filter would refuse). The system call
//! itself needs neither.

/// Fills `buf` with random bytes from the kernel's CSPRNG.
pub fn fill(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`,
        // which is valid, writable memory we exclusively borrow.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getrandom,
                rest.as_mut_ptr().cast::<libc::c_void>(),
                rest.len(),
                0,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_large_buffers_with_varied_bytes() {
        let mut a = vec![0u8; 1 << 20];
        let mut b = vec![0u8; 1 << 20];
        super::fill(&mut a).expect("getrandom");
        super::fill(&mut b).expect("getrandom");
        assert_ne!(a, b);
        // Every byte value shows up in a MiB of random data.
        let mut seen = [false; 256];
        a.iter().for_each(|&x| seen[usize::from(x)] = true);
        assert!(seen.iter().all(|&s| s));
    }
}
