//! `DeploymentService`: creates deployments and moves them through their lifecycle, one
//! store transaction per change, then announces it on the event bus. With an outbox (the
//! webhook queue), each change's events are written to it in that same transaction.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Deployment, DeploymentState, DeploymentTransition, MAX_SERVICE_NAME_CHARS};
use crate::clock::SharedClock;
use crate::error::{DeployError, Error, Result, StoreError};
use crate::events::{Envelope, Event, EventBus};
use crate::ids::{TenantId, generate_id, validate_display_text};
use crate::store::{Store, format_timestamp};

/// The longest reason or health-check detail accepted, in characters.
const MAX_REASON_CHARS: usize = 1000;

/// A deployment's row, as read.
type DeploymentRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
);

const COLUMNS: &str =
    "id, tenant_id, service_name, state, created_at, started_at, finished_at, updated_at, reason";

/// Where a deployment's events are written in the transaction that records the change (a
/// transactional outbox), so a committed change always has them: the webhook queue.
pub trait DeploymentOutbox: Send + Sync + fmt::Debug {
    /// The store it writes to; it must be the deployments' own.
    fn store(&self) -> &Store;

    /// Writes `events` inside `tx`, the transaction recording the change they announce.
    fn record(&self, tx: &Transaction<'_>, events: &[Envelope]) -> Result<()>;

    /// Called once the transaction committed (to wake a sender, say).
    fn committed(&self) {}
}

/// Deployments kept in one store, their changes published on an event bus.
#[derive(Debug, Clone)]
pub struct DeploymentService {
    store: Store,
    clock: SharedClock,
    bus: Option<EventBus>,
    outbox: Option<Arc<dyn DeploymentOutbox>>,
}

impl DeploymentService {
    /// Deployments in `store`, timed by `clock`, announced on `bus` if given.
    pub fn new(store: Store, clock: SharedClock, bus: Option<EventBus>) -> Self {
        Self {
            store,
            clock,
            bus,
            outbox: None,
        }
    }

    /// The same service writing every event to `outbox` in the transaction of its change.
    /// The outbox must keep its rows in the deployments' store.
    pub fn with_outbox(mut self, outbox: Arc<dyn DeploymentOutbox>) -> Result<Self> {
        if !outbox.store().same_database(&self.store) {
            return Err(DeployError::OutboxInAnotherStore {
                deployments: self.store.label().display().to_string(),
                outbox: outbox.store().label().display().to_string(),
            }
            .into());
        }
        self.outbox = Some(outbox);
        Ok(self)
    }

    /// Queues a deployment of `service_name` for the tenant; announced as a state change
    /// (from nothing to queued).
    pub fn create(&self, tenant_id: &TenantId, service_name: &str) -> Result<Deployment> {
        validate_display_text("service_name", service_name, MAX_SERVICE_NAME_CHARS)?;
        let now = self.clock.now();
        let deployment = Deployment {
            id: generate_id(),
            tenant_id: tenant_id.clone(),
            service_name: service_name.to_owned(),
            state: DeploymentState::Queued,
            created_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
            reason: None,
        };
        self.commit(now, |tx| {
            tx.execute(
                &format!("INSERT INTO deployments ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL, ?5, NULL)"),
                params![
                    deployment.id,
                    tenant_id.as_str(),
                    deployment.service_name,
                    deployment.state.as_str(),
                    format_timestamp(now)
                ],
            )
            .map_err(|e| self.sql(e))?;
            self.record_transition(tx, &deployment.id, None, DeploymentState::Queued, now, None)?;
            let event = Event::DeploymentStateChanged {
                deployment: deployment.clone(),
                old_state: None,
            };
            Ok((deployment.clone(), vec![event]))
        })
    }

    /// Starts the rollout (queued to in progress).
    pub fn start(&self, id: &str) -> Result<Deployment> {
        self.transition(id, DeploymentState::InProgress, None)
    }

    /// Marks the rollout completed (from in progress).
    pub fn complete(&self, id: &str) -> Result<Deployment> {
        self.transition(id, DeploymentState::Completed, None)
    }

    /// Marks the rollout failed, with the reason (from queued or in progress).
    pub fn fail(&self, id: &str, reason: &str) -> Result<Deployment> {
        validate_display_text("reason", reason, MAX_REASON_CHARS)?;
        self.transition(id, DeploymentState::Failed, Some(reason))
    }

