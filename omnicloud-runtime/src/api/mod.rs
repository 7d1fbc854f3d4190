//! The REST API (axum) through which tenants manage webhook endpoints, read deliveries and
//! drive deployments; its OpenAPI 3.1 document is generated from this code.
//!
//! - Every `/v1` route needs `Authorization: Bearer <API key>` ([`omnicloud_core::apikey`]);
//!   the key's tenant scopes everything, and another tenant's id answers 404 exactly like a
//!   missing one.
//! - Every error is an RFC 9457 problem (`application/problem+json`): core errors are mapped
//!   in one place ([`problem`]), and so are axum's own rejections, unknown routes (404) and
//!   unsupported methods (405).
//! - Request bodies are limited to [`MAX_BODY_BYTES`]; lists are paged with `limit` (1 to
//!   500, default 50) and an `after` cursor, and answer `{"data": [...], "next_after": ...}`.
//! - Handlers run the core's synchronous SQLite work on tokio's blocking pool.
//!
//! Files: [`auth`] (the bearer extractor), [`extract`] (extractors with problem rejections,
//! paging, the blocking bridge), [`problem`], [`endpoints`], [`deliveries`], [`deployments`],
//! [`system`] (health and the OpenAPI document).

pub mod auth;
pub mod deliveries;
pub mod deployments;
pub mod endpoints;
pub mod extract;
pub mod problem;
pub mod system;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use omnicloud_core::apikey::ApiKeys;
use omnicloud_core::clock::SharedClock;
use omnicloud_core::deploy::{DeploymentOutbox, DeploymentService};
use omnicloud_core::events::EventBus;
use omnicloud_core::store::Store;
use omnicloud_core::webhook::{UrlGuard, WebhookQueue};
use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Object, PathItem, Ref, RefOr, Required, ResponseBuilder, SecurityRequirement,
    Type,
};

pub use problem::{PROBLEM_JSON, Problem, ProblemDetails, ProblemKind};

/// The largest request body accepted (1 MiB); larger bodies answer 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The name of the bearer security scheme in the OpenAPI document.
const BEARER: &str = "bearer";

/// What the handlers work on: the tenants' API keys, the webhook queue (with its endpoint
/// registry) and the deployments, all over one store, and the clock that times durations.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The API keys that authenticate callers.
    pub keys: ApiKeys,
    /// The webhook delivery queue; its registry holds the endpoints.
    pub webhooks: Arc<WebhookQueue>,
    /// The deployments.
    pub deployments: Arc<DeploymentService>,
    /// The clock (a running deployment's duration is measured to its now).
    pub clock: SharedClock,
}

impl ApiState {
    /// A state of parts built elsewhere. The deployments should have the queue as their
    /// outbox (see [`ApiState::in_store`]) for their events to become deliveries.
    pub fn new(
        keys: ApiKeys,
        webhooks: Arc<WebhookQueue>,
        deployments: Arc<DeploymentService>,
        clock: SharedClock,
    ) -> Self {
        Self {
            keys,
            webhooks,
            deployments,
            clock,
        }
    }

    /// Everything over one store: API keys, endpoints checked by `guard`, the delivery queue
    /// (payload links under `base_url`, the API's public address) and the deployments, with
    /// the queue as their outbox (each transition's deliveries commit with it).
    pub fn in_store(
        store: &Store,
        clock: &SharedClock,
        guard: UrlGuard,
        base_url: &str,
    ) -> omnicloud_core::Result<Self> {
        let webhooks = Arc::new(WebhookQueue::new(
            store.clone(),
            clock.clone(),
            guard,
            base_url,
        ));
        Self::over_queue(webhooks.clone(), webhooks, clock)
    }

    /// Everything over the store of `webhooks` (a queue built by the caller): API keys, and
    /// deployments writing their events to `outbox` (the queue itself, or a wrapper that also
    /// wakes a dispatcher), so each transition's deliveries commit with it.
    pub fn over_queue(
        webhooks: Arc<WebhookQueue>,
        outbox: Arc<dyn DeploymentOutbox>,
        clock: &SharedClock,
    ) -> omnicloud_core::Result<Self> {
        let store = DeploymentOutbox::store(&*webhooks).clone();
        let deployments = Arc::new(
            DeploymentService::new(store.clone(), clock.clone(), Some(EventBus::new()))
                .with_outbox(outbox)?,
        );
        Ok(Self::new(
            ApiKeys::new(store, clock.clone()),
            webhooks,
            deployments,
            clock.clone(),
        ))
    }
}

