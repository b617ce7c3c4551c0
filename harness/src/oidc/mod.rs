//! OIDC verification: discovery, JWKS, signature and claim checks. Every check returns a
//! [`CheckResult`] naming the claim, the expectation and the actual value, so a failing check
//! explains itself.

pub mod forge;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::check::CheckResult;
use crate::redact::{SIGNATURE_REDACTED, Secret};

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("fetching {what} from {url} failed: {detail}")]
    Fetch {
        what: &'static str,
        url: String,
        detail: String,
    },
    #[error("the discovery document at {url} names issuer {actual:?}, expected {expected:?}")]
    IssuerMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("not a JWT: {0}")]
    Malformed(String),
}

/// The parts of the OpenID Provider metadata the harness uses.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    what: &'static str,
    url: &str,
) -> Result<T, OidcError> {
    let fail = |detail: String| OidcError::Fetch {
        what,
        url: url.to_string(),
        detail,
    };
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("HTTP {status}")));
    }
    response.json().await.map_err(|e| fail(e.to_string()))
}

/// Fetches `{issuer}/.well-known/openid-configuration` and checks that it names the same issuer.
pub async fn discover(client: &reqwest::Client, issuer: &str) -> Result<Discovery, OidcError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let discovery: Discovery = get_json(client, "the discovery document", &url).await?;
    if discovery.issuer != issuer {
        return Err(OidcError::IssuerMismatch {
            url,
            expected: issuer.to_string(),
            actual: discovery.issuer,
        });
    }
    Ok(discovery)
}

pub async fn fetch_jwks(
    client: &reqwest::Client,
    discovery: &Discovery,
) -> Result<JwkSet, OidcError> {
    get_json(client, "the JWKS", discovery.jwks_uri.as_str()).await
}

/// The token endpoint's answer to a password grant, kept whole so callers can judge it.
#[derive(Debug, Clone)]
pub struct GrantResponse {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    /// The access token, when the grant succeeded and the answer holds one.
    pub access_token: Option<Secret>,
    /// The refresh token, likewise.
    pub refresh_token: Option<Secret>,
}

/// Resource-owner password grant (`grant_type=password`, scope `openid`) at `token_endpoint`.
/// Fails only when no answer arrives; an HTTP error status is in the response.
pub async fn password_grant(
    client: &reqwest::Client,
    token_endpoint: &Url,
    client_id: &str,
    client_secret: &Secret,
    username: &str,
    password: &str,
) -> Result<GrantResponse, OidcError> {
    let form = [
        ("grant_type", "password"),
        ("client_id", client_id),
        ("client_secret", client_secret.expose()),
        ("username", username),
        ("password", password),
        ("scope", "openid"),
    ];
    grant(client, token_endpoint, "a token (password grant)", &form).await
}

/// A refresh-token grant: new tokens for `refresh_token`.
pub async fn refresh_grant(
    client: &reqwest::Client,
    token_endpoint: &Url,
    client_id: &str,
    client_secret: &Secret,
    refresh_token: &Secret,
) -> Result<GrantResponse, OidcError> {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("client_secret", client_secret.expose()),
        ("refresh_token", refresh_token.expose()),
    ];
    grant(client, token_endpoint, "tokens (refresh grant)", &form).await
}

