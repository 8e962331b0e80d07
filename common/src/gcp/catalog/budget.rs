//! Each person's budget of uncached Google reads, for listings and asks: a token bucket per person
//! (`LISTING_BUDGET_BURST` reads at once, `LISTING_BUDGET_PER_MINUTE` regained), so that one
//! person cannot spend the deployment's Cloud Asset quota, which requests, approvals and
//! break-glass need too. Answers from the cache cost nothing.
//!
//! A listing starts only if its caller has a whole read left; the rest of that listing is then
//! charged as it goes, possibly below zero, so a listing bigger than the burst (a person in
//! hundreds of groups) still completes, and the refill pays the debt back before the caller's
//! next uncached listing. A listing refused its first read makes no read at all. The buckets are bounded: at capacity, buckets that are full again
//! are dropped (they say nothing a missing bucket would not), then the least recently used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
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

/// One listing's purse: its caller's bucket, and how far the listing has got with it.
#[derive(Debug, Clone)]
pub struct ReadBudget {
    budgets: Arc<ReadBudgets>,
    caller: Email,
    /// [`NOT_STARTED`], [`STARTED`] or [`REFUSED`]; changed only under the buckets' lock, so
    /// the reads of one listing made at once see one decision.
    listing: Arc<AtomicU8>,
}

const NOT_STARTED: u8 = 0;
const STARTED: u8 = 1;
const REFUSED: u8 = 2;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Reads left; below zero after a listing bigger than what was left.
    reads: f64,
    /// When `reads` was last brought up to date.
    at: Instant,
    /// Refused since its last listing started: said once in the log, not for every refusal.
    refusing: bool,
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
        ReadBudget { budgets: self.clone(), caller: caller.clone(), listing: Arc::new(AtomicU8::new(NOT_STARTED)) }
    }

    /// Charges `caller` one read for an ask (a self-activation, a request, break glass)
    /// before its uncached reads are made: asks are decided on fresh reads, so a person
    /// refused again and again (eligible for nothing) would otherwise spend everyone's Cloud
    /// Asset quota as listings once could.
    pub fn charge_ask(&self, caller: &Email) -> Result<(), GcpError> {
        self.take(caller, &AtomicU8::new(NOT_STARTED), Instant::now()).map_err(refused)
    }

    /// Takes one read from `caller`'s bucket at `now` for a listing in state `listing`: its
    /// first read needs a whole read left, a refused listing gets none. Refused: the time until
    /// one is regained.
    fn take(&self, caller: &Email, listing: &AtomicU8, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock: a panic elsewhere. Listings go on rather than fail.
            return Ok(());
        };
        if !buckets.contains_key(caller) && buckets.len() >= self.capacity {
            self.make_room(&mut buckets, now);
        }
        let bucket = buckets.entry(caller.clone()).or_insert(Bucket { reads: self.burst, at: now, refusing: false });
        bucket.reads = self.refilled(bucket, now);
        bucket.at = now;
        let wait = Duration::from_secs_f64((1.0 - bucket.reads).max(0.0) / self.per_second);
        match listing.load(Ordering::Relaxed) {
            REFUSED => return Err(wait),
            NOT_STARTED if bucket.reads < 1.0 => {
                listing.store(REFUSED, Ordering::Relaxed);
                if !bucket.refusing {
                    bucket.refusing = true;
                    tracing::warn!(caller = %caller, wait_seconds = wait.as_secs(), "listing budget spent: listings refused");
                }
                return Err(wait);
            }
            _ => {
                listing.store(STARTED, Ordering::Relaxed);
                bucket.refusing = false;
            }
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
    /// left, and then every later one too; once started, its reads are always allowed and
    /// charged.
    pub fn spend(&self) -> Result<(), GcpError> {
        self.budgets.take(&self.caller, &self.listing, Instant::now()).map_err(refused)
    }
}

