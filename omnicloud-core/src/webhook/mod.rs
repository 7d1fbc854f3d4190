//! Webhooks (spec Task 4): deployment events delivered to tenants' endpoints.
//!
//! This folder owns the rules: payload templates (Jinja2-style, strict, fuel-limited),
//! Standard Webhooks signatures and secrets, the retry schedule and the per-endpoint rate
//! limit. It performs no network I/O: the runtime delivers through a transport trait.

mod ratelimit;
mod retry;
mod signing;
mod template;

pub use ratelimit::{DEFAULT_RATE_PER_MINUTE, MAX_RATE_PER_MINUTE, RATE_WINDOW, RateLimiter};
pub use retry::{
    DEFAULT_DELAYS, DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS_LIMIT, MAX_RETRY_DELAY, RetryPolicy,
    parse_retry_after,
};
pub use signing::{
    DEFAULT_TOLERANCE_S, GENERATED_SECRET_BYTES, MAX_SECRET_BYTES, MIN_SECRET_BYTES, SECRET_PREFIX,
    SIGNATURE_VERSION, WebhookSecret, sign, signature_header, verify,
};
pub use template::{MAX_RENDERED_BYTES, MAX_TEMPLATE_BYTES, TEMPLATE_FUEL, Template};