/// The verdict on one refresh token redeemed twice at once (`simultaneous`) and once more
/// afterwards (`later`): at least one of the simultaneous redemptions succeeds (the control),
/// at most one does, and the later one is refused.
pub fn judge_refresh_reuse(
    simultaneous: [&GrantResponse; 2],
    later: &GrantResponse,
) -> Vec<CheckResult> {
    let redeemed =
        |answer: &GrantResponse| answer.status.is_success() && answer.access_token.is_some();
    let outcome = |answer: &GrantResponse| {
        if redeemed(answer) {
            format!("{} with new tokens", answer.status.as_u16())
        } else {
            format!(
                "{} {}",
                answer.status.as_u16(),
                refusal_reason(&answer.body)
            )
        }
    };
    let successes = simultaneous.iter().filter(|a| redeemed(a)).count();
    let outcomes = format!(
        "{} of 2 succeeded ({}; {})",
        successes,
        outcome(simultaneous[0]),
        outcome(simultaneous[1])
    );
    vec![
        CheckResult::new(
            "refresh redeemed",
            successes >= 1,
            "one of two simultaneous redemptions of the refresh token succeeds",
            outcomes.clone(),
        ),
        CheckResult::new(
            "simultaneous reuse",
            successes <= 1,
            "at most one of two simultaneous redemptions succeeds",
            if successes <= 1 {
                outcomes
            } else {
                format!(
                    "{outcomes}: the IdP lets a refresh token be used again, so a copied one \
                     keeps minting access tokens beside its owner (Keycloak: Realm settings → \
                     Tokens → Revoke Refresh Token on, Refresh Token Max Reuse 0)"
                )
            },
        ),
        CheckResult::new(
            "reuse after redemption",
            !redeemed(later),
            "the used refresh token refused afterwards",
            outcome(later),
        ),
    ]
}

/// The `error` and `error_description` of a token endpoint's refusal, else an excerpt.
fn refusal_reason(body: &str) -> String {
    let parsed = serde_json::from_str::<Value>(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match (field("error"), field("error_description")) {
        (Some(error), Some(description)) => format!("{error}: {description}"),
        (Some(error), None) => error,
        _ => body.chars().take(120).collect(),
    }
}

/// A client-credentials grant: the client's service account's token.
pub async fn client_credentials_grant(
    client: &reqwest::Client,
    token_endpoint: &Url,
    client_id: &str,
    client_secret: &Secret,
) -> Result<GrantResponse, OidcError> {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", client_secret.expose()),
    ];
    grant(
        client,
        token_endpoint,
        "a token (client credentials grant)",
        &form,
    )
    .await
}

async fn grant(
    client: &reqwest::Client,
    token_endpoint: &Url,
    what: &'static str,
    form: &[(&str, &str)],
) -> Result<GrantResponse, OidcError> {
    let fail = |detail: String| OidcError::Fetch {
        what,
        url: token_endpoint.to_string(),
        detail,
    };
    let response = client
        .post(token_endpoint.clone())
        .form(form)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.map_err(|e| fail(e.to_string()))?;
    let answer = serde_json::from_str::<Value>(&body)
        .ok()
        .filter(|_| status.is_success());
    let token = |name: &str| {
        answer
            .as_ref()
            .and_then(|v| v.get(name).and_then(Value::as_str).map(Secret::new))
    };
    Ok(GrantResponse {
        status,
        headers,
        access_token: token("access_token"),
        refresh_token: token("refresh_token"),
        body,
    })
}

/// A JWT's header and claims as shown in reports; the signature is never kept.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecodedJwt {
    pub header: Value,
    pub claims: Map<String, Value>,
    pub signature: &'static str,
}

fn decode_segment(segment: &str) -> Result<Value, OidcError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|e| OidcError::Malformed(format!("segment is not base64url: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OidcError::Malformed(format!("segment is not JSON: {e}")))
}

/// Decodes header and claims without verifying anything: for display and for claim checks
/// that run next to [`verify_signature`].
pub fn decode_unverified(token: &str) -> Result<DecodedJwt, OidcError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, _signature] = parts.as_slice() else {
        return Err(OidcError::Malformed(format!(
            "expected 3 dot-separated segments, found {}",
            parts.len()
        )));
    };
    let header = decode_segment(header)?;
    let Value::Object(claims) = decode_segment(claims)? else {
        return Err(OidcError::Malformed(
            "the claims segment is not a JSON object".into(),
        ));
    };
    Ok(DecodedJwt {
        header,
        claims,
        signature: SIGNATURE_REDACTED,
    })
}

