//! The demo's webhooks chapter: a deployment of acme's checkout service goes wrong and is
//! rolled back; every event is delivered, signed, to a real HTTP receiver on 127.0.0.1 that
//! verifies each signature. A second endpoint (the pager, only failures) answers 503 every
//! time: its deliveries retry on the schedule (1 s, 2 s, 4 s, 8 s) until exhausted. Time is
//! simulated, so the schedule shows exactly; the HTTP is real.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use omnicloud_core::clock::{Clock, ManualClock, SharedClock};
use omnicloud_core::deploy::DeploymentService;
use omnicloud_core::store::Store;
use omnicloud_core::webhook::{
    DeliveryStatus, EndpointSpec, EventType, IpNetwork, UrlGuard, WebhookEndpoint, WebhookQueue,
    WebhookSecret, verify,
};

use super::{DemoError, Timeline, tenant_id};
use crate::delivery::HttpTransport;

/// What the receiver saw of one request.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    event: String,
    verified: bool,
}

/// A keep-alive HTTP/1.1 receiver on 127.0.0.1: `/ci` answers 200, anything else 503. It
/// verifies each request's signature with the endpoint secrets it is given.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
    secrets: Arc<Mutex<Vec<(String, WebhookSecret)>>>,
}

impl Receiver {
    fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let secrets = Arc::new(Mutex::new(Vec::new()));
        let (log, keys) = (seen.clone(), secrets.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, keys) = (log.clone(), keys.clone());
                std::thread::spawn(move || serve(stream, &log, &keys));
            }
        });
        Ok(Self { url, seen, secrets })
    }

    fn seen(&self) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Answers requests on one connection until it closes.
