//! The per-endpoint rate limit: at most `n` deliveries in any rolling 60-second window.
//!
//! A [`RateLimiter`] keeps a sliding-window log: the instants of the endpoint's last `n`
//! sends. A send is allowed when fewer than `n` of them lie in the 60 s before it; otherwise
//! it is deferred (never dropped) to the instant the oldest leaves the window. So up to `n`
//! sends may go at once, and no half-open 60 s window ever holds more than `n`.
//!
//! Why not GCRA (a token bucket)? GCRA with burst `n` and one emission every `60 s / n`
//! admits `n` sends at once and then one more every `60 s / n`: `n + 1` sends within
//! `60 s / n`, and up to `2n - 1` in one minute. Keeping "≤ n per rolling minute" with GCRA
//! means giving up the burst (burst 1) or halving the rate; the log keeps both exactly, for
//! `n` instants of memory (1.2 KB at the default 100 per minute).
//!
//! This module only decides from the instants it is given: it never reads a clock, sleeps,
//! or stores anything. The caller persists [`RateLimiter::state`] if deferrals must survive
//! a restart.

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::WebhookError;

/// The rolling window the limit counts over.
pub const RATE_WINDOW: TimeDelta = TimeDelta::seconds(60);
/// The most deliveries per minute a limit may allow.
pub const MAX_RATE_PER_MINUTE: u32 = 100_000;
/// The default limit: 100 deliveries per minute per endpoint.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 100;

/// At most `n` sends in any rolling 60-second window, the excess deferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimiter {
    limit: u32,
    /// The last sends, oldest first; never more than `limit` of them.
    sends: VecDeque<DateTime<Utc>>,
}

impl RateLimiter {
    /// A limiter allowing `n` sends in any rolling minute, all `n` at once if they come at
    /// once.
    ///
    /// # Errors
    ///
    /// [`WebhookError::InvalidRateLimit`] if `n` is not between 1 and
    /// [`MAX_RATE_PER_MINUTE`].
    pub fn per_minute(n: u32) -> Result<Self, WebhookError> {
        if !(1..=MAX_RATE_PER_MINUTE).contains(&n) {
            return Err(WebhookError::InvalidRateLimit {
                reason: format!(
                    "{n} deliveries per minute; the limit must be between 1 and {MAX_RATE_PER_MINUTE}"
                ),
            });
        }
        Ok(Self {
            limit: n,
            sends: VecDeque::new(),
        })
    }

    /// A limiter of `n` per minute that remembers `sends` (as saved from
    /// [`state`](Self::state)); they may come in any order, and only the latest `n` count.
    ///
    /// # Errors
    ///
    /// As [`per_minute`](Self::per_minute).
    pub fn from_state(
        n: u32,
        sends: impl IntoIterator<Item = DateTime<Utc>>,
    ) -> Result<Self, WebhookError> {
        let mut limiter = Self::per_minute(n)?;
        let mut sends: Vec<DateTime<Utc>> = sends.into_iter().collect();
        sends.sort_unstable();
        let keep = sends.len().saturating_sub(limiter.capacity());
        limiter.sends = sends.split_off(keep).into();
        Ok(limiter)
    }

    /// The limit: sends allowed in any rolling minute.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The instants of the remembered sends, oldest first (at most [`limit`](Self::limit)),
    /// for the caller to persist and give back to [`from_state`](Self::from_state).
    pub fn state(&self) -> Vec<DateTime<Utc>> {
        self.sends.iter().copied().collect()
    }

    /// Whether a send at `now` would be allowed, without recording it: `Err` holds the
    /// earliest instant it would be.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        let now = self.effective(now);
        match self.sends.front() {
            Some(oldest) if self.sends.len() >= self.capacity() => {
                match oldest.checked_add_signed(RATE_WINDOW) {
                    Some(free_at) if now >= free_at => Ok(()),
                    Some(free_at) => Err(free_at),
                    // Within a minute of the end of representable time: no room, ever.
                    None => Err(DateTime::<Utc>::MAX_UTC),
                }
            }
            _ => Ok(()),
        }
    }

    /// Records a send at `now` if the limit allows it; otherwise `Err` holds the earliest
    /// instant a send would be allowed (a deferral: ask again then).
    ///
    /// A `now` earlier than the latest recorded send (a clock stepped back) counts as that
    /// send's instant, so a stepped clock never opens extra room.
    pub fn try_acquire(&mut self, now: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        self.check(now)?;
        let now = self.effective(now);
        if self.sends.len() >= self.capacity() {
            self.sends.pop_front();
        }
        self.sends.push_back(now);
        Ok(())
    }

    /// How many more sends `now` would allow at once.
    pub fn remaining(&self, now: DateTime<Utc>) -> u32 {
        let now = self.effective(now);
        let in_window = self
            .sends
            .iter()
            .filter(|sent| now - **sent < RATE_WINDOW)
            .count();
        u32::try_from(self.capacity().saturating_sub(in_window)).unwrap_or(0)
    }

    fn capacity(&self) -> usize {
        usize::try_from(self.limit).unwrap_or(usize::MAX)
    }

    fn effective(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.sends.back() {
            Some(latest) if *latest > now => *latest,
            _ => now,
        }
    }
}

