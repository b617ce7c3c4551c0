//! Requests as the scenario's browser or as one of its callers (the in-mesh workload, a pod of a
//! user's cluster, a workload with a bad certificate): `open`, `sign_in` and `request`.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use url::Url;

use super::{Engine, ScenarioState, StepOutput};
use crate::browser::curl_caller::CurlCaller;
use crate::browser::{Body, Browser, BrowserError, Page};
use crate::scenario::{Bearer, Caller, Credentials};

impl Engine {
    pub(super) async fn open(
        &self,
        url: &str,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let page = state
            .browser
            .navigate(Method::GET, self.url(url)?, Body::Empty, &HeaderMap::new())
            .await
            .map_err(|e| e.to_string())?;
        state.last = Some(page);
        Ok(StepOutput::default())
    }

    pub(super) async fn sign_in(
        &self,
        credentials: Credentials,
        via: Option<&str>,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let page = state
            .last
            .take()
            .ok_or("nothing to sign in on: open the app first")?;
        let (username, password) = self.credentials(credentials)?;
        let page = state
            .browser
            .sign_in_via(page, via, &username, &password)
            .await
            .map_err(|e| e.to_string())?;
        state.last = Some(page);
        Ok(StepOutput::default())
    }

    /// A caller whose connection is refused leaves the reason instead of a page: the
    /// expectation that follows judges the refusal.
    pub(super) async fn request(
        &self,
        url: &str,
        bearer: Option<Bearer>,
        caller: Option<Caller>,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let mut headers = HeaderMap::new();
        if let Some(bearer) = bearer {
            let token = self
                .bearer_token(bearer, state, &tokio::sync::OnceCell::new())
                .await?;
            let value =
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
            headers.insert(AUTHORIZATION, value);
        }
        let url = self.url(url)?;
        state.last = None;
        state.rejected = None;
        if let Some(curl) = self.curl_caller(caller.unwrap_or(Caller::OutsideMesh), &url) {
            match curl.send(&Method::GET, &url, &headers).await {
                Ok(page) => state.last = Some(page),
                Err(BrowserError::NoResponse { detail, .. }) => {
                    state.rejected = Some(detail);
                }
                Err(error) => return Err(error.to_string()),
            }
            return Ok(StepOutput::default());
        }
        let Some(caller) = caller else {
            let page = state
                .browser
                .send(Method::GET, url, &Body::Empty, &headers)
                .await
                .map_err(|e| e.to_string())?;
            state.last = Some(page);
            return Ok(StepOutput::default());
        };
        let through = self.workload_proxy(caller);
        let (client, url) = self.caller(caller, state, url)?;
        ensure_listening(&url, through).await?;
        match client.send(Method::GET, url, &Body::Empty, &headers).await {
            Ok(page) => state.last = Some(page),
            Err(BrowserError::NoResponse { detail, .. }) => state.rejected = Some(detail),
            Err(error) => return Err(error.to_string()),
        }
        Ok(StepOutput::default())
    }

    /// Where `caller`'s request to `url` is made in a deployment's mesh: the mesh workload's
    /// always, the one outside the mesh for the service's in-mesh address only (the gateway's
    /// public URLs are reached from here).
    fn curl_caller(&self, caller: Caller, url: &Url) -> Option<std::sync::Arc<CurlCaller>> {
        let callers = self.endpoints.mesh_callers.as_ref()?;
        if caller == Caller::OutsideMesh && url.host_str() != callers.service.host_str() {
            return None;
        }
        self.curl_callers
            .iter()
            .find(|(c, _)| *c == caller)
            .map(|(_, curl)| curl.clone())
    }

    /// Where `caller`'s requests go when it has a sidecar of its own (sleep's, configured by
    /// Istio): that sidecar, for the service's name.
    fn workload_proxy(&self, caller: Caller) -> Option<SocketAddr> {
        match caller {
            Caller::MeshWorkload => self.endpoints.mesh.as_ref()?.workload_proxy,
            _ => None,
        }
    }

