//! `Template`, `WebhookService`, `WebhookEndpoint` and `Delivery`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use omnicloud_core::deploy::DeploymentState;
use omnicloud_core::webhook as core;
use omnicloud_runtime::delivery::HttpTransport;
use omnicloud_runtime::dispatcher::{
    DispatchSignal, Dispatcher, DispatcherConfig, SignallingOutbox,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::clock::clock_arg;
use crate::convert::{json_to_py, template_value_from_py};
use crate::errors::BindingError;
use crate::events::{Event, EventBus};
use crate::gateway::detached;
use crate::store::Store;
use crate::tenancy::tenant_id_arg;

/// A compiled payload template. Undefined variables are errors (strict), rendering has a fuel
/// limit against runaway loops, and a bad template is refused here with its line and reason.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Template {
    inner: core::Template,
}

#[pymethods]
impl Template {
    #[new]
    fn new(py: Python<'_>, source: &str) -> PyResult<Self> {
        let source = source.to_owned();
        let inner = detached(py, move || {
            core::Template::new(&source).map_err(omnicloud_core::Error::from)
        })?;
        Ok(Self { inner })
    }
    /// Renders with `context` (a dict of JSON values) to text.
    fn render(&self, py: Python<'_>, context: &Bound<'_, PyDict>) -> PyResult<String> {
        let context = template_value_from_py(context.as_any(), "context")?;
        let t = self.inner.clone();
        detached(py, move || {
            t.render_value(&context)
                .map_err(omnicloud_core::Error::from)
        })
    }
    /// Renders with `context`, then parses the output as JSON (a `TemplateError` if it is not).
    fn render_json<'py>(
        &self,
        py: Python<'py>,
        context: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let context = template_value_from_py(context.as_any(), "context")?;
        let t = self.inner.clone();
        let value = detached(py, move || {
            t.render_value_json(&context)
                .map_err(omnicloud_core::Error::from)
        })?;
        json_to_py(py, &value)
    }
    /// The template's source.
    #[getter]
    fn source(&self) -> &str {
        self.inner.source()
    }
    fn __repr__(&self) -> String {
        let source = self.inner.source();
        let shown: String = source.chars().take(40).collect();
        let more = if shown.len() < source.len() {
            "…"
        } else {
            ""
        };
        format!("Template({shown:?}{more})")
    }
}

fn endpoint_out(inner: core::WebhookEndpoint) -> WebhookEndpoint {
    WebhookEndpoint { inner }
}

/// A tenant's registered webhook endpoint.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct WebhookEndpoint {
    inner: core::WebhookEndpoint,
}

#[pymethods]
impl WebhookEndpoint {
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    #[getter]
    fn url(&self) -> &str {
        &self.inner.url
    }
    /// The subscribed event types (`state_change`, ...).
    #[getter]
    fn event_types(&self) -> Vec<&'static str> {
        self.inner.event_types.iter().map(|t| t.as_str()).collect()
    }
    /// The new states wanted, or None for all.
    #[getter]
    fn states(&self) -> Option<Vec<&'static str>> {
        self.inner
            .states
            .as_ref()
            .map(|s| s.iter().map(|s| s.as_str()).collect())
    }
    /// The payload template's source, if any.
    #[getter]
    fn template(&self) -> Option<&str> {
        self.inner.template.as_ref().map(core::Template::source)
    }
    /// The signing secret (`whsec_...`).
    #[getter]
    fn secret(&self) -> &str {
        self.inner.secret.as_str()
    }
    #[getter]
    fn rate_limit_per_minute(&self) -> u32 {
        self.inner.rate_limit_per_minute
    }
    #[getter]
    fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }
    /// Why deliveries stopped (e.g. the receiver answered 410), if they did.
    #[getter]
    fn disabled_reason(&self) -> Option<&str> {
        self.inner.disabled_reason.as_deref()
    }
    fn __repr__(&self) -> String {
        format!(
            "WebhookEndpoint(id={:?}, tenant_id={:?}, url={:?})",
            self.inner.id,
            self.inner.tenant_id.as_str(),
            self.inner.url
        )
    }
}

/// One delivery of one event to one endpoint, with its attempts.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Delivery {
    inner: core::Delivery,
    attempts: Vec<core::Attempt>,
}

