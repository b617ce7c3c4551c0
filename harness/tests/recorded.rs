//! Pure logic on responses recorded from the real components (see tests/data/recorded/ and
//! docs/components.md): Keycloak's login pages in both themes, oauth2-proxy's sign-in page,
//! a real token with the JWKS it was signed with, httpbin's echo, the redirect chain.

use std::path::Path;

use meshauth::browser::Page;
use meshauth::browser::{FormError, find_login_error, find_login_form, find_provider_button};
use meshauth::engine::forwarded_bearer;
use meshauth::oidc::{self, ClaimExpectation, Discovery};
use meshauth::redact::Redactor;
use reqwest::{Method, StatusCode};
use serde_json::json;
use url::Url;

fn recorded(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/recorded")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn login_url() -> Url {
    Url::parse("http://127.0.0.1:18081/realms/Test-oidc/protocol/openid-connect/auth?client_id=oauth2proxy").unwrap()
}

#[test]
fn keycloak_v2_login_form_is_found_and_its_escaped_action_decoded() {
    let form = find_login_form(&recorded("login-v2.html"), &login_url()).unwrap();
    assert_eq!(form.form.method, Method::POST);
    assert_eq!(form.username_field, "username");
    assert_eq!(form.password_field, "password");
    let action = form.form.action.as_str();
    assert!(
        !action.contains("&amp;"),
        "HTML entities must be decoded: {action}"
    );
    let query: Vec<String> = form
        .form
        .action
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    assert_eq!(
        query,
        [
            "session_code",
            "execution",
            "client_id",
            "tab_id",
            "client_data"
        ]
    );
    let filled = form.fill("alice", "pw");
    insta::assert_debug_snapshot!("v2_filled_fields", filled.fields);
}

#[test]
fn legacy_theme_login_form_is_found() {
    let form = find_login_form(&recorded("login-legacy.html"), &login_url()).unwrap();
    assert_eq!(form.form.method, Method::POST);
    assert!(
        form.form
            .action
            .path()
            .ends_with("/login-actions/authenticate")
    );
    let filled = form.fill("alice", "pw");
    insta::assert_debug_snapshot!("legacy_filled_fields", filled.fields);
}

/// The second OpenID Provider (oidc-idp/, oidc-provider 9.13.3): its own login page, found
/// through fixtures/idp/login-pages.yaml.
#[test]
fn oidc_provider_login_form_and_error_are_found() {
    let url = Url::parse("http://127.0.0.1:47123/interaction/UID").unwrap();
    let form = find_login_form(&recorded("oidc-provider-login.html"), &url).unwrap();
    assert_eq!(form.form.method, Method::POST);
    assert_eq!(form.username_field, "username");
    assert_eq!(form.password_field, "password");
    assert!(
        form.form.action.path().ends_with("/login"),
        "{}",
        form.form.action
    );
    assert_eq!(
        find_login_error(&recorded("oidc-provider-login.html")),
        None
    );
    assert_eq!(
        find_login_error(&recorded("oidc-provider-login-error.html")).as_deref(),
        Some("Invalid username or password.")
    );
}

#[test]
fn wrong_password_error_is_read_from_both_themes() {
    for page in ["login-v2-error.html", "login-legacy-error.html"] {
        assert_eq!(
            find_login_error(&recorded(page)).as_deref(),
            Some("Invalid username or password."),
            "{page}"
        );
    }
    for page in ["login-v2.html", "login-legacy.html"] {
        assert_eq!(
            find_login_error(&recorded(page)),
            None,
            "{page} shows no error"
        );
    }
}

#[test]
fn a_keycloak_error_page_is_not_a_login_form() {
    let error =
        find_login_form(&recorded("login-v2-cookie-not-found.html"), &login_url()).unwrap_err();
    let FormError::NoLoginForm { title, .. } = &error else {
        panic!("unexpected error {error:?}");
    };
    assert!(!title.is_empty());
    assert!(
        error
            .to_string()
            .starts_with("no login form on http://127.0.0.1:18081/")
    );
    assert!(
        error
            .to_string()
            .contains("the page says: \"Restart login cookie not found."),
        "the IdP's own error is shown: {error}"
    );
    assert_eq!(
        find_login_error(&recorded("login-v2-cookie-not-found.html")),
        None,
        "the restart-login page carries its message elsewhere"
    );
}

#[test]
fn oauth2_proxy_sign_in_button_submits_a_get_to_start() {
    let page_url = Url::parse("https://127.0.0.1:18443/headers").unwrap();
    let button = find_provider_button(&recorded("oauth2-proxy-sign-in.html"), &page_url).unwrap();
    assert_eq!(button.method, Method::GET);
    assert_eq!(
        button.action_with_query().as_str(),
        "https://127.0.0.1:18443/oauth2/start?rd=%2Fheaders"
    );
    assert!(find_provider_button(&recorded("login-v2.html"), &login_url()).is_none());
    assert!(find_login_form(&recorded("oauth2-proxy-sign-in.html"), &page_url).is_err());
}

