//! Webhook benchmarks: queueing deployment events (10,000 events for two endpoints, one
//! transaction, on a file store), claiming and recording 1,000 due deliveries (lease, rate
//! limit, signature, attempt rows), a Standard Webhooks signature of a 600-byte body, and a
//! payload template's render.
//!
//! Every timed enqueue gets a fresh store from an untimed setup. The events are made once.
//!
//! Run with `cargo bench -p omnicloud-benches --bench webhooks`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use omnicloud_benches::t0;
use omnicloud_core::clock::{ManualClock, SharedClock};
use omnicloud_core::deploy::DeploymentService;
use omnicloud_core::events::{Envelope, EventBus};
use omnicloud_core::ids::TenantId;
use omnicloud_core::store::Store;
use omnicloud_core::webhook::{
    AttemptOutcome, EndpointSpec, EventType, IpNetwork, Template, UrlGuard, WebhookQueue,
    WebhookSecret, WebhookTransport, signature_header,
};
use serde_json::json;
use tempfile::TempDir;

fn tenant() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

/// `n` deployment events of acme's (queued, then in progress), collected from a bus.
fn events(n: usize) -> Vec<Envelope> {
    let clock: SharedClock = Arc::new(ManualClock::new(t0()));
    let bus = EventBus::new();
    let (sender, receiver) = std::sync::mpsc::channel();
    bus.subscribe(None, move |e| {
        let _ = sender.send(e.clone());
        Ok(())
    });
    let deployments =
        DeploymentService::new(Store::memory().expect("store"), clock, Some(bus.clone()));
    for i in 0..n / 2 {
        let d = deployments
            .create(&tenant(), &format!("service-{i}"))
            .expect("create");
        deployments.start(&d.id).expect("start");
    }
    drop(deployments);
    drop(bus);
    receiver.try_iter().collect()
}

/// A queue on a fresh file store with `endpoints` endpoints for acme.
fn queue(dir: &TempDir, endpoints: usize) -> WebhookQueue {
    queue_in(
        Store::open(dir.path().join("hooks.db")).expect("store"),
        endpoints,
    )
}

/// A queue in `store` with `endpoints` endpoints for acme.
fn queue_in(store: Store, endpoints: usize) -> WebhookQueue {
    let clock: SharedClock = Arc::new(ManualClock::new(t0()));
    let guard = UrlGuard::new(vec![IpNetwork::parse("127.0.0.1/32").expect("net")]);
    let queue = WebhookQueue::new(store, clock, guard, "https://api.omnicloud.example");
    for i in 0..endpoints {
        let mut spec = EndpointSpec::new(tenant(), format!("http://127.0.0.1:9/hooks/{i}"));
        spec.event_types = vec![EventType::StateChange];
        spec.rate_limit_per_minute = 100_000;
        queue.registry().register(&spec).expect("register");
    }
    queue
}

/// Answers every request 200 at once.
struct Accepting;

impl WebhookTransport for Accepting {
    fn send(&self, _request: &omnicloud_core::webhook::WebhookRequest) -> AttemptOutcome {
        AttemptOutcome {
            status_code: Some(200),
            ..AttemptOutcome::default()
        }
    }
}

fn enqueue(c: &mut Criterion) {
    let events = events(10_000);
    let mut group = c.benchmark_group("webhooks/enqueue");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("10k events x 2 endpoints, file store", |b| {
        b.iter_batched(
            || {
                let dir = TempDir::new().expect("dir");
                let q = queue(&dir, 2);
                (dir, q)
            },
            |(dir, q)| {
                let ids = q.enqueue_many(&events).expect("enqueue");
                assert_eq!(ids.len(), 2 * events.len());
                (dir, q)
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("10k events x 2 endpoints, memory store", |b| {
        b.iter_batched(
            || queue_in(Store::memory().expect("store"), 2),
            |q| {
                assert_eq!(
                    q.enqueue_many(&events).expect("enqueue").len(),
                    2 * events.len()
                );
                q
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("10k events x 1 endpoint, file store", |b| {
        b.iter_batched(
            || {
                let dir = TempDir::new().expect("dir");
                let q = queue(&dir, 1);
                (dir, q)
            },
            |(dir, q)| {
                assert_eq!(
                    q.enqueue_many(&events).expect("enqueue").len(),
                    events.len()
                );
                (dir, q)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn claim_and_record(c: &mut Criterion) {
    let events = events(500);
    let mut group = c.benchmark_group("webhooks/dispatch");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("claim, sign and record 1k deliveries", |b| {
        b.iter_batched(
            || {
                let dir = TempDir::new().expect("dir");
                let q = queue(&dir, 2);
                q.enqueue_many(&events).expect("enqueue");
                (dir, q)
            },
            |(dir, q)| {
                let requests = q.claim_due(1_000).expect("claim");
                let outcomes: Vec<(String, AttemptOutcome)> = requests
                    .iter()
                    .map(|r| (r.delivery_id.clone(), Accepting.send(r)))
                    .collect();
                q.record_many(&outcomes).expect("record");
                assert_eq!(outcomes.len(), 1_000);
                (dir, q)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn sign_and_render(c: &mut Criterion) {
    let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
    let body = "x".repeat(600);
    c.bench_function("webhooks/sign 600-byte body", |b| {
        b.iter(|| {
            signature_header(
                black_box(&[&secret]),
                "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                1_674_087_231,
                black_box(body.as_bytes()),
            )
        });
    });
    let template = Template::new(
        r#"{"text": "{{ service_name | upper }} is {{ new_state }}{% if reason %}: {{ reason }}{% endif %}",
            "links": [{% for name, url in links | items %}"{{ name }}={{ url }}"{% if not loop.last %}, {% endif %}{% endfor %}]}"#,
    )
    .expect("template");
    let context = json!({
        "service_name": "checkout-api", "new_state": "failed", "reason": "health checks failing",
        "links": {"deployment": "https://api.example/v1/deployments/1", "logs": "https://api.example/v1/deployments/1/logs"},
    });
    c.bench_function("webhooks/render a Slack-style template", |b| {
        b.iter(|| template.render_json(black_box(&context)).expect("render"));
    });
}

criterion_group!(benches, enqueue, claim_and_record, sign_and_render);
criterion_main!(benches);
