//! Bearer tokens as attacks: how each kind is obtained (granted, forged from a real one,
//! minted with the IdP's published test key, issued to someone else) and how a deployment's
//! answer to it is judged. Reaching the app is decided by the request's nonce echoed back,
//! never by status alone.

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::expect::excerpt;
use crate::browser::Page;
use crate::check::CheckResult;
use crate::oidc::forge::{Forgery, Minted};
use crate::scenario::Bearer;

/// The header each matrix request carries its nonce in; an echoing app gives it back.
pub const NONCE_HEADER: &str = "x-meshauth-probe";

/// How a token is made.
pub enum Source {
    /// The last `token_grant`'s access token as it is.
    Granted,
    /// Made up without any real token.
    Invented(String),
    Forged(Forgery),
    Minted(Minted),
    /// The test user's password grant through the other client.
    OtherClientPassword,
    /// The other client's client-credentials grant.
    OtherClientService,
    /// The second user's password grant through the app's client.
    SecondUserPassword,
}

pub fn source(bearer: Bearer) -> Source {
    match bearer {
        Bearer::Granted => Source::Granted,
        Bearer::Forged => Source::Invented(invented_token()),
        Bearer::Garbage => Source::Invented("not-a-jwt".into()),
        Bearer::AlgNone => Source::Forged(Forgery::AlgNone),
        Bearer::Hs256WithPublicKey => Source::Forged(Forgery::Hs256WithPublicKey),
        Bearer::UnknownKid => Source::Forged(Forgery::UnknownKid),
        Bearer::StrippedSignature => Source::Forged(Forgery::StrippedSignature),
        Bearer::TamperedClaims => Source::Forged(Forgery::TamperedClaims),
        Bearer::Resigned => Source::Minted(Minted::Resigned),
        Bearer::Expired => Source::Minted(Minted::Expired),
        Bearer::NotYetValid => Source::Minted(Minted::NotYetValid),
        Bearer::OtherIssuer => Source::Minted(Minted::OtherIssuer),
        Bearer::WrongAudience => Source::Minted(Minted::WrongAudience),
        Bearer::OtherClient => Source::OtherClientPassword,
        Bearer::ServiceAccount => Source::OtherClientService,
        Bearer::SecondUser => Source::SecondUserPassword,
    }
}

/// A well-formed RS256 JWT whose signature is garbage: a gateway must reject it.
fn invented_token() -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = b64(&serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "forged"}));
    let claims = b64(&serde_json::json!({"sub": "mallory", "exp": crate::oidc::now_unix() + 300}));
    format!("{header}.{claims}.Zm9yZ2VkLXNpZ25hdHVyZS1ub3QtdmFsaWQ")
}

/// Request headers carrying `token` and `nonce`.
pub fn headers(token: &str, nonce: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?,
    );
    headers.insert(
        HeaderName::from_static(NONCE_HEADER),
        HeaderValue::from_str(nonce).map_err(|e| e.to_string())?,
    );
    Ok(headers)
}

pub fn nonce() -> String {
    format!("mb{:016x}", rand::random::<u64>())
}

fn name(bearer: Bearer, how: &str) -> String {
    let kind = serde_json::to_value(bearer)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    format!("{kind} bearer {how}")
}

fn seen(page: &Page) -> String {
    format!("{} {}", page.status.as_u16(), excerpt(&page.body))
}

/// A token that must reach the app: 2xx and the nonce echoed.
pub fn judge_accepted(bearer: Bearer, page: &Page, nonce: &str) -> CheckResult {
    let reached = page.status.is_success() && page.body.contains(nonce);
    CheckResult::new(
        name(bearer, "is accepted"),
        reached,
        "the app's answer (2xx with this request's nonce echoed): verification is on and accepts good tokens",
        if reached {
            format!("{} from the app", page.status.as_u16())
        } else {
            format!("not the app: {}", seen(page))
        },
    )
}

/// A token that must not reach the app, sent without a session.
pub fn judge_refused(bearer: Bearer, page: &Page, nonce: &str) -> CheckResult {
    let reached = page.body.contains(nonce);
    let passed = !reached && !page.status.is_success();
    CheckResult::new(
        name(bearer, "is refused"),
        passed,
        "refused (401/403), never the app",
        if reached {
            format!("the app answered (nonce echoed): {}", seen(page))
        } else {
            seen(page)
        },
    )
    .with_severity(bearer.severity())
}

