//! One upstream question at a time per name: when several workspaces (or
//! the proxy and a guest) ask for a name that is not cached, the first
//! asks and the others wait for its answer, instead of each sending its
//! own query upstream (a burst of cold lookups was one query per asker).
//!
//! Askers are tasks; one whose task is dropped mid-question (its
//! connection ended) hands the question to the next waiter rather than
//! leaving the others without an answer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

type Flight<T> = Arc<OnceCell<T>>;

pub struct Flights<T> {
    map: Mutex<Option<HashMap<String, Flight<T>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights::new()
    }
}

/// Takes a flight off the map once it has landed, or once nobody else
/// waits on it, whatever happens to the asker holding this.
struct Landing<'a, T> {
    flights: &'a Flights<T>,
    key: &'a str,
    flight: Option<Flight<T>>,
}

impl<T> Drop for Landing<'_, T> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock().unwrap_or_else(|p| p.into_inner());
        // Let go of this asker's reference under the lock, where every
        // other asker takes and lets go of its own: the count left is
        // then exact (two askers dropping at once each saw the other's
        // and both kept an entry nobody waited on).
        let Some(flight) = self.flight.take() else {
            return;
        };
        let answered = flight.initialized();
        drop(flight);
        let Some(map) = map.as_mut() else { return };
        let done = map
            .get(self.key)
            .is_some_and(|f| answered || Arc::strong_count(f) == 1);
        if done {
            map.remove(self.key);
        }
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
    /// answer, and asks itself if the asker before it went away. None: it
    /// waited that long.
    pub async fn run<F, Fut>(&self, key: &str, wait: Duration, ask: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let flight = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.get_or_insert_with(HashMap::new)
                .entry(key.to_string())
                .or_default()
                .clone()
        };
        // The landing holds this asker's only reference, so what it
        // counts when it lets go is exact.
        let landing = Landing {
            flights: self,
            key,
            flight: Some(flight),
        };
        let cell = landing.flight.as_deref()?;
        tokio::time::timeout(wait, cell.get_or_init(ask))
            .await
            .ok()
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn askers_at_once_share_one_question() {
        let flights: Flights<u32> = Flights::new();
        let asked = AtomicUsize::new(0);
        runtime().block_on(async {
            let askers = (0..8u32).map(|i| {
                let (flights, asked) = (&flights, &asked);
                async move {
                    flights
                        .run("pypi.org", Duration::from_secs(60), || async move {
                            asked.fetch_add(1, Ordering::SeqCst);
                            // Long enough for the other seven to join.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            7 + i
                        })
                        .await
                }
            });
            let answers = futures_join(askers.collect()).await;
            assert!(answers.iter().all(|a| *a == Some(7)), "{answers:?}");
        });
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "one question for eight askers"
        );
        // Landed: the next one asks anew.
        let again =
            runtime().block_on(flights.run("pypi.org", Duration::from_secs(1), || async { 9 }));
        assert_eq!(again, Some(9));
        assert!(flights
            .map
            .lock()
            .expect("map")
            .as_ref()
            .is_some_and(|m| m.is_empty()));
    }

    /// Drives every future on the current task to its end (together, so
    /// the first asks and the others join its question).
    async fn futures_join<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
        let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
        let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut all = true;
            for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
                if let Some(f) = slot {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => {
                            *result = Some(v);
                            *slot = None;
                        }
                        std::task::Poll::Pending => all = false,
                    }
                }
            }
            if all {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        results.into_iter().flatten().collect()
    }

    #[test]
    fn an_asker_that_goes_away_hands_the_question_to_a_waiter() {
        let flights: Flights<u32> = Flights::new();
        let answer = runtime().block_on(async {
            // Boxed, so that dropping it ends it.
            let mut first = Box::pin(flights.run("x.test", Duration::from_secs(60), || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                1
            }));
            // The first asker starts its question, then is dropped (its
            // connection ended) while the second waits.
            let second = flights.run("x.test", Duration::from_secs(60), || async { 2 });
            tokio::pin!(second);
            tokio::select! {
                biased;
                _ = &mut first => unreachable!("the first never answers"),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            tokio::select! {
                biased;
                _ = &mut first => unreachable!("the first never answers"),
                a = &mut second => panic!("answered while the first still asked: {a:?}"),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            drop(first);
            second.await
        });
        assert_eq!(answer, Some(2), "the waiter asked in the first's place");
        assert!(flights
            .map
            .lock()
            .expect("map")
            .as_ref()
            .is_some_and(|m| m.is_empty()));
    }

    #[test]
    fn a_waiter_gives_up_after_its_wait() {
        let flights: Flights<u32> = Flights::new();
        let got = runtime().block_on(async {
            let first = flights.run("slow.test", Duration::from_secs(60), || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                1
            });
            let second = flights.run("slow.test", Duration::from_millis(100), || async { 2 });
            tokio::pin!(first);
            tokio::select! {
                biased;
                _ = &mut first => None,
                got = second => Some(got),
            }
        });
        assert_eq!(got, Some(None));
    }
}
