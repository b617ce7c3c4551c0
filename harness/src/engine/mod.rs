//! Runs scenarios: executes each operation against an environment's endpoints and emits
//! [`RunEvent`]s. It judges outcomes but formats nothing.

mod expect;
mod probe;

use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;
use url::Url;

use crate::browser::raw::RawClient;
use crate::browser::{Body, Browser, BrowserError, Page};
use crate::check::CheckResult;
use crate::control::StackControl;
use crate::env::Endpoints;
use crate::events::{EnvironmentInfo, EventSink, RunEvent, RunSummary, StepReport, Verdict};
use crate::oidc::{self, DecodedJwt};
use crate::redact::{Redactor, Secret};
use crate::scenario::{Bearer, Caller, Credentials, Scenario, Step, Suite, TokenSource, Variables};

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
}

/// How one scenario ended.
#[derive(Debug, Clone)]
pub struct ScenarioOutcome {
    pub verdict: Verdict,
    pub failures: Vec<String>,
    pub steps: Vec<StepReport>,
}

/// Per-scenario state: a fresh browser, the callers created on first use, the last response
/// (or why there was none), the last granted token.
struct ScenarioState {
    browser: Browser,
    mesh_workload: Option<Browser>,
    outside_mesh: Option<Browser>,
    last: Option<Page>,
    /// The last request got no HTTP response (a caller's connection was rejected): why.
    rejected: Option<String>,
    granted: Option<Secret>,
}

