//! `HealthCheckResult`, `HealthCheck`, `ProbeResult`, `DnsRecord`, `FailoverPolicy`,
//! `InMemoryDns`, `Rfc2136Dns`, `InMemoryResources`, `FailoverController`, `FailoverReport`,
//! `PlanStep` and `FailoverStatus`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use omnicloud_core::failover as core;
use omnicloud_core::ids::TenantId;
use pyo3::prelude::*;

use omnicloud_runtime::dns::Rfc2136Dns as RuntimeRfc2136Dns;
use omnicloud_runtime::probe::NetworkProbe;

use crate::audit::AuditLog;
use crate::billing::{BillingService, UsageTuple, usage_records_from_py, usage_tuple};
use crate::clock::clock_arg;
use crate::convert::{json_to_py, type_name, utc_from_py};
use crate::errors::BindingError;
use crate::gateway::detached;
use crate::state::StateManager;
use crate::store::Store;
use crate::tenancy::tenant_id_arg;

/// One health check of one availability zone.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct HealthCheckResult {
    inner: core::HealthCheckResult,
}

#[pymethods]
impl HealthCheckResult {
    #[new]
    #[pyo3(signature = (tenant_id, region, zone, healthy, at, resource_id = None))]
    fn new(
        tenant_id: &str,
        region: &str,
        zone: &str,
        healthy: bool,
        at: &Bound<'_, PyAny>,
        resource_id: Option<String>,
    ) -> PyResult<Self> {
        let inner = core::HealthCheckResult::new(
            tenant_id_arg(tenant_id)?,
            region,
            zone,
            healthy,
            utc_from_py(at, "at")?,
            resource_id,
        )
        .map_err(BindingError::from)?;
        Ok(Self { inner })
    }
    /// The tenant.
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    /// The region checked.
    #[getter]
    fn region(&self) -> &str {
        &self.inner.region
    }
    /// The zone checked.
    #[getter]
    fn zone(&self) -> &str {
        &self.inner.zone
    }
    /// Whether the check passed.
    #[getter]
    fn healthy(&self) -> bool {
        self.inner.healthy
    }
    /// When it was taken.
    #[getter]
    fn at(&self) -> DateTime<Utc> {
        self.inner.at
    }
    fn __repr__(&self) -> String {
        format!(
            "HealthCheckResult({:?}, {}/{}, healthy={}, at={})",
            self.inner.tenant_id.as_str(),
            self.inner.region,
            self.inner.zone,
            self.inner.healthy,
            self.inner.at.to_rfc3339()
        )
    }
}

/// A DNS record a failover switches.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
#[derive(Clone)]
pub struct DnsRecord {
    inner: core::DnsRecord,
}

#[pymethods]
impl DnsRecord {
    #[new]
    #[pyo3(signature = (zone, name, rtype, primary_value, secondary_value, ttl = 60))]
    fn new(
        zone: &str,
        name: &str,
        rtype: &str,
        primary_value: &str,
        secondary_value: &str,
        ttl: i64,
    ) -> PyResult<Self> {
        let kind = core::RecordType::parse(rtype).ok_or_else(|| {
            BindingError::value(format!("record type {rtype:?} is not A, AAAA or CNAME"))
        })?;
        let ttl = u32::try_from(ttl)
            .map_err(|_| BindingError::value(format!("ttl {ttl} is out of range")))?;
        let inner = core::DnsRecord::new(zone, name, kind, primary_value, secondary_value, ttl)
            .map_err(BindingError::from)?;
        Ok(Self { inner })
    }
    /// The zone (absolute).
    #[getter]
    fn zone(&self) -> &str {
        &self.inner.zone
    }
    /// The record's name (absolute).
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }
    /// A, AAAA or CNAME.
    #[getter]
    fn rtype(&self) -> &'static str {
        self.inner.rtype.as_str()
    }
    /// The value while the primary serves.
    #[getter]
    fn primary_value(&self) -> &str {
        &self.inner.primary_value
    }
    /// The value after failover.
    #[getter]
    fn secondary_value(&self) -> &str {
        &self.inner.secondary_value
    }
    /// Time to live, seconds.
    #[getter]
    fn ttl(&self) -> u32 {
        self.inner.ttl
    }
    fn __repr__(&self) -> String {
        format!(
            "DnsRecord({} {} {} -> {}, ttl={})",
            self.inner.name,
            self.inner.rtype.as_str(),
            self.inner.primary_value,
            self.inner.secondary_value,
            self.inner.ttl
        )
    }
}

