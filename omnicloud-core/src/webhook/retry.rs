//! The retry schedule of failed deliveries, and the `Retry-After` header.
//!
//! A [`RetryPolicy`] answers one question: after a failed attempt, when is the next one due,
//! or is the delivery exhausted? With the default policy, after attempt 1 fails the next
//! waits 1 s, after attempt 2 fails 2 s, after 3 fails 4 s, after 4 fails 8 s; attempt 5 is
//! the last, and when it fails the delivery is exhausted. A server's `Retry-After` (sent with
//! 429 or 503) lengthens a wait, never shortens it, and counts for at most 24 hours.
//!
//! This module only computes instants from instants it is given: it never reads a clock,
//! sleeps or sends anything.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use crate::error::WebhookError;

/// The most attempts a policy may allow (the first attempt included).
pub const MAX_ATTEMPTS_LIMIT: u32 = 20;
/// The longest wait between two attempts, whether from the policy or from `Retry-After`.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);
/// The default waits after attempts 1 to 4: 1 s, 2 s, 4 s, 8 s.
pub const DEFAULT_DELAYS: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];
/// The default number of attempts, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// When failed deliveries are attempted again, and how many attempts a delivery gets.
///
/// `delays[k]` is the wait after attempt `k + 1` fails; when there are more attempts than
/// delays, the last delay repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
    max_attempts: u32,
}

impl Default for RetryPolicy {
    /// Waits of 1 s, 2 s, 4 s and 8 s; at most 5 attempts.
    fn default() -> Self {
        Self {
            delays: DEFAULT_DELAYS.to_vec(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

impl RetryPolicy {
    /// A policy waiting `delays` between attempts (the last one repeating), with at most
    /// `max_attempts` attempts in all.
    ///
    /// # Errors
    ///
    /// [`WebhookError::InvalidRetryPolicy`] if `delays` is empty, a delay is longer than
    /// 24 hours, or `max_attempts` is not between 1 and [`MAX_ATTEMPTS_LIMIT`]. A zero delay
    /// is allowed (an immediate retry).
    pub fn new(delays: Vec<Duration>, max_attempts: u32) -> Result<Self, WebhookError> {
        let invalid = |reason: String| WebhookError::InvalidRetryPolicy { reason };
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
            return Err(invalid(format!(
                "max_attempts is {max_attempts}; it must be between 1 and {MAX_ATTEMPTS_LIMIT}"
            )));
        }
        if delays.is_empty() {
            return Err(invalid("the list of delays is empty".to_owned()));
        }
        if let Some((index, delay)) = delays
            .iter()
            .enumerate()
            .find(|(_, delay)| **delay > MAX_RETRY_DELAY)
        {
            return Err(invalid(format!(
                "delay {} is {delay:?}, longer than the 24 h allowed",
                index + 1
            )));
        }
        Ok(Self {
            delays,
            max_attempts,
        })
    }

    /// The default delays (1 s, 2 s, 4 s, 8 s, the last repeating) with `max_attempts`
    /// attempts.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new): `max_attempts` must be between 1 and [`MAX_ATTEMPTS_LIMIT`].
    pub fn with_max_attempts(max_attempts: u32) -> Result<Self, WebhookError> {
        Self::new(DEFAULT_DELAYS.to_vec(), max_attempts)
    }

    /// The most attempts a delivery gets, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The waits after each failed attempt (the last repeating).
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The wait after attempt number `attempts_made` (1-based) fails, before any
    /// `Retry-After`: `delays[attempts_made - 1]`, the last delay repeating. Zero when no
    /// attempt has been made.
    pub fn delay_after(&self, attempts_made: u32) -> Duration {
        let Some(index) = attempts_made.checked_sub(1) else {
            return Duration::ZERO;
        };
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        self.delays
            .get(index)
            .or(self.delays.last())
            .copied()
            .unwrap_or_default()
    }

    /// When the next attempt is due, given `attempts_made` attempts so far (all failed) and
    /// the instant the last one was made; `None` when the delivery is exhausted
    /// (`attempts_made >= max_attempts`).
    ///
    /// The wait is [`delay_after(attempts_made)`](Self::delay_after), or the server's
    /// `retry_after` when that is longer (capped at 24 hours). With the default policy:
    /// after attempt 1 fails, wait 1 s; after 2, 2 s; after 3, 4 s; after 4, 8 s; attempt 5
    /// is the last. With no attempt made yet the first is due at `last_attempt_at` (read it
    /// as the instant the delivery was queued), unless `retry_after` defers it.
    pub fn next_attempt_at(
        &self,
        attempts_made: u32,
        last_attempt_at: DateTime<Utc>,
        retry_after: Option<Duration>,
    ) -> Option<DateTime<Utc>> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let server = retry_after.unwrap_or_default().min(MAX_RETRY_DELAY);
        let wait = self.delay_after(attempts_made).max(server);
        // Both are at most 24 h, which always fits a TimeDelta.
        let wait = TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
        Some(
            last_attempt_at
                .checked_add_signed(wait)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }
}

/// The wait a `Retry-After` header asks for, as of `now`: delta-seconds (`"120"`) or an
/// HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`, and the obsolete RFC 850 and asctime forms
/// RFC 9110 asks recipients to accept). A date in the past gives zero. `None` when the value
/// is neither.
pub fn parse_retry_after(header: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = header.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: delta-seconds. Too many to count is as good as forever.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// An HTTP-date: IMF-fixdate, RFC 850 or asctime.
fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    const FORMATS: [&str; 3] = [
        "%a, %d %b %Y %H:%M:%S GMT", // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        "%A, %d-%b-%y %H:%M:%S GMT", // RFC 850:     Sunday, 06-Nov-94 08:49:37 GMT
        "%a %b %e %H:%M:%S %Y",      // asctime:     Sun Nov  6 08:49:37 1994
    ];
    FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .single()
            .expect("valid instant")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn default_schedule_is_1_2_4_8_then_exhausted() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 5);
        assert_eq!(policy.delays(), &[secs(1), secs(2), secs(4), secs(8)]);
        let at = |n| policy.next_attempt_at(n, t0(), None);
        assert_eq!(at(0), Some(t0()));
        assert_eq!(at(1), Some(t0() + TimeDelta::seconds(1)));
        assert_eq!(at(2), Some(t0() + TimeDelta::seconds(2)));
        assert_eq!(at(3), Some(t0() + TimeDelta::seconds(4)));
        assert_eq!(at(4), Some(t0() + TimeDelta::seconds(8)));
        assert_eq!(at(5), None);
        assert_eq!(at(6), None);
        assert_eq!(at(u32::MAX), None);
    }

    #[test]
    fn a_whole_delivery_takes_15_seconds_of_waiting() {
        let policy = RetryPolicy::default();
        let mut attempts = vec![t0()];
        while let Some(next) = policy.next_attempt_at(
            u32::try_from(attempts.len()).expect("few"),
            attempts[attempts.len() - 1],
            None,
        ) {
            attempts.push(next);
        }
        let offsets: Vec<i64> = attempts.iter().map(|a| (*a - t0()).num_seconds()).collect();
        assert_eq!(offsets, [0, 1, 3, 7, 15]);
    }

    #[test]
    fn last_delay_repeats() {
        let policy = RetryPolicy::new(vec![secs(5), secs(30)], 6).expect("valid");
        let waits: Vec<Duration> = (1..=5).map(|n| policy.delay_after(n)).collect();
        assert_eq!(waits, [secs(5), secs(30), secs(30), secs(30), secs(30)]);
        assert_eq!(
            policy.next_attempt_at(5, t0(), None),
            Some(t0() + TimeDelta::seconds(30))
        );
        assert_eq!(policy.next_attempt_at(6, t0(), None), None);
        assert_eq!(policy.delay_after(0), Duration::ZERO);
        assert_eq!(policy.delay_after(u32::MAX), secs(30));
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.next_attempt_at(1, t0(), Some(secs(30))),
            Some(t0() + TimeDelta::seconds(30))
        );
        assert_eq!(
            policy.next_attempt_at(4, t0(), Some(secs(3))),
            Some(t0() + TimeDelta::seconds(8))
        );
        assert_eq!(
            policy.next_attempt_at(1, t0(), Some(Duration::from_secs(u64::MAX))),
            Some(t0() + TimeDelta::hours(24))
        );
        assert_eq!(
            policy.next_attempt_at(0, t0(), Some(secs(10))),
            Some(t0() + TimeDelta::seconds(10))
        );
        // Exhausted stays exhausted whatever the server says.
        assert_eq!(policy.next_attempt_at(5, t0(), Some(secs(1))), None);
    }

