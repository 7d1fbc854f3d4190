//! `WebhookQueue`: the durable delivery queue in the store.
//!
//! A deployment event becomes one message and, in the same transaction, one delivery per
//! endpoint that wants it, with its payload rendered then, so a restart loses nothing and
//! retries send the same body: the default JSON payload is kept once, on the message; a
//! delivery keeps a body of its own only when its endpoint's template rendered one. Claiming
//! a due delivery leases it (its next attempt moves past the lease) so two dispatchers never
//! send it at once; a dispatcher that dies mid-send leaves it to be sent again when the lease
//! ends (at least once). The per-endpoint rate limit defers a delivery without using an
//! attempt. This module decides and records; the runtime's transport sends.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    EndpointRegistry, EventType, RateLimiter, RetryPolicy, UrlGuard, WebhookEndpoint,
    signature_header,
};
use crate::clock::SharedClock;
use crate::deploy::{DeploymentOutbox, DeploymentState};
use crate::error::{Error, Result, StoreError, WebhookError};
use crate::events::{Envelope, Event};
use crate::ids::{TenantId, generate_prefixed_id};
use crate::store::{Store, format_timestamp};

/// How long a claimed delivery is reserved for the dispatcher that claimed it, by default.
/// A lease must outlast the longest send (the transport's timeout), or a slow send could be
/// claimed again while it runs; after a crash, leased deliveries wait this long to be resent.
pub const CLAIM_LEASE: TimeDelta = TimeDelta::seconds(60);

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not attempted yet (or sent again on request).
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// The last attempt failed; another is scheduled.
    Failed,
    /// No attempt is left (or the endpoint is gone, or the payload could not be rendered).
    Exhausted,
}

impl DeliveryStatus {
    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Exhausted => "exhausted",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Delivered,
            Self::Failed,
            Self::Exhausted,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its number (1-based, across redeliveries).
    pub attempt: u32,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The receiver's status code, if it answered.
    pub status_code: Option<u16>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// One delivery of one message to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique id (`dlv_...`).
    pub id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The message (`msg_...`, the `webhook-id` header; the same on every attempt).
    pub message_id: String,
    /// The endpoint's owner.
    pub tenant_id: TenantId,
    /// The event type.
    pub event_type: EventType,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (`None` once delivered or exhausted).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The payload sent.
    pub body: String,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A delivery ready to send: where, with which headers, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// The delivery.
    pub delivery_id: String,
    /// The endpoint's URL.
    pub url: String,
    /// The headers: content type, the Standard Webhooks `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature`.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub body: String,
}

/// What happened when a request was sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttemptOutcome {
    /// The status code, if the receiver answered.
    pub status_code: Option<u16>,
    /// What went wrong, if anything (a connection error, a timeout, a refused address).
    pub error: Option<String>,
    /// How long it took.
    pub duration: Duration,
    /// The receiver's `Retry-After`, if it sent one (honoured on 429 and 503).
    pub retry_after: Option<Duration>,
}

/// Sends webhook requests (the runtime's HTTP client; fakes in tests).
pub trait WebhookTransport: Send + Sync {
    /// Sends one request; never panics, reports failures in the outcome.
    fn send(&self, request: &WebhookRequest) -> AttemptOutcome;
}

/// An attempt's row, as read: attempt, at, status code, error, duration.
type AttemptRow = (u32, String, Option<u16>, Option<String>, u64);

/// A delivery's row, as read.
type DeliveryRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    u32,
    Option<String>,
    String,
    String,
    String,
);

/// A delivery's columns as read: its body is its own (a template's rendering, or empty if
/// that failed) or else its message's payload.
const COLUMNS: &str = "id, endpoint_id, message_id, tenant_id, event_type, status, attempts,
    next_attempt_at, COALESCE(body, (SELECT m.body FROM webhook_messages m
        WHERE m.id = webhook_deliveries.message_id), ''), created_at, updated_at";

/// The durable delivery queue over an endpoint registry's store.
#[derive(Debug)]
pub struct WebhookQueue {
    store: Store,
    clock: SharedClock,
    registry: EndpointRegistry,
    base_url: String,
    lease: TimeDelta,
    limiters: Mutex<HashMap<String, RateLimiter>>,
}

