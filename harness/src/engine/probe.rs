//! Attack probes: raw requests judged on evidence of what answered them, never on status alone.
//! A gateway that answers 200 with its own page has not let anyone in; one that answers 302
//! after the app has already run has. The evidence is the request's nonce echoed by the app,
//! or the anonymous answer being exactly the app's answer to the signed-in user.

use futures::StreamExt as _;
use url::Url;

use super::expect::excerpt;
use crate::browser::raw::{RawClient, RawRequest, RawResponse};
use crate::check::CheckResult;
use crate::redact::Secret;
use crate::scenario::{Attack, Evidence, Probe, ProbeRequest, Protocol, Variables};

/// What a probe send carries to be let in: a session cookie or a bearer token.
#[derive(Debug, Clone)]
pub enum ProbeCredential {
    /// The browser's `Cookie` header for the app.
    Cookie(Secret),
    Bearer(Secret),
}

impl ProbeCredential {
    fn header_name(&self) -> &'static str {
        match self {
            Self::Cookie(_) => "Cookie",
            Self::Bearer(_) => "Authorization",
        }
    }

    fn header(&self) -> (String, String) {
        let value = match self {
            Self::Cookie(cookie) => cookie.expose().to_string(),
            Self::Bearer(token) => format!("Bearer {}", token.expose()),
        };
        (self.header_name().into(), value)
    }
}

/// The two standings a probe compares: the reference (let in) and the attacker's.
pub struct Standings {
    pub reference: Option<ProbeCredential>,
    pub attacker: Option<ProbeCredential>,
}

/// The header every probe request carries its nonce in; an echoing app gives it back.
pub const NONCE_HEADER: &str = "X-Meshauth-Probe";

/// Runs every request of `probe` against `origin`; one check per request.
pub async fn run(
    probe: &Probe,
    origin: &Url,
    client: &RawClient,
    vars: &Variables,
    standings: &Standings,
) -> Result<Vec<CheckResult>, String> {
    if probe.attack == Attack::IdpAdministration {
        let checks = futures::stream::iter(&probe.requests)
            .map(|request| run_anonymous(probe, request, origin, client, vars))
            .buffered(PROBES_IN_FLIGHT)
            .collect()
            .await;
        return Ok(checks);
    }
    let session = standings.reference.as_ref().ok_or(
        "a probe needs its reference credential: put a sign_in step (reference: session) or a \
         token_grant step (reference: bearer) before it",
    )?;
    let attacker = standings.attacker.as_ref();
    // The requests are independent: a few in flight at once, the checks in table order.
    let checks = futures::stream::iter(&probe.requests)
        .map(|request| run_one(probe, request, origin, client, vars, session, attacker))
        .buffered(PROBES_IN_FLIGHT)
        .collect()
        .await;
    Ok(checks)
}

/// How many probe requests (each an anonymous and a signed-in send) are in flight at once.
const PROBES_IN_FLIGHT: usize = 6;

/// The origin a probe request goes to: its own, or the app's.
fn request_origin(request: &ProbeRequest, app: &Url, vars: &Variables) -> Result<Url, CheckResult> {
    match &request.origin {
        None => Ok(app.clone()),
        Some(origin) => Url::parse(&vars.expand(origin)).map_err(|error| {
            CheckResult::new(
                format!("{} {}", request.method, request.path),
                false,
                "a probe request to a URL",
                format!("origin {origin:?} is not a URL: {error}"),
            )
        }),
    }
}

/// A request whose answer alone is judged: sent once, without a session.
async fn run_anonymous(
    probe: &Probe,
    request: &ProbeRequest,
    app: &Url,
    client: &RawClient,
    vars: &Variables,
) -> CheckResult {
    let origin = match request_origin(request, app, vars) {
        Ok(origin) => origin,
        Err(check) => return check,
    };
    let (nonce_value, marker) = (nonce(), nonce());
    let sent = build(request, &origin, vars, &nonce_value, &marker, None);
    let mut shown = sent.clone();
    shown.headers.retain(|(header, _)| header != NONCE_HEADER);
    let name = shown.describe(&origin, &origin != app);
    let answer = client.send(&origin, &sent).await;
    judge_idp_administration(name, &answer).with_severity(probe.severity)
}

/// What shows an answer came from Keycloak's administration, if anything does.
fn idp_administration_evidence(answer: &RawResponse) -> Option<String> {
    if let Some(location) = answer.header("location")
        && let Some(path) = location_path(location)
        && path.contains("/admin/")
        && path.trim_end_matches('/').ends_with("/console")
    {
        return Some(format!(
            "{} redirect to Keycloak's admin console ({location})",
            answer.status
        ));
    }
    for marker in ["Keycloak Administration", "/admin/keycloak."] {
        if answer.body.contains(marker) {
            return Some(format!(
                "{}: Keycloak's admin console page ({marker:?} in the body)",
                answer.status
            ));
        }
    }
    // The admin REST API's answer to a request without a token; Keycloak's other 401s and
    // a gateway's own refusals read differently.
    let error = serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|body| body["error"].as_str().map(str::to_string));
    if answer.status == 401 && error.as_deref() == Some("HTTP 401 Unauthorized") {
        return Some(
            "401 from Keycloak's admin REST API (it asks for an admin token: the API is published)"
                .into(),
        );
    }
    None
}

/// The path of a Location header value, absolute or relative.
fn location_path(location: &str) -> Option<String> {
    match Url::parse(location) {
        Ok(url) => Some(url.path().to_string()),
        Err(_) => Some(location.split(['?', '#']).next()?.to_string()),
    }
}

