//! A browser-like HTTP client: keeps cookies, follows redirects itself so that every hop is
//! recorded (with cookie values and tokens redacted), and trusts only the CA it is given.

pub mod curl_caller;
pub mod form;
mod jar;
pub mod raw;
pub mod tls_hello;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use reqwest_cookie_store::CookieStoreMutex;
use serde::Serialize;
use url::Url;

use crate::redact::{Redactor, Secret};

pub use jar::RefusedCookie;

pub use form::{
    FormError, HtmlForm, LoginForm, find_broker_link, find_login_error, find_login_form,
    find_provider_button,
};

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("the per-run CA certificate is not valid PEM: {0}")]
    Trust(#[source] reqwest::Error),
    #[error("the workload certificate and key are not a usable client identity: {0}")]
    Identity(#[source] reqwest::Error),
    #[error("the mesh CA, workload certificate or key is not usable for mTLS: {0}")]
    MeshTls(String),
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The server never answered: connection refused, reset or closed, TLS handshake failed.
    #[error("{method} {url} failed: {detail}")]
    NoResponse {
        method: String,
        url: String,
        detail: String,
    },
    #[error("{method} {url} failed: {detail}")]
    Request {
        method: String,
        url: String,
        detail: String,
    },
    #[error("more than {limit} redirects starting at {start}; last hop went to {last}")]
    TooManyRedirects {
        limit: usize,
        start: String,
        last: String,
    },
    #[error("{status} redirect from {url} has no usable Location header")]
    BadLocation { status: u16, url: String },
    #[error(
        "the browser was sent off the deployment, to {to} (from {from}); not followed: the harness only talks to the deployment's own hosts"
    )]
    OffSite { from: String, to: String },
    #[error(
        "the IdP's own pages are behind the auth check, so the sign-in never reaches its login \
         form: {request} was answered by the auth proxy ({answer}) instead of the IdP, which \
         sends the browser to sign in again, and again\n\
         how to fix: exempt the IdP's path from ext_authz (in the CUSTOM AuthorizationPolicy, \
         notPaths: [\"{idp_path}*\"] beside /oauth2/*), or publish the IdP on a host of its own"
    )]
    IdpBehindAuthCheck {
        request: String,
        answer: String,
        idp_path: String,
    },
}

/// Why a browser sign-in could not be completed (a wrong password is not an error here: the
/// IdP answers it with a page, which the caller judges).
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Browser(#[from] BrowserError),
    #[error(transparent)]
    Form(#[from] FormError),
    #[error(
        "no link to the upstream identity provider {alias:?} on {url}\nhow to fix: add the \
         identity provider to the realm (and show it on the login page), or add its link's \
         selector to fixtures/idp/login-pages.yaml"
    )]
    NoBrokerLink { alias: String, url: String },
    #[error(
        "the sign-in cannot complete over plain HTTP: the server set {cookies} with the Secure \
         attribute on {url}, and a browser neither stores nor sends back a Secure cookie over \
         http://, so oauth2-proxy never gets its cookies back and the sign-in {ended}\n\
         how to fix: serve the app and its callback over HTTPS (then the session cookie also \
         stays encrypted on the wire), or set oauth2-proxy's cookie_secure = false, which sends \
         the session cookie unencrypted to anyone on the path"
    )]
    SecureCookieOverHttp {
        cookies: String,
        url: String,
        ended: String,
    },
}

/// One request/response exchange, as shown in reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hop {
    pub method: String,
    pub url: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Names of the cookies the response set; values are never recorded.
    pub set_cookies: Vec<String>,
    pub duration_ms: u64,
}

/// `GET https://… 302 -> https://… [set-cookie: a, b] (12 ms)`: one line per hop in text reports.
impl std::fmt::Display for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.method, self.url, self.status)?;
        if let Some(location) = &self.location {
            write!(f, " -> {location}")?;
        }
        if !self.set_cookies.is_empty() {
            write!(f, " [set-cookie: {}]", self.set_cookies.join(", "))?;
        }
        write!(f, " ({} ms)", self.duration_ms)
    }
}

/// The final response of a navigation.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Form(Vec<(String, String)>),
}

