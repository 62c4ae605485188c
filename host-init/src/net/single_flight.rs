//! One upstream question at a time per name: when several workspaces (or
//! the proxy and a guest) ask for a name that is not cached, the first
//! asks and the others wait for its answer, instead of each sending its
//! own query upstream (a burst of cold lookups was one query per asker).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

struct Flight<T> {
    /// None until the first asker is done; Some(None) if it gave no answer
    /// (it panicked).
    result: Mutex<Option<Option<T>>>,
    done: Condvar,
}

pub struct Flights<T> {
    map: Mutex<Option<HashMap<String, Arc<Flight<T>>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights::new()
    }
}

/// Ends a flight whatever happens to its asker: waiters are always woken.
struct Landing<'a, T> {
    flights: &'a Flights<T>,
    key: &'a str,
    flight: Arc<Flight<T>>,
    result: Option<T>,
}

impl<T> Drop for Landing<'_, T> {
    fn drop(&mut self) {
        if let Some(map) = self
            .flights
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            map.remove(self.key);
        }
        *self.flight.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.result.take());
        self.flight.done.notify_all();
    }
}

impl<T> Flights<T> {
    pub const fn new() -> Flights<T> {
        Flights {
            map: Mutex::new(None),
        }
    }
}

impl<T: Clone> Flights<T> {
    /// `ask()`'s answer for `key`, asked once however many call at once:
    /// a caller that finds `key` in flight waits (up to `wait`) for that
    /// answer. None: it waited that long, or the first asker failed
    /// without one.
    pub fn run(&self, key: &str, wait: Duration, ask: impl FnOnce() -> T) -> Option<T> {
        let (flight, first) = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            let map = map.get_or_insert_with(HashMap::new);
            match map.get(key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight {
                        result: Mutex::new(None),
                        done: Condvar::new(),
                    });
                    map.insert(key.to_string(), f.clone());
                    (f, true)
                }
            }
        };
        if first {
            let mut landing = Landing {
                flights: self,
                key,
                flight,
                result: None,
            };
            let answer = ask();
            landing.result = Some(answer.clone());
            return Some(answer);
        }
        let until = Instant::now() + wait;
        let mut got = flight.result.lock().unwrap_or_else(|p| p.into_inner());
        while got.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            got = flight
                .done
                .wait_timeout(got, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        got.clone().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn askers_at_once_share_one_question() {
        let flights: Flights<u32> = Flights::new();
        let asked = AtomicUsize::new(0);
        let arrived = AtomicUsize::new(0);
        let started = std::sync::Barrier::new(2);
        let answers: Vec<Option<u32>> = std::thread::scope(|s| {
            let first = s.spawn(|| {
                flights.run("pypi.org", Duration::from_secs(60), || {
                    asked.fetch_add(1, Ordering::SeqCst);
                    started.wait();
                    // Until the 7 others are on their way in, and then a
                    // moment for them to join this question.
                    while arrived.load(Ordering::SeqCst) < 7 {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    7
                })
            });
            started.wait();
            let others: Vec<_> = (0..7)
                .map(|_| {
                    s.spawn(|| {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        flights.run("pypi.org", Duration::from_secs(60), || {
                            asked.fetch_add(1, Ordering::SeqCst);
                            8
                        })
                    })
                })
                .collect();
            std::iter::once(first)
                .chain(others)
                .map(|t| t.join().expect("asker"))
                .collect()
        });
        assert!(answers.iter().all(|a| *a == Some(7)), "{answers:?}");
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "one question for eight askers"
        );
        // Landed: the next one asks anew.
        assert_eq!(
            flights.run("pypi.org", Duration::from_secs(1), || 9),
            Some(9)
        );
    }

    #[test]
    fn an_asker_that_panics_does_not_leave_the_others_waiting() {
        let flights: Flights<u32> = Flights::new();
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                flights.run("x.test", Duration::from_secs(60), || -> u32 {
                    std::thread::sleep(Duration::from_millis(200));
                    panic!("the asker fails");
                })
            });
            std::thread::sleep(Duration::from_millis(50));
            let second = flights.run("x.test", Duration::from_secs(60), || 1);
            assert_eq!(second, None, "woken without an answer");
            assert!(first.join().is_err());
        });
        assert_eq!(flights.run("x.test", Duration::from_secs(1), || 2), Some(2));
    }
}
