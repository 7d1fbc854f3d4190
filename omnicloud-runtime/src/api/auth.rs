//! Bearer authentication: `Authorization: Bearer ock_...` names the tenant every `/v1` route
//! acts for.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use omnicloud_core::ids::TenantId;

use super::ApiState;
use super::extract::blocking;
use super::problem::Problem;

/// The challenge sent when no credentials were presented.
pub const MISSING_TOKEN_CHALLENGE: &str = "Bearer realm=\"omnicloud\"";
/// The challenge sent when the presented credentials do not authenticate.
pub const INVALID_TOKEN_CHALLENGE: &str = "Bearer realm=\"omnicloud\", error=\"invalid_token\"";

/// The tenant the request's API key authenticates as. Extracting it answers 401 (with a
/// `WWW-Authenticate: Bearer` challenge) when the header is missing, is not a bearer token,
/// or the key is malformed, unknown or revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub TenantId);

impl FromRequestParts<ApiState> for Tenant {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(Problem::unauthorized(
                "this route requires an API key: send Authorization: Bearer <key>",
                MISSING_TOKEN_CHALLENGE,
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned())
            .ok_or_else(|| {
                Problem::unauthorized(
                    "the Authorization header must be \"Bearer <key>\"",
                    INVALID_TOKEN_CHALLENGE,
                )
            })?;
        let keys = state.keys.clone();
        blocking(move || Ok(keys.authenticate(&token)?))
            .await
            .map(Tenant)
    }
}
