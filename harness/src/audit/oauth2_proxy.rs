//! oauth2-proxy's settings, in any of its spellings.

use super::settings::{Setting, first, list, truthy};
use super::{ConfigFile, check, quoted};
use crate::check::{CheckResult, Severity};

pub(super) fn oauth2_proxy(file: &ConfigFile, found: &[Setting]) -> Vec<CheckResult> {
    let flag_on = |keys: &[&str]| {
        first(found, keys)
            .find(|s| truthy(&s.value))
            .map(|s| (s.line, quoted(s)))
    };
    let flag_off = |keys: &[&str]| {
        first(found, keys)
            .find(|s| !truthy(&s.value))
            .map(|s| (s.line, quoted(s)))
    };
    let non_empty = |keys: &[&str]| {
        first(found, keys)
            .find(|s| !list(&s.value).is_empty())
            .map(|s| (s.line, quoted(s)))
    };
    let admission = first(
        found,
        &[
            "allowed_role",
            "allowed_roles",
            "allowed_group",
            "allowed_groups",
        ],
    )
    .any(|s| !list(&s.value).is_empty());
    let any_email = first(found, &["email_domain", "email_domains"])
        .find(|s| list(&s.value).iter().any(|d| d == "*"));
    let whitelist = first(found, &["whitelist_domain", "whitelist_domains"]).find(|s| {
        list(&s.value)
            .iter()
            .any(|d| d.starts_with('.') || d.starts_with("*"))
    });
    let strict =
        first(found, &["cookie_samesite"]).find(|s| s.value.eq_ignore_ascii_case("strict"));
    // Go durations: "0", "0s", "0h0m0s" are all off.
    let off = |value: &str| !value.chars().any(|c| c.is_ascii_digit() && c != '0');
    let refresh = first(found, &["cookie_refresh"]).last();
    let never_rechecked = match refresh {
        Some(s) if !off(&s.value) => None,
        Some(s) => Some((s.line, quoted(s))),
        None => Some((
            0,
            "no cookie_refresh (oauth2-proxy's default: off)".to_string(),
        )),
    }
    .map(|(line, what)| {
        (
            line,
            format!(
                "{what}: the session is never re-checked at the IdP, so a user disabled or \
                 signed out there keeps access, and the app keeps receiving the sign-in's \
                 tokens after they expire, until the cookie does (cookie_expire, 168h by \
                 default)"
            ),
        )
    });
    let nonce_skipped = match first(found, &["insecure_oidc_skip_nonce"]).last() {
        Some(s) if s.value.trim_matches('"').eq_ignore_ascii_case("false") => None,
        Some(s) => Some((s.line, quoted(s))),
        None => Some((
            0,
            "no insecure_oidc_skip_nonce = false (oauth2-proxy's default, true, skips the check)"
                .to_string(),
        )),
    }
    .map(|(line, what)| {
        (
            line,
            format!(
                "{what}: an ID token issued for another sign-in (injected or replayed) is \
                 accepted"
            ),
        )
    });
    vec![
        check(file, "ID token nonce", Severity::Medium,
            "insecure_oidc_skip_nonce = false",
            nonce_skipped,
            "set insecure_oidc_skip_nonce = false"),
        check(file, "TLS verification of the IdP and upstreams", Severity::High,
            "ssl_insecure_skip_verify off",
            flag_on(&["ssl_insecure_skip_verify", "ssl_upstream_insecure_skip_verify"]),
            "remove ssl_insecure_skip_verify; give oauth2-proxy the IdP's CA (provider_ca_files)"),
        check(file, "issuer verification", Severity::High,
            "insecure_oidc_skip_issuer_verification off",
            flag_on(&["insecure_oidc_skip_issuer_verification"]),
            "remove insecure_oidc_skip_issuer_verification; set oidc_issuer_url to the issuer the IdP names"),
        check(file, "unverified e-mail", Severity::Medium,
            "insecure_oidc_allow_unverified_email off",
            flag_on(&["insecure_oidc_allow_unverified_email"]),
            "remove insecure_oidc_allow_unverified_email; require verified e-mail at the IdP"),
        check(file, "trusted IPs bypass authentication", Severity::High,
            "no trusted_ips (requests from them skip authentication; behind a gateway every request comes from it)",
            non_empty(&["trusted_ip", "trusted_ips"]),
            "remove trusted_ips"),
        check(file, "skip-auth routes", Severity::High,
            "no skip_auth_routes / skip_auth_regex (each one an unauthenticated path to the app)",
            non_empty(&["skip_auth_route", "skip_auth_routes", "skip_auth_regex"]),
            "remove them, or exempt exact paths at the gateway where they are visible in the AuthorizationPolicy"),
        check(file, "wildcard return-URL domains", Severity::Medium,
            "whitelist_domains without wildcards or leading dots",
            whitelist.map(|s| (s.line, quoted(s))),
            "list exact hosts you own"),
        check(file, "session cookie Secure", Severity::High,
            "cookie_secure on",
            flag_off(&["cookie_secure"]),
            "serve the app over HTTPS and set cookie_secure = true"),
        check(file, "session cookie HttpOnly", Severity::Medium,
            "cookie_httponly on",
            flag_off(&["cookie_httponly"]),
            "set cookie_httponly = true"),
        check(file, "SameSite=Strict breaks the callback", Severity::Low,
            "cookie_samesite lax or unset",
            strict.map(|s| (s.line, quoted(s))),
            "cookie_samesite = \"lax\": the IdP's redirect to the callback is cross-site"),
        check(file, "admission", Severity::Medium,
            "email_domains \"*\" only together with allowed_roles or allowed_groups",
            any_email.filter(|_| !admission).map(|s| (s.line, format!("{} and no allowed_roles/allowed_groups: every account of the IdP is admitted", quoted(s)))),
            "allowed_roles (keycloak-oidc) or allowed_groups, or an AuthorizationPolicy on the role claim"),
        check(file, "session re-checked at the IdP", Severity::Medium,
            "cookie_refresh set, shorter than the IdP's token lifetime",
            never_rechecked,
            "cookie_refresh = \"1m\" (shorter than the IdP's access-token lifespan), with refresh tokens on the client"),
    ]
}
