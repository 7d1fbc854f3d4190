//! `NetworkProbe`: the real [`HealthProbe`], running HTTP(S) and TCP checks concurrently on
//! its own small tokio runtime.
//!
//! Route 53's rules: an HTTP check passes when the target answers with a 2xx or 3xx status
//! (redirects are not followed) within the check's timeout, which covers connecting, sending
//! and the status line; a TCP check passes when a connection is accepted within the timeout.
//! Connections are reused between rounds where the server allows it. The probe never panics
//! and never waits much past the largest timeout of a round.

use std::time::{Duration, Instant};

use omnicloud_core::failover::{HealthCheck, HealthProbe, ProbeOutcome, ProbeTarget};

/// Runs health checks over the network.
#[derive(Debug)]
pub struct NetworkProbe {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl NetworkProbe {
    /// A probe with its own runtime and HTTP client (system trust roots for HTTPS).
    pub fn new() -> std::io::Result<Self> {
        // Several clients may race to install the process-wide TLS provider; any winner is
        // the same provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "omnicloud-health-check/",
                env!("CARGO_PKG_VERSION")
            ))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self { runtime, client })
    }
}

impl HealthProbe for NetworkProbe {
    fn run(&self, checks: &[HealthCheck]) -> Vec<ProbeOutcome> {
        self.runtime.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, check) in checks.iter().enumerate() {
                let (target, timeout) = (check.target.clone(), check.timeout);
                let client = self.client.clone();
                set.spawn(async move { (i, probe_one(&client, &target, timeout).await) });
            }
            let mut outcomes: Vec<Option<ProbeOutcome>> = vec![None; checks.len()];
            while let Some(joined) = set.join_next().await {
                if let Ok((i, outcome)) = joined {
                    outcomes[i] = Some(outcome);
                }
            }
            outcomes
                .into_iter()
                .map(|o| {
                    o.unwrap_or(ProbeOutcome {
                        healthy: false,
                        error: Some("the probe task failed".to_owned()),
                        elapsed: Duration::ZERO,
                    })
                })
                .collect()
        })
    }
}

async fn probe_one(
    client: &reqwest::Client,
    target: &ProbeTarget,
    timeout: Duration,
) -> ProbeOutcome {
    let started = Instant::now();
    let verdict = tokio::time::timeout(timeout, attempt(client, target)).await;
    let error = match verdict {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(format!("{target}: no answer within {timeout:?}")),
    };
    ProbeOutcome {
        healthy: error.is_none(),
        error,
        elapsed: started.elapsed(),
    }
}

async fn attempt(client: &reqwest::Client, target: &ProbeTarget) -> Result<(), String> {
    match target {
        ProbeTarget::Http { url } => {
            let response = client
                .get(url)
                .send()
                .await
                .map_err(|e| format!("{target}: {}", crate::error_chain(&e)))?;
            let status = response.status();
            if status.is_success() || status.is_redirection() {
                Ok(())
            } else {
                Err(format!("{target}: HTTP {}", status.as_u16()))
            }
        }
        ProbeTarget::Tcp { host, port } => tokio::net::TcpStream::connect((host.as_str(), *port))
            .await
            .map(drop)
            .map_err(|e| format!("{target}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use omnicloud_core::ids::TenantId;

    use super::*;

    fn check(target: ProbeTarget, timeout_ms: u64) -> HealthCheck {
        HealthCheck::new(
            TenantId::new("acme").expect("tenant"),
            "eu-west-1",
            "eu-west-1a",
            None,
            target,
            Duration::from_millis(timeout_ms),
        )
        .expect("check")
    }

    /// A one-thread HTTP server answering each request with `status`, `n` times.
    fn http_server(status: u16, n: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming().take(n) {
                let mut stream = stream.expect("accept");
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        format!("http://{addr}/health")
    }

    fn closed_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[test]
    fn http_2xx_and_3xx_pass_and_5xx_fails() {
        let probe = NetworkProbe::new().expect("probe");
        let checks = [
            check(
                ProbeTarget::Http {
                    url: http_server(200, 1),
                },
                2000,
            ),
            check(
                ProbeTarget::Http {
                    url: http_server(302, 1),
                },
                2000,
            ),
            check(
                ProbeTarget::Http {
                    url: http_server(503, 1),
                },
                2000,
            ),
        ];
        let outcomes = probe.run(&checks);
        assert_eq!(
            outcomes.iter().map(|o| o.healthy).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert!(
            outcomes[2]
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("HTTP 503")
        );
    }

    #[test]
    fn tcp_checks_see_open_and_closed_ports() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = listener.local_addr().expect("addr").port();
        let probe = NetworkProbe::new().expect("probe");
        let tcp = |port| ProbeTarget::Tcp {
            host: "127.0.0.1".to_owned(),
            port,
        };
        let outcomes = probe.run(&[check(tcp(open), 1000), check(tcp(closed_port()), 1000)]);
        assert!(outcomes[0].healthy);
        assert!(!outcomes[1].healthy);
        assert!(
            outcomes[1]
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("tcp 127.0.0.1")
        );
    }

    #[test]
    fn a_silent_server_fails_at_the_timeout_and_checks_run_concurrently() {
        // Accepts connections but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let probe = NetworkProbe::new().expect("probe");
        let checks: Vec<_> = (0..5)
            .map(|_| check(ProbeTarget::Http { url: url.clone() }, 300))
            .collect();
        let started = Instant::now();
        let outcomes = probe.run(&checks);
        let took = started.elapsed();
        assert!(outcomes.iter().all(|o| !o.healthy));
        assert!(
            outcomes[0]
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("no answer")
        );
        // Five 300 ms timeouts in parallel, not in a row.
        assert!(took < Duration::from_millis(1200), "{took:?}");
        drop(listener);
    }

    #[test]
    fn a_refused_connection_fails_fast() {
        let probe = NetworkProbe::new().expect("probe");
        let url = format!("http://127.0.0.1:{}/", closed_port());
        let outcomes = probe.run(&[check(ProbeTarget::Http { url }, 5000)]);
        assert!(!outcomes[0].healthy);
        assert!(outcomes[0].elapsed < Duration::from_secs(2));
    }
}
