//! The one locking rule the VMM's threads share.

use std::sync::{Mutex, MutexGuard};

/// Locks, recovering from a poisoned lock: with panic=abort a panicking
/// holder never returns, so poisoning can only come from tests.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
