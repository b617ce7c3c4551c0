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
use crate::scenario::{Attack, Evidence, Probe, ProbeRequest, Variables};

/// The header every probe request carries its nonce in; an echoing app gives it back.
pub const NONCE_HEADER: &str = "X-Meshauth-Probe";

/// Runs every request of `probe` against `origin`; one check per request.
pub async fn run(
    probe: &Probe,
    origin: &Url,
    client: &RawClient,
    vars: &Variables,
    session: Option<&Secret>,
) -> Result<Vec<CheckResult>, String> {
    let session = session.ok_or(
        "a probe needs the scenario's session as its reference: put a sign_in step before it",
    )?;
    // The requests are independent: a few in flight at once, the checks in table order.
    let checks = futures::stream::iter(&probe.requests)
        .map(|request| run_one(probe, request, origin, client, vars, session))
        .buffered(PROBES_IN_FLIGHT)
        .collect()
        .await;
    Ok(checks)
}

/// How many probe requests (each an anonymous and a signed-in send) are in flight at once.
const PROBES_IN_FLIGHT: usize = 6;

async fn run_one(
    probe: &Probe,
    request: &ProbeRequest,
    app: &Url,
    client: &RawClient,
    vars: &Variables,
    session: &Secret,
) -> CheckResult {
    let origin = match &request.origin {
        None => app.clone(),
        Some(origin) => match Url::parse(&vars.expand(origin)) {
            Ok(origin) => origin,
            Err(error) => {
                return CheckResult::new(
                    format!("{} {}", request.method, request.path),
                    false,
                    "a probe request to a URL",
                    format!("origin {origin:?} is not a URL: {error}"),
                );
            }
        },
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
        None,
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
    shown.headers.retain(|(header, _)| header != NONCE_HEADER);
    let name = shown.describe(origin, origin != app);
    // Concurrently: a probe of a hung part waits out the gateway's timeout once, not twice.
    let (anonymous_answer, signed_answer) = tokio::join!(
        client.send(origin, &anonymous),
        client.send(origin, &signed)
    );
    let check = match probe.attack {
        Attack::UnauthenticatedReach => judge_reach(
            name,
            &anonymous_answer,
            &anonymous_marker,
            match request.evidence {
                Evidence::NonceOrSignedInAnswer => signed_answer.as_ref().ok(),
                Evidence::Nonce => None,
            },
        ),
        Attack::ReachDuringOutage => judge_outage(
            name,
            &anonymous_answer,
            &anonymous_marker,
            &signed_answer,
            &signed_marker,
        ),
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

fn nonce() -> String {
    format!("mp{:016x}", rand::random::<u64>())
}

fn build(
    request: &ProbeRequest,
    origin: &Url,
    vars: &Variables,
    nonce: &str,
    marker: &str,
    session: Option<&Secret>,
) -> RawRequest {
    let vars = vars.with("nonce", nonce.to_string());
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (vars.expand(name), vars.expand(value)))
        .collect();
    headers.push((NONCE_HEADER.to_string(), marker.to_string()));
    if let Some(cookie) = session {
        headers.push(("Cookie".to_string(), cookie.expose().to_string()));
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
    }
}

/// Why an answer is the app's: its nonce echoed, or the signed-in user's exact answer.
fn app_evidence(
    answer: &RawResponse,
    nonce: &str,
    reference: Option<&RawResponse>,
) -> Option<String> {
    if answer.body.contains(nonce) {
        return Some("the app echoed this request's nonce".into());
    }
    let reference = reference?;
    // Answers a gateway gives on its own (refusals, malformed requests, its errors) look the
    // same to everyone and prove nothing; an app's 200 or 404 to the signed-in user does.
    let refused = matches!(
        answer.status,
        400 | 401 | 403 | 405 | 407 | 408 | 411 | 413 | 414 | 421 | 431
    ) || (300..400).contains(&answer.status)
        || answer.status >= 500;
    (!refused
        && !answer.body.trim().is_empty()
        && answer.status == reference.status
        && answer.body == reference.body)
        .then(|| {
            format!(
                "the body is exactly what the app serves the signed-in user here ({} bytes)",
                answer.body.len()
            )
        })
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
    anonymous: &Result<RawResponse, String>,
    nonce: &str,
    signed: Option<&RawResponse>,
) -> CheckResult {
    let expected = "not answered by the app without a session";
    match anonymous {
        Err(error) => CheckResult::new(name, true, expected, format!("no response ({error})")),
        Ok(answer) => match app_evidence(answer, nonce, signed) {
            Some(evidence) => CheckResult::new(
                name,
                false,
                expected,
                format!(
                    "{} from the app: {evidence}; body {}",
                    answer.status,
                    excerpt(&answer.body)
                ),
            ),
            None => CheckResult::new(name, true, expected, describe_refusal(answer)),
        },
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
    let leaked: Vec<String> = headers
        .iter()
        .filter(|(header, _)| !header.eq_ignore_ascii_case(NONCE_HEADER))
        .filter(|(header, value)| {
            if header.eq_ignore_ascii_case("x-forwarded-for") {
                // Envoy appends the peer it saw; a forged first entry is kept, never trusted.
                value
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.contains(signed_nonce))
            } else {
                value.contains(signed_nonce)
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

    #[test]
    fn reach_is_judged_on_evidence_not_status() {
        let robots = response(200, "User-agent: *\nDisallow: /deny\n");
        let signed = Some(&robots);
        // The app's own robots.txt, anonymously: reached, though nothing echoed.
        let check = judge_reach("GET /robots.txt".into(), &Ok(robots.clone()), "n1", signed);
        assert!(
            !check.passed && check.actual.contains("exactly what the app serves"),
            "{check}"
        );
        // The auth proxy's own 200 page is not the app.
        let proxy = response(200, "User-agent: *\nDisallow: /");
        let check = judge_reach("GET /robots.txt".into(), &Ok(proxy), "n1", signed);
        assert!(check.passed, "{check}");
        // A redirect that carries the nonce back (an echoing app behind a 302) is reached.
        let echoed = response(302, "{\"headers\":{\"X-Meshauth-Probe\":[\"n1\"]}}");
        let check = judge_reach("GET /x".into(), &Ok(echoed), "n1", None);
        assert!(
            !check.passed && check.actual.contains("echoed this request's nonce"),
            "{check}"
        );
        // The sign-in redirect is a refusal, even when the signed-in user gets a redirect too.
        let redirect = response(302, "<a href=\"/oauth2/start\">Found</a>");
        let check = judge_reach("GET /".into(), &Ok(redirect.clone()), "n1", Some(&redirect));
        assert!(
            check.passed && check.actual == "302 redirect to /oauth2/start",
            "{check}"
        );
        let check = judge_reach("GET /;".into(), &Err("reset".into()), "n1", None);
        assert!(check.passed, "{check}");
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
        let check = judge_outage("x".into(), &reset, "mpA", &reset, "mpS");
        assert!(check.passed, "{check}");
        let held: Result<RawResponse, String> =
            Err(format!("{} 15s", crate::browser::raw::NO_COMPLETE_RESPONSE));
        let check = judge_outage("x".into(), &refused, "mpA", &held, "mpS");
        assert!(
            !check.passed && check.actual.starts_with("inconclusive"),
            "{check}"
        );
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
        let unverified = judge_identity("x".into(), &refused, "mpA", &refused, "mpB");
        assert!(
            !unverified.passed && unverified.actual.starts_with("inconclusive"),
            "{unverified}"
        );
    }
}