    /// Rolls the deployment back (from in progress, completed or failed): announces
    /// `deployment.rollback_initiated`, then the state change to rolled back.
    pub fn rollback(&self, id: &str, reason: &str) -> Result<Deployment> {
        validate_display_text("reason", reason, MAX_REASON_CHARS)?;
        self.transition(id, DeploymentState::RolledBack, Some(reason))
    }

    /// Announces that a health check of the deployment failed (`check` names it, `detail`
    /// says what it saw). The state does not change; a rollback is the caller's decision.
    pub fn report_health_check_failed(&self, id: &str, check: &str, detail: &str) -> Result<()> {
        validate_display_text("check", check, MAX_SERVICE_NAME_CHARS)?;
        validate_display_text("detail", detail, MAX_REASON_CHARS)?;
        let now = self.clock.now();
        self.commit(now, |tx| {
            let deployment = self.read_in(tx, id)?;
            let event = Event::DeploymentHealthCheckFailed {
                deployment,
                check: check.to_owned(),
                detail: detail.to_owned(),
            };
            Ok(((), vec![event]))
        })
    }

    /// The deployment with this id.
    pub fn get(&self, id: &str) -> Result<Deployment> {
        let row: Option<DeploymentRow> = self.store.read(|c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM deployments WHERE id = ?1"))?
                .query_row([id], |r| r.try_into())
                .optional()
        })?;
        let row = row.ok_or_else(|| DeployError::UnknownDeployment {
            deployment_id: id.to_owned(),
        })?;
        self.decode(row)
    }

    /// The tenant's deployments, newest first, optionally only those in `state`, at most
    /// `limit`.
    pub fn list(
        &self,
        tenant_id: &TenantId,
        state: Option<DeploymentState>,
        limit: usize,
    ) -> Result<Vec<Deployment>> {
        self.page(tenant_id, state, limit, None)
    }

