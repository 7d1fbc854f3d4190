//! RFC 9457 (formerly 7807) problem details: the one shape of every error response, and the
//! one place core errors and axum rejections become HTTP statuses.

use axum::body::Body;
use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use omnicloud_core::Error as CoreError;
use omnicloud_core::error::{ApiKeyError, DeployError, WebhookError};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the problem type URIs live.
const PROBLEM_BASE: &str = "https://omnicloud.dev/problems/";

/// The kinds of problem the API reports, each with a stable type URI and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The request is malformed: JSON syntax, path or query parameters.
    MalformedRequest,
    /// No valid API key was presented.
    Unauthorized,
    /// No such resource (for this tenant), or no such route.
    NotFound,
    /// The route does not support the method.
    MethodNotAllowed,
    /// The lifecycle does not allow the requested deployment transition.
    InvalidTransition,
    /// The delivery cannot be sent again (its payload never rendered).
    NotRedeliverable,
    /// The request body is larger than the limit.
    PayloadTooLarge,
    /// The request body is not `application/json`.
    UnsupportedMediaType,
    /// A value is well-formed JSON but unacceptable (a field, a limit, a state name).
    ValidationFailed,
    /// A payload template does not compile (or does not render).
    InvalidTemplate,
    /// A webhook URL does not parse, or is written in a form the SSRF guard refuses.
    InvalidUrl,
    /// The SSRF guard refuses a webhook destination.
    UnsafeUrl,
    /// A webhook signing secret is malformed.
    InvalidSecret,
    /// The server failed; nothing about its internals is said.
    Internal,
}

impl ProblemKind {
    /// The slug of the type URI.
    pub fn slug(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed-request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::InvalidTransition => "invalid-transition",
            Self::NotRedeliverable => "not-redeliverable",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::ValidationFailed => "validation-failed",
            Self::InvalidTemplate => "invalid-template",
            Self::InvalidUrl => "invalid-url",
            Self::UnsafeUrl => "unsafe-url",
            Self::InvalidSecret => "invalid-secret",
            Self::Internal => "internal-error",
        }
    }

    /// The stable type URI (`https://omnicloud.dev/problems/<slug>`).
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }

    /// The short, fixed summary of the kind.
    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedRequest => "Malformed request",
            Self::Unauthorized => "Unauthorized",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::InvalidTransition => "Invalid deployment transition",
            Self::NotRedeliverable => "Delivery cannot be sent again",
            Self::PayloadTooLarge => "Request body too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::ValidationFailed => "Validation failed",
            Self::InvalidTemplate => "Invalid payload template",
            Self::InvalidUrl => "Invalid webhook URL",
            Self::UnsafeUrl => "Unsafe webhook URL",
            Self::InvalidSecret => "Invalid webhook secret",
            Self::Internal => "Internal server error",
        }
    }

    /// The HTTP status of the kind.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidTransition | Self::NotRedeliverable => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ValidationFailed
            | Self::InvalidTemplate
            | Self::InvalidUrl
            | Self::UnsafeUrl
            | Self::InvalidSecret => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind that answers an error status axum produced by itself.
    fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::CONFLICT => Self::InvalidTransition,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => Self::ValidationFailed,
            s if s.is_client_error() => Self::MalformedRequest,
            _ => Self::Internal,
        }
    }
}

/// A problem details object (`application/problem+json`, RFC 9457): the body of every error
/// response.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = Problem, example = json!({
    "type": "https://omnicloud.dev/problems/unsafe-url",
    "title": "Unsafe webhook URL",
    "status": 422,
    "detail": "refusing webhook URL \"http://127.0.0.1/hook\": 127.0.0.1 is a loopback address",
    "field": "url"
}))]
pub struct ProblemDetails {
    /// A stable URI naming the kind of problem (`https://omnicloud.dev/problems/<kind>`).
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    pub type_uri: String,
    /// A short summary of the kind of problem; the same for every occurrence of the kind.
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong this time, naming the offending value.
    pub detail: String,
    /// The offending setting, when one is to blame (for example `rate_limit_per_minute`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// The 1-based template line of a template error, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1)]
    pub line: Option<usize>,
}

/// An error response: its [`ProblemDetails`] (boxed, so results stay small) and, for a 401,
/// the `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    details: Box<ProblemDetails>,
    challenge: Option<&'static str>,
}

