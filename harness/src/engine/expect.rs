//! Checks on a response: each expectation field becomes one [`CheckResult`].

use serde_json::Value;

use crate::browser::{Browser, Page, find_login_error, find_login_form, find_provider_button};
use crate::check::CheckResult;
use crate::control::Handshake;
use crate::env::Endpoints;
use crate::scenario::{
    ConnectionExpectation, CookieExpectation, Refuser, ResponseExpectation, Variables,
};

const EXCERPT: usize = 160;

pub fn check_response(
    expect: &ResponseExpectation,
    page: &Page,
    browser: &Browser,
    endpoints: &Endpoints,
    vars: &Variables,
) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    answer_checks(expect, page, vars, &mut checks);
    sign_in_checks(expect, page, &mut checks);
    cookie_checks(expect, page, browser, endpoints, vars, &mut checks);
    app_checks(expect, page, browser, &mut checks);
    // A page that failed its checks because the auth proxy answered at the IdP's address
    // says why, with the fix.
    if checks.iter().any(|check| !check.passed)
        && let Some(diagnosis) = browser.idp_behind_auth_check_at(page)
    {
        checks.push(CheckResult::new(
            "diagnosis",
            false,
            "the IdP answering at its own address",
            diagnosis.to_string(),
        ));
    }
    checks
}

/// The answer itself: connection, status, where it landed or points, its body, who refused.
fn answer_checks(
    expect: &ResponseExpectation,
    page: &Page,
    vars: &Variables,
    checks: &mut Vec<CheckResult>,
) {
    if let Some(connection) = expect.connection {
        let refused_by = mesh_refusal(page);
        checks.push(CheckResult::new(
            "connection",
            match connection {
                ConnectionExpectation::Answered => true,
                ConnectionExpectation::Rejected => false,
                ConnectionExpectation::Refused => refused_by.is_some(),
            },
            describe_connection(connection),
            match refused_by {
                Some(refuser) => format!(
                    "answered {} at {}: {}",
                    page.status.as_u16(),
                    page.url,
                    refuser.describe()
                ),
                None => format!(
                    "answered {} at {}: {}",
                    page.status.as_u16(),
                    page.url,
                    excerpt(&page.body)
                ),
            },
        ));
    }
    if let Some(status) = expect.status {
        checks.push(CheckResult::new(
            "status",
            page.status.as_u16() == status,
            status.to_string(),
            format!("{} at {}", page.status.as_u16(), page.url),
        ));
    }
    if let Some(any_of) = &expect.status_in {
        checks.push(CheckResult::new(
            "status",
            any_of.contains(&page.status.as_u16()),
            one_of(any_of),
            format!("{} at {}", page.status.as_u16(), page.url),
        ));
    }
    if let Some(prefix) = &expect.url_starts_with {
        let prefix = vars.expand(prefix);
        checks.push(CheckResult::new(
            "final URL",
            page.url.as_str().starts_with(&prefix),
            format!("starting with {prefix}"),
            page.url.to_string(),
        ));
    }
    if let Some(prefix) = &expect.location_starts_with {
        let prefix = vars.expand(prefix);
        let location = page.header("location").and_then(|l| page.url.join(l).ok());
        checks.push(CheckResult::new(
            "redirect Location",
            page.status.is_redirection()
                && location
                    .as_ref()
                    .is_some_and(|l| l.as_str().starts_with(&prefix)),
            format!("a redirect to {prefix}..."),
            match location {
                Some(l) => format!("{} to {l}", page.status.as_u16()),
                None => format!("{} without Location", page.status.as_u16()),
            },
        ));
    }
    for needle in &expect.body_contains {
        let needle = vars.expand(needle);
        checks.push(CheckResult::new(
            "body",
            page.body.contains(&needle),
            format!("containing {needle:?}"),
            excerpt(&page.body),
        ));
    }
    if !expect.refused_by.is_empty() {
        let idp_origins: Vec<url::Origin> = ["${idp}", "${issuer}"]
            .iter()
            .filter_map(|name| url::Url::parse(&vars.expand(name)).ok())
            .map(|url| url.origin())
            .collect();
        checks.push(check_refused_by(&expect.refused_by, page, &idp_origins));
    }
}

