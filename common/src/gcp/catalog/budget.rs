//! Each person's budget of uncached Google reads for listings: a token bucket per person
//! (`LISTING_BUDGET_BURST` reads at once, `LISTING_BUDGET_PER_MINUTE` regained), so that one
//! person cannot spend the deployment's Cloud Asset quota, which requests, approvals and
//! break-glass need too. Answers from the cache cost nothing.
//!
//! A listing starts only if its caller has a whole read left; the rest of that listing is then
//! charged as it goes, possibly below zero, so a listing bigger than the burst (a person in
//! hundreds of groups) still completes, and the refill pays the debt back before the caller's
//! next uncached listing. The buckets are bounded: at capacity, buckets that are full again
//! are dropped (they say nothing a missing bucket would not), then the least recently used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::ListingBudgetSettings;
use crate::email::Email;
use crate::gcp::GcpError;

/// People remembered at most: a hundred bytes each. Only those who spent in the last few
/// minutes need remembering; anyone else's bucket is full.
const CAPACITY: usize = 10_000;

/// Every caller's bucket, shared by the listings of one instance.
#[derive(Debug)]
pub struct ReadBudgets {
    burst: f64,
    per_second: f64,
    capacity: usize,
    buckets: Mutex<HashMap<Email, Bucket>>,
}

/// One listing's purse: its caller's bucket, and whether the listing has started spending.
#[derive(Debug, Clone)]
pub struct ReadBudget {
    budgets: Arc<ReadBudgets>,
    caller: Email,
    started: Arc<AtomicBool>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Reads left; below zero after a listing bigger than what was left.
    reads: f64,
    /// When `reads` was last brought up to date.
    at: Instant,
}

impl ReadBudgets {
    pub fn new(settings: &ListingBudgetSettings) -> ReadBudgets {
        ReadBudgets::with_capacity(settings, CAPACITY)
    }

    pub fn with_capacity(settings: &ListingBudgetSettings, capacity: usize) -> ReadBudgets {
        ReadBudgets {
            burst: f64::from(settings.burst),
            per_second: f64::from(settings.per_minute) / 60.0,
            capacity: capacity.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The purse of one listing made by `caller`.
    pub fn listing(self: &Arc<ReadBudgets>, caller: &Email) -> ReadBudget {
        ReadBudget { budgets: self.clone(), caller: caller.clone(), started: Arc::new(AtomicBool::new(false)) }
    }

    /// Takes one read from `caller`'s bucket at `now`; `first` needs a whole read left.
    /// Refused: the time until one is regained.
    fn take(&self, caller: &Email, first: bool, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock: a panic elsewhere. Listings go on rather than fail.
            return Ok(());
        };
        if !buckets.contains_key(caller) && buckets.len() >= self.capacity {
            self.make_room(&mut buckets, now);
        }
        let bucket = buckets.entry(caller.clone()).or_insert(Bucket { reads: self.burst, at: now });
        bucket.reads = self.refilled(bucket, now);
        bucket.at = now;
        if first && bucket.reads < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - bucket.reads) / self.per_second));
        }
        bucket.reads -= 1.0;
        Ok(())
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.reads + elapsed * self.per_second).min(self.burst)
    }

    fn make_room(&self, buckets: &mut HashMap<Email, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| self.refilled(bucket, now) < self.burst);
        if buckets.len() >= self.capacity
            && let Some(oldest) = buckets.iter().min_by_key(|(_, bucket)| bucket.at).map(|(caller, _)| caller.clone())
        {
            buckets.remove(&oldest);
        }
    }
}