impl Problem {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            details: Box::new(ProblemDetails {
                type_uri: kind.type_uri(),
                title: kind.title().to_owned(),
                status: kind.status().as_u16(),
                detail: detail.into(),
                field: None,
                line: None,
            }),
            challenge: None,
        }
    }

    /// A 401 with the bearer challenge.
    pub fn unauthorized(detail: impl Into<String>, challenge: &'static str) -> Self {
        Self {
            challenge: Some(challenge),
            ..Self::new(ProblemKind::Unauthorized, detail)
        }
    }

    /// A 500 that says nothing of the server's internals.
    pub fn internal() -> Self {
        Self::new(
            ProblemKind::Internal,
            "the server could not complete the request",
        )
    }

    /// The body of the response.
    pub fn details(&self) -> &ProblemDetails {
        &self.details
    }

    /// The problem's HTTP status.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.details.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn with_field(mut self, field: &str) -> Self {
        self.details.field = Some(field.to_owned());
        self
    }

    fn with_line(mut self, line: Option<usize>) -> Self {
        self.details.line = line;
        self
    }

    fn with_status(mut self, status: StatusCode) -> Self {
        self.details.status = status.as_u16();
        self
    }

    /// A rejected JSON request body.
    pub(crate) fn from_json_rejection(rejection: &JsonRejection) -> Self {
        let kind = match rejection {
            JsonRejection::JsonDataError(_) => ProblemKind::ValidationFailed,
            JsonRejection::JsonSyntaxError(_) => ProblemKind::MalformedRequest,
            JsonRejection::MissingJsonContentType(_) => ProblemKind::UnsupportedMediaType,
            other => ProblemKind::for_status(other.status()),
        };
        let detail = match kind {
            ProblemKind::UnsupportedMediaType => {
                "the request body must be JSON, sent with Content-Type: application/json".to_owned()
            }
            ProblemKind::PayloadTooLarge => format!(
                "the request body is larger than the {} bytes allowed",
                super::MAX_BODY_BYTES
            ),
            _ => rejection.body_text(),
        };
        Self::new(kind, detail)
    }

    /// A rejected query string.
    pub(crate) fn from_query_rejection(rejection: &QueryRejection) -> Self {
        Self::new(ProblemKind::MalformedRequest, rejection.body_text())
    }

    /// A rejected path parameter.
    pub(crate) fn from_path_rejection(rejection: &PathRejection) -> Self {
        let kind = ProblemKind::for_status(rejection.status());
        if kind == ProblemKind::Internal {
            Self::internal()
        } else {
            Self::new(kind, rejection.body_text())
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&*self.details).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(challenge) = self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The one mapping of core errors to problems: validation → 422, unknown ids → 404, invalid
/// transitions → 409, a key that does not authenticate → 401, anything else → 500 (the cause
/// is written to standard error, never to the client).
impl From<CoreError> for Problem {
    fn from(error: CoreError) -> Self {
        let detail = error.to_string();
        match &error {
            CoreError::Validation(_) => Self::new(ProblemKind::ValidationFailed, detail),
            CoreError::Webhook(e) => match e {
                WebhookError::InvalidTemplate { line, .. } | WebhookError::Render { line, .. } => {
                    Self::new(ProblemKind::InvalidTemplate, detail).with_line(*line)
                }
                WebhookError::InvalidEndpoint { field, .. } => {
                    // The core's grace period is the API's `grace_s`.
                    let field = if *field == "grace" { "grace_s" } else { field };
                    Self::new(ProblemKind::ValidationFailed, detail).with_field(field)
                }
                WebhookError::NotRedeliverable { .. } => {
                    Self::new(ProblemKind::NotRedeliverable, detail)
                }
                WebhookError::UnknownDelivery { .. } | WebhookError::UnknownEndpoint { .. } => {
                    Self::new(ProblemKind::NotFound, detail)
                }
                WebhookError::InvalidSecret { .. } => {
                    Self::new(ProblemKind::InvalidSecret, detail).with_field("secret")
                }
                WebhookError::InvalidRetryPolicy { .. } => {
                    Self::new(ProblemKind::ValidationFailed, detail).with_field("max_attempts")
                }
                WebhookError::InvalidRateLimit { .. } => {
                    Self::new(ProblemKind::ValidationFailed, detail)
                        .with_field("rate_limit_per_minute")
                }
                WebhookError::InvalidUrl { .. } => {
                    Self::new(ProblemKind::InvalidUrl, detail).with_field("url")
                }
                WebhookError::UnsafeUrl { .. } => {
                    Self::new(ProblemKind::UnsafeUrl, detail).with_field("url")
                }
                _ => internal(&error),
            },
            CoreError::Deploy(e) => match e {
                DeployError::UnknownDeployment { .. } => Self::new(ProblemKind::NotFound, detail),
                DeployError::InvalidTransition { .. } => {
                    Self::new(ProblemKind::InvalidTransition, detail)
                }
                _ => internal(&error),
            },
            CoreError::ApiKey(e) => match e {
                ApiKeyError::InvalidKey => {
                    Self::unauthorized(detail, super::auth::INVALID_TOKEN_CHALLENGE)
                }
                ApiKeyError::UnknownKey { .. } => Self::new(ProblemKind::NotFound, detail),
                _ => internal(&error),
            },
            _ => internal(&error),
        }
    }
}

/// Logs the cause of a server-side failure and answers a bare 500.
fn internal(error: &CoreError) -> Problem {
    eprintln!(
        "omnicloud api: internal error: {}",
        crate::error_chain(error)
    );
    Problem::internal()
}

/// The largest error body axum produces that is read back to become a problem's detail.
const MAX_PLAIN_ERROR_BYTES: usize = 16 * 1024;

/// Middleware: turns every error response that is not already a problem (axum's own 405s and
/// rejections from extractors this module does not wrap) into `application/problem+json`,
/// keeping its status and headers (`Allow` on a 405) and its text as the detail.
pub(crate) async fn problem_responses(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let kind = ProblemKind::for_status(status);
    let problem = match kind {
        ProblemKind::Internal => Problem::internal(),
        ProblemKind::MethodNotAllowed => {
            Problem::new(kind, format!("{path} does not support the {method} method"))
        }
        _ if text.is_empty() => Problem::new(kind, format!("{method} {path}: {}", kind.title())),
        _ => Problem::new(kind, text),
    };
    let mut rebuilt = problem.with_status(status).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt
}

/// The fallback of unknown routes: 404 naming the path.
pub(crate) async fn no_route(request: Request<Body>) -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        format!("no route {} {}", request.method(), request.uri().path()),
    )
}
