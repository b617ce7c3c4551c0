//! Keycloak realm exports (JSON): the realm's own settings and each browser client's.

use serde_json::Value;

use super::{ConfigFile, check};
use crate::check::{CheckResult, Severity};

pub(super) fn keycloak_realm(file: &ConfigFile) -> Vec<CheckResult> {
    let Ok(realm) = serde_json::from_str::<Value>(&file.text) else {
        return vec![CheckResult::new(
            format!("{}: realm export", file.name),
            false,
            "a JSON realm export",
            "not valid JSON",
        )];
    };
    let clients: Vec<&Value> = realm
        .get("clients")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .collect();
    let mut checks = realm_rules(file, &realm, &clients);
    for client in &clients {
        checks.extend(client_rules(file, client));
    }
    checks
}

/// The realm's own settings (a client's token lifespan counts with the realm's).
fn realm_rules(file: &ConfigFile, realm: &Value, clients: &[&Value]) -> Vec<CheckResult> {
    let flag = |key: &str| realm.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    let mut checks = vec![
        check(
            file,
            "open self-registration",
            Severity::Medium,
            "registrationAllowed false (or admission by role)",
            flag("registrationAllowed").then(|| {
                (
                    0,
                    "registrationAllowed: true: anyone can create an account".to_string(),
                )
            }),
            "registrationAllowed: false, or admit by role",
        ),
        check(
            file,
            "IdP over plain HTTP",
            Severity::Medium,
            "sslRequired external or all",
            (realm.get("sslRequired").and_then(|v| v.as_str()) == Some("none")).then(|| {
                (
                    0,
                    "sslRequired: none: passwords and codes may travel in plaintext".to_string(),
                )
            }),
            "sslRequired: external, and TLS in front of the IdP",
        ),
    ];
    // Keycloak's default is 5 minutes; a client's own lifespan overrides the realm's.
    const LONGEST_ACCESS_TOKEN_SECONDS: i64 = 3600;
    let long_lifespan = |owner: String, value: Option<i64>| {
        value
            .filter(|&seconds| seconds > LONGEST_ACCESS_TOKEN_SECONDS)
            .map(|seconds| {
                (
                    0,
                    format!(
                        "{owner} access token lifespan {seconds}s: a copied token works that long, whatever happens to its session"
                    ),
                )
            })
    };
    let as_seconds = |value: Option<&serde_json::Value>| {
        value.and_then(|v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()))
    };
    let mut lifespan = long_lifespan(
        "the realm's".into(),
        as_seconds(realm.get("accessTokenLifespan")),
    );
    for client in clients {
        let id = client
            .get("clientId")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        lifespan = lifespan.or_else(|| {
            long_lifespan(
                format!("client {id}'s"),
                as_seconds(client.pointer("/attributes/access.token.lifespan")),
            )
        });
    }
    // Keycloak's defaults (X-Frame-Options SAMEORIGIN, frame-ancestors 'self') apply where the
    // export leaves the headers out.
    let headers = realm.get("browserSecurityHeaders");
    let header = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_ascii_lowercase)
    };
    let frame_options = header("xFrameOptions");
    let csp = header("contentSecurityPolicy");
    let frameable = headers.is_some()
        && !frame_options
            .as_deref()
            .is_some_and(|v| v.contains("deny") || v.contains("sameorigin"))
        && !csp
            .as_deref()
            .is_some_and(|v| v.contains("frame-ancestors"));
    checks.push(check(
        file,
        "login page frameable",
        Severity::Medium,
        "browserSecurityHeaders keep X-Frame-Options or a CSP frame-ancestors",
        frameable.then(|| {
            (
                0,
                format!(
                    "browserSecurityHeaders: xFrameOptions {:?}, contentSecurityPolicy {:?}: any site can frame the login page (clickjacking of the password form)",
                    frame_options.unwrap_or_default(),
                    csp.unwrap_or_default()
                ),
            )
        }),
        "xFrameOptions: SAMEORIGIN and contentSecurityPolicy with frame-ancestors 'self' (Keycloak's defaults), or frame-ancestors naming the one portal that embeds it",
    ));
    let rotated = realm.get("revokeRefreshToken").and_then(|v| v.as_bool()) == Some(true)
        && realm
            .get("refreshTokenMaxReuse")
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
            == 0;
    checks.push(check(
        file,
        "refresh tokens reusable",
        Severity::Low,
        "revokeRefreshToken true with refreshTokenMaxReuse 0",
        (!rotated).then(|| {
            (
                0,
                "refresh tokens are not rotated (Keycloak's default): a copied refresh token keeps minting access tokens beside its owner's".to_string(),
            )
        }),
        "revokeRefreshToken: true, refreshTokenMaxReuse: 0 (Realm settings → Tokens → Revoke Refresh Token)",
    ));
    checks.push(check(
        file,
        "access token lifespan",
        Severity::Medium,
        "access tokens issued for at most an hour",
        lifespan,
        "accessTokenLifespan of 300 to 3600 seconds (and no longer access.token.lifespan on a client); sessions renew tokens with oauth2-proxy's cookie_refresh",
    ));
    checks
}

/// A client's settings; none for a client without a browser flow.
fn client_rules(file: &ConfigFile, client: &Value) -> Vec<CheckResult> {
    let id = client
        .get("clientId")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    // Keycloak's defaults: standard flow on, implicit flow off.
    let standard = client
        .get("standardFlowEnabled")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let implicit = client
        .get("implicitFlowEnabled")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if !standard && !implicit {
        return Vec::new();
    }
    let mut checks = Vec::new();
    let redirects: Vec<&str> = client
        .get("redirectUris")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    let wildcard = redirects.iter().find(|r| r.contains('*'));
    checks.push(check(
        file,
        &format!("client {id} redirect URIs"),
        Severity::High,
        "exact redirect URIs (no wildcard)",
        wildcard.map(|r| (0, format!("redirectUris contains {r}"))),
        "register exactly https://<app>/oauth2/callback",
    ));
    checks.push(check(
        file,
        &format!("client {id} implicit flow"),
        Severity::Medium,
        "implicitFlowEnabled false",
        implicit.then(|| {
            (
                0,
                "implicitFlowEnabled: true: tokens in the front channel".to_string(),
            )
        }),
        "implicitFlowEnabled: false",
    ));
    let pkce = client
        .pointer("/attributes/pkce.code.challenge.method")
        .and_then(|v| v.as_str())
        .is_some_and(|m| m == "S256");
    if standard {
        checks.push(check(
            file,
            &format!("client {id} PKCE"),
            Severity::Low,
            "pkce.code.challenge.method S256",
            (!pkce).then(|| {
                (
                    0,
                    "PKCE not required: a stolen code can be redeemed".to_string(),
                )
            }),
            "attributes.pkce.code.challenge.method: S256",
        ));
    }
    checks
}