#[pymethods]
impl Delivery {
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    #[getter]
    fn endpoint_id(&self) -> &str {
        &self.inner.endpoint_id
    }
    /// The `webhook-id` header: the same on every attempt.
    #[getter]
    fn message_id(&self) -> &str {
        &self.inner.message_id
    }
    #[getter]
    fn tenant_id(&self) -> &str {
        self.inner.tenant_id.as_str()
    }
    #[getter]
    fn event_type(&self) -> &'static str {
        self.inner.event_type.as_str()
    }
    /// `pending`, `delivered`, `failed` or `exhausted`.
    #[getter]
    fn status(&self) -> &'static str {
        self.inner.status.as_str()
    }
    /// Every attempt, oldest first: dicts with attempt, at, status_code, error, duration_ms.
    #[getter]
    fn attempts<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.attempts
            .iter()
            .map(|a| {
                let d = PyDict::new(py);
                d.set_item("attempt", a.attempt)?;
                d.set_item("at", a.at)?;
                d.set_item("status_code", a.status_code)?;
                d.set_item("error", a.error.as_deref())?;
                d.set_item("duration_ms", a.duration_ms)?;
                Ok(d)
            })
            .collect()
    }
    #[getter]
    fn attempt_count(&self) -> u32 {
        self.inner.attempts
    }
    #[getter]
    fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.inner.next_attempt_at
    }
    /// The payload sent.
    #[getter]
    fn body(&self) -> &str {
        &self.inner.body
    }
    #[getter]
    fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    fn __repr__(&self) -> String {
        format!(
            "Delivery(id={:?}, status={:?}, attempts={})",
            self.inner.id,
            self.inner.status.as_str(),
            self.inner.attempts
        )
    }
}

fn event_types_arg(types: Vec<String>) -> PyResult<Vec<core::EventType>> {
    types
        .iter()
        .map(|t| {
            core::EventType::parse(t)
                .map_err(|e| BindingError::from(omnicloud_core::Error::from(e)).into())
        })
        .collect()
}

fn states_arg(states: Option<Vec<String>>) -> PyResult<Option<Vec<DeploymentState>>> {
    states
        .map(|s| {
            s.iter()
                .map(|x| {
                    x.parse::<DeploymentState>()
                        .map_err(|e| BindingError::from(e).into())
                })
                .collect()
        })
        .transpose()
}

/// Networks (CIDR or addresses) the SSRF guard lets through anyway.
pub(crate) fn networks_arg(allow: &[String]) -> PyResult<Vec<core::IpNetwork>> {
    Ok(allow
        .iter()
        .map(|a| core::IpNetwork::parse(a).map_err(omnicloud_core::Error::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BindingError::from)?)
}

/// A delivery timeout in (0, 120] seconds and a claim lease longer than it (at most a day).
pub(crate) fn delivery_timing(
    timeout_s: f64,
    claim_lease_s: f64,
) -> PyResult<(Duration, Duration)> {
    let timeout = Duration::try_from_secs_f64(timeout_s)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(120))
        .ok_or_else(|| {
            BindingError::value(format!(
                "timeout must be in (0, 120] seconds, got {timeout_s}"
            ))
        })?;
    let lease = Duration::try_from_secs_f64(claim_lease_s)
        .ok()
        .filter(|d| *d > timeout && *d <= Duration::from_secs(86_400))
        .ok_or_else(|| {
            BindingError::value(format!(
                "claim_lease_s must be longer than the delivery timeout ({timeout_s} s) and at \
                 most a day, got {claim_lease_s}"
            ))
        })?;
    Ok((timeout, lease))
}

/// How long a `flush` may wait: any non-negative number of seconds.
pub(crate) fn flush_timeout(timeout_s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(timeout_s).map_err(|_| {
        BindingError::value(format!(
            "timeout_s must be a non-negative number, got {timeout_s}"
        ))
        .into()
    })
}

/// Refuses a number of deliveries in flight outside 1..=4096.
pub(crate) fn check_concurrency(concurrency: usize) -> PyResult<()> {
    if concurrency == 0 || concurrency > 4096 {
        return Err(BindingError::value(format!(
            "concurrency must be in 1..=4096, got {concurrency}"
        ))
        .into());
    }
    Ok(())
}

