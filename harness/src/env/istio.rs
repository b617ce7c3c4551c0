//! The Istio side of the `local` environment: the deployment's Istio objects and mesh config
//! (rendered from the stack's settings, the same objects the `kind` environment applies), the
//! local stand-in for the cluster's registry, and each proxy's identity. Istio's own config
//! generator (`istio-xds/`, run as the `istio-xds` component) turns them into every listener,
//! route and cluster of the gateway and the sidecars.

use serde::Serialize;

use super::names::{CLIENT_ROLE, CUSTOM_ROLES_CLAIM, ECHO_PREFIX, ROLE};
use super::stack_config::StackConfig;
use crate::components::versions;
use crate::policy::{
    self, AppListener, AuthorizationRequirement, ExtAuthzPaths, IdentityProvider, SidecarPolicy,
};

/// The Istio objects of the deployment.
pub const POLICY_FIXTURE: &str = "istio/policy.yaml.j2";
/// The mesh config: the ext_authz provider and access-log format.
pub const MESH_FIXTURE: &str = "istio/mesh.yaml.j2";
/// What Kubernetes would tell istiod about Services and Pods, for processes on loopback.
pub const REGISTRY_FIXTURE: &str = "istio/local-registry.yaml.j2";
/// An Istio proxy's Envoy bootstrap: node identity, ADS and SDS.
pub const BOOTSTRAP_FIXTURE: &str = "envoy/istio-proxy.yaml.j2";
/// The mesh config's name for oauth2-proxy, which `AuthorizationPolicy` CUSTOM names.
pub const EXT_AUTHZ_PROVIDER: &str = "oauth2-proxy";

/// The header a load run's generator tags each hot-path request with (its path's name), so the
/// proxies' access logs tell the paths apart.
pub const LOAD_TAG_HEADER: &str = "x-meshauth-load";

/// The access log line of load runs (`StackConfig::hop_timing`): where each request's time went
/// at this proxy, in µs by Envoy's own clock (`status`, not `code`: run logs redact OAuth's `code=`) — all of it, until the first byte went upstream
/// (the filters: jwt_authn, ext_authz, routing), upstream, and ext_authz's round trip (filter
/// state the `ext-authz-timing` EnvoyFilter turns on). No path, query or credential.
pub const HOP_TIMING_LOG_FORMAT: &str = "meshauth-hop load=%REQ(X-MESHAUTH-LOAD)% status=%RESPONSE_CODE% total_us=%COMMON_DURATION(DS_RX_BEG:DS_TX_END:us)% to_upstream_us=%COMMON_DURATION(DS_RX_BEG:US_TX_BEG:us)% upstream_us=%COMMON_DURATION(US_TX_BEG:US_RX_END:us)% ext_authz_us=%FILTER_STATE(envoy.filters.http.ext_authz:FIELD:latency_us)%\n";

/// Headers that carry identity, or where the request came from and went to (host, path,
/// prefix), and must only come from oauth2-proxy's answer or the gateway itself: a client's
/// copy is removed before the check, so that neither oauth2-proxy nor the app reads it.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
    "x-auth-request-redirect",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "forwarded",
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "remote-user",
    "x-remote-user",
];

/// One Istio proxy of the local mesh: who it is (its node id, metadata and SPIFFE identity) and
/// the loopback addresses its listeners bind to. Each workload has addresses of its own, as a
/// pod has its IP: Istio associates a proxy with its workload entry by address.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyIdentity {
    pub workload: &'static str,
    pub namespace: &'static str,
    pub service_account: &'static str,
    /// The workload's address: inbound listeners, and what the registry lists for it.
    pub ip: &'static str,
    /// Where its outbound (egress) listeners bind; apart from `ip` since the service ports
    /// (httpbin's included) would collide with its inbound listener.
    pub egress_ip: &'static str,
    pub node_id: String,
    pub spiffe_id: String,
    pub metadata: serde_json::Value,
}