    /// A page of [`list`](Self::list): the deployments after the one with id `after` (the
    /// last of the previous page) in that order. An `after` that is not one of the tenant's
    /// deployments gives an empty page.
    pub fn page(
        &self,
        tenant_id: &TenantId,
        state: Option<DeploymentState>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Vec<Deployment>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<DeploymentRow> = self.store.read(|c| {
            // Keyset paging along the tenant's (created_at, id) index.
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deployments WHERE tenant_id = ?1
                 AND (?2 IS NULL OR state = ?2)
                 AND (?3 IS NULL OR (created_at, id) < (SELECT created_at, id FROM deployments
                                                        WHERE id = ?3 AND tenant_id = ?1))
                 ORDER BY created_at DESC, id DESC LIMIT ?4"
            ))?;
            stmt.query_map(
                params![
                    tenant_id.as_str(),
                    state.map(DeploymentState::as_str),
                    after,
                    limit
                ],
                |r| r.try_into(),
            )?
            .collect()
        })?;
        rows.into_iter().map(|row| self.decode(row)).collect()
    }

    /// The deployment's transitions, oldest first (the first is its creation).
    pub fn history(&self, id: &str) -> Result<Vec<DeploymentTransition>> {
        self.get(id)?;
        let rows: Vec<(Option<String>, String, String, Option<String>)> = self.store.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT from_state, to_state, at, reason FROM deployment_transitions
                 WHERE deployment_id = ?1 ORDER BY seq",
            )?;
            stmt.query_map([id], |r| r.try_into())?.collect()
        })?;
        rows.into_iter()
            .map(|(from, to, at, reason)| {
                Ok(DeploymentTransition {
                    from: from.map(|f| self.state(&f)).transpose()?,
                    to: self.state(&to)?,
                    at: self
                        .store
                        .decode_time("deployment_transitions", "at", &at)?,
                    reason,
                })
            })
            .collect()
    }

    /// Moves the deployment to `to` if the lifecycle allows it from the state it is in when
    /// the write begins (a concurrent change is seen), then announces it.
    fn transition(
        &self,
        id: &str,
        to: DeploymentState,
        reason: Option<&str>,
    ) -> Result<Deployment> {
        let now = self.clock.now();
        self.commit(now, |tx| {
            let before = self.read_in(tx, id)?;
            check_move(&before, to)?;
            let mut after = before.clone();
            after.state = to;
            after.updated_at = now;
            if to == DeploymentState::InProgress {
                after.started_at = Some(now);
            }
            if to != DeploymentState::InProgress {
                after.finished_at = Some(now);
            }
            if reason.is_some() {
                after.reason = reason.map(str::to_owned);
            }
            tx.prepare_cached(
                "UPDATE deployments SET state = ?2, started_at = ?3, finished_at = ?4,
                     updated_at = ?5, reason = ?6 WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id,
                    to.as_str(),
                    after.started_at.map(format_timestamp),
                    after.finished_at.map(format_timestamp),
                    format_timestamp(now),
                    after.reason
                ])
            })
            .map_err(|e| self.sql(e))?;
            self.record_transition(tx, id, Some(before.state), to, now, reason)?;
            let mut events = Vec::with_capacity(2);
            if to == DeploymentState::RolledBack {
                events.push(Event::DeploymentRollbackInitiated {
                    deployment: before.clone(),
                    reason: reason.unwrap_or_default().to_owned(),
                });
            }
            events.push(Event::DeploymentStateChanged {
                deployment: after.clone(),
                old_state: Some(before.state),
            });
            Ok((after, events))
        })
    }

    /// The deployment with this id, as `tx` sees it.
    fn read_in(&self, tx: &Transaction<'_>, id: &str) -> Result<Deployment> {
        let row: Option<DeploymentRow> = tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM deployments WHERE id = ?1"))
            .and_then(|mut stmt| stmt.query_row([id], |r| r.try_into()).optional())
            .map_err(|e| self.sql(e))?;
        self.decode(row.ok_or_else(|| DeployError::UnknownDeployment {
            deployment_id: id.to_owned(),
        })?)
    }

    /// Runs `change` in one transaction with its events written to the outbox, then
    /// announces the events (in order, with the ids and time the outbox stored) on the bus.
    fn commit<T>(
        &self,
        at: DateTime<Utc>,
        change: impl FnOnce(&Transaction<'_>) -> Result<(T, Vec<Event>)>,
    ) -> Result<T> {
        let (value, envelopes) = self.store.write(|tx| -> Result<(T, Vec<Envelope>)> {
            let (value, events) = change(tx)?;
            let envelopes: Vec<Envelope> = events
                .into_iter()
                .map(|event| Envelope {
                    id: generate_id(),
                    at,
                    event,
                })
                .collect();
            if let Some(outbox) = &self.outbox {
                outbox.record(tx, &envelopes)?;
            }
            Ok((value, envelopes))
        })?;
        if let Some(outbox) = &self.outbox {
            outbox.committed();
        }
        if let Some(bus) = &self.bus {
            for envelope in envelopes {
                bus.publish_envelope(envelope);
            }
        }
        Ok(value)
    }

    fn record_transition(
        &self,
        tx: &Transaction<'_>,
        id: &str,
        from: Option<DeploymentState>,
        to: DeploymentState,
        at: DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<()> {
        tx.prepare_cached(
            "INSERT INTO deployment_transitions (deployment_id, from_state, to_state, at, reason)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                from.map(DeploymentState::as_str),
                to.as_str(),
                format_timestamp(at),
                reason
            ])
        })
        .map_err(|e| self.sql(e))?;
        Ok(())
    }

    fn sql(&self, e: rusqlite::Error) -> Error {
        Error::Store(self.store.sqlite_error(e))
    }

    fn state(&self, text: &str) -> Result<DeploymentState> {
        text.parse().map_err(|_| {
            StoreError::Decode {
                path: self.store.label().to_path_buf(),
                table: "deployments",
                column: "state",
                reason: format!("unknown state {text:?}"),
            }
            .into()
        })
    }

    fn decode(&self, row: DeploymentRow) -> Result<Deployment> {
        let (id, tenant, service_name, state, created, started, finished, updated, reason) = row;
        let time = |column, text: &str| self.store.decode_time("deployments", column, text);
        Ok(Deployment {
            id,
            tenant_id: TenantId::new(tenant)?,
            service_name,
            state: self.state(&state)?,
            created_at: time("created_at", &created)?,
            started_at: started.map(|t| time("started_at", &t)).transpose()?,
            finished_at: finished.map(|t| time("finished_at", &t)).transpose()?,
            updated_at: time("updated_at", &updated)?,
            reason,
        })
    }
}

/// Refuses a move the lifecycle does not allow from the deployment's current state.
fn check_move(current: &Deployment, to: DeploymentState) -> Result<()> {
    if current.state.can_move_to(to) {
        Ok(())
    } else {
        Err(DeployError::InvalidTransition {
            deployment_id: current.id.clone(),
            from: current.state,
            to,
        }
        .into())
    }
}
