//! `EndpointRegistry`: tenants' webhook endpoints, kept in the store.
//!
//! Every change is validated before anything is written: the URL against the SSRF guard, the
//! template compiled, the secret parsed, limits in range. Reads are tenant-scoped where a
//! tenant is given, so one tenant never sees or changes another's endpoints.

use chrono::TimeDelta;
use rusqlite::{OptionalExtension, params};

use super::endpoint::{
    EndpointSpec, EventType, WebhookEndpoint, normalise_event_types, normalise_states,
};
use super::{MAX_ATTEMPTS_LIMIT, MAX_RATE_PER_MINUTE, Template, UrlGuard, WebhookSecret};
use crate::clock::SharedClock;
use crate::deploy::DeploymentState;
use crate::error::{Error, Result, StoreError, WebhookError};
use crate::ids::{TenantId, generate_prefixed_id};
use crate::store::{Store, format_timestamp};

/// The longest grace period of a rotated-out secret.
pub const MAX_SECRET_GRACE: TimeDelta = TimeDelta::days(7);

/// Changes to an endpoint; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointChanges {
    /// A new URL.
    pub url: Option<String>,
    /// New subscriptions.
    pub event_types: Option<Vec<EventType>>,
    /// A new state filter (`Some(None)` removes it).
    pub states: Option<Option<Vec<DeploymentState>>>,
    /// A new template (`Some(None)` returns to the default payload).
    pub template: Option<Option<String>>,
    /// A new limit per rolling minute.
    pub rate_limit_per_minute: Option<u32>,
    /// A new attempt count.
    pub max_attempts: Option<u32>,
    /// `Some(true)` re-enables an endpoint disabled by a 410 answer.
    pub enabled: Option<bool>,
}

/// An endpoint row, as read.
type EndpointRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    u32,
    u32,
    Option<String>,
    String,
    String,
);

const COLUMNS: &str = "id, tenant_id, url, event_types, states, template, secret, previous_secret,
    previous_secret_until, rate_limit_per_minute, max_attempts, disabled_reason, created_at,
    updated_at";

/// Tenants' webhook endpoints in one store.
#[derive(Debug, Clone)]
pub struct EndpointRegistry {
    store: Store,
    clock: SharedClock,
    guard: UrlGuard,
}

impl EndpointRegistry {
    /// Endpoints in `store`; URLs are checked by `guard`.
    pub fn new(store: Store, clock: SharedClock, guard: UrlGuard) -> Self {
        Self {
            store,
            clock,
            guard,
        }
    }

    /// The SSRF guard URLs are checked by (the dispatcher checks resolved addresses with it).
    pub fn guard(&self) -> &UrlGuard {
        &self.guard
    }

