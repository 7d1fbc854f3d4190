//! `/v1/deployments`: a tenant's deployments and their lifecycle (create, start, complete,
//! fail, roll back, report failed health checks) and their transition log, which webhook
//! payloads link to.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use omnicloud_core::Error as CoreError;
use omnicloud_core::deploy::{self as core, Deployment as CoreDeployment};
use omnicloud_core::error::DeployError;
use omnicloud_core::ids::TenantId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Tenant;
use super::extract::{Json, Path, Query, blocking, page_limit, paginate};
use super::problem::Problem;

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Accepted, waiting to start.
    Queued,
    /// Rolling out.
    InProgress,
    /// Rolled out.
    Completed,
    /// The rollout failed.
    Failed,
    /// Undone (terminal).
    RolledBack,
}

impl From<core::DeploymentState> for DeploymentState {
    fn from(value: core::DeploymentState) -> Self {
        match value {
            core::DeploymentState::Queued => Self::Queued,
            core::DeploymentState::InProgress => Self::InProgress,
            core::DeploymentState::Completed => Self::Completed,
            core::DeploymentState::Failed => Self::Failed,
            core::DeploymentState::RolledBack => Self::RolledBack,
        }
    }
}

impl From<DeploymentState> for core::DeploymentState {
    fn from(value: DeploymentState) -> Self {
        match value {
            DeploymentState::Queued => Self::Queued,
            DeploymentState::InProgress => Self::InProgress,
            DeploymentState::Completed => Self::Completed,
            DeploymentState::Failed => Self::Failed,
            DeploymentState::RolledBack => Self::RolledBack,
        }
    }
}

/// A deployment of a tenant's service.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Deployment {
    /// The deployment's id (a time-ordered UUID).
    pub id: String,
    /// The deploying tenant.
    pub tenant_id: String,
    /// The service deployed.
    pub service_name: String,
    /// Where it stands.
    pub state: DeploymentState,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it started rolling out, if it did.
    #[schema(required)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached completed, failed or rolled back (the latest of these), if it did.
    #[schema(required)]
    pub finished_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Why it failed or was rolled back, if it was.
    #[schema(required)]
    pub reason: Option<String>,
    /// Seconds from the start of the rollout (or from queueing, if it never started) to its
    /// end, or to now while it runs.
    #[schema(minimum = 0)]
    pub duration_seconds: f64,
}

impl Deployment {
    fn new(d: &CoreDeployment, now: DateTime<Utc>) -> Self {
        Self {
            id: d.id.clone(),
            tenant_id: d.tenant_id.to_string(),
            service_name: d.service_name.clone(),
            state: d.state.into(),
            created_at: d.created_at,
            started_at: d.started_at,
            finished_at: d.finished_at,
            updated_at: d.updated_at,
            reason: d.reason.clone(),
            duration_seconds: d.duration_seconds(now),
        }
    }
}

/// A page of deployments.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeploymentList {
    /// The deployments, newest first.
    pub data: Vec<Deployment>,
    /// The `after` cursor of the next page; `null` on the last page.
    #[schema(required)]
    pub next_after: Option<String>,
}

/// One recorded change of a deployment's state.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Transition {
    /// Where it was; `null` for its creation.
    #[schema(required)]
    pub from: Option<DeploymentState>,
    /// Where it went.
    pub to: DeploymentState,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, for a failure or a rollback.
    #[schema(required)]
    pub reason: Option<String>,
}

/// A deployment's log: its transitions, oldest first (the first is its creation).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeploymentLogs {
    /// The deployment.
    pub deployment_id: String,
    /// Its transitions, oldest first.
    pub data: Vec<Transition>,
}

/// A new deployment.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// The service to deploy (1 to 200 characters, no control characters).
    #[schema(example = "checkout", min_length = 1, max_length = 200)]
    pub service_name: String,
}

/// Why a deployment failed or is rolled back.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// The reason (1 to 1000 characters, no control characters).
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
}