/// The sign-in pages: the IdP's login form, the auth proxy's sign-in page, a login error.
fn sign_in_checks(expect: &ResponseExpectation, page: &Page, checks: &mut Vec<CheckResult>) {
    if let Some(want) = &expect.login_form {
        let found = find_login_form(&page.body, &page.url).is_ok();
        checks.push(CheckResult::new(
            "login form",
            found == *want,
            if *want {
                "the IdP's login form"
            } else {
                "no login form"
            },
            if found {
                format!("a login form at {}", page.url)
            } else {
                format!(
                    "no login form at {} (status {})",
                    page.url,
                    page.status.as_u16()
                )
            },
        ));
    }
    if let Some(want) = &expect.sign_in_page {
        let provider_page = find_provider_button(&page.body, &page.url).is_some();
        let login_form = find_login_form(&page.body, &page.url).is_ok();
        let actual = match (provider_page, login_form) {
            (true, _) => format!(
                "oauth2-proxy's sign-in page ({} at {})",
                page.status.as_u16(),
                page.url
            ),
            (_, true) => format!(
                "the IdP's login form ({} at {})",
                page.status.as_u16(),
                page.url
            ),
            _ => format!(
                "{} at {} with {}",
                page.status.as_u16(),
                page.url,
                excerpt(&page.body)
            ),
        };
        checks.push(CheckResult::new(
            "sign-in page",
            (provider_page || login_form) == *want,
            if *want {
                "a sign-in page (oauth2-proxy's or the IdP's)"
            } else {
                "no sign-in page"
            },
            actual,
        ));
    }
    if let Some(want) = &expect.login_error {
        let shown = find_login_error(&page.body);
        checks.push(CheckResult::new(
            "login error",
            shown.as_deref().is_some_and(|s| s.contains(want.as_str())),
            format!("the login page showing {want:?}"),
            shown.map_or_else(
                || format!("no error shown at {}", page.url),
                |s| format!("{s:?}"),
            ),
        ));
    }
}

/// The browser's cookies for the app, and what the response set.
fn cookie_checks(
    expect: &ResponseExpectation,
    page: &Page,
    browser: &Browser,
    endpoints: &Endpoints,
    vars: &Variables,
    checks: &mut Vec<CheckResult>,
) {
    for name in &expect.app_cookies {
        let name = &vars.expand(name);
        let present = browser.has_cookie_for(&endpoints.app, name);
        checks.push(CheckResult::new(
            format!("cookie {name}"),
            present,
            format!("the browser holds {name} for the app"),
            if present { "present" } else { "absent" },
        ));
    }
    for name in &expect.no_app_cookies {
        let name = &vars.expand(name);
        let present = browser.has_cookie_for(&endpoints.app, name);
        checks.push(CheckResult::new(
            format!("cookie {name}"),
            !present,
            format!("no {name} cookie for the app"),
            if present { "present" } else { "absent" },
        ));
    }
    for name in &expect.sets_cookies {
        let name = &vars.expand(name);
        let set = cookies_set(&page.headers);
        checks.push(CheckResult::new(
            format!("sets cookie {name}"),
            set.iter().any(|set| is_cookie_or_part(set, name)),
            format!("the response sets {name}"),
            if set.is_empty() {
                "no Set-Cookie".to_string()
            } else {
                format!("Set-Cookie for {}", set.join(", "))
            },
        ));
    }
    if let Some(cookie) = &expect.cookie_attributes {
        let cookie = CookieExpectation {
            name: vars.expand(&cookie.name),
            ..cookie.clone()
        };
        checks.extend(check_cookie(&cookie, browser, &endpoints.app));
    }
}