    /// The caller's client, created on first use, and the URL it connects to: an in-mesh
    /// caller's sidecar turns `http://` into mTLS.
    pub(super) fn caller<'s>(
        &self,
        caller: Caller,
        state: &'s mut ScenarioState,
        mut url: Url,
    ) -> Result<(&'s mut Browser, Url), String> {
        let workload_proxy = self.workload_proxy(caller).and_then(|proxy| {
            let mesh = self.endpoints.mesh.as_ref()?;
            Some((proxy, mesh.service_host.clone()))
        });
        match (&workload_proxy, caller) {
            // sleep's own sidecar takes the plain request for the service's name and
            // originates mTLS as Istio configured it.
            (Some((_, service_host)), _) if url.scheme() == "http" => {
                url.set_host(Some(service_host))
                    .map_err(|e| format!("cannot address {service_host}: {e}"))?;
            }
            // The harness originates mTLS itself for a plain `http://` address.
            (_, caller) if caller != Caller::OutsideMesh && url.scheme() == "http" => {
                url.set_scheme("https")
                    .map_err(|()| format!("cannot upgrade {url} to mTLS"))?;
            }
            _ => {}
        }
        let index = match state.callers.iter().position(|(c, _)| *c == caller) {
            Some(index) => index,
            None => {
                let browser = match caller {
                    Caller::OutsideMesh => {
                        Browser::new(self.endpoints.ca_pem.as_deref(), self.redactor.clone())
                    }
                    _ if workload_proxy.is_some() => {
                        let (proxy, service_host) = workload_proxy.clone().expect("checked");
                        Browser::through_sidecar(&service_host, proxy, self.redactor.clone())
                    }
                    mesh_caller => {
                        let mesh = self.endpoints.mesh.as_ref().ok_or(
                            "this environment has no mesh the harness can join as a workload \
                             (no mesh CA or workload certificate); run with --env local",
                        )?;
                        let (cert, key) = match mesh_caller {
                            Caller::UntrustedCaWorkload => {
                                (&mesh.untrusted.cert_pem, &mesh.untrusted.key_pem)
                            }
                            Caller::ExpiredCertificateWorkload => {
                                (&mesh.expired.cert_pem, &mesh.expired.key_pem)
                            }
                            Caller::ForeignTrustDomainWorkload => (
                                &mesh.foreign_trust_domain.cert_pem,
                                &mesh.foreign_trust_domain.key_pem,
                            ),
                            _ => (&mesh.workload_cert_pem, &mesh.workload_key_pem),
                        };
                        Browser::with_client_certificate(
                            &mesh.ca_pem,
                            cert,
                            key,
                            self.redactor.clone(),
                        )
                    }
                }
                .map_err(|e| e.to_string())?;
                state.callers.push((caller, browser));
                state.callers.len() - 1
            }
        };
        Ok((&mut state.callers[index].1, url))
    }

    /// One request without cookies: by `caller`, else by a browser outside the mesh.
    pub(super) async fn send_as(
        &self,
        caller: Option<Caller>,
        state: &mut ScenarioState,
        url: Url,
        headers: &HeaderMap,
    ) -> Result<Page, String> {
        let caller = caller.unwrap_or(Caller::OutsideMesh);
        if let Some(curl) = self.curl_caller(caller, &url) {
            return curl
                .send(&Method::GET, &url, headers)
                .await
                .map_err(|e| e.to_string());
        }
        let (client, url) = self.caller(caller, state, url)?;
        client
            .send(Method::GET, url, &Body::Empty, headers)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A rejected connection is a finding only if something listens: a port where nothing does
/// is a broken environment, and must not pass as "rejected".
async fn ensure_listening(url: &Url, through: Option<SocketAddr>) -> Result<(), String> {
    let address = match through {
        Some(sidecar) => sidecar,
        None => url
            .socket_addrs(|| None)
            .ok()
            .and_then(|a| a.into_iter().next())
            .ok_or_else(|| format!("{url} has no resolvable address"))?,
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!(
            "nothing accepts connections at {address} ({error}): the workload or its sidecar is not running"
        )),
        Err(_) => Err(format!("connecting to {address} timed out")),
    }
}