/// A tenant's failover policy.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct FailoverPolicy {
    inner: core::FailoverPolicy,
}

#[pymethods]
impl FailoverPolicy {
    #[new]
    #[pyo3(signature = (tenant_id, primary_region, secondary_region, failure_threshold = 3, evaluation_window_s = 60, min_unhealthy_zones = 2, failback_after_s = 300, auto_failback = true, dns_records = Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        tenant_id: &str,
        primary_region: &str,
        secondary_region: &str,
        failure_threshold: i64,
        evaluation_window_s: i64,
        min_unhealthy_zones: i64,
        failback_after_s: i64,
        auto_failback: bool,
        dns_records: Vec<PyRef<'_, DnsRecord>>,
    ) -> PyResult<Self> {
        let tenant = tenant_id_arg(tenant_id)?;
        let count = |name: &str, v: i64| -> PyResult<u32> {
            u32::try_from(v)
                .map_err(|_| BindingError::value(format!("{name} {v} is out of range")).into())
        };
        let inner = core::FailoverPolicy::new(
            tenant,
            primary_region,
            secondary_region,
            count("failure_threshold", failure_threshold)?,
            count("evaluation_window_s", evaluation_window_s)?,
            count("min_unhealthy_zones", min_unhealthy_zones)?,
            count("failback_after_s", failback_after_s)?,
            auto_failback,
            dns_records.iter().map(|r| r.inner.clone()).collect(),
        )
        .map_err(BindingError::from)?;
        Ok(Self { inner })
    }
    /// The tenant.
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    /// The region that serves normally.
    #[getter]
    fn primary_region(&self) -> &str {
        &self.inner.primary_region
    }
    /// The region that takes over.
    #[getter]
    fn secondary_region(&self) -> &str {
        &self.inner.secondary_region
    }
    /// Consecutive failed checks before a zone counts as failing.
    #[getter]
    fn failure_threshold(&self) -> u32 {
        self.inner.failure_threshold
    }
    /// Failed checks older than this no longer count.
    #[getter]
    fn evaluation_window_s(&self) -> u32 {
        self.inner.evaluation_window_s
    }
    /// Failing zones needed for the region to count as down.
    #[getter]
    fn min_unhealthy_zones(&self) -> u32 {
        self.inner.min_unhealthy_zones
    }
    /// Health needed (seconds) before a failback.
    #[getter]
    fn failback_after_s(&self) -> u32 {
        self.inner.failback_after_s
    }
    /// Whether failback is automatic.
    #[getter]
    fn auto_failback(&self) -> bool {
        self.inner.auto_failback
    }
    /// The DNS records to switch.
    #[getter]
    fn dns_records(&self) -> Vec<DnsRecord> {
        self.inner
            .dns_records
            .iter()
            .map(|r| DnsRecord { inner: r.clone() })
            .collect()
    }
    fn __repr__(&self) -> String {
        format!(
            "FailoverPolicy({:?}, {} -> {})",
            self.inner.tenant_id.as_str(),
            self.inner.primary_region,
            self.inner.secondary_region
        )
    }
}

/// DNS records kept in memory (for tests and demos).
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct InMemoryDns {
    inner: Arc<core::InMemoryDns>,
}

#[pymethods]
impl InMemoryDns {
    #[new]
    fn new() -> Self {
        Self {
            inner: Arc::new(core::InMemoryDns::new()),
        }
    }
    /// The (value, ttl) `name` answers for `rtype`, or None.
    #[pyo3(signature = (name, rtype = "A"))]
    fn lookup(&self, name: &str, rtype: &str) -> Option<(String, u32)> {
        let name = if name.ends_with('.') {
            name.to_ascii_lowercase()
        } else {
            format!("{}.", name.to_ascii_lowercase())
        };
        self.inner.lookup(&name, &rtype.to_ascii_uppercase())
    }
}

/// A real DNS provider: TSIG-signed RFC 2136 updates to the zone's primary server.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Rfc2136Dns {
    inner: Arc<RuntimeRfc2136Dns>,
}

