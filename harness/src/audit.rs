//! Configuration findings: insecure settings read from the deployment's own configuration
//! (oauth2-proxy config files, flags or environment variables; Istio mesh config and policy
//! objects; Envoy bootstraps; Keycloak realm exports). Settings are recognised in every
//! spelling they are written in — `cookie_secure = false`, `--cookie-secure=false`,
//! `OAUTH2_PROXY_COOKIE_SECURE: "false"`, `cookie-secure: false` in Helm values — so a rule
//! catches its whole class, not one file format.
//!
//! Each rule that applies to a file yields one check: passed when the setting is safe,
//! failed (a finding, with severity and fix) when not.

use serde::Serialize;

use crate::check::{CheckResult, Severity};

/// A configuration file's name (for the report) and text. Secrets in it never leave: only
/// the offending setting's key and non-secret value are quoted.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub name: String,
    pub text: String,
}

/// Reads `paths` for auditing; a file that cannot be read is an error naming it.
pub fn read_files(paths: &[std::path::PathBuf]) -> Result<Vec<ConfigFile>, String> {
    paths
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|text| ConfigFile {
                    name: path.display().to_string(),
                    text,
                })
                .map_err(|e| format!("reading config file {}: {e}", path.display()))
        })
        .collect()
}

/// What a file configures, recognised from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKind {
    OAuth2Proxy,
    /// Istio objects, mesh config or an Envoy bootstrap (the gateway's or a sidecar's).
    Mesh,
    KeycloakRealm,
}

/// One `key = value` setting as found, its key normalised to oauth2-proxy's config spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setting {
    key: String,
    value: String,
    line: usize,
}

/// Keys that hold secrets: never quoted.
const SECRET_KEYS: &[&str] = &[
    "client_secret",
    "cookie_secret",
    "redis_password",
    "secret",
    "password",
    "private_key",
];

fn normalise_key(raw: &str) -> String {
    let key = raw
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .trim_start_matches('-')
        .to_ascii_lowercase()
        .replace('-', "_");
    key.strip_prefix("oauth2_proxy_")
        .map(str::to_string)
        .unwrap_or(key)
}

fn clean_value(raw: &str) -> String {
    let value = raw.split(" #").next().unwrap_or(raw).trim();
    value
        .trim_matches(|c| c == '"' || c == '\'')
        .trim()
        .to_string()
}

/// Every `key = value`, `key: value`, `--key=value`, `--key value` and Kubernetes
/// `- name: KEY` / `value: ...` pair in `text`.
fn settings(text: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut index = 0;
    while index < lines.len() {
        let line_index = index;
        let mut line = lines[index].to_string();
        index += 1;
        // A TOML array written over several lines is one setting.
        if line.contains("= [") && !line.contains(']') {
            while index < lines.len() {
                let next = lines[index];
                index += 1;
                line.push(' ');
                line.push_str(next.split(" #").next().unwrap_or(next).trim());
                if next.contains(']') {
                    break;
                }
            }
        }
        let index = line_index;
        let uncommented = line.split(" #").next().unwrap_or(&line).to_string();
        let trimmed = uncommented.trim().trim_start_matches("- ").trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        // Kubernetes env entries: `- name: OAUTH2_PROXY_X` then `value: ...`.
        if let Some(name) = trimmed.strip_prefix("name:") {
            let name = clean_value(name);
            if name.to_ascii_uppercase().starts_with("OAUTH2_PROXY_") {
                if let Some(value) = lines
                    .iter()
                    .skip(index + 1)
                    .take(2)
                    .find_map(|l| l.trim().strip_prefix("value:"))
                {
                    out.push(Setting {
                        key: normalise_key(&name),
                        value: clean_value(value),
                        line: index + 1,
                    });
                }
                continue;
            }
        }
        // Command-line flags, possibly several on one line or quoted in a YAML list.
        if trimmed.contains("--") {
            let tokens: Vec<&str> = trimmed
                .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
                .map(|t| t.trim_matches(|c| c == '"' || c == '\''))
                .filter(|t| !t.is_empty())
                .collect();
            let mut found = false;
            for (i, token) in tokens.iter().enumerate() {
                if let Some(flag) = token.strip_prefix("--") {
                    found = true;
                    let (key, value) = match flag.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => match tokens.get(i + 1) {
                            Some(next) if !next.starts_with("--") => {
                                (flag.to_string(), next.to_string())
                            }
                            _ => (flag.to_string(), "true".to_string()),
                        },
                    };
                    out.push(Setting {
                        key: normalise_key(&key),
                        value: clean_value(&value),
                        line: index + 1,
                    });
                }
            }
            if found {
                continue;
            }
        }
        let split = trimmed.find(['=', ':']);
        if let Some(at) = split {
            let (key, value) = trimmed.split_at(at);
            let (key, value) = (key.trim(), &value[1..]);
            if key.is_empty() || key.contains(' ') && !key.starts_with('"') {
                continue;
            }
            out.push(Setting {
                key: normalise_key(key),
                value: clean_value(value),
                line: index + 1,
            });
        }
    }
    out
}

