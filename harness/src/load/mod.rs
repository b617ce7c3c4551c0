//! Load tests of the auth hot path, with goose as the user scheduler. The baseline, cookie
//! and bearer paths run as one interleaved phase (see [`schedule`]): the same users take
//! turns on each path in short slices, and the overhead ratios are the median of each round's
//! ratio. The login storm and the mix run as phases of their own.
//!
//! Logins reuse the project's [`Browser`](crate::browser::Browser) flow and token grants
//! [`oidc::password_grant`](crate::oidc::password_grant); nothing here re-implements either.

mod connection;
pub mod cpu;
pub mod hops;
pub mod recorder;
pub mod report;
pub mod schedule;
mod transactions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use goose::config::GooseConfiguration;
use goose::prelude::{GooseAttack, Scenario};
use serde::Serialize;
use url::Url;

use crate::env::Endpoints;
use crate::redact::Redactor;

pub use report::{
    LoadReport, OverheadRatio, PhaseReport, Thresholds, TransactionReport, Violation,
};

/// Hard caps: a load run is always bounded, whatever the options say.
pub const MAX_USERS: usize = 1000;
pub const MAX_PHASE_DURATION: Duration = Duration::from_secs(600);
pub const MAX_HATCH_RATE: f64 = 200.0;
pub const MAX_REQUESTS_PER_PHASE: u64 = 20_000_000;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}\nhow to fix: {1}")]
    Options(String, String),
    #[error(
        "{what} {url} is not on loopback; meshauth load only targets 127.0.0.0/8, ::1 or localhost unless told otherwise\nhow to fix: pass --allow-remote if you own that deployment and mean to load it"
    )]
    NotLoopback { what: &'static str, url: String },
    #[error("could not prepare the load run: {0}")]
    Setup(String),
    #[error(
        "could not obtain the load run's credentials: {0}\nhow to fix: check that `meshauth run` passes against this environment"
    )]
    Credentials(String),
    #[error("goose failed in phase {phase}: {detail}")]
    Goose { phase: &'static str, detail: String },
}

/// What a goose user does each iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// httpbin through the same gateway listener, ext_authz disabled for the route.
    Baseline = 0,
    /// The SSO hot path: each user logged in once through the browser flow, then sends its
    /// oauth2-proxy session cookie (ext_authz → oauth2-proxy → httpbin).
    Cookie = 1,
    /// A bearer token from the IdP's token endpoint: jwt_authn, then ext_authz.
    Bearer = 2,
    /// The whole browser login per iteration: the IdP's cost.
    LoginStorm = 3,
}

impl TransactionKind {
    pub const ALL: [TransactionKind; 4] = [
        TransactionKind::Baseline,
        TransactionKind::Cookie,
        TransactionKind::Bearer,
        TransactionKind::LoginStorm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Cookie => "cookie",
            Self::Bearer => "bearer",
            Self::LoginStorm => "login_storm",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Share of users in the mix phase (per 8 users).
    fn mix_weight(self) -> usize {
        match self {
            Self::Cookie => 4,
            Self::Bearer => 2,
            Self::Baseline => 1,
            Self::LoginStorm => 1,
        }
    }
}

/// What a user can ask a load run to measure (`--phases`). Baseline, cookie and bearer run
/// together, interleaved, as one [`RunPhase::Interleaved`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Baseline,
    Cookie,
    Bearer,
    LoginStorm,
    /// Every transaction at once, users split cookie 4 : bearer 2 : baseline 1 : login 1.
    Mix,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Baseline,
        Phase::Cookie,
        Phase::Bearer,
        Phase::LoginStorm,
        Phase::Mix,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Cookie => "cookie",
            Self::Bearer => "bearer",
            Self::LoginStorm => "login_storm",
            Self::Mix => "mix",
        }
    }

    fn transactions(self) -> Vec<TransactionKind> {
        match self {
            Self::Baseline => vec![TransactionKind::Baseline],
            Self::Cookie => vec![TransactionKind::Cookie],
            Self::Bearer => vec![TransactionKind::Bearer],
            Self::LoginStorm => vec![TransactionKind::LoginStorm],
            Self::Mix => TransactionKind::ALL.to_vec(),
        }
    }
}

/// A phase as run: one goose attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    /// The selected ones of baseline, cookie and bearer, taking turns in slices.
    Interleaved,
    LoginStorm,
    /// Every transaction at once, users split cookie 4 : bearer 2 : baseline 1 : login 1.
    Mix,
}