#[pymethods]
impl Rfc2136Dns {
    /// A client updating `zone` on `server:port` with the TSIG key `key_name` (`key_secret` in
    /// base64) under `algorithm`; each exchange waits at most `timeout_s` seconds.
    #[new]
    #[pyo3(signature = (server, port, zone, key_name, key_secret, algorithm = "hmac-sha256", timeout_s = 2.0))]
    fn new(
        server: &str,
        port: u16,
        zone: &str,
        key_name: &str,
        key_secret: &str,
        algorithm: &str,
        timeout_s: f64,
    ) -> PyResult<Self> {
        let timeout = duration_arg(timeout_s, "timeout_s")?;
        let inner =
            RuntimeRfc2136Dns::new(server, port, zone, key_name, key_secret, algorithm, timeout)
                .map_err(|e| BindingError::value(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }
    /// The (value, ttl) pairs the server answers for `name` and `rtype` (a plain query).
    #[pyo3(signature = (name, rtype = "A"))]
    fn lookup(&self, py: Python<'_>, name: &str, rtype: &str) -> PyResult<Vec<(String, u32)>> {
        let rtype = core::RecordType::parse(rtype).ok_or_else(|| {
            BindingError::value(format!("rtype {rtype:?} is not one of A, AAAA, CNAME"))
        })?;
        let dns = self.inner.clone();
        let name = name.to_owned();
        py.detach(move || dns.lookup(&name, rtype))
            .map_err(|e| BindingError::value(e).into())
    }
    /// Makes `record` answer `value` now (what a failover's DNS step does).
    fn set(&self, py: Python<'_>, record: &Bound<'_, DnsRecord>, value: &str) -> PyResult<()> {
        let record = record.get().inner.clone();
        let dns = self.inner.clone();
        let value = value.to_owned();
        py.detach(move || core::DnsProvider::set(&*dns, &record, &value))
            .map_err(|e| BindingError::value(e).into())
    }
    /// The zone updated (absolute).
    #[getter]
    fn zone(&self) -> String {
        self.inner.zone()
    }
    fn __repr__(&self) -> String {
        format!(
            "Rfc2136Dns(server={:?}, zone={:?})",
            self.inner.server().to_string(),
            self.inner.zone()
        )
    }
}

/// A region span as `(region, from, until)`.
type RegionSpanTuple = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn duration_arg(seconds: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            BindingError::value(format!(
                "{what} must be a positive number of seconds, got {seconds}"
            ))
            .into()
        })
}

/// An active health check: an HTTP(S) URL or a TCP port, counted for one zone of a tenant's
/// region.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct HealthCheck {
    inner: core::HealthCheck,
}

impl HealthCheck {
    fn build(
        tenant_id: &str,
        region: &str,
        zone: &str,
        target: core::ProbeTarget,
        timeout_s: f64,
        resource_id: Option<String>,
    ) -> PyResult<Self> {
        let inner = core::HealthCheck::new(
            tenant_id_arg(tenant_id)?,
            region,
            zone,
            resource_id,
            target,
            duration_arg(timeout_s, "timeout_s")?,
        )
        .map_err(BindingError::from)?;
        Ok(Self { inner })
    }
}

