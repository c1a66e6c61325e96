//! Which backend of a `--forward` route a request tries, in what order.
//!
//! Rules:
//! - Round-robin over the backends that are up: each request starts one
//!   further along than the last, then goes on in the order given.
//! - A backend that refused a connection or timed out is down for
//!   `--forward-fail-timeout` (nginx's `max_fails=1 fail_timeout=…`); it
//!   comes back by itself when that time has passed, or as soon as it
//!   answers.
//! - The backends that are down are still tried, after all that are up:
//!   a request that every live backend failed gets a last chance rather
//!   than a 502 (when all are down, they are all tried). Each backend is
//!   tried at most once per request.
//! - No lock: one atomic counter per route and one atomic deadline per
//!   backend.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Uri;

/// The backends of one route and what is known of their health.
#[derive(Debug)]
pub struct Balancer {
    backends: Vec<Backend>,
    /// Requests started so far: the round-robin position.
    next: AtomicUsize,
    /// How long a failed backend is left out (`--forward-fail-timeout`).
    fail_timeout: Duration,
    /// Origin of the deadlines below (an `Instant` is not atomic).
    epoch: Instant,
}

#[derive(Debug)]
struct Backend {
    uri: Uri,
    /// Nanoseconds after `epoch` until which the backend is down; 0: up.
    down_until: AtomicU64,
}

impl Balancer {
    /// `backends` (in the order given), each left out for `fail_timeout`
    /// after a failure.
    pub fn new(backends: &[Uri], fail_timeout: Duration) -> Self {
        Balancer {
            backends: backends
                .iter()
                .map(|uri| Backend {
                    uri: uri.clone(),
                    down_until: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            fail_timeout,
            epoch: Instant::now(),
        }
    }

    /// The backend at `index` (from [`Balancer::order`]).
    pub fn uri(&self, index: usize) -> &Uri {
        &self.backends[index].uri
    }

    /// The backends one request tries, by index: those up, round-robin,
    /// then those down.
    pub fn order(&self) -> Vec<usize> {
        self.order_at(Instant::now())
    }

    fn order_at(&self, now: Instant) -> Vec<usize> {
        let now = self.nanos(now);
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let (mut up, mut down): (Vec<usize>, Vec<usize>) = (0..self.backends.len())
            .partition(|&i| self.backends[i].down_until.load(Ordering::Relaxed) <= now);
        if !up.is_empty() {
            let shift = turn % up.len();
            up.rotate_left(shift);
        }
        if !down.is_empty() {
            let shift = turn % down.len();
            down.rotate_left(shift);
        }
        up.extend(down);
        up
    }

    /// Leaves the backend at `index` out for the fail timeout.
    pub fn failed(&self, index: usize) {
        self.failed_at(index, Instant::now());
    }

    fn failed_at(&self, index: usize, now: Instant) {
        // At least 1: 0 means "up".
        let until = self.nanos(now + self.fail_timeout).max(1);
        self.backends[index]
            .down_until
            .store(until, Ordering::Relaxed);
    }

    /// The backend at `index` answered: it is up again.
    pub fn answered(&self, index: usize) {
        let state = &self.backends[index].down_until;
        // Read first: most answers come from a backend that is up, and a
        // load does not contend for the cache line the way a store does.
        if state.load(Ordering::Relaxed) != 0 {
            state.store(0, Ordering::Relaxed);
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(fail: Duration) -> Balancer {
        let uris: Vec<Uri> = ["http://a:1/", "http://b:1/", "http://c:1/"]
            .iter()
            .map(|u| u.parse().unwrap())
            .collect();
        Balancer::new(&uris, fail)
    }

    #[test]
    fn round_robin_tries_every_backend_once() {
        let b = three(Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(b.order_at(now), [0, 1, 2]);
        assert_eq!(b.order_at(now), [1, 2, 0]);
        assert_eq!(b.order_at(now), [2, 0, 1]);
        assert_eq!(b.order_at(now), [0, 1, 2]);
    }

    #[test]
    fn a_failed_backend_is_tried_last_until_the_fail_timeout_passes() {
        let b = three(Duration::from_secs(10));
        let now = Instant::now();
        b.failed_at(1, now);
        let firsts: Vec<usize> = (0..4).map(|_| b.order_at(now)[0]).collect();
        assert_eq!(firsts, [0, 2, 0, 2]);
        assert_eq!(b.order_at(now)[2], 1);
        let later = now + Duration::from_secs(11);
        let firsts: Vec<usize> = (0..3).map(|_| b.order_at(later)[0]).collect();
        assert!(firsts.contains(&1), "{firsts:?}");
    }

    #[test]
    fn all_down_are_still_all_tried_and_an_answer_brings_one_back() {
        let b = three(Duration::from_secs(10));
        let now = Instant::now();
        for i in 0..3 {
            b.failed_at(i, now);
        }
        let mut order = b.order_at(now);
        order.sort_unstable();
        assert_eq!(order, [0, 1, 2]);
        b.answered(2);
        assert_eq!(b.order_at(now)[0], 2);
    }
}
