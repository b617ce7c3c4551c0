//! When a component is ready to serve: an HTTP probe, redis's `PING`, or Envoy listing the
//! listeners Istio's generator gave it. A component that exits because its port was taken says
//! so, so that it can be started again on another.

use std::time::{Duration, Instant};

use super::LocalStack;
use crate::components::{ComponentError, Supervised};
use crate::redact::Secret;

impl LocalStack {
    /// oauth2-proxy's deep readiness check: it answers 200 only while it can use its session
    /// store (`/ping` answers whatever the store's state).
    pub(super) fn oauth2_proxy_ready(&self) -> Probe {
        Probe::Http(format!(
            "http://127.0.0.1:{}/ready",
            self.ports.oauth2_proxy
        ))
    }
}

/// How a component shows it is ready to serve.
pub(super) enum Probe {
    /// A GET answered 2xx.
    Http(String),
    /// redis answers `PING` after `AUTH`.
    Redis { port: u16, password: Secret },
}

impl Probe {
    async fn passes(&self, client: &reqwest::Client) -> bool {
        match self {
            Probe::Http(url) => client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Probe::Redis { port, password } => redis_ping(*port, password).await.is_ok(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Probe::Http(url) => url.clone(),
            Probe::Redis { port, .. } => format!("redis PING on 127.0.0.1:{port}"),
        }
    }
}

/// `AUTH` then `PING` on redis's port; Ok once it answers `+PONG`.
async fn redis_ping(port: u16, password: &Secret) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).await?;
    let request = format!("AUTH {}\r\nPING\r\n", password.expose());
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
        if answer.ends_with(b"+PONG\r\n") {
            return Ok(());
        }
    }
    Err(std::io::Error::other(format!(
        "redis answered {:?}",
        String::from_utf8_lossy(&answer)
    )))
}

/// Polls `probe` until it answers 2xx, failing early (with the log tail) if the process exits;
/// an exit because a port was taken is [`ComponentError::AddressInUse`], so it can be retried.
pub(super) async fn wait_ready(
    client: &reqwest::Client,
    process: &Supervised,
    probe: &Probe,
    timeout: Duration,
) -> Result<(), ComponentError> {
    let deadline = Instant::now() + timeout;
    let mut pause = ReadinessPause::default();
    loop {
        if let Some(status) = process.exited() {
            if mentions_address_in_use(&process.log_since_start()) {
                return Err(ComponentError::AddressInUse {
                    component: process.name(),
                    status: status.to_string(),
                    log: process.log_path().display().to_string(),
                    tail: process.log_tail(25),
                });
            }
            return Err(ComponentError::Exited {
                component: process.name(),
                status: status.to_string(),
                log: process.log_path().display().to_string(),
                tail: process.log_tail(25),
            });
        }
        if probe.passes(client).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ComponentError::NotReady {
                component: process.name(),
                seconds: timeout.as_secs(),
                probe: probe.describe(),
                log: process.log_path().display().to_string(),
                tail: process.log_tail(25),
            });
        }
        pause.sleep().await;
    }
}

/// The pause between readiness probes: short at first, since most components are ready within
/// tens of milliseconds (a fixed 200 ms made every restart cost at least that), then longer for
/// the slow starters (Keycloak) so as not to busy them.
struct ReadinessPause(Duration);

impl Default for ReadinessPause {
    fn default() -> Self {
        Self(Duration::from_millis(10))
    }
}

impl ReadinessPause {
    const LONGEST: Duration = Duration::from_millis(200);

    async fn sleep(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Self::LONGEST);
    }
}

/// Waits until the Envoy behind `admin_port` lists an active listener on each of `ports`; a
/// listener it could not bind (its log says so) is [`ComponentError::AddressInUse`].
pub(super) async fn wait_listening(
    client: &reqwest::Client,
    process: &Supervised,
    admin_port: u16,
    ports: &[u16],
    timeout: Duration,
) -> Result<(), ComponentError> {
    if ports.is_empty() {
        return Ok(());
    }
    let probe = format!("http://127.0.0.1:{admin_port}/listeners?format=json");
    let deadline = Instant::now() + timeout;
    let mut pause = ReadinessPause::default();
    loop {
        if mentions_address_in_use(&process.log_since_start()) {
            return Err(ComponentError::AddressInUse {
                component: process.name(),
                status: format!("could not listen on one of the ports {ports:?}"),
                log: process.log_path().display().to_string(),
                tail: process.log_tail(25),
            });
        }
        if let Ok(response) = client.get(&probe).send().await
            && let Ok(listing) = response.json::<serde_json::Value>().await
        {
            let listening: Vec<u64> = listing["listener_statuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
                .collect();
            if ports.iter().all(|p| listening.contains(&u64::from(*p))) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(ComponentError::NotReady {
                component: process.name(),
                seconds: timeout.as_secs(),
                probe: format!("listeners on ports {ports:?} in {probe} (from Istio's config)"),
                log: process.log_path().display().to_string(),
                tail: process.log_tail(25),
            });
        }
        pause.sleep().await;
    }
}

/// Go ("bind: address already in use"), Envoy ("Address already in use") and Quarkus
/// ("Port(s) already bound: …: Address already in use") all say it this way.
fn mentions_address_in_use(log: &str) -> bool {
    log.to_ascii_lowercase().contains("address already in use")
}
