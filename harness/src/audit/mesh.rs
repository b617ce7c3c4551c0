//! Istio objects and mesh config, and Envoy bootstraps: the gateway's checks, its JWT rules,
//! what it trusts and sends back, its TLS, and the sidecars' mTLS.

use super::settings::{Setting, code, first, list, trusted_proxy_counts, truthy, yaml_list};
use super::{ConfigFile, check, quoted};
use crate::check::{CheckResult, Severity};

pub(super) fn mesh(file: &ConfigFile, found: &[Setting]) -> Vec<CheckResult> {
    let text = &code(&file.text);
    let mut checks = Vec::new();
    ext_authz_failure_mode(file, found, &mut checks);
    access_logs(file, text, &mut checks);
    ext_authz_provider(file, found, text, &mut checks);
    jwt_rules(file, found, text, &mut checks);
    trusted_proxies(file, text, &mut checks);
    identity_sent_back(file, text, &mut checks);
    legacy_tls(file, found, text, &mut checks);
    peer_authentication(file, found, text, &mut checks);
    custom_policy_scope(file, text, &mut checks);
    checks
}

/// Paths a CUSTOM (auth proxy) policy may leave out: the auth proxy's own flow and the IdP's
/// public pages where it shares the gateway. Anything else it leaves out is public.
const SIGN_IN_PATHS: &[&str] = &["/oauth2/*", "/auth/*", "/realms/*", "/resources/*"];

/// What a CUSTOM AuthorizationPolicy leaves unchecked: paths, hosts or methods exempted beyond
/// the sign-in's own, a wildcard prefix without its slash (`/oauth2*` exempts `/oauth2x…`),
/// and rules scoped to some paths, hosts, methods or conditions (everything else passes
/// without the check). Read from the objects' structure, whatever their YAML or JSON style.
fn custom_policy_scope(file: &ConfigFile, text: &str, checks: &mut Vec<CheckResult>) {
    if !text.contains("AuthorizationPolicy") {
        return;
    }
    let Ok(documents) = serde_saphyr::from_multiple::<serde_json::Value>(&file.text) else {
        return;
    };
    for policy in documents.iter().filter(|d| {
        d["kind"] == "AuthorizationPolicy" && d["spec"]["action"].as_str() == Some("CUSTOM")
    }) {
        let name = policy["metadata"]["name"].as_str().unwrap_or("(unnamed)");
        let line = line_of(text, &format!("name: {name}"));
        let (near_misses, unchecked) = custom_policy_gaps(&policy["spec"]);
        checks.push(check(
            file,
            &format!("sign-in exemptions of CUSTOM policy {name}"),
            Severity::High,
            "no wildcard path exemption wider than its prefix (\"/oauth2/*\", never \"/oauth2*\")",
            (!near_misses.is_empty()).then(|| {
                (
                    line,
                    format!(
                        "{}: each also exempts every path that merely starts the same (\"/oauth2x\", \"/auth-admin\")",
                        near_misses.join(", ")
                    ),
                )
            }),
            "end each exempt prefix with a slash before the wildcard: \"/oauth2/*\"",
        ));
        checks.push(check(
            file,
            &format!("requests left unchecked by CUSTOM policy {name}"),
            Severity::Medium,
            "the check on every request but the sign-in's own paths",
            (!unchecked.is_empty()).then(|| {
                (
                    line,
                    format!(
                        "{}: these requests reach the app without a session; make sure each is meant to be public",
                        unchecked.join("; ")
                    ),
                )
            }),
            "exempt only the auth proxy's /oauth2/* (and the IdP's paths where it shares the host); put public content on its own host or route, not under the app's",
        ));
    }
}

