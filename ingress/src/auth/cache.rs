//! A bounded map whose entries expire. When full, expired entries go first, then the entry
//! closest to expiry: the cache never grows past its capacity.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct TtlCache<V> {
    capacity: usize,
    map: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let mut map = self.map.lock();
        match map.get(key) {
            Some((until, v)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: String, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            let now = Instant::now();
            map.retain(|_, (until, _)| *until > now);
            if map.len() >= self.capacity {
                if let Some(k) = map
                    .iter()
                    .min_by_key(|(_, (until, _))| *until)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&k);
                }
            }
        }
        map.insert(key, (Instant::now() + ttl, value));
    }

    /// Inserts unless a live entry exists; returns whether it was inserted.
    pub fn insert_new(&self, key: String, value: V, ttl: Duration) -> bool {
        if self.get(&key).is_some() {
            return false;
        }
        self.insert(key, value, ttl);
        true
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    seen: std::collections::HashSet<u128>,
    expiries: std::collections::BinaryHeap<std::cmp::Reverse<(i64, u128)>>,
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
        while let Some(std::cmp::Reverse((expiry, k))) = inner.expiries.peek().copied() {
            if expiry >= now {
                break;
            }
            inner.expiries.pop();
            inner.seen.remove(&k);
        }
        if inner.seen.contains(&key) {
            return Sighting::Replayed;
        }
        if inner.seen.len() >= self.capacity {
            return Sighting::Full;
        }
        inner.seen.insert(key);
        inner.expiries.push(std::cmp::Reverse((until, key)));
        Sighting::First
    }

    /// Records `key` as seen (it was first seen elsewhere), whatever the capacity.
    pub fn remember(&self, key: u128, until: i64) {
        let mut inner = self.inner.lock();
        if inner.seen.insert(key) {
            inner.expiries.push(std::cmp::Reverse((until, key)));
        }
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
        g.remember(9, 1000);
        assert_eq!(g.check(9, 1000, 500), Sighting::Replayed);
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
