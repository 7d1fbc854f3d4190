//! Webhooks (spec Task 4): deployment events delivered to tenants' endpoints.
//!
//! This folder owns the rules: payload templates (Jinja2-style, strict, fuel-limited),
//! Standard Webhooks signatures and secrets, the retry schedule and the per-endpoint rate
//! limit, the SSRF guard, and tenants' endpoints ([`EndpointRegistry`]). It performs no network
//! I/O: the runtime delivers through a transport trait.

mod endpoint;
mod guard;
mod queue;
mod ratelimit;
mod registry;
mod retry;
mod schema;
mod signing;
mod template;

pub use endpoint::{EndpointSpec, EventType, WebhookEndpoint};
pub use guard::{
    AddressClass, Host, IpNetwork, MAX_URL_LEN, Scheme, UrlGuard, WebhookUrl, classify,
};
/// A template's values (a context for [`Template::render_value`]): minijinja's.
pub use minijinja::Value as TemplateValue;
pub use queue::{
    Attempt, AttemptOutcome, CLAIM_LEASE, Delivery, DeliveryStatus, WebhookQueue, WebhookRequest,
    WebhookTransport,
};
pub use ratelimit::{DEFAULT_RATE_PER_MINUTE, MAX_RATE_PER_MINUTE, RATE_WINDOW, RateLimiter};
pub use registry::{EndpointChanges, EndpointRegistry, MAX_SECRET_GRACE};
pub use retry::{
    DEFAULT_DELAYS, DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS_LIMIT, MAX_RETRY_DELAY, RetryPolicy,
    parse_retry_after,
};
pub use signing::{
    DEFAULT_TOLERANCE_S, GENERATED_SECRET_BYTES, MAX_SECRET_BYTES, MIN_SECRET_BYTES, SECRET_PREFIX,
    SIGNATURE_VERSION, WebhookSecret, sign, signature_header, verify,
};
pub use template::{MAX_RENDERED_BYTES, MAX_TEMPLATE_BYTES, TEMPLATE_FUEL, Template};

pub(crate) use schema::{EVENT_INDEX, SCHEMA, SHARED_PAYLOAD};

#[cfg(test)]
mod tests;