/// A CUSTOM policy's wildcard near-misses and what else it leaves unchecked.
fn custom_policy_gaps(spec: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (mut near_misses, mut unchecked) = (Vec::new(), Vec::new());
    let rules = spec["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        // A policy without rules matches no request: ext_authz checks nothing.
        unchecked.push("no rules: the policy matches no request, so no request is checked".into());
        return (near_misses, unchecked);
    }
    // Rules are OR-ed: one that matches every request leaves nothing unchecked, and one whose
    // operations are not scoped makes other rules' scopes moot.
    let matches_all = |rule: &serde_json::Value| {
        rule.get("to").is_none() && rule.get("from").is_none() && rule.get("when").is_none()
    };
    if rules.iter().any(matches_all) {
        return (near_misses, unchecked);
    }
    let scoped = |operation: &serde_json::Value| {
        ["paths", "hosts", "methods", "ports"]
            .iter()
            .any(|field| operation.get(*field).is_some())
    };
    let some_operation_unscoped = rules.iter().any(|rule| {
        rule.get("when").is_none()
            && rule.get("from").is_none()
            && rule["to"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|to| !scoped(&to["operation"]))
    });
    for rule in &rules {
        for operation in rule["to"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|to| &to["operation"])
        {
            for path in strings(&operation["notPaths"]) {
                if let Some(prefix) = path.strip_suffix('*')
                    && !prefix.ends_with('/')
                    && !prefix.is_empty()
                {
                    near_misses.push(format!("notPaths {path:?}"));
                } else if !SIGN_IN_PATHS.contains(&path.as_str()) {
                    unchecked.push(format!("notPaths {path:?}"));
                }
            }
            for field in ["notHosts", "notMethods"] {
                let values = strings(&operation[field]);
                if !values.is_empty() {
                    unchecked.push(format!("{field} {values:?}"));
                }
            }
            for (field, what) in [
                ("paths", "every other path"),
                ("hosts", "every other host"),
                ("methods", "every other method"),
                ("ports", "every other port"),
            ] {
                let values = strings(&operation[field]);
                if !values.is_empty() && !some_operation_unscoped {
                    unchecked.push(format!("{field} {values:?} only ({what} unchecked)"));
                }
            }
        }
        if rule["when"].as_array().is_some_and(|w| !w.is_empty()) {
            unchecked
                .push("a `when` condition (requests that do not meet it are unchecked)".into());
        }
    }
    (near_misses, unchecked)
}

/// The line (1-based) of the first line holding `needle`, 0 when none does.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or(0)
}

fn ext_authz_failure_mode(file: &ConfigFile, found: &[Setting], checks: &mut Vec<CheckResult>) {
    let fail_open = first(found, &["failopen", "failure_mode_allow"]).find(|s| truthy(&s.value));
    checks.push(check(
        file,
        "ext_authz fails open",
        Severity::Critical,
        "failOpen / failure_mode_allow false",
        fail_open.map(|s| (s.line, quoted(s))),
        "failOpen: false on the envoyExtAuthzHttp provider",
    ));
}

fn access_logs(file: &ConfigFile, text: &str, checks: &mut Vec<CheckResult>) {
    if text.contains("envoy.access_loggers") || text.contains("accessLogFile") {
        let without_query = text.contains("REQ_WITHOUT_QUERY");
        checks.push(check(file, "query strings in access logs", Severity::Medium,
            "access log lines without query strings (%REQ_WITHOUT_QUERY(...)%)",
            (!without_query).then(|| (line_of(text, if text.contains("accessLogFile") { "accessLogFile" } else { "access_log" }), "the default format logs each path with its query string: authorization codes, state and the logout's id_token_hint end up in the logs".to_string())),
            "meshConfig.accessLogFormat (or the access log's format) with %REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%"));
    }
}

