//! The goose transactions. Logins go through the project's own [`Browser`] flow and token
//! grants through [`oidc::password_grant`]; the hot paths send plain requests with the
//! credential each user obtained, and record into the phase's [`Recorder`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use goose::goose::TransactionFunction;
use goose::prelude::{GooseUser, Transaction, TransactionResult};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue};
use url::Url;

use super::TransactionKind;
use super::connection::{self, Connections, Target};
use super::recorder::Recorder;
use super::schedule::Turn;
use crate::browser::Browser;
use crate::env::Endpoints;
use crate::oidc;
use crate::redact::Redactor;

/// After a failed login or grant, a user waits this long before trying again, so a broken
/// IdP is reported as errors rather than hammered.
const CREDENTIAL_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What every user of a phase shares.
pub struct PhaseContext {
    pub source: CredentialSource,
    /// The unauthenticated baseline's target.
    pub baseline: Option<Target>,
    pub recorder: Recorder,
    pub credentials: Arc<CredentialPools>,
}

/// Where the hot paths go and how credentials are obtained.
#[derive(Clone)]
pub struct CredentialSource {
    pub endpoints: Endpoints,
    /// From the issuer's discovery document; `None` when no phase needs a token.
    pub token_endpoint: Option<Url>,
    /// The URL the hot paths request behind SSO (and the login flows start at).
    pub protected_url: Url,
    pub protected: Target,
    /// The hot paths' client: a keep-alive connection per user.
    pub hot: connection::Client,
    /// Token grants' client, trusting the run's CA; no cookies, no redirects.
    pub grants: reqwest::Client,
    pub redactor: Redactor,
}

/// Credentials obtained before the phases start (one per user and path), so a phase times
/// only its hot path. A slot is replaced when the gateway rejects it.
#[derive(Default)]
pub struct CredentialPools {
    cookie: Vec<Mutex<Credential>>,
    bearer: Vec<Mutex<Credential>>,
}

impl CredentialPools {
    fn pool(&self, kind: TransactionKind) -> &[Mutex<Credential>] {
        match kind {
            TransactionKind::Cookie => &self.cookie,
            TransactionKind::Bearer => &self.bearer,
            TransactionKind::Baseline | TransactionKind::LoginStorm => &[],
        }
    }

    fn get(&self, kind: TransactionKind, user: usize) -> Option<Credential> {
        let pool = self.pool(kind);
        (!pool.is_empty())
            .then(|| pool[user % pool.len()].lock().ok().map(|c| c.clone()))
            .flatten()
    }

    fn replace(&self, kind: TransactionKind, user: usize, fresh: Credential) {
        let pool = self.pool(kind);
        if !pool.is_empty()
            && let Ok(mut slot) = pool[user % pool.len()].lock()
        {
            *slot = fresh;
        }
    }

    /// Obtains `count` credentials for each of `kinds` (cookie: the browser login; bearer: a
    /// password grant), a few at a time. Fails on the first credential that cannot be
    /// obtained: a load run without its credentials would measure nothing.
    pub async fn obtain(
        source: &CredentialSource,
        kinds: &[TransactionKind],
        count: usize,
    ) -> Result<Self, String> {
        let mut pools = Self::default();
        for &kind in kinds {
            let mut obtained = Vec::with_capacity(count);
            while obtained.len() < count {
                let batch = (count - obtained.len()).min(CONCURRENT_LOGINS);
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..batch {
                    let source = source.clone();
                    set.spawn(async move { obtain(&source, kind).await });
                }
                while let Some(joined) = set.join_next().await {
                    let credential = joined.map_err(|e| format!("login task failed: {e}"))??;
                    obtained.push(Mutex::new(credential));
                }
            }
            match kind {
                TransactionKind::Cookie => pools.cookie = obtained,
                TransactionKind::Bearer => pools.bearer = obtained,
                TransactionKind::Baseline | TransactionKind::LoginStorm => {}
            }
        }
        Ok(pools)
    }
}

/// How many logins run at once while the pools fill: quick, yet gentle on a 2-core IdP.
const CONCURRENT_LOGINS: usize = 4;

/// A goose user's credential: the header it sends on the hot path.
#[derive(Clone)]
pub struct Credential {
    name: HeaderName,
    value: HeaderValue,
}

/// What a goose user keeps between iterations.
#[derive(Clone, Default)]
struct UserState {
    /// Holds every credential its step needs; counted once by the recorder.
    ready: bool,
    cookie: Option<Credential>,
    bearer: Option<Credential>,
    connections: Connections,
}

impl UserState {
    fn credential(&self, kind: TransactionKind) -> Option<&Credential> {
        match kind {
            TransactionKind::Cookie => self.cookie.as_ref(),
            TransactionKind::Bearer => self.bearer.as_ref(),
            TransactionKind::Baseline | TransactionKind::LoginStorm => None,
        }
    }