/// Verifies the signature against the key in `jwks` named by the token's `kid`.
pub fn verify_signature(token: &str, jwks: &JwkSet) -> CheckResult {
    let fail = |actual: String| {
        CheckResult::new(
            "signature",
            false,
            "valid signature by a key in the issuer's JWKS",
            actual,
        )
    };
    let header = match jsonwebtoken::decode_header(token) {
        Ok(header) => header,
        Err(e) => return fail(format!("unreadable header: {e}")),
    };
    let Some(kid) = header.kid.as_deref() else {
        return fail("token header has no kid".into());
    };
    let Some(jwk) = jwks.find(kid) else {
        let known: Vec<&str> = jwks
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.as_deref())
            .collect();
        return fail(format!("kid {kid:?} not in the JWKS (keys: {known:?})"));
    };
    let key = match DecodingKey::from_jwk(jwk) {
        Ok(key) => key,
        Err(e) => return fail(format!("JWKS key {kid:?} unusable: {e}")),
    };
    // Claims are checked separately with explicit expected/actual values.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    match jsonwebtoken::decode::<Value>(token, &key, &validation) {
        Ok(_) => CheckResult::new(
            "signature",
            true,
            "valid signature by a key in the issuer's JWKS",
            format!("valid {:?} signature, kid {kid}", header.alg),
        ),
        Err(e) => fail(format!("{:?} signature invalid: {e}", header.alg)),
    }
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `exp` is in the future and `iat` not in the future, both within `skew_seconds`.
pub fn check_lifetime(
    claims: &Map<String, Value>,
    now: i64,
    skew_seconds: i64,
) -> Vec<CheckResult> {
    let exp = claims.get("exp").and_then(Value::as_i64);
    let iat = claims.get("iat").and_then(Value::as_i64);
    vec![
        match exp {
            Some(exp) => CheckResult::new(
                "exp",
                exp + skew_seconds > now,
                format!("after now ({now}) minus {skew_seconds}s skew"),
                format!("{exp} ({:+}s from now)", exp - now),
            ),
            None => CheckResult::new("exp", false, "a numeric exp claim", "missing"),
        },
        match iat {
            Some(iat) => CheckResult::new(
                "iat",
                iat - skew_seconds <= now,
                format!("not after now ({now}) plus {skew_seconds}s skew"),
                format!("{iat} ({:+}s from now)", iat - now),
            ),
            None => CheckResult::new("iat", false, "a numeric iat claim", "missing"),
        },
    ]
}

/// The token's issued lifetime (`exp - iat`) within `bound` seconds. The finding names the
/// IdP's setting, since that is where it is fixed (Keycloak: the realm's or the client's
/// access token lifespan).
pub fn check_lifetime_bound(claims: &Map<String, Value>, bound: i64) -> CheckResult {
    let expected = format!("exp - iat at most {bound}s ({})", human_duration(bound));
    let exp = claims.get("exp").and_then(Value::as_i64);
    let iat = claims.get("iat").and_then(Value::as_i64);
    match (exp, iat) {
        (Some(exp), Some(iat)) => {
            let lifetime = exp - iat;
            let actual = format!("{lifetime}s ({})", human_duration(lifetime));
            if lifetime <= bound {
                CheckResult::new("lifetime", true, expected, actual)
            } else {
                CheckResult::new(
                    "lifetime",
                    false,
                    expected,
                    format!(
                        "{actual}: a copied token works that long whatever happens to the \
                         session; lower the IdP's access token lifespan (Keycloak: realm \
                         settings, Tokens, or the client's advanced settings)"
                    ),
                )
            }
        }
        _ => CheckResult::new(
            "lifetime",
            false,
            expected,
            "no numeric exp and iat claims, so no lifetime to bound",
        ),
    }
}