#[test]
fn recorded_token_verifies_against_its_jwks_and_tampering_is_caught() {
    let jwks = serde_json::from_str(&recorded("jwks.json")).unwrap();
    for name in ["access-token.jwt", "id-token.jwt"] {
        let token = recorded(name);
        let token = token.trim();
        let check = oidc::verify_signature(token, &jwks);
        assert!(check.passed, "{name}: {check}");

        // Same header and signature, different claims: the signature must not verify.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut claims = oidc::decode_unverified(token).unwrap().claims;
        claims.insert("preferred_username".into(), json!("mallory"));
        use base64::Engine as _;
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).unwrap());
        let tampered = oidc::verify_signature(&parts.join("."), &jwks);
        assert!(!tampered.passed, "{name}: a tampered token verified");
        assert!(tampered.actual.contains("signature invalid"), "{tampered}");
    }
    let unknown_kid = oidc::verify_signature(
        recorded("access-token.jwt").trim(),
        &jsonwebtoken::jwk::JwkSet { keys: vec![] },
    );
    assert!(
        !unknown_kid.passed && unknown_kid.actual.contains("not in the JWKS"),
        "{unknown_kid}"
    );
}

#[test]
fn recorded_token_claims_and_lifetime() {
    let token = recorded("id-token.jwt");
    let decoded = oidc::decode_unverified(token.trim()).unwrap();
    let iat = decoded.claims["iat"].as_i64().unwrap();
    // At issue time the lifetime checks pass; an hour later the token has expired.
    assert!(
        oidc::check_lifetime(&decoded.claims, iat + 10, 60)
            .iter()
            .all(|c| c.passed)
    );
    let later = oidc::check_lifetime(&decoded.claims, iat + 3600, 60);
    assert!(!later[0].passed, "{later:?}");
    for (claim, expectation) in [
        (
            "iss",
            ClaimExpectation::Equals(json!("http://127.0.0.1:18081/realms/Test-oidc")),
        ),
        ("aud", ClaimExpectation::Contains(json!("oauth2proxy"))),
        ("azp", ClaimExpectation::Equals(json!("oauth2proxy"))),
        (
            "preferred_username",
            ClaimExpectation::Equals(json!("alice")),
        ),
        (
            "email",
            ClaimExpectation::Equals(json!("alice@example.test")),
        ),
        ("realm_roles", ClaimExpectation::Contains(json!("sso-user"))),
    ] {
        let check = oidc::check_claim(&decoded.claims, claim, &expectation);
        assert!(check.passed, "{check}");
    }
    insta::assert_json_snapshot!("id_token_decoded", decoded, {
        ".claims.exp" => "[exp]",
        ".claims.iat" => "[iat]",
        ".claims.auth_time" => "[auth_time]",
        ".claims.jti" => "[jti]",
        ".claims.sid" => "[sid]",
        ".claims.sub" => "[sub]",
        ".claims.at_hash" => "[at_hash]",
        ".header.kid" => "[kid]",
    });
}

#[test]
fn discovery_document_parses() {
    let discovery: Discovery =
        serde_json::from_str(&recorded("openid-configuration.json")).unwrap();
    assert_eq!(discovery.issuer, "http://127.0.0.1:18081/realms/Test-oidc");
    assert!(
        discovery
            .jwks_uri
            .as_str()
            .ends_with("/protocol/openid-connect/certs")
    );
}

#[test]
fn forwarded_bearer_is_read_from_httpbins_echo() {
    let page = Page {
        url: Url::parse("https://127.0.0.1:18443/headers").unwrap(),
        status: StatusCode::OK,
        headers: Default::default(),
        body: recorded("httpbin-headers.json"),
    };
    assert_eq!(
        forwarded_bearer(&page).unwrap(),
        recorded("id-token.jwt").trim()
    );

    let mut without = page.clone();
    let mut json: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    json["headers"]
        .as_object_mut()
        .unwrap()
        .remove("Authorization");
    without.body = json.to_string();
    let error = forwarded_bearer(&without).unwrap_err();
    assert!(
        error.starts_with("the app received no Authorization header (it received: Accept,"),
        "{error}"
    );

    let mut html = page.clone();
    html.body = recorded("oauth2-proxy-sign-in.html");
    html.status = StatusCode::FORBIDDEN;
    let error = forwarded_bearer(&html).unwrap_err();
    assert!(
        error.contains("expected the app's echo of its request headers, got status 403"),
        "{error}"
    );
}

#[test]
fn redirect_chain_redaction_leaves_no_codes_states_or_signatures() {
    let redactor = Redactor::new();
    let chain = recorded("redirect-chain.txt") + &recorded("httpbin-headers.json");
    let redacted = redactor.redact(&chain);
    for (needle, what) in [
        ("433a4830-eba5-b7a2", "authorization code"),
        ("sYM6smnfhBsTE8ImF", "state"),
        ("KpaRI4DVzzCCSq0bM", "session_code"),
    ] {
        assert!(chain.contains(needle), "the recording holds the {what}");
        assert!(!redacted.contains(needle), "the {what} survived redaction");
    }
    let signature = recorded("id-token.jwt")
        .trim()
        .rsplit('.')
        .next()
        .unwrap()
        .to_string();
    assert!(chain.contains(&signature));
    assert!(
        !redacted.contains(&signature),
        "a token signature survived redaction"
    );
}