#[pymethods]
impl HealthCheck {
    /// Healthy when `url` answers 2xx or 3xx within `timeout_s` (redirects not followed).
    #[staticmethod]
    #[pyo3(signature = (tenant_id, region, zone, url, timeout_s = 2.0, resource_id = None))]
    fn http(
        tenant_id: &str,
        region: &str,
        zone: &str,
        url: &str,
        timeout_s: f64,
        resource_id: Option<String>,
    ) -> PyResult<Self> {
        let target = core::ProbeTarget::Http {
            url: url.to_owned(),
        };
        Self::build(tenant_id, region, zone, target, timeout_s, resource_id)
    }
    /// Healthy when `host:port` accepts a TCP connection within `timeout_s`.
    #[staticmethod]
    #[pyo3(signature = (tenant_id, region, zone, host, port, timeout_s = 2.0, resource_id = None))]
    fn tcp(
        tenant_id: &str,
        region: &str,
        zone: &str,
        host: &str,
        port: u16,
        timeout_s: f64,
        resource_id: Option<String>,
    ) -> PyResult<Self> {
        let target = core::ProbeTarget::Tcp {
            host: host.to_owned(),
            port,
        };
        Self::build(tenant_id, region, zone, target, timeout_s, resource_id)
    }
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    #[getter]
    fn region(&self) -> &str {
        &self.inner.region
    }
    #[getter]
    fn zone(&self) -> &str {
        &self.inner.zone
    }
    /// `http` or `tcp`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner.target {
            core::ProbeTarget::Http { .. } => "http",
            core::ProbeTarget::Tcp { .. } => "tcp",
        }
    }
    /// What is probed (`GET url` or `tcp host:port`).
    #[getter]
    fn target(&self) -> String {
        self.inner.target.to_string()
    }
    #[getter]
    fn timeout_s(&self) -> f64 {
        self.inner.timeout.as_secs_f64()
    }
    fn __repr__(&self) -> String {
        format!(
            "HealthCheck({:?}, {}/{}, {:?})",
            self.inner.tenant_id.as_str(),
            self.inner.region,
            self.inner.zone,
            self.inner.target.to_string()
        )
    }
}

/// One probe's outcome and the health result it was recorded as.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct ProbeResult {
    result: core::HealthCheckResult,
    outcome: core::ProbeOutcome,
}

#[pymethods]
impl ProbeResult {
    /// The health result recorded.
    #[getter]
    fn result(&self) -> HealthCheckResult {
        HealthCheckResult {
            inner: self.result.clone(),
        }
    }
    #[getter]
    fn healthy(&self) -> bool {
        self.outcome.healthy
    }
    /// Why the probe failed (None if healthy).
    #[getter]
    fn error(&self) -> Option<String> {
        self.outcome.error.clone()
    }
    /// How long the probe took, in seconds.
    #[getter]
    fn elapsed_s(&self) -> f64 {
        self.outcome.elapsed.as_secs_f64()
    }
    fn __repr__(&self) -> String {
        format!(
            "ProbeResult({}/{}, healthy={}, error={:?})",
            self.result.region, self.result.zone, self.outcome.healthy, self.outcome.error
        )
    }
}

/// A `ResourceController` written in Python: any object with `promote(resource_id, region)`
/// that raises if it could not.
struct PythonResources {
    object: Py<PyAny>,
}

impl core::ResourceController for PythonResources {
    fn promote(
        &self,
        resource: &omnicloud_core::state::Resource,
        region: &str,
    ) -> Result<(), String> {
        Python::attach(|py| {
            self.object
                .call_method1(py, "promote", (resource.id.as_str(), region))
                .map(drop)
                .map_err(|e| format!("promote({}, {region}) raised {e}", resource.id))
        })
    }
}

/// Standby resources promoted in memory (for tests and demos), with a call log and injectable
/// failures.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct InMemoryResources {
    inner: Arc<core::InMemoryResources>,
}

#[pymethods]
impl InMemoryResources {
    #[new]
    fn new() -> Self {
        Self {
            inner: Arc::new(core::InMemoryResources::new()),
        }
    }
    /// The resources promoted, with the region each was promoted in.
    fn promoted(&self) -> std::collections::BTreeMap<String, String> {
        self.inner.promoted()
    }
    /// Every promotion call made, in order.
    fn calls(&self) -> Vec<String> {
        self.inner.calls()
    }
    /// Makes the next `times` promotions of `resource_id` fail.
    fn fail_next(&self, resource_id: &str, times: u32) {
        self.inner.fail_next(resource_id, times);
    }
}

/// One step of a failover plan.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct PlanStep {
    inner: core::PlanStep,
}

