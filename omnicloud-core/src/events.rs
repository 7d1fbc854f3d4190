//! The typed, in-process event bus that joins the capabilities.
//!
//! Capabilities publish [`Event`]s (a tenant was created; later: a resource changed state, a
//! deployment moved, a failover ran) and other capabilities subscribe: deployment events feed
//! webhooks, failover events feed the audit trail and billing. Delivery is synchronous, in
//! subscription order, on the publisher's thread, after the publisher's own write committed.
//! A failing or panicking subscriber never affects the publisher or the other subscribers; its
//! failure is reported in the [`PublishReport`]. The bus keeps nothing durable: subscribers that
//! need durability (the webhook queue, the audit trail) write to the store themselves.

use std::collections::HashSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::deploy::{Deployment, DeploymentState};
use crate::error::{Result, ValidationError};
use crate::ids::{IdKind, TenantId, generate_id, validate_id};
use crate::state::{Resource, Transition};
use crate::tenancy::Tenant;

/// Something that happened, as other capabilities see it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A tenant was added to the registry.
    TenantCreated {
        /// The new tenant.
        tenant: Tenant,
    },
    /// A resource was registered with the state manager.
    ResourceRegistered {
        /// The resource as stored.
        resource: Arc<Resource>,
    },
    /// A resource moved from one lifecycle state to another.
    ResourceStateChanged {
        /// The resource after the transition.
        resource: Arc<Resource>,
        /// The applied transition.
        transition: Transition,
    },
    /// A resource was removed from the state manager.
    ResourceRemoved {
        /// The resource as it was last stored.
        resource: Arc<Resource>,
    },
    /// The whole resource state was replaced from a snapshot.
    StateRestored {
        /// The snapshot restored.
        snapshot_id: String,
        /// How many resources it held.
        resource_count: u64,
    },
    /// A deployment was queued or moved to another state.
    DeploymentStateChanged {
        /// The deployment after the change.
        deployment: Deployment,
        /// Where it was (`None`: it was just queued).
        old_state: Option<DeploymentState>,
    },
    /// A health check of a deployment failed.
    DeploymentHealthCheckFailed {
        /// The deployment.
        deployment: Deployment,
        /// The check's name.
        check: String,
        /// What it saw.
        detail: String,
    },
    /// A rollback of a deployment is starting.
    DeploymentRollbackInitiated {
        /// The deployment before the rollback.
        deployment: Deployment,
        /// Why.
        reason: String,
    },
    /// An application-defined event (for example from a Python service), with a dotted kind
    /// name such as `app.release_approved`.
    Custom {
        /// Dotted, lower-case kind name.
        kind: String,
        /// The tenant it concerns, if any.
        tenant_id: Option<TenantId>,
        /// The resource or object it concerns, if any.
        subject: Option<String>,
        /// Free-form JSON payload.
        data: Value,
    },
}

/// The kind of an [`Event`], for filtering subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// [`Event::TenantCreated`].
    TenantCreated,
    /// [`Event::ResourceRegistered`].
    ResourceRegistered,
    /// [`Event::ResourceStateChanged`].
    ResourceStateChanged,
    /// [`Event::ResourceRemoved`].
    ResourceRemoved,
    /// [`Event::StateRestored`].
    StateRestored,
    /// [`Event::DeploymentStateChanged`].
    DeploymentStateChanged,
    /// [`Event::DeploymentHealthCheckFailed`].
    DeploymentHealthCheckFailed,
    /// [`Event::DeploymentRollbackInitiated`].
    DeploymentRollbackInitiated,
    /// [`Event::Custom`], whatever its kind name.
    Custom,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 9] = [
        EventKind::TenantCreated,
        EventKind::ResourceRegistered,
        EventKind::ResourceStateChanged,
        EventKind::ResourceRemoved,
        EventKind::StateRestored,
        EventKind::DeploymentStateChanged,
        EventKind::DeploymentHealthCheckFailed,
        EventKind::DeploymentRollbackInitiated,
        EventKind::Custom,
    ];

    /// The kind's dotted name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TenantCreated => "tenant.created",
            EventKind::ResourceRegistered => "resource.registered",
            EventKind::ResourceStateChanged => "resource.state_changed",
            EventKind::ResourceRemoved => "resource.removed",
            EventKind::StateRestored => "state.restored",
            EventKind::DeploymentStateChanged => "deployment.state_change",
            EventKind::DeploymentHealthCheckFailed => "deployment.health_check_failed",
            EventKind::DeploymentRollbackInitiated => "deployment.rollback_initiated",
            EventKind::Custom => "custom",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ValidationError::InvalidName {
                field: "event kind",
                value: s.to_owned(),
                reason: "is not a known event kind (tenant.created, resource.registered, \
                         resource.state_changed, resource.removed, state.restored, \
                         deployment.state_change, deployment.health_check_failed, \
                         deployment.rollback_initiated, custom)",
            })
    }
}

