//! Failover plans: built from the dependency graph, persisted before they run, executed step by
//! step with each completion written down, so a controller that dies mid-way resumes the plan
//! without repeating a completed step or skipping one.
//!
//! A plan promotes the tenant's resources of the region it leaves, in dependency order
//! (databases before the application servers that need them, before the load balancers in
//! front), in the region it goes to; then it switches every DNS record of the policy. A step
//! that fails is retried; if it still fails the plan stops in a reported state.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DnsProvider, FailoverPolicy, ResourceController};
use crate::audit::{AuditLog, AuditRecord};
use crate::clock::SharedClock;
use crate::error::{Error, Result, StoreError};
use crate::ids::{TenantId, generate_id};
use crate::state::{DependencyResolver, Resource, StateManager};
use crate::store::{Store, format_timestamp};

/// Failover (primary to secondary) or failback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// Away from the primary region.
    Failover,
    /// Back to the primary region.
    Failback,
}

impl TransitionKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::Failback => "failback",
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// Promote the resource's standby in the target region.
    Promote,
    /// Switch a DNS record to the target region's value.
    SwitchDns,
}

impl StepAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::SwitchDns => "switch_dns",
        }
    }
}

/// One step of a plan and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// Its position in the plan (0-based).
    pub position: u32,
    /// What it does.
    pub action: StepAction,
    /// The resource promoted, or the DNS record's name.
    pub target: String,
    /// For a promotion, the region the resource ran in when the plan was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_region: Option<String>,
    /// When it completed.
    pub done_at: Option<DateTime<Utc>>,
    /// How many times it was tried.
    pub attempts: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
}

/// Where a plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Not finished (running, or interrupted and waiting to be resumed).
    Running,
    /// Every step done.
    Completed,
    /// A step failed every attempt; the plan stopped there.
    Stopped,
}

impl PlanStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Stopped => "stopped",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "stopped" => Some(Self::Stopped),
            _ => None,
        }
    }
}

/// A persisted plan and its outcome so far: the failover report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverReport {
    /// The plan's id.
    pub id: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// Failover or failback.
    pub kind: TransitionKind,
    /// The region left.
    pub from_region: String,
    /// The region that serves afterwards.
    pub to_region: String,
    /// What triggered it: the health evidence, or the operator and reason.
    pub trigger: Value,
    /// The steps, in order.
    pub steps: Vec<PlanStep>,
    /// When the plan was persisted.
    pub initiated_at: DateTime<Utc>,
    /// When the last DNS record was switched.
    pub dns_updated_at: Option<DateTime<Utc>>,
    /// When the last step completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub status: PlanStatus,
}

impl FailoverReport {
    /// Seconds from initiation to the DNS switch.
    pub fn dns_delay_s(&self) -> Option<f64> {
        self.dns_updated_at
            .map(|d| (d - self.initiated_at).as_seconds_f64())
    }
}

/// How many steps of one wave run at once by default (Terraform's default parallelism is 10).
pub const DEFAULT_PARALLELISM: usize = 16;

/// What every step of one execution shares.
struct StepContext<'a> {
    policy: &'a FailoverPolicy,
    kind: TransitionKind,
    region: &'a str,
    resources: &'a HashMap<String, Arc<Resource>>,
}

/// How one step went, as a worker reports it.
struct StepOutcome {
    position: u32,
    attempts: u32,
    result: std::result::Result<(), String>,
    at: DateTime<Utc>,
}

/// The plan's steps grouped into waves that run one after the other: each promotion goes in
/// the wave after the latest of its dependencies among the plan's promotions (so a wave's
/// steps depend on none of each other), and the DNS switches form the last wave. Indexes into
/// `steps`; waves and their steps in plan order.
fn waves(steps: &[PlanStep], resources: &HashMap<String, Arc<Resource>>) -> Vec<Vec<usize>> {
    let mut wave_of: HashMap<&str, usize> = HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    let mut dns = Vec::new();
    // Steps are in topological order: a dependency's wave is known before its dependents'.
    for (i, step) in steps.iter().enumerate() {
        match step.action {
            StepAction::Promote => {
                let wave = resources.get(&step.target).map_or(0, |r| {
                    r.depends_on
                        .iter()
                        .filter_map(|d| wave_of.get(d.as_str()))
                        .map(|w| w + 1)
                        .max()
                        .unwrap_or(0)
                });
                wave_of.insert(&step.target, wave);
                if waves.len() <= wave {
                    waves.resize_with(wave + 1, Vec::new);
                }
                waves[wave].push(i);
            }
            StepAction::SwitchDns => dns.push(i),
        }
    }
    waves.push(dns);
    waves
}

