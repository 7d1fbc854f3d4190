//! The endpoint registry against a real SQLite store.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::clock::{Clock, ManualClock, SharedClock};
use crate::deploy::DeploymentState;
use crate::error::{Error, WebhookError};
use crate::ids::TenantId;
use crate::store::Store;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .expect("t")
        .with_timezone(&Utc)
}

fn acme() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

fn registry(clock: &Arc<ManualClock>) -> EndpointRegistry {
    let shared: SharedClock = clock.clone();
    let guard = UrlGuard::new(vec![IpNetwork::parse("127.0.0.1/32").expect("net")]);
    EndpointRegistry::new(Store::memory().expect("store"), shared, guard)
}

#[test]
fn an_endpoint_is_registered_read_back_and_listed_per_tenant() {
    let clock = Arc::new(ManualClock::new(t0()));
    let r = registry(&clock);
    let mut spec = EndpointSpec::new(acme(), "http://127.0.0.1:9000/hooks");
    spec.event_types = vec![EventType::StateChange, EventType::StateChange];
    spec.states = Some(vec![DeploymentState::Failed, DeploymentState::RolledBack]);
    spec.template = Some(r#"{"text": "{{ service_name }} {{ new_state }}"}"#.to_owned());
    let e = r.register(&spec).expect("register");
    assert!(e.id.starts_with("ep_"));
    assert!(e.secret.as_str().starts_with("whsec_"));
    assert_eq!(e.event_types, [EventType::StateChange]);
    assert_eq!((e.rate_limit_per_minute, e.max_attempts), (100, 5));
    assert_eq!(r.get(&e.id, Some(&acme())).expect("get"), e);
    let other = TenantId::new("globex").expect("tenant");
    assert!(matches!(
        r.get(&e.id, Some(&other)),
        Err(Error::Webhook(WebhookError::UnknownEndpoint { .. }))
    ));
    r.register(&EndpointSpec::new(other, "https://hooks.example.com/x"))
        .expect("globex");
    assert_eq!(r.list(&acme()).expect("list"), std::slice::from_ref(&e));
    assert!(e.wants(EventType::StateChange, Some(DeploymentState::Failed)));
    assert!(!e.wants(EventType::StateChange, Some(DeploymentState::Completed)));
    assert!(!e.wants(EventType::RollbackInitiated, Some(DeploymentState::Failed)));
}

#[test]
fn bad_endpoints_are_refused_before_anything_is_written() {
    let clock = Arc::new(ManualClock::new(t0()));
    let r = registry(&clock);
    let ok = EndpointSpec::new(acme(), "https://hooks.example.com/x");
    let cases: Vec<(&str, EndpointSpec)> = vec![
        (
            "private address",
            EndpointSpec::new(acme(), "http://10.0.0.5/x"),
        ),
        (
            "metadata address",
            EndpointSpec::new(acme(), "http://169.254.169.254/"),
        ),
        (
            "not http",
            EndpointSpec::new(acme(), "ftp://hooks.example.com/x"),
        ),
        (
            "no event types",
            EndpointSpec {
                event_types: vec![],
                ..ok.clone()
            },
        ),
        (
            "empty state filter",
            EndpointSpec {
                states: Some(vec![]),
                ..ok.clone()
            },
        ),
        (
            "bad template",
            EndpointSpec {
                template: Some("{% for %}".into()),
                ..ok.clone()
            },
        ),
        (
            "bad secret",
            EndpointSpec {
                secret: Some("whsec_short".into()),
                ..ok.clone()
            },
        ),
        (
            "zero rate",
            EndpointSpec {
                rate_limit_per_minute: 0,
                ..ok.clone()
            },
        ),
        (
            "zero attempts",
            EndpointSpec {
                max_attempts: 0,
                ..ok.clone()
            },
        ),
        (
            "too many attempts",
            EndpointSpec {
                max_attempts: 21,
                ..ok
            },
        ),
    ];
    for (what, spec) in cases {
        assert!(r.register(&spec).is_err(), "{what} was accepted");
    }
    assert!(r.list(&acme()).expect("list").is_empty());
}

#[test]
fn updates_rotation_disabling_and_deletion() {
    let clock = Arc::new(ManualClock::new(t0()));
    let r = registry(&clock);
    let e = r
        .register(&EndpointSpec::new(acme(), "https://hooks.example.com/x"))
        .expect("register");
    let changed = r
        .update(
            &e.id,
            Some(&acme()),
            &EndpointChanges {
                rate_limit_per_minute: Some(10),
                states: Some(Some(vec![DeploymentState::Failed])),
                ..EndpointChanges::default()
            },
        )
        .expect("update");
    assert_eq!(changed.rate_limit_per_minute, 10);
    let refused = r.update(
        &e.id,
        Some(&acme()),
        &EndpointChanges {
            url: Some("http://192.168.1.1/".into()),
            max_attempts: Some(3),
            ..EndpointChanges::default()
        },
    );
    assert!(refused.is_err());
    assert_eq!(
        r.get(&e.id, None).expect("get").max_attempts,
        5,
        "nothing changed"
    );

    let rotated = r
        .rotate_secret(&e.id, Some(&acme()), None, TimeDelta::hours(1))
        .expect("rotate");
    assert_ne!(rotated.secret, e.secret);
    let now = clock.now();
    assert_eq!(rotated.signing_secrets(now), [&rotated.secret, &e.secret]);
    assert_eq!(
        rotated.signing_secrets(now + TimeDelta::hours(2)),
        [&rotated.secret]
    );
    assert!(
        r.rotate_secret(&e.id, None, None, TimeDelta::days(8))
            .is_err()
    );

    let off = r.disable(&e.id, "410 Gone").expect("disable");
    assert!(!off.wants(EventType::StateChange, Some(DeploymentState::Failed)));
    let on = r
        .update(
            &e.id,
            None,
            &EndpointChanges {
                enabled: Some(true),
                ..EndpointChanges::default()
            },
        )
        .expect("enable");
    assert_eq!(on.disabled_reason, None);

    let globex = TenantId::new("globex").expect("tenant");
    assert!(r.delete(&e.id, Some(&globex)).is_err(), "another tenant's");
    r.delete(&e.id, Some(&acme())).expect("delete");
    assert!(r.get(&e.id, None).is_err());
}

mod queue {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::deploy::{DeploymentOutbox, DeploymentService};
    use crate::events::EventBus;

    /// A receiver that answers from a script (then 200), recording every request.
    #[derive(Default)]
    struct Receiver {
        script: Mutex<VecDeque<AttemptOutcome>>,
        seen: Mutex<Vec<WebhookRequest>>,
    }

    impl Receiver {
        fn answering(codes: &[u16]) -> Self {
            let r = Self::default();
            for &c in codes {
                r.then(AttemptOutcome {
                    status_code: Some(c),
                    ..AttemptOutcome::default()
                });
            }
            r
        }
        fn then(&self, outcome: AttemptOutcome) {
            self.script.lock().expect("lock").push_back(outcome);
        }
        fn seen(&self) -> Vec<WebhookRequest> {
            self.seen.lock().expect("lock").clone()
        }
    }

    impl WebhookTransport for Receiver {
        fn send(&self, request: &WebhookRequest) -> AttemptOutcome {
            self.seen.lock().expect("lock").push(request.clone());
            self.script
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or(AttemptOutcome {
                    status_code: Some(200),
                    ..AttemptOutcome::default()
                })
        }
    }

    struct Pipeline {
        clock: Arc<ManualClock>,
        queue: Arc<WebhookQueue>,
        deployments: DeploymentService,
    }

    /// A queue in `store` whose endpoints may be on 127.0.0.1.
    fn queue_in(store: Store, clock: SharedClock) -> WebhookQueue {
        let guard = UrlGuard::new(vec![IpNetwork::parse("127.0.0.1/32").expect("net")]);
        WebhookQueue::new(store, clock, guard, "https://omnicloud.example")
    }

    fn pipeline() -> Pipeline {
        let clock = Arc::new(ManualClock::new(t0()));
        let shared: SharedClock = clock.clone();
        let store = Store::memory().expect("store");
        let queue = Arc::new(queue_in(store.clone(), shared.clone()));
        let bus = EventBus::new();
        let q = queue.clone();
        bus.subscribe(None, move |envelope| q.enqueue(envelope).map(drop));
        Pipeline {
            clock,
            queue,
            deployments: DeploymentService::new(store, shared, Some(bus)),
        }
    }

    fn endpoint(p: &Pipeline, f: impl FnOnce(&mut EndpointSpec)) -> WebhookEndpoint {
        let mut spec = EndpointSpec::new(acme(), "http://127.0.0.1:9/hooks");
        f(&mut spec);
        p.queue.registry().register(&spec).expect("register")
    }

    #[test]
    fn events_are_queued_per_endpoint_filtered_signed_and_delivered() {
        let p = pipeline();
        let all = endpoint(&p, |_| {});
        let failures = endpoint(&p, |s| {
            s.url = "http://127.0.0.1:9/failures".to_owned();
            s.event_types = vec![EventType::StateChange];
            s.states = Some(vec![DeploymentState::Failed]);
        });
        let d = p.deployments.create(&acme(), "checkout").expect("create");
        p.deployments.start(&d.id).expect("start");
        p.deployments.fail(&d.id, "canary").expect("fail");
        let to = |e: &WebhookEndpoint| {
            p.queue
                .deliveries(None, Some(&e.id), None, 100, None)
                .expect("list")
                .len()
        };
        assert_eq!((to(&all), to(&failures)), (3, 1));
        let receiver = Receiver::default();
        assert_eq!(p.queue.run_due(&receiver, 100).expect("run"), 4);
        let sent = receiver.seen();
        let failed = sent
            .iter()
            .find(|r| r.url == failures.url)
            .expect("the failure went to the filtered endpoint");
        let body: serde_json::Value = serde_json::from_str(&failed.body).expect("json");
        assert_eq!(body["type"], "deployment.state_change");
        assert_eq!(body["data"]["old_state"], "in_progress");
        assert_eq!(body["data"]["new_state"], "failed");
        assert_eq!(body["data"]["deployment_id"], d.id.as_str());
        assert_eq!(
            body["data"]["links"]["logs"],
            format!("https://omnicloud.example/v1/deployments/{}/logs", d.id)
        );
        let header = |name: &str| {
            failed
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .expect("header")
        };
        let ts: i64 = header("webhook-timestamp").parse().expect("ts");
        assert!(verify(
            &failures.secret,
            &header("webhook-id"),
            ts,
            failed.body.as_bytes(),
            &header("webhook-signature"),
            ts,
            DEFAULT_TOLERANCE_S
        ));
        let statuses: Vec<DeliveryStatus> = p
            .queue
            .deliveries(Some(&acme()), None, None, 100, None)
            .expect("list")
            .into_iter()
            .map(|d| d.status)
            .collect();
        assert!(statuses.iter().all(|s| *s == DeliveryStatus::Delivered));
    }

    #[test]
    fn failures_retry_on_the_schedule_then_exhaust() {
        let p = pipeline();
        endpoint(&p, |s| s.event_types = vec![EventType::StateChange]);
        p.deployments.create(&acme(), "checkout").expect("create");
        let receiver = Receiver::answering(&[500, 502, 503, 500, 500]);
        let mut sent_at = Vec::new();
        for _ in 0..40 {
            if p.queue.run_due(&receiver, 10).expect("run") > 0 {
                sent_at.push((p.clock.now() - t0()).num_seconds());
            }
            p.clock.advance(0.5).expect("advance");
        }
        assert_eq!(sent_at, [0, 1, 3, 7, 15]);
        let d = &p
            .queue
            .deliveries(None, None, None, 10, None)
            .expect("list")[0];
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at),
            (DeliveryStatus::Exhausted, 5, None)
        );
        let attempts = p.queue.attempts(&d.id).expect("attempts");
        let codes: Vec<Option<u16>> = attempts.iter().map(|a| a.status_code).collect();
        assert_eq!(
            codes,
            [Some(500), Some(502), Some(503), Some(500), Some(500)]
        );
        assert!(
            attempts[0]
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("HTTP 500")
        );
        // A redelivery starts a fresh budget.
        let again = p.queue.redeliver(&d.id, Some(&acme())).expect("redeliver");
        assert_eq!(again.status, DeliveryStatus::Pending);
        p.queue.run_due(&receiver, 10).expect("run");
        let d = p.queue.delivery(&d.id).expect("get");
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Delivered, 6));
        let globex = TenantId::new("globex").expect("t");
        assert!(p.queue.redeliver(&d.id, Some(&globex)).is_err());
    }

    #[test]
    fn gone_disables_and_too_many_requests_honours_retry_after() {
        let p = pipeline();
        let e = endpoint(&p, |s| s.event_types = vec![EventType::StateChange]);
        p.deployments.create(&acme(), "a").expect("create");
        let receiver = Receiver::default();
        receiver.then(AttemptOutcome {
            status_code: Some(429),
            retry_after: Some(Duration::from_secs(30)),
            ..AttemptOutcome::default()
        });
        p.queue.run_due(&receiver, 10).expect("run");
        let d = &p
            .queue
            .deliveries(None, None, None, 10, None)
            .expect("list")[0];
        assert_eq!(d.next_attempt_at, Some(t0() + TimeDelta::seconds(30)));
        receiver.then(AttemptOutcome {
            status_code: Some(410),
            ..AttemptOutcome::default()
        });
        p.clock.advance(30.0).expect("advance");
        p.queue.run_due(&receiver, 10).expect("run");
        assert_eq!(
            p.queue.delivery(&d.id).expect("get").status,
            DeliveryStatus::Exhausted
        );
        let disabled = p.queue.registry().get(&e.id, None).expect("get");
        assert!(disabled.disabled_reason.unwrap_or_default().contains("410"));
        // Later events are not queued for it.
        p.deployments.create(&acme(), "b").expect("create");
        assert_eq!(
            p.queue
                .deliveries(None, None, None, 10, None)
                .expect("list")
                .len(),
            1
        );
    }

    #[test]
    fn the_rate_limit_defers_without_using_attempts() {
        let p = pipeline();
        endpoint(&p, |s| {
            s.event_types = vec![EventType::StateChange];
            s.rate_limit_per_minute = 3;
        });
        for i in 0..5 {
            p.deployments
                .create(&acme(), &format!("svc-{i}"))
                .expect("create");
        }
        let receiver = Receiver::default();
        assert_eq!(p.queue.run_due(&receiver, 10).expect("run"), 3);
        let waiting: Vec<Delivery> = p
            .queue
            .deliveries(None, None, Some(DeliveryStatus::Pending), 10, None)
            .expect("list");
        assert_eq!(waiting.len(), 2);
        assert!(
            waiting.iter().all(
                |d| d.attempts == 0 && d.next_attempt_at == Some(t0() + TimeDelta::seconds(60))
            )
        );
        p.clock.advance(59.0).expect("advance");
        assert_eq!(p.queue.run_due(&receiver, 10).expect("run"), 0);
        p.clock.advance(1.0).expect("advance");
        assert_eq!(p.queue.run_due(&receiver, 10).expect("run"), 2);
    }

    #[test]
    fn a_claimed_delivery_is_leased_and_sent_again_if_never_recorded() {
        let p = pipeline();
        endpoint(&p, |s| s.event_types = vec![EventType::StateChange]);
        p.deployments.create(&acme(), "a").expect("create");
        assert_eq!(p.queue.claim_due(10).expect("claim").len(), 1);
        assert!(p.queue.claim_due(10).expect("claim").is_empty(), "leased");
        p.clock.advance(61.0).expect("advance");
        assert_eq!(
            p.queue.claim_due(10).expect("claim").len(),
            1,
            "the lease ended"
        );
    }

    #[test]
    fn a_shorter_claim_lease_resends_sooner_and_a_sub_second_one_is_refused() {
        let clock = Arc::new(ManualClock::new(t0()));
        let shared: SharedClock = clock.clone();
        let store = Store::memory().expect("store");
        let make = || queue_in(store.clone(), shared.clone());
        assert!(matches!(
            make().with_claim_lease(TimeDelta::milliseconds(999)),
            Err(Error::Webhook(WebhookError::InvalidClaimLease {
                lease_ms: 999
            }))
        ));
        let queue = make()
            .with_claim_lease(TimeDelta::seconds(2))
            .expect("lease");
        let mut spec = EndpointSpec::new(acme(), "http://127.0.0.1:9/hooks");
        spec.event_types = vec![EventType::StateChange];
        queue.registry().register(&spec).expect("register");
        let bus = EventBus::new();
        let deployments = DeploymentService::new(store.clone(), shared.clone(), Some(bus));
        let d = deployments.create(&acme(), "a").expect("create");
        let events = vec![crate::events::Envelope {
            id: "01a00000-0000-7000-8000-000000000000".into(),
            at: t0(),
            event: crate::events::Event::DeploymentStateChanged {
                deployment: d,
                old_state: None,
            },
        }];
        assert_eq!(queue.enqueue_many(&events).expect("enqueue").len(), 1);
        assert_eq!(queue.claim_due(10).expect("claim").len(), 1);
        clock.advance(1.5).expect("advance");
        assert!(queue.claim_due(10).expect("claim").is_empty(), "leased");
        clock.advance(0.5).expect("advance");
        assert_eq!(queue.claim_due(10).expect("claim").len(), 1);
    }

    #[test]
    fn dispatchers_on_two_connections_never_claim_the_same_delivery() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("hooks.db");
        let shared: SharedClock = Arc::new(ManualClock::new(t0()));
        let queue_on = |store: Store| Arc::new(queue_in(store, shared.clone()));
        let first = queue_on(Store::open(&path).expect("open"));
        let mut spec = EndpointSpec::new(acme(), "http://127.0.0.1:9/hooks");
        spec.rate_limit_per_minute = 100_000;
        first.registry().register(&spec).expect("register");
        let deployments =
            DeploymentService::new(Store::open(&path).expect("open"), shared.clone(), None)
                .with_outbox(first.clone());
        assert!(deployments.is_err(), "another connection is another store");
        let deployments = DeploymentService::new(
            DeploymentOutbox::store(&*first).clone(),
            shared.clone(),
            None,
        )
        .with_outbox(first.clone())
        .expect("outbox");
        for i in 0..300 {
            deployments
                .create(&acme(), &format!("svc-{i}"))
                .expect("create");
        }
        // A second process's dispatcher: its own connection, its own limiter.
        let second = queue_on(Store::open(&path).expect("open"));
        let claimers: Vec<_> = [first, second]
            .into_iter()
            .map(|q| {
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    loop {
                        let batch = q.claim_due(7).expect("claim");
                        if batch.is_empty() {
                            return ids;
                        }
                        ids.extend(batch.into_iter().map(|r| r.delivery_id));
                    }
                })
            })
            .collect();
        let mut all: Vec<String> = claimers
            .into_iter()
            .flat_map(|t| t.join().expect("claimer"))
            .collect();
        assert_eq!(all.len(), 300);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 300, "a delivery was claimed twice");
    }

    /// The event behind the only delivery queued so far, as a replay would hand it over.
    fn replay_of_the_only_delivery(p: &Pipeline) -> crate::events::Envelope {
        let (queued,) = match p
            .queue
            .deliveries(None, None, None, 10, None)
            .expect("list")[..]
        {
            [ref d] => (d.clone(),),
            ref other => panic!("expected one delivery, got {other:?}"),
        };
        let message_event: String = DeploymentOutbox::store(&*p.queue)
            .read(|c| {
                c.query_row(
                    "SELECT event_id FROM webhook_messages WHERE id = ?1",
                    [&queued.message_id],
                    |r| r.get(0),
                )
            })
            .expect("event id");
        crate::events::Envelope {
            id: message_event,
            at: t0(),
            event: crate::events::Event::DeploymentStateChanged {
                deployment: p
                    .deployments
                    .list(&acme(), None, 1)
                    .expect("list")
                    .remove(0),
                old_state: None,
            },
        }
    }

    #[test]
    fn a_replay_reaching_the_first_plain_endpoint_gives_the_message_its_payload() {
        let p = pipeline();
        endpoint(&p, |s| {
            s.template = Some(r#"{"text": "{{ service_name }}"}"#.to_owned());
        });
        p.deployments.create(&acme(), "a").expect("create");
        let envelope = replay_of_the_only_delivery(&p);
        let plain = endpoint(&p, |s| s.url = "http://127.0.0.1:9/plain".to_owned());
        let added = p.queue.enqueue(&envelope).expect("replay");
        assert_eq!(added.len(), 1);
        let body: serde_json::Value =
            serde_json::from_str(&p.queue.delivery(&added[0]).expect("get").body).expect("json");
        assert_eq!(body["event_id"], envelope.id.as_str());
        assert_eq!(body["data"]["service_name"], "a");
        let receiver = Receiver::default();
        assert_eq!(p.queue.run_due(&receiver, 10).expect("run"), 2);
        let sent = receiver.seen();
        let to_plain = sent.iter().find(|r| r.url == plain.url).expect("plain");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&to_plain.body).expect("json"),
            body
        );
    }

    #[test]
    fn queueing_an_event_again_adds_only_what_is_missing() {
        let p = pipeline();
        let first = endpoint(&p, |s| s.event_types = vec![EventType::StateChange]);
        p.deployments.create(&acme(), "a").expect("create");
        let envelope = replay_of_the_only_delivery(&p);
        // The same event again: nothing new.
        assert!(p.queue.enqueue(&envelope).expect("again").is_empty());
        // A new endpoint: the replay reaches it, and only it.
        let second = endpoint(&p, |s| s.event_types = vec![EventType::StateChange]);
        let added = p.queue.enqueue(&envelope).expect("replay");
        assert_eq!(added.len(), 1);
        assert_eq!(
            p.queue.delivery(&added[0]).expect("get").endpoint_id,
            second.id
        );
        assert_eq!(
            p.queue
                .deliveries(None, Some(&first.id), None, 10, None)
                .expect("list")
                .len(),
            1
        );
    }

    #[test]
    fn a_message_keeps_its_payload_once_and_templated_deliveries_their_own() {
        let p = pipeline();
        let plain = [
            endpoint(&p, |s| s.url = "http://127.0.0.1:9/a".to_owned()),
            endpoint(&p, |s| s.url = "http://127.0.0.1:9/b".to_owned()),
        ];
        let templated = endpoint(&p, |s| {
            s.template = Some(r#"{"text": "{{ service_name }} is {{ new_state }}"}"#.to_owned());
        });
        p.deployments.create(&acme(), "checkout").expect("create");
        let store = DeploymentOutbox::store(&*p.queue).clone();
        let (payload, own): (String, Vec<Option<String>>) = store
            .read(|c| {
                let payload = c.query_row("SELECT body FROM webhook_messages", [], |r| r.get(0))?;
                let own = c
                    .prepare("SELECT body FROM webhook_deliveries ORDER BY body")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok((payload, own))
            })
            .expect("rows");
        // Stored once: the two plain deliveries keep no copy of their own.
        let rendered = r#"{"text":"checkout is queued"}"#.to_owned();
        assert_eq!(own, [None, None, Some(rendered.clone())]);
        let body = |e: &WebhookEndpoint| {
            p.queue
                .deliveries(None, Some(&e.id), None, 10, None)
                .expect("list")
                .remove(0)
                .body
        };
        assert_eq!(body(&plain[0]), payload);
        assert_eq!(body(&plain[1]), payload);
        assert_eq!(body(&templated), rendered);
        let receiver = Receiver::default();
        assert_eq!(p.queue.run_due(&receiver, 10).expect("run"), 3);
        let mut sent: Vec<String> = receiver.seen().into_iter().map(|r| r.body).collect();
        sent.sort();
        assert_eq!(sent, [payload.clone(), payload, rendered]);
    }

    #[test]
    fn a_database_from_before_shared_payloads_keeps_and_sends_every_body() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("omnicloud.db");
        {
            let mut conn = rusqlite::Connection::open(&path).expect("open");
            crate::store::migrations::apply_to(&mut conn, &path, 11).expect("v11");
            conn.execute_batch(
                r#"
                INSERT INTO webhook_endpoints VALUES ('ep_old', 'acme', 'http://127.0.0.1:9/old',
                    '["state_change"]', NULL, NULL, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', NULL,
                    NULL, 100, 5, NULL, '2026-03-01T12:00:00.000000000Z',
                    '2026-03-01T12:00:00.000000000Z');
                INSERT INTO webhook_messages VALUES ('msg_old', 'acme', 'state_change', 'evt_old',
                    '2026-03-01T12:00:00.000000000Z');
                INSERT INTO webhook_deliveries VALUES ('dlv_old', 'ep_old', 'msg_old', 'acme',
                    'state_change', 'pending', 0, 0, '2026-03-01T12:00:00.000000000Z',
                    '{"old":true}', '2026-03-01T12:00:00.000000000Z',
                    '2026-03-01T12:00:00.000000000Z');
                INSERT INTO webhook_deliveries VALUES ('dlv_bad', 'ep_old', 'msg_old', 'acme',
                    'state_change', 'exhausted', 1, 0, NULL, '', '2026-03-01T12:00:00.000000000Z',
                    '2026-03-01T12:00:00.000000000Z');
                "#,
            )
            .expect("v11 rows");
        }
        let store = Store::open(&path).expect("migrate");
        assert_eq!(store.schema_version().expect("version"), 12);
        store.integrity_check().expect("healthy");
        let queue = queue_in(store, Arc::new(ManualClock::new(t0())));
        assert_eq!(
            queue.delivery("dlv_old").expect("old").body,
            r#"{"old":true}"#
        );
        assert!(matches!(
            queue.redeliver("dlv_bad", None),
            Err(Error::Webhook(WebhookError::NotRedeliverable { .. }))
        ));
        let receiver = Receiver::default();
        assert_eq!(queue.run_due(&receiver, 10).expect("run"), 1);
        assert_eq!(receiver.seen()[0].body, r#"{"old":true}"#);
        assert_eq!(
            queue.delivery("dlv_old").expect("old").status,
            DeliveryStatus::Delivered
        );
    }

    #[test]
    fn a_template_that_fails_at_delivery_time_exhausts_with_the_reason() {
        let p = pipeline();
        endpoint(&p, |s| {
            s.event_types = vec![EventType::StateChange];
            s.template = Some(r#"{"who": "{{ nobody }}"}"#.to_owned());
        });
        endpoint(&p, |s| {
            s.event_types = vec![EventType::StateChange];
            s.template = Some(r#"{"text": "{{ service_name }} is {{ new_state }}"}"#.to_owned());
        });
        p.deployments.create(&acme(), "checkout").expect("create");
        let all = p
            .queue
            .deliveries(None, None, None, 10, None)
            .expect("list");
        let bad = all
            .iter()
            .find(|d| d.status == DeliveryStatus::Exhausted)
            .expect("bad");
        let reason = p.queue.attempts(&bad.id).expect("attempts")[0]
            .error
            .clone();
        assert!(reason.unwrap_or_default().contains("nobody"));
        let receiver = Receiver::default();
        assert_eq!(p.queue.run_due(&receiver, 10).expect("run"), 1);
        assert_eq!(receiver.seen()[0].body, r#"{"text":"checkout is queued"}"#);
        // Nothing was rendered, so nothing can be sent again.
        assert!(matches!(
            p.queue.redeliver(&bad.id, None),
            Err(Error::Webhook(WebhookError::NotRedeliverable { reason, .. })) if reason.contains("nobody")
        ));
        assert_eq!(
            p.queue.delivery(&bad.id).expect("get").status,
            DeliveryStatus::Exhausted
        );
    }
}
