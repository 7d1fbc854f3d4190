//! Deployments against a real SQLite store, with a bus recording what was announced.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::*;
use crate::clock::{ManualClock, SharedClock};
use crate::error::{DeployError, Error};
use crate::events::{EventBus, EventKind};
use crate::ids::TenantId;
use crate::store::Store;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .expect("t")
        .with_timezone(&Utc)
}

struct World {
    clock: Arc<ManualClock>,
    service: DeploymentService,
    seen: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

fn world() -> World {
    let clock = Arc::new(ManualClock::new(t0()));
    let shared: SharedClock = clock.clone();
    let bus = EventBus::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    bus.subscribe(None, move |envelope| {
        sink.lock()
            .expect("lock")
            .push((envelope.event.name().to_owned(), envelope.event.data()));
        Ok(())
    });
    World {
        clock,
        service: DeploymentService::new(Store::memory().expect("store"), shared, Some(bus)),
        seen,
    }
}

fn acme() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

#[test]
fn a_rollout_moves_through_its_states_with_timing_and_events() {
    let w = world();
    let d = w.service.create(&acme(), "checkout").expect("create");
    assert_eq!(d.state, DeploymentState::Queued);
    w.clock.advance(5.0).expect("advance");
    let started = w.service.start(&d.id).expect("start");
    assert_eq!(started.started_at, Some(w.clock_now()));
    w.clock.advance(90.0).expect("advance");
    let done = w.service.complete(&d.id).expect("complete");
    assert_eq!(done.state, DeploymentState::Completed);
    assert_eq!(done.duration_seconds(t0()), 90.0);
    assert_eq!(w.service.get(&d.id).expect("get"), done);
    let seen = w.seen.lock().expect("lock").clone();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["deployment.state_change"; 3]);
    let last = &seen[2].1;
    assert_eq!(last["old_state"], "in_progress");
    assert_eq!(last["new_state"], "completed");
    assert_eq!(last["duration_seconds"], 90.0);
    assert_eq!(last["service_name"], "checkout");
    assert_eq!(seen[0].1["old_state"], serde_json::Value::Null);
    let history = w.service.history(&d.id).expect("history");
    let moves: Vec<_> = history.iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(
        moves,
        [
            (None, DeploymentState::Queued),
            (Some(DeploymentState::Queued), DeploymentState::InProgress),
            (
                Some(DeploymentState::InProgress),
                DeploymentState::Completed
            ),
        ]
    );
}

impl World {
    fn clock_now(&self) -> DateTime<Utc> {
        crate::clock::Clock::now(&*self.clock)
    }
}

#[test]
fn failures_rollbacks_and_health_checks_are_announced() {
    let w = world();
    let d = w.service.create(&acme(), "checkout").expect("create");
    w.service.start(&d.id).expect("start");
    w.service
        .report_health_check_failed(&d.id, "http /health", "503 for 30 s")
        .expect("health");
    let failed = w
        .service
        .fail(&d.id, "health checks failing")
        .expect("fail");
    assert_eq!(failed.reason.as_deref(), Some("health checks failing"));
    let back = w.service.rollback(&d.id, "automatic").expect("rollback");
    assert_eq!(back.state, DeploymentState::RolledBack);
    assert!(back.state.is_terminal());
    let names: Vec<String> = w
        .seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(
        names,
        [
            "deployment.state_change",
            "deployment.state_change",
            "deployment.health_check_failed",
            "deployment.state_change",
            "deployment.rollback_initiated",
            "deployment.state_change",
        ]
    );
    assert!("deployment.rollback_initiated".parse::<EventKind>().is_ok());
}

#[test]
fn the_lifecycle_refuses_what_it_does_not_allow_and_changes_nothing() {
    let w = world();
    let d = w.service.create(&acme(), "checkout").expect("create");
    for (what, result) in [
        ("complete a queued deployment", w.service.complete(&d.id)),
        (
            "roll back a queued deployment",
            w.service.rollback(&d.id, "why"),
        ),
    ] {
        assert!(
            matches!(
                result,
                Err(Error::Deploy(DeployError::InvalidTransition {
                    from: DeploymentState::Queued,
                    ..
                }))
            ),
            "{what}: {result:?}"
        );
    }
    assert_eq!(
        w.service.get(&d.id).expect("get").state,
        DeploymentState::Queued
    );
    assert_eq!(
        w.seen.lock().expect("lock").len(),
        1,
        "only the creation was announced"
    );
    assert!(matches!(
        w.service.start("nope"),
        Err(Error::Deploy(DeployError::UnknownDeployment { .. }))
    ));
    assert!(w.service.create(&acme(), "  ").is_err());
    assert!(w.service.create(&acme(), &"x".repeat(201)).is_err());
    assert!(w.service.fail(&d.id, "").is_err());
    // Every state's table.
    for from in DeploymentState::ALL {
        for to in DeploymentState::ALL {
            let allowed = matches!(
                (from, to),
                (
                    DeploymentState::Queued,
                    DeploymentState::InProgress | DeploymentState::Failed
                ) | (
                    DeploymentState::InProgress,
                    DeploymentState::Completed
                        | DeploymentState::Failed
                        | DeploymentState::RolledBack
                ) | (
                    DeploymentState::Completed | DeploymentState::Failed,
                    DeploymentState::RolledBack
                )
            );
            assert_eq!(from.can_move_to(to), allowed, "{from} -> {to}");
        }
    }
}