impl RunPhase {
    pub fn name(self) -> &'static str {
        match self {
            Self::Interleaved => "interleaved",
            Self::LoginStorm => "login_storm",
            Self::Mix => "mix",
        }
    }
}

/// The phases to run for a selection, in order, with their transactions.
pub fn plan(selection: &[Phase]) -> Vec<(RunPhase, Vec<TransactionKind>)> {
    let interleaved: Vec<TransactionKind> = [
        TransactionKind::Baseline,
        TransactionKind::Cookie,
        TransactionKind::Bearer,
    ]
    .into_iter()
    .filter(|kind| selection.iter().any(|p| p.transactions() == [*kind]))
    .collect();
    let mut plan = Vec::new();
    if !interleaved.is_empty() {
        plan.push((RunPhase::Interleaved, interleaved));
    }
    if selection.contains(&Phase::LoginStorm) {
        plan.push((RunPhase::LoginStorm, vec![TransactionKind::LoginStorm]));
    }
    if selection.contains(&Phase::Mix) {
        plan.push((RunPhase::Mix, TransactionKind::ALL.to_vec()));
    }
    plan
}

/// How hard and how long to push. Defaults are safe on a 2-core machine shared with the stack.
#[derive(Debug, Clone, Serialize)]
pub struct LoadOptions {
    pub users: usize,
    /// Users started per second.
    pub hatch_rate: f64,
    /// Measured time per transaction, after every user has started: the login storm and the
    /// mix run this long; the interleaved phase gives each of its paths this much in slices.
    #[serde(serialize_with = "report::serialize_seconds")]
    pub duration: Duration,
    /// The interleaved phase's turn length per path.
    #[serde(serialize_with = "report::serialize_seconds")]
    pub slice: Duration,
    /// Stop the interleaved phase early once every ratio's 95% confidence interval is within
    /// this fraction of its median (`duration` is then the cap).
    pub precision: Option<f64>,
    pub phases: Vec<Phase>,
    /// Path requested on the protected app and on the baseline (joined to each base URL).
    pub path: String,
    /// Requests (all transactions) after which a phase stops early.
    pub max_requests_per_phase: u64,
    /// Per-request timeout of the hot paths.
    #[serde(serialize_with = "report::serialize_seconds")]
    pub request_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            users: 8,
            hatch_rate: 4.0,
            duration: Duration::from_secs(10),
            slice: Duration::from_millis(500),
            precision: None,
            phases: Phase::ALL.to_vec(),
            path: "status/200".into(),
            max_requests_per_phase: 2_000_000,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl LoadOptions {
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |what: String, fix: &str| Err(LoadError::Options(what, fix.into()));
        if self.users == 0 || self.users > MAX_USERS {
            return bad(
                format!("--users {} is outside 1..={MAX_USERS}", self.users),
                "pick fewer users; on 2 cores 8 to 64 already saturate the stack",
            );
        }
        if !(self.hatch_rate > 0.0 && self.hatch_rate <= MAX_HATCH_RATE) {
            return bad(
                format!(
                    "--hatch-rate {} is outside (0, {MAX_HATCH_RATE}]",
                    self.hatch_rate
                ),
                "users started per second, e.g. 4",
            );
        }
        if self.duration.is_zero() || self.duration > MAX_PHASE_DURATION {
            return bad(
                format!(
                    "--duration {}s is outside 1..={}s",
                    self.duration.as_secs(),
                    MAX_PHASE_DURATION.as_secs()
                ),
                "e.g. --duration 10s",
            );
        }
        if self.slice < Duration::from_millis(250) || self.slice > self.duration {
            return bad(
                format!(
                    "--slice {}ms is outside 250ms..=--duration ({}s)",
                    self.slice.as_millis(),
                    self.duration.as_secs()
                ),
                "e.g. --slice 1s; shorter turns give more rounds, each a little noisier",
            );
        }
        if let Some(precision) = self.precision
            && !(0.001..=0.5).contains(&precision)
        {
            return bad(
                format!("--precision {}% is outside 0.1%..=50%", precision * 100.0),
                "e.g. --precision 2.5 (percent of the ratio); add --duration to cap the time it may take",
            );
        }
        if self.phases.is_empty() {
            return bad("no phase selected".into(), "e.g. --phases baseline,cookie");
        }
        if self.phases.contains(&Phase::Mix) && self.users < TransactionKind::ALL.len() {
            return bad(
                format!(
                    "the mix phase needs at least {} users (one per transaction), got --users {}",
                    TransactionKind::ALL.len(),
                    self.users
                ),
                "raise --users, or leave mix out of --phases",
            );
        }
        if self.max_requests_per_phase == 0 || self.max_requests_per_phase > MAX_REQUESTS_PER_PHASE
        {
            return bad(
                format!(
                    "--max-requests {} is outside 1..={MAX_REQUESTS_PER_PHASE}",
                    self.max_requests_per_phase
                ),
                "lower --max-requests",
            );
        }
        Ok(())
    }