fn ext_authz_provider(
    file: &ConfigFile,
    found: &[Setting],
    text: &str,
    checks: &mut Vec<CheckResult>,
) {
    let ext_authz =
        text.contains("envoyExtAuthzHttp") || text.contains("envoy.filters.http.ext_authz");
    if ext_authz {
        let has_prefix = first(found, &["pathprefix", "path_prefix"]).any(|s| !s.value.is_empty());
        checks.push(check(file, "ext_authz pathPrefix", Severity::High,
            "a pathPrefix, so oauth2-proxy's own /robots.txt, /ping, /ready never answer for an app path",
            (!has_prefix).then(|| (line_of(text, if text.contains("envoyExtAuthzHttp") { "envoyExtAuthzHttp" } else { "ext_authz" }), "no pathPrefix: oauth2-proxy is asked about the app's own path".to_string())),
            "pathPrefix: /ext-authz with includeAdditionalHeadersInCheck x-auth-request-redirect: \"%REQ(:PATH)%\""));
        let set_cookie_back = text.to_ascii_lowercase().contains("set-cookie");
        checks.push(check(file, "set-cookie passed back", Severity::Medium,
            "set-cookie among the headers the gateway passes back (headersToDownstreamOnDeny / allowed_client_headers)",
            (!set_cookie_back).then(|| (line_of(text, "ext"), "set-cookie is not passed back: the CSRF and session cookies never reach the browser".to_string())),
            "add set-cookie to headersToDownstreamOnDeny and headersToDownstreamOnAllow"));
        let seconds = |value: &str| {
            let value = value.trim();
            let (number, unit) = value.split_at(
                value
                    .find(|c: char| c.is_ascii_alphabetic())
                    .unwrap_or(value.len()),
            );
            let number: f64 = number.trim().parse().ok()?;
            Some(match unit {
                "ms" => number / 1000.0,
                "m" => number * 60.0,
                "h" => number * 3600.0,
                _ => number,
            })
        };
        let long_timeout = first(found, &["timeout"])
            .find(|s| seconds(&s.value).is_some_and(|t| t >= 60.0))
            .map(|s| {
                (
                    s.line,
                    format!(
                        "{}: a hung auth service holds every request this long",
                        quoted(s)
                    ),
                )
            })
            .or_else(|| {
                (text.contains("envoyExtAuthzHttp") && first(found, &["timeout"]).next().is_none())
                    .then(|| {
                        (
                            line_of(text, "envoyExtAuthzHttp"),
                            "no timeout: Istio waits 600 s for a hung auth service".to_string(),
                        )
                    })
            });
        checks.push(check(
            file,
            "ext_authz timeout",
            Severity::Low,
            "a timeout of seconds, not Istio's 600 s default",
            long_timeout,
            "timeout: 5s on the envoyExtAuthzHttp provider",
        ));
    }
}

fn jwt_rules(file: &ConfigFile, found: &[Setting], text: &str, checks: &mut Vec<CheckResult>) {
    if text.contains("jwtRules") || text.contains("envoy.filters.http.jwt_authn") {
        let audiences = first(found, &["audiences"]).any(|s| !list(&s.value).is_empty())
            || text.contains("audiences:\n");
        checks.push(check(file, "JWT audiences", Severity::Medium,
            "jwtRules[].audiences naming the app's client",
            (!audiences).then(|| (line_of(text, "jwt"), "no audiences: every valid token of the realm is accepted, whichever client or service account it was issued to".to_string())),
            "audiences: [<client id>] in each jwtRule"));
        // In-cluster and loopback addresses stay inside the mesh's mTLS or the machine.
        let plain_jwks = first(found, &["jwksuri", "uri"]).find(|s| {
            let host = s
                .value
                .strip_prefix("http://")
                .and_then(|rest| rest.split(['/', ':']).next())
                .unwrap_or_default();
            s.value.starts_with("http://")
                && s.value.contains("certs")
                && !(host == "localhost"
                    || host.starts_with("127.")
                    || host.ends_with(".svc")
                    || host.ends_with(".cluster.local"))
        });
        checks.push(check(
            file,
            "JWKS over TLS",
            Severity::Medium,
            "jwksUri over https",
            plain_jwks.map(|s| {
                (
                    s.line,
                    format!(
                        "{}: signing keys fetched in plaintext can be swapped in transit",
                        quoted(s)
                    ),
                )
            }),
            "serve the IdP over HTTPS and use an https jwksUri",
        ));
    }
}

fn trusted_proxies(file: &ConfigFile, text: &str, checks: &mut Vec<CheckResult>) {
    // Right only when exactly that many proxies that append to X-Forwarded-For stand in front
    // of the gateway; behind a TCP load balancer, or reachable directly, a client writes the
    // entries the gateway believes.
    // Read from the text, not the parsed settings: the count also hides in a JSON annotation
    // (`proxy.istio.io/config: '{"gatewayTopology": {"numTrustedProxies": 1}}'`).
    let counts = trusted_proxy_counts(text);
    if !counts.is_empty() {
        let trusted_proxies = counts.into_iter().find(|(_, _, n)| *n > 0);
        checks.push(check(
            file,
            "trusted proxies in front of the gateway",
            Severity::Medium,
            "numTrustedProxies / xff_num_trusted_hops 0, unless that many proxies that append to X-Forwarded-For stand in front",
            trusted_proxies.map(|(line, key, n)| {
                (
                    line,
                    format!(
                        "{key} = {n}: the gateway takes the client's address from X-Forwarded-For, which a client reaching it directly or through a TCP load balancer writes itself (remoteIpBlocks, rate limits, x-envoy-external-address)"
                    ),
                )
            }),
            "gatewayTopology.numTrustedProxies: the number of L7 proxies in front of the gateway (0 behind a TCP load balancer); confirm with the forged_client_address scenario",
        ));
    }
}