pub struct Browser {
    client: reqwest::Client,
    cookies: Arc<CookieStoreMutex>,
    redactor: Redactor,
    max_redirects: usize,
    hops: Vec<Hop>,
    /// The attributes of the last `Set-Cookie` seen for each cookie name (never the value).
    cookie_attributes: Vec<CookieAttributes>,
    /// When not empty, the only hosts redirects are followed to.
    confined_to: Vec<String>,
    /// Secure cookies plain-HTTP responses tried to set (see [`jar`]).
    refused_cookies: Arc<std::sync::Mutex<Vec<RefusedCookie>>>,
    public_origins: Arc<std::sync::Mutex<Vec<String>>>,
    /// The IdP's public base URL, to tell its answers from the auth proxy's.
    identity_provider: Option<Url>,
    /// The last authorization response this browser delivered (a URL carrying `code` and
    /// `state`): what an attacker who saw it could send again.
    last_callback: Option<Secret>,
    /// Every response header so far that handed this browser a token or an identity the
    /// auth layer holds for the app (names only, never values).
    identity_exposures: Vec<IdentityExposure>,
}

/// A response header that hands the browser what only the app should get: a credential, or
/// an identity header the auth layer adds for the app. Its value is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityExposure {
    pub method: String,
    pub url: String,
    pub header: String,
    pub why: &'static str,
}

impl std::fmt::Display for IdentityExposure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} from {} {} ({})",
            self.header, self.method, self.url, self.why
        )
    }
}

/// Header names (in any case, `_` or `-`) that carry a user's identity or credential from the
/// auth layer to the app: a browser has no use for them, and script on the page can read them.
const IDENTITY_HEADER_NAMES: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-id-token",
    "x-access-token",
    "remote-user",
    "x-remote-user",
];
const IDENTITY_HEADER_PREFIXES: &[&str] = &["x-auth-request-"];

/// Why a response header with this name and value is an identity sent to the browser.
pub fn identity_exposure(name: &str, value: &[u8]) -> Option<&'static str> {
    let name = name.to_ascii_lowercase().replace('_', "-");
    if IDENTITY_HEADER_NAMES.contains(&name.as_str())
        || IDENTITY_HEADER_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        return Some("a header the auth layer sets for the app");
    }
    // Any other header, whatever its name, that carries a JWT. Cookies are left to the
    // cookie checks: the IdP's own session cookies are JWTs (Keycloak's KEYCLOAK_IDENTITY),
    // HttpOnly, and the browser's to hold.
    if name == "set-cookie" {
        return None;
    }
    let text = String::from_utf8_lossy(value);
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .any(looks_like_jwt)
        .then_some("its value holds a JWT")
}

/// A compact JWS: a base64url JSON header (`eyJ`), a payload and a signature part.
fn looks_like_jwt(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3 && parts[0].starts_with("eyJ") && parts[1].len() >= 4
}

/// A cookie's security attributes as the server set them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CookieAttributes {
    pub name: String,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: Option<String>,
    /// The `Domain` attribute: absent means the cookie goes back to this host only.
    pub domain: Option<String>,
    pub path: Option<String>,
}

impl CookieAttributes {
    /// Parses a `Set-Cookie` header value, keeping only the name and attributes.
    pub fn parse(set_cookie: &str) -> Option<Self> {
        let mut parts = set_cookie.split(';');
        let name = parts.next()?.split('=').next()?.trim().to_string();
        if name.is_empty() {
            return None;
        }
        let mut attributes = Self {
            name,
            secure: false,
            http_only: false,
            same_site: None,
            domain: None,
            path: None,
        };
        for part in parts {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            match key.trim().to_ascii_lowercase().as_str() {
                "secure" => attributes.secure = true,
                "httponly" => attributes.http_only = true,
                "samesite" => attributes.same_site = Some(value.trim().to_string()),
                "domain" => attributes.domain = Some(value.trim().to_string()),
                "path" => attributes.path = Some(value.trim().to_string()),
                _ => {}
            }
        }
        Some(attributes)
    }
}