/// Why `name` is not a valid dotted event or action name (1–64 characters of `[a-z0-9_.]`,
/// no empty segments), or `None` if it is valid.
pub fn dotted_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 64 {
        Some("must be 1 to 64 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    {
        Some("may only contain a-z, 0-9, _ and .")
    } else if name.split('.').any(str::is_empty) {
        Some("must not have empty dot-separated segments")
    } else {
        None
    }
}

/// The first segments of event names that only the core publishes.
const RESERVED_NAMESPACES: [&str; 8] = [
    "tenant",
    "resource",
    "state",
    "deployment",
    "webhook",
    "failover",
    "billing",
    "audit",
];

impl Event {
    /// An application-defined event, with its kind name validated (dotted, lower-case, outside
    /// the core's reserved namespaces) and its subject following the id grammar.
    pub fn custom(
        kind: impl Into<String>,
        tenant_id: Option<TenantId>,
        subject: Option<String>,
        data: Value,
    ) -> Result<Self, ValidationError> {
        let kind = kind.into();
        let reserved = RESERVED_NAMESPACES
            .iter()
            .any(|ns| kind.split('.').next() == Some(ns));
        if reserved {
            return Err(ValidationError::InvalidName {
                field: "event kind",
                value: kind,
                reason: "uses a namespace reserved for OmniCloud's own events (tenant, resource, \
                         state, deployment, webhook, failover, billing, audit)",
            });
        }
        if let Some(subject) = &subject {
            validate_id(IdKind::Resource, subject)?;
        }
        if let Some(reason) = dotted_name_problem(&kind) {
            return Err(ValidationError::InvalidName {
                field: "event kind",
                value: kind,
                reason,
            });
        }
        Ok(Event::Custom {
            kind,
            tenant_id,
            subject,
            data,
        })
    }

    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::TenantCreated { .. } => EventKind::TenantCreated,
            Event::ResourceRegistered { .. } => EventKind::ResourceRegistered,
            Event::ResourceStateChanged { .. } => EventKind::ResourceStateChanged,
            Event::ResourceRemoved { .. } => EventKind::ResourceRemoved,
            Event::StateRestored { .. } => EventKind::StateRestored,
            Event::DeploymentStateChanged { .. } => EventKind::DeploymentStateChanged,
            Event::DeploymentHealthCheckFailed { .. } => EventKind::DeploymentHealthCheckFailed,
            Event::DeploymentRollbackInitiated { .. } => EventKind::DeploymentRollbackInitiated,
            Event::Custom { .. } => EventKind::Custom,
        }
    }

    /// The dotted name: the kind's, or a custom event's own.
    pub fn name(&self) -> &str {
        match self {
            Event::Custom { kind, .. } => kind,
            other => other.kind().as_str(),
        }
    }

    /// The tenant the event concerns, if any.
    pub fn tenant_id(&self) -> Option<&TenantId> {
        match self {
            Event::TenantCreated { tenant } => Some(&tenant.id),
            Event::ResourceRegistered { resource }
            | Event::ResourceStateChanged { resource, .. }
            | Event::ResourceRemoved { resource } => Some(&resource.tenant_id),
            Event::StateRestored { .. } => None,
            Event::DeploymentStateChanged { deployment, .. }
            | Event::DeploymentHealthCheckFailed { deployment, .. }
            | Event::DeploymentRollbackInitiated { deployment, .. } => Some(&deployment.tenant_id),
            Event::Custom { tenant_id, .. } => tenant_id.as_ref(),
        }
    }

    /// The resource or object the event concerns, if any.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Event::TenantCreated { tenant } => Some(tenant.id.as_str()),
            Event::ResourceRegistered { resource }
            | Event::ResourceStateChanged { resource, .. }
            | Event::ResourceRemoved { resource } => Some(resource.id.as_str()),
            Event::StateRestored { snapshot_id, .. } => Some(snapshot_id.as_str()),
            Event::DeploymentStateChanged { deployment, .. }
            | Event::DeploymentHealthCheckFailed { deployment, .. }
            | Event::DeploymentRollbackInitiated { deployment, .. } => Some(deployment.id.as_str()),
            Event::Custom { subject, .. } => subject.as_deref(),
        }
    }

    /// The event's payload as JSON.
    pub fn data(&self) -> Value {
        match self {
            Event::TenantCreated { tenant } => serde_json::json!({
                "tenant_id": tenant.id,
                "name": tenant.name,
                "billing_currency": tenant.billing_currency,
            }),
            Event::ResourceRegistered { resource } | Event::ResourceRemoved { resource } => {
                serde_json::json!({
                    "resource_id": resource.id,
                    "tenant_id": resource.tenant_id,
                    "kind": resource.kind,
                    "region": resource.region,
                    "state": resource.state,
                })
            }
            Event::ResourceStateChanged {
                resource,
                transition,
            } => serde_json::json!({
                "resource_id": resource.id,
                "tenant_id": resource.tenant_id,
                "kind": resource.kind,
                "region": resource.region,
                "old_state": transition.from,
                "new_state": transition.to,
                "reason": transition.reason,
            }),
            Event::StateRestored {
                snapshot_id,
                resource_count,
            } => serde_json::json!({
                "snapshot_id": snapshot_id,
                "resource_count": resource_count,
            }),
            Event::DeploymentStateChanged {
                deployment,
                old_state,
            } => {
                let mut data = deployment_data(deployment);
                data["old_state"] = serde_json::json!(old_state);
                data["new_state"] = serde_json::json!(deployment.state);
                data
            }
            Event::DeploymentHealthCheckFailed {
                deployment,
                check,
                detail,
            } => {
                let mut data = deployment_data(deployment);
                data["check"] = serde_json::json!(check);
                data["detail"] = serde_json::json!(detail);
                data
            }
            Event::DeploymentRollbackInitiated { deployment, reason } => {
                let mut data = deployment_data(deployment);
                data["reason"] = serde_json::json!(reason);
                data
            }
            Event::Custom { data, .. } => data.clone(),
        }
    }
}

