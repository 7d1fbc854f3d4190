//! The failover controller: per-tenant policies, health results, holds and the plans they
//! lead to.
//!
//! Tenants are independent: each has its own policy, history, hold and serving region, kept in
//! the store (`failover_tenants`) so a restarted controller knows where each tenant is served
//! and resumes any interrupted plan first. Automatic action follows [`decide`]; manual failover
//! and failback work whatever the health says (and whether or not the tenant is held).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::attribution::{RegionSpan, attribute_usage, region_spans};
use super::{
    Decision, FailoverPolicy, FailoverReport, HealthCheck, HealthCheckResult, HealthHistory,
    HealthProbe, PlanExecutor, PlanStatus, ProbeOutcome, Serving, TransitionKind, decide,
};
use crate::billing::{BillingService, UsageRecord};
use crate::clock::SharedClock;
use crate::error::{BillingError, Error, FailoverError, Result, StoreError};
use crate::ids::{TenantId, validate_display_text};
use crate::store::{Store, format_timestamp};

/// Longest accepted operator name or reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Where a tenant stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverStatus {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The region serving it.
    pub serving_region: String,
    /// Whether that is the policy's primary.
    pub on_primary: bool,
    /// Whether automatic action is held.
    pub held: bool,
    /// When it last failed over or back.
    pub last_transition: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct TenantState {
    policy: FailoverPolicy,
    history: HealthHistory,
    serving: Serving,
    held: bool,
    last_transition: Option<DateTime<Utc>>,
}

impl TenantState {
    fn status(&self) -> FailoverStatus {
        let on_primary = self.serving == Serving::Primary;
        FailoverStatus {
            tenant_id: self.policy.tenant_id.clone(),
            serving_region: if on_primary {
                self.policy.primary_region.clone()
            } else {
                self.policy.secondary_region.clone()
            },
            on_primary,
            held: self.held,
            last_transition: self.last_transition,
        }
    }
}

/// Failover for many tenants over one store; see the module documentation.
#[derive(Debug)]
pub struct FailoverController {
    store: Store,
    clock: SharedClock,
    executor: PlanExecutor,
    tenants: Mutex<BTreeMap<String, TenantState>>,
    billing: Option<Arc<BillingService>>,
}