impl ReadBudget {
    /// Charges one Google read, before it is made. The listing's first read is refused
    /// ([`GcpError::ReadBudget`], whole seconds to wait, at least 1) unless a whole read is
    /// left; later reads of the same listing are always allowed and charged.
    pub fn spend(&self) -> Result<(), GcpError> {
        let first = !self.started.swap(true, Ordering::SeqCst);
        self.budgets.take(&self.caller, first, Instant::now()).map_err(|wait| {
            // Not started after all: the next attempt is a first read again.
            self.started.store(false, Ordering::SeqCst);
            GcpError::ReadBudget(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(burst: u32, per_minute: u32, capacity: usize) -> ReadBudgets {
        ReadBudgets::with_capacity(&ListingBudgetSettings { burst, per_minute }, capacity)
    }

    fn email(text: &str) -> Email {
        Email::parse(text).expect("valid")
    }

    #[test]
    fn a_burst_then_one_read_per_refill_interval() {
        let budgets = budgets(3, 6, 10);
        let erin = email("erin@example.com");
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(budgets.take(&erin, true, start), Ok(()));
        }
        // Six a minute: one every ten seconds.
        assert_eq!(budgets.take(&erin, true, start), Err(Duration::from_secs(10)));
        assert!(budgets.take(&erin, true, start + Duration::from_secs(9)).is_err());
        assert_eq!(budgets.take(&erin, true, start + Duration::from_secs(10)), Ok(()));
        assert!(budgets.take(&erin, true, start + Duration::from_secs(10)).is_err());
        // Waiting long fills up to the burst, never beyond.
        let later = start + Duration::from_secs(3_600);
        for _ in 0..3 {
            assert_eq!(budgets.take(&erin, true, later), Ok(()));
        }
        assert!(budgets.take(&erin, true, later).is_err());
    }

    #[test]
    fn a_started_listing_runs_into_debt_that_delays_the_next_one() {
        let budgets = budgets(2, 60, 10);
        let alice = email("alice@example.com");
        let start = Instant::now();
        assert_eq!(budgets.take(&alice, true, start), Ok(()));
        for _ in 0..4 {
            assert_eq!(budgets.take(&alice, false, start), Ok(()), "the same listing goes on");
        }
        // Two reads, five spent: three in debt, four seconds until a whole read, at one a second.
        assert_eq!(budgets.take(&alice, true, start), Err(Duration::from_secs(4)));
        assert_eq!(budgets.take(&alice, true, start + Duration::from_secs(4)), Ok(()));
    }

    #[test]
    fn one_persons_spent_budget_leaves_anothers_whole() {
        let budgets = budgets(1, 1, 10);
        let now = Instant::now();
        assert_eq!(budgets.take(&email("erin@example.com"), true, now), Ok(()));
        assert!(budgets.take(&email("erin@example.com"), true, now).is_err());
        assert_eq!(budgets.take(&email("alice@example.com"), true, now), Ok(()));
    }

    #[test]
    fn the_buckets_stay_bounded_and_a_spender_is_not_forgotten_for_a_full_one() {
        let budgets = budgets(2, 1, 4);
        let now = Instant::now();
        let erin = email("erin@example.com");
        budgets.take(&erin, true, now).expect("first");
        budgets.take(&erin, true, now).expect("second");
        for i in 0..100 {
            let caller = email(&format!("user{i}@example.com"));
            budgets.take(&caller, true, now + Duration::from_millis(i)).expect("each has a burst");
            assert!(budgets.buckets.lock().expect("lock").len() <= 4);
        }
        // Those who spent one of two reads are dropped oldest first; erin spent both and
        // was oldest, so she was dropped too: the bound wins over memory.
        assert!(budgets.buckets.lock().expect("lock").len() <= 4);

        // Full buckets go first: a spender stays while others have refilled.
        let budgets = self::budgets(2, 60, 2);
        let start = Instant::now();
        budgets.take(&erin, true, start).expect("erin");
        budgets.take(&erin, true, start).expect("erin");
        budgets.take(&email("alice@example.com"), true, start).expect("alice");
        let later = start + Duration::from_secs(1);
        budgets.take(&email("bob@example.com"), true, later).expect("bob");
        let buckets = budgets.buckets.lock().expect("lock");
        assert!(buckets.contains_key(&erin), "erin's debt is remembered: {buckets:?}");
        assert!(!buckets.contains_key(&email("alice@example.com")), "alice's bucket was full again");
    }

    #[test]
    fn a_refused_first_read_says_whole_seconds_and_lets_the_next_listing_try_again() {
        let budgets = Arc::new(budgets(1, 60, 10));
        let carol = email("carol@example.com");
        let listing = budgets.listing(&carol);
        listing.spend().expect("the first read");
        listing.spend().expect("the same listing goes on, into debt");
        let next = budgets.listing(&carol);
        assert_eq!(next.spend(), Err(GcpError::ReadBudget(2)));
        assert!(next.spend().is_err(), "a refused listing has not started: still a first read");
    }
}