impl WebhookQueue {
    /// A queue in `store`, with its endpoint registry in the same store (the queue joins the
    /// two tables) checking endpoint URLs with `guard`; payload links point under `base_url`
    /// (the REST API's public address).
    pub fn new(store: Store, clock: SharedClock, guard: UrlGuard, base_url: &str) -> Self {
        Self {
            registry: EndpointRegistry::new(store.clone(), clock.clone(), guard),
            store,
            clock,
            base_url: base_url.trim_end_matches('/').to_owned(),
            lease: CLAIM_LEASE,
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// The same queue with claims leased for `lease` (at least one second) instead of
    /// [`CLAIM_LEASE`]: shorter means a crashed dispatcher's deliveries are resent sooner, but
    /// the lease must outlast the transport's timeout.
    pub fn with_claim_lease(mut self, lease: TimeDelta) -> Result<Self> {
        if lease < TimeDelta::seconds(1) {
            return Err(WebhookError::InvalidClaimLease {
                lease_ms: lease.num_milliseconds(),
            }
            .into());
        }
        self.lease = lease;
        Ok(self)
    }

    /// The endpoint registry.
    pub fn registry(&self) -> &EndpointRegistry {
        &self.registry
    }

    /// The clock deciding what is due.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Queues deliveries of a deployment event to every endpoint of its tenant that wants it
    /// (other events are ignored). One transaction; returns the deliveries' ids.
    pub fn enqueue(&self, envelope: &Envelope) -> Result<Vec<String>> {
        self.enqueue_many(std::slice::from_ref(envelope))
    }

    /// Queues deliveries of many events in one transaction (all or none); returns the
    /// deliveries' ids in event order. Events that are not deployment events, or that no
    /// endpoint wants, add nothing. Idempotent: an endpoint that already has a delivery of an
    /// event (by the event's id) gets no second one.
    pub fn enqueue_many(&self, envelopes: &[Envelope]) -> Result<Vec<String>> {
        self.store.write(|tx| self.enqueue_in(tx, envelopes))
    }

    /// Queues deliveries of `envelopes` inside `tx`, a transaction on this queue's store in
    /// progress (the publisher's own, so its change and the deliveries commit together).
    pub fn enqueue_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        envelopes: &[Envelope],
    ) -> Result<Vec<String>> {
        let mut endpoints: HashMap<TenantId, Vec<WebhookEndpoint>> = HashMap::new();
        let mut ids = Vec::new();
        let now = format_timestamp(self.clock.now());
        for envelope in envelopes {
            let Some(tenant) = envelope.event.tenant_id() else {
                continue;
            };
            if !endpoints.contains_key(tenant) {
                endpoints.insert(tenant.clone(), self.registry.list_in(tx, tenant)?);
            }
            let tenant_endpoints = endpoints.get(tenant).map_or(&[][..], Vec::as_slice);
            if let Some(message) = self.message(envelope, tenant, tenant_endpoints) {
                self.insert_message(tx, &message, &now, &mut ids)
                    .map_err(|e| self.sql(e))?;
            }
        }
        Ok(ids)
    }

    /// The message an event becomes for the endpoints that want it, with each endpoint's
    /// body rendered (or why it could not be), or `None` if no endpoint wants it.
    fn message(
        &self,
        envelope: &Envelope,
        tenant: &TenantId,
        endpoints: &[WebhookEndpoint],
    ) -> Option<Message> {
        let (event_type, payload) = self.payload(envelope)?;
        let wanting: Vec<&WebhookEndpoint> = endpoints
            .iter()
            .filter(|e| e.wants(event_type, payload.data.new_state))
            .collect();
        if wanting.is_empty() {
            return None;
        }
        // Kept once, on the message, for every endpoint without a template.
        let default_payload = wanting
            .iter()
            .any(|e| e.template.is_none())
            .then(|| serde_json::to_string(&payload))
            .transpose()
            .ok()?;
        // What templates see, made once and only if an endpoint has a template.
        let mut context: Option<Value> = None;
        let bodies = wanting
            .iter()
            .map(|e| {
                let body = match &e.template {
                    None => Ok(None),
                    Some(t) => {
                        let context = context.get_or_insert_with(|| {
                            template_context(&serde_json::to_value(&payload).unwrap_or_default())
                        });
                        t.render_json(context)
                            .map(|v| Some(v.to_string()))
                            .map_err(|err| format!("the endpoint's template failed: {err}"))
                    }
                };
                (e.id.clone(), body)
            })
            .collect();
        Some(Message {
            id: generate_prefixed_id("msg_"),
            tenant: tenant.clone(),
            event_type,
            event_id: envelope.id.clone(),
            occurred_at: format_timestamp(envelope.at),
            payload: default_payload,
            bodies,
        })
    }

    /// Writes a message and its deliveries; a delivery whose body could not be rendered is
    /// exhausted at once, with the reason as its only attempt.
    fn insert_message(
        &self,
        tx: &rusqlite::Transaction<'_>,
        message: &Message,
        now: &str,
        ids: &mut Vec<String>,
    ) -> rusqlite::Result<()> {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO webhook_messages (id, tenant_id, event_type, event_id, occurred_at,
                     body) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (event_id) DO NOTHING",
            )?
            .execute(params![
                message.id,
                message.tenant.as_str(),
                message.event_type.as_str(),
                message.event_id,
                message.occurred_at,
                message.payload
            ])?;
        // Queued before (a replay, or a second subscriber): the same message gets only the
        // deliveries it lacks, so receivers see one `webhook-id` (and one payload) per event.
        let (message_id, queued) = if inserted == 1 {
            (message.id.clone(), Vec::new())
        } else {
            let (id, queued) = existing_message(tx, &message.event_id)?;
            if message.payload.is_some() {
                tx.prepare_cached(
                    "UPDATE webhook_messages SET body = COALESCE(body, ?2) WHERE id = ?1",
                )?
                .execute(params![id, message.payload])?;
            }
            (id, queued)
        };
        for (endpoint_id, body) in &message.bodies {
            if queued.contains(endpoint_id) {
                continue;
            }
            let id = generate_prefixed_id("dlv_");
            // Its own body only when it differs from the message's payload.
            let (status, next, own, attempts) = match body {
                Ok(own) => (DeliveryStatus::Pending, Some(now), own.as_deref(), 0),
                Err(_) => (DeliveryStatus::Exhausted, None, Some(""), 1),
            };
            tx.prepare_cached(
                "INSERT INTO webhook_deliveries (id, endpoint_id, message_id, tenant_id,
                     event_type, status, attempts, next_attempt_at, body, created_at,
                     updated_at, budget_base)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, 0)",
            )?
            .execute(params![
                id,
                endpoint_id,
                message_id,
                message.tenant.as_str(),
                message.event_type.as_str(),
                status.as_str(),
                attempts,
                next,
                own,
                now
            ])?;
            if let Err(reason) = body {
                insert_attempt(tx, &id, 1, endpoint_id, now, None, Some(reason), 0)?;
            }
            ids.push(id);
        }
        Ok(())
    }

    /// The payload sent when the endpoint has no template (Standard Webhooks' shape: `type`,
    /// `timestamp`, `data`), or `None` for an event that is not a deployment's.
    fn payload<'a>(&self, envelope: &'a Envelope) -> Option<(EventType, Payload<'a>)> {
        // old_state and new_state as payloads and state filters see them: a state change's
        // two states; a rollback moves from the current state to rolled_back; a failed
        // health check has only the current state, as its new_state.
        let (event_type, deployment, old_state, new_state, reason, check) = match &envelope.event {
            Event::DeploymentStateChanged {
                deployment,
                old_state,
            } => (
                EventType::StateChange,
                deployment,
                *old_state,
                deployment.state,
                deployment.reason.as_deref(),
                None,
            ),
            Event::DeploymentRollbackInitiated { deployment, reason } => (
                EventType::RollbackInitiated,
                deployment,
                Some(deployment.state),
                DeploymentState::RolledBack,
                Some(reason.as_str()),
                None,
            ),
            Event::DeploymentHealthCheckFailed {
                deployment,
                check,
                detail,
            } => (
                EventType::HealthCheckFailed,
                deployment,
                None,
                deployment.state,
                Some(detail.as_str()),
                Some(check.as_str()),
            ),
            _ => return None,
        };
        let (base, id) = (&self.base_url, &deployment.id);
        let timestamp = format_timestamp(envelope.at);
        Some((
            event_type,
            Payload {
                data: PayloadData {
                    check,
                    deployment_id: id,
                    duration_seconds: deployment.duration_seconds(deployment.updated_at),
                    links: Links {
                        deployment: format!("{base}/v1/deployments/{id}"),
                        logs: format!("{base}/v1/deployments/{id}/logs"),
                    },
                    new_state: Some(new_state),
                    old_state,
                    reason,
                    service_name: &deployment.service_name,
                    tenant_id: &deployment.tenant_id,
                    timestamp: timestamp.clone(),
                },
                event_id: &envelope.id,
                timestamp,
                kind: event_type.event_name(),
            },
        ))
    }

    /// Claims up to `limit` due deliveries: each is leased, rate-limited per endpoint (a
    /// delivery over the limit is deferred to when the limit allows it, without using an
    /// attempt), and returned signed for sending now. Deliveries to a disabled endpoint are
    /// exhausted instead.
    pub fn claim_due(&self, limit: usize) -> Result<Vec<WebhookRequest>> {
        // One write transaction: a dispatcher in another process claiming at the same time
        // waits, then sees these leases.
        self.store.write(|tx| self.claim_in(tx, limit))
    }

    fn claim_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        limit: usize,
    ) -> Result<Vec<WebhookRequest>> {
        let now = self.clock.now();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<DeliveryRow> = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhook_deliveries
                 WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ))
            .and_then(|mut stmt| {
                stmt.query_map(params![format_timestamp(now), limit], |r| r.try_into())?
                    .collect()
            })
            .map_err(|e| self.sql(e))?;
        let mut endpoints: HashMap<String, Option<WebhookEndpoint>> = HashMap::new();
        let mut requests = Vec::new();
        let mut next = tx
            .prepare_cached("UPDATE webhook_deliveries SET next_attempt_at = ?2 WHERE id = ?1")
            .map_err(|e| self.sql(e))?;
        for row in rows {
            let delivery = self.decode(row)?;
            let endpoint = match endpoints.get(&delivery.endpoint_id) {
                Some(e) => e.clone(),
                None => {
                    let e = match self.registry.get_in(tx, &delivery.endpoint_id) {
                        Ok(e) => Some(e),
                        Err(Error::Webhook(WebhookError::UnknownEndpoint { .. })) => None,
                        Err(other) => return Err(other),
                    };
                    endpoints.insert(delivery.endpoint_id.clone(), e.clone());
                    e
                }
            };
            let Some(endpoint) = endpoint.filter(|e| e.disabled_reason.is_none()) else {
                self.finish_unsendable(tx, &delivery, now)?;
                continue;
            };
            // Deferred past the rate limit, or leased: nobody else claims it until the lease
            // ends or the attempt is recorded.
            let (until, send) = match self.acquire(tx, &endpoint, now)? {
                Err(allowed_at) => (allowed_at, false),
                Ok(()) => (now + self.lease, true),
            };
            next.execute(params![delivery.id, format_timestamp(until)])
                .map_err(|e| self.sql(e))?;
            if !send {
                continue;
            }
            let timestamp = now.timestamp();
            let secrets = endpoint.signing_secrets(now);
            let signature = signature_header(
                &secrets,
                &delivery.message_id,
                timestamp,
                delivery.body.as_bytes(),
            );
            requests.push(WebhookRequest {
                delivery_id: delivery.id,
                url: endpoint.url,
                headers: vec![
                    ("content-type".to_owned(), "application/json".to_owned()),
                    ("webhook-id".to_owned(), delivery.message_id),
                    ("webhook-timestamp".to_owned(), timestamp.to_string()),
                    ("webhook-signature".to_owned(), signature),
                ],
                body: delivery.body,
            });
        }
        Ok(requests)
    }

    /// Records an attempt's outcome: 2xx delivers; 410 Gone exhausts the delivery and
    /// disables the endpoint; anything else schedules the next attempt (the later of the
    /// retry schedule and a 429/503 `Retry-After`) or exhausts the delivery when none is left.
    pub fn record(&self, delivery_id: &str, outcome: &AttemptOutcome) -> Result<Delivery> {
        self.record_many(&[(delivery_id.to_owned(), outcome.clone())])?;
        self.delivery(delivery_id)
    }

    /// Records many attempts' outcomes (as [`record`](Self::record) does each) in one
    /// transaction: what a dispatcher does with the attempts that finished together.
    pub fn record_many(&self, outcomes: &[(String, AttemptOutcome)]) -> Result<()> {
        let now = self.clock.now();
        let at = format_timestamp(now);
        let mut gone = self.store.write(|tx| -> Result<Vec<String>> {
            let mut max_attempts: HashMap<String, u32> = HashMap::new();
            let mut gone = Vec::new();
            let mut update = tx
                .prepare_cached(
                    "UPDATE webhook_deliveries SET status = ?2, attempts = ?3,
                         next_attempt_at = ?4, updated_at = ?5 WHERE id = ?1",
                )
                .map_err(|e| self.sql(e))?;
            for (delivery_id, outcome) in outcomes {
                let (endpoint_id, attempts, base) = attempt_budget(tx, delivery_id)
                    .map_err(|e| self.sql(e))?
                    .ok_or_else(|| unknown_delivery(delivery_id))?;
                let max = match max_attempts.get(&endpoint_id) {
                    Some(max) => *max,
                    None => {
                        let max = self
                            .registry
                            .get_in(tx, &endpoint_id)
                            .map_or(0, |e| e.max_attempts);
                        max_attempts.insert(endpoint_id.clone(), max);
                        max
                    }
                };
                let attempt = attempts + 1;
                let (status, next) = outcome_status(outcome, attempt - base, max, now)?;
                let code = outcome.status_code;
                let error = outcome.error.clone().or_else(|| {
                    code.filter(|c| !(200..300).contains(c))
                        .map(|c| format!("the receiver answered HTTP {c}"))
                });
                let duration_ms = u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
                insert_attempt(
                    tx,
                    delivery_id,
                    attempt,
                    &endpoint_id,
                    &at,
                    code,
                    error.as_deref(),
                    duration_ms,
                )
                .map_err(|e| self.sql(e))?;
                update
                    .execute(params![
                        delivery_id,
                        status.as_str(),
                        attempt,
                        next.map(format_timestamp),
                        at
                    ])
                    .map_err(|e| self.sql(e))?;
                if code == Some(410) {
                    gone.push(endpoint_id);
                }
            }
            Ok(gone)
        })?;
        gone.sort_unstable();
        gone.dedup();
        for endpoint_id in gone {
            self.registry
                .disable(&endpoint_id, "the receiver answered 410 Gone")?;
        }
        Ok(())
    }

    /// How many deliveries are due now (pending or failed with their next attempt not in
    /// the future): what a dispatcher still has to do.
    pub fn due_count(&self) -> Result<u64> {
        let now = format_timestamp(self.clock.now());
        Ok(self.store.read(|c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM webhook_deliveries
                 WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ?1",
            )?
            .query_row([now], |r| r.get(0))
        })?)
    }

    /// When the earliest scheduled attempt is due, if any is scheduled.
    pub fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<String> = self.store.read(|c| {
            c.prepare_cached(
                "SELECT MIN(next_attempt_at) FROM webhook_deliveries
                 WHERE next_attempt_at IS NOT NULL",
            )?
            .query_row([], |r| r.get(0))
        })?;
        next.map(|t| {
            self.store
                .decode_time("webhook_deliveries", "next_attempt_at", &t)
                .map_err(Error::from)
        })
        .transpose()
    }

    /// Claims what is due and sends it through `transport`, one request after another,
    /// recording each outcome (what a dispatcher does; used directly under a manual clock).
    /// Returns how many attempts were made.
    pub fn run_due(&self, transport: &dyn WebhookTransport, limit: usize) -> Result<usize> {
        let requests = self.claim_due(limit)?;
        for request in &requests {
            let outcome = transport.send(request);
            self.record(&request.delivery_id, &outcome)?;
        }
        Ok(requests.len())
    }

    /// Sends the delivery again now, with a fresh attempt budget (its history is kept). A
    /// delivery whose payload never rendered is refused ([`WebhookError::NotRedeliverable`]).
    pub fn redeliver(&self, delivery_id: &str, tenant_id: Option<&TenantId>) -> Result<Delivery> {
        let d = self.delivery(delivery_id)?;
        if tenant_id.is_some_and(|t| *t != d.tenant_id) {
            return Err(unknown_delivery(delivery_id));
        }
        if d.body.is_empty() {
            let reason = self
                .attempts(delivery_id)?
                .into_iter()
                .find_map(|a| a.error)
                .unwrap_or_else(|| "its payload was never rendered".to_owned());
            return Err(WebhookError::NotRedeliverable {
                delivery_id: delivery_id.to_owned(),
                reason,
            }
            .into());
        }
        let now = self.clock.now();
        self.store.write(|tx| -> Result<()> {
            tx.execute(
                "UPDATE webhook_deliveries SET status = 'pending', budget_base = attempts,
                     next_attempt_at = ?2, updated_at = ?2 WHERE id = ?1",
                params![delivery_id, format_timestamp(now)],
            )
            .map_err(|e| self.sql(e))?;
            Ok(())
        })?;
        self.delivery(delivery_id)
    }

    /// The delivery with this id.
    pub fn delivery(&self, delivery_id: &str) -> Result<Delivery> {
        let row: Option<DeliveryRow> = self.store.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhook_deliveries WHERE id = ?1"
            ))?
            .query_row([delivery_id], |r| r.try_into())
            .optional()
        })?;
        self.decode(row.ok_or_else(|| unknown_delivery(delivery_id))?)
    }

    /// The delivery's attempts, oldest first.
    pub fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        let rows: Vec<AttemptRow> = self.store.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT attempt, at, status_code, error, duration_ms FROM webhook_attempts
                 WHERE delivery_id = ?1 ORDER BY attempt",
            )?;
            stmt.query_map([delivery_id], |r| r.try_into())?.collect()
        })?;
        rows.into_iter()
            .map(|(attempt, at, status_code, error, duration_ms)| {
                Ok(Attempt {
                    attempt,
                    at: self.store.decode_time("webhook_attempts", "at", &at)?,
                    status_code,
                    error,
                    duration_ms,
                })
            })
            .collect()
    }

    /// Deliveries, newest first, filtered by tenant, endpoint and status; at most `limit`,
    /// starting after the delivery id `after` (for paging).
    pub fn deliveries(
        &self,
        tenant_id: Option<&TenantId>,
        endpoint_id: Option<&str>,
        status: Option<DeliveryStatus>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Walked backwards along the endpoint's or the tenant's `(…, id)` index, from `after`
        // (ids are ASCII, all below '~').
        let along = match (endpoint_id, tenant_id) {
            (Some(_), _) => "endpoint_id = ?2 AND (?1 IS NULL OR tenant_id = ?1)",
            (None, Some(_)) => "tenant_id = ?1 AND ?2 IS NULL",
            (None, None) => "?1 IS NULL AND ?2 IS NULL",
        };
        let rows: Vec<DeliveryRow> = self.store.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhook_deliveries
                 WHERE {along} AND (?3 IS NULL OR status = ?3) AND id < COALESCE(?4, '~')
                 ORDER BY id DESC LIMIT ?5"
            ))?;
            stmt.query_map(
                params![
                    tenant_id.map(TenantId::as_str),
                    endpoint_id,
                    status.map(DeliveryStatus::as_str),
                    after,
                    limit
                ],
                |r| r.try_into(),
            )?
            .collect()
        })?;
        rows.into_iter().map(|r| self.decode(r)).collect()
    }

    /// The endpoint's limiter, rebuilt from the attempts of the last minute when first used
    /// (so a restart does not reopen the window).
    fn acquire(
        &self,
        conn: &rusqlite::Connection,
        endpoint: &WebhookEndpoint,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<(), DateTime<Utc>>> {
        let mut limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = limiters
            .get(&endpoint.id)
            .is_none_or(|l| l.limit() != endpoint.rate_limit_per_minute);
        if stale {
            let since = now - TimeDelta::seconds(60);
            let sends: Vec<String> = conn
                .prepare_cached(
                    "SELECT at FROM webhook_attempts WHERE endpoint_id = ?1 AND at > ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![endpoint.id, format_timestamp(since)], |r| r.get(0))?
                        .collect()
                })
                .map_err(|e| self.sql(e))?;
            let sends = sends
                .iter()
                .map(|t| self.store.decode_time("webhook_attempts", "at", t))
                .collect::<Result<Vec<_>, StoreError>>()?;
            limiters.insert(
                endpoint.id.clone(),
                RateLimiter::from_state(endpoint.rate_limit_per_minute, sends)?,
            );
        }
        let limiter = limiters
            .get_mut(&endpoint.id)
            .ok_or_else(|| unknown_delivery(&endpoint.id))?;
        Ok(limiter.try_acquire(now))
    }

    fn finish_unsendable(
        &self,
        tx: &rusqlite::Transaction<'_>,
        delivery: &Delivery,
        now: DateTime<Utc>,
    ) -> Result<()> {
        insert_attempt(
            tx,
            &delivery.id,
            delivery.attempts + 1,
            &delivery.endpoint_id,
            &format_timestamp(now),
            None,
            Some("the endpoint is disabled or deleted"),
            0,
        )
        .map_err(|e| self.sql(e))?;
        tx.execute(
            "UPDATE webhook_deliveries SET status = 'exhausted', attempts = attempts + 1,
                 next_attempt_at = NULL, updated_at = ?2 WHERE id = ?1",
            params![delivery.id, format_timestamp(now)],
        )
        .map_err(|e| self.sql(e))?;
        Ok(())
    }

    fn sql(&self, e: rusqlite::Error) -> Error {
        Error::Store(self.store.sqlite_error(e))
    }

    fn decode(&self, row: DeliveryRow) -> Result<Delivery> {
        let (
            id,
            endpoint_id,
            message_id,
            tenant,
            event_type,
            status,
            attempts,
            next,
            body,
            created,
            updated,
        ) = row;
        let bad = |column: &'static str, reason: String| -> Error {
            StoreError::Decode {
                path: self.store.label().to_path_buf(),
                table: "webhook_deliveries",
                column,
                reason,
            }
            .into()
        };
        let time = |column, text: &str| self.store.decode_time("webhook_deliveries", column, text);
        Ok(Delivery {
            id,
            endpoint_id,
            message_id,
            tenant_id: TenantId::new(tenant)?,
            event_type: EventType::parse(&event_type)
                .map_err(|e| bad("event_type", e.to_string()))?,
            status: DeliveryStatus::parse(&status)
                .ok_or_else(|| bad("status", format!("unknown status {status:?}")))?,
            attempts,
            next_attempt_at: next.map(|t| time("next_attempt_at", &t)).transpose()?,
            body,
            created_at: time("created_at", &created)?,
            updated_at: time("updated_at", &updated)?,
        })
    }
}

