//! Whole-second UTC instants, and their RFC 3339 form (`2020-01-01T00:00:00Z`) as IAM
//! conditions and events spell it.
//!
//! Hand-written on purpose: the core needs exactly one format in and out, and no time zone.

use std::fmt;

/// Seconds since the Unix epoch, UTC. The core never reads the clock: callers pass `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Years outside 0000..=9999 cannot be written in RFC 3339, so they are refused.
const MIN_SECONDS: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
const MAX_SECONDS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    /// A timestamp from Unix seconds; `None` outside the years 0000 to 9999.
    pub fn from_unix_seconds(seconds: i64) -> Option<Timestamp> {
        (MIN_SECONDS..=MAX_SECONDS).contains(&seconds).then_some(Timestamp(seconds))
    }

    /// The current time, truncated to whole seconds. Only edges call this.
    pub fn now() -> Timestamp {
        let seconds =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        Timestamp(seconds.saturating_add(travel::offset()))
    }

    pub fn unix_seconds(self) -> i64 {
        self.0
    }

    /// Adds seconds, saturating at the representable range.
    pub fn plus_seconds(self, seconds: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(seconds).clamp(MIN_SECONDS, MAX_SECONDS))
    }

    /// Parses exactly `YYYY-MM-DDTHH:MM:SSZ`, the form this system writes.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let bytes = text.as_bytes();
        if bytes.len() != 20
            || bytes[4] != b'-'
            || bytes[7] != b'-'
            || bytes[10] != b'T'
            || bytes[13] != b':'
            || bytes[16] != b':'
            || bytes[19] != b'Z'
        {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = &text[range];
            part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok()).flatten()
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Timestamp::from_unix_seconds(days * 86_400 + hour * 3_600 + minute * 60 + second)
    }
}

impl fmt::Display for Timestamp {
    /// Writes `YYYY-MM-DDTHH:MM:SSZ`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let seconds_of_day = self.0.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            seconds_of_day / 3_600,
            seconds_of_day % 3_600 / 60,
            seconds_of_day % 60
        )
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil and civil-from-days algorithms (public domain), proleptic
// Gregorian calendar, day 0 = 1970-01-01.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Moving the clock forward, for tests that follow a grant past its deadlines in seconds
/// instead of hours: every `Timestamp::now` in the process (functions, emulator, IAP
/// assertions) moves together. Compiled only with the `clock-travel` feature, which only the
/// test crates turn on; `runner::main` refuses to start on Cloud Run with it.
#[cfg(feature = "clock-travel")]
pub mod travel {
    use std::sync::atomic::{AtomicI64, Ordering};

    static OFFSET: AtomicI64 = AtomicI64::new(0);

    pub const ENABLED: bool = true;

    /// Moves every clock of the process `seconds` ahead.
    pub fn advance(seconds: i64) {
        OFFSET.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Back to the real time.
    pub fn reset() {
        OFFSET.store(0, Ordering::SeqCst);
    }

    pub(super) fn offset() -> i64 {
        OFFSET.load(Ordering::SeqCst)
    }
}

#[cfg(not(feature = "clock-travel"))]
pub mod travel {
    pub const ENABLED: bool = false;

    pub(super) fn offset() -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_known_instants() {
        let check = |seconds: i64, expected: &str| {
            let timestamp = Timestamp::from_unix_seconds(seconds).expect("in range");
            assert_eq!(timestamp.to_string(), expected, "seconds {seconds}");
            assert_eq!(Timestamp::parse_rfc3339(expected), Some(timestamp), "{expected}");
        };
        check(0, "1970-01-01T00:00:00Z");
        check(1_577_836_800, "2020-01-01T00:00:00Z");
        check(1_577_837_100, "2020-01-01T00:05:00Z");
        check(951_782_400, "2000-02-29T00:00:00Z");
        check(1_672_871_764, "2023-01-04T22:36:04Z");
        check(MAX_SECONDS, "9999-12-31T23:59:59Z");
        check(MIN_SECONDS, "0000-01-01T00:00:00Z");
    }

    #[test]
    fn refuses_other_forms() {
        for text in [
            "2020-01-01T00:00:00",
            "2020-01-01T00:00:00.000Z",
            "2020-01-01T00:00:00+00:00",
            "2020-13-01T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2020-01-01T24:00:00Z",
            "2020-01-01 00:00:00Z",
            "+020-01-01T00:00:00Z",
            "",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(text), None, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn format_and_parse_round_trip(seconds in MIN_SECONDS..=MAX_SECONDS) {
            let timestamp = Timestamp(seconds);
            prop_assert_eq!(Timestamp::parse_rfc3339(&timestamp.to_string()), Some(timestamp));
        }
    }
}