    /// Registers an endpoint (everything validated first; a secret generated if none given).
    pub fn register(&self, spec: &EndpointSpec) -> Result<WebhookEndpoint> {
        let now = self.clock.now();
        let secret = match &spec.secret {
            Some(text) => WebhookSecret::parse(text)?,
            None => WebhookSecret::generate()?,
        };
        let endpoint = WebhookEndpoint {
            id: generate_prefixed_id("ep_"),
            tenant_id: spec.tenant_id.clone(),
            url: self.guard.check_url(&spec.url)?.to_string(),
            event_types: normalise_event_types(&spec.event_types)?,
            states: normalise_states(spec.states.as_deref())?,
            template: spec.template.as_deref().map(Template::new).transpose()?,
            secret,
            previous_secret: None,
            rate_limit_per_minute: check_rate(spec.rate_limit_per_minute)?,
            max_attempts: check_attempts(spec.max_attempts)?,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        self.write(&endpoint, true)?;
        Ok(endpoint)
    }

    /// The endpoint with this id, if `tenant_id` (when given) owns it.
    pub fn get(&self, id: &str, tenant_id: Option<&TenantId>) -> Result<WebhookEndpoint> {
        let row = self.store.read(|c| get_row(c, id, tenant_id))?;
        self.found(id, row)
    }

    /// The endpoint with this id as `conn` (a transaction in progress) sees it.
    pub(crate) fn get_in(&self, conn: &rusqlite::Connection, id: &str) -> Result<WebhookEndpoint> {
        let row = get_row(conn, id, None).map_err(|e| self.store.sqlite_error(e))?;
        self.found(id, row)
    }

    fn found(&self, id: &str, row: Option<EndpointRow>) -> Result<WebhookEndpoint> {
        let row = row.ok_or_else(|| WebhookError::UnknownEndpoint {
            endpoint_id: id.to_owned(),
        })?;
        self.decode(row)
    }

    /// The tenant's endpoints, oldest first.
    pub fn list(&self, tenant_id: &TenantId) -> Result<Vec<WebhookEndpoint>> {
        let rows = self.store.read(|c| list_rows(c, tenant_id))?;
        rows.into_iter().map(|r| self.decode(r)).collect()
    }

    /// The tenant's endpoints as `conn` (a transaction in progress) sees them.
    pub(crate) fn list_in(
        &self,
        conn: &rusqlite::Connection,
        tenant_id: &TenantId,
    ) -> Result<Vec<WebhookEndpoint>> {
        let rows = list_rows(conn, tenant_id).map_err(|e| self.store.sqlite_error(e))?;
        rows.into_iter().map(|r| self.decode(r)).collect()
    }

    /// Applies `changes` to the endpoint (validated first; nothing changes on an error).
    pub fn update(
        &self,
        id: &str,
        tenant_id: Option<&TenantId>,
        changes: &EndpointChanges,
    ) -> Result<WebhookEndpoint> {
        let mut e = self.get(id, tenant_id)?;
        if let Some(url) = &changes.url {
            e.url = self.guard.check_url(url)?.to_string();
        }
        if let Some(types) = &changes.event_types {
            e.event_types = normalise_event_types(types)?;
        }
        if let Some(states) = &changes.states {
            e.states = normalise_states(states.as_deref())?;
        }
        if let Some(template) = &changes.template {
            e.template = template.as_deref().map(Template::new).transpose()?;
        }
        if let Some(rate) = changes.rate_limit_per_minute {
            e.rate_limit_per_minute = check_rate(rate)?;
        }
        if let Some(attempts) = changes.max_attempts {
            e.max_attempts = check_attempts(attempts)?;
        }
        match changes.enabled {
            Some(true) => e.disabled_reason = None,
            Some(false) => e.disabled_reason = Some("disabled by its owner".to_owned()),
            None => {}
        }
        e.updated_at = self.clock.now();
        self.write(&e, false)?;
        Ok(e)
    }

    /// Replaces the signing secret (with `secret`, or a generated one); the old secret keeps
    /// signing, alongside the new, for `grace` (at most [`MAX_SECRET_GRACE`]).
    pub fn rotate_secret(
        &self,
        id: &str,
        tenant_id: Option<&TenantId>,
        secret: Option<&str>,
        grace: TimeDelta,
    ) -> Result<WebhookEndpoint> {
        if grace < TimeDelta::zero() || grace > MAX_SECRET_GRACE {
            return Err(WebhookError::InvalidEndpoint {
                field: "grace",
                reason: format!("{grace} is outside 0 to 7 days"),
            }
            .into());
        }
        let mut e = self.get(id, tenant_id)?;
        let new = match secret {
            Some(text) => WebhookSecret::parse(text)?,
            None => WebhookSecret::generate()?,
        };
        let now = self.clock.now();
        let old = std::mem::replace(&mut e.secret, new);
        e.previous_secret = (grace > TimeDelta::zero()).then(|| (old, now + grace));
        e.updated_at = now;
        self.write(&e, false)?;
        Ok(e)
    }

    /// Stops deliveries to the endpoint, saying why (the dispatcher does this on 410 Gone).
    pub fn disable(&self, id: &str, reason: &str) -> Result<WebhookEndpoint> {
        let mut e = self.get(id, None)?;
        e.disabled_reason = Some(reason.to_owned());
        e.updated_at = self.clock.now();
        self.write(&e, false)?;
        Ok(e)
    }

    /// Deletes the endpoint.
    pub fn delete(&self, id: &str, tenant_id: Option<&TenantId>) -> Result<()> {
        self.get(id, tenant_id)?;
        self.store.write(|tx| -> Result<()> {
            tx.execute("DELETE FROM webhook_endpoints WHERE id = ?1", [id])
                .map_err(|e| self.sql(e))?;
            Ok(())
        })
    }

    fn write(&self, e: &WebhookEndpoint, new: bool) -> Result<()> {
        let json = |v: &serde_json::Value| v.to_string();
        let types = json(&serde_json::json!(e.event_types));
        let states = e.states.as_ref().map(|s| json(&serde_json::json!(s)));
        let sql = if new {
            format!(
                "INSERT INTO webhook_endpoints ({COLUMNS}) VALUES
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            )
        } else {
            "UPDATE webhook_endpoints SET tenant_id = ?2, url = ?3, event_types = ?4, states = ?5,
                 template = ?6, secret = ?7, previous_secret = ?8, previous_secret_until = ?9,
                 rate_limit_per_minute = ?10, max_attempts = ?11, disabled_reason = ?12,
                 created_at = ?13, updated_at = ?14 WHERE id = ?1"
                .to_owned()
        };
        self.store.write(|tx| -> Result<()> {
            tx.execute(
                &sql,
                params![
                    e.id,
                    e.tenant_id.as_str(),
                    e.url,
                    types,
                    states,
                    e.template.as_ref().map(Template::source),
                    e.secret.as_str(),
                    e.previous_secret
                        .as_ref()
                        .map(|(s, _)| s.as_str().to_owned()),
                    e.previous_secret
                        .as_ref()
                        .map(|(_, t)| format_timestamp(*t)),
                    e.rate_limit_per_minute,
                    e.max_attempts,
                    e.disabled_reason,
                    format_timestamp(e.created_at),
                    format_timestamp(e.updated_at)
                ],
            )
            .map_err(|err| self.sql(err))?;
            Ok(())
        })
    }

    fn sql(&self, e: rusqlite::Error) -> Error {
        Error::Store(self.store.sqlite_error(e))
    }

    fn decode(&self, row: EndpointRow) -> Result<WebhookEndpoint> {
        let (
            id,
            tenant,
            url,
            types,
            states,
            template,
            secret,
            previous,
            until,
            rate,
            attempts,
            disabled,
            created,
            updated,
        ) = row;
        let bad = |column: &'static str, reason: String| -> Error {
            StoreError::Decode {
                path: self.store.label().to_path_buf(),
                table: "webhook_endpoints",
                column,
                reason,
            }
            .into()
        };
        let time = |column, text: &str| self.store.decode_time("webhook_endpoints", column, text);
        let previous_secret = match (previous, until) {
            (Some(s), Some(t)) => Some((
                WebhookSecret::parse(&s)?,
                time("previous_secret_until", &t)?,
            )),
            _ => None,
        };
        Ok(WebhookEndpoint {
            id,
            tenant_id: TenantId::new(tenant)?,
            url,
            event_types: serde_json::from_str(&types)
                .map_err(|e| bad("event_types", e.to_string()))?,
            states: states
                .map(|s| serde_json::from_str(&s).map_err(|e| bad("states", e.to_string())))
                .transpose()?,
            template: template.as_deref().map(Template::new).transpose()?,
            secret: WebhookSecret::parse(&secret)?,
            previous_secret,
            rate_limit_per_minute: rate,
            max_attempts: attempts,
            disabled_reason: disabled,
            created_at: time("created_at", &created)?,
            updated_at: time("updated_at", &updated)?,
        })
    }
}

