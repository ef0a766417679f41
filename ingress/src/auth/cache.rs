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

#[cfg(test)]
mod tests {
    use super::*;

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
