//! A small time-bounded cache for listings: policies and group memberships may be reused for
//! `RESOURCE_CACHE_TIMEOUT`; a timeout of zero turns it off, as for every decision that
//! writes IAM or approves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries at most: a few KiB each, one per project, user or group looked at recently.
const CAPACITY: usize = 4_096;

#[derive(Debug)]
pub struct Cache<V> {
    timeout: Duration,
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> Cache<V> {
    pub fn new(timeout: Duration) -> Cache<V> {
        Cache { timeout, entries: Mutex::new(HashMap::new()) }
    }

    /// The value for `key` if it is younger than the timeout.
    pub fn get(&self, key: &str) -> Option<V> {
        if self.timeout.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|(at, _)| at.elapsed() < self.timeout).map(|(_, value)| value.clone())
    }

    pub fn put(&self, key: &str, value: V) {
        if self.timeout.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.len() >= CAPACITY {
            let timeout = self.timeout;
            entries.retain(|_, (at, _)| at.elapsed() < timeout);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key.to_string(), (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_for_the_timeout_and_never_when_zero() {
        let cache = Cache::new(Duration::from_secs(60));
        cache.put("a", 1);
        assert_eq!(cache.get("a"), Some(1));
        assert_eq!(cache.get("b"), None);
        let off = Cache::new(Duration::ZERO);
        off.put("a", 1);
        assert_eq!(off.get("a"), None);
        let short = Cache::new(Duration::from_millis(1));
        short.put("a", 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.get("a"), None);
    }

    #[test]
    fn stays_bounded() {
        let cache = Cache::new(Duration::from_secs(60));
        for i in 0..CAPACITY * 2 {
            cache.put(&i.to_string(), i);
        }
        assert!(cache.entries.lock().expect("lock").len() <= CAPACITY);
    }
}