/// The text without comment lines: a setting described in a comment is not a setting.
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn kind(file: &ConfigFile, found: &[Setting]) -> Vec<ConfigKind> {
    let text = &code(&file.text);
    let mut kinds = Vec::new();
    let has = |key: &str| found.iter().any(|s| s.key == key);
    if has("oidc_issuer_url")
        || has("cookie_secret")
        || has("upstreams")
        || text.contains("OAUTH2_PROXY_")
        || text.contains("oauth2-proxy --")
        || has("cookie_secure")
    {
        kinds.push(ConfigKind::OAuth2Proxy);
    }
    if text.contains("envoyExtAuthzHttp")
        || text.contains("envoy.filters.http.ext_authz")
        || text.contains("RequestAuthentication")
        || text.contains("PeerAuthentication")
        || text.contains("envoy.filters.http.jwt_authn")
        || text.contains("DownstreamTlsContext")
        || text.contains("numTrustedProxies")
        || text.contains("xff_num_trusted_hops")
        || text.contains("minProtocolVersion")
        || text.contains("tls_minimum_protocol_version")
    {
        kinds.push(ConfigKind::Mesh);
    }
    if text.contains("\"realm\"") && text.contains("\"clients\"") {
        kinds.push(ConfigKind::KeycloakRealm);
    }
    kinds
}

fn truthy(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on"
    )
}

fn list(value: &str) -> Vec<String> {
    value
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(clean_value)
        .filter(|v| !v.is_empty())
        .collect()
}

/// One rule's verdict on one file.
fn check(
    file: &ConfigFile,
    rule: &str,
    severity: Severity,
    expected: &str,
    finding: Option<(usize, String)>,
    fix: &str,
) -> CheckResult {
    match finding {
        None => CheckResult::new(
            format!("{}: {rule}", file.name),
            true,
            expected,
            "no insecure setting found",
        ),
        Some((line, what)) => CheckResult::new(
            format!("{}: {rule}", file.name),
            false,
            expected,
            if line == 0 {
                format!("{what}; fix: {fix}")
            } else {
                format!("line {line}: {what}; fix: {fix}")
            },
        ),
    }
    .with_severity(severity)
}

fn quoted(setting: &Setting) -> String {
    if SECRET_KEYS.iter().any(|k| setting.key.contains(k)) {
        format!("{} is set", setting.key)
    } else {
        format!("{} = {}", setting.key, setting.value)
    }
}

/// Audits every file; one check per rule that applies to each.
/// [`audit`], refusing input none of which it recognises: zero checks is no verdict.
pub fn audit_recognised(files: &[ConfigFile]) -> Result<Vec<CheckResult>, String> {
    let checks = audit(files);
    if checks.is_empty() {
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        return Err(format!(
            "none of the files ({}) is a configuration meshauth recognises (oauth2-proxy \
             config, flags or Helm values; Istio or Envoy YAML; a Keycloak realm export), so \
             nothing was audited\nhow to fix: name the deployment's own configuration files",
            names.join(", ")
        ));
    }
    Ok(checks)
}

