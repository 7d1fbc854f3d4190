//! Health evaluation with hysteresis: when a region counts as down, and when as recovered.
//!
//! A zone is failing when its last `failure_threshold` results are all failures, all inside the
//! evaluation window. A region is down when at least `min_unhealthy_zones` of its zones are
//! failing. A region has recovered when every zone that reports has only healthy results for
//! the whole failback delay. Results from before the tenant's last transition never count
//! again, so one outage triggers one failover. Pure and clock-free: the caller passes `now`.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::FailoverPolicy;
use crate::error::FailoverError;
use crate::ids::{IdKind, TenantId, validate_id};

/// Results kept per zone (enough for the largest failure threshold, with room to spare).
const KEPT_PER_ZONE: usize = 64;

/// One health check of one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckResult {
    /// The tenant whose endpoint was checked.
    pub tenant_id: TenantId,
    /// The region checked.
    pub region: String,
    /// The availability zone checked.
    pub zone: String,
    /// Whether the check passed.
    pub healthy: bool,
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The resource checked, if the check was of one resource.
    pub resource_id: Option<String>,
}

impl HealthCheckResult {
    /// A validated result.
    pub fn new(
        tenant_id: TenantId,
        region: &str,
        zone: &str,
        healthy: bool,
        at: DateTime<Utc>,
        resource_id: Option<String>,
    ) -> Result<Self, FailoverError> {
        let invalid = |reason: String| FailoverError::InvalidHealthResult { reason };
        validate_id(IdKind::Region, region).map_err(|e| invalid(e.to_string()))?;
        validate_id(IdKind::Region, zone).map_err(|e| invalid(format!("zone: {e}")))?;
        if let Some(r) = &resource_id {
            validate_id(IdKind::Resource, r).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(Self {
            tenant_id,
            region: region.to_owned(),
            zone: zone.to_owned(),
            healthy,
            at,
            resource_id,
        })
    }
}

/// The failed checks that made one zone count as failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneEvidence {
    /// The zone.
    pub zone: String,
    /// The times of its consecutive failed checks, oldest first.
    pub failures: Vec<DateTime<Utc>>,
}

/// Which region serves a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Serving {
    /// The policy's primary region.
    Primary,
    /// The policy's secondary region (after a failover).
    Secondary,
}

/// What the health of a tenant's regions calls for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Nothing to do.
    Stay,
    /// The primary is down: fail over; the evidence is the failing zones.
    FailOver(Vec<ZoneEvidence>),
    /// The primary has been healthy for the failback delay: fail back.
    FailBack {
        /// Since when the primary has been healthy.
        healthy_since: DateTime<Utc>,
    },
}

/// A zone's results: when, and whether the check passed, oldest first.
type ZoneResults = Vec<(DateTime<Utc>, bool)>;

/// One tenant's recent health results, by region and zone.
#[derive(Debug, Clone, Default)]
pub struct HealthHistory {
    zones: BTreeMap<(String, String), ZoneResults>,
}