    #[test]
    fn far_future_saturates_instead_of_overflowing() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.next_attempt_at(1, DateTime::<Utc>::MAX_UTC, None),
            Some(DateTime::<Utc>::MAX_UTC)
        );
    }

    fn policy_reason(delays: Vec<Duration>, max_attempts: u32) -> String {
        match RetryPolicy::new(delays, max_attempts) {
            Err(WebhookError::InvalidRetryPolicy { reason }) => reason,
            other => panic!("expected InvalidRetryPolicy, got {other:?}"),
        }
    }

    #[test]
    fn bad_policies_are_rejected() {
        assert!(policy_reason(vec![secs(1)], 0).contains("max_attempts is 0"));
        assert!(policy_reason(vec![secs(1)], 21).contains("between 1 and 20"));
        assert!(policy_reason(vec![], 5).contains("empty"));
        let reason = policy_reason(vec![secs(1), secs(24 * 3600 + 1)], 5);
        assert!(reason.contains("delay 2"), "{reason}");
        assert!(reason.contains("24 h"), "{reason}");
        assert!(RetryPolicy::with_max_attempts(0).is_err());
        assert!(RetryPolicy::with_max_attempts(21).is_err());
        // The bounds themselves are fine.
        assert!(RetryPolicy::new(vec![MAX_RETRY_DELAY], 20).is_ok());
        assert!(RetryPolicy::new(vec![Duration::ZERO], 1).is_ok());
        let one = RetryPolicy::with_max_attempts(1).expect("valid");
        assert_eq!(one.next_attempt_at(1, t0(), None), None);
        assert_eq!(
            RetryPolicy::with_max_attempts(5).expect("valid"),
            RetryPolicy::default()
        );
    }

    #[test]
    fn retry_after_delta_seconds() {
        assert_eq!(parse_retry_after("120", t0()), Some(secs(120)));
        assert_eq!(parse_retry_after(" 0 ", t0()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", t0()),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", " ", "-5", "+5", "1.5", "5s", "1 2", "soon", "0x10"] {
            assert_eq!(parse_retry_after(bad, t0()), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_http_dates() {
        let now = Utc
            .with_ymd_and_hms(1994, 11, 6, 8, 49, 0)
            .single()
            .expect("valid instant");
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_retry_after(form, now), Some(secs(37)), "{form:?}");
        }
        // A date in the past means now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t0()),
            Some(Duration::ZERO)
        );
        let in_an_hour = (t0() + TimeDelta::hours(1))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        assert_eq!(parse_retry_after(&in_an_hour, t0()), Some(secs(3600)));
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Mon, 06 Nov 1994 08:49:37 GMT", // wrong weekday
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "2026-03-01T12:00:00Z",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