/// Builds, persists and executes plans.
pub struct PlanExecutor {
    store: Store,
    clock: SharedClock,
    state: Arc<StateManager>,
    resources: Arc<dyn ResourceController>,
    dns: Arc<dyn DnsProvider>,
    audit: Option<AuditLog>,
    max_attempts: u32,
    parallelism: usize,
}

impl std::fmt::Debug for PlanExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanExecutor")
            .field("store", &self.store)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl PlanExecutor {
    /// An executor writing plans to `store`, reading resources from `state`, acting through
    /// `resources` and `dns`, and recording every event in `audit` if given. Steps are tried
    /// three times.
    pub fn new(
        store: Store,
        clock: SharedClock,
        state: Arc<StateManager>,
        resources: Arc<dyn ResourceController>,
        dns: Arc<dyn DnsProvider>,
        audit: Option<AuditLog>,
    ) -> Self {
        Self {
            store,
            clock,
            state,
            resources,
            dns,
            audit,
            max_attempts: 3,
            parallelism: DEFAULT_PARALLELISM,
        }
    }

    /// The same executor running up to `steps` steps of a wave at once (at least one).
    pub fn with_parallelism(mut self, steps: usize) -> Self {
        self.parallelism = steps.max(1);
        self
    }

    /// The same executor trying each step up to `attempts` times (at least once).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The store the plans are kept in.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The state manager whose resources the plans move.
    pub(crate) fn state(&self) -> &StateManager {
        &self.state
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        |e| Error::Store(self.store.sqlite_error(e))
    }

    /// Builds and persists a plan (nothing is executed yet): the tenant's resources in the
    /// region left, in dependency order, then the policy's DNS records.
    pub fn plan(
        &self,
        policy: &FailoverPolicy,
        kind: TransitionKind,
        trigger: Value,
    ) -> Result<FailoverReport> {
        let (from, to) = match kind {
            TransitionKind::Failover => (&policy.primary_region, &policy.secondary_region),
            TransitionKind::Failback => (&policy.secondary_region, &policy.primary_region),
        };
        let tenant = &policy.tenant_id;
        // The tenant's resources in the two regions, ordered by their dependencies among
        // themselves (a dependency elsewhere, or not registered yet, does not hold them back).
        let moving: Vec<_> = self
            .state
            .list(Some(tenant), None)?
            .into_iter()
            .filter(|r| r.region == *from || r.region == *to)
            .collect();
        let ids: std::collections::HashSet<&str> = moving.iter().map(|r| r.id.as_str()).collect();
        let mut graph = DependencyResolver::new();
        for r in &moving {
            let deps = r.depends_on.iter().filter(|d| ids.contains(d.as_str()));
            graph.add(&r.id, deps)?;
        }
        let order = graph.topological_order()?;
        let region_of: HashMap<&str, &str> = moving
            .iter()
            .map(|r| (r.id.as_str(), r.region.as_str()))
            .collect();
        let steps: Vec<PlanStep> = order
            .into_iter()
            .map(|id| {
                let source = region_of.get(id.as_str()).map(|r| (*r).to_owned());
                (StepAction::Promote, id, source)
            })
            .chain(
                policy
                    .dns_records
                    .iter()
                    .map(|r| (StepAction::SwitchDns, r.name.clone(), None)),
            )
            .enumerate()
            .map(|(i, (action, target, source_region))| PlanStep {
                position: u32::try_from(i).unwrap_or(u32::MAX),
                action,
                target,
                source_region,
                done_at: None,
                attempts: 0,
                last_error: None,
            })
            .collect();
        let report = FailoverReport {
            id: generate_id(),
            tenant_id: tenant.clone(),
            kind,
            from_region: from.clone(),
            to_region: to.clone(),
            trigger,
            steps,
            initiated_at: self.clock.now(),
            dns_updated_at: None,
            completed_at: None,
            status: PlanStatus::Running,
        };
        let initiated = self.audit_record(&report, "failover.initiated", None, |r| {
            serde_json::json!({
                "kind": r.kind.as_str(),
                "from_region": r.from_region,
                "to_region": r.to_region,
                "trigger": r.trigger,
                "steps": r.steps.len(),
            })
        });
        // The plan, its steps and the `failover.initiated` entry (the only record of the
        // trigger) commit together.
        self.write_audited(initiated.into_iter().collect(), |tx| {
            tx.execute(
                "INSERT INTO failover_plans (id, tenant_id, kind, from_region, to_region, trigger,
                     initiated_at, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running')",
                params![
                    report.id,
                    tenant.as_str(),
                    kind.as_str(),
                    from,
                    to,
                    report.trigger.to_string(),
                    format_timestamp(report.initiated_at)
                ],
            )
            .map_err(self.sql())?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO failover_steps (plan_id, position, kind, target, source_region,
                         attempts) VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                )
                .map_err(self.sql())?;
            for s in &report.steps {
                insert
                    .execute(params![
                        report.id,
                        s.position,
                        s.action.as_str(),
                        s.target,
                        s.source_region
                    ])
                    .map_err(self.sql())?;
            }
            Ok(())
        })?;
        Ok(report)
    }

    /// Runs the plan's remaining steps: the promotions wave by wave in dependency order (the
    /// steps of one wave depend on none of each other and run concurrently, up to the
    /// executor's parallelism), then the DNS switches. Completions are written as they arrive
    /// (those that arrive together share a commit) and always before any step that depends on
    /// them starts; at most twice the parallelism of completed steps are unwritten at any
    /// moment, which bounds what a crash makes the resumed plan repeat. Returns the report:
    /// completed, or stopped after a wave in which a step failed every attempt.
    pub fn execute(&self, plan_id: &str, policy: &FailoverPolicy) -> Result<FailoverReport> {
        self.execute_with(plan_id, policy, |_, _| Ok(()))
    }

    /// [`Self::execute`], with `on_complete` writing in the same transaction that marks the
    /// plan completed (the controller records the tenant's new serving region there, so a
    /// crash can never leave a completed plan with the tenant still recorded where it was).
    pub(crate) fn execute_with(
        &self,
        plan_id: &str,
        policy: &FailoverPolicy,
        on_complete: impl FnOnce(&Transaction<'_>, &FailoverReport) -> Result<()>,
    ) -> Result<FailoverReport> {
        let mut report = self.load(plan_id)?;
        if report.status != PlanStatus::Running {
            return Ok(report);
        }
        let target_region = report.to_region.clone();
        // The tenant's resources, read once (not once per step).
        let resources: HashMap<String, Arc<Resource>> = self
            .state
            .list(Some(&report.tenant_id), None)?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let run = StepContext {
            policy,
            kind: report.kind,
            region: &target_region,
            resources: &resources,
        };
        for wave in waves(&report.steps, &resources) {
            let pending: Vec<usize> = wave
                .into_iter()
                .filter(|&i| report.steps[i].done_at.is_none())
                .collect();
            if pending.is_empty() {
                continue;
            }
            if let Some(failed) = self.run_wave(&mut report, &pending, &run)? {
                return self.stop(report, failed);
            }
        }
        // Every step done: the state records where the moved resources run now (idempotent, so
        // a crash before the plan is marked completed just repeats it on resume).
        let moved: Vec<Arc<Resource>> = report
            .steps
            .iter()
            .filter(|s| s.action == StepAction::Promote)
            .filter_map(|s| resources.get(&s.target).cloned())
            .collect();
        self.state.relocate(&moved, &target_region)?;
        let now = self.clock.now();
        let dns_at = report
            .steps
            .iter()
            .filter(|s| s.action == StepAction::SwitchDns)
            .filter_map(|s| s.done_at)
            .max();
        (report.dns_updated_at, report.completed_at, report.status) =
            (dns_at, Some(now), PlanStatus::Completed);
        let completed = self.audit_record(&report, "failover.completed", None, |r| {
            serde_json::json!({
                "kind": r.kind.as_str(),
                "to_region": r.to_region,
                "dns_delay_s": r.dns_delay_s(),
            })
        });
        // Completion, its audit entry and the caller's record of it commit together.
        self.write_audited(completed.into_iter().collect(), |tx| {
            self.update_plan(tx, &report.id, PlanStatus::Completed, dns_at, Some(now))?;
            on_complete(tx, &report)
        })?;
        Ok(report)
    }

    /// Runs the `pending` steps of one wave on up to `parallelism` threads, each step retried
    /// up to `max_attempts` times. The calling thread writes outcomes as they arrive, every
    /// outcome that is waiting in one commit with its audit entries. Returns the position in
    /// `report.steps` of the first step (in plan order) that failed every attempt, if any.
    fn run_wave(
        &self,
        report: &mut FailoverReport,
        pending: &[usize],
        run: &StepContext<'_>,
    ) -> Result<Option<usize>> {
        let steps: Vec<PlanStep> = pending.iter().map(|&i| report.steps[i].clone()).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        // A bounded queue: workers wait while outcomes pile up, so at most twice the
        // parallelism of completed steps are ever unwritten (what a crash can make repeat).
        let workers = self.parallelism.min(steps.len());
        let (sender, outcomes) = std::sync::mpsc::sync_channel::<StepOutcome>(workers);
        std::thread::scope(|scope| -> Result<Option<usize>> {
            for _ in 0..workers {
                let sender = sender.clone();
                let (next, steps) = (&next, &steps);
                scope.spawn(move || {
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(step) = steps.get(k) else { break };
                        let outcome = self.attempt(step, run);
                        if sender.send(outcome).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(sender);
            let mut failed: Option<usize> = None;
            let mut written: Result<()> = Ok(());
            while let Ok(first) = outcomes.recv() {
                let mut batch = vec![first];
                batch.extend(outcomes.try_iter());
                if written.is_ok() {
                    written = self.record_outcomes(report, &batch);
                }
                for outcome in batch {
                    let i = usize::try_from(outcome.position).unwrap_or(usize::MAX);
                    let Some(step) = report.steps.get_mut(i) else {
                        continue;
                    };
                    step.attempts = outcome.attempts;
                    match outcome.result {
                        Ok(()) => (step.done_at, step.last_error) = (Some(outcome.at), None),
                        Err(message) => {
                            step.last_error = Some(message);
                            failed = Some(failed.map_or(i, |f| f.min(i)));
                        }
                    }
                }
            }
            written.map(|()| failed)
        })
    }

    /// Tries one step up to `max_attempts` times (counting attempts made before a crash).
    fn attempt(&self, step: &PlanStep, run: &StepContext<'_>) -> StepOutcome {
        let mut attempts = step.attempts;
        let mut result = Err(String::new());
        while attempts < step.attempts + self.max_attempts {
            attempts += 1;
            result = self.run_step(step, run);
            if result.is_ok() {
                break;
            }
        }
        StepOutcome {
            position: step.position,
            attempts,
            result,
            at: self.clock.now(),
        }
    }

    fn run_step(&self, step: &PlanStep, run: &StepContext<'_>) -> std::result::Result<(), String> {
        match step.action {
            StepAction::Promote => {
                let resource = run
                    .resources
                    .get(&step.target)
                    .ok_or_else(|| format!("resource {} is no longer registered", step.target))?;
                self.resources.promote(resource, run.region)
            }
            StepAction::SwitchDns => {
                let record = run
                    .policy
                    .dns_records
                    .iter()
                    .find(|r| r.name == step.target)
                    .ok_or_else(|| {
                        format!("the policy no longer has DNS record {}", step.target)
                    })?;
                let value = match run.kind {
                    TransitionKind::Failover => &record.secondary_value,
                    TransitionKind::Failback => &record.primary_value,
                };
                self.dns.set(record, value)
            }
        }
    }

    /// Writes a batch of outcomes in one commit: each completed step with its
    /// `failover.step` audit entry, each failed step's attempts and error.
    fn record_outcomes(&self, report: &FailoverReport, batch: &[StepOutcome]) -> Result<()> {
        let entries: Vec<AuditRecord> = batch
            .iter()
            .filter(|o| o.result.is_ok())
            .filter_map(|o| {
                let step = report
                    .steps
                    .get(usize::try_from(o.position).unwrap_or(usize::MAX))?;
                self.audit_record(report, "failover.step", Some(&step.target), |_| {
                    serde_json::json!({
                        "action": step.action.as_str(),
                        "position": step.position,
                        "attempts": o.attempts,
                    })
                })
            })
            .collect();
        self.write_audited(entries, |tx| {
            for o in batch {
                let (done_at, error) = match &o.result {
                    Ok(()) => (Some(o.at), None),
                    Err(message) => (None, Some(message.as_str())),
                };
                self.update_step(tx, &report.id, o.position, o.attempts, done_at, error)?;
            }
            Ok(())
        })
    }

    /// Marks the plan stopped at step `failed` (which failed every attempt), with its
    /// `failover.stopped` entry, in one commit.
    fn stop(&self, mut report: FailoverReport, failed: usize) -> Result<FailoverReport> {
        report.status = PlanStatus::Stopped;
        let step = report.steps[failed].clone();
        let error = step.last_error.clone().unwrap_or_default();
        let stopped = self.audit_record(
            &report,
            "failover.stopped",
            Some(&step.target),
            |_| serde_json::json!({"error": error, "attempts": step.attempts}),
        );
        self.write_audited(stopped.into_iter().collect(), |tx| {
            self.update_plan(tx, &report.id, PlanStatus::Stopped, None, None)
        })?;
        Ok(report)
    }

    fn update_step(
        &self,
        tx: &Transaction<'_>,
        plan: &str,
        position: u32,
        attempts: u32,
        done_at: Option<DateTime<Utc>>,
        error: Option<&str>,
    ) -> Result<()> {
        tx.prepare_cached(
            "UPDATE failover_steps SET attempts = ?3, done_at = ?4, last_error = ?5
             WHERE plan_id = ?1 AND position = ?2",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                plan,
                position,
                attempts,
                done_at.map(format_timestamp),
                error
            ])
        })
        .map_err(self.sql())?;
        Ok(())
    }

    fn update_plan(
        &self,
        tx: &Transaction<'_>,
        plan: &str,
        status: PlanStatus,
        dns_at: Option<DateTime<Utc>>,
        completed_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        tx.execute(
            "UPDATE failover_plans SET status = ?2, dns_updated_at = ?3, completed_at = ?4
             WHERE id = ?1",
            params![
                plan,
                status.as_str(),
                dns_at.map(format_timestamp),
                completed_at.map(format_timestamp)
            ],
        )
        .map_err(self.sql())?;
        Ok(())
    }

    /// Runs `body` in one write transaction with `entries` appended to the audit trail in the
    /// same transaction when the trail lives in the plan's store (else right after the
    /// commit: a trail in another database cannot share the transaction).
    fn write_audited<T>(
        &self,
        entries: Vec<AuditRecord>,
        body: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let now = self.clock.now();
        let (value, left) = self.store.write(|tx| -> Result<(T, Vec<AuditRecord>)> {
            let value = body(tx)?;
            let left = match &self.audit {
                Some(audit) if !entries.is_empty() => {
                    let stamped = entries.iter().map(|r| (now, r.clone())).collect();
                    match audit.append_with(&self.store, tx, stamped)? {
                        Some(_) => Vec::new(),
                        None => entries,
                    }
                }
                _ => Vec::new(),
            };
            Ok((value, left))
        })?;
        if let Some(audit) = &self.audit
            && !left.is_empty()
        {
            audit.append_all_at(left.into_iter().map(|r| (now, r)).collect())?;
        }
        Ok(value)
    }

    /// The tenant's unfinished plan, if one was interrupted.
    pub fn open_plan(&self, tenant_id: &TenantId) -> Result<Option<FailoverReport>> {
        let id: Option<String> = self.store.read(|c| {
            c.query_row(
                "SELECT id FROM failover_plans WHERE tenant_id = ?1 AND status = 'running'
                 ORDER BY initiated_at DESC LIMIT 1",
                [tenant_id.as_str()],
                |r| r.get(0),
            )
            .optional()
        })?;
        id.map(|id| self.load(&id)).transpose()
    }

    /// The tenant's plans, oldest first.
    pub fn reports(&self, tenant_id: &TenantId) -> Result<Vec<FailoverReport>> {
        let ids: Vec<String> = self.store.read(|c| {
            let mut stmt = c.prepare(
                "SELECT id FROM failover_plans WHERE tenant_id = ?1 ORDER BY initiated_at, id",
            )?;
            stmt.query_map([tenant_id.as_str()], |r| r.get(0))?
                .collect()
        })?;
        ids.iter().map(|id| self.load(id)).collect()
    }

    /// A plan as persisted.
    pub fn load(&self, plan_id: &str) -> Result<FailoverReport> {
        let loaded = self.store.read(|c| load_plan(c, plan_id))?;
        let row = loaded.ok_or_else(|| StoreError::Decode {
            path: self.store.label().to_path_buf(),
            table: "failover_plans",
            column: "id",
            reason: format!("no plan {plan_id:?}"),
        })?;
        row.decode(&self.store)
    }

    /// The audit entry of a plan event (None without an audit trail).
    fn audit_record(
        &self,
        report: &FailoverReport,
        action: &str,
        resource: Option<&str>,
        details: impl FnOnce(&FailoverReport) -> Value,
    ) -> Option<AuditRecord> {
        self.audit.as_ref()?;
        let mut record = AuditRecord::new("failover-controller", action)
            .tenant(report.tenant_id.clone())
            .details(serde_json::json!({"plan_id": report.id, "event": details(report)}));
        if let Some(r) = resource {
            record = record.resource(r);
        }
        Some(record)
    }
}