fn serve(
    stream: TcpStream,
    log: &Mutex<Vec<Received>>,
    secrets: &Mutex<Vec<(String, WebhookSecret)>>,
) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            match line.trim_end().split_once(':') {
                Some((name, value)) => {
                    headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
                }
                None => break,
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let mut body = vec![0u8; header("content-length").parse().unwrap_or(0)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or(0);
        let verified = secrets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(p, _)| *p == path)
            .any(|(_, secret)| {
                verify(
                    secret,
                    header("webhook-id"),
                    timestamp,
                    &body,
                    header("webhook-signature"),
                    timestamp,
                    0,
                )
            });
        let event = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Received {
                path: path.clone(),
                event,
                verified,
            });
        let status = if path == "/ci" {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Runs the chapter; returns whether everything ended as expected.
pub(super) fn run<W: Write>(
    t: &mut Timeline<'_, W>,
    store: &Store,
    start: DateTime<Utc>,
) -> Result<bool, DemoError> {
    let manual = Arc::new(ManualClock::new(start));
    let clock: SharedClock = manual.clone();
    let receiver = Receiver::start()?;
    // The SSRF guard refuses loopback; the demo's receiver is allow-listed explicitly.
    let loopback = IpNetwork::parse("127.0.0.1/32").map_err(omnicloud_core::Error::from)?;
    let guard = UrlGuard::new(vec![loopback]);
    let queue = Arc::new(WebhookQueue::new(
        store.clone(),
        clock.clone(),
        guard.clone(),
        "http://127.0.0.1:8080",
    ));
    let transport = HttpTransport::new(guard, Duration::from_secs(5))?;
    let acme = tenant_id("acme")?;

    let mut ci = EndpointSpec::new(acme.clone(), format!("{}/ci", receiver.url));
    ci.event_types = EventType::ALL.to_vec();
    let ci = queue.registry().register(&ci)?;
    let mut pager = EndpointSpec::new(acme.clone(), format!("{}/pager", receiver.url));
    pager.states = Some(vec![
        omnicloud_core::deploy::DeploymentState::Failed,
        omnicloud_core::deploy::DeploymentState::RolledBack,
    ]);
    let pager = queue.registry().register(&pager)?;
    for (name, e) in [("ci", &ci), ("pager", &pager)] {
        receiver
            .secrets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((format!("/{name}"), e.secret.clone()));
        t.line("webhooks", describe(name, e))?;
    }

    // The queue is the deployments' outbox: each change commits with its deliveries.
    let deployments =
        DeploymentService::new(store.clone(), clock.clone(), None).with_outbox(queue.clone())?;
    let d = deployments.create(&acme, "checkout-api")?;
    manual.advance(0.2).map_err(omnicloud_core::Error::from)?;
    deployments.start(&d.id)?;
    deployments.report_health_check_failed(&d.id, "GET /healthz", "HTTP 500 from 2 of 3 pods")?;
    deployments.fail(&d.id, "health checks failing after release")?;
    deployments.rollback(&d.id, "automatic rollback")?;
    let history: Vec<&str> = deployments
        .history(&d.id)?
        .iter()
        .map(|h| h.to.as_str())
        .collect();
    let queued = queue.deliveries(Some(&acme), None, None, 100, None)?.len();
    t.line(
        "deploy",
        format!(
            "checkout-api: {}; each transition returned at once, {queued} deliveries queued",
            history.join(" -> ")
        ),
    )?;

    let mut sent_at: Vec<f64> = Vec::new();
    for step in 0..40 {
        let attempts = queue.run_due(&transport, 100)?;
        if attempts > 0 {
            sent_at.push(f64::from(step) * 0.5);
            let seen = receiver.seen();
            let pager_now = seen.iter().filter(|r| r.path == "/pager").count();
            t.line(
                "webhooks",
                format!(
                    "+{:>2} s sent {attempts}; the pager has answered 503 {pager_now} time(s)",
                    f64::from(step) * 0.5
                ),
            )?;
        }
        manual.advance(0.5).map_err(omnicloud_core::Error::from)?;
    }
    let seen = receiver.seen();
    let all_verified = seen.iter().all(|r| r.verified);
    let ci_events: Vec<&str> = seen
        .iter()
        .filter(|r| r.path == "/ci")
        .map(|r| r.event.trim_start_matches("deployment."))
        .collect();
    t.line(
        "webhooks",
        format!(
            "ci received {} events, every signature verified: {} ({})",
            ci_events.len(),
            if all_verified { "yes" } else { "NO" },
            ci_events.join(", ")
        ),
    )?;
    let ci_done = queue.deliveries(None, Some(&ci.id), None, 100, None)?;
    let pager_done = queue.deliveries(None, Some(&pager.id), None, 100, None)?;
    let mut ok = all_verified
        && ci_done
            .iter()
            .all(|x| x.status == DeliveryStatus::Delivered);
    for delivery in &pager_done {
        let attempts = queue.attempts(&delivery.id)?;
        let offsets: Vec<String> = attempts
            .iter()
            .map(|a| format!("+{}", (a.at - attempts[0].at).num_seconds()))
            .collect();
        t.line(
            "webhooks",
            format!(
                "pager {} ({}): {} after {} attempts at {} s (503 each time)",
                delivery.event_type.as_str(),
                serde_json::from_str::<serde_json::Value>(&delivery.body)
                    .ok()
                    .and_then(|b| b["data"]["new_state"].as_str().map(str::to_owned))
                    .unwrap_or_default(),
                delivery.status.as_str(),
                attempts.len(),
                offsets.join(", ")
            ),
        )?;
        ok &= delivery.status == DeliveryStatus::Exhausted && attempts.len() == 5;
    }
    t.line(
        "webhooks",
        format!(
            "statuses: ci {} delivered; pager {} exhausted (simulated {:.0} s, {} rounds sent)",
            ci_done.len(),
            pager_done.len(),
            (manual.now() - start).as_seconds_f64(),
            sent_at.len()
        ),
    )?;
    Ok(ok && !pager_done.is_empty())
}

fn describe(name: &str, e: &WebhookEndpoint) -> String {
    let states = e.states.as_ref().map_or("every state".to_owned(), |s| {
        s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join("|")
    });
    format!(
        "endpoint {name} ({}) for {}: {states}, {}/min, {} attempts, secret {}…",
        e.url,
        e.tenant_id,
        e.rate_limit_per_minute,
        e.max_attempts,
        &e.secret.as_str()[..12]
    )
}