/// A failed health check of a deployment.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFailure {
    /// Which check failed (1 to 200 characters, no control characters).
    #[schema(min_length = 1, max_length = 200)]
    pub check: String,
    /// What it saw (1 to 1000 characters, no control characters).
    #[schema(min_length = 1, max_length = 1000)]
    pub detail: String,
}

/// Paging through deployments.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeploymentQuery {
    /// Page size (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Return deployments after (older than) this deployment id (the previous page's
    /// `next_after`).
    pub after: Option<String>,
    /// Only deployments in this state.
    pub state: Option<DeploymentState>,
}

/// The deployment, if the tenant owns it; another tenant's deployment is unknown, exactly
/// like a missing one.
fn owned(state: &ApiState, id: &str, tenant: &TenantId) -> Result<CoreDeployment, Problem> {
    let deployment = state.deployments.get(id)?;
    if deployment.tenant_id == *tenant {
        Ok(deployment)
    } else {
        Err(CoreError::from(DeployError::UnknownDeployment {
            deployment_id: id.to_owned(),
        })
        .into())
    }
}

/// Queues a deployment.
#[utoipa::path(
    post,
    path = "/v1/deployments",
    operation_id = "create_deployment",
    tag = "deployments",
    request_body = CreateDeployment,
    responses((status = 201, description = "The queued deployment", body = Deployment))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Json(body): Json<CreateDeployment>,
) -> Result<(StatusCode, axum::Json<Deployment>), Problem> {
    let s = state.clone();
    let d = blocking(move || Ok(s.deployments.create(&tenant, &body.service_name)?)).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Deployment::new(&d, state.clock.now())),
    ))
}

/// Lists the tenant's deployments, newest first.
#[utoipa::path(
    get,
    path = "/v1/deployments",
    operation_id = "list_deployments",
    tag = "deployments",
    params(DeploymentQuery),
    responses((status = 200, description = "A page of deployments", body = DeploymentList))
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Query(query): Query<DeploymentQuery>,
) -> Result<axum::Json<DeploymentList>, Problem> {
    let limit = page_limit(query.limit)?;
    let s = state.clone();
    let filter = query.state.map(Into::into);
    // One more than the page, to learn whether another follows.
    let page = blocking(move || {
        Ok(s.deployments
            .page(&tenant, filter, limit + 1, query.after.as_deref())?)
    })
    .await?;
    let now = state.clock.now();
    let items: Vec<Deployment> = page.iter().map(|d| Deployment::new(d, now)).collect();
    let (data, next_after) = paginate(items, limit, |d| &d.id);
    Ok(axum::Json(DeploymentList { data, next_after }))
}

/// Reads one deployment.
#[utoipa::path(
    get,
    path = "/v1/deployments/{deployment_id}",
    operation_id = "get_deployment",
    tag = "deployments",
    params(("deployment_id" = String, Path, description = "The deployment's id")),
    responses((status = 200, description = "The deployment", body = Deployment))
)]
pub(crate) async fn get(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<axum::Json<Deployment>, Problem> {
    let s = state.clone();
    let d = blocking(move || owned(&s, &id, &tenant)).await?;
    Ok(axum::Json(Deployment::new(&d, state.clock.now())))
}

/// A lifecycle move requested through the API.
#[derive(Debug, Clone)]
enum Move {
    Start,
    Complete,
    Fail(String),
    Rollback(String),
}

/// Checks ownership, then moves the deployment.
async fn transition(
    state: ApiState,
    tenant: TenantId,
    id: String,
    to: Move,
) -> Result<axum::Json<Deployment>, Problem> {
    let s = state.clone();
    let d = blocking(move || {
        owned(&s, &id, &tenant)?;
        let service = &s.deployments;
        Ok(match &to {
            Move::Start => service.start(&id)?,
            Move::Complete => service.complete(&id)?,
            Move::Fail(reason) => service.fail(&id, reason)?,
            Move::Rollback(reason) => service.rollback(&id, reason)?,
        })
    })
    .await?;
    Ok(axum::Json(Deployment::new(&d, state.clock.now())))
}

/// Starts the rollout (queued → in_progress).
#[utoipa::path(
    post,
    path = "/v1/deployments/{deployment_id}/start",
    operation_id = "start_deployment",
    tag = "deployments",
    params(("deployment_id" = String, Path, description = "The deployment's id")),
    responses(
        (status = 200, description = "The deployment, in progress", body = Deployment),
    )
)]
pub(crate) async fn start(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<axum::Json<Deployment>, Problem> {
    transition(state, tenant, id, Move::Start).await
}

/// Marks the rollout completed (in_progress → completed).
#[utoipa::path(
    post,
    path = "/v1/deployments/{deployment_id}/complete",
    operation_id = "complete_deployment",
    tag = "deployments",
    params(("deployment_id" = String, Path, description = "The deployment's id")),
    responses(
        (status = 200, description = "The deployment, completed", body = Deployment),
    )
)]
pub(crate) async fn complete(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<axum::Json<Deployment>, Problem> {
    transition(state, tenant, id, Move::Complete).await
}

/// Marks the rollout failed (queued or in_progress → failed).
#[utoipa::path(
    post,
    path = "/v1/deployments/{deployment_id}/fail",
    operation_id = "fail_deployment",
    tag = "deployments",
    params(("deployment_id" = String, Path, description = "The deployment's id")),
    request_body = Reason,
    responses(
        (status = 200, description = "The deployment, failed", body = Deployment),
    )
)]
pub(crate) async fn fail(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    Json(body): Json<Reason>,
) -> Result<axum::Json<Deployment>, Problem> {
    transition(state, tenant, id, Move::Fail(body.reason)).await
}

