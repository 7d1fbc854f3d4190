//! `Dispatcher`: sends the webhook queue's due deliveries in the background, in real time.
//!
//! One thread runs a small tokio runtime. Its loop claims due deliveries from the durable
//! queue (each claim leases them, rate-limits them per endpoint and signs them), sends them
//! concurrently through one [`WebhookClient`] (so connections are reused), and records the
//! outcomes that finished together in one transaction. Store work runs on tokio's blocking
//! pool, so sends keep moving while the store writes. The loop sleeps until the earliest
//! scheduled attempt, a poll interval (deliveries queued by other processes), or a
//! [`DispatchSignal`] from whoever just queued something, whichever comes first.
//!
//! The queue decides everything (what is due, the retry schedule, the rate limit, 410 and
//! 429 handling); this module only moves requests and outcomes. A dispatcher that dies
//! mid-send loses nothing: its leased deliveries become due again when their lease ends.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use omnicloud_core::deploy::DeploymentOutbox;
use omnicloud_core::events::Envelope;
use omnicloud_core::store::Store;
use omnicloud_core::webhook::{AttemptOutcome, UrlGuard, WebhookQueue};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::delivery::WebhookClient;

/// How many deliveries are in flight at once by default.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// How often the queue is looked at when nothing signals (other processes may queue).
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);

/// How long [`Dispatcher::stop`] lets sends in flight finish before abandoning them (an
/// abandoned delivery is sent again when its lease ends).
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How a dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// The guard checking every destination at connect time.
    pub guard: UrlGuard,
    /// How long one delivery may take.
    pub timeout: Duration,
    /// Deliveries in flight at once (at least 1).
    pub concurrency: usize,
    /// The longest sleep between looks at the queue.
    pub poll: Duration,
}

impl DispatcherConfig {
    /// The defaults with `guard` and `timeout`.
    pub fn new(guard: UrlGuard, timeout: Duration) -> Self {
        Self {
            guard,
            timeout,
            concurrency: DEFAULT_CONCURRENCY,
            poll: DEFAULT_POLL,
        }
    }
}

/// Wakes a dispatcher at once (after something was queued), instead of at its next poll.
/// Cheap to clone; signalling a stopped or not yet started dispatcher does nothing.
#[derive(Debug, Clone, Default)]
pub struct DispatchSignal(Arc<Notify>);

impl DispatchSignal {
    /// A signal no dispatcher listens to yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the dispatcher listening to this signal.
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// The webhook queue as the deployments' outbox ([`DeploymentOutbox`]): each change's
/// deliveries are written in its transaction, and the dispatcher is woken once it commits.
#[derive(Debug, Clone)]
pub struct SignallingOutbox {
    queue: Arc<WebhookQueue>,
    signal: DispatchSignal,
}

impl SignallingOutbox {
    /// `queue` as an outbox waking whoever listens to `signal`.
    pub fn new(queue: Arc<WebhookQueue>, signal: DispatchSignal) -> Self {
        Self { queue, signal }
    }
}

impl DeploymentOutbox for SignallingOutbox {
    fn store(&self) -> &Store {
        DeploymentOutbox::store(&*self.queue)
    }

    fn record(
        &self,
        tx: &rusqlite::Transaction<'_>,
        events: &[Envelope],
    ) -> omnicloud_core::Result<()> {
        self.queue.enqueue_in(tx, events).map(drop)
    }