impl ScenarioState {
    fn take_hops(&mut self) -> Vec<crate::browser::Hop> {
        let mut hops = self.browser.take_hops();
        for caller in [&mut self.mesh_workload, &mut self.outside_mesh]
            .into_iter()
            .flatten()
        {
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
        let vars = endpoints.variables();
        let http = crate::browser::http_client(endpoints.ca_pem.as_deref())?;
        let raw = RawClient::new(endpoints.ca_pem.as_deref(), Duration::from_secs(15))
            .map_err(EngineError::Probe)?;
        Ok(Self {
            endpoints,
            redactor,
            vars,
            http,
            raw,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Runs the selected scenarios in order, bringing `target` to each one's stack profile
    /// first, emitting the full event stream.
    pub async fn run(
        &self,
        run_id: &str,
        environment: EnvironmentInfo,
        selection: &[(&Suite, &Scenario)],
        target: &mut dyn StackControl,
        sink: &mut dyn EventSink,
    ) -> RunSummary {
        let started = Instant::now();
        sink.emit(RunEvent::RunStarted {
            run_id: run_id.to_string(),
            started_at: now_rfc3339(),
            environment,
            selected: selection.len(),
        });
        let mut summary = RunSummary {
            total: selection.len(),
            ..RunSummary::default()
        };
        for (suite, scenario) in selection {
            let outcome = match target.apply(&scenario.profile(suite)).await {
                Ok(()) => self.run_scenario(suite, scenario, sink).await,
                Err(reason) => unrunnable(suite, scenario, &reason, sink),
            };
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

    /// Runs one scenario, stopping at the first failed step (later steps depend on it).
    pub async fn run_scenario(
        &self,
        suite: &Suite,
        scenario: &Scenario,
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
        match Browser::new(self.endpoints.ca_pem.as_deref(), self.redactor.clone()) {
            Ok(mut browser) => {
                browser.confine_to(self.endpoints.hosts());
                let mut state = ScenarioState {
                    browser,
                    mesh_workload: None,
                    outside_mesh: None,
                    last: None,
                    rejected: None,
                    granted: None,
                };
                for (index, step) in scenario.steps.iter().enumerate() {
                    let report = self.run_step(index + 1, step, &mut state).await;
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
        }
    }

    async fn run_step(&self, index: usize, step: &Step, state: &mut ScenarioState) -> StepReport {
        let started = Instant::now();
        let result = self.execute(step, state).await;
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
            Step::SignIn { credentials } => format!(
                "sign in as {} ({credentials:?})",
                self.endpoints.user.username
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
                    });
                }
                match bearer {
                    Some(bearer) => format!("{text} with {bearer:?} bearer token"),
                    None => format!("{text} without a token"),
                }
            }
            Step::TokenGrant { credentials } => format!(
                "password grant for {} ({credentials:?})",
                self.endpoints.user.username
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

    /// The caller's client, created on first use, and the URL it connects to: an in-mesh
    /// caller's sidecar turns `http://` into mTLS.
    fn caller<'s>(
        &self,
        caller: Caller,
        state: &'s mut ScenarioState,
        mut url: Url,
    ) -> Result<(&'s mut Browser, Url), String> {
        let browser = match caller {
            Caller::MeshWorkload => {
                let mesh = self.endpoints.mesh.as_ref().ok_or(
                    "this environment has no mesh the harness can join as the sleep workload \
                     (no mesh CA or workload certificate); run with --env local",
                )?;
                if url.scheme() == "http" {
                    url.set_scheme("https")
                        .map_err(|()| format!("cannot upgrade {url} to mTLS"))?;
                }
                if state.mesh_workload.is_none() {
                    state.mesh_workload = Some(
                        Browser::with_client_certificate(
                            &mesh.ca_pem,
                            &mesh.workload_cert_pem,
                            &mesh.workload_key_pem,
                            self.redactor.clone(),
                        )
                        .map_err(|e| e.to_string())?,
                    );
                }
                state.mesh_workload.as_mut()
            }
            Caller::OutsideMesh => {
                if state.outside_mesh.is_none() {
                    state.outside_mesh = Some(
                        Browser::new(self.endpoints.ca_pem.as_deref(), self.redactor.clone())
                            .map_err(|e| e.to_string())?,
                    );
                }
                state.outside_mesh.as_mut()
            }
        };
        Ok((browser.expect("created above"), url))
    }

    fn password(&self, credentials: Credentials) -> String {
        match credentials {
            Credentials::TestUser => self.endpoints.user.password.expose().to_string(),
            Credentials::WrongPassword => "certainly-not-the-password".to_string(),
        }
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
            Step::SignIn { credentials } => {
                let page = self.sign_in(*credentials, state).await?;
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
                    let token = match bearer {
                        Bearer::Granted => state
                            .granted
                            .as_ref()
                            .ok_or("no token: run a successful token_grant step first")?
                            .expose()
                            .to_string(),
                        Bearer::Forged => forged_token(),
                        Bearer::Garbage => "not-a-jwt".to_string(),
                    };
                    let value = HeaderValue::from_str(&format!("Bearer {token}"))
                        .map_err(|e| e.to_string())?;
                    headers.insert(AUTHORIZATION, value);
                }
                let url = self.url(url)?;
                state.last = None;
                state.rejected = None;
                let Some(caller) = caller else {
                    let page = state
                        .browser
                        .send(Method::GET, url, &Body::Empty, &headers)
                        .await
                        .map_err(|e| e.to_string())?;
                    state.last = Some(page);
                    return Ok(StepOutput::default());
                };
                let (client, url) = self.caller(*caller, state, url)?;
                ensure_listening(&url).await?;
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
        state: &mut ScenarioState,
    ) -> Result<Page, String> {
        let page = state
            .last
            .take()
            .ok_or("nothing to sign in on: open the app first")?;
        state
            .browser
            .sign_in(
                page,
                &self.endpoints.user.username,
                &self.password(credentials),
            )
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
        let grant = oidc::password_grant(
            &self.http,
            &discovery.token_endpoint,
            &self.endpoints.client_id,
            &self.endpoints.client_secret,
            &self.endpoints.user.username,
            &self.password(credentials),
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
    }
}

/// A rejected connection is a finding only if something listens: a port where nothing does
/// is a broken environment, and must not pass as "rejected".
async fn ensure_listening(url: &Url) -> Result<(), String> {
    let address = url
        .socket_addrs(|| None)
        .ok()
        .and_then(|a| a.into_iter().next())
        .ok_or_else(|| format!("{url} has no resolvable address"))?;
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

/// A well-formed RS256 JWT whose signature is garbage: a gateway must reject it.
fn forged_token() -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = b64(&serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "forged"}));
    let claims = b64(&serde_json::json!({"sub": "mallory", "exp": oidc::now_unix() + 300}));
    format!("{header}.{claims}.Zm9yZ2VkLXNpZ25hdHVyZS1ub3QtdmFsaWQ")
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