#[pymethods]
impl PlanStep {
    /// The resource promoted, or the DNS record switched.
    #[getter]
    fn resource_id(&self) -> &str {
        &self.inner.target
    }
    /// `promote` or `switch_dns`.
    #[getter]
    fn action(&self) -> &'static str {
        self.inner.action.as_str()
    }
    /// For a promotion, the region the resource ran in when the plan was made.
    #[getter]
    fn source_region(&self) -> Option<&str> {
        self.inner.source_region.as_deref()
    }
    /// When it completed (None if it did not).
    #[getter]
    fn at(&self) -> Option<DateTime<Utc>> {
        self.inner.done_at
    }
    /// How many times it was tried.
    #[getter]
    fn attempts(&self) -> u32 {
        self.inner.attempts
    }
    /// The last failure's message.
    #[getter]
    fn error(&self) -> Option<&str> {
        self.inner.last_error.as_deref()
    }
    fn __repr__(&self) -> String {
        format!(
            "PlanStep({} {})",
            self.inner.action.as_str(),
            self.inner.target
        )
    }
}

/// A failover or failback plan and how it went.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct FailoverReport {
    inner: core::FailoverReport,
}

#[pymethods]
impl FailoverReport {
    /// The plan's id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// The tenant.
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    /// `failover` or `failback`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }
    /// The region left.
    #[getter(from_region)]
    fn region_left(&self) -> &str {
        &self.inner.from_region
    }
    /// The region serving afterwards.
    #[getter]
    fn to_region(&self) -> &str {
        &self.inner.to_region
    }
    /// The steps, in order.
    #[getter]
    fn steps(&self) -> Vec<PlanStep> {
        self.inner
            .steps
            .iter()
            .map(|s| PlanStep { inner: s.clone() })
            .collect()
    }
    /// What triggered it (health evidence, or operator and reason), as a dict.
    #[getter]
    fn trigger<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.trigger)
    }
    /// When the plan was persisted.
    #[getter]
    fn initiated_at(&self) -> DateTime<Utc> {
        self.inner.initiated_at
    }
    /// When DNS was switched.
    #[getter]
    fn dns_updated_at(&self) -> Option<DateTime<Utc>> {
        self.inner.dns_updated_at
    }
    /// Seconds from initiation to the DNS switch.
    #[getter]
    fn dns_delay_s(&self) -> Option<f64> {
        self.inner.dns_delay_s()
    }
    /// When the last step completed.
    #[getter]
    fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.inner.completed_at
    }
    /// `running`, `completed` or `stopped`.
    #[getter]
    fn status(&self) -> &'static str {
        match self.inner.status {
            core::PlanStatus::Running => "running",
            core::PlanStatus::Completed => "completed",
            core::PlanStatus::Stopped => "stopped",
        }
    }
    fn __repr__(&self) -> String {
        format!(
            "FailoverReport({:?}, {} {} -> {}, {}, {} steps)",
            self.inner.tenant_id.as_str(),
            self.inner.kind.as_str(),
            self.inner.from_region,
            self.inner.to_region,
            self.status(),
            self.inner.steps.len()
        )
    }
}

/// Where a tenant is served.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct FailoverStatus {
    inner: core::FailoverStatus,
}

#[pymethods]
impl FailoverStatus {
    /// The tenant.
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    /// The region serving it.
    #[getter]
    fn serving_region(&self) -> &str {
        &self.inner.serving_region
    }
    /// Whether that is the primary.
    #[getter]
    fn on_primary(&self) -> bool {
        self.inner.on_primary
    }
    /// Whether automatic action is held.
    #[getter]
    fn held(&self) -> bool {
        self.inner.held
    }
    /// When it last failed over or back.
    #[getter]
    fn last_transition(&self) -> Option<DateTime<Utc>> {
        self.inner.last_transition
    }
    fn __repr__(&self) -> String {
        format!(
            "FailoverStatus({:?}, serving={}, held={})",
            self.inner.tenant_id.as_str(),
            self.inner.serving_region,
            self.inner.held
        )
    }
}

// The signature's literal default (shown in Python's signature) is the core's default.
const _: () = assert!(core::DEFAULT_PARALLELISM == 16);

/// Per-tenant multi-region failover over a `StateManager`'s dependency graph.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct FailoverController {
    inner: Arc<core::FailoverController>,
    probe: OnceLock<Arc<NetworkProbe>>,
}

fn status(inner: core::FailoverStatus) -> FailoverStatus {
    FailoverStatus { inner }
}

fn report(inner: core::FailoverReport) -> FailoverReport {
    FailoverReport { inner }
}

fn tenant(id: &str) -> PyResult<TenantId> {
    tenant_id_arg(id)
}

