//! Bounded caches whose entries expire: [`TtlCache`] (introspections, caller keys) is a
//! `moka` cache with a TTL per entry and least-recently-used eviction at capacity;
//! [`ReplayGuard`] remembers signatures until their window closes and refuses rather than
//! forget one.

use std::time::{Duration, Instant};

use moka::policy::{EvictionPolicy, Expiry};
use parking_lot::Mutex;

/// A map of at most `capacity` entries, each living for the TTL it was inserted with. Past
/// capacity the least recently used entry leaves (moka applies evictions in batches on
/// writes; [`TtlCache::len`] settles them first).
pub struct TtlCache<V> {
    map: moka::sync::Cache<String, (Duration, V)>,
}

/// Each entry expires after the TTL stored beside its value; re-inserting restarts it.
struct PerEntryTtl;

impl<V> Expiry<String, (Duration, V)> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &(Duration, V),
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.0)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &(Duration, V),
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.0)
    }
}

impl<V: Clone + Send + Sync + 'static> TtlCache<V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            map: moka::sync::Cache::builder()
                .max_capacity(capacity.max(1) as u64)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(PerEntryTtl)
                .build(),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        self.map.get(key).map(|(_, v)| v)
    }

    /// Caches `value` for `ttl`; a zero TTL caches nothing.
    pub fn insert(&self, key: String, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        self.map.insert(key, (ttl, value));
    }

    /// Inserts unless a live entry exists; returns whether it was inserted.
    pub fn insert_new(&self, key: String, value: V, ttl: Duration) -> bool {
        if ttl.is_zero() {
            return self.get(&key).is_none();
        }
        self.map
            .entry(key)
            .or_insert_with(|| (ttl, value))
            .is_fresh()
    }

    pub fn len(&self) -> usize {
        self.map.run_pending_tasks();
        self.map.entry_count() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An async `moka` cache of at most `capacity` entries, each living for the TTL stored
/// beside its value (zero: gone at once, though concurrent waiters of `try_get_with` still
/// share the value).
pub fn ttl_future_cache<V: Clone + Send + Sync + 'static>(
    capacity: usize,
) -> moka::future::Cache<String, (Duration, V)> {
    moka::future::Cache::builder()
        .max_capacity(capacity.max(1) as u64)
        .eviction_policy(EvictionPolicy::lru())
        .expire_after(PerEntryTtl)
        .build()
}