/// Tenants' webhook endpoints and the durable delivery queue.
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct WebhookService {
    queue: Arc<core::WebhookQueue>,
    transport: Arc<HttpTransport>,
    guard: core::UrlGuard,
    timeout: Duration,
    signal: DispatchSignal,
    dispatcher: Mutex<Option<Dispatcher>>,
}

impl WebhookService {
    /// The queue as a deployments' outbox that wakes a running dispatcher after each commit.
    pub(crate) fn outbox(&self) -> Arc<SignallingOutbox> {
        Arc::new(SignallingOutbox::new(
            self.queue.clone(),
            self.signal.clone(),
        ))
    }

    /// The store the queue keeps its rows in.
    pub(crate) fn store(&self) -> omnicloud_core::store::Store {
        omnicloud_core::deploy::DeploymentOutbox::store(&*self.queue).clone()
    }

    fn dispatcher(&self) -> std::sync::MutexGuard<'_, Option<Dispatcher>> {
        self.dispatcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl WebhookService {
    /// Endpoints and deliveries in `store` (in memory without one). `allow` lists networks
    /// (CIDR or addresses) the SSRF guard lets through anyway (tests allow `127.0.0.1`);
    /// payload links point under `base_url`.
    #[new]
    #[pyo3(signature = (store = None, clock = None, allow = Vec::new(), base_url = "http://127.0.0.1:8080", timeout_s = 15.0, claim_lease_s = 60.0))]
    fn new(
        py: Python<'_>,
        store: Option<&Bound<'_, Store>>,
        clock: Option<&Bound<'_, PyAny>>,
        allow: Vec<String>,
        base_url: &str,
        timeout_s: f64,
        claim_lease_s: f64,
    ) -> PyResult<Self> {
        let clock = clock_arg(clock)?;
        let store = match store {
            Some(s) => s.get().inner.clone(),
            None => detached(py, omnicloud_core::store::Store::memory)?,
        };
        let guard = core::UrlGuard::new(networks_arg(&allow)?);
        let (timeout, lease) = delivery_timing(timeout_s, claim_lease_s)?;
        let lease =
            chrono::TimeDelta::from_std(lease).map_err(|e| BindingError::value(e.to_string()))?;
        let transport = HttpTransport::new(guard.clone(), timeout)
            .map_err(|e| BindingError::value(e.to_string()))?;
        Ok(Self {
            queue: Arc::new(
                core::WebhookQueue::new(store, clock, guard.clone(), base_url)
                    .with_claim_lease(lease)
                    .map_err(BindingError::from)?,
            ),
            transport: Arc::new(transport),
            guard,
            timeout,
            signal: DispatchSignal::new(),
            dispatcher: Mutex::new(None),
        })
    }

    /// Registers an endpoint; a bad URL, template, secret or limit raises before anything is
    /// stored.
    #[pyo3(signature = (tenant_id, url, event_types, states = None, template = None, secret = None, rate_limit_per_minute = 100, max_attempts = 5))]
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        py: Python<'_>,
        tenant_id: &str,
        url: &str,
        event_types: Vec<String>,
        states: Option<Vec<String>>,
        template: Option<String>,
        secret: Option<String>,
        rate_limit_per_minute: u32,
        max_attempts: u32,
    ) -> PyResult<WebhookEndpoint> {
        let spec = core::EndpointSpec {
            tenant_id: tenant_id_arg(tenant_id)?,
            url: url.to_owned(),
            event_types: event_types_arg(event_types)?,
            states: states_arg(states)?,
            template,
            secret,
            rate_limit_per_minute,
            max_attempts,
        };
        let q = self.queue.clone();
        Ok(endpoint_out(detached(py, move || {
            q.registry().register(&spec)
        })?))
    }

