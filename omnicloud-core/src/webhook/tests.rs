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