/// What every deployment event carries: the deployment's identity, state and timing
/// (`duration_seconds` up to its end, or up to its last change while it runs).
fn deployment_data(d: &Deployment) -> Value {
    serde_json::json!({
        "deployment_id": d.id,
        "tenant_id": d.tenant_id,
        "service_name": d.service_name,
        "state": d.state,
        "created_at": d.created_at,
        "started_at": d.started_at,
        "finished_at": d.finished_at,
        "duration_seconds": d.duration_seconds(d.updated_at),
        "reason": d.reason,
    })
}

/// An event as delivered: with its id and the time it was published.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique, time-ordered id.
    pub id: String,
    /// When it happened (the publisher's clock).
    pub at: DateTime<Utc>,
    /// What happened.
    pub event: Event,
}

/// Identifies a subscription, for [`EventBus::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

/// A subscriber that failed on one event.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberFailure {
    /// The subscription that failed.
    pub subscription: SubscriptionId,
    /// What it reported (or the panic message).
    pub error: String,
}

/// What one [`EventBus::publish`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishReport {
    /// The delivered envelope.
    pub envelope: Envelope,
    /// How many subscribers handled it successfully.
    pub delivered: usize,
    /// Subscribers that failed; the others were not affected.
    pub failures: Vec<SubscriberFailure>,
}

type Handler = Arc<dyn Fn(&Envelope) -> Result<()> + Send + Sync>;