impl FailoverController {
    /// A controller over `store`, executing plans with `executor` (over the same store);
    /// tenants' policies and serving regions are loaded from the store.
    pub fn new(store: Store, clock: SharedClock, executor: PlanExecutor) -> Result<Self> {
        let rows: Vec<(String, String, String, bool, Option<String>)> = store.read(|c| {
            let mut stmt = c.prepare(
                "SELECT tenant_id, policy, serving, held, last_transition FROM failover_tenants",
            )?;
            stmt.query_map([], |r| r.try_into())?.collect()
        })?;
        let decode = |column: &'static str, reason: String| -> Error {
            StoreError::Decode {
                path: store.label().to_path_buf(),
                table: "failover_tenants",
                column,
                reason,
            }
            .into()
        };
        let mut tenants = BTreeMap::new();
        for (id, policy, serving, held, last) in rows {
            let policy: FailoverPolicy =
                serde_json::from_str(&policy).map_err(|e| decode("policy", e.to_string()))?;
            let serving = match serving.as_str() {
                "primary" => Serving::Primary,
                "secondary" => Serving::Secondary,
                other => return Err(decode("serving", format!("unknown {other:?}"))),
            };
            let last_transition = last
                .map(|t| store.decode_time("failover_tenants", "last_transition", &t))
                .transpose()?;
            tenants.insert(
                id,
                TenantState {
                    policy,
                    history: HealthHistory::new(),
                    serving,
                    held,
                    last_transition,
                },
            );
        }
        Ok(Self {
            store,
            clock,
            executor,
            tenants: Mutex::new(tenants),
            billing: None,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TenantState>> {
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn persist(&self, t: &TenantState) -> Result<()> {
        let policy =
            serde_json::to_string(&t.policy).map_err(|e| FailoverError::InvalidPolicy {
                tenant_id: t.policy.tenant_id.to_string(),
                reason: format!("cannot encode: {e}"),
            })?;
        self.store.write(|tx| -> Result<()> {
            tx.execute(
                "INSERT INTO failover_tenants (tenant_id, policy, serving, held, last_transition)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy,
                     serving = excluded.serving, held = excluded.held,
                     last_transition = excluded.last_transition",
                params![
                    t.policy.tenant_id.as_str(),
                    policy,
                    serving_name(t.serving),
                    t.held,
                    t.last_transition.map(format_timestamp)
                ],
            )
            .map_err(|e| Error::Store(self.store.sqlite_error(e)))?;
            Ok(())
        })
    }

    /// Sets (or replaces) a tenant's policy. Where the tenant is served and its hold are kept.
    pub fn set_policy(&self, policy: FailoverPolicy) -> Result<()> {
        let mut tenants = self.lock();
        let key = policy.tenant_id.to_string();
        let state = match tenants.remove(&key) {
            Some(mut s) => {
                s.policy = policy;
                s
            }
            None => TenantState {
                policy,
                history: HealthHistory::new(),
                serving: Serving::Primary,
                held: false,
                last_transition: None,
            },
        };
        let persisted = self.persist(&state);
        tenants.insert(key, state);
        persisted
    }

    /// Runs active `checks` through `probe` (concurrently, as the probe does), stamps each
    /// outcome with the clock's time once all are in, and records it like a reported result.
    /// Every check's tenant and region are checked against the policies before any probe runs.
    pub fn probe(
        &self,
        probe: &dyn HealthProbe,
        checks: &[HealthCheck],
    ) -> Result<Vec<(HealthCheckResult, ProbeOutcome)>> {
        {
            let tenants = self.lock();
            for c in checks {
                let policy = &tenants
                    .get(c.tenant_id.as_str())
                    .ok_or_else(|| no_policy(&c.tenant_id))?
                    .policy;
                check_region(policy, &c.region)?;
            }
        }
        let outcomes = probe.run(checks);
        let now = self.clock.now();
        let mut results = Vec::with_capacity(checks.len());
        for (c, outcome) in checks.iter().zip(outcomes) {
            let result = HealthCheckResult::new(
                c.tenant_id.clone(),
                &c.region,
                &c.zone,
                outcome.healthy,
                now,
                c.resource_id.clone(),
            )?;
            self.record_health(&result)?;
            results.push((result, outcome));
        }
        Ok(results)
    }

    /// Adds a health result; its region must be one of the tenant's policy.
    pub fn record_health(&self, result: &HealthCheckResult) -> Result<()> {
        let mut tenants = self.lock();
        let state = tenants
            .get_mut(result.tenant_id.as_str())
            .ok_or_else(|| no_policy(&result.tenant_id))?;
        check_region(&state.policy, &result.region)?;
        state.history.record(result);
        Ok(())
    }

    /// Resumes interrupted plans, then acts on every tenant's health at the clock's now.
    /// Returns the reports of the plans run.
    pub fn evaluate(&self) -> Result<Vec<FailoverReport>> {
        let now = self.clock.now();
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        let mut reports = Vec::new();
        for id in ids {
            let tenant = TenantId::new(id)?;
            if let Some(open) = self.executor.open_plan(&tenant)? {
                reports.push(self.run(&tenant, &open.id)?);
                continue;
            }
            let decision = {
                let tenants = self.lock();
                let Some(s) = tenants.get(tenant.as_str()) else {
                    continue;
                };
                decide(
                    &s.policy,
                    &s.history,
                    s.serving,
                    s.held,
                    s.last_transition,
                    now,
                )
            };
            let (kind, trigger) = match decision {
                Decision::Stay => continue,
                Decision::FailOver(evidence) => (
                    TransitionKind::Failover,
                    json!({"automatic": true, "condition": "primary region down", "health": evidence}),
                ),
                Decision::FailBack { healthy_since } => (
                    TransitionKind::Failback,
                    json!({"automatic": true, "condition": "primary healthy for the failback delay",
                           "healthy_since": healthy_since}),
                ),
            };
            reports.push(self.start(&tenant, kind, trigger)?);
        }
        Ok(reports)
    }

    /// Fails the tenant over now, whatever its health says (an emergency override).
    pub fn failover(
        &self,
        tenant_id: &TenantId,
        operator: &str,
        reason: &str,
    ) -> Result<FailoverReport> {
        self.manual(tenant_id, TransitionKind::Failover, operator, reason)
    }

    /// Fails the tenant back to its primary now.
    pub fn failback(
        &self,
        tenant_id: &TenantId,
        operator: &str,
        reason: &str,
    ) -> Result<FailoverReport> {
        self.manual(tenant_id, TransitionKind::Failback, operator, reason)
    }

    fn manual(
        &self,
        tenant_id: &TenantId,
        kind: TransitionKind,
        operator: &str,
        reason: &str,
    ) -> Result<FailoverReport> {
        validate_display_text("operator", operator, MAX_REASON_CHARS)?;
        validate_display_text("reason", reason, MAX_REASON_CHARS)?;
        let serving = self
            .lock()
            .get(tenant_id.as_str())
            .map(|s| s.serving)
            .ok_or_else(|| no_policy(tenant_id))?;
        let already = match kind {
            TransitionKind::Failover => serving == Serving::Secondary,
            TransitionKind::Failback => serving == Serving::Primary,
        };
        if already {
            return Err(FailoverError::AlreadyThere {
                tenant_id: tenant_id.to_string(),
                kind: kind.as_str(),
            }
            .into());
        }
        if let Some(open) = self.executor.open_plan(tenant_id)? {
            return Err(FailoverError::PlanInProgress {
                tenant_id: tenant_id.to_string(),
                plan_id: open.id,
            }
            .into());
        }
        self.start(
            tenant_id,
            kind,
            json!({"automatic": false, "operator": operator, "reason": reason}),
        )
    }

    fn start(
        &self,
        tenant: &TenantId,
        kind: TransitionKind,
        trigger: Value,
    ) -> Result<FailoverReport> {
        let policy = self
            .lock()
            .get(tenant.as_str())
            .map(|s| s.policy.clone())
            .ok_or_else(|| no_policy(tenant))?;
        let plan = self.executor.plan(&policy, kind, trigger)?;
        self.run(tenant, &plan.id)
    }

    /// Executes a persisted plan; on completion the tenant is served from the plan's target.
    fn run(&self, tenant: &TenantId, plan_id: &str) -> Result<FailoverReport> {
        let policy = self
            .lock()
            .get(tenant.as_str())
            .map(|s| s.policy.clone())
            .ok_or_else(|| no_policy(tenant))?;
        // Where the tenant is served is written in the transaction that completes the plan
        // (when both live in one database), so a crash cannot separate the two.
        let same_database = self.executor.store().same_database(&self.store);
        let report = self.executor.execute_with(plan_id, &policy, |tx, report| {
            if same_database {
                self.record_serving(tx, report)?;
            }
            Ok(())
        })?;
        if report.status == PlanStatus::Completed {
            if !same_database {
                self.store
                    .write(|tx| -> Result<()> { self.record_serving(tx, &report) })?;
            }
            let mut tenants = self.lock();
            if let Some(s) = tenants.get_mut(tenant.as_str()) {
                s.serving = serving_after(report.kind);
                s.last_transition = report.completed_at;
            }
        }
        Ok(report)
    }

    /// Writes the serving region and last transition a completed plan leaves its tenant with.
    fn record_serving(
        &self,
        tx: &rusqlite::Transaction<'_>,
        report: &FailoverReport,
    ) -> Result<()> {
        tx.execute(
            "UPDATE failover_tenants SET serving = ?2, last_transition = ?3 WHERE tenant_id = ?1",
            params![
                report.tenant_id.as_str(),
                serving_name(serving_after(report.kind)),
                report.completed_at.map(format_timestamp)
            ],
        )
        .map_err(|e| Error::Store(self.store.sqlite_error(e)))?;
        Ok(())
    }

    /// Suppresses automatic action for the tenant (manual commands still work).
    pub fn hold(&self, tenant_id: &TenantId) -> Result<FailoverStatus> {
        self.set_hold(tenant_id, true)
    }

    /// Lets automatic action resume.
    pub fn release_hold(&self, tenant_id: &TenantId) -> Result<FailoverStatus> {
        self.set_hold(tenant_id, false)
    }

    fn set_hold(&self, tenant_id: &TenantId, held: bool) -> Result<FailoverStatus> {
        let mut tenants = self.lock();
        let s = tenants
            .get_mut(tenant_id.as_str())
            .ok_or_else(|| no_policy(tenant_id))?;
        s.held = held;
        self.persist(s)?;
        Ok(s.status())
    }

    /// The tenant's policy.
    pub fn policy(&self, tenant_id: &TenantId) -> Result<FailoverPolicy> {
        self.lock()
            .get(tenant_id.as_str())
            .map(|s| s.policy.clone())
            .ok_or_else(|| no_policy(tenant_id))
    }

    /// Where the tenant stands.
    pub fn status(&self, tenant_id: &TenantId) -> Result<FailoverStatus> {
        self.lock()
            .get(tenant_id.as_str())
            .map(TenantState::status)
            .ok_or_else(|| no_policy(tenant_id))
    }

    /// The tenant's plans, oldest first.
    pub fn reports(&self, tenant_id: &TenantId) -> Result<Vec<FailoverReport>> {
        self.executor.reports(tenant_id)
    }

    /// The same controller, attributing usage through `billing` ([`Self::record_usage`]).
    pub fn with_billing(mut self, billing: Arc<BillingService>) -> Self {
        self.billing = Some(billing);
        self
    }

    /// Where a registered resource ran: its region spans from its tenant's plans (see
    /// [`region_spans`]).
    pub fn region_history(&self, resource_id: &str) -> Result<Vec<RegionSpan>> {
        let resource = self.executor.state().get(resource_id)?;
        let reports = self.executor.reports(&resource.tenant_id)?;
        Ok(region_spans(&reports, &resource.id, &resource.region))
    }

    /// Records usage with each record of a resource attributed to the regions the resource
    /// actually ran in over the record's interval (both regions during a failover's overlap);
    /// a record without a resource is recorded as given. All records are written in one
    /// transaction; returns what was written.
    pub fn record_usage(&self, records: &[UsageRecord]) -> Result<Vec<UsageRecord>> {
        let billing = self
            .billing
            .as_ref()
            .ok_or(FailoverError::BillingNotConfigured)?;
        let mut reports: HashMap<TenantId, Vec<FailoverReport>> = HashMap::new();
        let mut spans: HashMap<&str, Vec<RegionSpan>> = HashMap::new();
        let mut attributed = Vec::with_capacity(records.len());
        for record in records {
            let Some(resource_id) = record.resource_id.as_deref() else {
                attributed.push(record.clone());
                continue;
            };
            if !spans.contains_key(resource_id) {
                let resource = self.executor.state().get(resource_id)?;
                if resource.tenant_id != record.tenant_id {
                    return Err(BillingError::Invalid {
                        what: "usage",
                        reason: format!(
                            "resource {resource_id} belongs to {}, not {}",
                            resource.tenant_id, record.tenant_id
                        ),
                    }
                    .into());
                }
                let plans = match reports.entry(resource.tenant_id.clone()) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(self.executor.reports(&resource.tenant_id)?)
                    }
                };
                spans.insert(
                    resource_id,
                    region_spans(plans, resource_id, &resource.region),
                );
            }
            attributed.extend(attribute_usage(record, &spans[resource_id])?);
        }
        billing.record_usage_many(&attributed)?;
        Ok(attributed)
    }
}

/// Where a tenant is served once a plan of `kind` completes.
fn serving_after(kind: TransitionKind) -> Serving {
    match kind {
        TransitionKind::Failover => Serving::Secondary,
        TransitionKind::Failback => Serving::Primary,
    }
}

/// The stored name of a serving region.
fn serving_name(serving: Serving) -> &'static str {
    match serving {
        Serving::Primary => "primary",
        Serving::Secondary => "secondary",
    }
}

/// Refuses a region that is neither the policy's primary nor its secondary.
fn check_region(p: &FailoverPolicy, region: &str) -> Result<()> {
    if region != p.primary_region && region != p.secondary_region {
        return Err(FailoverError::InvalidHealthResult {
            reason: format!(
                "region {} is neither {}'s primary ({}) nor its secondary ({})",
                region, p.tenant_id, p.primary_region, p.secondary_region
            ),
        }
        .into());
    }
    Ok(())
}

fn no_policy(tenant: &TenantId) -> Error {
    FailoverError::NoPolicy {
        tenant_id: tenant.to_string(),
    }
    .into()
}