/// A refusal: whole seconds until a read is regained, at least 1.
fn refused(wait: Duration) -> GcpError {
    GcpError::ReadBudget(wait.as_secs_f64().ceil().max(1.0) as u64)
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

    /// A listing's first read.
    fn first() -> AtomicU8 {
        AtomicU8::new(NOT_STARTED)
    }

    #[test]
    fn a_burst_then_one_read_per_refill_interval() {
        let budgets = budgets(3, 6, 10);
        let erin = email("erin@example.com");
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(budgets.take(&erin, &first(), start), Ok(()));
        }
        // Six a minute: one every ten seconds.
        assert_eq!(budgets.take(&erin, &first(), start), Err(Duration::from_secs(10)));
        assert!(budgets.take(&erin, &first(), start + Duration::from_secs(9)).is_err());
        assert_eq!(budgets.take(&erin, &first(), start + Duration::from_secs(10)), Ok(()));
        assert!(budgets.take(&erin, &first(), start + Duration::from_secs(10)).is_err());
        // Waiting long fills up to the burst, never beyond.
        let later = start + Duration::from_secs(3_600);
        for _ in 0..3 {
            assert_eq!(budgets.take(&erin, &first(), later), Ok(()));
        }
        assert!(budgets.take(&erin, &first(), later).is_err());
    }

    #[test]
    fn a_started_listing_runs_into_debt_that_delays_the_next_one() {
        let budgets = budgets(2, 60, 10);
        let alice = email("alice@example.com");
        let start = Instant::now();
        let listing = first();
        assert_eq!(budgets.take(&alice, &listing, start), Ok(()));
        for _ in 0..4 {
            assert_eq!(budgets.take(&alice, &listing, start), Ok(()), "the same listing goes on");
        }
        // Two reads, five spent: three in debt, four seconds until a whole read, at one a second.
        assert_eq!(budgets.take(&alice, &first(), start), Err(Duration::from_secs(4)));
        assert_eq!(budgets.take(&alice, &first(), start + Duration::from_secs(4)), Ok(()));
    }

    #[test]
    fn one_persons_spent_budget_leaves_anothers_whole() {
        let budgets = budgets(1, 1, 10);
        let now = Instant::now();
        assert_eq!(budgets.take(&email("erin@example.com"), &first(), now), Ok(()));
        assert!(budgets.take(&email("erin@example.com"), &first(), now).is_err());
        assert_eq!(budgets.take(&email("alice@example.com"), &first(), now), Ok(()));
    }

    #[test]
    fn the_buckets_stay_bounded_and_a_spender_is_not_forgotten_for_a_full_one() {
        let budgets = budgets(2, 1, 4);
        let now = Instant::now();
        let erin = email("erin@example.com");
        budgets.take(&erin, &first(), now).expect("first");
        budgets.take(&erin, &first(), now).expect("second");
        for i in 0..100 {
            let caller = email(&format!("user{i}@example.com"));
            budgets.take(&caller, &first(), now + Duration::from_millis(i)).expect("each has a burst");
            assert!(budgets.buckets.lock().expect("lock").len() <= 4);
        }
        // Those who spent one of two reads are dropped oldest first; erin spent both and
        // was oldest, so she was dropped too: the bound wins over memory.
        assert!(budgets.buckets.lock().expect("lock").len() <= 4);

        // Full buckets go first: a spender stays while others have refilled.
        let budgets = self::budgets(2, 60, 2);
        let start = Instant::now();
        budgets.take(&erin, &first(), start).expect("erin");
        budgets.take(&erin, &first(), start).expect("erin");
        budgets.take(&email("alice@example.com"), &first(), start).expect("alice");
        let later = start + Duration::from_secs(1);
        budgets.take(&email("bob@example.com"), &first(), later).expect("bob");
        let buckets = budgets.buckets.lock().expect("lock");
        assert!(buckets.contains_key(&erin), "erin's debt is remembered: {buckets:?}");
        assert!(!buckets.contains_key(&email("alice@example.com")), "alice's bucket was full again");
    }

    #[test]
    fn a_refused_listing_says_whole_seconds_and_makes_no_read_at_all() {
        let budgets = Arc::new(budgets(1, 60, 10));
        let carol = email("carol@example.com");
        let listing = budgets.listing(&carol);
        listing.spend().expect("the first read");
        listing.spend().expect("the same listing goes on, into debt");
        let next = budgets.listing(&carol);
        assert_eq!(next.spend(), Err(GcpError::ReadBudget(2)));
        assert!(next.spend().is_err(), "a refused listing stays refused");
        // Its other reads, made at once, are refused with it, even once the bucket refilled.
        let budgets = Arc::new(self::budgets(1, 60, 10));
        let refused = budgets.listing(&carol);
        refused.listing.store(REFUSED, Ordering::Relaxed);
        assert!(refused.spend().is_err(), "{refused:?}");
        assert!(budgets.listing(&carol).spend().is_ok(), "the next listing has its read");
    }
}
