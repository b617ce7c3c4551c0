//! Configuration findings: insecure settings read from the deployment's own configuration
//! (oauth2-proxy config files, flags or environment variables; Istio mesh config and policy
//! objects; Envoy bootstraps; Keycloak realm exports). Settings are recognised in every
//! spelling they are written in — `cookie_secure = false`, `--cookie-secure=false`,
//! `OAUTH2_PROXY_COOKIE_SECURE: "false"`, `cookie-secure: false` in Helm values — so a rule
//! catches its whole class, not one file format.
//!
//! Each rule that applies to a file yields one check: passed when the setting is safe,
//! failed (a finding, with severity and fix) when not.

mod mesh;
mod oauth2_proxy;
mod realm;
mod settings;

use serde::Serialize;

use crate::check::{CheckResult, Severity};
use settings::{SECRET_KEYS, Setting, code, settings};

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
        || text.contains("AuthorizationPolicy")
    {
        kinds.push(ConfigKind::Mesh);
    }
    if text.contains("\"realm\"") && text.contains("\"clients\"") {
        kinds.push(ConfigKind::KeycloakRealm);
    }
    kinds
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

/// A file written in YAML's flow style (`mtls: { mode: PERMISSIVE }`) or as JSON, re-read as
/// block YAML: the rules read settings a line at a time, and a setting is the same setting in
/// every style. `None` for block YAML, flags, TOML, and Keycloak realm exports (whose rules
/// read their JSON).
fn block_form(file: &ConfigFile) -> Option<ConfigFile> {
    let text = code(&file.text);
    let start = text.trim_start();
    let flow = start.starts_with('{')
        || start.starts_with('[')
        || text.lines().any(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            line.starts_with('{') || line.contains(": {") || line.contains(": [{")
        });
    if !flow || (text.contains("\"realm\"") && text.contains("\"clients\"")) {
        return None;
    }
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&file.text).ok()?;
    let block: Vec<String> = documents
        .iter()
        .filter(|d| d.is_object() || d.is_array())
        .map(serde_saphyr::to_string)
        .collect::<Result<_, _>>()
        .ok()?;
    (!block.is_empty()).then(|| ConfigFile {
        name: file.name.clone(),
        text: block.join("---\n"),
    })
}

/// Every rule that applies to one file as written.
fn audit_text(file: &ConfigFile) -> Vec<CheckResult> {
    let found = settings(&file.text);
    let mut checks = Vec::new();
    for kind in kind(file, &found) {
        match kind {
            ConfigKind::OAuth2Proxy => checks.extend(oauth2_proxy::oauth2_proxy(file, &found)),
            ConfigKind::Mesh => checks.extend(mesh::mesh(file, &found)),
            ConfigKind::KeycloakRealm => checks.extend(realm::keycloak_realm(file)),
        }
    }
    checks
}

