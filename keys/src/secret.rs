//! Fixed-size secret bytes that are wiped when dropped and never printed.

pub struct Secret<const N: usize>([u8; N]);

impl<const N: usize> Secret<N> {
    pub fn zero() -> Self {
        Secret([0; N])
    }
    pub fn random() -> Result<Self, ring::error::Unspecified> {
        use ring::rand::SecureRandom;
        let mut s = Secret::zero();
        ring::rand::SystemRandom::new().fill(&mut s.0)?;
        Ok(s)
    }
    pub fn bytes(&self) -> &[u8; N] {
        &self.0
    }
    pub fn bytes_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }
}

impl<const N: usize> From<[u8; N]> for Secret<N> {
    fn from(b: [u8; N]) -> Self {
        Secret(b)
    }
}

impl<const N: usize> Clone for Secret<N> {
    fn clone(&self) -> Self {
        Secret(self.0)
    }
}

impl<const N: usize> Drop for Secret<N> {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: a valid, aligned pointer to a byte we own; volatile so
            // the wipe is not optimised away as a dead store.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl<const N: usize> std::fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret<{N}>(…)")
    }
}