impl Default for RateLimiter {
    /// [`DEFAULT_RATE_PER_MINUTE`] (100) sends per minute.
    fn default() -> Self {
        Self {
            limit: DEFAULT_RATE_PER_MINUTE,
            sends: VecDeque::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .single()
            .expect("valid instant")
    }

    fn at_ms(ms: i64) -> DateTime<Utc> {
        t0() + TimeDelta::milliseconds(ms)
    }

    /// The most accepted sends in any half-open 60 s window (windows starting at a send
    /// are the worst ones).
    fn max_in_any_window(accepted: &[DateTime<Utc>]) -> usize {
        let mut sorted = accepted.to_vec();
        sorted.sort_unstable();
        (0..sorted.len())
            .map(|i| {
                sorted[i..]
                    .iter()
                    .take_while(|t| **t - sorted[i] < RATE_WINDOW)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn bad_limits_are_rejected() {
        for n in [0, MAX_RATE_PER_MINUTE + 1, u32::MAX] {
            match RateLimiter::per_minute(n) {
                Err(WebhookError::InvalidRateLimit { reason }) => {
                    assert!(reason.contains("between 1 and 100000"), "{reason}");
                }
                other => panic!("expected InvalidRateLimit for {n}, got {other:?}"),
            }
            assert!(RateLimiter::from_state(n, []).is_err());
        }
        assert!(RateLimiter::per_minute(1).is_ok());
        assert!(RateLimiter::per_minute(MAX_RATE_PER_MINUTE).is_ok());
        assert_eq!(RateLimiter::default().limit(), 100);
    }

    #[test]
    fn burst_then_deferral_to_the_oldest_plus_a_minute() {
        let mut limiter = RateLimiter::per_minute(3).expect("valid");
        assert_eq!(limiter.remaining(t0()), 3);
        assert_eq!(limiter.try_acquire(t0()), Ok(()));
        assert_eq!(limiter.try_acquire(at_ms(10_000)), Ok(()));
        assert_eq!(limiter.try_acquire(at_ms(20_000)), Ok(()));
        assert_eq!(limiter.remaining(at_ms(20_000)), 0);
        // The fourth waits until the first leaves the window.
        assert_eq!(limiter.try_acquire(at_ms(30_000)), Err(at_ms(60_000)));
        assert_eq!(limiter.check(at_ms(59_999)), Err(at_ms(60_000)));
        // A refused attempt is not recorded.
        assert_eq!(limiter.state(), vec![t0(), at_ms(10_000), at_ms(20_000)]);
        assert_eq!(limiter.try_acquire(at_ms(60_000)), Ok(()));
        assert_eq!(limiter.try_acquire(at_ms(60_000)), Err(at_ms(70_000)));
        assert_eq!(limiter.remaining(at_ms(85_000)), 2);
    }

    #[test]
    fn the_default_allows_100_at_once_and_defers_the_101st() {
        let mut limiter = RateLimiter::default();
        for _ in 0..100 {
            assert_eq!(limiter.try_acquire(t0()), Ok(()));
        }
        assert_eq!(limiter.try_acquire(t0()), Err(at_ms(60_000)));
        assert_eq!(limiter.try_acquire(at_ms(60_000)), Ok(()));
    }

    #[test]
    fn plain_gcra_would_exceed_the_limit() {
        // GCRA, burst n, emission interval 60 s / n: the counterexample the log avoids.
        let n = 4_i64;
        let interval = TimeDelta::seconds(60) / i32::try_from(n).expect("small");
        let tolerance = interval * i32::try_from(n - 1).expect("small");
        let mut tat = t0();
        let mut gcra_accepted = vec![];
        let mut limiter = RateLimiter::per_minute(4).expect("valid");
        let mut log_accepted = vec![];
        for ms in (0..30_000).step_by(500) {
            let now = at_ms(ms);
            if now >= tat - tolerance {
                tat = tat.max(now) + interval;
                gcra_accepted.push(now);
            }
            if limiter.try_acquire(now).is_ok() {
                log_accepted.push(now);
            }
        }
        assert!(max_in_any_window(&gcra_accepted) > 4);
        assert_eq!(max_in_any_window(&log_accepted), 4);
    }

    #[test]
    fn a_clock_stepping_back_opens_no_room() {
        let mut limiter = RateLimiter::per_minute(2).expect("valid");
        assert_eq!(limiter.try_acquire(at_ms(100_000)), Ok(()));
        // Earlier than the latest send: counted at the latest send's instant.
        assert_eq!(limiter.try_acquire(at_ms(0)), Ok(()));
        assert_eq!(limiter.state(), vec![at_ms(100_000), at_ms(100_000)]);
        assert_eq!(limiter.try_acquire(at_ms(0)), Err(at_ms(160_000)));
    }

    #[test]
    fn state_round_trips() {
        let mut limiter = RateLimiter::per_minute(3).expect("valid");
        for ms in [0, 1_000, 2_000] {
            limiter.try_acquire(at_ms(ms)).expect("allowed");
        }
        let mut restored = RateLimiter::from_state(3, limiter.state()).expect("valid");
        assert_eq!(restored, limiter);
        assert_eq!(restored.try_acquire(at_ms(3_000)), Err(at_ms(60_000)));
        // Unordered and surplus instants: sorted, and only the latest n kept.
        let restored =
            RateLimiter::from_state(2, [at_ms(5_000), at_ms(1_000), at_ms(9_000), at_ms(3_000)])
                .expect("valid");
        assert_eq!(restored.state(), vec![at_ms(5_000), at_ms(9_000)]);
        assert_eq!(restored.check(at_ms(10_000)), Err(at_ms(65_000)));
    }

    #[test]
    fn extreme_instants_do_not_overflow() {
        let mut limiter = RateLimiter::per_minute(1).expect("valid");
        let last = DateTime::<Utc>::MAX_UTC;
        assert_eq!(limiter.try_acquire(last), Ok(()));
        assert_eq!(limiter.try_acquire(last), Err(last));
        assert_eq!(limiter.remaining(last), 0);
    }

    proptest! {
        /// Random request times (with bursts of equal instants): the accepted ones never
        /// exceed n in any rolling 60 s window, each deferral names an instant that is
        /// refused just before and accepted exactly then, and nothing is refused while the
        /// window has room.
        #[test]
        fn never_more_than_n_in_any_rolling_minute(
            n in 1u32..12,
            gaps in prop::collection::vec(
                prop_oneof![Just(0i64), 0i64..2_000, 0i64..90_000], 1..300),
        ) {
            let mut limiter = RateLimiter::per_minute(n).expect("valid");
            let mut now = 0i64;
            let mut accepted = vec![];
            for gap in gaps {
                now += gap;
                let instant = at_ms(now);
                let window_count = accepted
                    .iter()
                    .filter(|t| instant - **t < RATE_WINDOW)
                    .count();
                match limiter.try_acquire(instant) {
                    Ok(()) => {
                        prop_assert!(window_count < n as usize);
                        accepted.push(instant);
                    }
                    Err(free_at) => {
                        prop_assert_eq!(window_count, n as usize);
                        prop_assert!(free_at > instant);
                        let mut probe = limiter.clone();
                        prop_assert_eq!(
                            probe.check(free_at - TimeDelta::nanoseconds(1)),
                            Err(free_at)
                        );
                        prop_assert_eq!(probe.try_acquire(free_at), Ok(()));
                    }
                }
                prop_assert!(max_in_any_window(&accepted) <= n as usize);
            }
        }

        /// A caller that honours every deferral (sending at the instant it is given) sends
        /// every request, and still never more than n per rolling minute.
        #[test]
        fn deferred_requests_are_delayed_not_dropped(
            n in 1u32..8,
            gaps in prop::collection::vec(0i64..20_000, 1..100),
        ) {
            let mut limiter = RateLimiter::per_minute(n).expect("valid");
            let mut now = 0i64;
            let mut sent = vec![];
            for gap in &gaps {
                now += gap;
                let mut instant = at_ms(now).max(sent.last().copied().unwrap_or(t0()));
                loop {
                    match limiter.try_acquire(instant) {
                        Ok(()) => break,
                        Err(free_at) => instant = free_at,
                    }
                }
                sent.push(instant);
            }
            prop_assert_eq!(sent.len(), gaps.len());
            prop_assert!(max_in_any_window(&sent) <= n as usize);
        }
    }
}