impl ProxyIdentity {
    fn new(
        node_type: &str,
        workload: &'static str,
        namespace: &'static str,
        service_account: &'static str,
        ip: &'static str,
        egress_ip: &'static str,
        labels: serde_json::Value,
    ) -> Self {
        let metadata = serde_json::json!({
            "ISTIO_VERSION": versions::ISTIO_PROXY_VERSION,
            "CLUSTER_ID": "Kubernetes",
            "MESH_ID": policy::TRUST_DOMAIN,
            "NAMESPACE": namespace,
            "SERVICE_ACCOUNT": service_account,
            "WORKLOAD_NAME": workload,
            "LABELS": labels,
            "INSTANCE_IPS": ip,
            // No iptables on loopback: listeners bind their ports (Istio's "NONE" mode).
            "INTERCEPTION_MODE": "NONE",
            // As a non-root pod: ports below 1024 are not listened on.
            "UNPRIVILEGED_POD": "true",
        });
        Self {
            workload,
            namespace,
            service_account,
            ip,
            egress_ip,
            node_id: format!(
                "{node_type}~{ip}~{workload}-0.{namespace}~{namespace}.svc.cluster.local"
            ),
            spiffe_id: policy::spiffe_id(namespace, service_account),
            metadata,
        }
    }

    /// The ingress gateway (`istio: ingressgateway` in `istio-system`).
    pub fn gateway() -> Self {
        Self::new(
            "router",
            "istio-ingressgateway",
            policy::GATEWAY_NAMESPACE,
            policy::GATEWAY_SERVICE_ACCOUNT,
            "127.0.0.10",
            "127.0.0.20",
            serde_json::json!({ "istio": "ingressgateway", "app": "istio-ingressgateway" }),
        )
    }

    /// sleep's sidecar: the in-mesh caller. It serves nothing; its outbound listeners bind its
    /// own address, where the harness sends sleep's requests.
    pub fn sleep() -> Self {
        Self::new(
            "sidecar",
            "sleep",
            policy::NAMESPACE,
            "sleep",
            "127.0.0.12",
            "127.0.0.12",
            serde_json::json!({ "app": "sleep", "security.istio.io/tlsMode": "istio" }),
        )
    }

    /// httpbin's sidecar.
    pub fn httpbin() -> Self {
        Self::new(
            "sidecar",
            "httpbin",
            policy::NAMESPACE,
            "httpbin",
            "127.0.0.11",
            "127.0.0.21",
            serde_json::json!({ "app": "httpbin", "security.istio.io/tlsMode": "istio" }),
        )
    }
}

/// Everything the deployment's Istio objects and mesh config are rendered from; the same for
/// the `local` and the `kind` environment.
#[derive(Debug, Serialize)]
pub struct IstioContext<'a> {
    pub namespace: &'static str,
    pub ext_authz_provider: &'static str,
    pub identity_headers: &'static [&'static str],
    pub tls_cert_pem: &'a str,
    pub tls_key_pem: &'a str,
    pub ext_authz: bool,
    pub ext_authz_path_prefix: bool,
    pub ext_authz_fail_open: bool,
    pub ext_authz_check_cookie: bool,
    pub ext_authz_identity_to_browser: bool,
    pub oauth2_route_strips_identity_headers: bool,
    pub ext_authz_timeout_seconds: u32,
    pub strip_identity_headers: bool,
    pub request_authentication: bool,
    pub jwt_audiences: bool,
    pub log_query_strings: bool,
    pub gateway_trusted_proxies: u32,
    pub baseline_route: bool,
    /// The per-hop timing access log line and ext_authz's timing (load runs).
    pub hop_timing: bool,
    pub hop_log_format: &'static str,
    pub idp_admin_published: bool,
    pub client_id: &'static str,
    /// The issuer the RequestAuthentications name.
    pub issuer_url: String,
    pub jwks_uri: String,
    pub keycloak_port: u16,
    pub oauth2_proxy_port: u16,
    pub httpbin_port: u16,
    pub gateway_http_target_port: u16,
    /// The gateway's plain-HTTP server for the app (seed 001), where there is one.
    pub gateway_app_http_target_port: Option<u16>,
    /// `rules: [{}]`: ext_authz on every request the gateway takes.
    pub ext_authz_every_path: bool,
    pub echo_port: u16,
    pub echo_prefix: &'static str,
    pub second_app_exempt: bool,
    /// The gateway routes `/auth/…` to Keycloak's root (Keycloak published under `/auth`).
    pub idp_under_auth: bool,
    pub idp_listener_routes_by_path: bool,
    /// Keycloak under `/auth` on the app's own host.
    pub idp_on_app_host: bool,
    /// …and the CUSTOM policy exempts that prefix.
    pub idp_path_exempt: bool,
    pub idp_path_prefix: &'static str,
    /// What follows the prefix in `notPaths`: `/*`, or `*` (a prefix match wider than the IdP).
    pub idp_path_exempt_pattern: &'static str,
    /// Admission at the gateway by the custom roles claim (seed 002).
    pub role_claim_policy: bool,
    pub role_claim: &'static str,
    pub required_roles: [&'static str; 2],
    /// The second OpenID Provider is the IdP in use (its registry entry, for its JWKS).
    pub oidc_idp: bool,
    pub oidc_idp_port: u16,
    #[serde(flatten)]
    pub sidecar_policy: SidecarPolicyContext<'a>,
}

