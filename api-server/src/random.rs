//! What the API process makes that must not be guessed (session cookies,
//! CSRF tokens, the page's style nonce, envd watcher ids): from the
//! kernel's CSPRNG only. There is no fallback to /dev/urandom: the
//! process's seccomp filter lets it open no files, and a predictable
//! value is worse than a refusal.

/// Fills `buf` from getrandom(2), retrying a short or interrupted read.
pub fn fill(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most the given length into the
        // buffer's unfilled part, which lives for the call.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

/// 32 random bytes, base64url without padding (43 characters).
pub fn token() -> std::io::Result<String> {
    use base64::Engine as _;
    let mut buf = [0u8; 32];
    fill(&mut buf)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// `bytes` random bytes in hex.
pub fn hex(bytes: usize) -> std::io::Result<String> {
    let mut raw = vec![0u8; bytes];
    fill(&mut raw)?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_have_their_shape_and_differ() {
        let (a, b) = (
            super::token().expect("random"),
            super::token().expect("random"),
        );
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(super::hex(12).expect("random").len(), 24);
    }
}