/// Signatures seen recently, for the replay guard. A signature with timestamp `t` can only be
/// accepted while `now ≤ t + window`, so it is remembered until then and not longer: memory
/// follows the signed request rate times the window. Expired entries leave in expiry order
/// (a min-heap), so each check costs O(log n). At `capacity` the guard refuses new
/// signatures rather than forget live ones (forgetting would let a replay through).
pub struct ReplayGuard {
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

#[derive(Default)]
struct ReplayInner {
    /// Each live key with the time it is kept until.
    seen: std::collections::HashMap<u128, i64>,
    expiries: std::collections::BinaryHeap<std::cmp::Reverse<(i64, u128)>>,
}

impl ReplayInner {
    /// Drops the signatures whose window closed before `now` (earliest first). A key
    /// forgotten and seen again since keeps its newer expiry.
    fn forget_expired(&mut self, now: i64) {
        while let Some(std::cmp::Reverse((expiry, k))) = self.expiries.peek().copied() {
            if expiry >= now {
                break;
            }
            self.expiries.pop();
            if self.seen.get(&k) == Some(&expiry) {
                self.seen.remove(&k);
            }
        }
    }
}

/// The outcome of [`ReplayGuard::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    First,
    Replayed,
    /// The guard holds `capacity` live signatures.
    Full,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        ReplayGuard {
            capacity: capacity.max(1),
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    /// Records `key` (a digest of the signature) until unix second `until`.
    pub fn check(&self, key: u128, until: i64, now: i64) -> Sighting {
        let mut inner = self.inner.lock();
        inner.forget_expired(now);
        if inner.seen.contains_key(&key) {
            return Sighting::Replayed;
        }
        if inner.seen.len() >= self.capacity {
            return Sighting::Full;
        }
        inner.seen.insert(key, until);
        inner.expiries.push(std::cmp::Reverse((until, key)));
        Sighting::First
    }

    /// Records `key` as seen (it was first seen elsewhere, by the shared guard), so that an
    /// outage of the shared guard later still refuses its replay here. Expired entries
    /// leave first, as in [`ReplayGuard::check`]; at capacity the copy is not kept (the
    /// shared guard holds the original, and this copy only stands in during an outage).
    pub fn remember(&self, key: u128, until: i64, now: i64) {
        let mut inner = self.inner.lock();
        inner.forget_expired(now);
        if inner.seen.len() >= self.capacity {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = inner.seen.entry(key) {
            e.insert(until);
            inner.expiries.push(std::cmp::Reverse((until, key)));
        }
    }

    /// Forgets `key` (a claim given back: the payment it guarded was refused).
    pub fn forget(&self, key: u128) {
        self.inner.lock().seen.remove(&key);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_guard_forgets_only_what_expired_and_never_grows_past_capacity() {
        let g = ReplayGuard::new(3);
        assert_eq!(g.check(1, 100, 0), Sighting::First);
        assert_eq!(g.check(1, 100, 50), Sighting::Replayed);
        assert_eq!(g.check(2, 10, 0), Sighting::First);
        assert_eq!(g.check(3, 200, 0), Sighting::First);
        // Full of live signatures: refuse rather than forget one.
        assert_eq!(g.check(4, 200, 5), Sighting::Full);
        assert_eq!(g.len(), 3);
        // Once 2 expired there is room again; 1 is still remembered.
        assert_eq!(g.check(4, 200, 11), Sighting::First);
        assert_eq!(g.check(1, 100, 99), Sighting::Replayed);
        assert_eq!(g.check(1, 300, 101), Sighting::First, "expired at 100");
        // Full again (3, 4 and 1 live): a copy from the shared guard is not kept…
        g.remember(9, 1000, 101);
        assert_eq!(g.len(), 3);
        // …but once they expired it is.
        g.remember(9, 1000, 301);
        assert_eq!(g.check(9, 1000, 500), Sighting::Replayed);
    }

    /// With Redis up only `remember` is called: it must forget what expired, and never
    /// hold more than the capacity.
    #[test]
    fn remembered_copies_expire_and_stay_within_capacity() {
        let g = ReplayGuard::new(1_000_000);
        for i in 0..100_000u128 {
            // Each signature's window is 10 s long; time moves one second per 100 requests.
            let now = (i / 100) as i64;
            g.remember(i, now + 10, now);
        }
        assert!(
            g.len() <= 1_100,
            "only the live signatures are kept: {} entries",
            g.len()
        );
        let full = ReplayGuard::new(10);
        for i in 0..50u128 {
            full.remember(i, 1_000, 0);
        }
        assert_eq!(full.len(), 10, "never past capacity");
        assert_eq!(full.check(0, 1_000, 1), Sighting::Replayed);
    }

    #[test]
    fn bounded_and_expiring() {
        let c = TtlCache::new(3);
        for i in 0..10 {
            c.insert(format!("k{i}"), i, Duration::from_secs(60 + i));
        }
        assert_eq!(c.len(), 3, "never past capacity");
        assert_eq!(c.get("k9"), Some(9), "the longest-lived entries stay");
        c.insert("short".into(), 1, Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.get("short"), None);
        assert!(c.insert_new("n".into(), 1, Duration::from_secs(5)));
        assert!(!c.insert_new("n".into(), 2, Duration::from_secs(5)));
        c.insert("zero".into(), 1, Duration::ZERO);
        assert_eq!(c.get("zero"), None, "a zero TTL is not cached");
    }
}
