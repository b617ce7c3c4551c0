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

/// Who the app was told the request is from: every identity header it echoed, the forwarded
/// token's subject in place of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity(Vec<(String, String)>);

const IDENTITY_HEADERS: &[&str] = &[
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
];

impl Identity {
    /// The identity in an echo of the app's request headers, if the page is one.
    pub fn seen(page: &Page) -> Option<Self> {
        let headers = super::expect::echoed_header_values(&page.body)?;
        let mut identity: Vec<(String, String)> = headers
            .iter()
            .filter(|(name, _)| IDENTITY_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
            .map(|(name, values)| (name.to_ascii_lowercase(), values.join(", ")))
            .collect();
        if let Some((_, values)) = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        {
            let subjects: Vec<String> = values
                .iter()
                .map(|v| {
                    v.strip_prefix("Bearer ")
                        .and_then(subject)
                        .unwrap_or_else(|| "a non-JWT credential".into())
                })
                .collect();
            identity.push(("authorization sub".into(), subjects.join(", ")));
        }
        identity.sort();
        Some(identity).filter(|i| !i.is_empty()).map(Self)
    }

    fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The control of a with-session matrix: the session alone reaches the app, and the app is
/// told who the user is.
pub fn judge_session(page: &Page, nonce: &str) -> (CheckResult, Option<Identity>) {
    let identity = page
        .body
        .contains(nonce)
        .then(|| Identity::seen(page))
        .flatten();
    let check = CheckResult::new(
        "the session alone reaches the app as its user",
        identity.is_some(),
        "2xx from the app with the user's identity headers (the control for the with-session checks)",
        match &identity {
            Some(identity) => identity.describe(),
            None => format!("not the app, or no identity forwarded: {}", seen(page)),
        },
    );
    (check, identity)
}

/// A token sent with the session: refused, or the app is told exactly what the session alone
/// told it.
pub fn judge_with_session(
    bearer: Bearer,
    page: &Page,
    nonce: &str,
    session: &Identity,
) -> CheckResult {
    let check = |passed: bool, actual: String| {
        CheckResult::new(
            name(bearer, "with a session"),
            passed,
            "refused, or the app sees exactly the session's user",
            actual,
        )
        .with_severity(bearer.severity())
    };
    if !page.body.contains(nonce) {
        return check(true, format!("not the app: {}", seen(page)));
    }
    match Identity::seen(page) {
        Some(identity) if &identity == session => check(
            true,
            format!("the app sees the session's user ({})", identity.describe()),
        ),
        Some(identity) => check(
            false,
            format!(
                "the app was told {} instead of the session's {}",
                identity.describe(),
                session.describe()
            ),
        ),
        None => check(
            false,
            "inconclusive: the app was reached with no identity at all".into(),
        ),
    }
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
    fn with_a_session_the_app_must_see_exactly_the_session_s_user() {
        let echo = |nonce: &str, user: &str, bearer: &str| {
            serde_json::json!({"headers": {
                "X-Meshauth-Probe": [nonce],
                "X-Auth-Request-User": [user],
                "Authorization": [format!("Bearer {bearer}")],
            }})
            .to_string()
        };
        let (control, session) =
            judge_session(&page(200, &echo("n0", "alice", &token("alice-id"))), "n0");
        assert!(control.passed, "{control}");
        let session = session.unwrap();
        let as_alice = judge_with_session(
            Bearer::SecondUser,
            &page(200, &echo("n3", "alice", &token("alice-id"))),
            "n3",
            &session,
        );
        assert!(as_alice.passed, "{as_alice}");
        let as_bob = judge_with_session(
            Bearer::SecondUser,
            &page(200, &echo("n3", "bob", &token("alice-id"))),
            "n3",
            &session,
        );
        assert!(
            !as_bob.passed && as_bob.actual.contains("x-auth-request-user=bob"),
            "{as_bob}"
        );
        let anonymous = judge_with_session(
            Bearer::SecondUser,
            &page(200, r#"{"headers":{"X-Meshauth-Probe":["n3"]}}"#),
            "n3",
            &session,
        );
        assert!(!anonymous.passed && anonymous.actual.starts_with("inconclusive"));
        let refused = judge_with_session(Bearer::SecondUser, &page(403, "denied"), "n3", &session);
        assert!(refused.passed);
        let (dead, _) = judge_session(&page(302, "sign in"), "n0");
        assert!(!dead.passed);
    }
}