/// A step's row: position, action, target, source region, done at, attempts, last error.
type StepRow = (
    u32,
    String,
    String,
    Option<String>,
    Option<String>,
    u32,
    Option<String>,
);

/// A plan's row: id, tenant, kind, from, to, trigger, initiated at, DNS updated at,
/// completed at, status.
type PlanHead = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

/// A plan's rows, as read.
struct PlanRow {
    head: PlanHead,
    steps: Vec<StepRow>,
}

fn load_plan(c: &Connection, plan_id: &str) -> rusqlite::Result<Option<PlanRow>> {
    let head: Option<PlanHead> = c
        .query_row(
            "SELECT id, tenant_id, kind, from_region, to_region, trigger, initiated_at,
                    dns_updated_at, completed_at, status FROM failover_plans WHERE id = ?1",
            [plan_id],
            |r| r.try_into(),
        )
        .optional()?;
    let Some(head) = head else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached(
        "SELECT position, kind, target, source_region, done_at, attempts, last_error
         FROM failover_steps
         WHERE plan_id = ?1 ORDER BY position",
    )?;
    let steps = stmt
        .query_map([plan_id], |r| r.try_into())?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(PlanRow { head, steps }))
}

impl PlanRow {
    fn decode(self, store: &Store) -> Result<FailoverReport> {
        let bad = |column: &'static str, reason: String| -> Error {
            StoreError::Decode {
                path: store.label().to_path_buf(),
                table: "failover_plans",
                column,
                reason,
            }
            .into()
        };
        let time = |column, text: &str| store.decode_time("failover_plans", column, text);
        let (id, tenant, kind, from, to, trigger, initiated, dns, completed, status) = self.head;
        let kind = match kind.as_str() {
            "failover" => TransitionKind::Failover,
            "failback" => TransitionKind::Failback,
            other => return Err(bad("kind", format!("unknown kind {other:?}"))),
        };
        let steps = self
            .steps
            .into_iter()
            .map(
                |(position, action, target, source_region, done, attempts, last_error)| {
                    let action = match action.as_str() {
                        "promote" => StepAction::Promote,
                        "switch_dns" => StepAction::SwitchDns,
                        other => return Err(bad("kind", format!("unknown step {other:?}"))),
                    };
                    Ok(PlanStep {
                        position,
                        action,
                        target,
                        source_region,
                        done_at: done.map(|d| time("done_at", &d)).transpose()?,
                        attempts,
                        last_error,
                    })
                },
            )
            .collect::<Result<Vec<_>>>()?;
        Ok(FailoverReport {
            id,
            tenant_id: TenantId::new(tenant).map_err(|e| bad("tenant_id", e.to_string()))?,
            kind,
            from_region: from,
            to_region: to,
            trigger: serde_json::from_str(&trigger).map_err(|e| bad("trigger", e.to_string()))?,
            steps,
            initiated_at: time("initiated_at", &initiated)?,
            dns_updated_at: dns.map(|d| time("dns_updated_at", &d)).transpose()?,
            completed_at: completed.map(|d| time("completed_at", &d)).transpose()?,
            status: PlanStatus::parse(&status)
                .ok_or_else(|| bad("status", format!("unknown status {status:?}")))?,
        })
    }
}