/// A token that must not change who the app sees, sent with the session of `user_sub`.
pub fn judge_with_session(
    bearer: Bearer,
    page: &Page,
    nonce: &str,
    token: &str,
    user_sub: Option<&str>,
) -> CheckResult {
    let check = |passed: bool, actual: String| {
        CheckResult::new(
            name(bearer, "with a session"),
            passed,
            "refused, or the app sees the session's user (never the token's subject)",
            actual,
        )
        .with_severity(bearer.severity())
    };
    if !page.body.contains(nonce) {
        return check(true, format!("not the app: {}", seen(page)));
    }
    let forwarded = super::forwarded_bearer(page).ok();
    if forwarded.as_deref() == Some(token) {
        return check(false, "the app received this token as the user's".into());
    }
    let attack_sub = subject(token);
    let forwarded_sub = forwarded.as_deref().and_then(subject);
    let impersonated =
        attack_sub.is_some() && attack_sub == forwarded_sub && attack_sub.as_deref() != user_sub;
    if impersonated {
        return check(
            false,
            format!(
                "the app sees the token's subject {:?}, not the session's user",
                attack_sub.unwrap_or_default()
            ),
        );
    }
    check(
        true,
        format!(
            "the app sees subject {:?} (the session's user)",
            forwarded_sub.unwrap_or_default()
        ),
    )
}

/// A JWT's `sub`, unverified.
pub fn subject(token: &str) -> Option<String> {
    crate::oidc::decode_unverified(token)
        .ok()?
        .claims
        .get("sub")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn page(status: u16, body: &str) -> Page {
        Page {
            url: url::Url::parse("https://app.test/headers").unwrap(),
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    fn token(sub: &str) -> String {
        use base64::Engine as _;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::json!({ "sub": sub }).to_string());
        format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln")
    }

    fn echo(nonce: &str, bearer: &str) -> String {
        serde_json::json!({"headers": {
            "X-Meshauth-Probe": [nonce],
            "Authorization": [format!("Bearer {bearer}")],
        }})
        .to_string()
    }

    #[test]
    fn refusals_are_judged_on_evidence_not_status() {
        let refused = judge_refused(Bearer::Expired, &page(401, "Jwt is expired"), "n1");
        assert!(refused.passed, "{refused}");
        let echoed = judge_refused(Bearer::Expired, &page(200, &echo("n1", "t")), "n1");
        assert!(!echoed.passed);
        assert!(echoed.actual.starts_with("the app answered"), "{echoed}");
        // A 200 that is not the app (a sign-in page) is still not a refusal by status.
        let sign_in = judge_refused(Bearer::AlgNone, &page(200, "<html>Sign in</html>"), "n1");
        assert!(!sign_in.passed);
        assert_eq!(
            judge_refused(Bearer::AlgNone, &page(401, ""), "n").severity,
            Some(crate::check::Severity::Critical)
        );
    }

    #[test]
    fn acceptance_needs_the_app_s_echo() {
        assert!(judge_accepted(Bearer::Granted, &page(200, &echo("n2", "t")), "n2").passed);
        assert!(!judge_accepted(Bearer::Granted, &page(200, "{}"), "n2").passed);
        assert!(!judge_accepted(Bearer::Resigned, &page(401, "Jwt issuer"), "n2").passed);
    }

    #[test]
    fn with_a_session_the_app_must_never_see_the_token_s_subject() {
        let bob = token("bob-id");
        let alice = token("alice-id");
        let as_bob = judge_with_session(
            Bearer::SecondUser,
            &page(200, &echo("n3", &bob)),
            "n3",
            &bob,
            Some("alice-id"),
        );
        assert!(!as_bob.passed, "{as_bob}");
        let as_alice = judge_with_session(
            Bearer::SecondUser,
            &page(200, &echo("n3", &alice)),
            "n3",
            &bob,
            Some("alice-id"),
        );
        assert!(as_alice.passed, "{as_alice}");
        let refused =
            judge_with_session(Bearer::SecondUser, &page(403, "denied"), "n3", &bob, None);
        assert!(refused.passed);
    }
}
