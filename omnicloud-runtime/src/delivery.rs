//! `WebhookClient` and `HttpTransport`: POSTing signed webhook requests with reqwest, with a
//! timeout, connection reuse, no redirects, and the SSRF guard applied at connect time: every
//! address a host name resolves to is checked (a name that resolves to any refused address is
//! refused), and IP-literal URLs are checked before sending.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use omnicloud_core::webhook::{
    AttemptOutcome, Host, UrlGuard, WebhookRequest, WebhookTransport, WebhookUrl, parse_retry_after,
};

/// How long one delivery may take, connecting included (Svix uses 15 s).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Resolves names with the system resolver, then refuses any address the guard refuses.
struct GuardedResolver {
    guard: Arc<UrlGuard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                guard.check_addr(addr.ip())?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The async HTTP(S) client that sends webhook requests: timeouts, connection reuse, no
/// redirects, no proxy, and the guard at connect time. The dispatcher uses it on its own
/// runtime; [`HttpTransport`] wraps it for synchronous callers.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    guard: Arc<UrlGuard>,
}

impl WebhookClient {
    /// A client checking destinations with `guard`, each delivery bounded by `timeout`.
    pub fn new(guard: UrlGuard, timeout: Duration) -> std::io::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("omnicloud-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(GuardedResolver {
                guard: guard.clone(),
            })
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self { client, guard })
    }

    /// Sends one request; never fails: a refused address, a connection error or a timeout
    /// is reported in the outcome, with the time taken.
    pub async fn send(&self, request: &WebhookRequest) -> AttemptOutcome {
        let started = Instant::now();
        let mut outcome = self
            .post(request)
            .await
            .unwrap_or_else(|error| AttemptOutcome {
                error: Some(error),
                ..AttemptOutcome::default()
            });
        outcome.duration = started.elapsed();
        outcome
    }

    async fn post(&self, request: &WebhookRequest) -> Result<AttemptOutcome, String> {
        let url = WebhookUrl::parse(&request.url).map_err(|e| e.to_string())?;
        if let Host::Ip(ip) = url.host() {
            self.guard.check_addr(*ip).map_err(|e| e.to_string())?;
        }
        let mut builder = self.client.post(&request.url).body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let response = builder.send().await.map_err(|e| crate::error_chain(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        // Read (and discard) the body so the connection can be reused.
        let _ = response.bytes().await;
        Ok(AttemptOutcome {
            status_code: Some(status),
            error: None,
            duration: Duration::ZERO,
            retry_after,
        })
    }
}

/// Sends webhook requests over HTTP(S), one at a time, on its own small runtime (the
/// synchronous [`WebhookTransport`] that `run_due` uses).
#[derive(Debug)]
pub struct HttpTransport {
    runtime: tokio::runtime::Runtime,
    client: WebhookClient,
}

impl HttpTransport {
    /// A transport checking destinations with `guard`, each delivery bounded by `timeout`.
    pub fn new(guard: UrlGuard, timeout: Duration) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            runtime,
            client: WebhookClient::new(guard, timeout)?,
        })
    }
}

impl WebhookTransport for HttpTransport {
    fn send(&self, request: &WebhookRequest) -> AttemptOutcome {
        self.runtime.block_on(self.client.send(request))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use omnicloud_core::webhook::IpNetwork;

    use super::*;

    fn request(url: String) -> WebhookRequest {
        WebhookRequest {
            delivery_id: "dlv_1".into(),
            url,
            headers: vec![("webhook-id".into(), "msg_1".into())],
            body: r#"{"ok":true}"#.into(),
        }
    }

    /// Answers one request with `head`, returning what it received.
    fn receiver(head: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buf = vec![0u8; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            let _ = stream.write_all(head.as_bytes());
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (url, handle)
    }

    fn loopback() -> UrlGuard {
        UrlGuard::new(vec![IpNetwork::parse("127.0.0.1/32").expect("net")])
    }

    #[test]
    fn posts_the_body_and_headers_and_reads_retry_after() {
        let (url, handle) = receiver(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
        let t = HttpTransport::new(loopback(), Duration::from_secs(2)).expect("transport");
        let outcome = t.send(&request(url));
        let seen = handle.join().expect("receiver");
        assert_eq!(outcome.status_code, Some(429));
        assert_eq!(outcome.retry_after, Some(Duration::from_secs(7)));
        assert!(seen.starts_with("POST /hooks HTTP/1.1"), "{seen}");
        assert!(seen.contains("webhook-id: msg_1"));
        assert!(seen.ends_with(r#"{"ok":true}"#));
    }

    #[test]
    fn a_refused_destination_is_never_contacted() {
        let (url, _handle) = receiver("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let t = HttpTransport::new(UrlGuard::default(), Duration::from_secs(2)).expect("transport");
        let outcome = t.send(&request(url));
        assert_eq!(outcome.status_code, None);
        assert!(outcome.error.unwrap_or_default().contains("loopback"));
    }

    #[test]
    fn a_silent_receiver_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
        let t = HttpTransport::new(loopback(), Duration::from_millis(300)).expect("transport");
        let outcome = t.send(&request(url));
        assert_eq!(outcome.status_code, None);
        assert!(outcome.duration < Duration::from_secs(2));
        assert!(outcome.error.is_some());
        drop(listener);
    }
}