/// Audits every file; one check per rule that applies to each. A file with flow-style YAML or
/// JSON is also read in block style: a rule is a finding when either reading finds it.
pub fn audit(files: &[ConfigFile]) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    for file in files {
        let mut file_checks = audit_text(file);
        if let Some(block) = block_form(file) {
            for mut check in audit_text(&block) {
                if !check.passed {
                    check.actual = format!("read in block style, {}", check.actual);
                }
                match file_checks.iter_mut().find(|c| c.name == check.name) {
                    Some(as_written) if as_written.passed && !check.passed => *as_written = check,
                    Some(_) => {}
                    None => file_checks.push(check),
                }
            }
        }
        checks.extend(file_checks);
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

    /// The same insecure settings in flow style, as JSON and in oauth2-proxy's alpha config
    /// are found as in block YAML.
    #[test]
    fn flow_style_json_and_alpha_config_are_read_like_block_yaml() {
        let flow = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: foo }\nspec: { mtls: { mode: PERMISSIVE } }\n";
        let json = r#"{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"foo"},"spec":{"mtls":{"mode":"PERMISSIVE"}}}"#;
        let block = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: foo\nspec:\n  mtls:\n    mode: PERMISSIVE\n";
        let expected = findings(&[file("pa", block)]);
        assert!(!expected.is_empty(), "block YAML: {expected:?}");
        for text in [flow, json] {
            assert_eq!(findings(&[file("pa", text)]), expected, "{text}");
        }
        let provider = "extensionProviders:\n- name: oauth2-proxy\n  envoyExtAuthzHttp: { service: oauth2-proxy.foo.svc.cluster.local, port: 4180, failOpen: true }\n";
        assert!(
            findings(&[file("mesh", provider)])
                .iter()
                .any(|f| f.contains("fail")),
            "{:?}",
            audit(&[file("mesh", provider)])
        );
        let alpha = "providers:\n- id: keycloak\n  provider: oidc\n  clientID: oauth2proxy\n  oidcConfig:\n    issuerURL: https://idp/realms/r\n    insecureSkipNonce: false\n    insecureSkipIssuerVerification: true\n    insecureAllowUnverifiedEmail: true\n";
        let found = findings(&[file("alpha", alpha)]);
        assert!(
            !found.contains(&"alpha: ID token nonce".to_string()),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("issuer"))
                && found.iter().any(|f| f.contains("e-mail")),
            "{found:?}"
        );
    }

    #[test]
    fn a_custom_policy_leaving_requests_unchecked_is_a_finding() {
        let policy = |operation: &str| {
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: oidc\n  namespace: istio-system\nspec:\n  action: CUSTOM\n  provider: {{ name: oauth2-proxy }}\n  rules:\n  - to:\n    - operation:\n{operation}"
            )
        };
        let reference = policy("        notPorts: [\"8080\"]\n        notPaths: [\"/oauth2/*\"]\n");
        assert!(findings(&[file("ap.yaml", &reference)]).is_empty());
        let seed002 = policy("        notPaths: [\"/oauth2/*\", \"/auth/*\"]\n");
        assert!(findings(&[file("ap.yaml", &seed002)]).is_empty());
        for (operation, finding) in [
            (
                "        notPaths: [\"/oauth2*\"]\n",
                "ap.yaml: sign-in exemptions of CUSTOM policy oidc",
            ),
            (
                "        notPaths: [\"/oauth2/*\", \"/health*\"]\n",
                "ap.yaml: sign-in exemptions of CUSTOM policy oidc",
            ),
            (
                "        notPaths: [\"/oauth2/*\", \"/api/*\"]\n",
                "ap.yaml: requests left unchecked by CUSTOM policy oidc",
            ),
            (
                "        methods: [\"GET\"]\n",
                "ap.yaml: requests left unchecked by CUSTOM policy oidc",
            ),
            (
                "        paths: [\"/anything*\"]\n",
                "ap.yaml: requests left unchecked by CUSTOM policy oidc",
            ),
            (
                "        notHosts: [\"public.example.com\"]\n",
                "ap.yaml: requests left unchecked by CUSTOM policy oidc",
            ),
        ] {
            let found = findings(&[file("ap.yaml", &policy(operation))]);
            assert!(
                found.contains(&finding.to_string()),
                "{operation}: {found:?}"
            );
        }
        let no_rules = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: oidc\nspec:\n  action: CUSTOM\n  provider: { name: oauth2-proxy }\n";
        assert!(
            findings(&[file("ap.yaml", no_rules)])
                .contains(&"ap.yaml: requests left unchecked by CUSTOM policy oidc".to_string())
        );
        // Rules are OR-ed: a scoped rule beside one that matches every request is no gap.
        let or_ed = policy("        methods: [\"GET\"]\n  - {}\n");
        assert!(findings(&[file("ap.yaml", &or_ed)]).is_empty(), "{or_ed}");
        let beside_unscoped = policy(
            "        methods: [\"GET\"]\n  - to:\n    - operation:\n        notPaths: [\"/oauth2/*\"]\n",
        );
        assert!(findings(&[file("ap.yaml", &beside_unscoped)]).is_empty());
        // A DENY or ALLOW policy is not the sign-in's scope.
        let allow = reference.replace("CUSTOM", "ALLOW");
        assert!(findings(&[file("ap.yaml", &allow)]).is_empty());
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
