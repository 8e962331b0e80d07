//! A small time-bounded cache for listings: policies and group memberships may be reused for
//! a while (`POLICY_CACHE_TIMEOUT`, `RESOURCE_CACHE_TIMEOUT`); a timeout of zero turns it
//! off, as for every decision that writes IAM or approves. [`Cache::get_or_fetch`] lets one
//! caller per key ask Google while the others wait for its answer (single flight).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries at most by default: a few KiB each, one per user or group looked at recently.
const CAPACITY: usize = 4_096;

#[derive(Debug)]
pub struct Cache<V> {
    timeout: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, V)>>,
    /// One lock per key being fetched; waiting on it is waiting for the fetch in flight.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl<V: Clone> Cache<V> {
    pub fn new(timeout: Duration) -> Cache<V> {
        Cache::with_capacity(timeout, CAPACITY)
    }

    /// For larger values (a project's effective policies), fewer of them.
    pub fn with_capacity(timeout: Duration, capacity: usize) -> Cache<V> {
        Cache { timeout, capacity, entries: Mutex::new(HashMap::new()), flights: Mutex::new(HashMap::new()) }
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
        if entries.len() >= self.capacity {
            let timeout = self.timeout;
            entries.retain(|_, (at, _)| at.elapsed() < timeout);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key.to_string(), (Instant::now(), value));
    }

    /// The stored value for `key`, or `fetch`'s, stored. While one caller fetches a key, the
    /// others asking for it wait and take its answer, so concurrent first requests make one
    /// call. A failed fetch is not shared: the next waiter fetches itself (with its own
    /// budget, which may be the one not spent). With caching off, every caller fetches.
    pub async fn get_or_fetch<E, F, Fetching>(&self, key: &str, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fetching,
        Fetching: Future<Output = Result<V, E>>,
    {
        if self.timeout.is_zero() {
            return fetch().await;
        }
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let flight = Flight::join(&self.flights, key);
        let _turn = flight.lock.lock().await;
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let value = fetch().await?;
        self.put(key, value.clone());
        Ok(value)
    }
}

/// A caller's place in a key's flight; the key's lock is forgotten when its last caller leaves,
/// also when a caller is cancelled (its request dropped), so the map holds only keys in flight.
struct Flight<'a> {
    flights: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: &'a str,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> Flight<'a> {
    fn join(flights: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>, key: &'a str) -> Flight<'a> {
        let lock = match flights.lock() {
            Ok(mut map) => map.entry(key.to_string()).or_default().clone(),
            // A poisoned map: fly alone rather than fail.
            Err(_) => Arc::default(),
        };
        Flight { flights, key, lock }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let Ok(mut map) = self.flights.lock() else { return };
        // The map's handle and ours: nobody else waits for this key.
        let last = map.get(self.key).is_some_and(|lock| Arc::ptr_eq(lock, &self.lock) && Arc::strong_count(lock) == 2);
        if last {
            map.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        let small = Cache::with_capacity(Duration::from_secs(60), 8);
        for i in 0..100 {
            small.put(&i.to_string(), i);
        }
        assert!(small.entries.lock().expect("lock").len() <= 8);
    }

    /// A fetch that counts itself and takes a while, so that the others arrive during it.
    async fn slow_fetch(calls: Arc<AtomicUsize>) -> Result<usize, String> {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(7)
    }

    /// `callers` tasks asking `cache` for `key` at once.
    async fn at_once(
        cache: &Arc<Cache<usize>>,
        calls: &Arc<AtomicUsize>,
        callers: usize,
    ) -> Vec<Result<usize, String>> {
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move { cache.get_or_fetch("p", || slow_fetch(calls)).await })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("task"));
        }
        answers
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_fetch_and_leave_no_flight_behind() {
        let cache = Arc::new(Cache::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(at_once(&cache, &calls, 8).await, vec![Ok(7); 8]);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one fetch for eight callers");
        assert!(cache.flights.lock().expect("lock").is_empty(), "no key left in flight");
        // Another key flies on its own.
        assert_eq!(cache.get_or_fetch("q", || slow_fetch(calls.clone())).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_shared_and_caching_off_fetches_every_time() {
        let cache: Cache<usize> = Cache::new(Duration::from_secs(60));
        let failed = cache.get_or_fetch("p", || async { Err::<usize, _>("spent".to_string()) }).await;
        assert_eq!(failed, Err("spent".to_string()));
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(cache.get_or_fetch("p", || slow_fetch(calls.clone())).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the next caller fetched");

        let off = Arc::new(Cache::new(Duration::ZERO));
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(at_once(&off, &calls, 3).await, vec![Ok(7); 3]);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "fresh reads are never shared");
    }
}