#[test]
fn lists_are_per_tenant_newest_first_and_filter_by_state() {
    let w = world();
    let a = w.service.create(&acme(), "a").expect("a");
    w.clock.advance(1.0).expect("advance");
    let b = w.service.create(&acme(), "b").expect("b");
    w.service
        .create(&TenantId::new("globex").expect("t"), "c")
        .expect("c");
    w.service.start(&a.id).expect("start");
    let all: Vec<String> = w
        .service
        .list(&acme(), None, 10)
        .expect("list")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(all, [b.id, a.id]);
    let running = w
        .service
        .list(&acme(), Some(DeploymentState::InProgress), 10)
        .expect("list");
    assert_eq!(running.len(), 1);
    assert_eq!(w.service.list(&acme(), None, 1).expect("list").len(), 1);
}

/// An outbox that records what it was given, or refuses everything.
#[derive(Debug)]
struct RecordingOutbox {
    store: Store,
    refuse: bool,
    recorded: Mutex<Vec<(String, String)>>,
    commits: Mutex<usize>,
}

impl DeploymentOutbox for RecordingOutbox {
    fn store(&self) -> &Store {
        &self.store
    }

    fn record(
        &self,
        tx: &rusqlite::Transaction<'_>,
        events: &[crate::events::Envelope],
    ) -> crate::error::Result<()> {
        // The change is visible inside the transaction it is recorded in.
        let n: i64 = tx
            .query_row("SELECT COUNT(*) FROM deployments", [], |r| r.get(0))
            .expect("count");
        assert!(n > 0);
        if self.refuse {
            return Err(DeployError::UnknownDeployment {
                deployment_id: "refused by the outbox".into(),
            }
            .into());
        }
        let mut recorded = self.recorded.lock().expect("lock");
        recorded.extend(
            events
                .iter()
                .map(|e| (e.id.clone(), e.event.name().to_owned())),
        );
        Ok(())
    }

    fn committed(&self) {
        *self.commits.lock().expect("lock") += 1;
    }
}

fn outboxed(
    refuse: bool,
) -> (
    DeploymentService,
    Arc<RecordingOutbox>,
    Arc<Mutex<Vec<String>>>,
) {
    let clock: SharedClock = Arc::new(ManualClock::new(t0()));
    let store = Store::memory().expect("store");
    let outbox = Arc::new(RecordingOutbox {
        store: store.clone(),
        refuse,
        recorded: Mutex::new(Vec::new()),
        commits: Mutex::new(0),
    });
    let bus = EventBus::new();
    let published = Arc::new(Mutex::new(Vec::new()));
    let sink = published.clone();
    bus.subscribe(None, move |e| {
        sink.lock().expect("lock").push(e.id.clone());
        Ok(())
    });
    let service = DeploymentService::new(store, clock, Some(bus))
        .with_outbox(outbox.clone())
        .expect("outbox");
    (service, outbox, published)
}

#[test]
fn every_event_goes_to_the_outbox_in_the_change_and_then_to_the_bus_with_the_same_id() {
    let (service, outbox, published) = outboxed(false);
    let d = service.create(&acme(), "checkout").expect("create");
    service.start(&d.id).expect("start");
    service
        .report_health_check_failed(&d.id, "GET /healthz", "500")
        .expect("report");
    service.rollback(&d.id, "bad release").expect("rollback");
    let recorded = outbox.recorded.lock().expect("lock").clone();
    let names: Vec<&str> = recorded.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "deployment.state_change",
            "deployment.state_change",
            "deployment.health_check_failed",
            "deployment.rollback_initiated",
            "deployment.state_change"
        ]
    );
    let ids: Vec<String> = recorded.into_iter().map(|(id, _)| id).collect();
    assert_eq!(*published.lock().expect("lock"), ids);
    assert_eq!(*outbox.commits.lock().expect("lock"), 4);
}

#[test]
fn a_refusing_outbox_undoes_the_change_and_nothing_is_announced() {
    let (service, outbox, published) = outboxed(true);
    assert!(service.create(&acme(), "checkout").is_err());
    assert!(service.list(&acme(), None, 10).expect("list").is_empty());
    assert!(published.lock().expect("lock").is_empty());
    assert_eq!(*outbox.commits.lock().expect("lock"), 0);
}

#[test]
fn an_outbox_in_another_store_is_refused() {
    let clock: SharedClock = Arc::new(ManualClock::new(t0()));
    let outbox = Arc::new(RecordingOutbox {
        store: Store::memory().expect("store"),
        refuse: false,
        recorded: Mutex::new(Vec::new()),
        commits: Mutex::new(0),
    });
    let service = DeploymentService::new(Store::memory().expect("store"), clock, None);
    assert!(matches!(
        service.with_outbox(outbox),
        Err(Error::Deploy(DeployError::OutboxInAnotherStore { .. }))
    ));
}

#[test]
fn pages_follow_the_list_order_and_stay_per_tenant() {
    let w = world();
    let mut ids = Vec::new();
    for i in 0..7 {
        w.clock.advance(1.0).expect("advance");
        ids.push(
            w.service
                .create(&acme(), &format!("svc-{i}"))
                .expect("create")
                .id,
        );
    }
    let other = TenantId::new("globex").expect("tenant");
    let theirs = w.service.create(&other, "theirs").expect("create");
    ids.reverse();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = w
            .service
            .page(&acme(), None, 3, after.as_deref())
            .expect("page");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|d| d.id.clone());
        seen.extend(page.into_iter().map(|d| d.id));
    }
    assert_eq!(seen, ids);
    let listed: Vec<String> = w
        .service
        .list(&acme(), None, 100)
        .expect("list")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, ids);
    // Another tenant's id is no cursor.
    assert!(
        w.service
            .page(&acme(), None, 3, Some(&theirs.id))
            .expect("page")
            .is_empty()
    );
}