    /// Changes an endpoint (only the settings given).
    #[pyo3(signature = (endpoint_id, *, url = None, event_types = None, states = None, template = None, rate_limit_per_minute = None, max_attempts = None, enabled = None))]
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        py: Python<'_>,
        endpoint_id: &str,
        url: Option<String>,
        event_types: Option<Vec<String>>,
        states: Option<Vec<String>>,
        template: Option<String>,
        rate_limit_per_minute: Option<u32>,
        max_attempts: Option<u32>,
        enabled: Option<bool>,
    ) -> PyResult<WebhookEndpoint> {
        let changes = core::EndpointChanges {
            url,
            event_types: event_types.map(event_types_arg).transpose()?,
            states: states.map(|s| states_arg(Some(s))).transpose()?,
            template: template.map(Some),
            rate_limit_per_minute,
            max_attempts,
            enabled,
        };
        let q = self.queue.clone();
        let id = endpoint_id.to_owned();
        Ok(endpoint_out(detached(py, move || {
            q.registry().update(&id, None, &changes)
        })?))
    }

    /// Deletes an endpoint.
    fn delete(&self, py: Python<'_>, endpoint_id: &str) -> PyResult<()> {
        let q = self.queue.clone();
        let id = endpoint_id.to_owned();
        detached(py, move || q.registry().delete(&id, None))
    }

    /// The endpoint with this id.
    fn get(&self, py: Python<'_>, endpoint_id: &str) -> PyResult<WebhookEndpoint> {
        let q = self.queue.clone();
        let id = endpoint_id.to_owned();
        Ok(endpoint_out(detached(py, move || {
            q.registry().get(&id, None)
        })?))
    }

    /// The tenant's endpoints, oldest first.
    fn list(&self, py: Python<'_>, tenant_id: &str) -> PyResult<Vec<WebhookEndpoint>> {
        let t = tenant_id_arg(tenant_id)?;
        let q = self.queue.clone();
        Ok(detached(py, move || q.registry().list(&t))?
            .into_iter()
            .map(endpoint_out)
            .collect())
    }

    /// Replaces the signing secret; the old one keeps signing for `grace_s` seconds.
    #[pyo3(signature = (endpoint_id, secret = None, grace_s = 86400))]
    fn rotate_secret(
        &self,
        py: Python<'_>,
        endpoint_id: &str,
        secret: Option<String>,
        grace_s: i64,
    ) -> PyResult<WebhookEndpoint> {
        let q = self.queue.clone();
        let id = endpoint_id.to_owned();
        let grace = chrono::TimeDelta::try_seconds(grace_s)
            .ok_or_else(|| BindingError::value(format!("grace_s {grace_s} is out of range")))?;
        Ok(endpoint_out(detached(py, move || {
            q.registry()
                .rotate_secret(&id, None, secret.as_deref(), grace)
        })?))
    }

    /// Queues deliveries for every deployment event published on `bus` from now on, each in
    /// its own transaction after the publisher's (a `DeploymentService(webhooks=...)` queues
    /// in the change's own transaction instead).
    fn follow(&self, bus: &Bound<'_, EventBus>) -> u64 {
        let (q, signal) = (self.queue.clone(), self.signal.clone());
        bus.get()
            .inner
            .subscribe(None, move |envelope| {
                q.enqueue(envelope)?;
                signal.notify();
                Ok(())
            })
            .0
    }

    /// Sends every delivery due now (at most `limit`), recording each attempt; returns how
    /// many attempts were made. Drive it with a ManualClock in tests.
    #[pyo3(signature = (limit = 1000))]
    fn run_due(&self, py: Python<'_>, limit: usize) -> PyResult<usize> {
        let (q, t) = (self.queue.clone(), self.transport.clone());
        detached(py, move || q.run_due(&*t, limit))
    }

    /// Deliveries, newest first, filtered; `after` (a delivery id) pages on.
    #[pyo3(signature = (endpoint_id = None, status = None, tenant_id = None, limit = 100, after = None))]
    fn deliveries(
        &self,
        py: Python<'_>,
        endpoint_id: Option<String>,
        status: Option<&str>,
        tenant_id: Option<&str>,
        limit: usize,
        after: Option<String>,
    ) -> PyResult<Vec<Delivery>> {
        let status = status
            .map(|s| {
                core::DeliveryStatus::parse(s).ok_or_else(|| {
                    BindingError::value(format!(
                        "status {s:?} is not one of pending, delivered, failed, exhausted"
                    ))
                })
            })
            .transpose()?;
        let tenant = tenant_id.map(tenant_id_arg).transpose()?;
        let q = self.queue.clone();
        let list = detached(py, move || {
            q.deliveries(
                tenant.as_ref(),
                endpoint_id.as_deref(),
                status,
                limit,
                after.as_deref(),
            )?
            .into_iter()
            .map(|d| {
                let attempts = q.attempts(&d.id)?;
                Ok(Delivery { inner: d, attempts })
            })
            .collect::<omnicloud_core::Result<Vec<_>>>()
        })?;
        Ok(list)
    }

    /// The delivery with this id, with its attempts.
    fn delivery(&self, py: Python<'_>, delivery_id: &str) -> PyResult<Delivery> {
        let q = self.queue.clone();
        let id = delivery_id.to_owned();
        detached(py, move || {
            let inner = q.delivery(&id)?;
            let attempts = q.attempts(&id)?;
            Ok::<_, omnicloud_core::Error>(Delivery { inner, attempts })
        })
    }

    /// Sends a delivery again (a fresh attempt budget; its history is kept).
    fn redeliver(&self, py: Python<'_>, delivery_id: &str) -> PyResult<Delivery> {
        let q = self.queue.clone();
        let id = delivery_id.to_owned();
        detached(py, move || {
            let inner = q.redeliver(&id, None)?;
            let attempts = q.attempts(&id)?;
            Ok::<_, omnicloud_core::Error>(Delivery { inner, attempts })
        })
    }

    /// Queues deliveries of `events` (deployment events, e.g. collected from a bus) for the
    /// endpoints that want them, in one transaction; returns the deliveries' ids.
    fn enqueue(&self, py: Python<'_>, events: Vec<PyRef<'_, Event>>) -> PyResult<Vec<String>> {
        let envelopes: Vec<_> = events.iter().map(|e| e.inner.clone()).collect();
        let q = self.queue.clone();
        let ids = detached(py, move || q.enqueue_many(&envelopes))?;
        self.signal.notify();
        Ok(ids)
    }

    /// How many deliveries are due now (what a dispatcher still has to send).
    fn due_count(&self, py: Python<'_>) -> PyResult<u64> {
        let q = self.queue.clone();
        detached(py, move || q.due_count())
    }

    /// Starts the background dispatcher (real time): due deliveries are sent concurrently,
    /// at most `concurrency` at once, as they become due. Starting twice is a no-op.
    #[pyo3(signature = (concurrency = 64))]
    fn start(&self, py: Python<'_>, concurrency: usize) -> PyResult<()> {
        check_concurrency(concurrency)?;
        let mut running = self.dispatcher();
        if running.as_ref().is_some_and(Dispatcher::is_running) {
            return Ok(());
        }
        let mut config = DispatcherConfig::new(self.guard.clone(), self.timeout);
        config.concurrency = concurrency;
        let (q, signal) = (self.queue.clone(), self.signal.clone());
        let dispatcher = detached(py, move || {
            Dispatcher::start(q, config, signal).map_err(|e| BindingError::value(e.to_string()))
        })?;
        *running = Some(dispatcher);
        Ok(())
    }

    /// Stops the background dispatcher; sends in flight get a short grace to finish (any
    /// left are sent again later). A no-op when it is not running.
    fn stop(&self, py: Python<'_>) {
        let dispatcher = self.dispatcher().take();
        if let Some(d) = dispatcher {
            py.detach(move || d.stop());
        }
    }

    /// Waits (up to `timeout_s`) until nothing is due and nothing is in flight; returns
    /// whether that happened. Retries scheduled later are not waited for. Without a running
    /// dispatcher nothing can progress: it answers at once whether nothing is due.
    #[pyo3(signature = (timeout_s = 30.0))]
    fn flush(&self, py: Python<'_>, timeout_s: f64) -> PyResult<bool> {
        let timeout = flush_timeout(timeout_s)?;
        let guard = self.dispatcher();
        match guard.as_ref() {
            Some(dispatcher) => Ok(py
                .detach(|| dispatcher.flush(timeout))
                .map_err(BindingError::from)?),
            None => Ok(self.due_count(py)? == 0),
        }
    }

    /// Whether the background dispatcher is running.
    #[getter]
    fn running(&self) -> bool {
        self.dispatcher()
            .as_ref()
            .is_some_and(Dispatcher::is_running)
    }

    fn __repr__(&self) -> String {
        format!("WebhookService(running={})", self.running())
    }
}