    fn set_credential(&mut self, kind: TransactionKind, credential: Credential) {
        match kind {
            TransactionKind::Cookie => self.cookie = Some(credential),
            TransactionKind::Bearer => self.bearer = Some(credential),
            TransactionKind::Baseline | TransactionKind::LoginStorm => {}
        }
    }
}

/// What a goose transaction runs each iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Only(TransactionKind),
    /// The phase's [`Schedule`](super::schedule::Schedule) says which path, turn by turn.
    Interleaved,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Only(kind) => kind.name(),
            Step::Interleaved => "interleaved",
        }
    }
}

type BoxedStep<'r> = Pin<Box<dyn Future<Output = TransactionResult> + Send + 'r>>;

fn function<F>(f: F) -> TransactionFunction
where
    F: for<'r> Fn(&'r mut GooseUser) -> BoxedStep<'r> + Send + Sync + 'static,
{
    Arc::new(f)
}

/// The goose transaction for `step`, bound to the phase's context.
pub fn transaction(context: &Arc<PhaseContext>, step: Step) -> Transaction {
    let context = Arc::clone(context);
    Transaction::new(function(move |user| {
        let context = Arc::clone(&context);
        Box::pin(async move {
            run_step(&context, step, user).await;
            Ok(())
        })
    }))
    .set_name(step.name())
}

async fn run_step(context: &PhaseContext, step: Step, user: &mut GooseUser) {
    if step == Step::Only(TransactionKind::LoginStorm) {
        return login_storm(context, user).await;
    }
    let index = user.weighted_users_index;
    if user.get_session_data::<UserState>().is_none() {
        user.set_session_data(UserState::default());
    }
    let Some(state) = user.get_session_data_mut::<UserState>() else {
        return;
    };
    // A fixed step measures its one path; the interleaved step follows the phase's schedule.
    let (kinds, turn) = match (&step, context.recorder.schedule()) {
        (Step::Only(kind), _) => (std::slice::from_ref(kind), Turn::Measure(*kind)),
        (Step::Interleaved, Some(schedule)) => (
            schedule.kinds(),
            context.recorder.turn().unwrap_or(Turn::Done),
        ),
        (Step::Interleaved, None) => {
            // Registered only with a schedule (see `run_phase`); never measure without one.
            goose::trigger_killswitch("meshauth: an interleaved phase has no schedule");
            return;
        }
    };
    if !state.ready {
        if !take_credentials(context, state, kinds, index).await {
            return;
        }
        state.ready = true;
        context.recorder.user_ready();
    }
    match turn {
        Turn::WarmUp(kind) => hot_path(context, state, kind, index, false).await,
        Turn::Measure(kind) => hot_path(context, state, kind, index, true).await,
        Turn::Done => {
            // Every round is over (or the ratios are precise enough): stop goose now rather
            // than at its run time.
            goose::trigger_killswitch("meshauth: the interleaved rounds are complete");
            tokio::time::sleep(IDLE_PAUSE).await
        }
    }
}

/// Between the last round and goose's stop, users idle at this pace.
const IDLE_PAUSE: Duration = Duration::from_millis(20);

/// Gives the user the pooled credential of each of `kinds` that needs one.
async fn take_credentials(
    context: &PhaseContext,
    state: &mut UserState,
    kinds: &[TransactionKind],
    index: usize,
) -> bool {
    for &kind in kinds {
        if !matches!(kind, TransactionKind::Cookie | TransactionKind::Bearer) {
            continue;
        }
        let Some(credential) = context.credentials.get(kind, index) else {
            context
                .recorder
                .error(kind, "no credential was obtained for this path");
            tokio::time::sleep(CREDENTIAL_RETRY_PAUSE).await;
            return false;
        };
        state.set_credential(kind, credential);
    }
    true
}