fn identity_sent_back(file: &ConfigFile, text: &str, checks: &mut Vec<CheckResult>) {
    let identity_back = yaml_list(
        text,
        &[
            "headersToDownstreamOnAllow",
            "allowed_client_headers_on_success",
        ],
    )
    .into_iter()
    .find(|(_, item)| carries_identity(item));
    if text.contains("headersToDownstreamOnAllow")
        || text.contains("allowed_client_headers_on_success")
    {
        checks.push(check(
            file,
            "identity sent back to the browser",
            Severity::High,
            "only set-cookie among the auth service's headers passed back on allow",
            identity_back.map(|(line, item)| {
                (
                    line,
                    format!("{item} is passed back to the browser: the session's token or identity leaves the server side (scripts, extensions, caches and logs in front of the browser see it)"),
                )
            }),
            "headersToDownstreamOnAllow: [set-cookie]; identity headers belong in headersToUpstreamOnAllow",
        ));
    }
}

fn legacy_tls(file: &ConfigFile, found: &[Setting], text: &str, checks: &mut Vec<CheckResult>) {
    let legacy_tls = first(
        found,
        &["minprotocolversion", "tls_minimum_protocol_version"],
    )
    .find(|s| {
        let version: String = s
            .value
            .to_ascii_uppercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        matches!(version.as_str(), "TLSV10" | "TLSV11")
    })
    .map(|s| {
        (
            s.line,
            format!(
                "{}: browsers' TLS 1.0 and 1.1 (deprecated by RFC 8996) are accepted",
                quoted(s)
            ),
        )
    });
    let cbc_suite = yaml_list(text, &["cipherSuites", "cipher_suites"])
        .into_iter()
        .find(|(_, suite)| {
            let suite = suite.to_ascii_uppercase();
            !(suite.contains("GCM") || suite.contains("CHACHA20") || suite.starts_with('['))
        })
        .map(|(line, suite)| {
            (
                line,
                format!("{suite}: a suite without AEAD (CBC, or worse) is offered"),
            )
        });
    if legacy_tls.is_some()
        || cbc_suite.is_some()
        || text.contains("minProtocolVersion")
        || text.contains("tls_minimum_protocol_version")
        || text.contains("cipherSuites")
        || text.contains("cipher_suites")
    {
        checks.push(check(
            file,
            "legacy TLS at the gateway",
            Severity::Medium,
            "TLS 1.2 or newer with AEAD suites only (ECDHE with AES-GCM or ChaCha20-Poly1305)",
            legacy_tls.or(cbc_suite),
            "minProtocolVersion: TLSV1_2 on the Gateway's tls (tls_minimum_protocol_version: TLSv1_2 in Envoy), and cipherSuites limited to ECDHE-*-AES*-GCM-* and ECDHE-*-CHACHA20-POLY1305",
        ));
    }
}

fn peer_authentication(
    file: &ConfigFile,
    found: &[Setting],
    text: &str,
    checks: &mut Vec<CheckResult>,
) {
    if text.contains("kind: PeerAuthentication") {
        let permissive = first(found, &["mode"]).find(|s| {
            s.value.eq_ignore_ascii_case("PERMISSIVE") || s.value.eq_ignore_ascii_case("DISABLE")
        });
        checks.push(check(
            file,
            "mTLS mode",
            Severity::Medium,
            "PeerAuthentication STRICT",
            permissive.map(|s| {
                (
                    s.line,
                    format!("{}: plaintext callers are accepted", quoted(s)),
                )
            }),
            "mtls.mode: STRICT",
        ));
    }
}

/// A header that carries the session's identity or tokens.
fn carries_identity(header: &str) -> bool {
    let header = header.to_ascii_lowercase();
    header == "authorization"
        || header.starts_with("x-auth-request-")
        || header.starts_with("x-forwarded-user")
        || header.starts_with("x-forwarded-email")
        || header.starts_with("x-forwarded-groups")
        || header.starts_with("x-forwarded-preferred-username")
        || header.starts_with("x-forwarded-access-token")
        || header.starts_with("x-id-token")
}
