//! `Server`: the REST API (and its webhook dispatcher) started in-process.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use omnicloud_runtime::server::{self as runtime, ServerConfig};
use pyo3::prelude::*;

use crate::errors::BindingError;
use crate::gateway::detached;
use crate::tenancy::tenant_id_arg;
use crate::webhook::{check_concurrency, delivery_timing, flush_timeout, networks_arg};

/// The REST API on `host:port` over the database file `db_path` (in memory without one),
/// with the webhook dispatcher delivering in the background. `allow` lists networks webhook
/// destinations may be in although the SSRF guard refuses them (tests allow `127.0.0.1`).
#[pyclass(frozen, module = "omnicloud._omnicloud")]
pub struct Server {
    config: ServerConfig,
    running: Mutex<Option<runtime::Server>>,
}

impl Server {
    fn running(&self) -> MutexGuard<'_, Option<runtime::Server>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_server<T>(&self, f: impl FnOnce(&runtime::Server) -> PyResult<T>) -> PyResult<T> {
        match self.running().as_ref() {
            Some(server) => f(server),
            None => {
                Err(BindingError::value("the server is not running: call start() first").into())
            }
        }
    }
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (db_path = None, host = "127.0.0.1", port = 0, allow = Vec::new(), base_url = None, delivery_timeout_s = 15.0, concurrency = 64, claim_lease_s = 60.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        db_path: Option<PathBuf>,
        host: &str,
        port: u16,
        allow: Vec<String>,
        base_url: Option<String>,
        delivery_timeout_s: f64,
        concurrency: usize,
        claim_lease_s: f64,
    ) -> PyResult<Self> {
        let allow = networks_arg(&allow)?;
        let (delivery_timeout, claim_lease) = delivery_timing(delivery_timeout_s, claim_lease_s)?;
        check_concurrency(concurrency)?;
        if host.trim().is_empty() {
            return Err(BindingError::value("host must not be empty").into());
        }
        Ok(Self {
            config: ServerConfig {
                db_path,
                host: host.to_owned(),
                port,
                allow,
                base_url,
                delivery_timeout,
                concurrency,
                claim_lease,
            },
            running: Mutex::new(None),
        })
    }

    /// Starts serving in the background; returns the base URL (`http://host:port`). Starting
    /// a running server returns its URL again.
    fn start(&self, py: Python<'_>) -> PyResult<String> {
        let mut running = self.running();
        if let Some(server) = running.as_ref() {
            return Ok(server.base_url().to_owned());
        }
        let config = self.config.clone();
        let server = detached(py, move || {
            runtime::Server::start(&config).map_err(|e| match e {
                runtime::ServerError::Core(core) => BindingError::from(core),
                other => BindingError::value(other.to_string()),
            })
        })?;
        let url = server.base_url().to_owned();
        *running = Some(server);
        Ok(url)
    }

    /// Stops serving (requests in progress finish) and stops the dispatcher. A no-op when
    /// not running; the server can be started again.
    fn stop(&self, py: Python<'_>) {
        let server = self.running().take();
        if let Some(server) = server {
            py.detach(move || server.stop());
        }
    }

    /// The base URL while running, else None.
    #[getter]
    fn base_url(&self) -> Option<String> {
        self.running().as_ref().map(|s| s.base_url().to_owned())
    }

    /// Whether it is serving.
    #[getter]
    fn is_running(&self) -> bool {
        self.running()
            .as_ref()
            .is_some_and(runtime::Server::is_running)
    }

    /// Issues an API key for `tenant_id` and returns it (`ock_<id>_<secret>`); only its hash
    /// is stored, so this is the one time it is seen.
    #[pyo3(signature = (tenant_id, name = "default"))]
    fn issue_api_key(&self, py: Python<'_>, tenant_id: &str, name: &str) -> PyResult<String> {
        let tenant = tenant_id_arg(tenant_id)?;
        self.with_server(|server| {
            let keys = server.state().keys.clone();
            let name = name.to_owned();
            detached(py, move || keys.issue(&tenant, &name).map(|(_, key)| key))
        })
    }

    /// Revokes the tenant's key with this id (the part between `ock_` and the next `_`).
    fn revoke_api_key(&self, py: Python<'_>, tenant_id: &str, key_id: &str) -> PyResult<()> {
        let tenant = tenant_id_arg(tenant_id)?;
        self.with_server(|server| {
            let keys = server.state().keys.clone();
            let id = key_id.to_owned();
            detached(py, move || keys.revoke(&id, &tenant).map(drop))
        })
    }

    /// Waits (up to `timeout_s`) until no webhook delivery is due or in flight; returns
    /// whether that happened.
    #[pyo3(signature = (timeout_s = 30.0))]
    fn flush(&self, py: Python<'_>, timeout_s: f64) -> PyResult<bool> {
        let timeout = flush_timeout(timeout_s)?;
        self.with_server(|server| {
            Ok(py
                .detach(|| server.dispatcher().flush(timeout))
                .map_err(BindingError::from)?)
        })
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().start(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.stop(py);
        false
    }

    fn __repr__(&self) -> String {
        match self.base_url() {
            Some(url) => format!("Server({url:?}, running)"),
            None => "Server(stopped)".to_owned(),
        }
    }
}
