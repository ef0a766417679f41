//! This replica's own buckets and open-task sets: the limits without Redis, and the
//! fallback while Redis does not answer. Both are `moka` caches keyed by caller, so callers
//! that went quiet are forgotten (a bucket idle long enough to be full again, a set whose
//! runs all expired) and a flood of distinct callers cannot grow them without bound.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;

type Bucket = governor::DefaultDirectRateLimiter;

/// Callers remembered at once; the least recently used are forgotten beyond.
const CAPACITY: u64 = 1_000_000;

pub(super) struct Local {
    buckets: moka::sync::Cache<String, Arc<Bucket>>,
    /// Per caller: the runs counted open and when.
    open: moka::sync::Cache<String, Arc<Mutex<HashMap<String, Instant>>>>,
    ttl: Duration,
    clock: DefaultClock,
}

impl Local {
    pub(super) fn new(open_ttl: Duration) -> Local {
        Local {
            // An idle bucket is full again within `burst / rate` (at most ~1 h for the
            // allowed values); forgetting it after an hour idle changes nothing.
            buckets: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            open: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(open_ttl)
                .build(),
            ttl: open_ttl,
            clock: DefaultClock::default(),
        }
    }

    /// Takes a token of `key`'s bucket: `None` when taken, else how long until one is back.
    pub(super) fn take(&self, key: &str, rate: f64, burst: u32) -> Option<Duration> {
        let bucket = self
            .buckets
            .get_with_by_ref(key, || Arc::new(RateLimiter::direct(quota(rate, burst))));
        match bucket.check() {
            Ok(()) => None,
            Err(not_until) => Some(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Counts `task` open for `key` unless `max` runs are (expired ones pruned first);
    /// true when it counts (a run already counted counts again, refreshed).
    pub(super) fn open(&self, key: &str, task: &str, max: u32) -> bool {
        let set = self.open.get_with_by_ref(key, Default::default);
        let mut set = set.lock();
        let now = Instant::now();
        set.retain(|_, at| now.duration_since(*at) < self.ttl);
        if !set.contains_key(task) && set.len() >= max as usize {
            return false;
        }
        set.insert(task.to_string(), now);
        true
    }

    pub(super) fn close(&self, key: &str, task: &str) {
        if let Some(set) = self.open.get(key) {
            set.lock().remove(task);
        }
    }
}

/// `rate` tokens per second, at most `burst` at once.
fn quota(rate: f64, burst: u32) -> Quota {
    // `rate` is checked positive and at most 1e6 by the configuration: one token every
    // 1 µs to ~1e9 s.
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_its_burst_through_then_says_when_to_retry() {
        let local = Local::new(Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(local.take("a", 0.5, 3), None);
        }
        let wait = local.take("a", 0.5, 3).expect("empty");
        assert!(wait > Duration::from_millis(1000) && wait <= Duration::from_secs(2));
        // Another caller has its own bucket.
        assert_eq!(local.take("b", 0.5, 3), None);
    }

    #[test]
    fn open_runs_are_counted_per_caller_up_to_the_limit() {
        let local = Local::new(Duration::from_secs(60));
        assert!(local.open("a", "t1", 2));
        assert!(local.open("a", "t2", 2));
        assert!(!local.open("a", "t3", 2));
        assert!(
            local.open("a", "t1", 2),
            "a follow-up on an open run counts once"
        );
        assert!(local.open("b", "t3", 2));
        local.close("a", "t1");
        assert!(local.open("a", "t3", 2));
    }
}
