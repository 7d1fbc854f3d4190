//! The REST API driven through its router (no socket): authentication, tenant scoping,
//! endpoint CRUD, deliveries, deployments, pagination, problem responses, and the committed
//! OpenAPI document.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use omnicloud_core::clock::{ManualClock, SharedClock};
use omnicloud_core::ids::TenantId;
use omnicloud_core::store::Store;
use omnicloud_core::webhook::{AttemptOutcome, UrlGuard, WebhookRequest, WebhookTransport};
use omnicloud_runtime::api::{self, ApiState, MAX_BODY_BYTES, PROBLEM_JSON};
use serde_json::{Value, json};
use tower::ServiceExt;

const HOOK: &str = "https://hooks.example.com/x";

struct Api {
    router: Router,
    state: ApiState,
    clock: Arc<ManualClock>,
}

/// What a request got back.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Api {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
                .single()
                .expect("valid instant"),
        ));
        let shared: SharedClock = clock.clone();
        let store = Store::memory().expect("memory store");
        let state = ApiState::in_store(&store, &shared, UrlGuard::default(), "https://api.test")
            .expect("state");
        Self {
            router: api::router(state.clone()),
            state,
            clock,
        }
    }

    /// Issues a key for `tenant` and returns its plaintext.
    fn key(&self, tenant: &str) -> String {
        let tenant = TenantId::new(tenant).expect("tenant id");
        self.state.keys.issue(&tenant, "test").expect("issue").1
    }

    async fn raw(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status}: not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        let reply = Reply {
            status,
            headers,
            body,
        };
        if status.is_client_error() || status.is_server_error() {
            reply.assert_problem(status.as_u16());
        }
        reply
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = match body {
            Some(value) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        self.raw(request.body(body).expect("request")).await
    }

    async fn get(&self, uri: &str, key: &str) -> Reply {
        self.call(Method::GET, uri, Some(key), None).await
    }

    async fn post(&self, uri: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(key), Some(body)).await
    }

    async fn register(&self, key: &str, body: Value) -> Value {
        let reply = self.post("/v1/endpoints", key, body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }

    async fn deploy(&self, key: &str, service: &str) -> String {
        let reply = self
            .post("/v1/deployments", key, json!({"service_name": service}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().expect("id").to_owned()
    }
}

impl Reply {
    /// Every error is an RFC 9457 problem with a stable type and a detail.
    fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(
            self.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(PROBLEM_JSON.as_bytes()),
            "{status} is not a problem: {}",
            self.body
        );
        assert_eq!(self.body["status"], status, "{}", self.body);
        let kind = self.body["type"].as_str().expect("type");
        assert!(
            kind.starts_with("https://omnicloud.dev/problems/"),
            "{kind}"
        );
        assert!(self.body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(self.body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    }

    fn kind(&self) -> &str {
        self.body["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("https://omnicloud.dev/problems/"))
            .unwrap_or_default()
    }

    fn ids(&self) -> Vec<String> {
        self.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|item| item["id"].as_str().expect("id").to_owned())
            .collect()
    }
}

/// A receiver that accepts everything.
struct Accepting;

impl WebhookTransport for Accepting {
    fn send(&self, _request: &WebhookRequest) -> AttemptOutcome {
        AttemptOutcome {
            status_code: Some(200),
            ..AttemptOutcome::default()
        }
    }
}

#[tokio::test]
async fn every_v1_route_needs_a_valid_key() {
    let api = Api::new();
    let key = api.key("acme");
    let missing = api.call(Method::GET, "/v1/endpoints", None, None).await;
    missing.assert_problem(401);
    assert_eq!(missing.kind(), "unauthorized");
    let challenge = missing
        .headers
        .get(header::WWW_AUTHENTICATE)
        .expect("challenge");
    assert!(challenge.to_str().expect("ascii").starts_with("Bearer"));

    for bad in [
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l".to_owned(),
        "Bearer".to_owned(),
        "Bearer ock_nope".to_owned(),
        format!("Bearer {key}x"),
        format!("Token {key}"),
    ] {
        let request = Request::get("/v1/deployments")
            .header(header::AUTHORIZATION, bad.as_str())
            .body(Body::empty())
            .expect("request");
        let reply = api.raw(request).await;
        reply.assert_problem(401);
        assert!(
            reply.headers.contains_key(header::WWW_AUTHENTICATE),
            "{bad}"
        );
    }
    // Routes with a body authenticate first.
    let reply = api
        .call(
            Method::POST,
            "/v1/endpoints",
            None,
            Some(json!({"url": HOOK})),
        )
        .await;
    reply.assert_problem(401);

    assert_eq!(api.get("/v1/endpoints", &key).await.status, StatusCode::OK);
    let lower = Request::get("/v1/endpoints")
        .header(header::AUTHORIZATION, format!("bearer {key}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(api.raw(lower).await.status, StatusCode::OK);

    let tenant = TenantId::new("acme").expect("tenant");
    let id = api.state.keys.list(&tenant).expect("list")[0].id.clone();
    api.state.keys.revoke(&id, &tenant).expect("revoke");
    api.get("/v1/endpoints", &key).await.assert_problem(401);
}

#[tokio::test]
async fn health_and_the_document_need_no_key() {
    let api = Api::new();
    let health = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, json!({"status": "ok"}));
    let doc = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(
        doc.body,
        serde_json::from_str::<Value>(&api::openapi_json()).expect("json")
    );
    assert!(
        doc.body["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.1")
    );
}

#[tokio::test]
async fn endpoint_crud_round_trip() {
    let api = Api::new();
    let key = api.key("acme");
    let created = api
        .register(
            &key,
            json!({
                "url": HOOK,
                "event_types": ["state_change", "rollback_initiated"],
                "states": ["failed"],
                "rate_limit_per_minute": 10,
            }),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("ep_"));
    assert!(
        created["secret"]
            .as_str()
            .expect("secret")
            .starts_with("whsec_")
    );
    assert_eq!(created["tenant_id"], "acme");
    assert_eq!(created["url"], HOOK);
    assert_eq!(created["states"], json!(["failed"]));
    assert_eq!(created["template"], Value::Null);
    assert_eq!(created["rate_limit_per_minute"], 10);
    assert_eq!(created["max_attempts"], 5);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["created_at"], "2026-03-01T12:00:00Z");

    let read = api.get(&format!("/v1/endpoints/{id}"), &key).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(
        read.body.get("secret").is_none(),
        "reads never show the secret"
    );
    assert_eq!(
        read.body["event_types"],
        json!(["state_change", "rollback_initiated"])
    );

    let listed = api.get("/v1/endpoints", &key).await;
    assert_eq!(listed.ids(), std::slice::from_ref(&id));
    assert_eq!(listed.body["next_after"], Value::Null);

    api.clock.advance(5.0).expect("advance");
    let patched = api
        .call(
            Method::PATCH,
            &format!("/v1/endpoints/{id}"),
            Some(&key),
            Some(json!({
                "max_attempts": 3,
                "states": null,
                "template": "{\"deployment\": {{ deployment_id | tojson }}}",
                "enabled": false,
            })),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["max_attempts"], 3);
    assert_eq!(patched.body["rate_limit_per_minute"], 10, "untouched");
    assert_eq!(patched.body["states"], Value::Null);
    assert!(patched.body["template"].as_str().is_some());
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(patched.body["updated_at"], "2026-03-01T12:00:05Z");

    let rotated = api
        .post(
            &format!("/v1/endpoints/{id}/rotate-secret"),
            &key,
            json!({"grace_s": 60}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_ne!(rotated.body["secret"], created["secret"]);
    assert_eq!(
        rotated.body["previous_secret_expires_at"],
        "2026-03-01T12:01:05Z"
    );
    // The body is optional.
    let bare = api
        .call(
            Method::POST,
            &format!("/v1/endpoints/{id}/rotate-secret"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(bare.status, StatusCode::OK, "{}", bare.body);
    let bad_secret = api
        .post(
            &format!("/v1/endpoints/{id}/rotate-secret"),
            &key,
            json!({"secret": "not-a-secret"}),
        )
        .await;
    bad_secret.assert_problem(422);
    assert_eq!(bad_secret.kind(), "invalid-secret");

    let deleted = api
        .call(
            Method::DELETE,
            &format!("/v1/endpoints/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(deleted.body, Value::Null);
    let gone = api.get(&format!("/v1/endpoints/{id}"), &key).await;
    gone.assert_problem(404);
    assert_eq!(gone.kind(), "not-found");
    assert!(gone.body["detail"].as_str().expect("detail").contains(&id));
}

#[tokio::test]
async fn another_tenants_ids_are_not_found_on_every_route() {
    let api = Api::new();
    let owner = api.key("acme");
    let other = api.key("globex");
    let endpoint = api
        .register(
            &owner,
            json!({"url": HOOK, "event_types": ["state_change"]}),
        )
        .await;
    let endpoint = endpoint["id"].as_str().expect("id").to_owned();
    let deployment = api.deploy(&owner, "checkout").await;
    let deliveries = api.get("/v1/deliveries", &owner).await;
    let delivery = deliveries
        .ids()
        .first()
        .cloned()
        .expect("a delivery was queued");

    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/endpoints/{endpoint}"), None),
        (
            Method::PATCH,
            format!("/v1/endpoints/{endpoint}"),
            Some(json!({"max_attempts": 2})),
        ),
        (Method::DELETE, format!("/v1/endpoints/{endpoint}"), None),
        (
            Method::POST,
            format!("/v1/endpoints/{endpoint}/rotate-secret"),
            Some(json!({})),
        ),
        (Method::GET, format!("/v1/deliveries/{delivery}"), None),
        (
            Method::GET,
            format!("/v1/deliveries/{delivery}/attempts"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/deliveries/{delivery}/redeliver"),
            None,
        ),
        (Method::GET, format!("/v1/deployments/{deployment}"), None),
        (
            Method::POST,
            format!("/v1/deployments/{deployment}/start"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/deployments/{deployment}/complete"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/deployments/{deployment}/fail"),
            Some(json!({"reason": "r"})),
        ),
        (
            Method::POST,
            format!("/v1/deployments/{deployment}/rollback"),
            Some(json!({"reason": "r"})),
        ),
        (
            Method::POST,
            format!("/v1/deployments/{deployment}/health-check-failures"),
            Some(json!({"check": "c", "detail": "d"})),
        ),
        (
            Method::GET,
            format!("/v1/deployments/{deployment}/logs"),
            None,
        ),
    ];
    for (method, uri, body) in routes {
        let foreign = api
            .call(method.clone(), &uri, Some(&other), body.clone())
            .await;
        foreign.assert_problem(404);
        assert_eq!(foreign.kind(), "not-found", "{method} {uri}");
        // Exactly what a missing id answers.
        let missing_uri = uri
            .replace(&endpoint, "ep_missing")
            .replace(&delivery, "dlv_missing")
            .replace(&deployment, "missing");
        let missing = api
            .call(method.clone(), &missing_uri, Some(&owner), body)
            .await;
        missing.assert_problem(404);
        assert_eq!(foreign.body["title"], missing.body["title"]);
        assert_eq!(foreign.body["type"], missing.body["type"]);
    }
    // Nothing of the owner's changed, and the other tenant's lists are empty.
    assert_eq!(
        api.get(&format!("/v1/endpoints/{endpoint}"), &owner)
            .await
            .status,
        StatusCode::OK
    );
    let d = api
        .get(&format!("/v1/deployments/{deployment}"), &owner)
        .await;
    assert_eq!(d.body["state"], "queued");
    for list in ["/v1/endpoints", "/v1/deliveries", "/v1/deployments"] {
        assert!(api.get(list, &other).await.ids().is_empty(), "{list}");
    }
    let filtered = api
        .get(&format!("/v1/deliveries?endpoint_id={endpoint}"), &other)
        .await;
    assert!(filtered.ids().is_empty());
}

#[tokio::test]
async fn unsafe_and_malformed_urls_are_refused() {
    let api = Api::new();
    let key = api.key("acme");
    for url in [
        "http://127.0.0.1/hook",
        "http://localhost:8080/x",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest",
    ] {
        let reply = api
            .post(
                "/v1/endpoints",
                &key,
                json!({"url": url, "event_types": ["state_change"]}),
            )
            .await;
        reply.assert_problem(422);
        assert_eq!(reply.kind(), "unsafe-url", "{url}");
        assert_eq!(reply.body["field"], "url");
        assert!(
            reply.body["detail"].as_str().expect("detail").contains(url),
            "{}",
            reply.body
        );
    }
    let reply = api
        .post(
            "/v1/endpoints",
            &key,
            json!({"url": "ftp://x.example/", "event_types": ["state_change"]}),
        )
        .await;
    reply.assert_problem(422);
    assert_eq!(reply.kind(), "invalid-url");
    assert!(api.get("/v1/endpoints", &key).await.ids().is_empty());
}

#[tokio::test]
async fn validation_problems_name_the_bad_value() {
    let api = Api::new();
    let key = api.key("acme");
    let template = "{\n  \"id\": {{ deployment_id }\n}";
    let reply = api
        .post(
            "/v1/endpoints",
            &key,
            json!({"url": HOOK, "event_types": ["state_change"], "template": template}),
        )
        .await;
    reply.assert_problem(422);
    assert_eq!(reply.kind(), "invalid-template");
    assert_eq!(reply.body["line"], 2, "{}", reply.body);

    let reply = api
        .post(
            "/v1/endpoints",
            &key,
            json!({"url": HOOK, "event_types": ["state_change"], "rate_limit_per_minute": 0}),
        )
        .await;
    reply.assert_problem(422);
    assert_eq!(reply.body["field"], "rate_limit_per_minute");

    let reply = api
        .post(
            "/v1/endpoints",
            &key,
            json!({"url": HOOK, "event_types": []}),
        )
        .await;
    reply.assert_problem(422);
    assert_eq!(reply.body["field"], "event_types");

    // The detail names the unknown event type, and the unknown field.
    for (body, named) in [
        (
            json!({"url": HOOK, "event_types": ["deploy_started"]}),
            "deploy_started",
        ),
        (
            json!({"url": HOOK, "event_types": ["state_change"], "colour": 1}),
            "colour",
        ),
    ] {
        let reply = api.post("/v1/endpoints", &key, body).await;
        reply.assert_problem(422);
        assert!(
            reply.body["detail"]
                .as_str()
                .expect("detail")
                .contains(named),
            "{}",
            reply.body
        );
    }

    let reply = api
        .post("/v1/deployments", &key, json!({"service_name": "  "}))
        .await;
    reply.assert_problem(422);
    assert_eq!(reply.kind(), "validation-failed");
}

#[tokio::test]
async fn deployments_move_through_their_lifecycle() {
    let api = Api::new();
    let key = api.key("acme");
    let id = api.deploy(&key, "checkout").await;
    let uri = |tail: &str| format!("/v1/deployments/{id}{tail}");

    let early = api
        .call(Method::POST, &uri("/complete"), Some(&key), None)
        .await;
    early.assert_problem(409);
    assert_eq!(early.kind(), "invalid-transition");
    assert!(
        early.body["detail"]
            .as_str()
            .expect("detail")
            .contains("queued")
    );

    let started = api
        .call(Method::POST, &uri("/start"), Some(&key), None)
        .await;
    assert_eq!(started.status, StatusCode::OK);
    assert_eq!(started.body["state"], "in_progress");
    api.clock.advance(90.0).expect("advance");
    let running = api.get(&uri(""), &key).await;
    assert_eq!(running.body["duration_seconds"], 90.0);
    assert_eq!(running.body["finished_at"], Value::Null);

    let hc = api
        .post(
            &uri("/health-check-failures"),
            &key,
            json!({"check": "http", "detail": "503"}),
        )
        .await;
    assert_eq!(hc.status, StatusCode::ACCEPTED);
    assert_eq!(hc.body["state"], "in_progress");

    let done = api
        .call(Method::POST, &uri("/complete"), Some(&key), None)
        .await;
    assert_eq!(done.body["state"], "completed");
    let back = api
        .post(&uri("/rollback"), &key, json!({"reason": "bad canary"}))
        .await;
    assert_eq!(back.status, StatusCode::OK);
    assert_eq!(back.body["state"], "rolled_back");
    assert_eq!(back.body["reason"], "bad canary");
    let again = api.post(&uri("/fail"), &key, json!({"reason": "x"})).await;
    again.assert_problem(409);

    let logs = api.get(&uri("/logs"), &key).await;
    assert_eq!(logs.status, StatusCode::OK);
    assert_eq!(logs.body["deployment_id"], id.as_str());
    let moves: Vec<(Value, Value)> = logs.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|t| (t["from"].clone(), t["to"].clone()))
        .collect();
    assert_eq!(
        moves,
        [
            (Value::Null, json!("queued")),
            (json!("queued"), json!("in_progress")),
            (json!("in_progress"), json!("completed")),
            (json!("completed"), json!("rolled_back")),
        ]
    );

    let failing = api.deploy(&key, "search").await;
    let failed = api
        .post(
            &format!("/v1/deployments/{failing}/fail"),
            &key,
            json!({"reason": "no capacity"}),
        )
        .await;
    assert_eq!(failed.body["state"], "failed");
    let only_failed = api.get("/v1/deployments?state=failed", &key).await;
    assert_eq!(only_failed.ids(), [failing]);
    api.get("/v1/deployments?state=paused", &key)
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn malformed_requests_are_400_problems() {
    let api = Api::new();
    let key = api.key("acme");
    let request = Request::post("/v1/endpoints")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"url\": "))
        .expect("request");
    let reply = api.raw(request).await;
    reply.assert_problem(400);
    assert_eq!(reply.kind(), "malformed-request");

    let request = Request::post("/v1/deployments")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("service_name=x"))
        .expect("request");
    let reply = api.raw(request).await;
    reply.assert_problem(415);
    assert_eq!(reply.kind(), "unsupported-media-type");

    for query in [
        "limit=abc",
        "limit=0",
        "limit=501",
        "status=bogus",
        "limit=-1",
    ] {
        let reply = api.get(&format!("/v1/deliveries?{query}"), &key).await;
        reply.assert_problem(400);
        assert_eq!(reply.kind(), "malformed-request", "{query}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let api = Api::new();
    let key = api.key("acme");
    let big = json!({"service_name": "x".repeat(MAX_BODY_BYTES)});
    let reply = api.post("/v1/deployments", &key, big).await;
    reply.assert_problem(413);
    assert_eq!(reply.kind(), "payload-too-large");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let api = Api::new();
    let key = api.key("acme");
    let reply = api.get("/v1/nothing-here", &key).await;
    reply.assert_problem(404);
    assert!(
        reply.body["detail"]
            .as_str()
            .expect("detail")
            .contains("/v1/nothing-here")
    );
    api.call(Method::GET, "/", None, None)
        .await
        .assert_problem(404);

    let reply = api
        .call(Method::PUT, "/v1/endpoints", Some(&key), None)
        .await;
    reply.assert_problem(405);
    assert_eq!(reply.kind(), "method-not-allowed");
    let allow = reply.headers.get(header::ALLOW).expect("allow header");
    assert!(allow.to_str().expect("ascii").contains("POST"));
}

#[tokio::test]
async fn lists_are_paged_with_limit_and_after() {
    let api = Api::new();
    let key = api.key("acme");
    let mut endpoints = Vec::new();
    for i in 0..5 {
        let e = api
            .register(
                &key,
                json!({"url": format!("{HOOK}/{i}"), "event_types": ["state_change"]}),
            )
            .await;
        endpoints.push(e["id"].as_str().expect("id").to_owned());
    }
    let mut seen = Vec::new();
    let mut uri = "/v1/endpoints?limit=2".to_owned();
    loop {
        let page = api.get(&uri, &key).await;
        assert!(page.ids().len() <= 2);
        seen.extend(page.ids());
        match page.body["next_after"].as_str() {
            Some(after) => uri = format!("/v1/endpoints?limit=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, endpoints, "oldest first, each once");
    let exact = api.get("/v1/endpoints?limit=5", &key).await;
    assert_eq!(exact.ids().len(), 5);
    assert_eq!(exact.body["next_after"], Value::Null);

    let mut deployments = Vec::new();
    for i in 0..3 {
        deployments.push(api.deploy(&key, &format!("svc-{i}")).await);
    }
    deployments.reverse();
    let first = api.get("/v1/deployments?limit=2", &key).await;
    assert_eq!(first.ids(), deployments[..2]);
    let after = first.body["next_after"].as_str().expect("more").to_owned();
    assert_eq!(after, deployments[1]);
    let second = api
        .get(&format!("/v1/deployments?limit=2&after={after}"), &key)
        .await;
    assert_eq!(second.ids(), deployments[2..]);
    assert_eq!(second.body["next_after"], Value::Null);

    // Three deployments, each queued to every endpoint: 15 deliveries, newest first.
    let mut all = Vec::new();
    let mut uri = "/v1/deliveries?limit=4".to_owned();
    loop {
        let page = api.get(&uri, &key).await;
        all.extend(page.ids());
        match page.body["next_after"].as_str() {
            Some(after) => uri = format!("/v1/deliveries?limit=4&after={after}"),
            None => break,
        }
    }
    assert_eq!(all.len(), 15);
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(all, sorted);
}

#[tokio::test]
async fn deliveries_are_filtered_by_status_and_endpoint() {
    let api = Api::new();
    let key = api.key("acme");
    let all_events = api
        .register(&key, json!({"url": HOOK, "event_types": ["state_change"]}))
        .await;
    let all_events = all_events["id"].as_str().expect("id").to_owned();
    let only_failures = api
        .register(
            &key,
            json!({"url": format!("{HOOK}/failures"), "event_types": ["state_change"], "states": ["failed"]}),
        )
        .await;
    let only_failures = only_failures["id"].as_str().expect("id").to_owned();

    let id = api.deploy(&key, "checkout").await;
    let pending = api.get("/v1/deliveries?status=pending", &key).await;
    assert_eq!(pending.ids().len(), 1, "{}", pending.body);
    let first = &pending.body["data"][0];
    assert_eq!(first["endpoint_id"], all_events.as_str());
    assert_eq!(first["event_type"], "state_change");
    assert_eq!(first["attempt_count"], 0);
    let payload: Value = serde_json::from_str(first["body"].as_str().expect("body")).expect("json");
    assert_eq!(payload["data"]["deployment_id"], id.as_str());
    assert_eq!(
        payload["data"]["links"]["logs"],
        format!("https://api.test/v1/deployments/{id}/logs")
    );

    let sent = api.state.webhooks.run_due(&Accepting, 100).expect("run");
    assert_eq!(sent, 1);
    let delivered = api.get("/v1/deliveries?status=delivered", &key).await;
    assert_eq!(delivered.ids(), pending.ids());
    assert!(
        api.get("/v1/deliveries?status=pending", &key)
            .await
            .ids()
            .is_empty()
    );

    let delivery = &pending.ids()[0];
    let detail = api.get(&format!("/v1/deliveries/{delivery}"), &key).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.body["status"], "delivered");
    assert_eq!(detail.body["next_attempt_at"], Value::Null);
    let attempts = detail.body["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["error"], Value::Null);
    assert!(attempts[0]["duration_ms"].is_u64());
    let listed = api
        .get(&format!("/v1/deliveries/{delivery}/attempts"), &key)
        .await;
    assert_eq!(listed.body["data"], detail.body["attempts"]);

    let again = api
        .call(
            Method::POST,
            &format!("/v1/deliveries/{delivery}/redeliver"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["status"], "pending");
    assert_eq!(again.body["id"], delivery.as_str());

    api.post(
        &format!("/v1/deployments/{id}/fail"),
        &key,
        json!({"reason": "boom"}),
    )
    .await;
    let to_failures = api
        .get(&format!("/v1/deliveries?endpoint_id={only_failures}"), &key)
        .await;
    assert_eq!(to_failures.ids().len(), 1);
    let all = api
        .get(&format!("/v1/deliveries?endpoint_id={all_events}"), &key)
        .await;
    assert_eq!(all.ids().len(), 2);
    assert_eq!(
        api.get("/v1/deliveries?status=pending&limit=500", &key)
            .await
            .ids()
            .len(),
        3
    );
}

#[test]
fn the_committed_openapi_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == api::openapi_json(),
        "docs/openapi.json is stale; regenerate it with \
         `cargo run -p omnicloud-runtime --bin omnicloud -- openapi > docs/openapi.json`"
    );
}

#[test]
fn the_document_describes_every_route_and_problem() {
    let doc: Value = serde_json::from_str(&api::openapi_json()).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut operation_ids = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("item") {
            operation_ids.push(op["operationId"].as_str().expect("operationId").to_owned());
            let responses = op["responses"].as_object().expect("responses");
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"].get(PROBLEM_JSON).is_some(),
                        "{method} {path} {status} is not documented as a problem"
                    );
                }
            }
            if path.starts_with("/v1/") {
                assert!(responses.contains_key("401"), "{method} {path}");
                assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path}");
            }
        }
    }
    let count = operation_ids.len();
    operation_ids.sort();
    operation_ids.dedup();
    assert_eq!(operation_ids.len(), count, "operation ids are unique");
    assert_eq!(count, 21);
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["DeliveryStatus"]["enum"],
        json!(["pending", "delivered", "failed", "exhausted"])
    );
    assert_eq!(
        schemas["DeploymentState"]["enum"],
        json!([
            "queued",
            "in_progress",
            "completed",
            "failed",
            "rolled_back"
        ])
    );
    assert_eq!(
        schemas["EventType"]["enum"],
        json!(["state_change", "health_check_failed", "rollback_initiated"])
    );
    assert_eq!(
        schemas["CreateEndpoint"]["properties"]["rate_limit_per_minute"]["maximum"],
        omnicloud_core::webhook::MAX_RATE_PER_MINUTE
    );
    assert_eq!(
        schemas["CreateEndpoint"]["properties"]["max_attempts"]["maximum"],
        omnicloud_core::webhook::MAX_ATTEMPTS_LIMIT
    );
}