/// What the app received, and what the browser must never be given or allowed.
fn app_checks(
    expect: &ResponseExpectation,
    page: &Page,
    browser: &Browser,
    checks: &mut Vec<CheckResult>,
) {
    if !expect.app_received_headers.is_empty() || !expect.app_did_not_receive_headers.is_empty() {
        match echoed_headers(page) {
            Ok(received) => {
                let has = |name: &str| received.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
                let names = || {
                    received
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                for name in &expect.app_received_headers {
                    checks.push(CheckResult::new(
                        format!("app received {name}"),
                        has(name),
                        format!("{name} among the headers the app received"),
                        names(),
                    ));
                }
                for name in &expect.app_did_not_receive_headers {
                    checks.push(CheckResult::new(
                        format!("app did not receive {name}"),
                        !has(name),
                        format!("no {name} among the headers the app received"),
                        names(),
                    ));
                }
            }
            Err(error) => checks.push(CheckResult::new(
                "app echo",
                false,
                "httpbin's /headers JSON",
                error,
            )),
        }
    }
    if let Some(want) = expect.no_expired_token_forwarded {
        checks.push(check_no_expired_token(page, want, crate::oidc::now_unix()));
    }
    if let Some(want) = expect.no_identity_sent_to_browser {
        checks.push(check_no_identity_sent(browser.identity_exposures(), want));
    }
    if let Some(want) = expect.not_frameable {
        checks.push(check_not_frameable(page, want));
    }
}

/// Whether browsers refuse to show `page` in another site's frame. CSP `frame-ancestors`
/// (any enforced policy that has it) overrides `X-Frame-Options` in every current browser, so a
/// permissive one wins over XFO; `ALLOW-FROM` is ignored by them all.
fn check_not_frameable(page: &Page, want: bool) -> CheckResult {
    let values = |name: &str| -> Vec<String> {
        page.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .collect()
    };
    let ancestors: Vec<String> = values("content-security-policy")
        .iter()
        .flat_map(|policy| {
            policy
                .split(';')
                .map(str::trim)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|directive| {
            directive
                .split_whitespace()
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case("frame-ancestors"))
        })
        .collect();
    let frame_options = values("x-frame-options");
    let restrictive_ancestors = |directive: &str| {
        directive.split_whitespace().skip(1).all(|source| {
            let source = source.to_ascii_lowercase();
            source != "*" && !source.ends_with(':') && !source.contains("://*")
        })
    };
    let (protected, evidence) = if !ancestors.is_empty() {
        (
            ancestors.iter().any(|d| restrictive_ancestors(d)),
            format!("Content-Security-Policy {}", ancestors.join(" / ")),
        )
    } else if !frame_options.is_empty() {
        let safe = frame_options
            .iter()
            .all(|v| v.eq_ignore_ascii_case("deny") || v.eq_ignore_ascii_case("sameorigin"));
        (
            safe,
            format!("X-Frame-Options: {}", frame_options.join(", ")),
        )
    } else {
        (
            false,
            "neither Content-Security-Policy frame-ancestors nor X-Frame-Options".to_string(),
        )
    };
    CheckResult::new(
        "not frameable",
        protected == want,
        if want {
            "CSP frame-ancestors without wildcards, or X-Frame-Options DENY or SAMEORIGIN"
        } else {
            "a page other sites may frame"
        },
        format!("{evidence} on {} at {}", page.status.as_u16(), page.url),
    )
    .with_severity(crate::check::Severity::Medium)
}

/// Whether `page` is the refusal of one of `refusers`: a status alone is anyone's to give, so
/// each part is known by the answer only it gives.
fn check_refused_by(refusers: &[Refuser], page: &Page, idp_origins: &[url::Origin]) -> CheckResult {
    let seen = refuser(page, idp_origins);
    let mut answer = format!("{} at {}", page.status.as_u16(), page.url);
    for header in ["www-authenticate", "location"] {
        if let Some(value) = page.header(header) {
            answer.push_str(&format!(" ({header}: {value})"));
        }
    }
    CheckResult::new(
        "refused by",
        seen.is_some_and(|r| refusers.contains(&r)),
        refusers
            .iter()
            .map(|r| r.describe())
            .collect::<Vec<_>>()
            .join(", or "),
        format!(
            "{}: {answer} with {}",
            seen.map_or("no refusal the harness can attribute", Refuser::describe),
            excerpt(&page.body)
        ),
    )
}

/// The mesh's own refusal (jwt_authn's or RBAC's), known by the answer only it gives.
fn mesh_refusal(page: &Page) -> Option<Refuser> {
    let body = page.body.trim();
    let bearer_challenge = page
        .header("www-authenticate")
        .and_then(|c| c.trim_start().get(..6))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer"));
    match page.status.as_u16() {
        401 if bearer_challenge && body.starts_with("Jwt ") => Some(Refuser::JwtAuthn),
        403 if body == "RBAC: access denied" => Some(Refuser::Rbac),
        _ => None,
    }
}

/// Which part made the refusal `page`, if its answer is one only that part gives.
fn refuser(page: &Page, idp_origins: &[url::Origin]) -> Option<Refuser> {
    if let Some(refuser) = mesh_refusal(page) {
        return Some(refuser);
    }
    let sign_in_page = find_provider_button(&page.body, &page.url).is_some()
        || find_login_form(&page.body, &page.url).is_ok();
    let to_sign_in = page.status.is_redirection()
        && page
            .header("location")
            .and_then(|l| page.url.join(l).ok())
            .is_some_and(|l| leads_to_sign_in(&l, idp_origins));
    (sign_in_page || to_sign_in).then_some(Refuser::SignIn)
}

/// Whether a redirect to `location` sends the caller to sign in: the auth proxy's own
/// endpoints (any `/oauth2/` path), the IdP, or an OpenID authorization request anywhere.
fn leads_to_sign_in(location: &url::Url, idp_origins: &[url::Origin]) -> bool {
    let query_has = |name: &str| location.query_pairs().any(|(key, _)| key == name);
    location.path().to_ascii_lowercase().contains("/oauth2/")
        || idp_origins.contains(&location.origin())
        || (query_has("client_id") && query_has("redirect_uri"))
}

/// Whether the callers of the impostor in place refused it: each connection ended in the
/// caller's TLS alert about its certificate, and at least one came (a caller that never reached the impostor refused
/// nothing). `seen` is `None` when no impostor is in place.
pub fn check_impostor_refused(seen: Option<&[Handshake]>) -> CheckResult {
    let expected = "every caller aborted its TLS handshake over the impostor's certificate (an \
                    alert such as UnknownCA: it verified the certificate and refused it), none \
                    sent a request";
    let Some(seen) = seen else {
        return CheckResult::new(
            "impostor refused",
            false,
            expected,
            "no impostor in place (restored already, or never put there)",
        );
    };
    let described: Vec<String> = seen
        .iter()
        .map(|handshake| match handshake {
            Handshake::CertificateRefused(alert) => {
                format!("the caller refused the certificate (alert {alert})")
            }
            Handshake::Failed(error) => format!("failed otherwise ({error})"),
            Handshake::Completed { request: true } => {
                "completed, and the caller sent a request the impostor answered".to_string()
            }
            Handshake::Completed { request: false } => {
                "completed: the caller accepted the impostor's certificate".to_string()
            }
        })
        .collect();
    let refused = !seen.is_empty()
        && seen
            .iter()
            .all(|h| matches!(h, Handshake::CertificateRefused(_)));
    CheckResult::new(
        "impostor refused",
        refused,
        expected,
        if seen.is_empty() {
            "the impostor saw no connection: the caller never reached it".to_string()
        } else {
            format!(
                "{} connection(s), each ended: {}",
                seen.len(),
                described.join("; ")
            )
        },
    )
}

/// Whether the browser was handed a token or an identity meant for the app, by any response.
fn check_no_identity_sent(
    exposures: &[crate::browser::IdentityExposure],
    want: bool,
) -> CheckResult {
    let sent = !exposures.is_empty();
    CheckResult::new(
        "identity sent to the browser",
        sent != want,
        if want {
            "no response hands the browser a token or an identity header meant for the app"
        } else {
            "a response hands the browser a token or an identity header"
        },
        if sent {
            let mut seen: Vec<String> = exposures.iter().map(ToString::to_string).collect();
            seen.dedup();
            format!("the browser was handed {}", seen.join("; "))
        } else {
            "none in any response so far".to_string()
        },
    )
    .with_severity(crate::check::Severity::High)
}

/// Whether any JWT the app echoed as received had expired at `now`.
fn check_no_expired_token(page: &Page, want: bool, now: i64) -> CheckResult {
    let expected = if want {
        "no expired token among what the app received (renewed, or the user asked to sign in)"
    } else {
        "an expired token among what the app received"
    };
    let Some(tokens) = forwarded_jwts(&page.body) else {
        // Not the app: safe only where the user is visibly asked to sign in again. Any other
        // page (an error, a blank 200) shows neither renewal nor refusal.
        let signing_in = find_provider_button(&page.body, &page.url).is_some()
            || find_login_form(&page.body, &page.url).is_ok();
        let actual = if signing_in {
            format!(
                "the app was not reached: {} at {} asks the user to sign in again",
                page.status.as_u16(),
                page.url
            )
        } else {
            format!(
                "inconclusive: neither the app's echo nor a sign-in page: {} at {} with {}",
                page.status.as_u16(),
                page.url,
                excerpt(&page.body)
            )
        };
        return CheckResult::new("expired tokens", signing_in == want, expected, actual);
    };
    let expired: Vec<String> = tokens
        .iter()
        .filter(|t| t.expires_at <= now)
        .map(|t| format!("{} (expired {} s ago)", t.header, now - t.expires_at))
        .collect();
    let actual = if !expired.is_empty() {
        format!(
            "the app received expired tokens in {}: the auth proxy forwards a session's \
             tokens without renewing them (oauth2-proxy: set cookie_refresh shorter than the \
             IdP's token lifetime, with refresh tokens on the client)",
            expired.join(", ")
        )
    } else if tokens.is_empty() {
        // Nothing to renew was forwarded at all: renewal cannot be observed here.
        return CheckResult::new(
            "expired tokens",
            false,
            expected,
            "inconclusive: the app received no token, so neither renewal nor expiry can be \
             observed; forward the session's tokens (oauth2-proxy: pass_authorization_header)",
        );
    } else {
        format!(
            "the app received current tokens only: {}",
            tokens
                .iter()
                .map(|t| format!("{} (expires in {} s)", t.header, t.expires_at - now))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    CheckResult::new(
        "expired tokens",
        expired.is_empty() == want,
        expected,
        actual,
    )
}

/// A JWT the app received, by the request header that carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardedJwt {
    pub header: String,
    pub expires_at: i64,
}

/// Every JWT with an `exp` among the request headers httpbin echoed in `body`, whatever the
/// header's name or scheme prefix (`Bearer …`); `None` when `body` is not such an echo.
pub fn forwarded_jwts(body: &str) -> Option<Vec<ForwardedJwt>> {
    let headers = echoed_header_values(body)?;
    Some(
        headers
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |value| (name, value)))
            .filter_map(|(name, value)| {
                let token = value.split_whitespace().last()?;
                let decoded = crate::oidc::decode_unverified(token).ok()?;
                let expires_at = decoded.claims.get("exp")?.as_i64()?;
                Some(ForwardedJwt {
                    header: name.clone(),
                    expires_at,
                })
            })
            .collect(),
    )
}