fn check_rate(rate: u32) -> Result<u32, WebhookError> {
    if (1..=MAX_RATE_PER_MINUTE).contains(&rate) {
        Ok(rate)
    } else {
        Err(WebhookError::InvalidEndpoint {
            field: "rate_limit_per_minute",
            reason: format!("{rate} is outside 1..={MAX_RATE_PER_MINUTE}"),
        })
    }
}

fn check_attempts(attempts: u32) -> Result<u32, WebhookError> {
    if (1..=MAX_ATTEMPTS_LIMIT).contains(&attempts) {
        Ok(attempts)
    } else {
        Err(WebhookError::InvalidEndpoint {
            field: "max_attempts",
            reason: format!("{attempts} is outside 1..={MAX_ATTEMPTS_LIMIT}"),
        })
    }
}

/// The tenant's endpoint rows, oldest first.
fn list_rows(
    conn: &rusqlite::Connection,
    tenant_id: &TenantId,
) -> rusqlite::Result<Vec<EndpointRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = ?1 ORDER BY created_at, id"
    ))?;
    stmt.query_map([tenant_id.as_str()], |r| r.try_into())?
        .collect()
}

/// The endpoint's row (only if it is the tenant's, when a tenant is given).
fn get_row(
    conn: &rusqlite::Connection,
    id: &str,
    tenant_id: Option<&TenantId>,
) -> rusqlite::Result<Option<EndpointRow>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)"
    ))?
    .query_row(params![id, tenant_id.map(TenantId::as_str)], |r| {
        r.try_into()
    })
    .optional()
}