/// The API's router: every route, problem responses for every error (unknown routes and
/// methods included) and the 1 MiB body limit.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/endpoints", post(endpoints::create).get(endpoints::list))
        .route(
            "/endpoints/{endpoint_id}",
            get(endpoints::get)
                .patch(endpoints::update)
                .delete(endpoints::delete),
        )
        .route(
            "/endpoints/{endpoint_id}/rotate-secret",
            post(endpoints::rotate_secret),
        )
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{delivery_id}", get(deliveries::get))
        .route(
            "/deliveries/{delivery_id}/attempts",
            get(deliveries::attempts),
        )
        .route(
            "/deliveries/{delivery_id}/redeliver",
            post(deliveries::redeliver),
        )
        .route(
            "/deployments",
            post(deployments::create).get(deployments::list),
        )
        .route("/deployments/{deployment_id}", get(deployments::get))
        .route(
            "/deployments/{deployment_id}/start",
            post(deployments::start),
        )
        .route(
            "/deployments/{deployment_id}/complete",
            post(deployments::complete),
        )
        .route("/deployments/{deployment_id}/fail", post(deployments::fail))
        .route(
            "/deployments/{deployment_id}/rollback",
            post(deployments::rollback),
        )
        .route(
            "/deployments/{deployment_id}/health-check-failures",
            post(deployments::health_check_failed),
        )
        .route("/deployments/{deployment_id}/logs", get(deployments::logs));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(system::healthz))
        .route("/openapi.json", get(system::openapi_document))
        .fallback(problem::no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(problem::problem_responses))
        .with_state(state)
}

/// The OpenAPI document, generated from the handlers and types of this module.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "OmniCloud API",
        description = "Tenants' webhook endpoints, webhook deliveries and deployments. \
            Every /v1 route needs `Authorization: Bearer <API key>`; errors are \
            RFC 9457 problems (application/problem+json).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        endpoints::create,
        endpoints::list,
        endpoints::get,
        endpoints::update,
        endpoints::delete,
        endpoints::rotate_secret,
        deliveries::list,
        deliveries::get,
        deliveries::attempts,
        deliveries::redeliver,
        deployments::create,
        deployments::list,
        deployments::get,
        deployments::start,
        deployments::complete,
        deployments::fail,
        deployments::rollback,
        deployments::health_check_failed,
        deployments::logs,
        system::healthz,
        system::openapi_document,
    ),
    components(schemas(ProblemDetails)),
    modifiers(&StandardResponses),
    tags(
        (name = "endpoints", description = "Webhook endpoints"),
        (name = "deliveries", description = "Webhook deliveries and their attempts"),
        (name = "deployments", description = "Deployments and their lifecycle"),
        (name = "system", description = "Health and the API description"),
    )
)]
struct ApiDoc;

/// Adds what every operation shares: the bearer scheme on `/v1` operations, and the problem
/// responses the router can give each one: 401 on `/v1`, 400 where a body, a query or a path
/// parameter is read, 404 where an id is in the path, 409 on lifecycle moves and redelivery, 413/415/422
/// where a body is read, 500 everywhere. (405, for a method a path does not have, is not
/// listed per operation.)
struct StandardResponses;

impl utoipa::Modify for StandardResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ock_<key id>_<secret>")
                    .description(Some("A tenant's API key".to_owned()))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let v1 = path.starts_with("/v1/");
            let has_id = path.contains('{');
            let lifecycle = path.starts_with("/v1/deployments/{")
                && ["/start", "/complete", "/fail", "/rollback"]
                    .iter()
                    .any(|m| path.ends_with(m));
            for operation in operations(item) {
                let has_body = operation.request_body.is_some();
                let has_query = operation.parameters.as_ref().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
                });
                if let Some(body) = operation.request_body.as_mut()
                    && path.ends_with("/rotate-secret")
                {
                    body.required = Some(Required::False);
                }
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, response: RefOr<utoipa::openapi::Response>| {
                    responses.entry(status.to_owned()).or_insert(response);
                };
                if v1 {
                    add("401", unauthorized_response());
                }
                if has_body || has_query || has_id {
                    add(
                        "400",
                        problem_response(
                            "Malformed request (JSON syntax, path or query parameters)",
                        ),
                    );
                }
                if has_id {
                    add("404", problem_response("No such resource for this tenant"));
                }
                if lifecycle {
                    add(
                        "409",
                        problem_response("The lifecycle does not allow this transition"),
                    );
                }
                if path.ends_with("/redeliver") {
                    add(
                        "409",
                        problem_response("The delivery's payload never rendered: nothing to send"),
                    );
                }
                if has_body {
                    add(
                        "413",
                        problem_response("The request body is larger than 1 MiB"),
                    );
                    add(
                        "415",
                        problem_response("The request body is not application/json"),
                    );
                    add(
                        "422",
                        problem_response("The request is well-formed but a value is unacceptable"),
                    );
                }
                add("500", problem_response("The server failed"));
                if v1 {
                    operation.security =
                        Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                }
            }
        }
    }
}

/// The operations of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// A problem response: `application/problem+json` with the `Problem` schema.
fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(problem_response_builder(description).build())
}

fn problem_response_builder(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

/// The 401 response: a problem, with the bearer challenge.
fn unauthorized_response() -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        problem_response_builder("No valid API key (missing, malformed, unknown or revoked)")
            .header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(Object::with_type(Type::String))
                    .description(Some("The bearer challenge (RFC 6750)"))
                    .build(),
            )
            .build(),
    )
}

/// The OpenAPI 3.1 document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document as pretty JSON with a trailing newline (what `omnicloud openapi`
/// prints and `docs/openapi.json` holds).
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    text.push('\n');
    text
}