/// Checks when the last request got no HTTP response: only `connection: rejected` can pass,
/// everything else fails naming the reason the connection ended.
pub fn check_without_response(expect: &ResponseExpectation, reason: &str) -> Vec<CheckResult> {
    let actual = format!("no response: the connection was rejected ({reason})");
    let mut checks = Vec::new();
    if let Some(connection) = expect.connection {
        checks.push(CheckResult::new(
            "connection",
            connection != ConnectionExpectation::Answered,
            describe_connection(connection),
            format!("rejected ({reason})"),
        ));
    }
    if let Some(status) = expect.status {
        checks.push(CheckResult::new(
            "status",
            false,
            status.to_string(),
            actual.clone(),
        ));
    }
    if let Some(any_of) = &expect.status_in {
        checks.push(CheckResult::new(
            "status",
            false,
            one_of(any_of),
            actual.clone(),
        ));
    }
    let rest = ResponseExpectation {
        connection: None,
        status: None,
        status_in: None,
        ..expect.clone()
    };
    if rest != ResponseExpectation::default() {
        checks.push(CheckResult::new(
            "response",
            false,
            "a response to check",
            actual,
        ));
    }
    checks
}

fn describe_connection(connection: ConnectionExpectation) -> &'static str {
    match connection {
        ConnectionExpectation::Answered => "an HTTP response",
        ConnectionExpectation::Rejected => {
            "the connection rejected (closed, reset or TLS handshake failed) without a response"
        }
        ConnectionExpectation::Refused => {
            "kept from the app: the connection rejected, or the mesh's own refusal (RBAC's 403, jwt_authn's 401)"
        }
    }
}

