//! Active health checks: what to probe and how a probe reports, as data and a small trait.
//!
//! A [`HealthCheck`] names where its outcome counts (tenant, region, zone, optionally one
//! resource) and what it probes: an HTTP(S) URL that must answer 2xx or 3xx, or a TCP port
//! that must accept a connection, each within a timeout (Route 53's rules). The runtime crate
//! implements [`HealthProbe`] over the network; the controller stamps each outcome with its
//! clock and feeds it to the same evaluation as reported results. Nothing here opens a socket.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{FailoverError, Result};
use crate::ids::{IdKind, TenantId, validate_id};

/// The shortest timeout a check may have.
pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(10);
/// The longest timeout a check may have (Route 53 waits at most 4 s to connect and 2 s for
/// the response; 30 s leaves room for slow targets without stalling an evaluation round).
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeTarget {
    /// An HTTP or HTTPS URL: healthy when it answers with a 2xx or 3xx status (redirects are
    /// not followed).
    Http {
        /// The URL (`http://` or `https://`, with a host).
        url: String,
    },
    /// A TCP port: healthy when a connection is accepted.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port (1–65535).
        port: u16,
    },
}

impl std::fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { url } => write!(f, "GET {url}"),
            Self::Tcp { host, port } => write!(f, "tcp {host}:{port}"),
        }
    }
}

/// One active health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The tenant whose endpoint is checked.
    pub tenant_id: TenantId,
    /// The region the outcome counts for.
    pub region: String,
    /// The availability zone the outcome counts for.
    pub zone: String,
    /// The resource checked, if the check is of one resource.
    pub resource_id: Option<String>,
    /// What is probed.
    pub target: ProbeTarget,
    /// How long the whole probe may take before it counts as failed.
    pub timeout: Duration,
}

impl HealthCheck {
    /// A validated check: region, zone and resource ids well formed, an `http`/`https` URL
    /// with a host or a host with a non-zero port, and a timeout between
    /// [`MIN_PROBE_TIMEOUT`] and [`MAX_PROBE_TIMEOUT`].
    pub fn new(
        tenant_id: TenantId,
        region: &str,
        zone: &str,
        resource_id: Option<String>,
        target: ProbeTarget,
        timeout: Duration,
    ) -> Result<Self> {
        let bad = |reason: String| FailoverError::InvalidHealthCheck { reason };
        validate_id(IdKind::Region, region).map_err(|e| bad(e.to_string()))?;
        validate_id(IdKind::Region, zone).map_err(|e| bad(format!("zone: {e}")))?;
        if let Some(r) = &resource_id {
            validate_id(IdKind::Resource, r).map_err(|e| bad(e.to_string()))?;
        }
        match &target {
            ProbeTarget::Http { url } => {
                let rest = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"))
                    .ok_or_else(|| {
                        bad(format!("URL {url:?} must start with http:// or https://"))
                    })?;
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                if host.is_empty() || url.chars().any(char::is_whitespace) {
                    return Err(bad(format!("URL {url:?} has no host or contains spaces")).into());
                }
            }
            ProbeTarget::Tcp { host, port } => {
                if host.trim().is_empty() || host.chars().any(char::is_whitespace) {
                    return Err(bad(format!("TCP host {host:?} is empty or has spaces")).into());
                }
                if *port == 0 {
                    return Err(bad("TCP port must be 1–65535, not 0".to_owned()).into());
                }
            }
        }
        if !(MIN_PROBE_TIMEOUT..=MAX_PROBE_TIMEOUT).contains(&timeout) {
            return Err(bad(format!(
                "timeout {:?} is outside {:?}..={:?}",
                timeout, MIN_PROBE_TIMEOUT, MAX_PROBE_TIMEOUT
            ))
            .into());
        }
        Ok(Self {
            tenant_id,
            region: region.to_owned(),
            zone: zone.to_owned(),
            resource_id,
            target,
            timeout,
        })
    }
}

/// How one probe went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// Whether the target answered as required in time.
    pub healthy: bool,
    /// Why it failed (or what it answered, e.g. `HTTP 503`), if it did.
    pub error: Option<String>,
    /// How long the probe took.
    pub elapsed: Duration,
}

/// Runs health checks against real targets. Implementations run the checks concurrently where
/// they can and never take much longer than the largest timeout.
pub trait HealthProbe: Send + Sync {
    /// One outcome per check, in the checks' order.
    fn run(&self, checks: &[HealthCheck]) -> Vec<ProbeOutcome>;
}
