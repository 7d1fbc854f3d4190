//! `/v1/endpoints`: a tenant's webhook endpoints (register, list, read, change, delete,
//! rotate the signing secret).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use omnicloud_core::webhook::{self as core, EndpointChanges, EndpointSpec, WebhookEndpoint};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Tenant;
use super::deployments::DeploymentState;
use super::extract::{Json, Path, Query, blocking, page_limit, paginate};
use super::problem::Problem;

/// The grace period of a rotated-out secret when none is given: 24 hours.
pub const DEFAULT_GRACE_S: u32 = 86_400;

/// The deployment events an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// `deployment.state_change`: a deployment moved between states.
    StateChange,
    /// `deployment.health_check_failed`: a health check of a deployment failed.
    HealthCheckFailed,
    /// `deployment.rollback_initiated`: a deployment is being rolled back.
    RollbackInitiated,
}

impl From<core::EventType> for EventType {
    fn from(value: core::EventType) -> Self {
        match value {
            core::EventType::StateChange => Self::StateChange,
            core::EventType::HealthCheckFailed => Self::HealthCheckFailed,
            core::EventType::RollbackInitiated => Self::RollbackInitiated,
        }
    }
}

impl From<EventType> for core::EventType {
    fn from(value: EventType) -> Self {
        match value {
            EventType::StateChange => Self::StateChange,
            EventType::HealthCheckFailed => Self::HealthCheckFailed,
            EventType::RollbackInitiated => Self::RollbackInitiated,
        }
    }
}

/// A registered webhook endpoint (without its signing secret).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Endpoint {
    /// The endpoint's id (`ep_...`).
    pub id: String,
    /// The owning tenant.
    pub tenant_id: String,
    /// Where deliveries go (normalised).
    pub url: String,
    /// The subscribed event types, sorted.
    pub event_types: Vec<EventType>,
    /// Only events whose new state is one of these are delivered; `null`: every state.
    #[schema(required)]
    pub states: Option<Vec<DeploymentState>>,
    /// The payload template (Jinja2-style); `null`: the default JSON payload.
    #[schema(required)]
    pub template: Option<String>,
    /// Deliveries allowed in any rolling minute.
    pub rate_limit_per_minute: u32,
    /// Attempts per delivery before it is exhausted.
    pub max_attempts: u32,
    /// Whether deliveries are made (false once disabled, for example by a 410 answer).
    pub enabled: bool,
    /// Why deliveries stopped, if they did.
    #[schema(required)]
    pub disabled_reason: Option<String>,
    /// Until when the secret replaced by the last rotation still signs, if it does.
    #[schema(required)]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&WebhookEndpoint> for Endpoint {
    fn from(e: &WebhookEndpoint) -> Self {
        Self {
            id: e.id.clone(),
            tenant_id: e.tenant_id.to_string(),
            url: e.url.clone(),
            event_types: e.event_types.iter().copied().map(Into::into).collect(),
            states: e
                .states
                .as_ref()
                .map(|s| s.iter().copied().map(Into::into).collect()),
            template: e.template.as_ref().map(|t| t.source().to_owned()),
            rate_limit_per_minute: e.rate_limit_per_minute,
            max_attempts: e.max_attempts,
            enabled: e.disabled_reason.is_none(),
            disabled_reason: e.disabled_reason.clone(),
            previous_secret_expires_at: e.previous_secret.as_ref().map(|(_, until)| *until),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its signing secret: the answer to registration and to a rotation.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EndpointWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// The current Standard Webhooks signing secret (`whsec_` + base64).
    pub secret: String,
}

impl From<&WebhookEndpoint> for EndpointWithSecret {
    fn from(e: &WebhookEndpoint) -> Self {
        Self {
            endpoint: e.into(),
            secret: e.secret.as_str().to_owned(),
        }
    }
}

/// A page of endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EndpointList {
    /// The endpoints, oldest first.
    pub data: Vec<Endpoint>,
    /// The `after` cursor of the next page; `null` on the last page.
    #[schema(required)]
    pub next_after: Option<String>,
}