impl DeploymentOutbox for WebhookQueue {
    fn store(&self) -> &Store {
        &self.store
    }

    fn record(&self, tx: &rusqlite::Transaction<'_>, events: &[Envelope]) -> Result<()> {
        self.enqueue_in(tx, events).map(drop)
    }
}

/// The default payload. Fields are declared in sorted order, the order serde_json writes an
/// object's keys in, so the body is byte for byte what a JSON value of it would print.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    data: PayloadData<'a>,
    event_id: &'a str,
    timestamp: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The default payload's `data` (sorted, like [`Payload`]).
#[derive(Debug, Serialize)]
struct PayloadData<'a> {
    /// Only for `health_check_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<&'a str>,
    deployment_id: &'a str,
    duration_seconds: f64,
    links: Links,
    new_state: Option<DeploymentState>,
    old_state: Option<DeploymentState>,
    reason: Option<&'a str>,
    service_name: &'a str,
    tenant_id: &'a TenantId,
    timestamp: String,
}

/// Where to read more about the deployment.
#[derive(Debug, Serialize)]
struct Links {
    deployment: String,
    logs: String,
}

/// The message already queued for the event with this id, and the endpoints it has
/// deliveries for.
fn existing_message(
    conn: &rusqlite::Connection,
    event_id: &str,
) -> rusqlite::Result<(String, Vec<String>)> {
    let message: String = conn
        .prepare_cached("SELECT id FROM webhook_messages WHERE event_id = ?1")?
        .query_row([event_id], |r| r.get(0))?;
    let endpoints = conn
        .prepare_cached("SELECT endpoint_id FROM webhook_deliveries WHERE message_id = ?1")?
        .query_map([&message], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((message, endpoints))
}

/// A delivery's endpoint, attempts made, and the attempt count its current budget started
/// from (moved by a redelivery); `None` for an unknown delivery.
fn attempt_budget(
    conn: &rusqlite::Connection,
    delivery_id: &str,
) -> rusqlite::Result<Option<(String, u32, u32)>> {
    conn.prepare_cached(
        "SELECT endpoint_id, attempts, budget_base FROM webhook_deliveries WHERE id = ?1",
    )?
    .query_row([delivery_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .optional()
}

/// A message about to be written: its default payload (if an endpoint without a template
/// wants it), and its deliveries' endpoints with their own bodies: `None` for the payload, a
/// template's rendering, or why the template could not render one.
struct Message {
    id: String,
    tenant: TenantId,
    event_type: EventType,
    event_id: String,
    occurred_at: String,
    payload: Option<String>,
    bodies: Vec<(String, std::result::Result<Option<String>, String>)>,
}

/// Where a delivery stands after an attempt, the `attempt`-th of its budget of
/// `max_attempts`, and when its next attempt is due.
fn outcome_status(
    outcome: &AttemptOutcome,
    attempt: u32,
    max_attempts: u32,
    now: DateTime<Utc>,
) -> Result<(DeliveryStatus, Option<DateTime<Utc>>)> {
    let code = outcome.status_code;
    if code.is_some_and(|c| (200..300).contains(&c)) {
        return Ok((DeliveryStatus::Delivered, None));
    }
    if code == Some(410) || max_attempts == 0 {
        return Ok((DeliveryStatus::Exhausted, None));
    }
    let retry_after = outcome
        .retry_after
        .filter(|_| matches!(code, Some(429 | 503)));
    let policy = RetryPolicy::with_max_attempts(max_attempts)?;
    Ok(match policy.next_attempt_at(attempt, now, retry_after) {
        Some(at) => (DeliveryStatus::Failed, Some(at)),
        None => (DeliveryStatus::Exhausted, None),
    })
}

/// What a template sees: every field of the default payload's `data`, plus `event_type`,
/// `event_id` and the whole default `payload`.
fn template_context(payload: &Value) -> Value {
    let mut context = payload.get("data").cloned().unwrap_or_else(|| json!({}));
    if let Value::Object(map) = &mut context {
        map.insert("event_type".to_owned(), payload["type"].clone());
        map.insert("event_id".to_owned(), payload["event_id"].clone());
        map.insert("payload".to_owned(), payload.clone());
    }
    context
}

#[allow(clippy::too_many_arguments)]
fn insert_attempt(
    tx: &rusqlite::Transaction<'_>,
    delivery_id: &str,
    attempt: u32,
    endpoint_id: &str,
    at: &str,
    status_code: Option<u16>,
    error: Option<&str>,
    duration_ms: u64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO webhook_attempts (delivery_id, attempt, endpoint_id, at, status_code, error,
             duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        delivery_id,
        attempt,
        endpoint_id,
        at,
        status_code,
        error,
        duration_ms
    ])
    .map(drop)
}

fn unknown_delivery(id: &str) -> Error {
    WebhookError::UnknownDelivery {
        delivery_id: id.to_owned(),
    }
    .into()
}
