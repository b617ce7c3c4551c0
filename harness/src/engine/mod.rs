//! Runs scenarios: executes each operation against an environment's endpoints and emits
//! [`RunEvent`]s. It judges outcomes but formats nothing.

mod bearer;
mod expect;
mod plan;
mod probe;
mod tamper;

pub use plan::{Plan, plan};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use url::Url;

use crate::browser::pod_exec::PodCaller;
use crate::browser::raw::RawClient;
use crate::browser::{Body, Browser, BrowserError, Page};
use crate::check::CheckResult;
use crate::control::StackControl;
use crate::env::Endpoints;
use crate::events::{EnvironmentInfo, EventSink, RunEvent, RunSummary, StepReport, Verdict};
use crate::oidc::{self, DecodedJwt};
use crate::redact::{Redactor, Secret};
use crate::scenario::{
    Bearer, BearerMatrix, Caller, Credentials, Scenario, Step, Suite, TokenSource, Variables,
};

/// Clock skew allowed when checking `exp` and `iat`.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Browser(#[from] BrowserError),
    #[error("could not build the probe client: {0}")]
    Probe(String),
}

pub struct Engine {
    endpoints: Endpoints,
    redactor: Redactor,
    vars: Variables,
    /// For IdP calls (discovery, JWKS, token grants): no cookies, same trust as the browser.
    http: reqwest::Client,
    /// For attack probes: requests exactly as written.
    raw: RawClient,
    /// In-cluster callers of a user's own deployment: `curl` by exec in the pods they named.
    pod_callers: Vec<(Caller, std::sync::Arc<PodCaller>)>,
}

/// How one scenario ended.
#[derive(Debug, Clone)]
pub struct ScenarioOutcome {
    pub verdict: Verdict,
    pub failures: Vec<String>,
    pub steps: Vec<StepReport>,
    /// Parts the scenario disrupted and could not bring back: the environment is not what
    /// later scenarios assume.
    pub unrestored: Vec<crate::control::Part>,
}

