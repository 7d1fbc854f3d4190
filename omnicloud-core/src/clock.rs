//! Time as a dependency.
//!
//! Every time-dependent rule in the core (health windows, backoff, failback delays, billing
//! periods, audit timestamps) asks a [`Clock`] for the time instead of reading the system clock,
//! so tests drive time with a [`ManualClock`] in microseconds. This module never sleeps.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::ValidationError;

/// A source of the current time, in UTC.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// A shared clock handle, as capabilities hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's real-time clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to: the test double for every time-dependent rule.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start` until advanced or set.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `seconds` (fractions down to the nanosecond are kept).
    ///
    /// Negative, NaN, infinite or out-of-range steps are refused: time on a manual clock only
    /// moves forward through `advance`; use [`ManualClock::set`] to jump anywhere.
    pub fn advance(&self, seconds: f64) -> Result<DateTime<Utc>, ValidationError> {
        let step = seconds_to_delta(seconds)?;
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        let next = now
            .checked_add_signed(step)
            .filter(|t| check_instant(*t).is_ok())
            .ok_or(ValidationError::InvalidClockStep {
                seconds,
                reason: "moves the clock past the year 9999",
            })?;
        *now = next;
        Ok(next)
    }

    /// Sets the clock to `instant` (earlier or later than now, within the years 1 to 9999).
    pub fn set(&self, instant: DateTime<Utc>) -> Result<(), ValidationError> {
        check_instant(instant)?;
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = instant;
        Ok(())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks that an instant lies within the years 1 to 9999, the range timestamps are stored and
/// exchanged in (RFC 3339, Python's `datetime`).
pub fn check_instant(instant: DateTime<Utc>) -> Result<(), ValidationError> {
    use chrono::Datelike;
    if (1..=9999).contains(&instant.year()) {
        Ok(())
    } else {
        Err(ValidationError::InstantOutOfRange {
            instant: instant.to_rfc3339(),
        })
    }
}

/// Converts a non-negative number of seconds to a [`TimeDelta`] with nanosecond precision.
pub fn seconds_to_delta(seconds: f64) -> Result<TimeDelta, ValidationError> {
    let invalid = |reason| ValidationError::InvalidClockStep { seconds, reason };
    if !seconds.is_finite() {
        return Err(invalid("must be a finite number"));
    }
    if seconds < 0.0 {
        return Err(invalid("must not be negative"));
    }
    // TimeDelta holds about ±292 years at nanosecond precision; refuse anything beyond a
    // century rather than silently saturating.
    const CENTURY_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;
    if seconds > CENTURY_SECONDS {
        return Err(invalid("must be at most one hundred years"));
    }
    let nanos = (seconds * 1e9).round() as i64;
    Ok(TimeDelta::nanoseconds(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date")
    }

    #[test]
    fn manual_clock_advances_and_sets() {
        let clock = ManualClock::new(start());
        assert_eq!(clock.now(), start());
        clock.advance(1.5).expect("advance");
        assert_eq!(clock.now(), start() + TimeDelta::milliseconds(1500));
        clock.advance(0.000_000_001).expect("one nanosecond");
        assert_eq!(clock.now(), start() + TimeDelta::nanoseconds(1_500_000_001));
        clock.set(start()).expect("set");
        assert_eq!(clock.now(), start());
    }

    #[test]
    fn the_clock_stays_within_the_years_1_to_9999() {
        let end = DateTime::parse_from_rfc3339("9999-12-31T23:59:00Z")
            .expect("end")
            .with_timezone(&Utc);
        let clock = ManualClock::new(end);
        assert!(clock.advance(59.0).is_ok());
        assert!(matches!(
            clock.advance(3600.0),
            Err(ValidationError::InvalidClockStep { .. })
        ));
        assert_eq!(clock.now(), end + TimeDelta::seconds(59));
        let beyond = end + TimeDelta::days(2);
        assert!(matches!(
            clock.set(beyond),
            Err(ValidationError::InstantOutOfRange { .. })
        ));
    }

    #[test]
    fn manual_clock_refuses_bad_steps_and_keeps_its_time() {
        let clock = ManualClock::new(start());
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e12] {
            let err = clock.advance(bad).expect_err("refused");
            assert!(
                matches!(err, ValidationError::InvalidClockStep { .. }),
                "{err}"
            );
        }
        assert_eq!(clock.now(), start());
    }

    #[test]
    fn system_clock_moves_forward() {
        let a = SystemClock.now();
        let b = SystemClock.now();
        assert!(b >= a);
    }

    #[test]
    fn clocks_are_shareable() {
        let clock: SharedClock = Arc::new(ManualClock::new(start()));
        let other = Arc::clone(&clock);
        std::thread::spawn(move || other.now())
            .join()
            .expect("thread");
        assert_eq!(clock.now(), start());
    }
}