fn check_cookie(expect: &CookieExpectation, browser: &Browser, app: &url::Url) -> Vec<CheckResult> {
    let Some(seen) = browser.cookie_attributes(&expect.name) else {
        return vec![CheckResult::new(
            format!("cookie {} attributes", expect.name),
            false,
            format!("a Set-Cookie for {}", expect.name),
            "never set in this scenario",
        )];
    };
    let flag = |b: bool| if b { "set" } else { "not set" };
    let mut checks = Vec::new();
    if let Some(max_bytes) = expect.max_bytes {
        let pieces = browser.copy_cookies(app, &expect.name);
        let bytes: usize = pieces.iter().map(|c| c.value().len()).sum();
        checks.push(CheckResult::new(
            format!("cookie {} size", expect.name),
            !pieces.is_empty() && bytes <= max_bytes,
            format!("at most {max_bytes} bytes (a ticket for a session kept server-side)"),
            match pieces.len() {
                0 => "not held by the browser".to_string(),
                1 => format!("{bytes} bytes"),
                n => format!(
                    "{bytes} bytes in {n} pieces ({}): the session itself, tokens and all, \
                     travels in the cookie",
                    pieces
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        ));
    }
    if let Some(secure) = expect.secure {
        checks.push(CheckResult::new(
            format!("cookie {} Secure", expect.name),
            seen.secure == secure,
            flag(secure),
            flag(seen.secure),
        ));
    }
    if let Some(http_only) = expect.http_only {
        checks.push(CheckResult::new(
            format!("cookie {} HttpOnly", expect.name),
            seen.http_only == http_only,
            flag(http_only),
            flag(seen.http_only),
        ));
    }
    if let Some(host_only) = expect.host_only {
        let shown = |domain: &Option<String>| match domain {
            None => "no Domain (this host only)".to_string(),
            Some(domain) => format!("Domain={domain}"),
        };
        checks.push(CheckResult::new(
            format!("cookie {} host-only", expect.name),
            seen.domain.is_none() == host_only,
            if host_only {
                "no Domain (this host only)".to_string()
            } else {
                "a Domain attribute".to_string()
            },
            shown(&seen.domain),
        ));
    }
    if let Some(path) = &expect.path {
        checks.push(CheckResult::new(
            format!("cookie {} Path", expect.name),
            seen.path.as_deref() == Some(path.as_str()),
            path.clone(),
            seen.path.clone().unwrap_or_else(|| "not set".into()),
        ));
    }
    if let Some(true) = expect.not_strict {
        let strict = seen
            .same_site
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("strict"));
        checks.push(CheckResult::new(
            format!("cookie {} SameSite not Strict", expect.name),
            !strict,
            "Lax, None or unset: the IdP's redirect back to the callback is cross-site, and \
             browsers withhold Strict cookies from it (sign-in fails)",
            seen.same_site.clone().unwrap_or_else(|| "not set".into()),
        ));
    }
    if let Some(true) = expect.not_none {
        let none = seen
            .same_site
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("none"));
        checks.push(
            CheckResult::new(
                format!("cookie {} SameSite not None", expect.name),
                !none,
                "Lax, Strict or unset (the browser's Lax): a SameSite=None cookie goes with \
                 every cross-site request, forms posted from any site arrive signed in",
                seen.same_site.clone().unwrap_or_else(|| "not set".into()),
            )
            .with_severity(crate::check::Severity::Medium),
        );
    }
    if let Some(same_site) = &expect.same_site {
        checks.push(CheckResult::new(
            format!("cookie {} SameSite", expect.name),
            seen.same_site
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(same_site)),
            same_site.clone(),
            seen.same_site.clone().unwrap_or_else(|| "not set".into()),
        ));
    }
    checks
}

