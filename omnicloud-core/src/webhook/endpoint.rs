//! Webhook endpoints: where a tenant wants which deployment events, how they are shaped,
//! signed, paced and retried. Values only; `EndpointRegistry` keeps them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{RateLimiter, RetryPolicy, Template, WebhookSecret};
use crate::deploy::DeploymentState;
use crate::error::WebhookError;
use crate::ids::TenantId;

/// The events an endpoint can subscribe to (the deployment events, by their short names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// `deployment.state_change`.
    StateChange,
    /// `deployment.health_check_failed`.
    HealthCheckFailed,
    /// `deployment.rollback_initiated`.
    RollbackInitiated,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 3] = [
        Self::StateChange,
        Self::HealthCheckFailed,
        Self::RollbackInitiated,
    ];

    /// The subscription name (`state_change`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StateChange => "state_change",
            Self::HealthCheckFailed => "health_check_failed",
            Self::RollbackInitiated => "rollback_initiated",
        }
    }

    /// The event-bus name (`deployment.state_change`, ...).
    pub fn event_name(self) -> &'static str {
        match self {
            Self::StateChange => "deployment.state_change",
            Self::HealthCheckFailed => "deployment.health_check_failed",
            Self::RollbackInitiated => "deployment.rollback_initiated",
        }
    }

    /// Parses a subscription name or an event-bus name.
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == text || t.event_name() == text)
            .ok_or_else(|| WebhookError::InvalidEndpoint {
                field: "event_types",
                reason: format!(
                    "{text:?} is not one of state_change, health_check_failed, rollback_initiated"
                ),
            })
    }
}

/// What a tenant asks for when registering an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The owner.
    pub tenant_id: TenantId,
    /// Where deliveries go (http or https; checked against the SSRF guard).
    pub url: String,
    /// The events wanted (at least one).
    pub event_types: Vec<EventType>,
    /// Only events whose new state is one of these (e.g. only failures); all if `None`.
    pub states: Option<Vec<DeploymentState>>,
    /// A payload template; the default JSON payload if `None`.
    pub template: Option<String>,
    /// The signing secret (`whsec_...`); generated if `None`.
    pub secret: Option<String>,
    /// At most this many deliveries in any rolling minute (default 100).
    pub rate_limit_per_minute: u32,
    /// Attempts per delivery before it is exhausted (default 5).
    pub max_attempts: u32,
}

impl EndpointSpec {
    /// A spec with the defaults: every event type, no state filter, the default payload, a
    /// generated secret, 100 per minute, 5 attempts.
    pub fn new(tenant_id: TenantId, url: impl Into<String>) -> Self {
        Self {
            tenant_id,
            url: url.into(),
            event_types: EventType::ALL.to_vec(),
            states: None,
            template: None,
            secret: None,
            rate_limit_per_minute: super::DEFAULT_RATE_PER_MINUTE,
            max_attempts: super::DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// A registered endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    /// Unique id (`ep_...`).
    pub id: String,
    /// The owner.
    pub tenant_id: TenantId,
    /// Where deliveries go (normalised).
    pub url: String,
    /// The events wanted, sorted and unique.
    pub event_types: Vec<EventType>,
    /// The new states wanted, if filtered.
    pub states: Option<Vec<DeploymentState>>,
    /// The compiled payload template, if any.
    pub template: Option<Template>,
    /// The current signing secret.
    pub secret: WebhookSecret,
    /// The secret replaced by a rotation, still signing until the instant given.
    pub previous_secret: Option<(WebhookSecret, DateTime<Utc>)>,
    /// Deliveries allowed in any rolling minute.
    pub rate_limit_per_minute: u32,
    /// Attempts per delivery.
    pub max_attempts: u32,
    /// Why deliveries stopped (e.g. the receiver answered 410 Gone), if they did.
    pub disabled_reason: Option<String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl WebhookEndpoint {
    /// Whether an event of `event_type` whose new state is `new_state` goes to this endpoint.
    pub fn wants(&self, event_type: EventType, new_state: Option<DeploymentState>) -> bool {
        self.disabled_reason.is_none()
            && self.event_types.contains(&event_type)
            && match (&self.states, new_state) {
                (None, _) => true,
                (Some(states), Some(state)) => states.contains(&state),
                (Some(_), None) => false,
            }
    }

    /// The secrets that sign a delivery made at `now`: the current one, and the previous one
    /// while its grace period lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&WebhookSecret> {
        let mut secrets = vec![&self.secret];
        if let Some((old, until)) = &self.previous_secret
            && now < *until
        {
            secrets.push(old);
        }
        secrets
    }

    /// The endpoint's retry policy (the default schedule, its attempt count).
    pub fn retry_policy(&self) -> Result<RetryPolicy, WebhookError> {
        RetryPolicy::with_max_attempts(self.max_attempts)
    }

    /// A fresh rate limiter for the endpoint's limit.
    pub fn rate_limiter(&self) -> Result<RateLimiter, WebhookError> {
        RateLimiter::per_minute(self.rate_limit_per_minute)
    }
}

/// Normalises a subscription list: at least one, sorted, without duplicates.
pub(crate) fn normalise_event_types(types: &[EventType]) -> Result<Vec<EventType>, WebhookError> {
    let mut types = types.to_vec();
    types.sort();
    types.dedup();
    if types.is_empty() {
        return Err(WebhookError::InvalidEndpoint {
            field: "event_types",
            reason: "subscribe to at least one event type".to_owned(),
        });
    }
    Ok(types)
}

/// Normalises a state filter: sorted, unique, and not empty (an empty filter would match
/// nothing; `None` means every state).
pub(crate) fn normalise_states(
    states: Option<&[DeploymentState]>,
) -> Result<Option<Vec<DeploymentState>>, WebhookError> {
    let Some(states) = states else {
        return Ok(None);
    };
    let mut states = states.to_vec();
    states.sort_by_key(|s| s.as_str());
    states.dedup();
    if states.is_empty() {
        return Err(WebhookError::InvalidEndpoint {
            field: "states",
            reason: "an empty state filter would match nothing; leave it out for every state"
                .to_owned(),
        });
    }
    Ok(Some(states))
}