/// Keycloak's administration must not answer through the gateway: green on an answer that
/// shows none of it, red on one that does, inconclusive without an answer.
fn judge_idp_administration(name: String, answer: &Result<RawResponse, String>) -> CheckResult {
    let expected =
        "an answer that is not Keycloak's administration (console, its redirect, or admin API)";
    match answer {
        Err(error) => CheckResult::new(
            name,
            false,
            expected,
            format!("inconclusive: no answer ({error})"),
        ),
        Ok(answer) => match idp_administration_evidence(answer) {
            Some(evidence) => CheckResult::new(name, false, expected, evidence),
            None => CheckResult::new(
                name,
                true,
                expected,
                format!("{} {}", answer.status, excerpt(&answer.body)),
            ),
        },
    }
}

async fn run_one(
    probe: &Probe,
    request: &ProbeRequest,
    app: &Url,
    client: &RawClient,
    vars: &Variables,
    session: &ProbeCredential,
    attacker: Option<&ProbeCredential>,
) -> CheckResult {
    let origin = match request_origin(request, app, vars) {
        Ok(origin) => origin,
        Err(check) => return check,
    };
    let origin = &origin;
    // Two values per send: `${nonce}` goes where the data puts it (a forged header's value,
    // a path), the marker only into NONCE_HEADER, which only an echoing app gives back (a
    // sign-in page may reflect the path, never that header).
    let (anonymous_nonce, anonymous_marker) = (nonce(), nonce());
    let anonymous = build(
        request,
        origin,
        vars,
        &anonymous_nonce,
        &anonymous_marker,
        attacker,
    );
    let (signed_nonce, signed_marker) = (nonce(), nonce());
    let signed = build(
        request,
        origin,
        vars,
        &signed_nonce,
        &signed_marker,
        Some(session),
    );
    let mut shown = anonymous.clone();
    shown
        .headers
        .retain(|(header, _)| header != NONCE_HEADER && !is_credential(header, attacker));
    let name = match attacker {
        None => shown.describe(origin, origin != app),
        Some(_) => format!(
            "{} {}",
            shown.describe(origin, origin != app),
            probe.attacker.describe()
        ),
    };
    // Concurrently: a probe of a hung part waits out the gateway's timeout once, not twice.
    let (anonymous_answer, signed_answer) = tokio::join!(
        client.send(origin, &anonymous),
        client.send(origin, &signed)
    );
    let sign_in = SignIn::from_vars(vars);
    let follow_marker = nonce();
    let followed = match follow_target(origin, &sign_in, &anonymous_answer, &signed_answer) {
        Some(target) => {
            let follow = build_follow(&signed, session, &target, &follow_marker);
            Some(client.send(origin, &follow).await)
        }
        None => None,
    };
    let check = match probe.attack {
        Attack::UnauthenticatedReach => judge_reach(
            name,
            &Sent {
                method: &request.method,
                attacker: probe.attacker.describe(),
                origin,
                sign_in: &sign_in,
                followed: followed.as_ref().map(|answer| Followed {
                    answer,
                    marker: &follow_marker,
                }),
            },
            &anonymous_answer,
            &anonymous_marker,
            &signed_answer,
            request.evidence,
        ),
        Attack::ReachDuringOutage => judge_outage(
            name,
            &anonymous_answer,
            &anonymous_marker,
            &signed_answer,
            &signed_marker,
        ),
        Attack::IdpAdministration => judge_idp_administration(name, &anonymous_answer),
        Attack::ForgedIdentity => judge_identity(
            name,
            &anonymous_answer,
            &anonymous_marker,
            &signed_answer,
            &signed_nonce,
        ),
    };
    check.with_severity(probe.severity)
}

/// Whether `header` is the attacker's own credential header (kept out of check names: it
/// holds a token).
fn is_credential(header: &str, attacker: Option<&ProbeCredential>) -> bool {
    attacker.is_some_and(|credential| header.eq_ignore_ascii_case(credential.header_name()))
}

fn nonce() -> String {
    format!("mp{:016x}", rand::random::<u64>())
}

/// The nonce as an IPv4 address in 198.18.0.0/15 (RFC 2544's benchmarking range, never a
/// real client): where a forged value must parse as an address to be believed (a client
/// address a gateway takes from `X-Forwarded-For`), it still marks the request.
fn nonce_address(nonce: &str) -> String {
    let hash = nonce.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    let host = hash & 0x1_ffff;
    format!(
        "198.{}.{}.{}",
        18 + (host >> 16),
        (host >> 8) & 0xff,
        host & 0xff
    )
}

/// Whether a header value carries the forged `nonce`, or its address as one list element
/// (`198.18.1.2` must not match inside `198.18.1.23`).
fn carries_forged(value: &str, nonce: &str, address: &str) -> bool {
    value.contains(nonce)
        || value
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .any(|token| token == address)
}

fn build(
    request: &ProbeRequest,
    origin: &Url,
    vars: &Variables,
    nonce: &str,
    marker: &str,
    credential: Option<&ProbeCredential>,
) -> RawRequest {
    let vars = vars
        .with("nonce", nonce.to_string())
        .with("nonce_address", nonce_address(nonce));
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (vars.expand(name), vars.expand(value)))
        .collect();
    headers.push((NONCE_HEADER.to_string(), marker.to_string()));
    if let Some(credential) = credential {
        headers.push(credential.header());
    }
    RawRequest {
        method: request.method.clone(),
        target: vars.expand(&request.path),
        host: request
            .host
            .as_deref()
            .map(|h| vars.expand(h))
            .unwrap_or_else(|| crate::browser::raw::authority(origin)),
        headers,
        http2: request.protocol == Protocol::H2,
    }
}