/// A new endpoint.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where deliveries go: an http or https URL the SSRF guard accepts.
    #[schema(example = "https://hooks.example.com/omnicloud")]
    pub url: String,
    /// The event types wanted (at least one).
    #[schema(min_items = 1)]
    pub event_types: Vec<EventType>,
    /// Deliver only events whose new state is one of these (at least one); all if absent.
    #[schema(min_items = 1)]
    pub states: Option<Vec<DeploymentState>>,
    /// A Jinja2-style payload template rendering JSON; the default payload if absent.
    pub template: Option<String>,
    /// A Standard Webhooks secret (`whsec_` + base64 of 24 to 64 bytes); generated if absent.
    pub secret: Option<String>,
    /// Deliveries allowed in any rolling minute (default 100).
    #[schema(minimum = 1, maximum = 100000)]
    pub rate_limit_per_minute: Option<u32>,
    /// Attempts per delivery (default 5).
    #[schema(minimum = 1, maximum = 20)]
    pub max_attempts: Option<u32>,
}

/// Changes to an endpoint; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// A new URL.
    pub url: Option<String>,
    /// New subscriptions (at least one).
    #[schema(min_items = 1)]
    pub event_types: Option<Vec<EventType>>,
    /// A new state filter; `null` removes the filter.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<DeploymentState>>, min_items = 1)]
    pub states: Option<Option<Vec<DeploymentState>>>,
    /// A new template; `null` returns to the default payload.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub template: Option<Option<String>>,
    /// A new limit per rolling minute.
    #[schema(minimum = 1, maximum = 100000)]
    pub rate_limit_per_minute: Option<u32>,
    /// A new attempt count.
    #[schema(minimum = 1, maximum = 20)]
    pub max_attempts: Option<u32>,
    /// `true` re-enables a disabled endpoint; `false` disables it.
    pub enabled: Option<bool>,
}

/// A field that, when present, may be `null` (kept apart from an absent field).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A secret rotation.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret (`whsec_...`); generated if absent.
    pub secret: Option<String>,
    /// How long the old secret keeps signing alongside the new one, in seconds (default
    /// 86400, at most 7 days).
    #[schema(minimum = 0, maximum = 604800)]
    pub grace_s: Option<u32>,
}

/// Paging through endpoints.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndpointQuery {
    /// Page size (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Return endpoints after this endpoint id (the previous page's `next_after`).
    pub after: Option<String>,
}

/// Registers a webhook endpoint.
#[utoipa::path(
    post,
    path = "/v1/endpoints",
    operation_id = "create_endpoint",
    tag = "endpoints",
    request_body = CreateEndpoint,
    responses((status = 201, description = "The endpoint, with its signing secret", body = EndpointWithSecret))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Json(body): Json<CreateEndpoint>,
) -> Result<(StatusCode, axum::Json<EndpointWithSecret>), Problem> {
    let mut spec = EndpointSpec::new(tenant, body.url);
    spec.event_types = body.event_types.into_iter().map(Into::into).collect();
    spec.states = body.states.map(|s| s.into_iter().map(Into::into).collect());
    spec.template = body.template;
    spec.secret = body.secret;
    if let Some(rate) = body.rate_limit_per_minute {
        spec.rate_limit_per_minute = rate;
    }
    if let Some(attempts) = body.max_attempts {
        spec.max_attempts = attempts;
    }
    let queue = state.webhooks.clone();
    let endpoint = blocking(move || Ok(queue.registry().register(&spec)?)).await?;
    Ok((StatusCode::CREATED, axum::Json((&endpoint).into())))
}

/// Lists the tenant's endpoints, oldest first.
#[utoipa::path(
    get,
    path = "/v1/endpoints",
    operation_id = "list_endpoints",
    tag = "endpoints",
    params(EndpointQuery),
    responses((status = 200, description = "A page of endpoints", body = EndpointList))
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Query(query): Query<EndpointQuery>,
) -> Result<axum::Json<EndpointList>, Problem> {
    let limit = page_limit(query.limit)?;
    let queue = state.webhooks.clone();
    let mut all = blocking(move || Ok(queue.registry().list(&tenant)?)).await?;
    // Endpoint ids are time-ordered: id order is creation order, and a stable cursor.
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let items: Vec<Endpoint> = all
        .iter()
        .filter(|e| {
            query
                .after
                .as_deref()
                .is_none_or(|after| e.id.as_str() > after)
        })
        .take(limit + 1)
        .map(Endpoint::from)
        .collect();
    let (data, next_after) = paginate(items, limit, |e| &e.id);
    Ok(axum::Json(EndpointList { data, next_after }))
}

