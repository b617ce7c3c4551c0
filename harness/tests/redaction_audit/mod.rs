//! Redaction audit of a real run (the last trial of `tests/scenarios.rs`, on its stack): the
//! whole built-in catalog, the existing-environment trial and the write-ups have run with the
//! terminal reporter and every file reporter writing into the stack's run directory; the audit
//! stops the stack, then reads EVERY file under that directory (reports, component logs,
//! rendered configs, terminal output) and fails if any of the run's real secrets — client
//! secret, user password, cookie secret, admin password, every granted token and its signature
//! — appears, or if a report holds a complete JWT (three segments with a signature).
//!
//! Before it stops the stack, the audit signs in itself with a browser of its own, as a user of
//! the deployment would, and adds what that sign-in carried to the secrets looked for: the
//! auth proxy's session cookie value (each piece and whole), its CSRF cookie value (taken at
//! the IdP's login form, before the callback deletes it), and every token the app received
//! (the ID token in `Authorization`, the access token in `X-Auth-Request-Access-Token`, any
//! other token header it is given) with each JWT's signature. Those values never pass through
//! the harness's reports, so this checks that no component (proxy, gateway, IdP, app, session
//! store) writes a user's session or tokens into its log or files. No refresh token reaches the
//! browser or the app here (oauth2-proxy keeps it in its session store and forwards none), so
//! none is there to collect; one forwarded under any `*token*` header would be.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use meshauth::browser::{Body, Browser, find_provider_button};
use meshauth::endpoints::Endpoints;
use meshauth::redact::Redactor;
use meshauth::report::{ReportFormat, json};
use regex::Regex;
use reqwest::Method;
use reqwest::header::HeaderMap;

static FULL_JWT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"eyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{8,}").unwrap()
});
/// An authorization code or `state` in a URL (a callback in a component's request log).
static URL_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"[?&](code|state)=([^&\s"'<>]+)"#).unwrap());

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// What the test's own sign-in carried, as `(value, what it is)`: the session cookie (each
/// piece and whole), the CSRF cookie, and every token the app received with its signature.
/// Nothing here is registered with the run's redactor: these are looked for, not hidden.
pub async fn sign_in_secrets(endpoints: &Endpoints) -> Vec<(String, String)> {
    let mut browser =
        Browser::new(endpoints.ca_pem.as_deref(), Redactor::new()).expect("a browser");
    browser.confine_to(endpoints.hosts());
    browser.treat_as_public(&endpoints.app);
    browser.set_identity_provider(endpoints.idp.clone());
    let app = &endpoints.app;
    let echo = app.join("headers").unwrap();
    let no_headers = HeaderMap::new();
    let mut page = browser
        .navigate(Method::GET, echo.clone(), Body::Empty, &no_headers)
        .await
        .unwrap_or_else(|e| panic!("opening the app for the test's sign-in: {e}"));
    // oauth2-proxy's sign-in button (absent with skip_provider_button) leads to the IdP.
    if let Some(button) = find_provider_button(&page.body, &page.url) {
        page = browser
            .navigate(
                button.method.clone(),
                button.action_with_query(),
                Body::Empty,
                &no_headers,
            )
            .await
            .unwrap_or_else(|e| panic!("pressing the sign-in button: {e}"));
    }
    let mut found: Vec<(String, String)> = Vec::new();
    // At the IdP's login form the CSRF cookie is set; the callback deletes it.
    let csrf_name = format!("{}_csrf", endpoints.session_cookie);
    let csrf = browser.copy_cookies(app, &csrf_name);
    assert!(
        !csrf.is_empty(),
        "no {csrf_name} cookie for {app} before the callback (the sign-in page was {})",
        page.url
    );
    for cookie in &csrf {
        found.push((
            cookie.value().to_string(),
            format!("the test sign-in's CSRF cookie ({})", cookie.name()),
        ));
    }
    let page = browser
        .sign_in(
            page,
            &endpoints.user.username,
            endpoints.user.password.expose(),
        )
        .await
        .unwrap_or_else(|e| panic!("the test's own sign-in failed: {e}"));
    assert!(
        page.status.is_success(),
        "the test's own sign-in ended with {} at {}",
        page.status,
        page.url
    );
    let session = browser.copy_cookies(app, &endpoints.session_cookie);
    assert!(
        !session.is_empty(),
        "no {} session cookie for {app} after the test's sign-in",
        endpoints.session_cookie
    );
    for cookie in &session {
        found.push((
            cookie.value().to_string(),
            format!("the test sign-in's session cookie ({})", cookie.name()),
        ));
    }
    if session.len() > 1 {
        found.push((
            session.iter().map(|c| c.value()).collect(),
            format!(
                "the test sign-in's session cookie ({}, whole)",
                endpoints.session_cookie
            ),
        ));
    }
    // The tokens the app received, as httpbin echoes its request headers.
    let page = browser
        .navigate(Method::GET, echo, Body::Empty, &no_headers)
        .await
        .unwrap_or_else(|e| panic!("asking the app for its request headers: {e}"));
    let body: serde_json::Value = serde_json::from_str(&page.body).unwrap_or_else(|_| {
        panic!(
            "the app did not echo its request headers (status {})",
            page.status
        )
    });
    let headers = body["headers"]
        .as_object()
        .expect("httpbin's echo has a headers object");
    let mut token_headers = Vec::new();
    for (name, values) in headers {
        let values: Vec<&str> = match values {
            serde_json::Value::Array(items) => {
                items.iter().filter_map(serde_json::Value::as_str).collect()
            }
            serde_json::Value::String(value) => vec![value.as_str()],
            _ => Vec::new(),
        };
        let lower = name.to_ascii_lowercase();
        for value in values {
            // `Bearer <token>` or the bare token.
            let token = value.split_whitespace().last().unwrap_or_default();
            let jwt = token.starts_with("eyJ") && token.split('.').count() == 3;
            if !(jwt || lower == "authorization" || lower.contains("token")) || token.len() < 16 {
                continue;
            }
            token_headers.push(lower.clone());
            found.push((
                token.to_string(),
                format!("a token the app received in {name} at the test's sign-in"),
            ));
            if let Some(signature) = token.rsplit('.').next().filter(|s| jwt && s.len() >= 16) {
                found.push((
                    signature.to_string(),
                    format!("the signature of the token the app received in {name}"),
                ));
            }
        }
    }
    for wanted in ["authorization", "x-auth-request-access-token"] {
        assert!(
            token_headers.iter().any(|h| h == wanted),
            "the app received no token in {wanted} at the test's sign-in (token headers: \
             {token_headers:?})"
        );
    }
    for (value, what) in &found {
        assert!(value.len() >= 16, "{what} is too short to look for alone");
    }
    found
}