/// The service ports the objects name: Keycloak's, oauth2-proxy's, httpbin's, and the port the
/// gateway listens on for plain HTTP (its Service's targetPort), which CUSTOM exempts.
#[derive(Debug, Clone, Copy)]
pub struct ServicePorts {
    pub keycloak: u16,
    pub oauth2_proxy: u16,
    pub httpbin: u16,
    /// The second app's service port.
    pub echo: u16,
    pub gateway_http_target: u16,
    /// Where the gateway listens for the app over plain HTTP (when the stack serves it so).
    pub gateway_app_http_target: u16,
    /// The second OpenID Provider's port (local only).
    pub oidc_idp: u16,
}

impl<'a> IstioContext<'a> {
    pub fn new(
        config: &'a StackConfig,
        gateway_tls: (&'a str, &'a str),
        issuer_url: &'a str,
        ports: ServicePorts,
    ) -> Self {
        let idp_on_app_host = config.idp.keycloak_issues()
            && config.idp_address == crate::policy::IdpAddress::AppHostUnderAuth;
        Self {
            namespace: policy::NAMESPACE,
            ext_authz_provider: EXT_AUTHZ_PROVIDER,
            identity_headers: IDENTITY_HEADERS,
            tls_cert_pem: gateway_tls.0,
            tls_key_pem: gateway_tls.1,
            ext_authz: config.ext_authz,
            ext_authz_path_prefix: config.ext_authz_path_prefix,
            ext_authz_fail_open: config.ext_authz_fail_open,
            ext_authz_check_cookie: config.ext_authz_check_cookie,
            ext_authz_identity_to_browser: config.ext_authz_identity_to_browser,
            oauth2_route_strips_identity_headers: config.oauth2_route_strips_identity_headers,
            ext_authz_timeout_seconds: config.ext_authz_timeout_seconds,
            strip_identity_headers: config.strip_identity_headers,
            request_authentication: config.request_authentication,
            jwt_audiences: config.jwt_audiences,
            log_query_strings: config.log_query_strings,
            gateway_trusted_proxies: config.gateway_trusted_proxies,
            baseline_route: config.baseline_route,
            hop_timing: config.hop_timing,
            idp_admin_published: config.idp_admin_published,
            hop_log_format: HOP_TIMING_LOG_FORMAT,
            client_id: config.sign_in_client_id(),
            issuer_url: if config.jwt_issuer_mismatch {
                with_auth_prefix_toggled(issuer_url)
            } else {
                issuer_url.to_string()
            },
            // Envoy fetches the key set through the mesh, from the IdP's Service.
            jwks_uri: match config.idp {
                IdentityProvider::Keycloak | IdentityProvider::KeycloakBrokering => format!(
                    "http://keycloak.{}.svc.cluster.local:{}/realms/{}/protocol/openid-connect/certs",
                    policy::NAMESPACE,
                    ports.keycloak,
                    config.realm.name()
                ),
                IdentityProvider::OidcProvider => format!(
                    "http://oidc-idp.{}.svc.cluster.local:{}/jwks",
                    policy::NAMESPACE,
                    ports.oidc_idp
                ),
            },
            keycloak_port: ports.keycloak,
            oauth2_proxy_port: ports.oauth2_proxy,
            httpbin_port: ports.httpbin,
            gateway_http_target_port: ports.gateway_http_target,
            gateway_app_http_target_port: (config.app_listener == AppListener::PlainHttp)
                .then_some(ports.gateway_app_http_target),
            ext_authz_every_path: config.ext_authz_paths == ExtAuthzPaths::EveryPath,
            echo_port: ports.echo,
            echo_prefix: ECHO_PREFIX,
            second_app_exempt: config.second_app_exempt,
            idp_under_auth: config.idp.keycloak_issues() && config.idp_address.under_auth_path(),
            idp_listener_routes_by_path: config.idp_listener_routes_by_path,
            idp_on_app_host,
            idp_path_exempt: idp_on_app_host && config.idp_path_exempt,
            idp_path_exempt_pattern: if config.idp_path_exempt_without_slash {
                "*"
            } else {
                "/*"
            },
            idp_path_prefix: crate::policy::IDP_PATH_PREFIX,
            role_claim_policy: config.gateway_role_claim_policy,
            role_claim: CUSTOM_ROLES_CLAIM,
            required_roles: [ROLE, CLIENT_ROLE],
            oidc_idp: config.idp == IdentityProvider::OidcProvider,
            oidc_idp_port: ports.oidc_idp,
            sidecar_policy: SidecarPolicyContext::new(&config.sidecar),
        }
    }