/// Per-scenario state: a fresh browser, the callers created on first use, the last response
/// (or why there was none), the last granted token.
struct ScenarioState {
    browser: Browser,
    /// Clients of the `as:` callers, created on first use.
    callers: Vec<(Caller, Browser)>,
    last: Option<Page>,
    /// The last request got no HTTP response (a caller's connection was rejected): why.
    rejected: Option<String>,
    granted: Option<Secret>,
    /// Parts a `disrupt` step took down and no `restore` brought back yet.
    disrupted: Vec<crate::control::Part>,
    /// Cookies a `keep_cookie` step copied, by the name it gave.
    kept_cookies: Vec<(String, Vec<cookie_store::Cookie<'static>>)>,
}

impl ScenarioState {
    fn take_hops(&mut self) -> Vec<crate::browser::Hop> {
        let mut hops = self.browser.take_hops();
        for (_, caller) in &mut self.callers {
            hops.extend(caller.take_hops());
        }
        hops
    }
}

/// What a step produced besides its checks.
#[derive(Default)]
struct StepOutput {
    checks: Vec<CheckResult>,
    jwt: Option<DecodedJwt>,
}

impl Engine {
    pub fn new(endpoints: Endpoints, redactor: Redactor) -> Result<Self, EngineError> {
        redactor.register(&endpoints.client_secret);
        redactor.register(&endpoints.user.password);
        if let Some(user) = &endpoints.second_user {
            redactor.register(&user.password);
        }
        if let Some(client) = &endpoints.other_client {
            redactor.register(&client.secret);
        }
        if let Some(key) = &endpoints.signing_key {
            redactor.register(&key.private_key_pem);
        }
        let vars = endpoints.variables();
        let http = crate::browser::http_client(endpoints.ca_pem.as_deref())?;
        let raw = RawClient::new(endpoints.ca_pem.as_deref(), Duration::from_secs(15))
            .map_err(EngineError::Probe)?;
        let pod_callers = endpoints
            .cluster
            .iter()
            .flat_map(|cluster| {
                let caller = |pod: &crate::endpoints::PodRef| {
                    std::sync::Arc::new(PodCaller::new(
                        cluster.access.clone(),
                        pod.clone(),
                        redactor.clone(),
                    ))
                };
                std::iter::once((Caller::MeshWorkload, caller(&cluster.mesh_workload))).chain(
                    cluster
                        .outside_mesh
                        .iter()
                        .map(move |pod| (Caller::OutsideMesh, caller(pod))),
                )
            })
            .collect();
        Ok(Self {
            endpoints,
            redactor,
            vars,
            http,
            raw,
            pod_callers,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// A browser as scenarios use it: confined to the deployment's hosts, the gateway taken for
    /// the public address it stands for (see browser::jar), the IdP known.
    fn scenario_browser(&self) -> Result<Browser, crate::browser::BrowserError> {
        let mut browser = Browser::new(self.endpoints.ca_pem.as_deref(), self.redactor.clone())?;
        browser.confine_to(self.endpoints.hosts());
        browser.treat_as_public(&self.endpoints.app);
        browser.set_identity_provider(self.endpoints.idp.clone());
        Ok(browser)
    }

    /// The deployment's session refresh interval and a second (the plan leaves scenarios that
    /// wait for it out where the environment does not say).
    fn session_refresh_wait(&self) -> Duration {
        self.endpoints.session_refresh.unwrap_or_default() + Duration::from_secs(1)
    }

    /// An engine for where `target` is reached now, when its profile moved it (the app on
    /// another listener, another IdP); `None` when this engine's endpoints still hold.
    pub fn for_target(&self, target: &dyn StackControl) -> Result<Option<Engine>, String> {
        let Some(now) = target.endpoints() else {
            return Ok(None);
        };
        let users = |e: &Endpoints| {
            [&e.second_user, &e.upstream_user].map(|u| u.as_ref().map(|u| u.username.clone()))
        };
        let same = now.app == self.endpoints.app
            && now.idp == self.endpoints.idp
            && now.issuer == self.endpoints.issuer
            && now.client_id == self.endpoints.client_id
            && users(&now) == users(&self.endpoints)
            && now.other_client.is_some() == self.endpoints.other_client.is_some()
            && now.signing_key.is_some() == self.endpoints.signing_key.is_some();
        if same {
            return Ok(None);
        }
        Engine::new(now, self.redactor.clone())
            .map(Some)
            .map_err(|e| format!("the environment moved and its new endpoints are unusable: {e}"))
    }

    /// Runs the planned scenarios in order, bringing `target` to each one's stack profile
    /// first, emitting the full event stream; the plan's left-out scenarios are listed in the
    /// environment.
    pub async fn run(
        &self,
        run_id: &str,
        mut environment: EnvironmentInfo,
        plan: &Plan<'_>,
        target: &mut dyn StackControl,
        sink: &mut dyn EventSink,
    ) -> RunSummary {
        let started = Instant::now();
        environment.left_out = plan.left_out.clone();
        sink.emit(RunEvent::RunStarted {
            run_id: run_id.to_string(),
            started_at: now_rfc3339(),
            environment,
            selected: plan.run.len(),
        });
        let mut summary = RunSummary {
            total: plan.run.len(),
            ..RunSummary::default()
        };
        let mut broken: Option<String> = None;
        for (suite, scenario) in &plan.run {
            let outcome = if let Some(reason) = &broken {
                unrunnable(suite, scenario, reason, sink)
            } else {
                match target.apply(&scenario.profile(suite)).await {
                    Ok(()) => match self.for_target(target) {
                        Ok(Some(moved)) => moved.run_scenario(suite, scenario, target, sink).await,
                        Ok(None) => self.run_scenario(suite, scenario, target, sink).await,
                        Err(reason) => unrunnable(suite, scenario, &reason, sink),
                    },
                    Err(reason) => unrunnable(suite, scenario, &reason, sink),
                }
            };
            if !outcome.unrestored.is_empty() {
                // A stopped auth service makes every later refusal meaningless.
                broken = Some(format!(
                    "not run: {} left the {} disrupted and restoring it failed",
                    crate::scenario::qualified_name(suite, scenario),
                    outcome
                        .unrestored
                        .iter()
                        .map(|p| p.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            match outcome.verdict {
                Verdict::Pass => summary.passed += 1,
                Verdict::Fail => summary.failed += 1,
            }
        }
        summary.duration_ms = started.elapsed().as_millis() as u64;
        sink.emit(RunEvent::RunFinished {
            summary: summary.clone(),
        });
        summary
    }

    /// Runs one scenario, stopping at the first failed step (later steps depend on it). Parts
    /// it disrupted through `control` are restored before it ends, whatever its outcome.
    pub async fn run_scenario(
        &self,
        suite: &Suite,
        scenario: &Scenario,
        control: &mut dyn StackControl,
        sink: &mut dyn EventSink,
    ) -> ScenarioOutcome {
        let started = Instant::now();
        sink.emit(RunEvent::ScenarioStarted {
            suite: suite.suite.clone(),
            scenario: scenario.id.clone(),
            title: scenario.title.clone(),
            file: suite.file.clone(),
        });
        let mut failures = Vec::new();
        let mut steps = Vec::new();
        let mut unrestored = Vec::new();
        match self.scenario_browser() {
            Ok(browser) => {
                let mut state = ScenarioState {
                    browser,
                    callers: Vec::new(),
                    last: None,
                    rejected: None,
                    granted: None,
                    disrupted: Vec::new(),
                    kept_cookies: Vec::new(),
                };
                for (index, step) in scenario.steps.iter().enumerate() {
                    let report = self.run_step(index + 1, step, &mut state, control).await;
                    let passed = report.passed;
                    if !passed {
                        let prefix = format!("step {} ({})", report.index, report.op);
                        failures.extend(report.error.iter().map(|e| format!("{prefix}: {e}")));
                        failures.extend(
                            report
                                .checks
                                .iter()
                                .filter(|c| !c.passed)
                                .map(|c| format!("{prefix}: {c}")),
                        );
                    }
                    steps.push(report.clone());
                    sink.emit(RunEvent::StepFinished {
                        suite: suite.suite.clone(),
                        scenario: scenario.id.clone(),
                        step: report,
                    });
                    if !passed {
                        break;
                    }
                }
                for part in std::mem::take(&mut state.disrupted) {
                    if let Err(error) = control.restore(part).await {
                        failures.push(format!(
                            "restoring the {} after the scenario: {error}",
                            part.name()
                        ));
                        unrestored.push(part);
                    }
                }
            }
            Err(error) => failures.push(format!("could not create the browser: {error}")),
        }
        let verdict = if failures.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        sink.emit(RunEvent::ScenarioFinished {
            suite: suite.suite.clone(),
            scenario: scenario.id.clone(),
            verdict,
            duration_ms: started.elapsed().as_millis() as u64,
            failures: failures.clone(),
        });
        ScenarioOutcome {
            verdict,
            failures,
            steps,
            unrestored,
        }
    }

    async fn run_step(
        &self,
        index: usize,
        step: &Step,
        state: &mut ScenarioState,
        control: &mut dyn StackControl,
    ) -> StepReport {
        let started = Instant::now();
        let result = match step {
            Step::Disrupt { component, action } => {
                state.disrupted.push(*component);
                control
                    .disrupt(*component, *action)
                    .await
                    .map(|()| StepOutput::default())
            }
            Step::Restore { component } => {
                let restored = control.restore(*component).await;
                if restored.is_ok() {
                    state.disrupted.retain(|p| p != component);
                }
                restored.map(|()| StepOutput::default())
            }
            Step::ExpectImpostorRefused {} => {
                control.impostor_handshakes().await.map(|seen| StepOutput {
                    checks: vec![expect::check_impostor_refused(seen.as_deref())],
                    jwt: None,
                })
            }
            Step::AuditConfig {} => control.config_files().and_then(|files| {
                if files.is_empty() {
                    return Err("the environment has no configuration files to audit".into());
                }
                Ok(StepOutput {
                    checks: crate::audit::audit_recognised(&files)?,
                    jwt: None,
                })
            }),
            _ => self.execute(step, state).await,
        };
        let hops = state.take_hops();
        let (output, error) = match result {
            Ok(output) => (output, None),
            Err(error) => (StepOutput::default(), Some(self.redactor.redact(&error))),
        };
        let checks: Vec<CheckResult> = output
            .checks
            .into_iter()
            .map(|c| CheckResult {
                expected: self.redactor.redact(&c.expected),
                actual: self.redactor.redact(&c.actual),
                ..c
            })
            .collect();
        StepReport {
            index,
            op: step.op_name(),
            summary: self.redactor.redact(&self.describe(step)),
            passed: error.is_none() && checks.iter().all(|c| c.passed),
            duration_ms: started.elapsed().as_millis() as u64,
            hops,
            checks,
            jwt: output.jwt,
            error,
        }
    }

    fn describe(&self, step: &Step) -> String {
        match step {
            Step::Open { url } => format!("open {}", self.vars.expand(url)),
            Step::SignIn { credentials, via } => format!(
                "sign in as {} ({credentials:?}){}",
                self.credentials(*credentials)
                    .map(|(user, _)| user)
                    .unwrap_or_default(),
                via.as_ref()
                    .map(|alias| format!(" at the upstream IdP {alias}"))
                    .unwrap_or_default()
            ),
            Step::Request {
                url,
                bearer,
                caller,
            } => {
                let mut text = format!("request {}", self.vars.expand(url));
                if let Some(caller) = caller {
                    text.push_str(match caller {
                        Caller::MeshWorkload => " as the in-mesh workload sleep (mTLS)",
                        Caller::OutsideMesh => " from outside the mesh (no client certificate)",
                        Caller::UntrustedCaWorkload => {
                            " as sleep with a certificate from a CA the mesh does not trust"
                        }
                        Caller::ExpiredCertificateWorkload => {
                            " as sleep with an expired mesh certificate"
                        }
                        Caller::ForeignTrustDomainWorkload => {
                            " with a mesh-CA certificate of another trust domain"
                        }
                    });
                }
                match bearer {
                    Some(bearer) => format!("{text} with {bearer:?} bearer token"),
                    None => format!("{text} without a token"),
                }
            }
            Step::TokenGrant { credentials } => format!(
                "password grant for {} ({credentials:?})",
                self.credentials(*credentials)
                    .map(|(user, _)| user)
                    .unwrap_or_default()
            ),
            Step::Expect(_) => "check the last response".to_string(),
            Step::Probe(probe) => format!(
                "probe {:?} with {} attack request(s)",
                probe.attack,
                probe.requests.len()
            ),
            Step::ExpectJwt { token, claims } => {
                format!("verify the {token:?} JWT and {} claim(s)", claims.len())
            }
            Step::Disrupt { component, action } => {
                format!("{} the {}", action.verb(), component.name())
            }
            Step::Restore { component } => format!("restore the {}", component.name()),
            Step::ExpectImpostorRefused {} => {
                "check how the impostor's callers ended their handshakes".to_string()
            }
            Step::TamperCookie { name, how } => {
                format!("tamper with cookie {} ({how:?})", self.vars.expand(name))
            }
            Step::KeepCookie { name } => {
                format!("keep a copy of cookie {}", self.vars.expand(name))
            }
            Step::PutBackCookie { name } => {
                format!(
                    "put the kept copy of cookie {} back",
                    self.vars.expand(name)
                )
            }
            Step::AuditConfig {} => "audit the deployment's configuration files".to_string(),
            Step::ReplayCallback {} => "send the sign-in's callback (its code and state) again \
                 from a new browser holding only the kept cookies"
                .to_string(),
            Step::WaitForSessionRefresh {} => format!(
                "wait {} s: the session refresh interval, and a second",
                self.session_refresh_wait().as_secs()
            ),
            Step::WaitForTokenExpiry {} => {
                "wait until the tokens the app received have expired, and a second".to_string()
            }
            Step::BearerMatrix(matrix) => format!(
                "send {} bearer token(s) to {}{}",
                matrix.accepted.len() + matrix.refused.len(),
                self.vars.expand(&matrix.url),
                if matrix.with_session {
                    ", the refused ones also with the session"
                } else {
                    ""
                }
            ),
        }
    }

    fn url(&self, template: &str) -> Result<Url, String> {
        let expanded = self.vars.expand(template);
        if let Some(start) = expanded.find("${") {
            let name = expanded[start..].split('}').next().unwrap_or_default();
            return Err(format!(
                "{name}}} has no value in this environment (the local environment provides it)"
            ));
        }
        Url::parse(&expanded).map_err(|e| format!("{expanded:?} is not a URL: {e}"))
    }

    /// The pod that makes `caller`'s request to `url` in a user's cluster: the mesh workload's
    /// always, the one outside the mesh for the service's in-cluster address only (the
    /// gateway's public URLs are reached from here).
    fn pod_caller(&self, caller: Caller, url: &Url) -> Option<std::sync::Arc<PodCaller>> {
        let cluster = self.endpoints.cluster.as_ref()?;
        if caller == Caller::OutsideMesh && url.host_str() != cluster.service.host_str() {
            return None;
        }
        self.pod_callers
            .iter()
            .find(|(c, _)| *c == caller)
            .map(|(_, pod)| pod.clone())
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
    fn caller<'s>(
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

    /// The user name and password `credentials` stand for.
    fn credentials(&self, credentials: Credentials) -> Result<(String, String), String> {
        let user = &self.endpoints.user;
        Ok(match credentials {
            Credentials::TestUser => (user.username.clone(), user.password.expose().to_string()),
            Credentials::WrongPassword => (
                user.username.clone(),
                "certainly-not-the-password".to_string(),
            ),
            Credentials::UpstreamUser => {
                let upstream = self.endpoints.upstream_user.as_ref().ok_or(
                    "this environment has no upstream IdP user (the local stack has one while a \
                     suite's profile brokers to the second IdP)",
                )?;
                (
                    upstream.username.clone(),
                    upstream.password.expose().to_string(),
                )
            }
            Credentials::SecondUser => {
                let second = self.endpoints.second_user.as_ref().ok_or(
                    "this environment names no second user: add second_user to the environment \
                     file (see docs/existing-environment.md), or deselect this scenario",
                )?;
                (
                    second.username.clone(),
                    second.password.expose().to_string(),
                )
            }
        })
    }

    async fn execute(&self, step: &Step, state: &mut ScenarioState) -> Result<StepOutput, String> {
        match step {
            Step::Open { url } => {
                let page = state
                    .browser
                    .navigate(Method::GET, self.url(url)?, Body::Empty, &HeaderMap::new())
                    .await
                    .map_err(|e| e.to_string())?;
                state.last = Some(page);
                Ok(StepOutput::default())
            }
            Step::SignIn { credentials, via } => {
                let page = self.sign_in(*credentials, via.as_deref(), state).await?;
                state.last = Some(page);
                Ok(StepOutput::default())
            }
            Step::Request {
                url,
                bearer,
                caller,
            } => {
                let mut headers = HeaderMap::new();
                if let Some(bearer) = bearer {
                    let token = self
                        .bearer_token(*bearer, state, &tokio::sync::OnceCell::new())
                        .await?;
                    let value = HeaderValue::from_str(&format!("Bearer {token}"))
                        .map_err(|e| e.to_string())?;
                    headers.insert(AUTHORIZATION, value);
                }
                let url = self.url(url)?;
                state.last = None;
                state.rejected = None;
                if let Some(pod) = self.pod_caller(caller.unwrap_or(Caller::OutsideMesh), &url) {
                    match pod.send(&Method::GET, &url, &headers).await {
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
                let through = self.workload_proxy(*caller);
                let (client, url) = self.caller(*caller, state, url)?;
                ensure_listening(&url, through).await?;
                match client.send(Method::GET, url, &Body::Empty, &headers).await {
                    Ok(page) => state.last = Some(page),
                    Err(BrowserError::NoResponse { detail, .. }) => state.rejected = Some(detail),
                    Err(error) => return Err(error.to_string()),
                }
                Ok(StepOutput::default())
            }
            Step::TokenGrant { credentials } => {
                let (page, token) = self.token_grant(*credentials).await?;
                state.granted = token;
                state.last = Some(page);
                Ok(StepOutput::default())
            }
            Step::Expect(expectation) => {
                if let Some(reason) = &state.rejected {
                    return Ok(StepOutput {
                        checks: expect::check_without_response(expectation, reason),
                        jwt: None,
                    });
                }
                let page = state
                    .last
                    .as_ref()
                    .ok_or("nothing to check: no request was made yet")?;
                let checks = expect::check_response(
                    expectation,
                    page,
                    &state.browser,
                    &self.endpoints,
                    &self.vars,
                );
                Ok(StepOutput { checks, jwt: None })
            }
            Step::Probe(attack) => {
                let session = state.browser.cookie_header_for(&self.endpoints.app);
                let checks = probe::run(
                    attack,
                    &self.endpoints.app,
                    &self.raw,
                    &self.vars,
                    session.as_ref(),
                )
                .await?;
                Ok(StepOutput { checks, jwt: None })
            }
            Step::BearerMatrix(matrix) => self.bearer_matrix(matrix, state).await,
            Step::TamperCookie { name, how } => {
                let name = &self.vars.expand(name);
                let count = state
                    .browser
                    .rewrite_cookies(&self.endpoints.app, name, |n, v| tamper::tamper(n, v, *how));
                if count == 0 {
                    return Err(format!(
                        "the browser holds no cookie {name} for the app: sign in first"
                    ));
                }
                Ok(StepOutput::default())
            }
            Step::KeepCookie { name } => {
                let name = self.vars.expand(name);
                let copy = state.browser.copy_cookies(&self.endpoints.app, &name);
                if copy.is_empty() {
                    return Err(format!(
                        "the browser holds no cookie {name} for the app: sign in first"
                    ));
                }
                state.kept_cookies.retain(|(kept, _)| *kept != name);
                state.kept_cookies.push((name, copy));
                Ok(StepOutput::default())
            }
            Step::PutBackCookie { name } => {
                let name = self.vars.expand(name);
                let (_, copy) = state
                    .kept_cookies
                    .iter()
                    .find(|(kept, _)| *kept == name)
                    .ok_or_else(|| {
                        format!("no copy of cookie {name} was kept: keep_cookie first")
                    })?;
                state.browser.put_cookies(&self.endpoints.app, copy);
                Ok(StepOutput::default())
            }
            Step::WaitForSessionRefresh {} => {
                tokio::time::sleep(self.session_refresh_wait()).await;
                Ok(StepOutput::default())
            }
            Step::WaitForTokenExpiry {} => {
                let page = state
                    .last
                    .as_ref()
                    .ok_or("no page yet: open the app's /headers after signing in first")?;
                let wait = token_expiry_wait(page, crate::oidc::now_unix())?;
                tokio::time::sleep(wait).await;
                Ok(StepOutput::default())
            }
            Step::ReplayCallback {} => {
                let callback = state.browser.last_callback().cloned().ok_or_else(|| {
                    "no authorization response was delivered yet: put a sign_in step before \
                     replay_callback"
                        .to_string()
                })?;
                let callback = Url::parse(callback.expose())
                    .map_err(|e| format!("the recorded callback is not a URL: {e}"))?;
                let replaying = self.scenario_browser().map_err(|e| e.to_string())?;
                for (_, copy) in &state.kept_cookies {
                    replaying.put_cookies(&self.endpoints.app, copy);
                }
                state.browser = replaying;
                let page = state
                    .browser
                    .navigate(Method::GET, callback, Body::Empty, &HeaderMap::new())
                    .await
                    .map_err(|e| e.to_string())?;
                state.last = Some(page);
                Ok(StepOutput::default())
            }
            Step::Disrupt { .. }
            | Step::Restore { .. }
            | Step::ExpectImpostorRefused {}
            | Step::AuditConfig {} => Err(
                "disrupt, restore, expect_impostor_refused and audit_config steps are run by \
                 run_step, with the environment's control"
                    .into(),
            ),
            Step::ExpectJwt { token, claims } => {
                let raw = match token {
                    TokenSource::Granted => state
                        .granted
                        .as_ref()
                        .map(|t| t.expose().to_string())
                        .ok_or("no token: run a successful token_grant step first")?,
                    TokenSource::Forwarded | TokenSource::ForwardedAccessToken => {
                        let page = state
                            .last
                            .as_ref()
                            .ok_or("nothing to check: no request was made yet")?;
                        if *token == TokenSource::Forwarded {
                            forwarded_bearer(page)?
                        } else {
                            forwarded_header(page, "X-Auth-Request-Access-Token")?
                        }
                    }
                };
                self.verify_jwt(&raw, claims).await
            }
        }
    }

    async fn sign_in(
        &self,
        credentials: Credentials,
        via: Option<&str>,
        state: &mut ScenarioState,
    ) -> Result<Page, String> {
        let page = state
            .last
            .take()
            .ok_or("nothing to sign in on: open the app first")?;
        let (username, password) = self.credentials(credentials)?;
        state
            .browser
            .sign_in_via(page, via, &username, &password)
            .await
            .map_err(|e| e.to_string())
    }

    async fn discovery(&self) -> Result<oidc::Discovery, String> {
        oidc::discover(&self.http, &self.endpoints.issuer)
            .await
            .map_err(|e| e.to_string())
    }

    async fn token_grant(
        &self,
        credentials: Credentials,
    ) -> Result<(Page, Option<Secret>), String> {
        let discovery = self.discovery().await?;
        let (username, password) = self.credentials(credentials)?;
        let grant = oidc::password_grant(
            &self.http,
            &discovery.token_endpoint,
            &self.endpoints.client_id,
            &self.endpoints.client_secret,
            &username,
            &password,
        )
        .await
        .map_err(|e| e.to_string())?;
        if let Some(token) = &grant.access_token {
            self.redactor.register(token);
        }
        Ok((
            Page {
                url: discovery.token_endpoint,
                status: grant.status,
                headers: grant.headers,
                body: grant.body,
            },
            grant.access_token,
        ))
    }

    /// The token `bearer` stands for, made or fetched now; every one is registered as a secret.
    /// `jwks` holds the IdP's key set once fetched, for every token of one step.
    async fn bearer_token(
        &self,
        kind: Bearer,
        state: &ScenarioState,
        jwks: &tokio::sync::OnceCell<jsonwebtoken::jwk::JwkSet>,
    ) -> Result<String, String> {
        let granted = || {
            state
                .granted
                .as_ref()
                .map(|t| t.expose().to_string())
                .ok_or_else(|| {
                    format!("the {kind:?} bearer is made from the granted token: run a successful token_grant step first")
                })
        };
        let jwks = || {
            jwks.get_or_try_init(|| async {
                let discovery = self.discovery().await?;
                oidc::fetch_jwks(&self.http, &discovery)
                    .await
                    .map_err(|e| e.to_string())
            })
        };
        let other_client = || {
            self.endpoints.other_client.as_ref().ok_or(
                "this environment names no other client of the realm: add other_client to the \
                 environment file (see docs/existing-environment.md), or deselect this scenario"
                    .to_string(),
            )
        };
        let issued =
            |token: Option<Secret>, status: reqwest::StatusCode, body: &str, what: &str| {
                token.map(|t| t.expose().to_string()).ok_or_else(|| {
                    format!(
                        "the IdP issued no {what}: {} {}",
                        status.as_u16(),
                        expect::excerpt(body)
                    )
                })
            };
        let token = match bearer::source(kind) {
            bearer::Source::Granted => granted()?,
            bearer::Source::Invented(token) => token,
            bearer::Source::Forged(forgery) => {
                oidc::forge::forge(&granted()?, forgery, jwks().await?)
                    .map_err(|e| e.to_string())?
            }
            bearer::Source::Minted(minted) => {
                let key = self.endpoints.signing_key.as_ref().ok_or(
                    "this environment has no test signing key the IdP publishes: set \
                     test_signing_key_file in the environment file (see \
                     docs/existing-environment.md), or deselect this scenario",
                )?;
                oidc::forge::mint(&granted()?, minted, key, jwks().await?, oidc::now_unix())
                    .map_err(|e| e.to_string())?
            }
            bearer::Source::OtherClientPassword => {
                let client = other_client()?;
                let discovery = self.discovery().await?;
                let grant = oidc::password_grant(
                    &self.http,
                    &discovery.token_endpoint,
                    &client.id,
                    &client.secret,
                    &self.endpoints.user.username,
                    self.endpoints.user.password.expose(),
                )
                .await
                .map_err(|e| e.to_string())?;
                issued(
                    grant.access_token,
                    grant.status,
                    &grant.body,
                    "token to the other client",
                )?
            }
            bearer::Source::OtherClientService => {
                let client = other_client()?;
                let discovery = self.discovery().await?;
                let grant = oidc::client_credentials_grant(
                    &self.http,
                    &discovery.token_endpoint,
                    &client.id,
                    &client.secret,
                )
                .await
                .map_err(|e| e.to_string())?;
                issued(
                    grant.access_token,
                    grant.status,
                    &grant.body,
                    "service-account token",
                )?
            }
            bearer::Source::SecondUserPassword => {
                let (answer, token) = self.token_grant(Credentials::SecondUser).await?;
                issued(
                    token,
                    answer.status,
                    &answer.body,
                    "token to the second user",
                )?
            }
        };
        if !matches!(kind, Bearer::Forged | Bearer::Garbage) {
            self.redactor.register_str(&token);
        }
        Ok(token)
    }

    async fn bearer_matrix(
        &self,
        matrix: &BearerMatrix,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let url = self.url(&matrix.url)?;
        let mut checks = Vec::new();
        let mut session = None;
        if matrix.with_session {
            if state.browser.cookie_header_for(&url).is_none() {
                return Err(
                    "with_session needs the scenario's session: put a sign_in step before it"
                        .into(),
                );
            }
            let nonce = bearer::nonce();
            let mut headers = HeaderMap::new();
            headers.insert(
                reqwest::header::HeaderName::from_static(bearer::NONCE_HEADER),
                HeaderValue::from_str(&nonce).map_err(|e| e.to_string())?,
            );
            let page = state
                .browser
                .send(Method::GET, url.clone(), &Body::Empty, &headers)
                .await
                .map_err(|e| e.to_string())?;
            let (control, identity) = bearer::judge_session(&page, &nonce);
            checks.push(control);
            match identity {
                Some(identity) => session = Some(identity),
                None => return Ok(StepOutput { checks, jwt: None }),
            }
        }
        let jwks = tokio::sync::OnceCell::new();
        let wanted = matrix
            .accepted
            .iter()
            .map(|b| (*b, true))
            .chain(matrix.refused.iter().map(|b| (*b, false)));
        for (kind, accept) in wanted {
            let token = self.bearer_token(kind, state, &jwks).await?;
            let nonce = bearer::nonce();
            let headers = bearer::headers(&token, &nonce)?;
            let anonymous = self
                .send_as(matrix.caller, state, url.clone(), &headers)
                .await?;
            checks.push(if accept {
                bearer::judge_accepted(kind, &anonymous, &nonce)
            } else {
                bearer::judge_refused(kind, &anonymous, &nonce)
            });
            if let (Some(session), false) = (&session, accept) {
                let nonce = bearer::nonce();
                let headers = bearer::headers(&token, &nonce)?;
                let page = state
                    .browser
                    .send(Method::GET, url.clone(), &Body::Empty, &headers)
                    .await
                    .map_err(|e| e.to_string())?;
                checks.push(bearer::judge_with_session(kind, &page, &nonce, session));
            }
        }
        Ok(StepOutput { checks, jwt: None })
    }

    /// One request without cookies: by `caller`, else by a browser outside the mesh.
    async fn send_as(
        &self,
        caller: Option<Caller>,
        state: &mut ScenarioState,
        url: Url,
        headers: &HeaderMap,
    ) -> Result<Page, String> {
        let caller = caller.unwrap_or(Caller::OutsideMesh);
        if let Some(pod) = self.pod_caller(caller, &url) {
            return pod
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

    async fn verify_jwt(
        &self,
        token: &str,
        claims: &std::collections::BTreeMap<String, oidc::ClaimExpectation>,
    ) -> Result<StepOutput, String> {
        let decoded = oidc::decode_unverified(token).map_err(|e| e.to_string())?;
        // Fetched per check, not cached: the check is against what the IdP publishes now.
        let discovery = self.discovery().await?;
        let jwks = oidc::fetch_jwks(&self.http, &discovery)
            .await
            .map_err(|e| e.to_string())?;
        let mut checks = vec![oidc::verify_signature(token, &jwks)];
        checks.extend(oidc::check_lifetime(
            &decoded.claims,
            oidc::now_unix(),
            CLOCK_SKEW_SECONDS,
        ));
        for (name, expectation) in claims {
            let expectation = expectation.map_strings(&|s| self.vars.expand(s));
            checks.push(oidc::check_claim(
                &decoded.claims,
                &self.vars.expand(name),
                &expectation,
            ));
        }
        Ok(StepOutput {
            checks,
            jwt: Some(decoded),
        })
    }
}

/// A scenario whose environment could not be brought to its profile: failed, no steps run.
fn unrunnable(
    suite: &Suite,
    scenario: &Scenario,
    reason: &str,
    sink: &mut dyn EventSink,
) -> ScenarioOutcome {
    let failures = vec![format!("stack profile: {reason}")];
    sink.emit(RunEvent::ScenarioStarted {
        suite: suite.suite.clone(),
        scenario: scenario.id.clone(),
        title: scenario.title.clone(),
        file: suite.file.clone(),
    });
    sink.emit(RunEvent::ScenarioFinished {
        suite: suite.suite.clone(),
        scenario: scenario.id.clone(),
        verdict: Verdict::Fail,
        duration_ms: 0,
        failures: failures.clone(),
    });
    ScenarioOutcome {
        verdict: Verdict::Fail,
        failures,
        steps: Vec::new(),
        unrestored: Vec::new(),
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

/// The longest [`Step::WaitForTokenExpiry`] waits: longer-lived tokens must be made
/// short-lived first.
const LONGEST_TOKEN_WAIT: i64 = 60;

/// How long until every token the app echoed on `page` has expired, and a second.
fn token_expiry_wait(page: &Page, now: i64) -> Result<Duration, String> {
    let tokens = expect::forwarded_jwts(&page.body).ok_or_else(|| {
        format!(
            "the last page is not the app's echo of its request headers ({} at {}): open \
             the app's /headers after signing in first",
            page.status.as_u16(),
            page.url
        )
    })?;
    let last = tokens
        .iter()
        .max_by_key(|t| t.expires_at)
        .ok_or("the app received no token with an expiry (exp) to wait out")?;
    let remaining = last.expires_at - now;
    if remaining > LONGEST_TOKEN_WAIT {
        return Err(format!(
            "the token in {} lives another {remaining} s, longer than meshauth waits \
             ({LONGEST_TOKEN_WAIT} s): make the IdP's tokens short-lived first (disrupt idp \
             short_lived_tokens)",
            last.header
        ));
    }
    Ok(Duration::from_secs((remaining.max(0) + 1) as u64))
}

/// The bearer token in the `Authorization` header httpbin echoed on `page`.
pub fn forwarded_bearer(page: &Page) -> Result<String, String> {
    forwarded_header(page, "Authorization")?
        .strip_prefix("Bearer ")
        .map(str::to_string)
        .ok_or_else(|| "the app's Authorization header is not a Bearer token".to_string())
}

/// A header httpbin echoed on `page` as received by the app.
fn forwarded_header(page: &Page, wanted: &str) -> Result<String, String> {
    let headers = expect::echoed_headers(page)
        .map_err(|got| format!("expected the app's echo of its request headers, got {got}"))?;
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
        .map(|(_, value)| value.clone())
        .ok_or_else(|| {
            let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "the app received no {wanted} header (it received: {})",
                names.join(", ")
            )
        })
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_wait_lasts_until_the_last_token_expired_and_no_longer_than_a_minute() {
        let echo = Page {
            url: Url::parse("https://app.test/headers").unwrap(),
            status: reqwest::StatusCode::OK,
            headers: HeaderMap::new(),
            body: include_str!("../../tests/data/recorded/httpbin-headers.json").into(),
        };
        let exp = 1795436565;
        assert_eq!(
            token_expiry_wait(&echo, exp - 4),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(
            token_expiry_wait(&echo, exp + 30),
            Ok(Duration::from_secs(1))
        );
        let too_long = token_expiry_wait(&echo, exp - 300).unwrap_err();
        assert!(too_long.contains("lives another 300 s"), "{too_long}");
        assert!(too_long.contains("short_lived_tokens"), "{too_long}");
        let not_echo = Page {
            body: "<html></html>".into(),
            ..echo
        };
        let error = token_expiry_wait(&not_echo, exp).unwrap_err();
        assert!(error.contains("not the app's echo"), "{error}");
    }
}