/// Every finding of a needle or a complete JWT in `files`, as "path holds what".
fn audit(files: &[PathBuf], needles: &[(String, String)]) -> Vec<String> {
    let mut leaks = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for (needle, what) in needles {
            if text.contains(needle.as_str()) {
                leaks.push(format!("{} holds {what}", file.display()));
            }
        }
        if let Some(value) = URL_CODE
            .captures_iter(&text)
            .find(|c| !c[2].contains("redacted"))
        {
            leaks.push(format!(
                "{} holds an authorization code or state in a URL ({}=…)",
                file.display(),
                &value[1]
            ));
        }
        if let Some(jwt) = FULL_JWT.find(&text) {
            leaks.push(format!(
                "{} holds a complete JWT starting {}",
                file.display(),
                &jwt.as_str()[..20]
            ));
        }
    }
    leaks
}

/// The audit of `run_dir` once the run is over and its stack stopped: `secrets` are those the
/// run's redactor registered, `signed_in` what [`sign_in_secrets`] found, `total` the number
/// of scenarios report.json must count.
pub fn audit_run(
    run_dir: &Path,
    total: usize,
    secrets: &[meshauth::redact::Secret],
    signed_in: &[(String, String)],
) {
    // The run must have exercised the secrets: signed in and granted at least one token.
    let tokens: Vec<&str> = secrets
        .iter()
        .map(|s| s.expose())
        .filter(|s| s.starts_with("eyJ") && s.split('.').count() == 3)
        .collect();
    assert!(!tokens.is_empty(), "no granted token was registered");
    assert!(secrets.len() >= 5, "expected 4 stack secrets + tokens");
    // One needle per distinct string: attack tokens share their signature with the token they
    // were made from, and unsigned ones (`alg: none`, stripped) have none to look for.
    let mut needles: Vec<(String, String)> = Vec::new();
    let mut push = |needle: &str, what: &str| {
        if !needles.iter().any(|(n, _)| n == needle) {
            needles.push((needle.to_string(), what.to_string()));
        }
    };
    for secret in secrets {
        let value = secret.expose();
        push(value, "a registered secret");
        if let Some(signature) = value
            .rsplit('.')
            .next()
            .filter(|s| tokens.contains(&value) && s.len() >= 16)
        {
            push(signature, "a token signature");
        }
    }
    for (value, what) in signed_in {
        push(value, what);
    }

    let mut files = Vec::new();
    files_under(run_dir, &mut files);
    let reports: Vec<PathBuf> = ReportFormat::ALL
        .iter()
        .map(|f| run_dir.join(f.file_name()))
        .collect();
    for report in &reports {
        assert!(
            files.contains(report),
            "{} was not written",
            report.display()
        );
    }
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "log")),
        "no component log to audit in {}",
        run_dir.display()
    );

    // The audit must be able to fail: a planted copy of a real secret is found.
    let planted = run_dir.join("planted-leak.txt");
    std::fs::write(
        &planted,
        format!(
            "oops {} oops GET /oauth2/callback?code=0a1b2c3d-4e5f",
            tokens[0]
        ),
    )
    .unwrap();
    let found = audit(std::slice::from_ref(&planted), &needles);
    assert_eq!(
        found.len(),
        4,
        "token, its signature, a full JWT and a code: {found:?}"
    );
    // ... and so is a planted copy of the test sign-in's session and CSRF cookie values.
    let cookies: Vec<&(String, String)> = signed_in
        .iter()
        .filter(|(_, what)| what.contains("cookie"))
        .collect();
    std::fs::write(
        &planted,
        cookies
            .iter()
            .map(|(value, _)| format!("Cookie: x={value}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let found = audit(std::slice::from_ref(&planted), &needles);
    for (_, what) in &cookies {
        assert!(
            found.iter().any(|f| f.ends_with(what.as_str())),
            "the planted {what} was not found: {found:?}"
        );
    }
    std::fs::remove_file(&planted).unwrap();

    let leaks = audit(&files, &needles);
    assert!(
        leaks.is_empty(),
        "secrets leaked ({} files audited):\n{}",
        files.len(),
        leaks.join("\n")
    );

    // The real JSON report matches its published schema.
    let schema: serde_json::Value = serde_json::from_str(json::SCHEMA).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join(ReportFormat::Json.file_name())).unwrap(),
    )
    .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "report.json violates the schema: {errors:#?}"
    );
    assert_eq!(report["summary"]["total"], total);
    eprintln!(
        "audited {} files in {} for {} secret strings: no leak",
        files.len(),
        run_dir.display(),
        needles.len()
    );
}
