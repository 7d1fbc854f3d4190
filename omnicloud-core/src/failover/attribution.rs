//! Billing attribution: where a resource ran over time, read from its tenant's failover plans,
//! and usage split between those regions.
//!
//! A resource runs in its home region (where it is registered) until a plan moves it. A plan's
//! promotion of the resource starts it in the plan's target region at the step's completion;
//! the region left keeps running, and is billed, until the plan completes (DNS switched,
//! traffic drained). Between the two both regions run: usage there is billed in both, as a
//! cloud bills both the old primary and the promoted standby. A plan that stopped part-way
//! leaves both regions running until a later plan completes.
//!
//! Splitting uses the same cumulative-share rounding as invoicing ([`Period`]), so the parts of
//! a record in regions that follow each other without overlap add up to exactly its quantity.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{FailoverReport, PlanStatus, StepAction};
use crate::billing::{Period, UsageRecord};
use crate::error::Result;

/// An interval during which a resource ran in one region: `[from, until)`, open-ended where
/// `None` (before any record / still running).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSpan {
    /// The region.
    pub region: String,
    /// When it started running there (`None`: since before any failover).
    pub from: Option<DateTime<Utc>>,
    /// When it stopped running there (`None`: still running).
    pub until: Option<DateTime<Utc>>,
}

/// Where `resource_id` ran: its spans in order of start, from the tenant's plans (`reports`,
/// in any order). Before any plan it ran in the region the first plan found it in, or in
/// `registered_region` (where the state has it now) if no plan moved it. Spans of different
/// regions overlap while a plan is between the resource's promotion and its own completion.
pub fn region_spans(
    reports: &[FailoverReport],
    resource_id: &str,
    registered_region: &str,
) -> Vec<RegionSpan> {
    // (time, opens?, region): a plan opens its target region at the promotion and closes the
    // region the resource ran in at completion (nothing moves if the two are the same).
    // Plans in the order they were made: events at one instant are applied plan by plan (a
    // failover and a failback in the same instant must not cancel out), and within a plan the
    // opening comes first, so a region is never briefly uncovered.
    let mut plans: Vec<&FailoverReport> = reports.iter().collect();
    plans.sort_by(|a, b| (a.initiated_at, &a.id).cmp(&(b.initiated_at, &b.id)));
    let mut events: Vec<(DateTime<Utc>, usize, bool, &str)> = Vec::new();
    let mut first: Option<&str> = None;
    for (seq, r) in plans.into_iter().enumerate() {
        let Some(step) = r
            .steps
            .iter()
            .find(|s| s.action == StepAction::Promote && s.target == resource_id)
        else {
            continue;
        };
        let source = step.source_region.as_deref().unwrap_or(&r.from_region);
        first.get_or_insert(source);
        let Some(promoted) = step.done_at else {
            continue;
        };
        if source == r.to_region {
            continue;
        }
        events.push((promoted, seq, true, &r.to_region));
        if r.status == PlanStatus::Completed
            && let Some(done) = r.completed_at
        {
            events.push((done, seq, false, source));
        }
    }
    let home_region = first.unwrap_or(registered_region);
    events.sort_by_key(|&(at, seq, opens, _)| (at, seq, !opens));
    let mut open: BTreeMap<&str, Option<DateTime<Utc>>> = BTreeMap::new();
    open.insert(home_region, None);
    let mut spans = Vec::new();
    for (at, _, opens, region) in events {
        if opens {
            open.entry(region).or_insert(Some(at));
        } else if let Some(from) = open.remove(region) {
            spans.push(RegionSpan {
                region: region.to_owned(),
                from,
                until: Some(at),
            });
        }
    }
    spans.extend(open.into_iter().map(|(region, from)| RegionSpan {
        region: region.to_owned(),
        from,
        until: None,
    }));
    spans.sort_by(|a, b| (a.from, &a.region).cmp(&(b.from, &b.region)));
    spans
}

/// `record` split across `spans`: one record per span it overlaps, over the overlap, with the
/// share of the quantity that falls there, in the span's region. An instantaneous record goes
/// whole to every span containing its instant. Parts with nothing in them are left out.
pub fn attribute_usage(record: &UsageRecord, spans: &[RegionSpan]) -> Result<Vec<UsageRecord>> {
    let (start_us, end_us) = (
        record.start.timestamp_micros(),
        record.end.timestamp_micros(),
    );
    let mut parts = Vec::new();
    for span in spans {
        let lo = span.from.map_or(record.start, |f| f.max(record.start));
        let hi = span.until.map_or(record.end, |u| u.min(record.end));
        let (quantity, start, end) = if start_us == end_us {
            let inside = span.from.is_none_or(|f| f <= record.start)
                && span.until.is_none_or(|u| record.start < u);
            if !inside {
                continue;
            }
            (record.quantity, record.start, record.end)
        } else {
            if hi <= lo {
                continue;
            }
            let share = Period::new(lo, hi)?.prorate(record.quantity, start_us, end_us)?;
            (share, lo, hi)
        };
        if quantity.is_zero() && !record.quantity.is_zero() {
            continue;
        }
        parts.push(UsageRecord {
            region: span.region.clone(),
            quantity,
            start,
            end,
            ..record.clone()
        });
    }
    Ok(parts)
}