/// The same-origin target of a redirect both sends got alike (and not to sign in): whether the
/// app stands behind it shows only by following it with the session, as the browser would.
fn follow_target(
    origin: &Url,
    sign_in: &SignIn,
    anonymous: &Result<RawResponse, String>,
    signed: &Result<RawResponse, String>,
) -> Option<Url> {
    let (Ok(anonymous), Ok(signed)) = (anonymous, signed) else {
        return None;
    };
    if !(300..400).contains(&anonymous.status) || anonymous.status != signed.status {
        return None;
    }
    let target = origin.join(anonymous.header("location")?).ok()?;
    let signed_target = origin.join(signed.header("location")?).ok()?;
    (target == signed_target && target.origin() == origin.origin() && !sign_in.is_sign_in(&target))
        .then_some(target)
}

/// The signed-in request again, as a GET of the redirect's target, with its own marker.
fn build_follow(
    signed: &RawRequest,
    credential: &ProbeCredential,
    target: &Url,
    marker: &str,
) -> RawRequest {
    let mut headers: Vec<(String, String)> = signed
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(credential.header_name()))
        .cloned()
        .collect();
    headers.push((NONCE_HEADER.to_string(), marker.to_string()));
    let mut path = target.path().to_string();
    if let Some(query) = target.query() {
        path = format!("{path}?{query}");
    }
    RawRequest {
        method: "GET".into(),
        target: path,
        host: signed.host.clone(),
        headers,
        http2: signed.http2,
    }
}

/// Where the deployment sends a browser to sign in: a redirect there is a refusal.
pub(crate) struct SignIn {
    /// The IdP's and the issuer's origins.
    idp_origins: Vec<url::Origin>,
}

impl SignIn {
    pub(crate) fn from_vars(vars: &Variables) -> Self {
        let idp_origins = ["${idp}", "${issuer}"]
            .iter()
            .filter_map(|name| Url::parse(&vars.expand(name)).ok())
            .map(|url| url.origin())
            .collect();
        Self { idp_origins }
    }

    /// Whether `location` sends the browser to sign in: the auth proxy's own endpoints (any
    /// `/oauth2/` path, at any host), the IdP, or an OpenID authorization request anywhere.
    fn is_sign_in(&self, location: &Url) -> bool {
        let path = location.path().to_ascii_lowercase();
        let query_has = |name: &str| location.query_pairs().any(|(key, _)| key == name);
        path.contains("/oauth2/")
            || self.idp_origins.contains(&location.origin())
            || (query_has("client_id") && query_has("redirect_uri"))
    }
}

/// What was sent, as far as judging its answer needs.
struct Sent<'a> {
    method: &'a str,
    /// How the attack send went ("without a session", …).
    attacker: &'a str,
    origin: &'a Url,
    sign_in: &'a SignIn,
    /// The signed-in user's answer at the target of a redirect both sends got alike.
    followed: Option<Followed<'a>>,
}

struct Followed<'a> {
    answer: &'a Result<RawResponse, String>,
    marker: &'a str,
}

/// Who answered a probe request, and the evidence for it.
#[derive(Debug, PartialEq)]
enum Answered {
    App(String),
    NotApp(String),
    Unknown(String),
}

/// Statuses a gateway or auth proxy gives on its own: refusals, malformed requests, its errors.
fn is_refusal_status(status: u16) -> bool {
    matches!(
        status,
        400 | 401 | 403 | 405 | 407 | 408 | 411 | 413 | 414 | 421 | 431
    ) || status >= 500
}

/// Response headers that differ between any two answers (time, size, ids) or that the gateway
/// adds to every answer: what is left says who made the answer.
const VOLATILE_HEADERS: &[&str] = &[
    "date",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "set-cookie",
    "x-request-id",
    "x-envoy-upstream-service-time",
    "server",
    "x-envoy-decorator-operation",
];

/// The headers that identify who made a body-less answer (HEAD, a CORS preflight).
fn header_fingerprint(answer: &RawResponse) -> Vec<(String, String)> {
    let mut fingerprint: Vec<(String, String)> = answer
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_string()))
        .filter(|(name, _)| !VOLATILE_HEADERS.contains(&name.as_str()))
        .collect();
    fingerprint.sort();
    fingerprint
}

