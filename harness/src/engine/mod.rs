//! Runs scenarios: executes each operation against an environment's endpoints and emits
//! [`RunEvent`]s. It judges outcomes but formats nothing.

mod bearer;
mod browse;
mod checks;
mod cookies;
mod describe;
mod expect;
mod plan;
mod probe;
mod tamper;
mod tls;
mod tokens;
mod waits;

pub use checks::forwarded_bearer;
pub use plan::{Plan, plan};

use std::time::{Duration, Instant};

use futures::StreamExt;
use url::Url;

use crate::browser::curl_caller::CurlCaller;
use crate::browser::raw::RawClient;
use crate::browser::{Browser, BrowserError, Page};
use crate::check::CheckResult;
use crate::control::StackControl;
use crate::env::Endpoints;
use crate::events::{EnvironmentInfo, EventSink, RunEvent, RunSummary, StepReport, Verdict};
use crate::oidc::DecodedJwt;
use crate::redact::{Redactor, Secret};
use crate::scenario::{Caller, Credentials, Scenario, Step, Suite, Variables};

/// Clock skew allowed when checking `exp` and `iat`.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// How many scenarios run side by side unless told otherwise: most of a scenario's time is
/// spent waiting on the components, so four keep two cores busy without queueing the IdP.
pub const DEFAULT_JOBS: u16 = 4;

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
    /// Callers in a deployment's mesh: `curl` where they are (by exec in a pod, or a command).
    curl_callers: Vec<(Caller, std::sync::Arc<CurlCaller>)>,
    /// How many scenarios may run side by side (see [`Engine::with_jobs`]).
    jobs: usize,
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
    /// The refresh token of the last `token_grant`.
    granted_refresh: Option<Secret>,
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
        let curl_callers = endpoints
            .mesh_callers
            .iter()
            .flat_map(|callers| {
                let caller = |place: &crate::endpoints::CallerRef| {
                    std::sync::Arc::new(CurlCaller::new(
                        place,
                        callers.access.clone(),
                        redactor.clone(),
                    ))
                };
                std::iter::once((Caller::MeshWorkload, caller(&callers.mesh_workload))).chain(
                    callers
                        .outside_mesh
                        .iter()
                        .map(move |place| (Caller::OutsideMesh, caller(place))),
                )
            })
            .collect();
        Ok(Self {
            endpoints,
            redactor,
            vars,
            http,
            raw,
            curl_callers,
            jobs: usize::from(DEFAULT_JOBS),
        })
    }

    /// Runs up to `jobs` scenarios side by side (at least one): those of one stack profile
    /// that leave the stack as they found it. Reports list them in plan order whatever order
    /// they finish in; a scenario that needs the stack to itself always runs alone.
    pub fn with_jobs(mut self, jobs: u16) -> Self {
        self.jobs = usize::from(jobs.max(1));
        self
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

    /// An engine for where `target` is reached now, when its profile moved it (the app on
    /// another listener, another IdP); `None` when this engine's endpoints still hold.
    pub fn for_target(&self, target: &dyn StackControl) -> Result<Option<Engine>, String> {
        let Some(now) = target.endpoints() else {
            return Ok(None);
        };
        let users = |e: &Endpoints| {
            [&e.second_user, &e.upstream_user, &e.upstream_second_user]
                .map(|u| u.as_ref().map(|u| u.username.clone()))
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
            .map(|engine| {
                Some(Engine {
                    jobs: self.jobs,
                    ..engine
                })
            })
            .map_err(|e| format!("the environment moved and its new endpoints are unusable: {e}"))
    }

    /// Runs the planned scenarios profile by profile, bringing `target` to each profile first
    /// (see [`Engine::run_on`] for the order within one), emitting the full event stream; the
    /// plan's left-out scenarios are listed in the environment.
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
        let mut rest: &[(&Suite, &Scenario)] = &plan.run;
        while let Some((suite, scenario)) = rest.first() {
            let profile = scenario.profile(suite);
            let group_len = rest
                .iter()
                .take_while(|(s, sc)| sc.profile(s) == profile)
                .count();
            let (group, later) = rest.split_at(group_len);
            rest = later;
            let outcomes = match &broken {
                Some(reason) => unrunnable(group, reason, sink),
                None => match target.apply(&profile).await {
                    Ok(()) => match self.for_target(target) {
                        Ok(Some(moved)) => moved.run_on(group, target, sink).await,
                        Ok(None) => self.run_on(group, target, sink).await,
                        Err(reason) => unrunnable(group, &reason, sink),
                    },
                    Err(reason) => unrunnable(group, &reason, sink),
                },
            };
            for ((suite, scenario), outcome) in outcomes {
                broken = broken.or_else(|| left_broken(suite, scenario, &outcome));
                match outcome.verdict {
                    Verdict::Pass => summary.passed += 1,
                    Verdict::Fail => summary.failed += 1,
                }
            }
        }
        summary.duration_ms = started.elapsed().as_millis() as u64;
        sink.emit(RunEvent::RunFinished {
            summary: summary.clone(),
        });
        summary
    }

    /// Runs `scenarios` on the environment as it is now (their profile applied): first those
    /// that leave the stack as they found it, up to `jobs` at a time without `control`, then
    /// one at a time, with it, those that need the stack to themselves
    /// ([`Scenario::needs_the_stack_to_itself`]). Outcomes come in that order, each with its
    /// scenario; each scenario's events are held back and emitted whole, in the same order.
    /// Once a scenario leaves a part disrupted that could not be restored, the rest fail
    /// unrun, saying why.
    pub async fn run_on<'s>(
        &self,
        scenarios: &[(&'s Suite, &'s Scenario)],
        control: &mut dyn StackControl,
        sink: &mut dyn EventSink,
    ) -> Vec<((&'s Suite, &'s Scenario), ScenarioOutcome)> {
        let (alone, beside): (Vec<_>, Vec<_>) = scenarios
            .iter()
            .copied()
            .partition(|(_, scenario)| scenario.needs_the_stack_to_itself());
        let mut outcomes = Vec::with_capacity(scenarios.len());
        let mut finished = futures::stream::iter(beside)
            .map(|(suite, scenario)| async move {
                let mut events = Vec::new();
                let outcome = self
                    .run_scenario(suite, scenario, None, &mut |event| events.push(event))
                    .await;
                ((suite, scenario), outcome, events)
            })
            .buffered(self.jobs);
        while let Some((run, outcome, events)) = finished.next().await {
            for event in events {
                sink.emit(event);
            }
            outcomes.push((run, outcome));
        }
        let mut broken: Option<String> = None;
        for (suite, scenario) in alone {
            let outcome = match &broken {
                Some(reason) => unrunnable(&[(suite, scenario)], reason, sink)
                    .pop()
                    .map(|(_, outcome)| outcome),
                None => Some(
                    self.run_scenario(suite, scenario, Some(&mut *control), sink)
                        .await,
                ),
            };
            if let Some(outcome) = outcome {
                broken = broken.or_else(|| left_broken(suite, scenario, &outcome));
                outcomes.push(((suite, scenario), outcome));
            }
        }
        outcomes
    }

    /// Runs one scenario, stopping at the first failed step (later steps depend on it). Parts
    /// it disrupted through `control` are restored before it ends, whatever its outcome.
    /// Without `control` (a scenario running beside others), a step that needs it fails.
    pub async fn run_scenario(
        &self,
        suite: &Suite,
        scenario: &Scenario,
        mut control: Option<&mut (dyn StackControl + '_)>,
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
                    granted_refresh: None,
                    disrupted: Vec::new(),
                    kept_cookies: Vec::new(),
                };
                for (index, step) in scenario.steps.iter().enumerate() {
                    let report = self
                        .run_step(index + 1, step, &mut state, control.as_deref_mut())
                        .await;
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
                    let restored = match control.as_deref_mut() {
                        Some(control) => control.restore(part).await,
                        None => Err(WITHOUT_CONTROL.to_string()),
                    };
                    if let Err(error) = restored {
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

    async fn run_step<'c>(
        &self,
        index: usize,
        step: &Step,
        state: &mut ScenarioState,
        control: Option<&mut (dyn StackControl + 'c)>,
    ) -> StepReport {
        let started = Instant::now();
        let result = match control {
            Some(control) => self.run_step_with(step, state, control).await,
            None => self.execute(step, state).await,
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

    /// A step run with the environment's control: those that need it use it.
    async fn run_step_with(
        &self,
        step: &Step,
        state: &mut ScenarioState,
        control: &mut dyn StackControl,
    ) -> Result<StepOutput, String> {
        match step {
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
        }
    }

    /// Runs a step that needs no control of the environment (`run_step_with` runs those),
    /// each operation by its family's function.
    async fn execute(&self, step: &Step, state: &mut ScenarioState) -> Result<StepOutput, String> {
        match step {
            Step::Open { url } => self.open(url, state).await,
            Step::SignIn { credentials, via } => {
                self.sign_in(*credentials, via.as_deref(), state).await
            }
            Step::Request {
                url,
                bearer,
                caller,
            } => self.request(url, *bearer, *caller, state).await,
            Step::TokenGrant { credentials } => self.token_grant(*credentials, state).await,
            Step::Expect(expectation) => self.expect_response(expectation, state),
            Step::Probe(attack) => self.probe(attack, state).await,
            Step::BearerMatrix(matrix) => self.bearer_matrix(matrix, state).await,
            Step::TamperCookie { name, how } => self.tamper_cookie(name, *how, state),
            Step::KeepCookie { name } => self.keep_cookie(name, state),
            Step::PutBackCookie { name } => self.put_back_cookie(name, state),
            Step::WaitForSessionRefresh {} => self.wait_for_session_refresh().await,
            Step::WaitForTokenExpiry {} => self.wait_for_token_expiry(state).await,
            Step::ReplayCallback {} => self.replay_callback(state).await,
            Step::RefreshTokenReuse {} => self.refresh_token_reuse(state).await,
            Step::Disrupt { .. }
            | Step::Restore { .. }
            | Step::ExpectImpostorRefused {}
            | Step::AuditConfig {} => Err(WITHOUT_CONTROL.into()),
            Step::ExpectJwt {
                token,
                claims,
                lifetime_at_most_seconds,
            } => {
                self.expect_jwt(*token, claims, *lifetime_at_most_seconds, state)
                    .await
            }
            Step::TlsOffers { url, offers } => self.tls_offers(url, offers).await,
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
            Credentials::UpstreamSecondUser => {
                let upstream = self.endpoints.upstream_second_user.as_ref().ok_or(
                    "this environment has no second upstream IdP user (the local stack has one \
                     while a suite's profile brokers to the second IdP)",
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
}

/// Why a step that needs the environment's control failed in a scenario running beside others.
const WITHOUT_CONTROL: &str = "this step needs the environment's control, which only a scenario \
     running alone has (Scenario::needs_the_stack_to_itself decides)";

/// Scenarios that cannot run (their profile could not be applied, or an earlier scenario left
/// the stack broken): failed, no steps run.
fn unrunnable<'s>(
    scenarios: &[(&'s Suite, &'s Scenario)],
    reason: &str,
    sink: &mut dyn EventSink,
) -> Vec<((&'s Suite, &'s Scenario), ScenarioOutcome)> {
    let failures = vec![format!("stack profile: {reason}")];
    scenarios
        .iter()
        .map(|&(suite, scenario)| {
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
            let outcome = ScenarioOutcome {
                verdict: Verdict::Fail,
                failures: failures.clone(),
                steps: Vec::new(),
                unrestored: Vec::new(),
            };
            ((suite, scenario), outcome)
        })
        .collect()
}

/// Why nothing after `scenario` can run, when it left parts disrupted that could not be
/// restored: a stopped auth service makes every later refusal meaningless.
fn left_broken(suite: &Suite, scenario: &Scenario, outcome: &ScenarioOutcome) -> Option<String> {
    (!outcome.unrestored.is_empty()).then(|| {
        format!(
            "not run: {} left the {} disrupted and restoring it failed",
            crate::scenario::qualified_name(suite, scenario),
            outcome
                .unrestored
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ")
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
    use std::path::Path;

    use super::*;
    use crate::control::{Disruption, Part};
    use crate::env::existing::ExistingEnvironment;
    use crate::policy::StackProfile;
    use crate::scenario::Catalog;

    /// Records the restores it is asked for; anything else is refused.
    #[derive(Default)]
    struct Recording {
        restored: Vec<Part>,
    }

    impl StackControl for Recording {
        fn apply<'a>(
            &'a mut self,
            _: &'a StackProfile,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + 'a>> {
            Box::pin(std::future::ready(Ok(())))
        }
        fn accepts_profile(&self, _: &StackProfile, _: bool) -> bool {
            true
        }
        fn can_disrupt(&self, _: Part, _: Disruption) -> bool {
            true
        }
        fn disrupt(
            &mut self,
            _: Part,
            _: Disruption,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + '_>> {
            Box::pin(std::future::ready(Err("not here".into())))
        }
        fn restore(
            &mut self,
            part: Part,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + '_>> {
            self.restored.push(part);
            Box::pin(std::future::ready(Ok(())))
        }
    }

    /// Scenarios that need the stack to themselves run after the rest, alone and with the
    /// environment's control; each scenario's events arrive whole, never interleaved with
    /// another's, though up to `jobs` run side by side.
    #[tokio::test]
    async fn scenarios_run_side_by_side_and_report_whole() {
        let suite = r#"
suite: side_by_side
description: engine ordering
scenarios:
  - id: alone
    title: restores the auth service, audits what is not there
    steps:
      - op: restore
        component: auth_service
      - op: audit_config
  - id: beside_one
    title: checks a response it never got
    steps:
      - op: expect
        status: 200
  - id: beside_two
    title: checks a response it never got
    steps:
      - op: expect
        status: 200
      - op: expect
        status: 201
"#;
        let catalog = Catalog::from_sources([("side-by-side.yaml", suite)]).unwrap();
        let existing = ExistingEnvironment::parse(
            "with-mesh.yaml",
            include_str!("../../tests/data/existing/with-mesh.yaml"),
            Path::new("/etc/meshauth"),
            &|name| matches!(name, "CS" | "PW").then(|| format!("{name}-value")),
        )
        .unwrap();
        let engine = Engine::new(existing.endpoints().clone(), Redactor::new())
            .unwrap()
            .with_jobs(2);
        let plan = Plan {
            run: catalog.select(&[]),
            left_out: Vec::new(),
        };
        let mut control = Recording::default();
        let mut events = Vec::new();
        let summary = engine
            .run(
                "side-by-side",
                EnvironmentInfo::default(),
                &plan,
                &mut control,
                &mut |event| events.push(event),
            )
            .await;
        assert_eq!((summary.total, summary.failed), (3, 3), "{summary:?}");
        assert_eq!(control.restored, vec![Part::AuthService]);
        let order: Vec<String> = events
            .iter()
            .filter_map(|event| match event {
                RunEvent::ScenarioStarted { scenario, .. } => Some(format!("start {scenario}")),
                RunEvent::StepFinished { scenario, .. } => Some(format!("step {scenario}")),
                RunEvent::ScenarioFinished { scenario, .. } => Some(format!("end {scenario}")),
                _ => None,
            })
            .collect();
        assert_eq!(
            order,
            [
                "start beside_one",
                "step beside_one",
                "end beside_one",
                "start beside_two",
                "step beside_two",
                "end beside_two",
                "start alone",
                "step alone",
                "step alone",
                "end alone",
            ]
        );
    }
}