    /// The deployment's Istio objects (`policy.yaml`) and mesh config (`mesh.yaml`).
    pub fn render(&self) -> Result<(String, String), crate::fixtures::FixtureError> {
        Ok((
            crate::fixtures::render(POLICY_FIXTURE, self)?,
            crate::fixtures::render(MESH_FIXTURE, self)?,
        ))
    }
}

/// `…/auth/realms/r` ⇄ `…/realms/r`: the issuer as Keycloak published it before 17, or after.
fn with_auth_prefix_toggled(issuer: &str) -> String {
    if issuer.contains("/auth/realms/") {
        issuer.replacen("/auth/realms/", "/realms/", 1)
    } else {
        issuer.replacen("/realms/", "/auth/realms/", 1)
    }
}

/// The local registry's view: the objects' context plus where each local process is.
#[derive(Debug, Serialize)]
pub struct LocalRegistryContext<'a> {
    #[serde(flatten)]
    pub istio: &'a IstioContext<'a>,
    /// Where the httpbin process itself listens (its sidecar's local endpoint).
    pub httpbin_app_port: u16,
    pub gateway_https_target_port: u16,
    pub gateway: ProxyIdentity,
    pub httpbin: ProxyIdentity,
    pub sleep: ProxyIdentity,
}

/// The sidecar's policy objects as the templates name them.
#[derive(Debug, Serialize)]
pub struct SidecarPolicyContext<'a> {
    pub peer_authentication: &'static str,
    pub sidecar_request_authentication: bool,
    pub authorization: &'static str,
    pub peer_principal: &'a str,
}

impl<'a> SidecarPolicyContext<'a> {
    pub fn new(policy: &'a SidecarPolicy) -> Self {
        Self {
            peer_authentication: policy.peer_authentication.name(),
            sidecar_request_authentication: policy.request_authentication,
            authorization: match &policy.authorization {
                AuthorizationRequirement::None => "none",
                AuthorizationRequirement::RequestPrincipal => "request_principal",
                AuthorizationRequirement::PeerPrincipal(_) => "peer_principal",
            },
            peer_principal: match &policy.authorization {
                AuthorizationRequirement::PeerPrincipal(principal) => principal,
                _ => "",
            },
        }
    }
}

/// A proxy's bootstrap context.
#[derive(Debug, Serialize)]
pub struct BootstrapContext<'a> {
    pub proxy: &'a ProxyIdentity,
    pub admin_port: u16,
    pub xds_port: u16,
    pub sds_port: u16,
}