/// Who answered `answer`: the app (its nonce echoed, its own redirect, its exact answer to the
/// signed-in user), not the app (a refusal, a sign-in redirect, another answer than the app
/// gives), or unknown (nothing either way). `reference` is the signed-in user's answer to the
/// same request, where that answer tells the app apart.
fn who_answered(
    sent: &Sent,
    answer: &RawResponse,
    nonce: &str,
    reference: Option<&RawResponse>,
) -> Answered {
    if answer.body.contains(nonce) {
        return Answered::App("the app echoed this request's nonce".into());
    }
    if (300..400).contains(&answer.status) {
        return judge_redirect(sent, answer, reference);
    }
    if is_refusal_status(answer.status) {
        return Answered::NotApp(describe_refusal(answer));
    }
    let Some(reference) = reference.filter(|r| !is_refusal_status(r.status)) else {
        return Answered::NotApp(describe_refusal(answer));
    };
    let bodiless = sent.method.eq_ignore_ascii_case("HEAD") || answer.body.trim().is_empty();
    if !bodiless {
        return if answer.status == reference.status && answer.body == reference.body {
            Answered::App(format!(
                "the body is exactly what the app serves the signed-in user here ({} bytes)",
                answer.body.len()
            ))
        } else {
            Answered::NotApp(describe_refusal(answer))
        };
    }
    // No body to carry the nonce (HEAD, a preflight): the headers the app alone sends.
    let fingerprint = header_fingerprint(answer);
    if answer.status == reference.status
        && (200..300).contains(&answer.status)
        && reference.body.trim().is_empty() == answer.body.trim().is_empty()
        && fingerprint == header_fingerprint(reference)
    {
        let shown: Vec<&str> = fingerprint.iter().map(|(name, _)| name.as_str()).collect();
        return if shown.is_empty() {
            Answered::Unknown(format!(
                "{} with no body and no header telling who answered, as the signed-in user's \
                 answer",
                answer.status
            ))
        } else {
            Answered::App(format!(
                "no body, but the same status and headers as the app's answer to the signed-in \
                 user ({})",
                shown.join(", ")
            ))
        };
    }
    Answered::NotApp(format!(
        "{} unlike the app's answer to the signed-in user ({})",
        answer.status, reference.status
    ))
}

/// The headers the app puts on its answers whatever they hold: the fingerprint of one of its
/// answers without those that describe the body.
fn app_marks(app_answer: &RawResponse) -> Vec<(String, String)> {
    header_fingerprint(app_answer)
        .into_iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "content-type" | "location" | "etag" | "last-modified"
            )
        })
        .collect()
}