/// An echoed `Cookie`, `Authorization` or access-token header and its (first) value.
static ECHOED_CREDENTIAL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r#"(?i)("(?:cookie|authorization|x-auth-request-access-token|x-forwarded-access-token)"\s*:\s*\[?\s*)"[^"]*""#,
    )
    .expect("a valid pattern")
});

/// The request headers httpbin echoed in a `/headers` response, as (name, first value).
pub fn echoed_headers(page: &Page) -> Result<Vec<(String, String)>, String> {
    let headers = echoed_header_values(&page.body).ok_or_else(|| {
        format!(
            "status {} at {} with {}",
            page.status.as_u16(),
            page.url,
            excerpt(&page.body)
        )
    })?;
    Ok(headers
        .into_iter()
        .map(|(name, values)| (name, values.into_iter().next().unwrap_or_default()))
        .collect())
}

/// Every value of every request header httpbin echoed (`/headers`, `/anything`), or `None`
/// when `body` is not such an echo. go-httpbin echoes arrays of values, Python httpbin single
/// strings; both are accepted.
pub fn echoed_header_values(body: &str) -> Option<Vec<(String, Vec<String>)>> {
    let json: Value = serde_json::from_str(body).ok()?;
    let headers = json.get("headers")?.as_object()?;
    Some(
        headers
            .iter()
            .map(|(name, value)| {
                let values = match value {
                    Value::Array(items) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                    Value::String(s) => vec![s.clone()],
                    _ => Vec::new(),
                };
                (name.clone(), values)
            })
            .collect(),
    )
}

pub(super) fn excerpt(body: &str) -> String {
    // Echoed credentials are removed whole before the cut, where a truncated secret would no
    // longer match the redactor.
    let body = ECHOED_CREDENTIAL.replace_all(body, "$1\"[redacted]\"");
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= EXCERPT {
        format!("{flat:?}")
    } else {
        format!("{:?}...", flat.chars().take(EXCERPT).collect::<String>())
    }
}

/// `one of 401, 403`.
fn one_of(statuses: &[u16]) -> String {
    let listed: Vec<String> = statuses.iter().map(u16::to_string).collect();
    format!("one of {}", listed.join(", "))
}

/// The names of the cookies a response sets (not those it deletes: an empty value, or
/// `Max-Age` zero or less).
fn cookies_set(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let mut attributes = v.split(';');
            let (name, value) = attributes.next()?.split_once('=')?;
            let expired = attributes.any(|a| {
                a.trim()
                    .split_once('=')
                    .filter(|(key, _)| key.trim().eq_ignore_ascii_case("max-age"))
                    .is_some_and(|(_, age)| age.trim().parse::<i64>().is_ok_and(|age| age <= 0))
            });
            (!value.trim().is_empty() && !expired).then(|| name.trim().to_string())
        })
        .collect()
}