    fn committed(&self) {
        self.signal.notify();
    }
}

/// What the loop and its owner share.
#[derive(Debug)]
struct Shared {
    queue: Arc<WebhookQueue>,
    signal: DispatchSignal,
    stopping: AtomicBool,
    /// Deliveries claimed (or being claimed) whose outcome is not recorded yet.
    in_flight: AtomicUsize,
    /// The last store error the loop met (it keeps going; the next look retries).
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn report(&self, error: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }
}

/// A running background sender of one queue. Stops when dropped.
#[derive(Debug)]
pub struct Dispatcher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Dispatcher {
    /// Starts sending `queue`'s due deliveries on a thread of its own; `signal` wakes it.
    pub fn start(
        queue: Arc<WebhookQueue>,
        config: DispatcherConfig,
        signal: DispatchSignal,
    ) -> std::io::Result<Self> {
        let client = WebhookClient::new(config.guard.clone(), config.timeout)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            queue,
            signal,
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_error: Mutex::new(None),
        });
        let looped = shared.clone();
        let thread = std::thread::Builder::new()
            .name("omnicloud-webhooks".to_owned())
            .spawn(move || runtime.block_on(run(looped, client, config)))?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Deliveries claimed and not yet recorded.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Whether the loop is running.
    pub fn is_running(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// The last store error the loop met, if any (it keeps running and retries).
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until nothing is due and nothing is in flight, up to `timeout`; returns whether
    /// that happened. Deliveries waiting for a later retry are not waited for.
    pub fn flush(&self, timeout: Duration) -> omnicloud_core::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            self.shared.signal.notify();
            if self.in_flight() == 0 && self.shared.queue.due_count()? == 0 {
                // Claims raise `in_flight` before they lease, so a zero read after an empty
                // queue read cannot miss a delivery between the two.
                if self.in_flight() == 0 {
                    return Ok(true);
                }
            }
            if Instant::now() >= deadline || !self.is_running() {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the loop: no more claims; sends in flight get [`STOP_GRACE`] to finish and be
    /// recorded. Idempotent.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.signal.notify();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The loop: claim, send, record, sleep.
async fn run(shared: Arc<Shared>, client: WebhookClient, config: DispatcherConfig) {
    let client = Arc::new(client);
    let concurrency = config.concurrency.max(1);
    let mut sends: JoinSet<(String, AttemptOutcome)> = JoinSet::new();
    let mut finished: Vec<(String, AttemptOutcome)> = Vec::new();
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    loop {
        while let Some(done) = sends.try_join_next() {
            if let Ok(done) = done {
                finished.push(done);
            }
        }
        record(&shared, &mut finished).await;
        if shared.stopping.load(Ordering::SeqCst) {
            let deadline =
                *stop_deadline.get_or_insert_with(|| tokio::time::Instant::now() + STOP_GRACE);
            if sends.is_empty() {
                return;
            }
            tokio::select! {
                Some(Ok(done)) = sends.join_next() => finished.push(done),
                () = tokio::time::sleep_until(deadline) => {
                    // Abandoned: leased, so sent again once the lease ends.
                    sends.abort_all();
                    return;
                }
            }
            continue;
        }
        let room = concurrency - sends.len();
        let mut claimed = 0;
        if room > 0 {
            claimed = claim(&shared, &client, &mut sends, room).await;
        }
        if claimed > 0 && claimed == room {
            continue;
        }
        let pause = if claimed == 0 && sends.is_empty() {
            until_next_due(&shared, config.poll).await
        } else {
            config.poll
        };
        tokio::select! {
            Some(Ok(done)) = sends.join_next(), if !sends.is_empty() => finished.push(done),
            () = shared.signal.0.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Claims up to `room` due deliveries and starts sending them; returns how many.
async fn claim(
    shared: &Arc<Shared>,
    client: &Arc<WebhookClient>,
    sends: &mut JoinSet<(String, AttemptOutcome)>,
    room: usize,
) -> usize {
    // Counted before the claim leases them, so `flush` never sees them nowhere.
    shared.in_flight.fetch_add(room, Ordering::SeqCst);
    let queue = shared.queue.clone();
    let claimed = tokio::task::spawn_blocking(move || queue.claim_due(room)).await;
    let requests = match claimed {
        Ok(Ok(requests)) => requests,
        Ok(Err(e)) => {
            shared.report(e.to_string());
            Vec::new()
        }
        Err(e) => {
            shared.report(e.to_string());
            Vec::new()
        }
    };
    shared
        .in_flight
        .fetch_sub(room - requests.len(), Ordering::SeqCst);
    let count = requests.len();
    for request in requests {
        let client = client.clone();
        sends.spawn(async move {
            let outcome = client.send(&request).await;
            (request.delivery_id, outcome)
        });
    }
    count
}

/// Records the finished attempts in one transaction.
async fn record(shared: &Arc<Shared>, finished: &mut Vec<(String, AttemptOutcome)>) {
    if finished.is_empty() {
        return;
    }
    let batch = std::mem::take(finished);
    let count = batch.len();
    let queue = shared.queue.clone();
    match tokio::task::spawn_blocking(move || queue.record_many(&batch)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => shared.report(e.to_string()),
        Err(e) => shared.report(e.to_string()),
    }
    // Recorded or not, these are no longer in flight: an unrecorded attempt is sent again
    // when its lease ends.
    shared.in_flight.fetch_sub(count, Ordering::SeqCst);
}

/// How long to sleep when idle: until the earliest scheduled attempt, at most `poll`.
async fn until_next_due(shared: &Arc<Shared>, poll: Duration) -> Duration {
    let queue = shared.queue.clone();
    let next = tokio::task::spawn_blocking(move || {
        let now = queue.clock().now();
        queue.next_due().map(|next| next.map(|at| at - now))
    })
    .await;
    match next {
        Ok(Ok(Some(wait))) => wait
            .to_std()
            .unwrap_or(Duration::ZERO)
            .clamp(Duration::from_millis(1), poll),
        Ok(Ok(None)) => poll,
        Ok(Err(e)) => {
            shared.report(e.to_string());
            poll
        }
        Err(e) => {
            shared.report(e.to_string());
            poll
        }
    }
}