/// `cookie` with another value, its name, domain, path and flags kept, ready to insert.
fn with_value(cookie: &cookie_store::Cookie<'_>, value: &str) -> cookie_store::RawCookie<'static> {
    let mut raw = cookie_store::RawCookie::new(cookie.name().to_string(), value.to_string());
    raw.set_path(cookie.path().unwrap_or("/").to_string());
    if let Some(domain) = cookie.domain() {
        raw.set_domain(domain.to_string());
    }
    raw.set_secure(cookie.secure());
    raw.set_http_only(cookie.http_only());
    raw
}

/// An HTTP client trusting the platform roots plus `extra_ca_pem`; no cookies, no redirects.
pub fn http_client(extra_ca_pem: Option<&str>) -> Result<reqwest::Client, BrowserError> {
    builder(extra_ca_pem)?.build().map_err(BrowserError::Client)
}

fn builder(extra_ca_pem: Option<&str>) -> Result<reqwest::ClientBuilder, BrowserError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("meshauth/", env!("CARGO_PKG_VERSION")))
        .no_proxy();
    if let Some(pem) = extra_ca_pem {
        let certificate =
            reqwest::Certificate::from_pem(pem.as_bytes()).map_err(BrowserError::Trust)?;
        builder = builder.tls_certs_merge([certificate]);
    }
    Ok(builder)
}

impl Browser {
    /// A browser trusting the platform roots plus `extra_ca_pem` (the per-run CA). Certificate
    /// verification is never disabled.
    pub fn new(extra_ca_pem: Option<&str>, redactor: Redactor) -> Result<Self, BrowserError> {
        let cookies = Arc::new(CookieStoreMutex::default());
        let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
        let public_origins = Arc::new(std::sync::Mutex::new(Vec::new()));
        let jar = jar::Jar::new(
            Arc::clone(&cookies),
            Arc::clone(&refused),
            Arc::clone(&public_origins),
        );
        let client = builder(extra_ca_pem)?
            .cookie_provider(Arc::new(jar))
            .build()
            .map_err(BrowserError::Client)?;
        let mut browser = Self::with_client(client, cookies, redactor);
        browser.refused_cookies = refused;
        browser.public_origins = public_origins;
        Ok(browser)
    }

    fn with_client(
        client: reqwest::Client,
        cookies: Arc<CookieStoreMutex>,
        redactor: Redactor,
    ) -> Self {
        Self {
            client,
            cookies,
            redactor,
            max_redirects: 20,
            hops: Vec::new(),
            cookie_attributes: Vec::new(),
            confined_to: Vec::new(),
            refused_cookies: Arc::default(),
            public_origins: Arc::default(),
            identity_provider: None,
            last_callback: None,
            identity_exposures: Vec::new(),
        }
    }

    /// Every response header so far that handed this browser a token or an identity meant
    /// for the app.
    pub fn identity_exposures(&self) -> &[IdentityExposure] {
        &self.identity_exposures
    }

    /// Where the IdP is published (`https://app/auth/`, `http://idp/`): a request there that
    /// the auth proxy answers is diagnosed as the IdP being behind the auth check.
    pub fn set_identity_provider(&mut self, base: Url) {
        self.identity_provider = Some(base);
    }

    fn is_identity_provider(&self, url: &Url) -> bool {
        self.identity_provider.as_ref().is_some_and(|base| {
            url.origin() == base.origin() && url.path().starts_with(base.path())
        })
    }

    /// [`BrowserError::IdpBehindAuthCheck`] when `page` is the auth proxy's answer at an IdP
    /// address (its sign-in page, or the last hops' redirect back to sign-in).
    pub fn idp_behind_auth_check_at(&self, page: &Page) -> Option<BrowserError> {
        self.idp_behind_auth_check(0, Some(page))
    }

    /// The first hop since `from` where a request to the IdP got the auth proxy's answer:
    /// a redirect to its own endpoints (`/oauth2/…` but the callback) or to a new
    /// authorization request, or `page` (where the navigation ended) is the auth proxy's
    /// sign-in page at an IdP URL.
    fn idp_behind_auth_check(&self, from: usize, page: Option<&Page>) -> Option<BrowserError> {
        let idp_path = self.identity_provider.as_ref()?.path().to_string();
        let intercepted = self.hops.get(from..)?.iter().find_map(|hop| {
            let url = Url::parse(&hop.url).ok()?;
            if !self.is_identity_provider(&url) {
                return None;
            }
            let next = url.join(hop.location.as_deref()?).ok()?;
            let to_auth_proxy =
                next.path().contains("/oauth2/") && !next.path().ends_with("/oauth2/callback");
            let new_authorization = self.is_identity_provider(&next)
                && next.query_pairs().any(|(k, _)| k == "response_type");
            (to_auth_proxy || new_authorization).then(|| (hop.clone(), next))
        });
        if let Some((hop, next)) = intercepted {
            return Some(BrowserError::IdpBehindAuthCheck {
                request: format!("{} {}", hop.method, self.redactor.redact(&hop.url)),
                answer: format!(
                    "{} redirect to {}",
                    hop.status,
                    self.redactor.redact(next.as_str())
                ),
                idp_path,
            });
        }
        let page = page?;
        (self.is_identity_provider(&page.url)
            && find_provider_button(&page.body, &page.url).is_some())
        .then(|| BrowserError::IdpBehindAuthCheck {
            request: format!("GET {}", self.redactor.redact(page.url.as_str())),
            answer: format!("{}, its sign-in page", page.status.as_u16()),
            idp_path,
        })
    }