struct Subscriber {
    id: SubscriptionId,
    kinds: Option<HashSet<EventKind>>,
    handler: Handler,
}

#[derive(Default)]
struct Inner {
    subscribers: RwLock<Vec<Subscriber>>,
    next_id: AtomicU64,
    failures: AtomicU64,
}

/// The bus. Cloning shares it.
#[derive(Clone, Default)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.subscriber_count())
            .finish()
    }
}

impl EventBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `handler` for every event of the given kinds (all kinds when `None`).
    pub fn subscribe<F>(&self, kinds: Option<&[EventKind]>, handler: F) -> SubscriptionId
    where
        F: Fn(&Envelope) -> Result<()> + Send + Sync + 'static,
    {
        let id = SubscriptionId(self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let subscriber = Subscriber {
            id,
            kinds: kinds.map(|k| k.iter().copied().collect()),
            handler: Arc::new(handler),
        };
        self.inner
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(subscriber);
        id
    }

    /// Sends every matching event into a channel, for consumers on other threads (the runtime
    /// bridges this into its async tasks). The subscription ends by itself once the receiver is
    /// dropped.
    pub fn subscribe_channel(
        &self,
        kinds: Option<&[EventKind]>,
    ) -> (SubscriptionId, mpsc::Receiver<Envelope>) {
        let (tx, rx) = mpsc::channel();
        let bus = Arc::downgrade(&self.inner);
        let id_cell = Arc::new(AtomicU64::new(0));
        let own_id = Arc::clone(&id_cell);
        let id = self.subscribe(kinds, move |env| {
            if tx.send(env.clone()).is_err()
                && let Some(inner) = bus.upgrade()
            {
                let id = SubscriptionId(own_id.load(Ordering::Relaxed));
                EventBus { inner }.unsubscribe(id);
            }
            Ok(())
        });
        id_cell.store(id.0, Ordering::Relaxed);
        (id, rx)
    }

    /// Ends a subscription; returns whether it existed.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut subs = self
            .inner
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = subs.len();
        subs.retain(|s| s.id != id);
        subs.len() != before
    }

    /// How many subscriptions are active.
    pub fn subscriber_count(&self) -> usize {
        self.inner
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// How many subscriber failures the bus has seen since it was created.
    pub fn failure_count(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Delivers `event`, stamped `at`, to every matching subscriber in subscription order.
    ///
    /// Handlers run without any bus lock held, so a handler may publish or (un)subscribe.
    pub fn publish(&self, at: DateTime<Utc>, event: Event) -> PublishReport {
        self.publish_envelope(Envelope {
            id: generate_id(),
            at,
            event,
        })
    }

    /// Delivers an envelope made (and perhaps already stored) by the publisher, keeping its id
    /// and time: what a publisher with a transactional outbox does after its commit.
    pub fn publish_envelope(&self, envelope: Envelope) -> PublishReport {
        let kind = envelope.event.kind();
        let targets: Vec<(SubscriptionId, Handler)> = self
            .inner
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|s| s.kinds.as_ref().is_none_or(|k| k.contains(&kind)))
            .map(|s| (s.id, Arc::clone(&s.handler)))
            .collect();
        let mut delivered = 0;
        let mut failures = Vec::new();
        for (subscription, handler) in targets {
            let outcome = catch_unwind(AssertUnwindSafe(|| handler(&envelope)));
            let error = match outcome {
                Ok(Ok(())) => {
                    delivered += 1;
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(panic) => format!("subscriber panicked: {}", panic_message(panic.as_ref())),
            };
            self.inner.failures.fetch_add(1, Ordering::Relaxed);
            failures.push(SubscriberFailure {
                subscription,
                error,
            });
        }
        PublishReport {
            envelope,
            delivered,
            failures,
        }
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-text panic payload")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::billing::Currency;
    use crate::error::Error;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T00:00:00Z")
            .expect("date")
            .with_timezone(&Utc)
    }

    fn custom(kind: &str) -> Event {
        Event::custom(kind, None, None, serde_json::json!({"n": 1})).expect("event")
    }

    fn tenant_created() -> Event {
        Event::TenantCreated {
            tenant: Tenant::new(TenantId::new("acme").expect("id"), "Acme", Currency::usd())
                .expect("tenant"),
        }
    }

    #[test]
    fn delivers_in_subscription_order_with_kind_filters() {
        let bus = EventBus::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        for (name, kinds) in [
            ("all", None),
            ("tenants", Some(&[EventKind::TenantCreated][..])),
            ("custom", Some(&[EventKind::Custom][..])),
        ] {
            let log = Arc::clone(&log);
            bus.subscribe(kinds, move |env| {
                log.lock()
                    .expect("lock")
                    .push(format!("{name}:{}", env.event.name()));
                Ok(())
            });
        }
        let report = bus.publish(at(), tenant_created());
        assert_eq!(report.delivered, 2);
        bus.publish(at(), custom("app.deployed"));
        assert_eq!(
            *log.lock().expect("lock"),
            [
                "all:tenant.created",
                "tenants:tenant.created",
                "all:app.deployed",
                "custom:app.deployed"
            ]
        );
    }

    #[test]
    fn failing_and_panicking_subscribers_do_not_stop_the_others() {
        let bus = EventBus::new();
        let reached = Arc::new(AtomicU64::new(0));
        bus.subscribe(None, |_| {
            Err(Error::Validation(ValidationError::InvalidName {
                field: "x",
                value: "y".into(),
                reason: "forced",
            }))
        });
        bus.subscribe(None, |_| panic!("boom"));
        let r = Arc::clone(&reached);
        bus.subscribe(None, move |_| {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let report = bus.publish(at(), custom("app.x"));
        assert_eq!(report.delivered, 1);
        assert_eq!(report.failures.len(), 2);
        assert!(report.failures[0].error.contains("forced"));
        assert_eq!(report.failures[1].error, "subscriber panicked: boom");
        assert_eq!(reached.load(Ordering::Relaxed), 1);
        assert_eq!(bus.failure_count(), 2);
    }

    #[test]
    fn unsubscribe_and_reentrant_publish() {
        let bus = EventBus::new();
        let count = Arc::new(AtomicU64::new(0));
        let inner_bus = bus.clone();
        let c = Arc::clone(&count);
        let id = bus.subscribe(None, move |env| {
            c.fetch_add(1, Ordering::Relaxed);
            if env.event.name() == "app.outer" {
                inner_bus.publish(env.at, custom("app.inner"));
            }
            Ok(())
        });
        bus.publish(at(), custom("app.outer"));
        assert_eq!(count.load(Ordering::Relaxed), 2);
        assert!(bus.unsubscribe(id));
        assert!(!bus.unsubscribe(id));
        bus.publish(at(), custom("app.outer"));
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn channel_subscription_ends_when_the_receiver_drops() {
        let bus = EventBus::new();
        let (_, rx) = bus.subscribe_channel(Some(&[EventKind::Custom]));
        bus.publish(at(), custom("app.a"));
        bus.publish(at(), tenant_created());
        let got: Vec<_> = rx.try_iter().map(|e| e.event.name().to_owned()).collect();
        assert_eq!(got, ["app.a"]);
        drop(rx);
        bus.publish(at(), custom("app.b"));
        assert_eq!(bus.subscriber_count(), 0);
    }

    #[test]
    fn names_and_kinds_are_validated() {
        for bad in [
            "",
            "App.x",
            "a..b",
            ".a",
            "a b",
            &"a".repeat(65),
            "tenant.created",
            "resource.x",
            "state",
        ] {
            assert!(
                Event::custom(bad, None, None, Value::Null).is_err(),
                "{bad:?}"
            );
        }
        assert!(Event::custom("app.x", None, Some("bad subject".into()), Value::Null).is_err());
        assert_eq!("tenant.created".parse(), Ok(EventKind::TenantCreated));
        assert!("tenant.deleted".parse::<EventKind>().is_err());
        let e = tenant_created();
        assert_eq!(e.tenant_id().map(TenantId::as_str), Some("acme"));
        assert_eq!(e.subject(), Some("acme"));
        assert_eq!(e.data()["billing_currency"], "USD");
    }
}