/// Exact when the lifetime is a whole number of hours or minutes; otherwise rounded, since an
/// IdP that caps a token at its session's end issues one a second or two short of the cap.
fn human_duration(seconds: i64) -> String {
    fn rounded(value: f64, unit: &str) -> String {
        let text = format!("{value:.1}");
        format!("about {} {unit}", text.trim_end_matches(".0"))
    }
    match seconds {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s if s >= 3600 => rounded(s as f64 / 3600.0, "h"),
        s if s >= 60 => rounded(s as f64 / 60.0, "min"),
        s => format!("{s} s"),
    }
}

/// What a claim must look like.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClaimExpectation {
    /// The claim equals this value exactly.
    Equals(Value),
    /// A string claim equal to this, or an array claim containing it.
    Contains(Value),
    /// The claim is present (any value).
    Present(bool),
}

impl ClaimExpectation {
    pub fn map_strings(&self, f: &impl Fn(&str) -> String) -> Self {
        let map = |v: &Value| match v {
            Value::String(s) => Value::String(f(s)),
            other => other.clone(),
        };
        match self {
            Self::Equals(v) => Self::Equals(map(v)),
            Self::Contains(v) => Self::Contains(map(v)),
            Self::Present(p) => Self::Present(*p),
        }
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "missing".to_string(), Value::to_string)
}

/// Checks one claim. A claim path may use dots for nested objects (`realm_access.roles`).
pub fn check_claim(
    claims: &Map<String, Value>,
    name: &str,
    expectation: &ClaimExpectation,
) -> CheckResult {
    let actual = lookup(claims, name);
    let (passed, expected) = match expectation {
        ClaimExpectation::Equals(want) => (actual == Some(want), format!("equal to {want}")),
        ClaimExpectation::Contains(want) => {
            let passed = match actual {
                Some(Value::Array(items)) => items.contains(want),
                Some(single) => single == want,
                None => false,
            };
            (passed, format!("containing {want}"))
        }
        ClaimExpectation::Present(true) => (actual.is_some(), "present".to_string()),
        ClaimExpectation::Present(false) => (actual.is_none(), "absent".to_string()),
    };
    CheckResult::new(format!("claim {name}"), passed, expected, show(actual))
}

fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(direct) = claims.get(path) {
        return Some(direct);
    }
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        json!({
            "iss": "http://127.0.0.1:1/realms/Test-oidc",
            "aud": ["oauth2proxy", "account"],
            "azp": "oauth2proxy",
            "realm_roles": ["sso-user"],
            "realm_access": {"roles": ["sso-user", "offline_access"]},
            "exp": 1_000_300, "iat": 1_000_000
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn claim_checks_pass_and_fail_with_expected_and_actual() {
        let c = claims();
        assert!(check_claim(&c, "aud", &ClaimExpectation::Contains(json!("oauth2proxy"))).passed);
        assert!(check_claim(&c, "azp", &ClaimExpectation::Equals(json!("oauth2proxy"))).passed);
        assert!(
            check_claim(
                &c,
                "realm_access.roles",
                &ClaimExpectation::Contains(json!("sso-user"))
            )
            .passed
        );
        let missing = check_claim(
            &c,
            "email",
            &ClaimExpectation::Equals(json!("alice@example.test")),
        );
        assert!(!missing.passed);
        assert_eq!(
            missing.to_string(),
            "claim email: expected equal to \"alice@example.test\", actual missing"
        );
        let wrong = check_claim(
            &c,
            "realm_roles",
            &ClaimExpectation::Contains(json!("admin")),
        );
        assert!(!wrong.passed);
        assert_eq!(wrong.actual, "[\"sso-user\"]");
        assert!(!check_claim(&c, "azp", &ClaimExpectation::Present(false)).passed);
    }

    #[test]
    fn lifetime_checks_use_skew() {
        let c = claims();
        assert!(check_lifetime(&c, 1_000_100, 30).iter().all(|r| r.passed));
        let expired = check_lifetime(&c, 1_000_400, 30);
        assert!(!expired[0].passed, "{expired:?}");
        let future_iat = check_lifetime(&c, 999_900, 30);
        assert!(!future_iat[1].passed, "{future_iat:?}");
        let none = check_lifetime(&Map::new(), 0, 30);
        assert!(none.iter().all(|r| !r.passed && r.actual == "missing"));
    }

    #[test]
    fn lifetime_bound_names_the_issued_lifetime_both_ways() {
        let issued = |lifetime: i64| {
            let mut c = Map::new();
            c.insert("iat".into(), json!(1_000_000));
            c.insert("exp".into(), json!(1_000_000 + lifetime));
            c
        };
        let short = check_lifetime_bound(&issued(300), 3600);
        assert!(short.passed, "{short:?}");
        assert_eq!(short.actual, "300s (5 min)");
        let at_bound = check_lifetime_bound(&issued(3600), 3600);
        assert!(at_bound.passed, "{at_bound:?}");
        let long = check_lifetime_bound(&issued(86_400), 3600);
        assert!(!long.passed);
        assert_eq!(long.expected, "exp - iat at most 3600s (1 h)");
        assert!(
            long.actual.starts_with("86400s (24 h): "),
            "{}",
            long.actual
        );
        // Capped at a session that began the second before the token was issued.
        let capped = check_lifetime_bound(&issued(35_999), 3600);
        assert!(
            capped.actual.starts_with("35999s (about 10 h): "),
            "{}",
            capped.actual
        );
        assert_eq!(
            check_lifetime_bound(&issued(150), 60)
                .actual
                .split(':')
                .next(),
            Some("150s (about 2.5 min)")
        );
        let missing = check_lifetime_bound(&Map::new(), 3600);
        assert!(!missing.passed, "{missing:?}");
    }

    fn grant_answer(status: u16, body: &str) -> GrantResponse {
        let status = reqwest::StatusCode::from_u16(status).unwrap();
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let token = |name: &str| {
            parsed
                .as_ref()
                .filter(|_| status.is_success())
                .and_then(|v| v.get(name)?.as_str().map(Secret::new))
        };
        GrantResponse {
            status,
            headers: reqwest::header::HeaderMap::new(),
            access_token: token("access_token"),
            refresh_token: token("refresh_token"),
            body: body.into(),
        }
    }

    #[test]
    fn refresh_reuse_needs_one_redemption_and_no_second() {
        let issued = grant_answer(200, r#"{"access_token":"a","refresh_token":"r"}"#);
        let refused = grant_answer(
            400,
            r#"{"error":"invalid_grant","error_description":"Maximum allowed refresh token reuse exceeded"}"#,
        );
        let rotated = judge_refresh_reuse([&issued, &refused], &refused);
        assert!(rotated.iter().all(|c| c.passed), "{rotated:?}");
        assert_eq!(
            rotated[0].actual,
            "1 of 2 succeeded (200 with new tokens; 400 invalid_grant: Maximum allowed refresh token reuse exceeded)"
        );
        let reusable = judge_refresh_reuse([&issued, &issued], &issued);
        assert_eq!(
            reusable.iter().map(|c| c.passed).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert!(
            reusable[1].actual.contains("Revoke Refresh Token"),
            "{}",
            reusable[1].actual
        );
        let broken = judge_refresh_reuse([&refused, &refused], &refused);
        assert!(
            !broken[0].passed,
            "no redemption at all is no evidence: {broken:?}"
        );
    }

    #[test]
    fn malformed_tokens_are_errors_not_panics() {
        assert!(decode_unverified("not-a-jwt").is_err());
        assert!(decode_unverified("a.b.c").is_err());
        let jwks = JwkSet { keys: vec![] };
        assert!(!verify_signature("x.y.z", &jwks).passed);
    }
}