    /// Treats `url`'s origin as the public, non-loopback address it stands for: over plain
    /// HTTP, `Secure` cookies are then refused there as a browser refuses them (see [`jar`]).
    pub fn treat_as_public(&self, url: &Url) {
        if let Ok(mut origins) = self.public_origins.lock() {
            origins.push(jar::origin(url));
        }
    }

    /// Secure cookies refused from plain-HTTP responses since the browser was made.
    pub fn refused_cookies(&self) -> Vec<RefusedCookie> {
        self.refused_cookies
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Redirects to any other host end the navigation with [`BrowserError::OffSite`]
    /// instead of being followed (an open redirect must be seen, never followed off-site).
    pub fn confine_to(&mut self, hosts: Vec<String>) {
        self.confined_to = hosts;
    }

    /// A cookie-less client that presents a client certificate (`cert_pem` + `key_pem`) and
    /// trusts only `ca_pem`, offering Istio's ALPN values (`istio-peer-exchange`, `istio`) as a
    /// sidecar's upstream TLS does: a PERMISSIVE listener takes TLS without them for the app's
    /// own TLS and passes it through instead of terminating mTLS.
    pub fn with_client_certificate(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &Secret,
        redactor: Redactor,
    ) -> Result<Self, BrowserError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let fail = |e: &dyn std::fmt::Display| BrowserError::MeshTls(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(certificate.map_err(|e| fail(&e))?)
                .map_err(|e| fail(&e))?;
        }
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(&e))?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes()).map_err(|e| fail(&e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| fail(&e))?;
        tls.alpn_protocols = vec![
            b"istio-peer-exchange".to_vec(),
            b"istio".to_vec(),
            b"http/1.1".to_vec(),
        ];
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("meshauth/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .http1_only()
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(BrowserError::Client)?;
        Ok(Self::with_client(
            client,
            Arc::new(CookieStoreMutex::default()),
            redactor,
        ))
    }

    /// A cookie-less plain-HTTP client whose requests for `service_host` go to `sidecar`: an
    /// app calling a mesh service through its own sidecar, which originates mTLS.
    pub fn through_sidecar(
        service_host: &str,
        sidecar: std::net::SocketAddr,
        redactor: Redactor,
    ) -> Result<Self, BrowserError> {
        let client = builder(None)?
            .resolve(service_host, sidecar)
            .http1_only()
            .build()
            .map_err(BrowserError::Client)?;
        Ok(Self::with_client(
            client,
            Arc::new(CookieStoreMutex::default()),
            redactor,
        ))
    }

    /// Hops recorded since the last call.
    pub fn take_hops(&mut self) -> Vec<Hop> {
        std::mem::take(&mut self.hops)
    }

    /// Whether the cookie jar holds a cookie named `name` (or its pieces) that would be sent to
    /// `url`.
    pub fn has_cookie_for(&self, url: &Url, name: &str) -> bool {
        !self.copy_cookies(url, name).is_empty()
    }

    /// The attributes the server last set on the cookie `name`.
    /// A cookie oauth2-proxy split into `name_0`, `name_1`, ... (above 4 KB) counts as `name`:
    /// its first piece's attributes are the cookie's.
    pub fn cookie_attributes(&self, name: &str) -> Option<&CookieAttributes> {
        let first_piece = format!("{name}_0");
        let latest = |wanted: &str| {
            self.cookie_attributes
                .iter()
                .rev()
                .find(|c| c.name == wanted)
        };
        latest(name).or_else(|| latest(&first_piece))
    }

    /// Replaces the value of the cookie `name` the jar would send to `url` by
    /// `rewrite(name, value)`. A cookie the server split into `name_0`, `name_1`, ... (as
    /// oauth2-proxy does above 4 KB, signing the whole) is joined, rewritten whole and split
    /// again at the same places. Domain, path and flags are kept. Returns how many cookies
    /// were rewritten; an empty new value deletes them.
    pub fn rewrite_cookies(
        &self,
        url: &Url,
        name: &str,
        rewrite: impl Fn(&str, &str) -> String,
    ) -> usize {
        let parts = self.copy_cookies(url, name);
        if parts.is_empty() {
            return 0;
        }
        let Ok(mut store) = self.cookies.lock() else {
            return 0;
        };
        let whole: String = parts.iter().map(|c| c.value()).collect();
        let rewritten = rewrite(name, &whole);
        let mut rest = rewritten.as_str();
        let count = parts.len();
        for (position, original) in parts.iter().enumerate() {
            let take = if position + 1 == count {
                rest.len()
            } else {
                original.value().len().min(rest.len())
            };
            let (piece, remainder) = rest.split_at(take);
            rest = remainder;
            let mut raw = with_value(original, piece);
            if rewritten.is_empty() {
                // An expired cookie is how a jar is told to drop one.
                raw.set_max_age(time::Duration::ZERO);
            }
            let _ = store.insert_raw(&raw, url);
        }
        count
    }

    /// The cookie `name` the jar would send to `url`, with the pieces oauth2-proxy splits a
    /// large one into (`name_0`, `name_1`, ...), in order.
    pub fn copy_cookies(&self, url: &Url, name: &str) -> Vec<cookie_store::Cookie<'static>> {
        let Ok(store) = self.cookies.lock() else {
            return Vec::new();
        };
        let mut pieces: Vec<(usize, cookie_store::Cookie<'static>)> = store
            .matches(url)
            .into_iter()
            .filter_map(|c| {
                if c.name() == name {
                    return Some((0, c.clone()));
                }
                let index = c.name().strip_prefix(name)?.strip_prefix('_')?;
                index
                    .parse::<usize>()
                    .ok()
                    .filter(|_| index.chars().all(|ch| ch.is_ascii_digit()))
                    .map(|i| (i, c.clone()))
            })
            .collect();
        pieces.sort_by_key(|(index, _)| *index);
        pieces.into_iter().map(|(_, cookie)| cookie).collect()
    }

    /// The last authorization response (callback URL with its code and state) this browser
    /// delivered, if any.
    pub fn last_callback(&self) -> Option<&Secret> {
        self.last_callback.as_ref()
    }

    /// Puts cookies copied with [`Browser::copy_cookies`] back into the jar, as someone who
    /// kept a copy would send them.
    pub fn put_cookies(&self, url: &Url, cookies: &[cookie_store::Cookie<'static>]) {
        let Ok(mut store) = self.cookies.lock() else {
            return;
        };
        for cookie in cookies {
            let _ = store.insert_raw(&with_value(cookie, cookie.value()), url);
        }
    }

    /// The `Cookie` header value the jar would send to `url`, if it holds any cookie for it.
    pub fn cookie_header_for(&self, url: &Url) -> Option<Secret> {
        let store = self.cookies.lock().ok()?;
        let pairs: Vec<String> = store
            .matches(url)
            .iter()
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        (!pairs.is_empty()).then(|| Secret::new(pairs.join("; ")))
    }

    /// Signs in from `page`, the answer to an unauthenticated request for the app: presses
    /// oauth2-proxy's sign-in button when it is shown, fills and submits the IdP's login form,
    /// and follows the redirects back. Returns the page the flow ends on, which the caller
    /// judges (a wrong password ends on the IdP's error page, not in an error).
    pub async fn sign_in(
        &mut self,
        page: Page,
        username: &str,
        password: &str,
    ) -> Result<Page, SignInError> {
        self.sign_in_via(page, None, username, password).await
    }

    /// [`Browser::sign_in`], at the upstream identity provider `via` when given: on the IdP's
    /// login page its link is followed, and the upstream IdP's form is filled instead.
    pub async fn sign_in_via(
        &mut self,
        page: Page,
        via: Option<&str>,
        username: &str,
        password: &str,
    ) -> Result<Page, SignInError> {
        let refused_before = self.refused_cookies().len();
        let outcome = self.sign_in_steps(page, via, username, password).await;
        let refused: Vec<RefusedCookie> = self
            .refused_cookies()
            .into_iter()
            .skip(refused_before)
            .collect();
        if refused.is_empty() {
            return outcome;
        }
        // Refused Secure cookies explain a sign-in that did not reach the app.
        let ended = match &outcome {
            Ok(page)
                if page.status.is_success()
                    && find_provider_button(&page.body, &page.url).is_none()
                    && find_login_form(&page.body, &page.url).is_err() =>
            {
                return outcome;
            }
            Ok(page) if page.status.is_success() => {
                format!(
                    "loops back to the sign-in page ({})",
                    self.redactor.redact(page.url.as_str())
                )
            }
            Ok(page) => format!(
                "ends with {} at {}",
                page.status.as_u16(),
                self.redactor.redact(page.url.as_str())
            ),
            Err(error) => format!("fails: {error}"),
        };
        let mut names: Vec<&str> = Vec::new();
        for refused in &refused {
            if !names.contains(&refused.name.as_str()) {
                names.push(&refused.name);
            }
        }
        Err(SignInError::SecureCookieOverHttp {
            cookies: format!("cookie {}", names.join(", ")),
            url: refused[0].url.clone(),
            ended,
        })
    }

    async fn sign_in_steps(
        &mut self,
        mut page: Page,
        via: Option<&str>,
        username: &str,
        password: &str,
    ) -> Result<Page, SignInError> {
        if let Some(button) = find_provider_button(&page.body, &page.url) {
            let target = button.action_with_query();
            page = self
                .navigate(button.method, target, Body::Empty, &HeaderMap::new())
                .await?;
        }
        if let Some(alias) = via {
            let link = find_broker_link(&page.body, &page.url, alias).ok_or_else(|| {
                SignInError::NoBrokerLink {
                    alias: alias.to_string(),
                    url: self.redactor.redact(page.url.as_str()),
                }
            })?;
            page = self
                .navigate(Method::GET, link, Body::Empty, &HeaderMap::new())
                .await?;
        }
        let form = match find_login_form(&page.body, &page.url) {
            Ok(form) => form,
            Err(error) => {
                return Err(match self.idp_behind_auth_check(0, Some(&page)) {
                    Some(diagnosis) => diagnosis.into(),
                    None => error.into(),
                });
            }
        };
        let filled = form.fill(username, password);
        Ok(self
            .navigate(
                filled.method.clone(),
                filled.action.clone(),
                Body::Form(filled.fields),
                &HeaderMap::new(),
            )
            .await?)
    }

    /// The whole browser flow: opens `app`, signs in, and returns the page it ends on.
    pub async fn open_and_sign_in(
        &mut self,
        app: Url,
        username: &str,
        password: &str,
    ) -> Result<Page, SignInError> {
        let page = self
            .navigate(Method::GET, app, Body::Empty, &HeaderMap::new())
            .await?;
        self.sign_in(page, username, password).await
    }

    /// Sends one request without following redirects.
    pub async fn send(
        &mut self,
        method: Method,
        url: Url,
        body: &Body,
        headers: &HeaderMap,
    ) -> Result<Page, BrowserError> {
        let started = Instant::now();
        let has = |name: &str| url.query_pairs().any(|(key, _)| key == name);
        if has("code") && has("state") {
            self.last_callback = Some(Secret::new(url.as_str()));
        }
        let mut request = self
            .client
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if let Body::Form(fields) = body {
            request = request.form(fields);
        }
        let response = request.send().await.map_err(|e| {
            let (method, url, detail) = (
                method.to_string(),
                self.redactor.redact(url.as_str()),
                crate::error_chain(&e),
            );
            // A timeout is no rejection: the server neither answered nor refused.
            if e.is_timeout() {
                BrowserError::Request {
                    method,
                    url,
                    detail: format!("{detail}: no answer and no rejection before the timeout"),
                }
            } else {
                BrowserError::NoResponse {
                    method,
                    url,
                    detail,
                }
            }
        })?;
        let status = response.status();
        let response_headers = response.headers().clone();
        let body = response.text().await.map_err(|e| BrowserError::Request {
            method: method.to_string(),
            url: self.redactor.redact(url.as_str()),
            detail: crate::error_chain(&e),
        })?;
        let set_cookies: Vec<CookieAttributes> = response_headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(CookieAttributes::parse)
            .collect();
        self.hops.push(Hop {
            method: method.to_string(),
            url: self.redactor.redact(url.as_str()),
            status: status.as_u16(),
            location: response_headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| self.redactor.redact(l)),
            set_cookies: set_cookies.iter().map(|c| c.name.clone()).collect(),
            duration_ms: started.elapsed().as_millis() as u64,
        });
        self.cookie_attributes.extend(set_cookies);
        for (name, value) in &response_headers {
            if let Some(why) = identity_exposure(name.as_str(), value.as_bytes()) {
                self.identity_exposures.push(IdentityExposure {
                    method: method.to_string(),
                    url: self.redactor.redact(url.as_str()),
                    header: name.as_str().to_string(),
                    why,
                });
            }
        }
        Ok(Page {
            url,
            status,
            headers: response_headers,
            body,
        })
    }

    /// Sends a request and follows redirects as a browser does (303, and 301/302 after a POST,
    /// become GET), recording every hop. Returns the first non-redirect response.
    pub async fn navigate(
        &mut self,
        method: Method,
        url: Url,
        body: Body,
        headers: &HeaderMap,
    ) -> Result<Page, BrowserError> {
        let start = url.clone();
        let first_hop = self.hops.len();
        let (mut method, mut url, mut body) = (method, url, body);
        for _ in 0..=self.max_redirects {
            let page = self
                .send(method.clone(), url.clone(), &body, headers)
                .await?;
            if !page.status.is_redirection() || page.status == StatusCode::NOT_MODIFIED {
                return Ok(page);
            }
            let next = page
                .header("location")
                .and_then(|l| page.url.join(l).ok())
                .ok_or_else(|| BrowserError::BadLocation {
                    status: page.status.as_u16(),
                    url: self.redactor.redact(page.url.as_str()),
                })?;
            let host = next.host_str().unwrap_or_default();
            if !self.confined_to.is_empty() && !self.confined_to.iter().any(|h| h == host) {
                return Err(BrowserError::OffSite {
                    from: self.redactor.redact(page.url.as_str()),
                    to: self.redactor.redact(next.as_str()),
                });
            }
            let keeps_method = matches!(page.status.as_u16(), 307 | 308);
            if !keeps_method && method != Method::HEAD {
                method = Method::GET;
                body = Body::Empty;
            }
            url = next;
        }
        if let Some(diagnosis) = self.idp_behind_auth_check(first_hop, None) {
            return Err(diagnosis);
        }
        Err(BrowserError::TooManyRedirects {
            limit: self.max_redirects,
            start: self.redactor.redact(start.as_str()),
            last: self.redactor.redact(url.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn identity_headers_are_found_in_any_spelling_and_jwts_in_any_header() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        for name in [
            "Authorization",
            "x-auth-request-access-token",
            "X_Auth_Request_User",
            "X-Forwarded-Email",
        ] {
            assert_eq!(
                super::identity_exposure(name, b"anything"),
                Some("a header the auth layer sets for the app"),
                "{name}"
            );
        }
        let in_value = format!("Bearer {jwt}");
        for (name, value) in [
            ("x-debug", in_value.as_str()),
            ("link", &format!("</t?x={jwt}>")),
        ] {
            assert_eq!(
                super::identity_exposure(name, value.as_bytes()),
                Some("its value holds a JWT"),
                "{name}"
            );
        }
        // The IdP's own session cookie is a JWT the browser is meant to hold; a redirect with
        // a code, a content type and a two-part dotted value are nobody's identity.
        for (name, value) in [
            ("set-cookie", format!("KEYCLOAK_IDENTITY={jwt}; HttpOnly")),
            (
                "location",
                "https://app/oauth2/callback?code=a.b.c&state=x".to_string(),
            ),
            ("content-type", "application/json".to_string()),
            ("x-version", "eyJh.eyJ".to_string()),
        ] {
            assert_eq!(
                super::identity_exposure(name, value.as_bytes()),
                None,
                "{name}"
            );
        }
    }

    use super::{Browser, BrowserError, CookieAttributes, Hop};
    use crate::redact::Redactor;

    fn hop(url: &str, status: u16, location: Option<&str>) -> Hop {
        Hop {
            method: "GET".into(),
            url: url.into(),
            status,
            location: location.map(str::to_string),
            set_cookies: Vec::new(),
            duration_ms: 1,
        }
    }

    fn browser_with(hops: Vec<Hop>) -> Browser {
        let mut browser = Browser::new(None, Redactor::default()).unwrap();
        browser.set_identity_provider("https://app.example:8443/auth/".parse().unwrap());
        browser.hops = hops;
        browser
    }

    /// The redirect loop of an IdP on the app's host that ext_authz checks: oauth2-proxy
    /// answers the authorization request with a new one (skip_provider_button) or its start.
    #[test]
    fn the_auth_proxy_answering_at_the_idp_address_is_diagnosed() {
        let authorize = "https://app.example:8443/auth/realms/r/protocol/openid-connect/auth?response_type=code&client_id=c&state=";
        for location in [
            format!("{authorize}2"),
            "/oauth2/start?rd=%2Fauth%2Frealms%2Fr".to_string(),
            "https://app.example:8443/oauth2/sign_in".to_string(),
        ] {
            let browser = browser_with(vec![
                hop(
                    "https://app.example:8443/",
                    302,
                    Some(&format!("{authorize}1")),
                ),
                hop(&format!("{authorize}1"), 302, Some(&location)),
            ]);
            let diagnosis = browser.idp_behind_auth_check(0, None);
            assert!(
                matches!(&diagnosis, Some(BrowserError::IdpBehindAuthCheck { idp_path, .. }) if idp_path == "/auth/"),
                "{location}: {diagnosis:?}"
            );
        }
    }

    /// What the IdP itself does at its address: its own pages, the code back to the callback,
    /// an upstream IdP (brokering); and the auth proxy's redirects elsewhere.
    #[test]
    fn the_idp_answering_normally_is_not_diagnosed() {
        let browser = browser_with(vec![
            hop(
                "https://app.example:8443/",
                302,
                Some("/oauth2/start?rd=%2F"),
            ),
            hop(
                "https://app.example:8443/auth/realms/r/login-actions/authenticate?client_id=c",
                302,
                Some("/auth/realms/r/login-actions/required-action?client_id=c"),
            ),
            hop(
                "https://app.example:8443/auth/realms/r/login-actions/authenticate",
                302,
                Some("https://app.example:8443/oauth2/callback?code=x&state=y"),
            ),
            hop(
                "https://app.example:8443/auth/realms/r/broker/up/login",
                302,
                Some("http://upstream.example/auth?response_type=code&client_id=k"),
            ),
        ]);
        assert!(browser.idp_behind_auth_check(0, None).is_none());
        // Another origin, or outside the IdP's path, is not the IdP.
        let elsewhere = browser_with(vec![
            hop(
                "https://app.example:9443/auth/realms/r/x",
                302,
                Some("/oauth2/start"),
            ),
            hop(
                "https://app.example:8443/authx/realms/r/x",
                302,
                Some("/oauth2/start"),
            ),
        ]);
        assert!(elsewhere.idp_behind_auth_check(0, None).is_none());
    }

    #[test]
    fn cookie_attributes_keep_flags_and_never_the_value() {
        let parsed =
            CookieAttributes::parse("_oauth2_proxy=secret-value; Path=/; Expires=Mon, 30 Nov 2026; HttpOnly; Secure; SameSite=Lax")
                .unwrap();
        assert_eq!(
            parsed,
            CookieAttributes {
                name: "_oauth2_proxy".into(),
                secure: true,
                http_only: true,
                same_site: Some("Lax".into()),
                domain: None,
                path: Some("/".into()),
            }
        );
        let wide = CookieAttributes::parse("s=v; Domain=.example.com; Path=/").unwrap();
        assert_eq!(wide.domain.as_deref(), Some(".example.com"));
        let plain =
            CookieAttributes::parse("KC_RESTART=; Version=1; Max-Age=0; Path=/realms/x/").unwrap();
        assert!(!plain.secure && !plain.http_only && plain.same_site.is_none());
        assert!(CookieAttributes::parse("=orphan").is_none());
        assert!(!format!("{parsed:?}").contains("secret-value"));
    }
}
