//! Keyed steps in flight: while one thread runs a filesystem step, another that reaches a step
//! with the same cache key waits for it, then takes its result from the cache instead of
//! running it again.
//!
//! The platforms of a multi-platform build run at the same time, and a stage that does not
//! depend on the target platform (one on `$BUILDPLATFORM` that reads no `TARGET*` ARG) has the
//! same keys for all of them: without this, each platform would run it. It is BuildKit's
//! vertex merging, done by key. A claim is held from the cache lookup to the cache record, and
//! released when the step ends either way, so a failed step lets the waiter try (and fail, or
//! see the build cancelled) itself.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use kiln_registry::Digest;

/// The keys being worked on.
#[derive(Debug, Default)]
pub(super) struct Flights {
    running: Mutex<BTreeSet<Digest>>,
    landed: Condvar,
}

/// A key claimed by this thread until dropped.
#[derive(Debug)]
pub(super) struct Claim<'a> {
    flights: &'a Flights,
    key: Digest,
}

impl Flights {
    /// Claims `key`, first waiting while another thread holds it.
    pub(super) fn claim(&self, key: &Digest) -> Claim<'_> {
        let mut running = self.lock();
        while running.contains(key) {
            running = self
                .landed
                .wait(running)
                .unwrap_or_else(PoisonError::into_inner);
        }
        running.insert(key.clone());
        Claim {
            flights: self,
            key: key.clone(),
        }
    }

    /// The set, even after a panicking holder: a claim's bookkeeping cannot be left half-done.
    fn lock(&self) -> MutexGuard<'_, BTreeSet<Digest>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.flights.lock().remove(&self.key);
        self.flights.landed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn one_claim_per_key_at_a_time() {
        let flights = Flights::default();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let _claim = flights.claim(&a);
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Another key is free meanwhile.
                    drop(flights.claim(&b));
                    std::thread::sleep(Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(flights.lock().is_empty());
    }
}