/// One hot-path request of `kind`, timed from send to the end of the body. Successes are
/// recorded when `measured`; errors always. A rejected credential is counted as an error and
/// replaced, and the user carries on.
async fn hot_path(
    context: &PhaseContext,
    state: &mut UserState,
    kind: TransactionKind,
    index: usize,
    measured: bool,
) {
    let target = match kind {
        TransactionKind::Baseline => match &context.baseline {
            Some(target) => target,
            None => {
                context.recorder.error(kind, "no baseline URL configured");
                tokio::time::sleep(CREDENTIAL_RETRY_PAUSE).await;
                return;
            }
        },
        _ => &context.source.protected,
    };
    let header = state
        .credential(kind)
        .map(|c| (c.name.clone(), c.value.clone()));
    let started = Instant::now();
    let response = context
        .source
        .hot
        .get(
            &mut state.connections,
            target,
            // Warm-up requests are not in the generator's figures: nor in the proxies' lines.
            HeaderValue::from_static(if measured { kind.name() } else { "warm-up" }),
            header.as_ref().map(|(n, v)| (n, v)),
        )
        .await;
    let elapsed = started.elapsed();
    let response = match response {
        Ok(response) => response,
        Err(error) => return context.recorder.error(kind, error.to_string()),
    };
    if response.status.is_success() {
        if measured {
            context.recorder.ok(kind, elapsed);
        }
        return;
    }
    let (what, rejected) = match response.status {
        StatusCode::UNAUTHORIZED => ("HTTP 401 (credential rejected or expired)".into(), true),
        s if s.is_redirection() && response.redirects_to_sign_in => (
            format!(
                "HTTP {} to sign-in (session rejected or expired)",
                s.as_u16()
            ),
            true,
        ),
        StatusCode::FORBIDDEN => ("HTTP 403".into(), false),
        s if s.is_server_error() => (format!("HTTP {} (server error)", s.as_u16()), false),
        s => (format!("HTTP {}", s.as_u16()), false),
    };
    context.recorder.error(kind, what);
    if !rejected || kind == TransactionKind::Baseline {
        return;
    }
    match obtain(&context.source, kind).await {
        Ok(fresh) => {
            context.credentials.replace(kind, index, fresh.clone());
            state.set_credential(kind, fresh);
        }
        Err(error) => {
            context.recorder.error(kind, error);
            tokio::time::sleep(CREDENTIAL_RETRY_PAUSE).await;
        }
    }
}

/// The whole browser flow per iteration: open the app, sign in at the IdP, come back with a
/// session cookie. Measures the IdP's (and oauth2-proxy's) cost of a login.
async fn login_storm(context: &PhaseContext, user: &mut GooseUser) {
    if user.get_session_data::<UserState>().is_none() {
        user.set_session_data(UserState {
            ready: true,
            ..UserState::default()
        });
        context.recorder.user_ready();
    }
    let started = Instant::now();
    match browser_login(&context.source).await {
        Ok(_) => context
            .recorder
            .ok(TransactionKind::LoginStorm, started.elapsed()),
        Err(error) => {
            context.recorder.error(TransactionKind::LoginStorm, error);
            tokio::time::sleep(CREDENTIAL_RETRY_PAUSE).await;
        }
    }
}

/// Logs in with a fresh [`Browser`] and returns the session cookie header it ends with.
async fn browser_login(context: &CredentialSource) -> Result<HeaderValue, String> {
    let endpoints = &context.endpoints;
    let mut browser = Browser::new(endpoints.ca_pem.as_deref(), context.redactor.clone())
        .map_err(|e| format!("login: {e}"))?;
    let page = browser
        .open_and_sign_in(
            context.protected_url.clone(),
            &endpoints.user.username,
            endpoints.user.password.expose(),
        )
        .await
        .map_err(|e| format!("login: {}", short(&context.redactor.redact(&e.to_string()))))?;
    if !page.status.is_success() {
        return Err(format!("login: ended on HTTP {}", page.status.as_u16()));
    }
    let cookie = browser
        .cookie_header_for(&context.protected_url)
        .ok_or("login: no session cookie for the app after the flow")?;
    let mut value =
        HeaderValue::from_str(cookie.expose()).map_err(|_| "login: unusable cookie value")?;
    value.set_sensitive(true);
    Ok(value)
}

async fn obtain(context: &CredentialSource, kind: TransactionKind) -> Result<Credential, String> {
    match kind {
        TransactionKind::Cookie => Ok(Credential {
            name: COOKIE,
            value: browser_login(context).await?,
        }),
        TransactionKind::Bearer => {
            let endpoints = &context.endpoints;
            let token_endpoint = context
                .token_endpoint
                .as_ref()
                .ok_or("token grant: the issuer was not discovered")?;
            let grant = oidc::password_grant(
                &context.grants,
                token_endpoint,
                &endpoints.client_id,
                &endpoints.client_secret,
                &endpoints.user.username,
                endpoints.user.password.expose(),
            )
            .await
            .map_err(|e| format!("token grant: {}", short(&e.to_string())))?;
            let token = grant
                .access_token
                .ok_or_else(|| format!("token grant: HTTP {}", grant.status.as_u16()))?;
            context.redactor.register(&token);
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| "token grant: unusable token")?;
            value.set_sensitive(true);
            Ok(Credential {
                name: AUTHORIZATION,
                value,
            })
        }
        TransactionKind::Baseline | TransactionKind::LoginStorm => {
            Err(format!("{} needs no credential", kind.name()))
        }
    }
}

/// Error kinds are map keys: keep them short and free of per-request detail.
fn short(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    let mut cut: String = first.chars().take(120).collect();
    if cut.len() < first.len() {
        cut.push('…');
    }
    cut
}