/// The proxies `meshauth istio dump` describes, as `istio-xds dump --proxies` reads them.
pub fn proxies_json(proxies: &[(&str, &ProxyIdentity)]) -> String {
    let list: Vec<serde_json::Value> = proxies
        .iter()
        .map(|(name, proxy)| {
            serde_json::json!({ "name": name, "id": proxy.node_id, "metadata": proxy.metadata })
        })
        .collect();
    serde_json::to_string_pretty(&list).expect("proxy descriptions serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::{AuthorizationRequirement, PeerAuthenticationMode};

    /// The Istio inputs for a configuration, with fixed ports and placeholder secrets.
    fn render(config: &StackConfig, fixture: &str) -> String {
        let context = IstioContext::new(
            config,
            ("<gateway certificate PEM>", "<gateway key PEM>"),
            "http://127.0.0.1:20080/realms/Test-oidc",
            ServicePorts {
                keycloak: 20180,
                oauth2_proxy: 20418,
                httpbin: 20800,
                echo: 20801,
                gateway_http_target: 20080,
                gateway_app_http_target: 20081,
                oidc_idp: 20300,
            },
        );
        let registry = LocalRegistryContext {
            istio: &context,
            httpbin_app_port: 20801,
            gateway_https_target_port: 20443,
            gateway: ProxyIdentity::gateway(),
            httpbin: ProxyIdentity::httpbin(),
            sleep: ProxyIdentity::sleep(),
        };
        crate::fixtures::render(fixture, &registry).unwrap()
    }

    fn objects(rendered: &str) -> Vec<serde_json::Value> {
        rendered
            .split("\n---\n")
            .filter_map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).ok())
            .filter(|doc| doc.get("kind").is_some())
            .collect()
    }

    fn find<'a>(
        objects: &'a [serde_json::Value],
        kind: &str,
        name: &str,
    ) -> Option<&'a serde_json::Value> {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    #[test]
    fn the_sidecar_profile_becomes_istio_objects() {
        let config = StackConfig {
            sidecar: SidecarPolicy {
                peer_authentication: PeerAuthenticationMode::Strict,
                request_authentication: true,
                authorization: AuthorizationRequirement::RequestPrincipal,
            },
            ..StackConfig::default()
        };
        let rendered = objects(&render(&config, POLICY_FIXTURE));
        let peer = find(&rendered, "PeerAuthentication", "default").unwrap();
        assert_eq!(peer["spec"]["mtls"]["mode"], "STRICT");
        assert!(find(&rendered, "RequestAuthentication", "httpbin-jwt").is_some());
        let allow = find(&rendered, "AuthorizationPolicy", "httpbin").unwrap();
        assert_eq!(
            allow["spec"]["rules"][0]["from"][0]["source"]["requestPrincipals"][0],
            "*"
        );

        let permissive = StackConfig {
            sidecar: SidecarPolicy {
                peer_authentication: PeerAuthenticationMode::Permissive,
                ..SidecarPolicy::default()
            },
            ..StackConfig::default()
        };
        let bare = objects(&render(&permissive, POLICY_FIXTURE));
        assert!(find(&bare, "RequestAuthentication", "httpbin-jwt").is_none());
        assert!(find(&bare, "AuthorizationPolicy", "httpbin").is_none());
        let peer = find(&bare, "PeerAuthentication", "default").unwrap();
        assert_eq!(peer["spec"]["mtls"]["mode"], "PERMISSIVE");
    }

    #[test]
    fn gateway_settings_become_istio_objects_and_mesh_config() {
        let reference = objects(&render(&StackConfig::default(), POLICY_FIXTURE));
        let custom = find(&reference, "AuthorizationPolicy", "oidc").unwrap();
        assert_eq!(custom["spec"]["action"], "CUSTOM");
        assert_eq!(
            custom["spec"]["rules"][0]["to"][0]["operation"]["notPorts"][0],
            "20080"
        );
        assert!(find(&reference, "EnvoyFilter", "strip-identity-headers").is_some());

        let open = StackConfig {
            ext_authz: false,
            strip_identity_headers: false,
            ext_authz_fail_open: true,
            log_query_strings: true,
            ..StackConfig::default()
        };
        let broken = objects(&render(&open, POLICY_FIXTURE));
        assert!(find(&broken, "AuthorizationPolicy", "oidc").is_none());
        assert!(find(&broken, "EnvoyFilter", "strip-identity-headers").is_none());
        let mesh: serde_json::Value = serde_saphyr::from_str(&render(&open, MESH_FIXTURE)).unwrap();
        assert_eq!(
            mesh["extensionProviders"][0]["envoyExtAuthzHttp"]["failOpen"],
            true
        );
        assert!(mesh.get("accessLogFormat").is_none());
    }

    #[test]
    fn istio_inputs_snapshot_reference() {
        let config = StackConfig::default();
        insta::assert_snapshot!(format!(
            "# policy.yaml\n{}\n# mesh.yaml\n{}\n# local-registry.yaml\n{}",
            render(&config, POLICY_FIXTURE),
            render(&config, MESH_FIXTURE),
            render(&config, REGISTRY_FIXTURE)
        ));
    }
}