pub fn audit(files: &[ConfigFile]) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    for file in files {
        let found = settings(&file.text);
        for kind in kind(file, &found) {
            match kind {
                ConfigKind::OAuth2Proxy => checks.extend(oauth2_proxy(file, &found)),
                ConfigKind::Mesh => checks.extend(mesh(file, &found)),
                ConfigKind::KeycloakRealm => checks.extend(keycloak_realm(file)),
            }
        }
    }
    checks
}

fn first<'a>(found: &'a [Setting], keys: &[&str]) -> impl Iterator<Item = &'a Setting> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    found.iter().filter(move |s| keys.contains(&s.key))
}

fn oauth2_proxy(file: &ConfigFile, found: &[Setting]) -> Vec<CheckResult> {
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

fn mesh(file: &ConfigFile, found: &[Setting]) -> Vec<CheckResult> {
    let text = &code(&file.text);
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or(0)
    };
    let mut checks = Vec::new();
    let fail_open = first(found, &["failopen", "failure_mode_allow"]).find(|s| truthy(&s.value));
    checks.push(check(
        file,
        "ext_authz fails open",
        Severity::Critical,
        "failOpen / failure_mode_allow false",
        fail_open.map(|s| (s.line, quoted(s))),
        "failOpen: false on the envoyExtAuthzHttp provider",
    ));
    if text.contains("envoy.access_loggers") || text.contains("accessLogFile") {
        let without_query = text.contains("REQ_WITHOUT_QUERY");
        checks.push(check(file, "query strings in access logs", Severity::Medium,
            "access log lines without query strings (%REQ_WITHOUT_QUERY(...)%)",
            (!without_query).then(|| (line_of(if text.contains("accessLogFile") { "accessLogFile" } else { "access_log" }), "the default format logs each path with its query string: authorization codes, state and the logout's id_token_hint end up in the logs".to_string())),
            "meshConfig.accessLogFormat (or the access log's format) with %REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%"));
    }
    let ext_authz =
        text.contains("envoyExtAuthzHttp") || text.contains("envoy.filters.http.ext_authz");
    if ext_authz {
        let has_prefix = first(found, &["pathprefix", "path_prefix"]).any(|s| !s.value.is_empty());
        checks.push(check(file, "ext_authz pathPrefix", Severity::High,
            "a pathPrefix, so oauth2-proxy's own /robots.txt, /ping, /ready never answer for an app path",
            (!has_prefix).then(|| (line_of(if text.contains("envoyExtAuthzHttp") { "envoyExtAuthzHttp" } else { "ext_authz" }), "no pathPrefix: oauth2-proxy is asked about the app's own path".to_string())),
            "pathPrefix: /ext-authz with includeAdditionalHeadersInCheck x-auth-request-redirect: \"%REQ(:PATH)%\""));
        let set_cookie_back = text.to_ascii_lowercase().contains("set-cookie");
        checks.push(check(file, "set-cookie passed back", Severity::Medium,
            "set-cookie among the headers the gateway passes back (headersToDownstreamOnDeny / allowed_client_headers)",
            (!set_cookie_back).then(|| (line_of("ext"), "set-cookie is not passed back: the CSRF and session cookies never reach the browser".to_string())),
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
                            line_of("envoyExtAuthzHttp"),
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
    if text.contains("jwtRules") || text.contains("envoy.filters.http.jwt_authn") {
        let audiences = first(found, &["audiences"]).any(|s| !list(&s.value).is_empty())
            || text.contains("audiences:\n");
        checks.push(check(file, "JWT audiences", Severity::Medium,
            "jwtRules[].audiences naming the app's client",
            (!audiences).then(|| (line_of("jwt"), "no audiences: every valid token of the realm is accepted, whichever client or service account it was issued to".to_string())),
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
    checks
}

/// The items of every YAML list under one of `keys`, block (`- item`, `- exact: item`) or
/// flow (`[a, b]`) style: (line, item).
fn yaml_list(text: &str, keys: &[&str]) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let names_a_key = keys.iter().any(|key| {
            trimmed
                .trim_start_matches("- ")
                .trim_matches('"')
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start_matches('"').trim_start().starts_with(':'))
        });
        if !names_a_key {
            continue;
        }
        let inline = trimmed.split_once(':').map(|(_, v)| v.trim()).unwrap_or("");
        if inline.starts_with('[') {
            items.extend(list(inline).into_iter().map(|item| (index + 1, item)));
            continue;
        }
        let indent = line.len() - trimmed.len();
        for (offset, next) in lines.iter().enumerate().skip(index + 1) {
            let next_trimmed = next.trim_start();
            if next_trimmed.is_empty() {
                continue;
            }
            let next_indent = next.len() - next_trimmed.len();
            if next_indent < indent || (next_indent == indent && !next_trimmed.starts_with("- ")) {
                break;
            }
            let item = next_trimmed.trim_start_matches("- ").trim();
            // Envoy's string matchers: `- exact: name`, `- prefix: x-auth-request-`.
            let item = ["exact:", "prefix:", "safe_regex:", "regex:"]
                .iter()
                .find_map(|m| item.strip_prefix(m))
                .unwrap_or(item);
            if !item.is_empty() && !item.ends_with(':') {
                items.push((offset + 1, clean_value(item)));
            }
        }
    }
    items
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

/// Every trusted-proxy count written in `text`: (line, key, count).
fn trusted_proxy_counts(text: &str) -> Vec<(usize, &'static str, u32)> {
    let mut counts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for key in ["numTrustedProxies", "xff_num_trusted_hops"] {
            for (at, _) in line.match_indices(key) {
                let value = line[at + key.len()..].trim_start_matches(['"', '\'', ':', '=', ' ']);
                let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(count) = digits.parse() {
                    counts.push((index + 1, key, count));
                }
            }
        }
    }
    counts
}

fn keycloak_realm(file: &ConfigFile) -> Vec<CheckResult> {
    let Ok(realm) = serde_json::from_str::<serde_json::Value>(&file.text) else {
        return vec![CheckResult::new(
            format!("{}: realm export", file.name),
            false,
            "a JSON realm export",
            "not valid JSON",
        )];
    };
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
    for client in realm
        .get("clients")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
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
    for client in realm
        .get("clients")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
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
            continue;
        }
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
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> ConfigFile {
        ConfigFile {
            name: name.into(),
            text: text.into(),
        }
    }

    fn findings(files: &[ConfigFile]) -> Vec<String> {
        audit(files)
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn every_spelling_of_a_setting_is_one_setting() {
        for text in [
            "cookie_secure = false\noidc_issuer_url = \"x\"",
            "args:\n  - --cookie-secure=false\n  - --oidc-issuer-url=x",
            "command: [\"oauth2-proxy\", \"--cookie-secure\", \"false\", \"--upstream=static://200\"]",
            "env:\n  - name: OAUTH2_PROXY_COOKIE_SECURE\n    value: \"false\"\n  - name: OAUTH2_PROXY_OIDC_ISSUER_URL\n    value: x",
            "extraArgs:\n  cookie-secure: false\n  oidc-issuer-url: x",
        ] {
            assert_eq!(
                findings(&[file("proxy", text)]),
                [
                    "proxy: ID token nonce",
                    "proxy: session cookie Secure",
                    "proxy: session re-checked at the IdP"
                ],
                "{text}"
            );
        }
    }

    #[test]
    fn the_reference_oauth2_proxy_config_has_no_finding_and_secrets_are_never_quoted() {
        let reference = "oidc_issuer_url = \"http://idp/realms/r\"\nclient_secret = \"s3cr3t\"\nemail_domains = [ \"*\" ]\nallowed_roles = [ \"sso-user\" ]\ncookie_secure = true\ncookie_httponly = true\ncookie_refresh = \"1m0s\"\ninsecure_oidc_skip_nonce = false\n";
        let checks = audit(&[file("oauth2-proxy.cfg", reference)]);
        assert!(checks.iter().all(|c| c.passed), "{checks:?}");
        let flag = "args:\n  - --insecure-oidc-skip-nonce=false\n";
        assert!(!findings(&[file("p", flag)]).contains(&"p: ID token nonce".to_string()));
        assert!(checks.len() >= 8);
        let weak = "oidc_issuer_url = \"x\"\nemail_domains = [ \"*\" ]\ntrusted_ips = [ \"10.0.0.0/8\" ]\nwhitelist_domains = [ \".example.com\" ]\nskip_auth_routes = [ \"GET=^/public\" ]\nssl_insecure_skip_verify = true\ncookie_samesite = \"strict\"\n";
        let found = findings(&[file("p", weak)]);
        assert_eq!(
            found,
            [
                "p: ID token nonce",
                "p: TLS verification of the IdP and upstreams",
                "p: trusted IPs bypass authentication",
                "p: skip-auth routes",
                "p: wildcard return-URL domains",
                "p: SameSite=Strict breaks the callback",
                "p: admission",
                "p: session re-checked at the IdP",
            ]
        );
        let quoted = audit(&[file(
            "p",
            "oidc_issuer_url = x\nclient_secret = s3cr3t\ncookie_secure = false\n",
        )]);
        assert!(!format!("{quoted:?}").contains("s3cr3t"));
    }

    #[test]
    fn multi_line_arrays_comments_and_defaults_are_read_as_written() {
        let multi = "oidc_issuer_url = \"x\"\nskip_auth_routes = [\n  \"GET=^/public\",  # the landing page\n  \"^/metrics\"\n]\ncookie_secure = false  # was --cookie-secure=true\n";
        assert_eq!(
            findings(&[file("p", multi)]),
            [
                "p: ID token nonce",
                "p: skip-auth routes",
                "p: session cookie Secure",
                "p: session re-checked at the IdP"
            ]
        );
        for (refresh, finding) in [
            (
                "cookie_refresh = \"0s\"",
                Some("line 2: cookie_refresh = 0s: the session"),
            ),
            (
                "--cookie-refresh=0h0m0s",
                Some("line 2: cookie_refresh = 0h0m0s"),
            ),
            ("OAUTH2_PROXY_COOKIE_REFRESH: 90s", None),
        ] {
            let text = format!("oidc_issuer_url = x\n{refresh}\n");
            let check = audit(&[file("p", &text)])
                .into_iter()
                .find(|c| c.name == "p: session re-checked at the IdP")
                .unwrap();
            match finding {
                Some(want) => assert!(!check.passed && check.actual.starts_with(want), "{check}"),
                None => assert!(check.passed, "{check}"),
            }
        }
        let implicit_only = r#"{"realm":"r","revokeRefreshToken":true,"clients":[{"clientId":"spa","standardFlowEnabled":false,"implicitFlowEnabled":true,"redirectUris":["*"]}]}"#;
        assert_eq!(
            findings(&[file("realm.json", implicit_only)]),
            [
                "realm.json: client spa redirect URIs",
                "realm.json: client spa implicit flow"
            ]
        );
        let defaults = r#"{"realm":"r","clients":[{"clientId":"app","redirectUris":["https://app/oauth2/callback"]}]}"#;
        assert_eq!(
            findings(&[file("realm.json", defaults)]),
            [
                "realm.json: refresh tokens reusable",
                "realm.json: client app PKCE"
            ]
        );
        let unset = "meshConfig:\n  extensionProviders:\n  - name: p\n    envoyExtAuthzHttp:\n      service: s\n      pathPrefix: /x\n      headersToDownstreamOnDeny: [set-cookie]\n";
        assert_eq!(
            findings(&[file("mesh.yaml", unset)]),
            ["mesh.yaml: ext_authz timeout"]
        );
        let minutes = unset.replace(
            "      service: s\n",
            "      service: s\n      timeout: 10m\n",
        );
        assert_eq!(
            findings(&[file("mesh.yaml", &minutes)]),
            ["mesh.yaml: ext_authz timeout"]
        );
    }

    #[test]
    fn istio_provider_defaults_are_findings() {
        let seed = "meshConfig:\n  accessLogFile: /dev/stdout\n  extensionProviders:\n  - name: oauth2-proxy\n    envoyExtAuthzHttp:\n      service: oauth2-proxy.svc\n      port: 4180\n      failOpen: true\n      timeout: 600s\n      headersToDownstreamOnDeny:\n      - content-type\n---\nkind: RequestAuthentication\nspec:\n  jwtRules:\n  - issuer: http://idp/realms/r\n    jwksUri: http://idp/realms/r/protocol/openid-connect/certs\n---\nkind: PeerAuthentication\nspec:\n  mtls:\n    mode: PERMISSIVE\n";
        assert_eq!(
            findings(&[file("istio.yaml", seed)]),
            [
                "istio.yaml: ext_authz fails open",
                "istio.yaml: query strings in access logs",
                "istio.yaml: ext_authz pathPrefix",
                "istio.yaml: set-cookie passed back",
                "istio.yaml: ext_authz timeout",
                "istio.yaml: JWT audiences",
                "istio.yaml: JWKS over TLS",
                "istio.yaml: mTLS mode",
            ]
        );
    }

    #[test]
    fn trusted_proxy_counts_are_findings_in_every_spelling() {
        let mesh =
            "meshConfig:\n  defaultConfig:\n    gatewayTopology:\n      numTrustedProxies: 2\n";
        assert_eq!(
            findings(&[file("mesh.yaml", mesh)]),
            ["mesh.yaml: trusted proxies in front of the gateway"]
        );
        let annotation = "metadata:\n  annotations:\n    proxy.istio.io/config: '{\"gatewayTopology\": {\"numTrustedProxies\": 1}}'\n";
        assert_eq!(
            findings(&[file("gateway.yaml", annotation)]),
            ["gateway.yaml: trusted proxies in front of the gateway"]
        );
        let envoy = "typed_config:\n  \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n  xff_num_trusted_hops: 1\n";
        assert_eq!(
            findings(&[file("envoy.yaml", envoy)]),
            ["envoy.yaml: trusted proxies in front of the gateway"]
        );
        let direct =
            "meshConfig:\n  defaultConfig:\n    gatewayTopology:\n      numTrustedProxies: 0\n";
        assert!(findings(&[file("mesh.yaml", direct)]).is_empty());
        let realm = r#"{"realm":"r","accessTokenLifespan":36000,"clients":[]}"#;
        let checks = audit(&[file("realm.json", realm)]);
        let lifespan = checks
            .iter()
            .find(|c| c.name == "realm.json: access token lifespan")
            .unwrap();
        assert!(
            !lifespan.passed
                && lifespan
                    .actual
                    .contains("realm's access token lifespan 36000s"),
            "{lifespan}"
        );
    }

    #[test]
    fn identity_back_to_the_browser_legacy_tls_and_frameable_login_are_findings() {
        let provider = "meshConfig:\n  extensionProviders:\n  - name: p\n    envoyExtAuthzHttp:\n      service: s\n      pathPrefix: /x\n      failOpen: false\n      timeout: 5s\n      headersToDownstreamOnDeny: [set-cookie]\n      headersToDownstreamOnAllow:\n      - set-cookie\n      - X-Auth-Request-Access-Token\n";
        assert_eq!(
            findings(&[file("mesh.yaml", provider)]),
            ["mesh.yaml: identity sent back to the browser"]
        );
        let envoy = "name: envoy.filters.http.ext_authz\ntyped_config:\n  failure_mode_allow: false\n  path_prefix: /x\n  authorization_response:\n    allowed_client_headers_on_success:\n      patterns:\n      - exact: set-cookie\n      - prefix: x-auth-request-\n";
        assert!(
            findings(&[file("envoy.yaml", envoy)])
                .contains(&"envoy.yaml: identity sent back to the browser".to_string()),
            "{:?}",
            findings(&[file("envoy.yaml", envoy)])
        );
        let only_cookies = provider.replace("      - X-Auth-Request-Access-Token\n", "");
        assert!(findings(&[file("mesh.yaml", &only_cookies)]).is_empty());

        let gateway = "kind: Gateway\nspec:\n  servers:\n  - port: {number: 443}\n    tls:\n      mode: SIMPLE\n      minProtocolVersion: TLSV1_0\n";
        assert_eq!(
            findings(&[file("gateway.yaml", gateway)]),
            ["gateway.yaml: legacy TLS at the gateway"]
        );
        let cbc = "kind: Gateway\nspec:\n  servers:\n  - tls:\n      minProtocolVersion: TLSV1_2\n      cipherSuites:\n      - ECDHE-RSA-AES128-GCM-SHA256\n      - ECDHE-RSA-AES128-SHA\n";
        let checks = audit(&[file("gateway.yaml", cbc)]);
        let tls = checks
            .iter()
            .find(|c| c.name == "gateway.yaml: legacy TLS at the gateway")
            .unwrap();
        assert!(
            !tls.passed && tls.actual.contains("ECDHE-RSA-AES128-SHA:"),
            "{tls}"
        );
        let modern = cbc.replace("      - ECDHE-RSA-AES128-SHA\n", "");
        assert!(findings(&[file("gateway.yaml", &modern)]).is_empty());

        let framed = r#"{"realm":"r","revokeRefreshToken":true,"browserSecurityHeaders":{"xFrameOptions":"","contentSecurityPolicy":"frame-src 'self'; object-src 'none';"},"clients":[]}"#;
        assert_eq!(
            findings(&[file("realm.json", framed)]),
            ["realm.json: login page frameable"]
        );
        let defaults = r#"{"realm":"r","revokeRefreshToken":true,"clients":[]}"#;
        assert!(findings(&[file("realm.json", defaults)]).is_empty());
    }

    #[test]
    fn realm_exports_are_read_as_json() {
        let internal = "kind: RequestAuthentication\nspec:\n  jwtRules:\n  - issuer: http://idp\n    audiences: [app]\n    jwksUri: http://keycloak.auth.svc.cluster.local/realms/r/protocol/openid-connect/certs\n";
        assert!(findings(&[file("ra.yaml", internal)]).is_empty());
        let commented =
            "# RequestAuthentication and envoy.filters.http.ext_authz, described\nkey: value\n";
        assert!(audit(&[file("notes.yaml", commented)]).is_empty());
        let refused = audit_recognised(&[file("notes.yaml", commented)]).unwrap_err();
        assert!(
            refused.contains("(notes.yaml)") && refused.contains("nothing was audited"),
            "{refused}"
        );
        let realm = r#"{"realm":"r","registrationAllowed":true,"sslRequired":"none","clients":[{"clientId":"app","standardFlowEnabled":true,"implicitFlowEnabled":true,"redirectUris":["https://app/*"],"attributes":{"access.token.lifespan":"86400"}}]}"#;
        assert_eq!(
            findings(&[file("realm.json", realm)]),
            [
                "realm.json: open self-registration",
                "realm.json: IdP over plain HTTP",
                "realm.json: refresh tokens reusable",
                "realm.json: access token lifespan",
                "realm.json: client app redirect URIs",
                "realm.json: client app implicit flow",
                "realm.json: client app PKCE",
            ]
        );
    }
}
