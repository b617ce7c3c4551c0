//! The hot-path HTTP/1.1 client. Each goose user owns one keep-alive connection per origin,
//! as a browser tab would, and sends its requests on it directly (hyper's `conn::http1`): no
//! shared pool, no redirect or cookie layers, no per-request URL parsing or header maps
//! rebuilt. The general-purpose client cost about half of the generator's CPU per request (see
//! docs/load.md); this is the part of the generator that runs 10^5 times a second.
//!
//! TLS trusts the platform roots plus the environment's CA, like [`Browser`](crate::browser::Browser).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderName, HeaderValue, LOCATION, USER_AGENT};

const LOAD_TAG: HeaderName = HeaderName::from_static(crate::env::istio::LOAD_TAG_HEADER);
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

/// A connection's sending half (hyper drives the connection itself in a task of its own).
type Sender = SendRequest<Empty<Bytes>>;

/// Why a hot-path request did not produce a response; the names are the report's error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("timeout")]
    Timeout,
    #[error("connection failed")]
    Connect,
    #[error("TLS handshake failed")]
    Tls,
    #[error("request failed")]
    Request,
    #[error("response body failed")]
    Body,
}

/// What the transactions need from a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    /// A redirect towards oauth2-proxy's sign-in (`/oauth2/...`): the session was not accepted.
    pub redirects_to_sign_in: bool,
}

/// A request target prepared once per phase: where to connect and what to send.
#[derive(Debug, Clone)]
pub struct Target {
    origin: Arc<Origin>,
    /// Origin-form request target (path and query).
    path: Uri,
}

#[derive(Debug, PartialEq, Eq)]
struct Origin {
    host: String,
    port: u16,
    /// `Some` for https.
    server_name: Option<ServerName<'static>>,
    /// The Host header.
    authority: HeaderValue,
}

impl Target {
    pub fn new(url: &Url) -> Result<Self, String> {
        let (host, port) = crate::browser::raw::host_and_port(url)?;
        let server_name = match url.scheme() {
            "https" => Some(
                ServerName::try_from(host.clone())
                    .map_err(|e| format!("{url}: not a TLS server name: {e}"))?,
            ),
            "http" => None,
            other => return Err(format!("{url}: scheme {other} is not http or https")),
        };
        let authority = HeaderValue::from_str(&crate::browser::raw::authority(url))
            .map_err(|e| format!("{url}: {e}"))?;
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let path = path
            .parse::<Uri>()
            .map_err(|e| format!("{url}: not a request target: {e}"))?;
        Ok(Self {
            origin: Arc::new(Origin {
                host,
                port,
                server_name,
                authority,
            }),
            path,
        })
    }
}

/// How a user's connections are opened; shared by every user of a run.
#[derive(Clone)]
pub struct Client {
    tls: TlsConnector,
    user_agent: HeaderValue,
    timeout: Duration,
}

