//! `/v1/deliveries`: the tenant's webhook deliveries, their status and every attempt, and
//! redelivery on request.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use omnicloud_core::Error as CoreError;
use omnicloud_core::error::WebhookError;
use omnicloud_core::ids::TenantId;
use omnicloud_core::webhook::{self as core, Delivery as CoreDelivery};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Tenant;
use super::endpoints::EventType;
use super::extract::{Path, Query, blocking, page_limit, paginate};
use super::problem::Problem;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

impl From<core::DeliveryStatus> for DeliveryStatus {
    fn from(value: core::DeliveryStatus) -> Self {
        match value {
            core::DeliveryStatus::Pending => Self::Pending,
            core::DeliveryStatus::Delivered => Self::Delivered,
            core::DeliveryStatus::Failed => Self::Failed,
            core::DeliveryStatus::Exhausted => Self::Exhausted,
        }
    }
}

impl From<DeliveryStatus> for core::DeliveryStatus {
    fn from(value: DeliveryStatus) -> Self {
        match value {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Delivered => Self::Delivered,
            DeliveryStatus::Failed => Self::Failed,
            DeliveryStatus::Exhausted => Self::Exhausted,
        }
    }
}

/// One delivery of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Delivery {
    /// The delivery's id (`dlv_...`).
    pub id: String,
    /// The endpoint delivered to.
    pub endpoint_id: String,
    /// The message (`msg_...`, the `webhook-id` header; the same on every attempt).
    pub message_id: String,
    /// The endpoint's owner.
    pub tenant_id: String,
    /// The event type.
    pub event_type: EventType,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempt_count: u32,
    /// When the next attempt is due; `null` once delivered or exhausted.
    #[schema(required)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The payload sent (JSON text).
    pub body: String,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&CoreDelivery> for Delivery {
    fn from(d: &CoreDelivery) -> Self {
        Self {
            id: d.id.clone(),
            endpoint_id: d.endpoint_id.clone(),
            message_id: d.message_id.clone(),
            tenant_id: d.tenant_id.to_string(),
            event_type: d.event_type.into(),
            status: d.status.into(),
            attempt_count: d.attempts,
            next_attempt_at: d.next_attempt_at,
            body: d.body.clone(),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Attempt {
    /// Its number (1-based, across redeliveries).
    #[schema(minimum = 1)]
    pub attempt: u32,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The receiver's status code, if it answered.
    #[schema(required, minimum = 100, maximum = 999)]
    pub status_code: Option<u16>,
    /// What went wrong, if anything.
    #[schema(required)]
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

impl From<core::Attempt> for Attempt {
    fn from(a: core::Attempt) -> Self {
        Self {
            attempt: a.attempt,
            at: a.at,
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
        }
    }
}

/// A delivery with every attempt made.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeliveryDetail {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: Delivery,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

/// A page of deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeliveryList {
    /// The deliveries, newest first.
    pub data: Vec<Delivery>,
    /// The `after` cursor of the next page; `null` on the last page.
    #[schema(required)]
    pub next_after: Option<String>,
}

/// A delivery's attempts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AttemptList {
    /// The attempts, oldest first.
    pub data: Vec<Attempt>,
}

/// Filtering and paging deliveries.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries to this endpoint.
    pub endpoint_id: Option<String>,
    /// Only deliveries with this status.
    pub status: Option<DeliveryStatus>,
    /// Page size (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Return deliveries after (older than) this delivery id (the previous page's
    /// `next_after`).
    pub after: Option<String>,
}

/// The delivery, if the tenant owns it; another tenant's delivery is unknown, exactly like a
/// missing one.
fn owned(state: &ApiState, id: &str, tenant: &TenantId) -> Result<CoreDelivery, Problem> {
    let delivery = state.webhooks.delivery(id)?;
    if delivery.tenant_id == *tenant {
        Ok(delivery)
    } else {
        Err(CoreError::from(WebhookError::UnknownDelivery {
            delivery_id: id.to_owned(),
        })
        .into())
    }
}

/// Lists the tenant's deliveries, newest first, optionally of one endpoint or status.
#[utoipa::path(
    get,
    path = "/v1/deliveries",
    operation_id = "list_deliveries",
    tag = "deliveries",
    params(DeliveryQuery),
    responses((status = 200, description = "A page of deliveries", body = DeliveryList))
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Query(query): Query<DeliveryQuery>,
) -> Result<axum::Json<DeliveryList>, Problem> {
    let limit = page_limit(query.limit)?;
    let rows = blocking(move || {
        Ok(state.webhooks.deliveries(
            Some(&tenant),
            query.endpoint_id.as_deref(),
            query.status.map(Into::into),
            limit + 1,
            query.after.as_deref(),
        )?)
    })
    .await?;
    let items: Vec<Delivery> = rows.iter().map(Delivery::from).collect();
    let (data, next_after) = paginate(items, limit, |d| &d.id);
    Ok(axum::Json(DeliveryList { data, next_after }))
}

/// Reads one delivery, with every attempt.
#[utoipa::path(
    get,
    path = "/v1/deliveries/{delivery_id}",
    operation_id = "get_delivery",
    tag = "deliveries",
    params(("delivery_id" = String, Path, description = "The delivery's id")),
    responses((status = 200, description = "The delivery and its attempts", body = DeliveryDetail))
)]
pub(crate) async fn get(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<axum::Json<DeliveryDetail>, Problem> {
    let detail = blocking(move || {
        let delivery = owned(&state, &id, &tenant)?;
        let attempts = state.webhooks.attempts(&id)?;
        Ok(DeliveryDetail {
            delivery: (&delivery).into(),
            attempts: attempts.into_iter().map(Into::into).collect(),
        })
    })
    .await?;
    Ok(axum::Json(detail))
}

/// Lists a delivery's attempts, oldest first.
#[utoipa::path(
    get,
    path = "/v1/deliveries/{delivery_id}/attempts",
    operation_id = "list_delivery_attempts",
    tag = "deliveries",
    params(("delivery_id" = String, Path, description = "The delivery's id")),
    responses((status = 200, description = "The delivery's attempts", body = AttemptList))
)]
pub(crate) async fn attempts(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<axum::Json<AttemptList>, Problem> {
    let attempts = blocking(move || {
        owned(&state, &id, &tenant)?;
        Ok(state.webhooks.attempts(&id)?)
    })
    .await?;
    Ok(axum::Json(AttemptList {
        data: attempts.into_iter().map(Into::into).collect(),
    }))
}

/// Sends the delivery again now, with a fresh attempt budget (its history is kept).
#[utoipa::path(
    post,
    path = "/v1/deliveries/{delivery_id}/redeliver",
    operation_id = "redeliver",
    tag = "deliveries",
    params(("delivery_id" = String, Path, description = "The delivery's id")),
    responses((status = 202, description = "Queued again; the delivery, pending", body = Delivery))
)]
pub(crate) async fn redeliver(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<Delivery>), Problem> {
    let delivery = blocking(move || {
        owned(&state, &id, &tenant)?;
        Ok(state.webhooks.redeliver(&id, Some(&tenant))?)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json((&delivery).into())))
}