impl HealthHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a result (results may arrive out of order; each zone keeps its latest ones).
    pub fn record(&mut self, result: &HealthCheckResult) {
        let rows = self
            .zones
            .entry((result.region.clone(), result.zone.clone()))
            .or_default();
        let at = rows.partition_point(|(t, _)| *t <= result.at);
        rows.insert(at, (result.at, result.healthy));
        if rows.len() > KEPT_PER_ZONE {
            rows.drain(..rows.len() - KEPT_PER_ZONE);
        }
    }

    /// Each zone of `region`, with its results taken after `after` and no later than `now`.
    fn zones_of<'a>(
        &'a self,
        region: &'a str,
        after: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = (&'a str, &'a [(DateTime<Utc>, bool)])> + 'a {
        self.zones
            .iter()
            .filter(move |((r, _), _)| r == region)
            .map(move |((_, zone), rows)| {
                let lo = after.map_or(0, |a| rows.partition_point(|(t, _)| *t <= a));
                let hi = rows.partition_point(|(t, _)| *t <= now);
                (zone.as_str(), &rows[lo..hi.max(lo)])
            })
    }

    /// The failing zones of `region` at `now` (results after `after` only), if there are at
    /// least `min_unhealthy_zones` of them.
    pub fn down(
        &self,
        policy: &FailoverPolicy,
        region: &str,
        after: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<Vec<ZoneEvidence>> {
        let threshold = policy.failure_threshold as usize;
        let window_start = now - TimeDelta::seconds(i64::from(policy.evaluation_window_s));
        let failing: Vec<ZoneEvidence> = self
            .zones_of(region, after, now)
            .filter_map(|(zone, rows)| {
                let last = rows.get(rows.len().checked_sub(threshold)?..)?;
                let failing = last.iter().all(|(t, ok)| !ok && *t > window_start);
                failing.then(|| ZoneEvidence {
                    zone: zone.to_owned(),
                    failures: last.iter().map(|(t, _)| *t).collect(),
                })
            })
            .collect();
        (failing.len() >= policy.min_unhealthy_zones as usize).then_some(failing)
    }

    /// Since when every reporting zone of `region` has had only healthy results (results after
    /// `after` only); `None` if a zone's latest result failed or nothing was reported.
    pub fn healthy_since(
        &self,
        region: &str,
        after: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut since: Option<DateTime<Utc>> = None;
        for (_, rows) in self.zones_of(region, after, now) {
            let (_, last_ok) = *rows.last()?;
            if !last_ok {
                return None;
            }
            let first_healthy = rows
                .iter()
                .rposition(|(_, ok)| !ok)
                .map_or(rows[0].0, |i| rows[i + 1].0);
            since = Some(since.map_or(first_healthy, |s| s.max(first_healthy)));
        }
        since
    }
}