/// Reads one endpoint.
#[utoipa::path(
    get,
    path = "/v1/endpoints/{endpoint_id}",
    operation_id = "get_endpoint",
    tag = "endpoints",
    params(("endpoint_id" = String, Path, description = "The endpoint's id")),
    responses((status = 200, description = "The endpoint", body = Endpoint))
)]
pub(crate) async fn get(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(endpoint_id): Path<String>,
) -> Result<axum::Json<Endpoint>, Problem> {
    let queue = state.webhooks.clone();
    let endpoint = blocking(move || Ok(queue.registry().get(&endpoint_id, Some(&tenant))?)).await?;
    Ok(axum::Json((&endpoint).into()))
}

/// Changes an endpoint (only the fields given; everything is validated before anything
/// changes).
#[utoipa::path(
    patch,
    path = "/v1/endpoints/{endpoint_id}",
    operation_id = "update_endpoint",
    tag = "endpoints",
    params(("endpoint_id" = String, Path, description = "The endpoint's id")),
    request_body = UpdateEndpoint,
    responses((status = 200, description = "The changed endpoint", body = Endpoint))
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(endpoint_id): Path<String>,
    Json(body): Json<UpdateEndpoint>,
) -> Result<axum::Json<Endpoint>, Problem> {
    let changes = EndpointChanges {
        url: body.url,
        event_types: body
            .event_types
            .map(|t| t.into_iter().map(Into::into).collect()),
        states: body
            .states
            .map(|s| s.map(|s| s.into_iter().map(Into::into).collect())),
        template: body.template,
        rate_limit_per_minute: body.rate_limit_per_minute,
        max_attempts: body.max_attempts,
        enabled: body.enabled,
    };
    let queue = state.webhooks.clone();
    let endpoint = blocking(move || {
        Ok(queue
            .registry()
            .update(&endpoint_id, Some(&tenant), &changes)?)
    })
    .await?;
    Ok(axum::Json((&endpoint).into()))
}

/// Deletes an endpoint.
#[utoipa::path(
    delete,
    path = "/v1/endpoints/{endpoint_id}",
    operation_id = "delete_endpoint",
    tag = "endpoints",
    params(("endpoint_id" = String, Path, description = "The endpoint's id")),
    responses((status = 204, description = "Deleted"))
)]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(endpoint_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let queue = state.webhooks.clone();
    blocking(move || Ok(queue.registry().delete(&endpoint_id, Some(&tenant))?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the signing secret; the old one keeps signing alongside the new one for the
/// grace period. The body is optional.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{endpoint_id}/rotate-secret",
    operation_id = "rotate_endpoint_secret",
    tag = "endpoints",
    params(("endpoint_id" = String, Path, description = "The endpoint's id")),
    request_body(content = RotateSecret, description = "Optional: the new secret and the grace period"),
    responses((status = 200, description = "The endpoint, with its new secret", body = EndpointWithSecret))
)]
pub(crate) async fn rotate_secret(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(endpoint_id): Path<String>,
    body: Option<Json<RotateSecret>>,
) -> Result<axum::Json<EndpointWithSecret>, Problem> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let grace = TimeDelta::seconds(i64::from(body.grace_s.unwrap_or(DEFAULT_GRACE_S)));
    let queue = state.webhooks.clone();
    let endpoint = blocking(move || {
        Ok(queue.registry().rotate_secret(
            &endpoint_id,
            Some(&tenant),
            body.secret.as_deref(),
            grace,
        )?)
    })
    .await?;
    Ok(axum::Json((&endpoint).into()))
}
