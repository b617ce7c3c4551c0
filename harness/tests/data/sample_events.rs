//! A deterministic event stream shaped like a real run (one passing browser login with a JWT,
//! one failing scenario whose title needs escaping): for reporter tests, snapshots and the
//! headless-browser test of the HTML report. It is data, not a stand-in for the engine.

#![allow(dead_code)]

use serde_json::json;

use meshauth::browser::Hop;
use meshauth::check::CheckResult;
use meshauth::components::ComponentVersion;
use meshauth::env::StackConfig;
use meshauth::events::{EnvironmentInfo, RunEvent, RunSummary, StepReport, Verdict};
use meshauth::oidc::DecodedJwt;
use meshauth::redact::SIGNATURE_REDACTED;

const APP: &str = "https://127.0.0.1:40443/";
const IDP: &str = "http://127.0.0.1:40080/";
const ISSUER: &str = "http://127.0.0.1:40080/realms/Test-oidc";

fn hop(method: &str, url: &str, status: u16, location: Option<&str>, cookies: &[&str]) -> Hop {
    Hop {
        method: method.into(),
        url: url.into(),
        status,
        location: location.map(str::to_string),
        set_cookies: cookies.iter().map(|c| c.to_string()).collect(),
        duration_ms: 12,
    }
}

fn step(index: usize, op: &'static str, summary: &str) -> StepReport {
    StepReport {
        index,
        op,
        summary: summary.into(),
        passed: true,
        duration_ms: 40,
        hops: Vec::new(),
        checks: Vec::new(),
        jwt: None,
        error: None,
    }
}

pub fn environment() -> EnvironmentInfo {
    EnvironmentInfo {
        kind: "local".into(),
        app_url: APP.into(),
        idp_url: IDP.into(),
        issuer: ISSUER.into(),
        profile: StackConfig {
            audience_mapper: false,
            ..StackConfig::default()
        }
        .profile(),
        components: vec![
            ComponentVersion {
                component: "envoy".into(),
                version: "1.36.2".into(),
                source: "pip".into(),
            },
            ComponentVersion {
                component: "keycloak".into(),
                version: "26.4.2".into(),
                source: "maven".into(),
            },
        ],
        run_dir: Some("/tmp/meshauth-runs/20250101-000000-abcd".into()),
        left_out: vec![meshauth::events::LeftOut {
            scenario: "attack_fail_closed::auth_service_stopped".into(),
            reason: "it needs to stop the auth_service, and the environment gives the harness no way to (control commands in the environment file, or --env local)".into(),
        }],
        limits: vec!["httpbin itself listens on 127.0.0.1:8000, reachable without its sidecar".into()],
    }
}

fn browser_login_steps() -> Vec<StepReport> {
    let mut open = step(1, "open", &format!("open {APP}headers"));
    open.hops = vec![
        hop(
            "GET",
            &format!("{APP}headers"),
            302,
            Some(&format!("{APP}oauth2/start?rd=%2Fheaders")),
            &[],
        ),
        hop(
            "GET",
            &format!("{APP}oauth2/start?rd=%2Fheaders"),
            200,
            None,
            &["_oauth2_proxy_csrf"],
        ),
    ];
    let mut sign_in = step(2, "sign_in", "sign in as alice (TestUser)");
    sign_in.hops = vec![
        hop(
            "POST",
            &format!("{ISSUER}/login-actions/authenticate?session_code=[redacted]"),
            302,
            Some(&format!(
                "{APP}oauth2/callback?state=[redacted]&code=[redacted]"
            )),
            &["KEYCLOAK_SESSION", "KEYCLOAK_IDENTITY"],
        ),
        hop(
            "GET",
            &format!("{APP}oauth2/callback?state=[redacted]&code=[redacted]"),
            302,
            Some("/headers"),
            &["_oauth2_proxy", "_oauth2_proxy_csrf"],
        ),
        hop("GET", &format!("{APP}headers"), 200, None, &[]),
    ];
    let mut expect = step(3, "expect", "check the last response");
    expect.checks = vec![
        CheckResult::new("status", true, "200", "200"),
        CheckResult::new("app cookies", true, "_oauth2_proxy", "_oauth2_proxy"),
    ];
    let mut jwt = step(4, "expect_jwt", "verify the Forwarded JWT and 2 claim(s)");
    jwt.checks = vec![
        CheckResult::new("signature", true, "valid RS256 signature", "valid (kid k1)"),
        CheckResult::new("claim iss", true, ISSUER, ISSUER),
        CheckResult::new(
            "claim aud",
            true,
            "contains oauth2-proxy",
            "[\"oauth2-proxy\"]",
        ),
    ];
    jwt.jwt = Some(DecodedJwt {
        header: json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
        claims: json!({
            "iss": ISSUER,
            "aud": ["oauth2-proxy"],
            "azp": "oauth2-proxy",
            "preferred_username": "alice",
            "exp": 1_735_689_900,
            "iat": 1_735_689_600,
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
        signature: SIGNATURE_REDACTED,
    });
    vec![open, sign_in, expect, jwt]
}

fn forged_token_steps() -> Vec<StepReport> {
    let mut request = step(
        1,
        "request",
        &format!("request {APP}headers with Forged bearer token"),
    );
    request.hops = vec![hop("GET", &format!("{APP}headers"), 200, None, &[])];
    let mut expect = step(2, "expect", "check the last response");
    expect.passed = false;
    expect.checks = vec![
        CheckResult::new("status", false, "401", "200")
            .with_severity(meshauth::check::Severity::Critical),
        CheckResult::new("garbage bearer is refused", true, "refused", "401")
            .with_severity(meshauth::check::Severity::High),
        CheckResult::new(
            "body contains",
            false,
            "<RBAC: access denied>",
            "{\"headers\": {}}",
        ),
    ];
    vec![request, expect]
}

pub fn events() -> Vec<RunEvent> {
    let login = browser_login_steps();
    let forged = forged_token_steps();
    let forged_failures: Vec<String> = forged[1]
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("step 2 (expect): {c}"))
        .collect();
    let mut events = vec![RunEvent::RunStarted {
        run_id: "20250101-000000-abcd".into(),
        started_at: "2025-01-01T00:00:00Z".into(),
        environment: environment(),
        selected: 2,
    }];
    for (suite, id, title, file, steps, failures, duration_ms) in [
        (
            "seed000_browser_sso",
            "browser_login",
            "A browser signs in through oauth2-proxy and Keycloak",
            "seed000-browser-sso.yaml",
            login,
            Vec::new(),
            1_250,
        ),
        (
            "seed003_origin_auth",
            "forged_token_is_rejected",
            "A forged <JWT> & a garbage token are \"rejected\"",
            "seed003-origin-auth.yaml",
            forged,
            forged_failures,
            310,
        ),
    ] {
        events.push(RunEvent::ScenarioStarted {
            suite: suite.into(),
            scenario: id.into(),
            title: title.into(),
            file: file.into(),
        });
        for step in steps {
            events.push(RunEvent::StepFinished {
                suite: suite.into(),
                scenario: id.into(),
                step,
            });
        }
        events.push(RunEvent::ScenarioFinished {
            suite: suite.into(),
            scenario: id.into(),
            verdict: if failures.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            duration_ms,
            failures,
        });
    }
    events.push(RunEvent::RunFinished {
        summary: RunSummary {
            total: 2,
            passed: 1,
            failed: 1,
            duration_ms: 1_600,
        },
    });
    events
}
