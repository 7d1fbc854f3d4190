//! The background dispatcher against real HTTP receivers on 127.0.0.1.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omnicloud_core::clock::{SharedClock, SystemClock};
use omnicloud_core::deploy::DeploymentService;
use omnicloud_core::ids::TenantId;
use omnicloud_core::store::Store;
use omnicloud_core::webhook::{DeliveryStatus, EndpointSpec, IpNetwork, UrlGuard, WebhookQueue};
use omnicloud_runtime::dispatcher::{
    DispatchSignal, Dispatcher, DispatcherConfig, SignallingOutbox,
};

/// A keep-alive HTTP/1.1 receiver answering every request with `status`; returns its URL
/// and the `webhook-id` headers it received.
fn receiver(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = log.clone();
            std::thread::spawn(move || serve(stream, status, &log));
        }
    });
    (url, seen)
}

fn serve(stream: std::net::TcpStream, status: u16, log: &Mutex<Vec<String>>) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut id = String::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "webhook-id" => id = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().expect("log").push(id);
        let head = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

struct Fixture {
    queue: Arc<WebhookQueue>,
    deployments: DeploymentService,
    signal: DispatchSignal,
    guard: UrlGuard,
}

fn fixture() -> Fixture {
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Store::memory().expect("store");
    let guard = UrlGuard::new(vec![IpNetwork::parse("127.0.0.1/32").expect("net")]);
    let queue = Arc::new(WebhookQueue::new(
        store.clone(),
        clock.clone(),
        guard.clone(),
        "http://127.0.0.1:8080",
    ));
    let signal = DispatchSignal::new();
    let outbox = SignallingOutbox::new(queue.clone(), signal.clone());
    Fixture {
        queue,
        deployments: DeploymentService::new(store, clock, None)
            .with_outbox(Arc::new(outbox))
            .expect("outbox"),
        signal,
        guard,
    }
}

fn register(f: &Fixture, url: &str, rate: u32) -> String {
    let mut spec = EndpointSpec::new(TenantId::new("acme").expect("tenant"), url);
    spec.rate_limit_per_minute = rate;
    f.queue.registry().register(&spec).expect("register").id
}

fn tenant() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

#[test]
fn everything_due_is_delivered_in_the_background_and_recorded() {
    let f = fixture();
    let (url_a, seen_a) = receiver(200);
    let (url_b, seen_b) = receiver(204);
    let a = register(&f, &url_a, 100_000);
    let b = register(&f, &url_b, 100_000);
    let dispatcher = Dispatcher::start(
        f.queue.clone(),
        DispatcherConfig::new(f.guard.clone(), Duration::from_secs(5)),
        f.signal.clone(),
    )
    .expect("start");
    for i in 0..100 {
        let d = f
            .deployments
            .create(&tenant(), &format!("svc-{i}"))
            .expect("create");
        f.deployments.start(&d.id).expect("start");
    }
    assert!(dispatcher.flush(Duration::from_secs(30)).expect("flush"));
    assert_eq!(dispatcher.in_flight(), 0);
    for (endpoint, seen) in [(&a, &seen_a), (&b, &seen_b)] {
        let deliveries = f
            .queue
            .deliveries(None, Some(endpoint), None, 1000, None)
            .expect("deliveries");
        assert_eq!(deliveries.len(), 200);
        assert!(
            deliveries
                .iter()
                .all(|d| d.status == DeliveryStatus::Delivered && d.attempts == 1)
        );
        let ids: HashSet<String> = seen.lock().expect("seen").iter().cloned().collect();
        let expected: HashSet<String> = deliveries.iter().map(|d| d.message_id.clone()).collect();
        assert_eq!(ids, expected);
    }
    assert_eq!(dispatcher.last_error(), None);
    dispatcher.stop();
    assert!(!dispatcher.is_running());
    dispatcher.stop();
}

#[test]
fn a_gone_receiver_disables_its_endpoint_and_a_stopped_dispatcher_sends_nothing() {
    let f = fixture();
    let (gone_url, gone_seen) = receiver(410);
    let gone = register(&f, &gone_url, 100);
    let dispatcher = Dispatcher::start(
        f.queue.clone(),
        DispatcherConfig::new(f.guard.clone(), Duration::from_secs(5)),
        f.signal.clone(),
    )
    .expect("start");
    f.deployments.create(&tenant(), "api").expect("create");
    assert!(dispatcher.flush(Duration::from_secs(10)).expect("flush"));
    let endpoint = f.queue.registry().get(&gone, None).expect("endpoint");
    assert!(endpoint.disabled_reason.is_some());
    let d = f
        .queue
        .deliveries(None, Some(&gone), None, 10, None)
        .expect("deliveries");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].status, DeliveryStatus::Exhausted);
    assert_eq!(gone_seen.lock().expect("seen").len(), 1);

    dispatcher.stop();
    let (url, seen) = receiver(200);
    register(&f, &url, 100);
    f.deployments.create(&tenant(), "web").expect("create");
    assert!(!dispatcher.flush(Duration::from_millis(200)).expect("flush"));
    assert!(seen.lock().expect("seen").is_empty());
    assert_eq!(f.queue.due_count().expect("due"), 1);
}