/// `set` is cookie `name`, or one of the parts oauth2-proxy splits a large one into
/// (`name_0`, `name_1`, ...).
fn is_cookie_or_part(set: &str, name: &str) -> bool {
    set == name
        || set
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use crate::browser::Page;

    /// httpbin's echo recorded behind the real stack: an ID token in `Authorization`, an
    /// access token in `X-Auth-Request-Access-Token`, both expiring at 1795436565.
    const RECORDED_ECHO: &str = include_str!("../../tests/data/recorded/httpbin-headers.json");
    const RECORDED_EXP: i64 = 1795436565;

    fn page(status: u16, body: &str) -> Page {
        Page {
            url: url::Url::parse("https://app.test/headers").unwrap(),
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers: reqwest::header::HeaderMap::new(),
            body: body.into(),
        }
    }

    #[test]
    fn framing_is_judged_by_csp_frame_ancestors_first_then_x_frame_options() {
        let judged = |headers: &[(&str, &str)]| {
            let mut page = page(200, "<form>");
            for (name, value) in headers {
                page.headers.append(
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            super::check_not_frameable(&page, true).passed
        };
        // Keycloak's defaults, as its login page sends them.
        assert!(judged(&[
            ("X-Frame-Options", "SAMEORIGIN"),
            (
                "Content-Security-Policy",
                "frame-src 'self'; frame-ancestors 'self'; object-src 'none';"
            ),
        ]));
        assert!(judged(&[("x-frame-options", "deny")]));
        assert!(judged(&[(
            "Content-Security-Policy",
            "FRAME-ANCESTORS 'none'"
        )]));
        assert!(judged(&[(
            "Content-Security-Policy",
            "frame-ancestors https://portal.example"
        )]));
        // Nothing, an ignored ALLOW-FROM, a CSP without the directive, wildcards that let any
        // site frame the page (and override XFO).
        assert!(!judged(&[]));
        assert!(!judged(&[(
            "X-Frame-Options",
            "ALLOW-FROM https://portal.example"
        )]));
        assert!(!judged(&[(
            "Content-Security-Policy",
            "frame-src 'self'; object-src 'none'"
        )]));
        assert!(!judged(&[
            ("X-Frame-Options", "DENY"),
            ("Content-Security-Policy", "frame-ancestors *"),
        ]));
        assert!(!judged(&[(
            "Content-Security-Policy",
            "frame-ancestors 'self' https:"
        )]));
        assert!(!judged(&[(
            "Content-Security-Policy",
            "frame-ancestors https://*"
        )]));
    }

    #[test]
    fn every_forwarded_jwt_is_found_whatever_its_header_or_scheme() {
        let found = super::forwarded_jwts(RECORDED_ECHO).unwrap();
        let headers: Vec<&str> = found.iter().map(|t| t.header.as_str()).collect();
        assert_eq!(headers, ["Authorization", "X-Auth-Request-Access-Token"]);
        assert!(found.iter().all(|t| t.expires_at == RECORDED_EXP));

        let token = found_token(RECORDED_ECHO);
        let renamed = serde_json::json!({"headers": {
            "X_Forwarded_Access_Token": [token],
            "x-id": [format!("bearer {token}")],
            "Cookie": ["_oauth2_proxy=c2Vzc2lvbg|1795|c2ln"],
        }})
        .to_string();
        let found = super::forwarded_jwts(&renamed).unwrap();
        let headers: Vec<&str> = found.iter().map(|t| t.header.as_str()).collect();
        assert_eq!(headers, ["X_Forwarded_Access_Token", "x-id"]);
        assert_eq!(super::forwarded_jwts("<html>sign in</html>"), None);
    }

    fn found_token(echo: &str) -> String {
        let json: serde_json::Value = serde_json::from_str(echo).unwrap();
        json["headers"]["X-Auth-Request-Access-Token"][0]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn an_expired_forwarded_token_fails_and_renewed_or_refused_pass() {
        let echo = page(200, RECORDED_ECHO);
        let current = super::check_no_expired_token(&echo, true, RECORDED_EXP - 5);
        assert!(current.passed, "{current}");
        assert!(
            current.actual.contains("Authorization (expires in 5 s)"),
            "{current}"
        );

        let expired = super::check_no_expired_token(&echo, true, RECORDED_EXP + 2);
        assert!(!expired.passed);
        assert!(
            expired.actual.contains(
                "expired tokens in Authorization (expired 2 s ago), \
                 X-Auth-Request-Access-Token (expired 2 s ago)"
            ),
            "{expired}"
        );
        assert!(expired.actual.contains("cookie_refresh"), "{expired}");

        let refused = page(
            403,
            r#"<form method="GET" action="/oauth2/start"><button type="submit">Sign in with Keycloak</button></form>"#,
        );
        let refused = super::check_no_expired_token(&refused, true, RECORDED_EXP + 2);
        assert!(refused.passed, "{refused}");
        assert!(refused.actual.contains("not reached: 403"), "{refused}");

        // An error page is neither renewal nor a sign-in: red, saying so.
        let broken = page(500, "<html>Internal Server Error</html>");
        let broken = super::check_no_expired_token(&broken, true, RECORDED_EXP + 2);
        assert!(
            !broken.passed && broken.actual.starts_with("inconclusive"),
            "{broken}"
        );
        let tokenless = page(200, r#"{"headers":{"Accept":["*/*"]}}"#);
        let tokenless = super::check_no_expired_token(&tokenless, true, RECORDED_EXP + 2);
        assert!(
            !tokenless.passed && tokenless.actual.starts_with("inconclusive"),
            "{tokenless}"
        );
    }

    #[test]
    fn a_cookie_set_in_parts_counts_as_set_and_no_other_does() {
        let mut headers = reqwest::header::HeaderMap::new();
        for value in [
            "_oauth2_proxy_0=part; Path=/; Secure; HttpOnly",
            "_oauth2_proxy_csrf=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "_oauth2_proxy_1=gone; Path=/; Max-Age=0",
            "other=x; Max-Age=60",
        ] {
            headers.append(reqwest::header::SET_COOKIE, value.parse().unwrap());
        }
        let set = super::cookies_set(&headers);
        assert_eq!(set, ["_oauth2_proxy_0", "other"]);
        assert!(
            set.iter()
                .any(|s| super::is_cookie_or_part(s, "_oauth2_proxy"))
        );
        assert!(!super::is_cookie_or_part(
            "_oauth2_proxy_csrf",
            "_oauth2_proxy"
        ));
        assert!(!super::is_cookie_or_part("_oauth2_proxy_", "_oauth2_proxy"));
        assert!(!super::is_cookie_or_part("_oauth2_proxyx", "_oauth2_proxy"));
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Page {
        let mut page = page(status, body);
        for (name, value) in headers {
            page.headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        page
    }

    #[test]
    fn a_refusal_is_attributed_only_by_the_answer_its_part_gives() {
        use crate::scenario::Refuser;
        let idp = [url::Url::parse("http://127.0.0.1:18081/").unwrap().origin()];
        let challenge = [(
            "www-authenticate",
            r#"Bearer realm="https://app.test/headers", error="invalid_token""#,
        )];
        let jwt_authn = answer(401, &challenge, "Jwt issuer is not configured");
        assert_eq!(super::refuser(&jwt_authn, &idp), Some(Refuser::JwtAuthn));
        let rbac = answer(403, &[], "RBAC: access denied");
        assert_eq!(super::refuser(&rbac, &idp), Some(Refuser::Rbac));
        let sign_in = answer(
            403,
            &[],
            r#"<form method="GET" action="/oauth2/start"><button type="submit">Sign in with Keycloak</button></form>"#,
        );
        assert_eq!(super::refuser(&sign_in, &idp), Some(Refuser::SignIn));
        let to_idp = answer(
            302,
            &[(
                "location",
                "http://127.0.0.1:18081/realms/r/protocol/openid-connect/auth",
            )],
            "",
        );
        assert_eq!(super::refuser(&to_idp, &idp), Some(Refuser::SignIn));

        // The same statuses from anyone else: a 401 without the challenge, a 403 of other
        // words, a redirect elsewhere.
        for other in [
            answer(401, &[], "Jwt verification fails"),
            answer(401, &challenge, "Unauthorized"),
            answer(403, &[], "Forbidden"),
            answer(302, &[("location", "https://app.test/elsewhere")], ""),
        ] {
            assert_eq!(super::refuser(&other, &idp), None, "{other:?}");
        }

        let wrong = super::check_refused_by(&[Refuser::JwtAuthn, Refuser::SignIn], &rbac, &idp);
        assert!(!wrong.passed);
        assert_eq!(
            wrong.expected,
            "jwt_authn's refusal (401, WWW-Authenticate: Bearer, a body \"Jwt ...\"), or the \
             auth proxy's sign-in (its sign-in page, or a redirect to sign in)"
        );
        assert_eq!(
            wrong.actual,
            "RBAC's refusal (403 \"RBAC: access denied\"): 403 at https://app.test/headers with \
             \"RBAC: access denied\""
        );
        let unknown = super::check_refused_by(&[Refuser::JwtAuthn], &answer(401, &[], "no"), &idp);
        assert_eq!(
            unknown.actual,
            "no refusal the harness can attribute: 401 at https://app.test/headers with \"no\""
        );
        assert!(super::check_refused_by(&[Refuser::JwtAuthn], &jwt_authn, &idp).passed);
    }

    #[test]
    fn an_impostor_is_refused_only_when_every_caller_refused_its_certificate() {
        use crate::control::Handshake;
        let refused = [
            Handshake::CertificateRefused("UnknownCA".into()),
            Handshake::CertificateRefused("UnknownCA".into()),
        ];
        let check = super::check_impostor_refused(Some(&refused));
        assert!(check.passed, "{check}");
        assert_eq!(
            check.actual,
            "2 connection(s), each ended: the caller refused the certificate (alert UnknownCA); \
             the caller refused the certificate (alert UnknownCA)"
        );

        let fooled = [
            Handshake::CertificateRefused("UnknownCA".into()),
            Handshake::Completed { request: true },
        ];
        let check = super::check_impostor_refused(Some(&fooled));
        assert!(!check.passed);
        assert!(
            check
                .actual
                .contains("completed, and the caller sent a request the impostor answered"),
            "{check}"
        );
        let other = [Handshake::Failed(
            "the caller's alert HandshakeFailure".into(),
        )];
        assert!(!super::check_impostor_refused(Some(&other)).passed);

        // A caller that never got there refused nothing: a 503 alone is anyone's.
        let unreached = super::check_impostor_refused(Some(&[]));
        assert!(!unreached.passed);
        assert!(unreached.actual.contains("never reached it"), "{unreached}");
        let absent = super::check_impostor_refused(None);
        assert!(!absent.passed && absent.actual.starts_with("no impostor in place"));
    }

    #[test]
    fn echoed_credentials_never_reach_an_excerpt_even_cut_short() {
        let echo = r#"{"headers":{"Accept":["*/*"],"Cookie":["_oauth2_proxy=c2Vzc2lvbi1zZWNyZXQtdmFsdWUtdGhhdC1pcy1sb25n|1795|sig"],"Authorization":["Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"]}}"#;
        let shown = super::excerpt(echo);
        assert!(!shown.contains("c2Vzc2lvbi"), "{shown}");
        assert!(!shown.contains("eyJhbGci"), "{shown}");
        assert!(shown.contains(r#"\"Cookie\":[\"[redacted]\"]"#), "{shown}");
    }
}