#[pymethods]
impl FailoverController {
    /// Plans are kept in `store`, else in the state manager's database, else in memory.
    /// `dns` is an `InMemoryDns` or an `Rfc2136Dns`; `resources` promotes standbys (an
    /// `InMemoryResources`, or any object with `promote(resource_id, region)`, called from
    /// several threads at once; in memory by default); `billing` receives attributed usage
    /// (`record_usage`); `parallelism` caps the promotions of one dependency wave running at
    /// once.
    #[new]
    #[pyo3(signature = (state, dns, audit = None, billing = None, clock = None, resources = None, store = None, parallelism = 16))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        state: &Bound<'_, StateManager>,
        dns: &Bound<'_, PyAny>,
        audit: Option<&Bound<'_, AuditLog>>,
        billing: Option<&Bound<'_, BillingService>>,
        clock: Option<&Bound<'_, PyAny>>,
        resources: Option<&Bound<'_, PyAny>>,
        store: Option<&Bound<'_, Store>>,
        parallelism: usize,
    ) -> PyResult<Self> {
        if !(1..=1024).contains(&parallelism) {
            return Err(BindingError::value(format!(
                "parallelism must be 1 to 1024 steps at once, got {parallelism}"
            ))
            .into());
        }
        let dns: Arc<dyn core::DnsProvider> = if let Ok(d) = dns.cast::<InMemoryDns>() {
            d.get().inner.clone()
        } else if let Ok(d) = dns.cast::<Rfc2136Dns>() {
            d.get().inner.clone()
        } else {
            return Err(BindingError::type_error(format!(
                "dns must be an InMemoryDns or an Rfc2136Dns, got {}",
                type_name(dns)
            ))
            .into());
        };
        let resources: Arc<dyn core::ResourceController> = match resources {
            None => Arc::new(core::InMemoryResources::new()),
            Some(r) if r.is_none() => Arc::new(core::InMemoryResources::new()),
            Some(r) => match r.cast::<InMemoryResources>() {
                Ok(m) => m.get().inner.clone(),
                Err(_) if r.hasattr("promote")? => Arc::new(PythonResources {
                    object: r.clone().unbind(),
                }),
                Err(_) => {
                    return Err(BindingError::type_error(format!(
                        "resources must be an InMemoryResources or have promote(resource_id, region), got {}",
                        type_name(r)
                    ))
                    .into());
                }
            },
        };
        let clock = clock_arg(clock)?;
        let manager = state.get();
        let store = match store
            .map(|s| s.get().inner.clone())
            .or_else(|| manager.store.clone())
        {
            Some(s) => s,
            None => detached(py, omnicloud_core::store::Store::memory)?,
        };
        let executor = core::PlanExecutor::new(
            store.clone(),
            clock.clone(),
            manager.inner.clone(),
            resources,
            dns,
            audit.map(|a| a.get().inner.clone()),
        )
        .with_parallelism(parallelism);
        let billing = billing.map(|b| b.get().inner.clone());
        let inner = detached(py, move || {
            core::FailoverController::new(store, clock, executor).map(|c| match billing {
                Some(b) => c.with_billing(b),
                None => c,
            })
        })?;
        Ok(Self {
            inner: Arc::new(inner),
            probe: OnceLock::new(),
        })
    }

    /// Runs active health checks (concurrently) and records each outcome at the clock's time,
    /// like `record_health`. Checks are validated against the policies before any runs.
    fn probe(
        &self,
        py: Python<'_>,
        checks: Vec<PyRef<'_, HealthCheck>>,
    ) -> PyResult<Vec<ProbeResult>> {
        let checks: Vec<core::HealthCheck> = checks.iter().map(|c| c.inner.clone()).collect();
        let probe = match self.probe.get() {
            Some(p) => p.clone(),
            None => {
                let made =
                    Arc::new(NetworkProbe::new().map_err(|e| BindingError::value(e.to_string()))?);
                self.probe.get_or_init(|| made).clone()
            }
        };
        let c = self.inner.clone();
        Ok(detached(py, move || c.probe(&*probe, &checks))?
            .into_iter()
            .map(|(result, outcome)| ProbeResult { result, outcome })
            .collect())
    }

    /// Records usage tuples `(tenant_id, meter, quantity, region, start, end[, resource_id])`
    /// in the billing service, each resource's usage attributed to the regions it ran in
    /// (both during a failover's overlap). Returns the tuples written.
    fn record_usage(
        &self,
        py: Python<'_>,
        records: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<UsageTuple>> {
        let records = usage_records_from_py(records)?;
        let c = self.inner.clone();
        Ok(detached(py, move || c.record_usage(&records))?
            .into_iter()
            .map(usage_tuple)
            .collect())
    }

    /// Where a resource ran: `(region, from, until)` spans, `None` for open ends.
    fn region_history(&self, py: Python<'_>, resource_id: &str) -> PyResult<Vec<RegionSpanTuple>> {
        let c = self.inner.clone();
        let id = resource_id.to_owned();
        Ok(detached(py, move || c.region_history(&id))?
            .into_iter()
            .map(|s| (s.region, s.from, s.until))
            .collect())
    }

    /// Sets or replaces a tenant's policy.
    fn set_policy(&self, py: Python<'_>, policy: &Bound<'_, FailoverPolicy>) -> PyResult<()> {
        let p = policy.get().inner.clone();
        let c = self.inner.clone();
        detached(py, move || c.set_policy(p))
    }

    /// Adds a health check result.
    fn record_health(&self, py: Python<'_>, result: &Bound<'_, HealthCheckResult>) -> PyResult<()> {
        let r = result.get().inner.clone();
        let c = self.inner.clone();
        detached(py, move || c.record_health(&r))
    }

    /// Resumes interrupted plans, then acts on every tenant's health; the plans run.
    fn evaluate(&self, py: Python<'_>) -> PyResult<Vec<FailoverReport>> {
        let c = self.inner.clone();
        Ok(detached(py, move || c.evaluate())?
            .into_iter()
            .map(report)
            .collect())
    }

    /// Fails the tenant over now, whatever its health (an emergency override).
    #[pyo3(signature = (tenant_id, reason, operator = "operator", target_region = None))]
    fn failover(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        reason: &str,
        operator: &str,
        target_region: Option<&str>,
    ) -> PyResult<FailoverReport> {
        let t = tenant(tenant_id)?;
        if let Some(region) = target_region {
            let policy_secondary = detached(py, || self.inner.policy(&t))?.secondary_region;
            if region != policy_secondary {
                return Err(BindingError::value(format!(
                    "target_region {region} is not {tenant_id}'s secondary region ({policy_secondary})"
                ))
                .into());
            }
        }
        let c = self.inner.clone();
        Ok(report(detached(py, move || {
            c.failover(&t, operator, reason)
        })?))
    }

    /// Fails the tenant back to its primary now.
    #[pyo3(signature = (tenant_id, reason, operator = "operator"))]
    fn failback(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        reason: &str,
        operator: &str,
    ) -> PyResult<FailoverReport> {
        let t = tenant(tenant_id)?;
        let c = self.inner.clone();
        Ok(report(detached(py, move || {
            c.failback(&t, operator, reason)
        })?))
    }

    /// Suppresses automatic action for the tenant.
    fn hold(&self, py: Python<'_>, tenant_id: &str) -> PyResult<FailoverStatus> {
        let t = tenant(tenant_id)?;
        Ok(status(detached(py, || self.inner.hold(&t))?))
    }

    /// Lets automatic action resume.
    fn release_hold(&self, py: Python<'_>, tenant_id: &str) -> PyResult<FailoverStatus> {
        let t = tenant(tenant_id)?;
        Ok(status(detached(py, || self.inner.release_hold(&t))?))
    }

    /// Where the tenant stands.
    fn status(&self, py: Python<'_>, tenant_id: &str) -> PyResult<FailoverStatus> {
        let t = tenant(tenant_id)?;
        Ok(status(detached(py, || self.inner.status(&t))?))
    }

    /// The tenant's plans, oldest first.
    fn reports(&self, py: Python<'_>, tenant_id: &str) -> PyResult<Vec<FailoverReport>> {
        let t = tenant(tenant_id)?;
        Ok(detached(py, || self.inner.reports(&t))?
            .into_iter()
            .map(report)
            .collect())
    }

    fn __repr__(&self) -> &'static str {
        "FailoverController()"
    }
}
