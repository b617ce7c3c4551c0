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
use super::recorder::Recorder;
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
    /// The unauthenticated baseline's URL.
    pub baseline_url: Option<Url>,
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
    /// One client for every user's hot-path requests and token grants (HTTP/1.1, a connection
    /// per concurrent request), trusting the run's CA; no cookies, no redirects.
    pub client: reqwest::Client,
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

type BoxedStep<'r> = Pin<Box<dyn Future<Output = TransactionResult> + Send + 'r>>;

fn function<F>(f: F) -> TransactionFunction
where
    F: for<'r> Fn(&'r mut GooseUser) -> BoxedStep<'r> + Send + Sync + 'static,
{
    Arc::new(f)
}

/// The goose transaction for `kind`, bound to the phase's context.
pub fn transaction(context: &Arc<PhaseContext>, kind: TransactionKind) -> Transaction {
    let context = Arc::clone(context);
    Transaction::new(function(move |user| {
        let context = Arc::clone(&context);
        Box::pin(async move {
            match kind {
                TransactionKind::Baseline => baseline(&context, user).await,
                TransactionKind::Cookie | TransactionKind::Bearer => {
                    authenticated(&context, kind, user).await
                }
                TransactionKind::LoginStorm => login_storm(&context, user).await,
            }
            Ok(())
        })
    }))
    .set_name(kind.name())
}

async fn baseline(context: &PhaseContext, user: &mut GooseUser) {
    if user.get_session_data::<Credential>().is_none() {
        // The baseline needs no credential; the marker only counts the user as ready once.
        user.set_session_data(Credential {
            name: HeaderName::from_static("x-meshauth-load"),
            value: HeaderValue::from_static("baseline"),
        });
        context.recorder.user_ready();
    }
    let Some(url) = &context.baseline_url else {
        context
            .recorder
            .error(TransactionKind::Baseline, "no baseline URL configured");
        tokio::time::sleep(CREDENTIAL_RETRY_PAUSE).await;
        return;
    };
    request(context, TransactionKind::Baseline, url, None).await;
}

async fn authenticated(context: &PhaseContext, kind: TransactionKind, user: &mut GooseUser) {
    let index = user.weighted_users_index;
    let credential = match user.get_session_data::<Credential>() {
        Some(credential) => credential.clone(),
        None => {
            let Some(credential) = context.credentials.get(kind, index) else {
                context
                    .recorder
                    .error(kind, "no credential was obtained for this path");
                tokio::time::sleep(CREDENTIAL_RETRY_PAUSE).await;
                return;
            };
            user.set_session_data(credential.clone());
            context.recorder.user_ready();
            credential
        }
    };
    let outcome = request(
        context,
        kind,
        &context.source.protected_url,
        Some(&credential),
    )
    .await;
    if outcome == Outcome::CredentialRejected {
        // Counted as an error above; the user gets a fresh credential and carries on.
        match obtain(&context.source, kind).await {
            Ok(fresh) => {
                context.credentials.replace(kind, index, fresh.clone());
                user.set_session_data(fresh);
            }
            Err(error) => {
                context.recorder.error(kind, error);
                tokio::time::sleep(CREDENTIAL_RETRY_PAUSE).await;
            }
        }
    }
}

/// The whole browser flow per iteration: open the app, sign in at the IdP, come back with a
/// session cookie. Measures the IdP's (and oauth2-proxy's) cost of a login.
async fn login_storm(context: &PhaseContext, user: &mut GooseUser) {
    if user.get_session_data::<Credential>().is_none() {
        user.set_session_data(Credential {
            name: HeaderName::from_static("x-meshauth-load"),
            value: HeaderValue::from_static("login-storm"),
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
                &context.client,
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

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    CredentialRejected,
    Failed,
}

/// One hot-path request, timed to the end of the body (the body is read so the connection is
/// reused, as a browser would).
async fn request(
    context: &PhaseContext,
    kind: TransactionKind,
    url: &Url,
    credential: Option<&Credential>,
) -> Outcome {
    let mut builder = context.source.client.get(url.clone());
    if let Some(credential) = credential {
        builder = builder.header(credential.name.clone(), credential.value.clone());
    }
    let started = Instant::now();
    let response = match builder.send().await {
        Ok(response) => response,
        Err(error) => {
            context.recorder.error(kind, transport_error(&error));
            return Outcome::Failed;
        }
    };
    let status = response.status();
    let location_is_login = response
        .headers()
        .get(reqwest::header::LOCATION)
        .is_some_and(|l| l.as_bytes().windows(6).any(|w| w == b"oauth2"));
    if let Err(error) = response.bytes().await {
        context.recorder.error(kind, transport_error(&error));
        return Outcome::Failed;
    }
    let elapsed = started.elapsed();
    if status.is_success() {
        context.recorder.ok(kind, elapsed);
        return Outcome::Ok;
    }
    let (what, rejected) = match status {
        StatusCode::UNAUTHORIZED => ("HTTP 401 (credential rejected or expired)".into(), true),
        StatusCode::FOUND if location_is_login => (
            "HTTP 302 to sign-in (session rejected or expired)".into(),
            true,
        ),
        StatusCode::FORBIDDEN => ("HTTP 403".into(), false),
        s if s.is_server_error() => (format!("HTTP {} (server error)", s.as_u16()), false),
        s => (format!("HTTP {}", s.as_u16()), false),
    };
    context.recorder.error(kind, what);
    if rejected {
        Outcome::CredentialRejected
    } else {
        Outcome::Failed
    }
}

fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else if error.is_body() || error.is_decode() {
        "response body failed".into()
    } else {
        "request failed".into()
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
