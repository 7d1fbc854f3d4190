//! `Server`: the REST API and the webhook dispatcher over one store, running in the
//! background of the process that starts it (`omnicloud serve`, `oc.Server`).
//!
//! Starting binds the listener first (so a port of 0 is resolved and payload links name the
//! real address), opens the store (the embedded SQLite file, or memory), makes the webhook
//! queue the deployments' outbox (a change and its deliveries commit together), starts the
//! [`Dispatcher`] and serves the [`api::router`] on a two-worker tokio runtime of its own
//! thread. Stopping shuts the HTTP
//! server down gracefully, then the dispatcher. Nothing is lost by a kill instead: the queue
//! is durable and leased deliveries are sent again after a restart.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::TimeDelta;

use omnicloud_core::apikey::ApiKey;
use omnicloud_core::clock::{SharedClock, SystemClock};
use omnicloud_core::ids::TenantId;
use omnicloud_core::store::Store;
use omnicloud_core::webhook::{IpNetwork, UrlGuard, WebhookQueue};
use tokio::sync::oneshot;

use crate::api::{self, ApiState};
use crate::delivery::DELIVERY_TIMEOUT;
use crate::dispatcher::{
    DEFAULT_CONCURRENCY, DispatchSignal, Dispatcher, DispatcherConfig, SignallingOutbox,
};

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The database file (created and migrated if new); in memory if `None`.
    pub db_path: Option<PathBuf>,
    /// The address to listen on.
    pub host: String,
    /// The port (0: any free port).
    pub port: u16,
    /// Networks webhook destinations may be in although the SSRF guard refuses them
    /// (private, loopback, link-local).
    pub allow: Vec<IpNetwork>,
    /// The public address payload links point under; the listening address if `None`.
    pub base_url: Option<String>,
    /// How long one webhook delivery may take.
    pub delivery_timeout: Duration,
    /// Webhook deliveries in flight at once.
    pub concurrency: usize,
    /// How long a claimed delivery stays reserved; after a crash, what was in flight is
    /// resent once this has passed. Must be longer than `delivery_timeout`.
    pub claim_lease: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            db_path: None,
            host: "127.0.0.1".to_owned(),
            port: 0,
            allow: Vec::new(),
            base_url: None,
            delivery_timeout: DELIVERY_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            claim_lease: Duration::from_secs(60),
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store refused (a file that is not a database, a newer schema, ...).
    #[error(transparent)]
    Core(#[from] omnicloud_core::Error),
    /// The configuration contradicts itself.
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// Binding the address or starting a thread failed.
    #[error("cannot serve on {address}: {source}")]
    Io {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A running REST API with its webhook dispatcher. Stops when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    base_url: String,
    state: ApiState,
    dispatcher: Dispatcher,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Server {
    /// Opens the store, binds the address and starts serving in the background.
    pub fn start(config: &ServerConfig) -> Result<Self, ServerError> {
        let address = format!("{}:{}", config.host, config.port);
        let io = |source| ServerError::Io {
            address: address.clone(),
            source,
        };
        let listener = TcpListener::bind((config.host.as_str(), config.port)).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let addr = listener.local_addr().map_err(io)?;
        let base_url = config
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let store = match &config.db_path {
            Some(path) => Store::open(path),
            None => Store::memory(),
        }
        .map_err(omnicloud_core::Error::from)?;
        let clock: SharedClock = Arc::new(SystemClock);
        let guard = UrlGuard::new(config.allow.clone());
        let queue = Arc::new(
            WebhookQueue::new(store, clock.clone(), guard.clone(), &base_url)
                .with_claim_lease(claim_lease(config)?)?,
        );
        let signal = DispatchSignal::new();
        let outbox = SignallingOutbox::new(queue.clone(), signal.clone());
        let state = ApiState::over_queue(queue.clone(), Arc::new(outbox), &clock)?;
        let mut dispatch = DispatcherConfig::new(guard, config.delivery_timeout);
        dispatch.concurrency = config.concurrency.max(1);
        let dispatcher = Dispatcher::start(queue, dispatch, signal).map_err(io)?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("omnicloud-api")
            .enable_all()
            .build()
            .map_err(io)?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = api::router(state.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("omnicloud-server".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .map_err(io)?;
        ready_rx
            .recv()
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)?;
        Ok(Self {
            addr,
            base_url,
            state,
            dispatcher,
            shutdown: Mutex::new(Some(shutdown)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the API (payload links point under it).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// What the handlers work on (to issue API keys, say).
    pub fn state(&self) -> &ApiState {
        &self.state
    }

    /// The webhook dispatcher.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Issues an API key for `tenant_id`; the plaintext key is returned only here.
    pub fn issue_api_key(
        &self,
        tenant_id: &TenantId,
        name: &str,
    ) -> omnicloud_core::Result<(ApiKey, String)> {
        self.state.keys.issue(tenant_id, name)
    }

    /// Whether it is serving.
    pub fn is_running(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Blocks until the server stops (for `omnicloud serve`, until a signal stops it).
    pub fn wait(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Stops serving (requests in progress finish), then stops the dispatcher. Idempotent.
    pub fn stop(&self) {
        let shutdown = self
            .shutdown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(shutdown) = shutdown {
            let _ = shutdown.send(());
        }
        self.wait();
        self.dispatcher.stop();
    }
}

/// The configured lease, refused unless it outlasts a delivery (a send still running when
/// its lease ended could be claimed and sent again beside it).
fn claim_lease(config: &ServerConfig) -> Result<TimeDelta, ServerError> {
    let lease = TimeDelta::from_std(config.claim_lease).unwrap_or(TimeDelta::MAX);
    if config.claim_lease <= config.delivery_timeout {
        return Err(ServerError::Config(format!(
            "the claim lease ({:?}) must be longer than the delivery timeout ({:?})",
            config.claim_lease, config.delivery_timeout
        )));
    }
    Ok(lease)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