/// A redirect is a refusal only when it sends the browser to sign in (or the gateway moves the
/// same request to HTTPS); a redirect to the app's own paths is the app answering.
fn judge_redirect(sent: &Sent, answer: &RawResponse, reference: Option<&RawResponse>) -> Answered {
    let Some(location) = answer.header("location") else {
        return Answered::Unknown(format!("{} redirect without Location", answer.status));
    };
    let Ok(target) = sent.origin.join(location) else {
        return Answered::Unknown(format!(
            "{} redirect to {location:?}, which is not a URL",
            answer.status
        ));
    };
    if sent.sign_in.is_sign_in(&target) {
        return Answered::NotApp(format!("{} redirect to sign in: {location}", answer.status));
    }
    if target.scheme() == "https"
        && sent.origin.scheme() == "http"
        && target.host_str() == sent.origin.host_str()
    {
        return Answered::NotApp(format!(
            "{} the gateway's redirect to HTTPS: {location}",
            answer.status
        ));
    }
    let same_as_signed_in = reference.is_some_and(|reference| {
        reference.status == answer.status
            && reference
                .header("location")
                .and_then(|l| sent.origin.join(l).ok())
                .is_some_and(|l| l == target)
    });
    if !same_as_signed_in {
        return Answered::Unknown(format!(
            "{} redirect to {location}: neither a sign-in nor the app's answer to the \
             signed-in user",
            answer.status
        ));
    }
    // The same redirect for everyone comes from the app only if it leads to the app: the auth
    // service's own normalising redirect (to its check path) leads the signed-in user nowhere.
    match sent.followed.as_ref().map(|f| (f.answer, f.marker)) {
        Some((Ok(followed), marker)) if followed.body.contains(marker) => {
            // Whoever redirects, the signed-in user ends at the app: only the app's own marks
            // on the redirect (the headers it puts on every answer) say the app made it, and
            // not the auth service's refusal passed on by the gateway.
            let marks = app_marks(followed);
            let fingerprint = header_fingerprint(answer);
            let missing: Vec<&str> = marks
                .iter()
                .filter(|mark| !fingerprint.contains(mark))
                .map(|(name, _)| name.as_str())
                .collect();
            if marks.is_empty() {
                Answered::Unknown(format!(
                    "{} redirect to {location}, as for the signed-in user, who is served the \
                     app there; the app's answers carry no header of their own to tell its \
                     redirect from another part's",
                    answer.status
                ))
            } else if missing.is_empty() {
                Answered::App(format!(
                    "the app's own redirect to {location} (with the app's headers: {}), as it \
                     answers the signed-in user, who is served the app there: the request \
                     passed the check unauthenticated",
                    marks
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            } else {
                Answered::NotApp(format!(
                    "{} redirect to {location} without the headers the app puts on its answers \
                     ({}): another part's, not the app's",
                    answer.status,
                    missing.join(", ")
                ))
            }
        }
        Some((Ok(followed), _)) => Answered::NotApp(format!(
            "{} redirect to {location}, where not even the signed-in user reaches the app ({}): \
             not the app's redirect",
            answer.status, followed.status
        )),
        Some((Err(error), _)) => Answered::Unknown(format!(
            "{} redirect to {location}, as for the signed-in user, whose visit there got no \
             response ({error})",
            answer.status
        )),
        None => Answered::Unknown(format!(
            "{} redirect to {location}, as for the signed-in user, off this origin: nothing \
             tells whose redirect it is",
            answer.status
        )),
    }
}

/// What an answer that is not the app's looks like, for the report.
fn describe_refusal(answer: &RawResponse) -> String {
    let what = match answer.status {
        300..=399 => match answer.header("location") {
            Some(location) => format!("redirect to {location}"),
            None => "redirect".into(),
        },
        401 => "unauthenticated".into(),
        403 if answer.body.to_ascii_lowercase().contains("sign in") => "sign-in page".into(),
        403 => "forbidden".into(),
        _ => excerpt(&answer.body),
    };
    format!("{} {what}", answer.status)
}

fn judge_reach(
    name: String,
    sent: &Sent,
    anonymous: &Result<RawResponse, String>,
    nonce: &str,
    signed: &Result<RawResponse, String>,
    evidence: Evidence,
) -> CheckResult {
    let expected = format!("not answered by the app {}", sent.attacker);
    let expected = expected.as_str();
    let answer = match anonymous {
        Ok(answer) => answer,
        // No response is a refusal only beside a control: the same request with the session,
        // on the same listener at the same moment, got an answer.
        Err(error) => {
            return match signed {
                Ok(control) => CheckResult::new(
                    name,
                    true,
                    expected,
                    format!(
                        "no response ({error}) while the signed-in control got {} on the same \
                         listener",
                        control.status
                    ),
                ),
                Err(control_error) => CheckResult::new(
                    name,
                    false,
                    expected,
                    format!(
                        "inconclusive: no response ({error}), and none to the signed-in control \
                         either ({control_error}): the listener is not answering, so nothing \
                         was checked; is the address right?"
                    ),
                ),
            };
        }
    };
    let reference = match evidence {
        Evidence::NonceOrSignedInAnswer => signed.as_ref().ok(),
        Evidence::Nonce => None,
    };
    match who_answered(sent, answer, nonce, reference) {
        Answered::App(evidence) => CheckResult::new(
            name,
            false,
            expected,
            format!(
                "{} from the app: {evidence}; body {}",
                answer.status,
                excerpt(&answer.body)
            ),
        ),
        Answered::NotApp(seen) => CheckResult::new(name, true, expected, seen),
        Answered::Unknown(seen) => {
            CheckResult::new(name, false, expected, format!("inconclusive: {seen}"))
        }
    }
}

/// While a part the check depends on is down, neither an anonymous request nor one with a
/// session may reach the app: the gateway must fail closed.
fn judge_outage(
    name: String,
    anonymous: &Result<RawResponse, String>,
    anonymous_marker: &str,
    signed: &Result<RawResponse, String>,
    signed_marker: &str,
) -> CheckResult {
    let expected =
        "refused while the check cannot be made (fail closed), with or without a session";
    let reached = |answer: &Result<RawResponse, String>, marker: &str| {
        answer
            .as_ref()
            .ok()
            .filter(|a| a.body.contains(marker))
            .map(|a| format!("{} {}", a.status, excerpt(&a.body)))
    };
    let seen = |answer: &Result<RawResponse, String>| match answer {
        Ok(answer) => describe_refusal(answer),
        Err(error) => format!("no response ({error})"),
    };
    // A gateway still waiting on a hung auth service has decided nothing yet: after its own
    // timeout (Istio's default is 600 s) it may well let the request through.
    let held = [anonymous, signed].into_iter().find_map(|answer| {
        answer
            .as_ref()
            .err()
            .filter(|e| e.starts_with(crate::browser::raw::NO_COMPLETE_RESPONSE))
    });
    if let Some(error) = held {
        return CheckResult::new(
            name,
            false,
            expected,
            format!(
                "inconclusive: the gateway held the request ({error}), so what it does once its \
                 ext_authz timeout ends is unknown; set the provider's timeout to seconds"
            ),
        );
    }
    if let (Err(anonymous_error), Err(signed_error)) = (anonymous, signed) {
        return CheckResult::new(
            name,
            false,
            expected,
            format!(
                "inconclusive: no response at all, with or without a session ({anonymous_error}; \
                 {signed_error}): the gateway itself is not answering, so its decision was not seen"
            ),
        );
    }
    if let Some(answer) = reached(anonymous, anonymous_marker) {
        return CheckResult::new(
            name,
            false,
            expected,
            format!("without a session the request reached the app (fail open): {answer}"),
        );
    }
    if let Some(answer) = reached(signed, signed_marker) {
        return CheckResult::new(
            name,
            false,
            expected,
            format!("with a session the request reached the app unchecked (fail open): {answer}"),
        );
    }
    CheckResult::new(
        name,
        true,
        expected,
        format!(
            "without a session: {}; with one: {}",
            seen(anonymous),
            seen(signed)
        ),
    )
}

fn judge_identity(
    name: String,
    anonymous: &Result<RawResponse, String>,
    anonymous_marker: &str,
    signed: &Result<RawResponse, String>,
    signed_nonce: &str,
) -> CheckResult {
    let expected = "refused without a session; with one, the app sees no forged value";
    if let Ok(answer) = anonymous
        && answer.body.contains(anonymous_marker)
    {
        return CheckResult::new(
            name,
            false,
            expected,
            format!(
                "without a session the forged request reached the app ({}): {}",
                answer.status,
                excerpt(&answer.body)
            ),
        );
    }
    let answer = match signed {
        Err(error) => {
            return CheckResult::new(
                name,
                false,
                expected,
                format!("inconclusive: the signed-in request got no response ({error})"),
            );
        }
        Ok(answer) => answer,
    };
    let Some(headers) = echoed_headers(&answer.body) else {
        return CheckResult::new(
            name,
            false,
            expected,
            format!(
                "inconclusive: the signed-in request did not reach an echoing app ({}), so \
                 nothing was verified; probe a path the app echoes headers on",
                describe_refusal(answer)
            ),
        );
    };
    let address = nonce_address(signed_nonce);
    let forged = |value: &str| carries_forged(value, signed_nonce, &address);
    let leaked: Vec<String> = headers
        .iter()
        .filter(|(header, _)| !header.eq_ignore_ascii_case(NONCE_HEADER))
        .filter(|(header, value)| {
            if header.eq_ignore_ascii_case("x-forwarded-for") {
                // Envoy appends the peer it saw; a forged first entry is kept, never trusted.
                value.rsplit(',').next().is_some_and(forged)
            } else {
                forged(value)
            }
        })
        .map(|(header, value)| format!("{header}: {value}"))
        .collect();
    if leaked.is_empty() {
        CheckResult::new(
            name,
            true,
            expected,
            format!(
                "refused without a session; with one the app received none of it ({} headers)",
                headers.len()
            ),
        )
    } else {
        CheckResult::new(
            name,
            false,
            expected,
            format!("the app received the forged {}", leaked.join("; ")),
        )
    }
}

/// Every header the app echoed, multiple values joined as one header line would carry them.
fn echoed_headers(body: &str) -> Option<Vec<(String, String)>> {
    Some(
        super::expect::echoed_header_values(body)?
            .into_iter()
            .map(|(name, values)| (name, values.join(", ")))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            headers: vec![("Location".into(), "/oauth2/start".into())],
            body: body.into(),
        }
    }

    fn with_headers(status: u16, headers: &[(&str, &str)], body: &str) -> RawResponse {
        RawResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    fn judge(
        method: &str,
        anonymous: Result<RawResponse, String>,
        signed: Result<RawResponse, String>,
        evidence: Evidence,
    ) -> CheckResult {
        let origin = Url::parse("https://127.0.0.1:8443").unwrap();
        let vars = Variables::new([
            ("idp", "http://127.0.0.1:8080".to_string()),
            (
                "issuer",
                "http://127.0.0.1:8080/realms/meshauth".to_string(),
            ),
        ]);
        let sign_in = SignIn::from_vars(&vars);
        let sent = Sent {
            attacker: "without a session",
            method,
            origin: &origin,
            sign_in: &sign_in,
            followed: None,
        };
        judge_reach("probe".into(), &sent, &anonymous, "n1", &signed, evidence)
    }

    /// A redirect both sends got alike, and the signed-in visit to where it points.
    fn judge_followed(
        redirect: &RawResponse,
        followed: &Result<RawResponse, String>,
    ) -> CheckResult {
        let origin = Url::parse("https://127.0.0.1:8443").unwrap();
        let sign_in = SignIn::from_vars(&Variables::default());
        let sent = Sent {
            attacker: "without a session",
            method: "GET",
            origin: &origin,
            sign_in: &sign_in,
            followed: Some(Followed {
                answer: followed,
                marker: "f1",
            }),
        };
        judge_reach(
            "probe".into(),
            &sent,
            &Ok(redirect.clone()),
            "n1",
            &Ok(redirect.clone()),
            Evidence::NonceOrSignedInAnswer,
        )
    }

    fn get(anonymous: RawResponse, signed: &RawResponse) -> CheckResult {
        judge(
            "GET",
            Ok(anonymous),
            Ok(signed.clone()),
            Evidence::NonceOrSignedInAnswer,
        )
    }

    #[test]
    fn reach_is_judged_on_evidence_not_status() {
        let robots = response(200, "User-agent: *\nDisallow: /deny\n");
        // The app's own robots.txt, anonymously: reached, though nothing echoed.
        let check = get(robots.clone(), &robots);
        assert!(
            !check.passed && check.actual.contains("exactly what the app serves"),
            "{check}"
        );
        // The auth proxy's own 200 page is not the app.
        let check = get(response(200, "User-agent: *\nDisallow: /"), &robots);
        assert!(check.passed, "{check}");
        // A redirect that carries the nonce back (an echoing app behind a 302) is reached.
        let echoed = response(302, "{\"headers\":{\"X-Meshauth-Probe\":[\"n1\"]}}");
        let check = get(echoed, &robots);
        assert!(
            !check.passed && check.actual.contains("echoed this request's nonce"),
            "{check}"
        );
        // The sign-in redirect is a refusal, even when the signed-in user gets a redirect too.
        let redirect = response(302, "<a href=\"/oauth2/start\">Found</a>");
        let check = get(redirect.clone(), &redirect);
        assert!(
            check.passed && check.actual == "302 redirect to sign in: /oauth2/start",
            "{check}"
        );
    }

    #[test]
    fn a_redirect_is_a_refusal_only_when_it_sends_the_browser_to_sign_in() {
        // go-httpbin puts its CORS headers on every answer, redirects included.
        let cors = [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Credentials", "true"),
        ];
        let app_redirect = with_headers(301, &[("Location", "/anything"), cors[0], cors[1]], "");
        // `//anything` past a policy scoped to `/anything*`: the app normalises it with a 301,
        // exactly as it does for the signed-in user, who is served the app where it points.
        let served = Ok(with_headers(
            200,
            &cors,
            "{\"headers\":{\"X-Meshauth-Probe\":[\"f1\"]}}",
        ));
        let check = judge_followed(&app_redirect, &served);
        assert!(
            !check.passed && check.actual.contains("the app's own redirect to /anything"),
            "{check}"
        );
        // The auth service's refusal passed on by the gateway (Go's mux normalising the
        // check's path, without a pathPrefix) leads the signed-in user to the app too, but
        // carries none of the app's headers: not the app's redirect.
        let refusal = with_headers(301, &[("Location", "/anything")], "");
        let check = judge_followed(&refusal, &served);
        assert!(
            check.passed
                && check
                    .actual
                    .contains("without the headers the app puts on its answers"),
            "{check}"
        );
        // An app whose answers carry no header of their own: nothing tells whose it is.
        let bare = Ok(response(
            200,
            "{\"headers\":{\"X-Meshauth-Probe\":[\"f1\"]}}",
        ));
        let check = judge_followed(&refusal, &bare);
        assert!(
            !check.passed && check.actual.starts_with("inconclusive"),
            "{check}"
        );
        // The auth service's own normalising redirect (Go's mux, to its check path) is the
        // same for everyone, and leads the signed-in user nowhere the app answers.
        let checker_redirect = with_headers(301, &[("Location", "/ext-authz/anything")], "");
        let check = judge_followed(&checker_redirect, &Ok(response(404, "404 page not found")));
        assert!(
            check.passed
                && check
                    .actual
                    .contains("not even the signed-in user reaches the app"),
            "{check}"
        );
        // Nothing followed: no evidence either way.
        let check = get(app_redirect.clone(), &app_redirect);
        assert!(
            !check.passed && check.actual.starts_with("inconclusive"),
            "{check}"
        );
        for sign_in in [
            "/oauth2/start?rd=%2Fanything",
            "https://other.example/OAuth2/sign_in",
            "http://127.0.0.1:8080/realms/meshauth/protocol/openid-connect/auth?x=1",
            "https://idp.example/authorize?client_id=a&redirect_uri=b",
        ] {
            let refused = with_headers(302, &[("Location", sign_in)], "");
            let check = get(refused, &app_redirect);
            assert!(check.passed, "{sign_in}: {check}");
        }
        // Elsewhere, and not what the app answers: nothing tells who answered.
        let elsewhere = with_headers(302, &[("Location", "https://cdn.example/x")], "");
        let check = get(elsewhere, &app_redirect);
        assert!(
            !check.passed && check.actual.starts_with("inconclusive"),
            "{check}"
        );
        // The gateway moving a plain-HTTP request to HTTPS answers for itself.
        let origin = Url::parse("http://127.0.0.1:8080").unwrap();
        let sign_in = SignIn::from_vars(&Variables::default());
        let sent = Sent {
            attacker: "without a session",
            method: "GET",
            origin: &origin,
            sign_in: &sign_in,
            followed: None,
        };
        let upgrade = with_headers(301, &[("Location", "https://127.0.0.1/anything")], "");
        let check = judge_reach(
            "x".into(),
            &sent,
            &Ok(upgrade.clone()),
            "n1",
            &Ok(upgrade),
            Evidence::NonceOrSignedInAnswer,
        );
        assert!(check.passed, "{check}");
    }

    #[test]
    fn bodiless_answers_are_told_apart_by_the_apps_headers() {
        let app_head = with_headers(
            200,
            &[
                ("Content-Type", "application/json; charset=utf-8"),
                ("Access-Control-Allow-Origin", "*"),
                ("Content-Length", "512"),
                ("Date", "Sun, 06 Dec 2026 08:00:00 GMT"),
            ],
            "",
        );
        let mut anonymous_head = app_head.clone();
        anonymous_head.headers[2].1 = "498".into();
        anonymous_head.headers[3].1 = "Sun, 06 Dec 2026 08:00:01 GMT".into();
        let check = judge(
            "HEAD",
            Ok(anonymous_head),
            Ok(app_head.clone()),
            Evidence::NonceOrSignedInAnswer,
        );
        assert!(
            !check.passed && check.actual.contains("same status and headers"),
            "{check}"
        );
        // A CORS preflight answered by the app: the CORS headers only it sends.
        let preflight = with_headers(
            200,
            &[
                ("Access-Control-Allow-Origin", "https://unknown.invalid"),
                ("Access-Control-Allow-Methods", "GET, POST"),
            ],
            "",
        );
        let check = judge(
            "OPTIONS",
            Ok(preflight.clone()),
            Ok(preflight),
            Evidence::NonceOrSignedInAnswer,
        );
        assert!(!check.passed, "{check}");
        // The gateway's sign-in redirect for HEAD is a refusal.
        let refused = with_headers(302, &[("Location", "/oauth2/start")], "");
        let check = judge(
            "HEAD",
            Ok(refused),
            Ok(app_head.clone()),
            Evidence::NonceOrSignedInAnswer,
        );
        assert!(check.passed, "{check}");
        // Two empty 200s with nothing telling them apart: inconclusive, never green.
        let blank = with_headers(200, &[("Date", "x")], "");
        let check = judge(
            "HEAD",
            Ok(blank.clone()),
            Ok(blank),
            Evidence::NonceOrSignedInAnswer,
        );
        assert!(
            !check.passed && check.actual.starts_with("inconclusive"),
            "{check}"
        );
    }

    #[test]
    fn no_response_is_a_refusal_only_beside_an_answered_control() {
        let control = Ok(response(200, "{}"));
        let check = judge(
            "GET",
            Err("reset".into()),
            control,
            Evidence::NonceOrSignedInAnswer,
        );
        assert!(check.passed, "{check}");
        // A wrong address: neither gets an answer.
        let check = judge(
            "GET",
            Err("connection refused".into()),
            Err("connection refused".into()),
            Evidence::Nonce,
        );
        assert!(
            !check.passed && check.actual.starts_with("inconclusive"),
            "{check}"
        );
    }

    /// Answers recorded from Keycloak 26.7 behind the local gateway (2026-12-07).
    #[test]
    fn keycloaks_administration_is_told_from_other_answers() {
        let admin = |answer: RawResponse| {
            judge_idp_administration("GET /admin/".into(), &Ok(answer)).passed
        };
        let console_redirect = with_headers(
            302,
            &[("location", "http://127.0.0.1:26336/admin/master/console/")],
            "",
        );
        assert!(!admin(console_redirect));
        let relative = with_headers(302, &[("location", "/auth/admin/istio/console")], "");
        assert!(!admin(relative));
        let page = with_headers(
            200,
            &[("content-type", "text/html; charset=utf-8")],
            "<!doctype html><html><head><link rel=\"icon\" href=\"/resources/43xzw/admin/keycloak.v2/favicon.svg\"><title>Keycloak Administration Console</title>",
        );
        assert!(!admin(page));
        let api = with_headers(
            401,
            &[("content-type", "application/json")],
            r#"{"error":"HTTP 401 Unauthorized"}"#,
        );
        assert!(!admin(api));
        // The gateway's own answer, Keycloak's answers elsewhere, the sign-in: none is admin.
        assert!(admin(with_headers(404, &[], "")));
        assert!(admin(with_headers(
            404,
            &[("content-type", "application/json")],
            r#"{"error":"Unable to find matching target resource method"}"#
        )));
        assert!(admin(with_headers(
            400,
            &[],
            r#"{"error":"missingNormalization","error_description":"Request path not normalized"}"#
        )));
        assert!(admin(with_headers(
            302,
            &[(
                "location",
                "https://127.0.0.1:1/oauth2/start?rd=%2Fadmin%2Fconsole"
            )],
            ""
        )));
        let none = judge_idp_administration("GET /admin/".into(), &Err("reset".into()));
        assert!(
            !none.passed && none.actual.contains("inconclusive"),
            "{none:?}"
        );
    }

    #[test]
    fn an_outage_must_refuse_everyone() {
        let refused = Ok(response(403, "RBAC: access denied"));
        let echoed = Ok(response(200, r#"{"headers":{"X-Meshauth-Probe":["mpS"]}}"#));
        let check = judge_outage("GET /headers".into(), &refused, "mpA", &refused, "mpS");
        assert!(check.passed, "{check}");
        let check = judge_outage("GET /headers".into(), &refused, "mpA", &echoed, "mpS");
        assert!(
            !check.passed
                && check
                    .actual
                    .starts_with("with a session the request reached"),
            "{check}"
        );
        let reset: Result<RawResponse, String> = Err("connection reset by peer".into());
        let check = judge_outage("x".into(), &reset, "mpA", &refused, "mpS");
        assert!(check.passed, "{check}");
        let check = judge_outage("x".into(), &reset, "mpA", &reset, "mpS");
        assert!(
            !check.passed && check.actual.starts_with("inconclusive"),
            "{check}"
        );
        let held: Result<RawResponse, String> =
            Err(format!("{} 15s", crate::browser::raw::NO_COMPLETE_RESPONSE));
        let check = judge_outage("x".into(), &refused, "mpA", &held, "mpS");
        assert!(
            !check.passed && check.actual.starts_with("inconclusive"),
            "{check}"
        );
    }

    #[test]
    fn nonce_addresses_are_benchmark_addresses_matched_whole() {
        let address = nonce_address("mp0123456789abcdef");
        assert_eq!(address, nonce_address("mp0123456789abcdef"));
        let parsed: std::net::Ipv4Addr = address.parse().unwrap();
        let [first, second, ..] = parsed.octets();
        assert!(first == 198 && (second == 18 || second == 19), "{address}");
        assert!(carries_forged(
            &format!("{address}, 127.0.0.1"),
            "mpX",
            &address
        ));
        assert!(!carries_forged(&format!("{address}7"), "mpX", &address));
        assert!(!carries_forged(&format!("1{address}"), "mpX", &address));
    }

    #[test]
    fn forged_identity_needs_a_reached_app_and_no_forged_value() {
        let refused = Ok(response(403, "sign in"));
        let clean = Ok(response(
            200,
            r#"{"headers":{"X-Forwarded-For":["mpB, 127.0.0.1"],"X-Auth-Request-User":["alice"]}}"#,
        ));
        let check = judge_identity("GET /headers".into(), &refused, "mpA", &clean, "mpB");
        assert!(check.passed, "{check}");
        let leaked = Ok(response(
            200,
            r#"{"headers":{"X-Forwarded-User":["forged-mpB"],"X-Real-Ip":["mpB"]}}"#,
        ));
        let check = judge_identity("GET /headers".into(), &refused, "mpA", &leaked, "mpB");
        assert!(
            !check.passed
                && check
                    .actual
                    .contains("X-Forwarded-User: forged-mpB; X-Real-Ip: mpB"),
            "{check}"
        );
        let last_hop = Ok(response(
            200,
            r#"{"headers":{"X-Forwarded-For":["127.0.0.1, mpB"]}}"#,
        ));
        assert!(!judge_identity("x".into(), &refused, "mpA", &last_hop, "mpB").passed);
        // A forged client address the gateway believed (x-envoy-external-address from a
        // trusted-proxy count) is found by its address form too.
        let believed = Ok(response(
            200,
            &format!(
                r#"{{"headers":{{"X-Forwarded-For":["{0}, 127.0.0.1"],"X-Envoy-External-Address":["{0}"]}}}}"#,
                nonce_address("mpB")
            ),
        ));
        let check = judge_identity("x".into(), &refused, "mpA", &believed, "mpB");
        assert!(
            !check.passed && check.actual.contains("X-Envoy-External-Address: 198."),
            "{check}"
        );
        let unverified = judge_identity("x".into(), &refused, "mpA", &refused, "mpB");
        assert!(
            !unverified.passed && unverified.actual.starts_with("inconclusive"),
            "{unverified}"
        );
    }
}