/// Rolls the deployment back (in_progress, completed or failed → rolled_back).
#[utoipa::path(
    post,
    path = "/v1/deployments/{deployment_id}/rollback",
    operation_id = "rollback_deployment",
    tag = "deployments",
    params(("deployment_id" = String, Path, description = "The deployment's id")),
    request_body = Reason,
    responses(
        (status = 200, description = "The deployment, rolled back", body = Deployment),
    )
)]
pub(crate) async fn rollback(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    Json(body): Json<Reason>,
) -> Result<axum::Json<Deployment>, Problem> {
    transition(state, tenant, id, Move::Rollback(body.reason)).await
}

/// Reports a failed health check of the deployment (announced as
/// `deployment.health_check_failed`; the state does not change).
#[utoipa::path(
    post,
    path = "/v1/deployments/{deployment_id}/health-check-failures",
    operation_id = "report_health_check_failure",
    tag = "deployments",
    params(("deployment_id" = String, Path, description = "The deployment's id")),
    request_body = HealthCheckFailure,
    responses(
        (status = 202, description = "Reported; the deployment as it stands", body = Deployment),
    )
)]
pub(crate) async fn health_check_failed(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    Json(body): Json<HealthCheckFailure>,
) -> Result<(StatusCode, axum::Json<Deployment>), Problem> {
    let s = state.clone();
    let d = blocking(move || {
        owned(&s, &id, &tenant)?;
        s.deployments
            .report_health_check_failed(&id, &body.check, &body.detail)?;
        Ok(s.deployments.get(&id)?)
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Deployment::new(&d, state.clock.now())),
    ))
}

/// The deployment's log: its transitions, oldest first.
#[utoipa::path(
    get,
    path = "/v1/deployments/{deployment_id}/logs",
    operation_id = "get_deployment_logs",
    tag = "deployments",
    params(("deployment_id" = String, Path, description = "The deployment's id")),
    responses((status = 200, description = "The deployment's transitions", body = DeploymentLogs))
)]
pub(crate) async fn logs(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<axum::Json<DeploymentLogs>, Problem> {
    let history = blocking(move || {
        owned(&state, &id, &tenant)?;
        let history = state.deployments.history(&id)?;
        Ok(DeploymentLogs {
            deployment_id: id,
            data: history
                .into_iter()
                .map(|t| Transition {
                    from: t.from.map(Into::into),
                    to: t.to.into(),
                    at: t.at,
                    reason: t.reason,
                })
                .collect(),
        })
    })
    .await?;
    Ok(axum::Json(history))
}