/// What a tenant's policy calls for at `now`, given which region serves it, whether automatic
/// action is held, and when it last switched (results from before that never count again).
pub fn decide(
    policy: &FailoverPolicy,
    history: &HealthHistory,
    serving: Serving,
    held: bool,
    last_transition: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Decision {
    if held {
        return Decision::Stay;
    }
    let primary = policy.primary_region.as_str();
    match serving {
        Serving::Primary => history
            .down(policy, primary, last_transition, now)
            .map_or(Decision::Stay, Decision::FailOver),
        Serving::Secondary => {
            if !policy.auto_failback {
                return Decision::Stay;
            }
            let delay = TimeDelta::seconds(i64::from(policy.failback_after_s));
            match history.healthy_since(primary, last_transition, now) {
                Some(since) if now - since >= delay => Decision::FailBack {
                    healthy_since: since,
                },
                _ => Decision::Stay,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).expect("time")
    }

    fn policy(threshold: u32, window: u32, zones: u32, failback: u32) -> FailoverPolicy {
        FailoverPolicy::new(
            TenantId::new("acme").expect("id"),
            "eu-west-1",
            "eu-central-1",
            threshold,
            window,
            zones,
            failback,
            true,
            vec![],
        )
        .expect("policy")
    }

    fn check(h: &mut HealthHistory, zone: &str, healthy: bool, at: i64) {
        let r = HealthCheckResult::new(
            TenantId::new("acme").expect("id"),
            "eu-west-1",
            zone,
            healthy,
            t(at),
            None,
        )
        .expect("result");
        h.record(&r);
    }

    #[test]
    fn a_region_goes_down_only_on_enough_zones_failing_enough_times() {
        let p = policy(3, 60, 2, 300);
        let mut h = HealthHistory::new();
        for (i, at) in [0, 10, 20].iter().enumerate() {
            check(&mut h, "a", false, *at);
            if i < 2 {
                check(&mut h, "b", false, *at);
            }
        }
        // Zone a has 3 failures, zone b only 2: not down.
        assert_eq!(
            decide(&p, &h, Serving::Primary, false, None, t(20)),
            Decision::Stay
        );
        check(&mut h, "b", false, 30);
        match decide(&p, &h, Serving::Primary, false, None, t(30)) {
            Decision::FailOver(evidence) => {
                assert_eq!(evidence.len(), 2);
                assert_eq!(evidence[1].failures, vec![t(0), t(10), t(30)]);
            }
            other => panic!("expected a failover, got {other:?}"),
        }
        // Held: nothing; failures older than the window: nothing.
        assert_eq!(
            decide(&p, &h, Serving::Primary, true, None, t(30)),
            Decision::Stay
        );
        assert_eq!(
            decide(&p, &h, Serving::Primary, false, None, t(200)),
            Decision::Stay
        );
        // Failures from before the last transition never count again.
        assert_eq!(
            decide(&p, &h, Serving::Primary, false, Some(t(30)), t(31)),
            Decision::Stay
        );
    }

    #[test]
    fn a_blip_in_between_resets_the_count() {
        let p = policy(3, 60, 1, 300);
        let mut h = HealthHistory::new();
        for (healthy, at) in [
            (false, 0),
            (false, 10),
            (true, 20),
            (false, 30),
            (false, 40),
        ] {
            check(&mut h, "a", healthy, at);
        }
        assert_eq!(
            decide(&p, &h, Serving::Primary, false, None, t(40)),
            Decision::Stay
        );
    }

    #[test]
    fn failback_waits_for_the_whole_delay_of_health() {
        let p = policy(1, 60, 1, 300);
        let mut h = HealthHistory::new();
        check(&mut h, "a", false, 0);
        check(&mut h, "a", true, 100);
        check(&mut h, "b", true, 250);
        check(&mut h, "a", true, 399);
        assert_eq!(
            decide(&p, &h, Serving::Secondary, false, Some(t(0)), t(399)),
            Decision::Stay
        );
        check(&mut h, "a", true, 410);
        // Zone b only reported from 250: the region has been healthy since 250.
        assert_eq!(
            decide(&p, &h, Serving::Secondary, false, Some(t(0)), t(549)),
            Decision::Stay
        );
        assert_eq!(
            decide(&p, &h, Serving::Secondary, false, Some(t(0)), t(550)),
            Decision::FailBack {
                healthy_since: t(250)
            }
        );
        check(&mut h, "b", false, 560);
        assert_eq!(
            decide(&p, &h, Serving::Secondary, false, Some(t(0)), t(560)),
            Decision::Stay
        );
    }

    proptest::proptest! {
        /// Random health sequences: a failover is only ever decided on at least the policy's
        /// failures, and two automatic transitions are never closer than the failback delay.
        #[test]
        fn no_flapping(
            steps in proptest::collection::vec((0usize..3, proptest::bool::weighted(0.6), 1i64..40), 1..300),
            threshold in 1u32..5,
            zones in 1u32..3,
        ) {
            let p = policy(threshold, 60, zones, 120);
            let mut h = HealthHistory::new();
            let (mut serving, mut last): (Serving, Option<DateTime<Utc>>) = (Serving::Primary, None);
            let mut now = 0;
            for (zone, healthy, gap) in steps {
                now += gap;
                check(&mut h, ["a", "b", "c"][zone], healthy, now);
                match decide(&p, &h, serving, false, last, t(now)) {
                    Decision::Stay => {}
                    Decision::FailOver(evidence) => {
                        proptest::prop_assert_eq!(serving, Serving::Primary);
                        proptest::prop_assert!(evidence.len() >= zones as usize);
                        for e in &evidence {
                            proptest::prop_assert_eq!(e.failures.len(), threshold as usize);
                            proptest::prop_assert!(e.failures.iter().all(|f| *f > t(now - 60) && Some(*f) > last));
                        }
                        serving = Serving::Secondary;
                        last = Some(t(now));
                    }
                    Decision::FailBack { healthy_since } => {
                        proptest::prop_assert_eq!(serving, Serving::Secondary);
                        proptest::prop_assert!(t(now) - healthy_since >= TimeDelta::seconds(120));
                        proptest::prop_assert!(last.is_some_and(|l| t(now) - l >= TimeDelta::seconds(120)));
                        serving = Serving::Primary;
                        last = Some(t(now));
                    }
                }
            }
        }
    }
}