    /// Rounds of the interleaved phase: each path gets `duration` in `slice`s.
    fn rounds(&self) -> usize {
        ((self.duration.as_secs_f64() / self.slice.as_secs_f64()).floor() as usize).max(1)
    }

    /// Goose's run time for a phase (after the ramp): the interleaved rounds plus a second in
    /// which the last users get ready, or the duration.
    fn run_seconds(&self, schedule: Option<&schedule::Schedule>) -> u64 {
        match schedule {
            Some(schedule) => schedule.length().as_secs_f64().ceil() as u64 + 1,
            None => self.duration.as_secs(),
        }
    }

    /// Seconds a phase can take: the ramp, the run time and slack for the last requests.
    fn phase_seconds_bound(&self, run_seconds: u64) -> usize {
        let ramp = (self.users as f64 / self.hatch_rate).ceil() as usize;
        ramp + run_seconds as usize + 5
    }
}

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadTarget {
    pub endpoints: Endpoints,
    /// The base URL of the unauthenticated baseline route (`None`: no baseline phase).
    pub baseline: Option<Url>,
    /// Whether non-loopback hosts may be targeted (never for the local environment).
    pub allow_remote: bool,
    /// Where the components' own timing is, for the per-hop breakdown (`None`: not measured).
    pub telemetry: Option<crate::env::ComponentTelemetry>,
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl LoadTarget {
    fn check(&self, options: &LoadOptions) -> Result<(), LoadError> {
        if !self.allow_remote {
            let issuer = Url::parse(&self.endpoints.issuer).ok();
            let urls = [
                ("the app", Some(&self.endpoints.app)),
                ("the IdP", Some(&self.endpoints.idp)),
                ("the issuer", issuer.as_ref()),
                ("the baseline", self.baseline.as_ref()),
            ];
            for (what, url) in urls {
                if let Some(url) = url
                    && !is_loopback(url)
                {
                    return Err(LoadError::NotLoopback {
                        what,
                        url: url.to_string(),
                    });
                }
            }
        }
        let needs_baseline = options
            .phases
            .iter()
            .any(|p| matches!(p, Phase::Baseline | Phase::Mix));
        if needs_baseline && self.baseline.is_none() {
            return Err(LoadError::Options(
                "the baseline (and mix) phase needs a baseline URL".into(),
                "pass --baseline-url (a route to the same app through the gateway without SSO), or leave baseline and mix out of --phases".into(),
            ));
        }
        Ok(())
    }
}

/// Runs every phase in order and returns the report (thresholds not yet judged).
pub async fn run(
    target: &LoadTarget,
    options: &LoadOptions,
    redactor: &Redactor,
    progress: &(dyn Fn(String) + Sync),
) -> Result<LoadReport, LoadError> {
    options.validate()?;
    target.check(options)?;
    redactor.register(&target.endpoints.client_secret);
    redactor.register(&target.endpoints.user.password);
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let setup = |e: &dyn std::fmt::Display| LoadError::Setup(e.to_string());
    let join = |base: &Url| {
        base.join(options.path.trim_start_matches('/'))
            .map_err(|e| setup(&format!("{base} + {}: {e}", options.path)))
    };
    let protected_url = join(&target.endpoints.app)?;
    let baseline_url = target.baseline.as_ref().map(join).transpose()?;
    let ca_pem = target.endpoints.ca_pem.as_deref();
    let mut source = transactions::CredentialSource {
        endpoints: target.endpoints.clone(),
        token_endpoint: None,
        protected: connection::Target::new(&protected_url).map_err(|e| setup(&e))?,
        protected_url: protected_url.clone(),
        hot: connection::Client::new(ca_pem, options.request_timeout).map_err(|e| setup(&e))?,
        grants: crate::browser::http_client(ca_pem).map_err(|e| setup(&e))?,
        redactor: redactor.clone(),
    };
    let baseline = baseline_url
        .as_ref()
        .map(connection::Target::new)
        .transpose()
        .map_err(|e| setup(&e))?;
    let needed: Vec<TransactionKind> = [TransactionKind::Cookie, TransactionKind::Bearer]
        .into_iter()
        .filter(|kind| {
            options
                .phases
                .iter()
                .any(|p| p.transactions().contains(kind))
        })
        .collect();
    if needed.contains(&TransactionKind::Bearer) {
        let discovery = crate::oidc::discover(&source.grants, &target.endpoints.issuer)
            .await
            .map_err(|e| setup(&e))?;
        source.token_endpoint = Some(discovery.token_endpoint);
    }
    let obtaining = Instant::now();
    if !needed.is_empty() {
        progress(format!(
            "obtaining {} credential(s) for each of: {}",
            options.users,
            needed
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let credentials = Arc::new(
        transactions::CredentialPools::obtain(&source, &needed, options.users)
            .await
            .map_err(LoadError::Credentials)?,
    );
    let credential_seconds = obtaining.elapsed().as_secs_f64();
    let mut phases = Vec::new();
    for (phase, kinds) in plan(&options.phases) {
        let schedule = (phase == RunPhase::Interleaved).then(|| {
            let schedule = schedule::Schedule::new(kinds.clone(), options.slice, options.rounds());
            match options.precision {
                Some(fraction) => schedule.stop_when_precise(fraction),
                None => schedule,
            }
        });
        let run_seconds = options.run_seconds(schedule.as_ref());
        progress(match &schedule {
            Some(schedule) => format!(
                "phase {}: {} users, hatch {}/s, {} round(s) of {} × {:.2}s",
                phase.name(),
                options.users,
                options.hatch_rate,
                schedule.rounds(),
                kinds
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(" → "),
                options.slice.as_secs_f64()
            ),
            None => format!(
                "phase {}: {} users, hatch {}/s, {}s",
                phase.name(),
                options.users,
                options.hatch_rate,
                run_seconds
            ),
        });
        let context = Arc::new(transactions::PhaseContext {
            source: source.clone(),
            baseline: baseline.clone(),
            credentials: Arc::clone(&credentials),
            recorder: recorder::Recorder::new(
                options.users,
                options.phase_seconds_bound(run_seconds),
                options.max_requests_per_phase,
                schedule,
            ),
        });
        let telemetry = target.telemetry.as_ref().map(hops::PhaseTelemetry::start);
        let cpu_before = cpu::CpuSample::now();
        on_generator_thread(
            phase,
            kinds.clone(),
            Arc::clone(&context),
            options.clone(),
            run_seconds,
        )
        .await?;
        let cpu = cpu_before.until(&cpu::CpuSample::now());
        let mut report =
            PhaseReport::from_recorder(phase, &kinds, options.users, &context.recorder, cpu);
        progress(report.one_line());
        if let Some(telemetry) = telemetry {
            report.hops = Some(telemetry.finish(&context.recorder, &report));
        }
        phases.push(report);
    }
    Ok(LoadReport::new(
        started_at,
        protected_url.to_string(),
        baseline_url.map(|u| u.to_string()),
        options.clone(),
        credential_seconds,
        phases,
    ))
}

/// The goose configuration every phase uses: no controllers, no report files, no goose
/// metrics (the transactions record their own), no console output.
pub fn goose_configuration(
    host: &Url,
    users: usize,
    hatch_rate: f64,
    seconds: u64,
) -> GooseConfiguration {
    let mut config = GooseConfiguration::default();
    config.host = Some(host.as_str().trim_end_matches('/').to_string());
    config.users = Some(users);
    config.increase_rate = Some(format!("{hatch_rate}"));
    config.run_time = Some(format!("{seconds}s"));
    config.no_telnet = true;
    config.no_autostart = false;
    config.no_metrics = true;
    config.no_print_metrics = true;
    config.no_error_summary = true;
    config.no_gzip = true;
    config.quiet = 1;
    config
}

/// Runs a phase's goose users on one dedicated thread with its own single-threaded runtime, as
/// `wrk -t1` does: no work stealing or cross-thread wake-ups on the hot path, and on a small
/// machine the other cores stay with the system under test.
async fn on_generator_thread(
    phase: RunPhase,
    kinds: Vec<TransactionKind>,
    context: Arc<transactions::PhaseContext>,
    options: LoadOptions,
    run_seconds: u64,
) -> Result<(), LoadError> {
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("meshauth-load".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| LoadError::Setup(format!("the generator's runtime: {e}")))
                .and_then(|runtime| {
                    runtime.block_on(run_phase(phase, &kinds, &context, &options, run_seconds))
                });
            let _ = done.send(result);
        })
        .map_err(|e| LoadError::Setup(format!("the generator's thread: {e}")))?;
    finished.await.map_err(|_| LoadError::Goose {
        phase: phase.name(),
        detail: "the generator thread ended without a result".into(),
    })?
}

async fn run_phase(
    phase: RunPhase,
    kinds: &[TransactionKind],
    context: &Arc<transactions::PhaseContext>,
    options: &LoadOptions,
    run_seconds: u64,
) -> Result<(), LoadError> {
    let goose_error = |e: goose::GooseError| LoadError::Goose {
        phase: phase.name(),
        detail: e.to_string(),
    };
    let config = goose_configuration(
        &context.source.endpoints.app,
        options.users,
        options.hatch_rate,
        run_seconds,
    );
    let mut attack = GooseAttack::initialize_with_config(config).map_err(goose_error)?;
    let steps: Vec<(transactions::Step, usize)> = match phase {
        RunPhase::Interleaved => vec![(transactions::Step::Interleaved, 1)],
        RunPhase::LoginStorm => vec![(transactions::Step::Only(TransactionKind::LoginStorm), 1)],
        RunPhase::Mix => kinds
            .iter()
            .map(|&kind| (transactions::Step::Only(kind), kind.mix_weight()))
            .collect(),
    };
    for (step, weight) in steps {
        let scenario = Scenario::new(step.name())
            .register_transaction(transactions::transaction(context, step))
            .set_weight(weight)
            .map_err(goose_error)?;
        attack = attack.register_scenario(scenario);
    }
    // Users share one goose client they never use (the transactions use their own
    // connections), so goose builds one client rather than one per user.
    let attack = attack
        .set_client_builder_without_cookies(
            goose::client::GooseClientBuilder::new().without_cookies(),
        )
        .map_err(goose_error)?;
    let wall = Instant::now();
    attack.execute().await.map_err(goose_error)?;
    tracing::debug!(
        phase = phase.name(),
        seconds = wall.elapsed().as_secs_f64(),
        "phase done"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(options: LoadOptions) -> String {
        options
            .validate()
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn bad_options_are_refused_with_a_fix() {
        assert!(LoadOptions::default().validate().is_ok());
        let mix_of_three = rejected(LoadOptions {
            users: 3,
            ..LoadOptions::default()
        });
        assert!(mix_of_three.contains("at least 4 users"), "{mix_of_three}");
        assert!(mix_of_three.contains("how to fix"), "{mix_of_three}");
        let short_slice = rejected(LoadOptions {
            slice: Duration::from_millis(100),
            ..LoadOptions::default()
        });
        assert!(short_slice.contains("--slice 100ms"), "{short_slice}");
        let slice_over_duration = rejected(LoadOptions {
            slice: Duration::from_secs(20),
            ..LoadOptions::default()
        });
        assert!(
            slice_over_duration.contains("--duration"),
            "{slice_over_duration}"
        );
        let precision = rejected(LoadOptions {
            precision: Some(0.9),
            ..LoadOptions::default()
        });
        assert!(precision.contains("--precision 90%"), "{precision}");
    }

    #[test]
    fn baseline_cookie_and_bearer_share_one_interleaved_phase() {
        let planned = plan(&[
            Phase::Mix,
            Phase::Bearer,
            Phase::LoginStorm,
            Phase::Baseline,
        ]);
        let phases: Vec<RunPhase> = planned.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            phases,
            [RunPhase::Interleaved, RunPhase::LoginStorm, RunPhase::Mix]
        );
        assert_eq!(
            planned[0].1,
            [TransactionKind::Baseline, TransactionKind::Bearer]
        );
        assert!(plan(&[Phase::LoginStorm])[0].0 == RunPhase::LoginStorm);
    }
}