impl Client {
    /// A client trusting the platform roots plus every certificate in `extra_ca_pem`.
    pub fn new(extra_ca_pem: Option<&str>, timeout: Duration) -> Result<Self, String> {
        let config = crate::browser::raw::tls_client_config(extra_ca_pem)?;
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            user_agent: HeaderValue::from_static(concat!(
                "meshauth-load/",
                env!("CARGO_PKG_VERSION")
            )),
            timeout,
        })
    }

    /// Sends `GET target` on `connections`' connection to the target's origin (opening one if
    /// there is none or it was closed) and reads the body to its end, within the timeout.
    /// A failed connection is dropped, so the next request opens a fresh one. `tag` names the
    /// path in the proxies' access logs (`LOAD_TAG_HEADER`).
    pub async fn get(
        &self,
        connections: &mut Connections,
        target: &Target,
        tag: HeaderValue,
        header: Option<(&HeaderName, &HeaderValue)>,
    ) -> Result<Response, RequestError> {
        let slot = connections.slot(&target.origin);
        let outcome =
            tokio::time::timeout(self.timeout, self.exchange(slot, target, tag, header)).await;
        let outcome = outcome.unwrap_or(Err(RequestError::Timeout));
        if outcome.is_err() {
            *slot = None;
        }
        outcome
    }

    async fn exchange(
        &self,
        slot: &mut Option<Sender>,
        target: &Target,
        tag: HeaderValue,
        header: Option<(&HeaderName, &HeaderValue)>,
    ) -> Result<Response, RequestError> {
        let reusable = match slot.as_mut() {
            Some(sender) if !sender.is_closed() => sender.ready().await.is_ok(),
            _ => false,
        };
        if !reusable {
            *slot = Some(self.connect(&target.origin).await?);
        }
        let sender = slot.as_mut().ok_or(RequestError::Connect)?;
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(target.path.clone())
            .header(HOST, target.origin.authority.clone())
            .header(USER_AGENT, self.user_agent.clone())
            .header(LOAD_TAG, tag);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|_| RequestError::Request)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| RequestError::Request)?;
        let status = response.status();
        let redirects_to_sign_in = status.is_redirection()
            && response
                .headers()
                .get(LOCATION)
                .is_some_and(|l| l.as_bytes().windows(7).any(|w| w == b"/oauth2"));
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|_| RequestError::Body)?;
        }
        Ok(Response {
            status,
            redirects_to_sign_in,
        })
    }

    async fn connect(&self, origin: &Origin) -> Result<Sender, RequestError> {
        let address: SocketAddr = tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(|_| RequestError::Connect)?
            .next()
            .ok_or(RequestError::Connect)?;
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|_| RequestError::Connect)?;
        tcp.set_nodelay(true).map_err(|_| RequestError::Connect)?;
        match &origin.server_name {
            Some(name) => {
                let tls = self
                    .tls
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|_| RequestError::Tls)?;
                handshake(TokioIo::new(tls)).await
            }
            None => handshake(TokioIo::new(tcp)).await,
        }
    }
}

async fn handshake<T>(io: T) -> Result<Sender, RequestError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io)
        .await
        .map_err(|_| RequestError::Connect)?;
    // The connection task ends when the sender is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A user's open connections, one per origin (a run has one or two origins).
#[derive(Default)]
pub struct Connections {
    open: Vec<(Arc<Origin>, Option<Sender>)>,
}

impl Connections {
    fn slot(&mut self, origin: &Arc<Origin>) -> &mut Option<Sender> {
        let index = match self
            .open
            .iter()
            .position(|(o, _)| Arc::ptr_eq(o, origin) || **o == **origin)
        {
            Some(index) => index,
            None => {
                self.open.push((Arc::clone(origin), None));
                self.open.len() - 1
            }
        };
        &mut self.open[index].1
    }
}

/// Goose clones a user's session data when it hands users out; a clone starts without
/// connections (a connection belongs to one user).
impl Clone for Connections {
    fn clone(&self) -> Self {
        Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_host_port_and_query() {
        let target =
            Target::new(&Url::parse("https://127.0.0.1:8443/baseline/status/200?x=1").unwrap())
                .unwrap();
        assert_eq!(target.origin.host, "127.0.0.1");
        assert_eq!(target.origin.port, 8443);
        assert_eq!(target.origin.authority, "127.0.0.1:8443");
        assert!(target.origin.server_name.is_some());
        assert_eq!(target.path, "/baseline/status/200?x=1");

        let plain = Target::new(&Url::parse("http://localhost/").unwrap()).unwrap();
        assert_eq!(plain.origin.port, 80);
        assert_eq!(plain.origin.authority, "localhost");
        assert!(plain.origin.server_name.is_none());

        let v6 = Target::new(&Url::parse("http://[::1]:9000/a").unwrap()).unwrap();
        assert_eq!(v6.origin.host, "::1");
        assert_eq!(v6.origin.authority, "[::1]:9000");
    }

    #[test]
    fn other_schemes_are_refused() {
        let error = Target::new(&Url::parse("ftp://127.0.0.1/x").unwrap()).unwrap_err();
        assert!(error.contains("not http or https"), "{error}");
    }

    #[test]
    fn a_connection_slot_per_origin() {
        let a = Target::new(&Url::parse("https://127.0.0.1:1/a").unwrap()).unwrap();
        let b = Target::new(&Url::parse("https://127.0.0.1:1/b").unwrap()).unwrap();
        let c = Target::new(&Url::parse("http://127.0.0.1:2/").unwrap()).unwrap();
        let mut connections = Connections::default();
        connections.slot(&a.origin);
        connections.slot(&b.origin);
        connections.slot(&c.origin);
        assert_eq!(connections.open.len(), 2);
    }
}
