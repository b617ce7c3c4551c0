//! Everything the cluster is built from, rendered from the same [`StackConfig`] and fixtures as
//! the local environment. Pure: the same inputs give the same output.

use serde::Serialize;

use super::options::{Images, KindOptions};
use super::{NAMESPACE, OUTSIDE_NAMESPACE};
use crate::env::istio::{IstioContext, ServicePorts};
use crate::env::istio_overlay;
use crate::env::local::{
    OAUTH2_PROXY_FIXTURE, OAuth2ProxyContext, REALM_FIXTURE, RealmContext, RealmSecrets,
};
use crate::env::pki::RunPki;
use crate::env::stack_config::SessionStore;
use crate::env::{EnvError, StackConfig};
use crate::redact::Secret;

const CLUSTER_FIXTURE: &str = "kind/cluster.yaml.j2";
const ISTIO_FIXTURE: &str = "kind/istio-operator.yaml.j2";
const MANIFESTS_FIXTURE: &str = "kind/manifests.yaml.j2";

pub(super) const KEYCLOAK_PORT: u16 = 8080;
pub(super) const OAUTH2_PROXY_PORT: u16 = 4180;
pub(super) const HTTPBIN_PORT: u16 = 8000;
const REDIS_PORT: u16 = 6379;
/// The ports the ingress gateway's Envoy listens on behind Service ports 80 and 443.
const GATEWAY_HTTP_TARGET_PORT: u16 = 8080;
const GATEWAY_HTTPS_TARGET_PORT: u16 = 8443;
const GATEWAY_APP_HTTP_TARGET_PORT: u16 = 8081;
const HTTP_NODE_PORT: u16 = 30080;
const HTTPS_NODE_PORT: u16 = 30443;

/// The run's secrets; they reach the cluster only inside Secret objects.
#[derive(Debug, Clone)]
pub struct KindSecrets {
    pub realm: RealmSecrets,
    pub cookie_secret: Secret,
    pub admin_password: Secret,
    pub redis_password: Secret,
    /// The gateway's TLS certificate and key (PEM), from the run's CA.
    pub gateway_cert_pem: String,
    pub gateway_key_pem: Secret,
}

impl KindSecrets {
    /// Fresh secrets and certificates; returns the CA (PEM) the client must trust.
    pub fn generate() -> Result<(Self, String), EnvError> {
        let pki = RunPki::generate()?;
        Ok((
            Self {
                realm: RealmSecrets::generate()?,
                // oauth2-proxy needs exactly 16, 24 or 32 bytes.
                cookie_secret: Secret::generate_alphanumeric(32),
                admin_password: Secret::generate(18),
                redis_password: Secret::generate_alphanumeric(32),
                gateway_cert_pem: pki.server_cert_pem,
                gateway_key_pem: Secret::new(pki.server_key_pem),
            },
            pki.ca_cert_pem,
        ))
    }

    pub(super) fn all(&self) -> [&Secret; 9] {
        [
            &self.realm.client_secret,
            &self.realm.user_password,
            &self.realm.second_user_password,
            &self.realm.other_client_secret,
            &self.realm.test_signing_key.private_key_pem,
            &self.cookie_secret,
            &self.admin_password,
            &self.redis_password,
            &self.gateway_key_pem,
        ]
    }
}

/// Everything the cluster is built from.
#[derive(Debug, Clone)]
pub struct Manifests {
    /// The kind cluster configuration (`kind create cluster --config`).
    pub cluster: String,
    /// The Istio install configuration (`istioctl install -f`).
    pub istio_install: String,
    /// The Kubernetes and Istio objects, in apply order.
    pub objects: Vec<serde_json::Value>,
    /// The deployment's configuration as a user keeps it, file name → text: the Istio policy
    /// with the mesh config, oauth2-proxy's config, the realm export (the local environment
    /// audits the same three).
    pub config_files: Vec<(String, String)>,
}

impl Manifests {
    /// The objects as one multi-document YAML text (each document in JSON form, which is
    /// YAML), for `kubectl apply -f` by hand.
    pub fn objects_yaml(&self) -> String {
        self.objects
            .iter()
            .map(|o| format!("{o:#}\n"))
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// The deployments the environment waits for, as (namespace, name): Istio's gateway and
    /// every Deployment rendered (redis only with a redis session store).
    pub fn deployments(&self) -> Vec<(String, String)> {
        let mut deployments = vec![("istio-system".into(), "istio-ingressgateway".into())];
        deployments.extend(
            self.objects
                .iter()
                .filter(|o| o["kind"] == "Deployment")
                .filter_map(|o| {
                    let metadata = &o["metadata"];
                    Some((
                        metadata["namespace"].as_str()?.to_string(),
                        metadata["name"].as_str()?.to_string(),
                    ))
                }),
        );
        deployments
    }
}

#[derive(Serialize)]
struct KindContext<'a> {
    cluster_name: &'a str,
    /// `imagePullPolicy` of every container: `Never` with local images (a missing image is an
    /// error at once instead of a pull from a registry that cannot be reached).
    image_pull_policy: &'static str,
    /// Local images: the node image brings its CNI, Istio's images come from
    /// `istio_hub`/`istio_tag`, and the proxy is upstream Envoy.
    local_images: bool,
    node_brings_cni: bool,
    /// The CoreDNS the local node image brings (kubeadm's own default cannot be built against
    /// this Kubernetes' client-go).
    coredns_tag: &'static str,
    istio_hub: &'a str,
    istio_tag: &'a str,
    namespace: &'a str,
    /// The namespace without sidecar injection, where the caller outside the mesh runs.
    outside_namespace: &'a str,
    realm: &'a str,
    images: &'a Images,
    http_host_port: u16,
    https_host_port: u16,
    http_node_port: u16,
    https_node_port: u16,
    gateway_http_target_port: u16,
    gateway_https_target_port: u16,
    keycloak_port: u16,
    oauth2_proxy_port: u16,
    httpbin_port: u16,
    /// The session store's port, when oauth2-proxy keeps sessions in redis.
    redis_port: Option<u16>,
    redis_password: &'a str,
    idp_url: &'a str,
    keycloak_internal_url: &'a str,
    /// oauth2-proxy's sign-out also ends the Keycloak session: its server-side call goes to
    /// Keycloak's Service (the issuer's loopback URL is the pod's own loopback in a pod).
    backend_logout: bool,
    realm_json: &'a str,
    oauth2_proxy_cfg: &'a str,
    oauth2_proxy_client_secret: &'a str,
    cookie_secret: &'a str,
    admin_password: &'a str,
    /// The deployment's Istio objects and mesh config, rendered from the same templates the
    /// local environment's Istio generator reads (fixtures/istio/).
    istio_policy: &'a str,
    mesh_config: &'a str,
}

/// The gateway's public URLs as seen from this machine.
pub(super) struct PublicUrls {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub(super) idp: String,
    pub(super) app: String,
    pub(super) issuer: String,
    pub(super) redirect_uri: String,
    /// The realm's `frontendUrl` when Keycloak is published under `/auth`.
    pub(super) frontend_url: Option<String>,
}

impl PublicUrls {
    pub(super) fn new(options: &KindOptions, config: &StackConfig) -> Self {
        let listener = format!("http://127.0.0.1:{}", options.http_host_port);
        let app = format!("https://127.0.0.1:{}", options.https_host_port);
        let address = config.idp_address;
        let idp = address.public_base(&listener, &app);
        Self {
            issuer: format!("{idp}/realms/{}", config.realm.name()),
            redirect_uri: format!("{app}/oauth2/callback"),
            frontend_url: address.under_auth_path().then(|| idp.clone()),
            idp,
            app,
        }
    }
}

/// Renders the cluster config, the Istio install config and every object. Pure: the same
/// inputs give the same output.
pub fn render(
    config: &StackConfig,
    options: &KindOptions,
    secrets: &KindSecrets,
) -> Result<Manifests, EnvError> {
    let urls = PublicUrls::new(options, config);
    let realm_json = crate::fixtures::render(
        REALM_FIXTURE,
        &RealmContext::new(
            config.realm,
            config,
            &secrets.realm,
            urls.redirect_uri.clone(),
            None,
            urls.frontend_url.clone(),
        ),
    )?;
    let keycloak_internal_url =
        format!("http://keycloak.{NAMESPACE}.svc.cluster.local:{KEYCLOAK_PORT}");
    let oauth2_proxy_cfg = crate::fixtures::render(
        OAUTH2_PROXY_FIXTURE,
        &OAuth2ProxyContext::new(
            config,
            OAUTH2_PROXY_PORT,
            urls.issuer.clone(),
            urls.redirect_uri.clone(),
            &format!("redis.{NAMESPACE}.svc.cluster.local:{REDIS_PORT}"),
            &keycloak_internal_url,
        ),
    )?;
    let (istio_policy, mesh_config) = IstioContext::new(
        config,
        (&secrets.gateway_cert_pem, secrets.gateway_key_pem.expose()),
        &urls.issuer,
        ServicePorts {
            keycloak: KEYCLOAK_PORT,
            oauth2_proxy: OAUTH2_PROXY_PORT,
            httpbin: HTTPBIN_PORT,
            echo: HTTPBIN_PORT,
            gateway_http_target: GATEWAY_HTTP_TARGET_PORT,
            gateway_app_http_target: GATEWAY_APP_HTTP_TARGET_PORT,
            // The second OpenID Provider runs locally only (the kind environment cannot switch
            // a scenario's IdP).
            oidc_idp: 0,
        },
    )
    .render()?;
    let context = KindContext {
        cluster_name: &options.cluster_name,
        image_pull_policy: if options.local_images() {
            "Never"
        } else {
            "IfNotPresent"
        },
        local_images: options.local_images(),
        node_brings_cni: options.node_brings_cni(),
        coredns_tag: crate::components::versions::COREDNS,
        istio_hub: super::options::LOCAL_ISTIO_HUB,
        istio_tag: options.istio_tag.as_deref().unwrap_or(""),
        namespace: NAMESPACE,
        outside_namespace: OUTSIDE_NAMESPACE,
        realm: config.realm.name(),
        images: &options.images,
        http_host_port: options.http_host_port,
        https_host_port: options.https_host_port,
        http_node_port: HTTP_NODE_PORT,
        https_node_port: HTTPS_NODE_PORT,
        gateway_http_target_port: GATEWAY_HTTP_TARGET_PORT,
        gateway_https_target_port: GATEWAY_HTTPS_TARGET_PORT,
        keycloak_port: KEYCLOAK_PORT,
        oauth2_proxy_port: OAUTH2_PROXY_PORT,
        httpbin_port: HTTPBIN_PORT,
        redis_port: (config.session_store == SessionStore::Redis).then_some(REDIS_PORT),
        redis_password: secrets.redis_password.expose(),
        idp_url: &urls.idp,
        keycloak_internal_url: &keycloak_internal_url,
        backend_logout: config.backend_logout && config.idp.keycloak_issues(),
        realm_json: &realm_json,
        oauth2_proxy_cfg: &oauth2_proxy_cfg,
        oauth2_proxy_client_secret: if config.wrong_client_secret {
            "not-the-client-secret"
        } else {
            secrets.realm.client_secret.expose()
        },
        cookie_secret: secrets.cookie_secret.expose(),
        admin_password: secrets.admin_password.expose(),
        istio_policy: &istio_policy,
        mesh_config: &mesh_config,
    };
    let text = crate::fixtures::render(MANIFESTS_FIXTURE, &context)?;
    let objects: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| EnvError::Config {
            file: MANIFESTS_FIXTURE.into(),
            message: format!("the rendered manifests are not valid YAML: {e}"),
            hint: "fix the template (see docs/kind-environment.md)".into(),
        })?;
    let mut objects: Vec<serde_json::Value> =
        objects.into_iter().filter(|o| !o.is_null()).collect();
    let mut config_files = vec![
        (
            "istio-policy.yaml".into(),
            format!("{istio_policy}\n---\n{mesh_config}"),
        ),
        ("oauth2-proxy.cfg".into(), oauth2_proxy_cfg.clone()),
        ("realm.json".into(), realm_json.clone()),
    ];
    if let Some(dir) = &config.istio_overlay {
        let files = istio_overlay::read_files(dir)?;
        istio_overlay::lay_over(&mut objects, istio_overlay::objects_of(dir, &files)?);
        for (name, text) in files {
            config_files.push((format!("istio-overlay/{name}"), text));
        }
    }
    Ok(Manifests {
        cluster: crate::fixtures::render(CLUSTER_FIXTURE, &context)?,
        istio_install: crate::fixtures::render(ISTIO_FIXTURE, &context)?,
        objects,
        config_files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::env::istio::EXT_AUTHZ_PROVIDER;

    fn secrets() -> KindSecrets {
        KindSecrets {
            realm: RealmSecrets {
                client_secret: Secret::new("client-secret-value".to_string()),
                user_password: Secret::new("user-password-value".to_string()),
                second_user_password: Secret::new("second-user-password-value".to_string()),
                other_client_secret: Secret::new("other-client-secret-value".to_string()),
                upstream_client_secret: Secret::new("upstream-client-secret-value".to_string()),
                upstream_user_password: Secret::new("upstream-user-password-value".to_string()),
                upstream_second_user_password: Secret::new(
                    "upstream-second-user-password-value".to_string(),
                ),
                test_signing_key: crate::oidc::forge::SigningKey::generate().unwrap(),
            },
            cookie_secret: Secret::new("cookie-secret-value-32-bytes-abc".to_string()),
            admin_password: Secret::new("admin-password-value".to_string()),
            redis_password: Secret::new("redis-password-value".to_string()),
            gateway_cert_pem: "-----BEGIN CERTIFICATE-----\ncert\n-----END CERTIFICATE-----\n"
                .into(),
            gateway_key_pem: Secret::new(
                "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n".to_string(),
            ),
        }
    }

    fn kinds(manifests: &Manifests) -> Vec<String> {
        manifests
            .objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or("?"),
                    o["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    fn find<'a>(manifests: &'a Manifests, kind: &str, name: &str) -> &'a serde_json::Value {
        manifests
            .objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", kinds(manifests)))
    }

    /// Secrets and the certificate replaced, so snapshots are stable and never hold a secret.
    fn redacted(manifests: &Manifests) -> String {
        let s = secrets();
        let mut objects = manifests.objects.clone();
        // The realm is the `local` fixture, covered by its own tests; here only its place.
        for object in &mut objects {
            if let Some(realm) = object.pointer_mut("/stringData/realm.json") {
                *realm = serde_json::json!(format!("[{REALM_FIXTURE} rendered]"));
            }
        }
        let mut text = format!(
            "# cluster\n{}\n# istio\n{}\n# objects\n{}",
            manifests.cluster,
            manifests.istio_install,
            serde_json::to_string_pretty(&objects).unwrap()
        );
        for (secret, placeholder) in [
            (s.realm.client_secret.expose(), "[client-secret]"),
            (s.realm.user_password.expose(), "[user-password]"),
            (s.cookie_secret.expose(), "[cookie-secret]"),
            (s.admin_password.expose(), "[admin-password]"),
            (s.redis_password.expose(), "[redis-password]"),
        ] {
            text = text.replace(secret, placeholder);
        }
        text
    }

    /// `--istio DIR` on kind: the user's objects replace the rendered ones of the same kind,
    /// namespace and name (or are added), and are audited with the rest.
    #[test]
    fn the_users_istio_objects_are_laid_over_the_rendered_ones() {
        let reference =
            render(&StackConfig::default(), &KindOptions::default(), &secrets()).unwrap();
        let overlay = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/istio-faults/oauth2-exempt-without-slash");
        let config = StackConfig {
            istio_overlay: Some(overlay),
            ..StackConfig::default()
        };
        let manifests = render(&config, &KindOptions::default(), &secrets()).unwrap();
        assert_eq!(
            manifests.objects.len(),
            reference.objects.len(),
            "replaced, not added"
        );
        let policy = find(&manifests, "AuthorizationPolicy", "oidc");
        assert_eq!(
            policy["spec"]["rules"][0]["to"][0]["operation"]["notPaths"][0],
            "/oauth2*"
        );
        let route = find(&manifests, "VirtualService", "ingressgateway");
        assert_eq!(
            route["spec"]["http"][1]["match"][0]["uri"]["prefix"],
            "/oauth2/"
        );
        let audited: Vec<&str> = manifests
            .config_files
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert!(
            audited.contains(&"istio-overlay/authorizationpolicy.yaml")
                && audited.contains(&"istio-overlay/virtualservice.yaml"),
            "{audited:?}"
        );
    }

    #[test]
    fn default_profile_renders_every_object_of_seed_000() {
        let manifests =
            render(&StackConfig::default(), &KindOptions::default(), &secrets()).unwrap();
        insta::assert_snapshot!("kind_default", redacted(&manifests));
        let policy = find(&manifests, "AuthorizationPolicy", "oidc");
        assert_eq!(policy["spec"]["action"], "CUSTOM");
        assert_eq!(policy["spec"]["provider"]["name"], EXT_AUTHZ_PROVIDER);
        assert!(
            manifests
                .istio_install
                .contains(&format!("- name: {EXT_AUTHZ_PROVIDER}"))
        );
        find(&manifests, "RequestAuthentication", "keycloak-jwt");
        find(&manifests, "PeerAuthentication", "default");
        let namespace = find(&manifests, "Namespace", NAMESPACE);
        assert_eq!(
            namespace["metadata"]["labels"]["istio-injection"],
            "enabled"
        );
    }

    #[test]
    fn local_images_pull_nothing_and_tell_istio_its_proxy_is_upstream_envoy() {
        let options = KindOptions {
            image_source: super::super::ImageSource::Local,
            istio_tag: Some("1.31.0".into()),
            ..KindOptions::default()
        };
        assert_eq!(options.node_image(), Some(super::super::LOCAL_NODE_IMAGE));
        assert_eq!(
            options.istio_images(),
            [
                "localhost/istio/pilot:1.31.0",
                "localhost/istio/proxyv2:1.31.0"
            ]
        );
        let secrets = secrets();
        let manifests = render(&StackConfig::default(), &options, &secrets).unwrap();
        // The install files only: the objects differ from the default snapshot in
        // imagePullPolicy alone (checked below).
        insta::assert_snapshot!(
            "kind_local_images",
            format!(
                "# cluster\n{}\n# istio\n{}",
                manifests.cluster, manifests.istio_install
            )
        );
        let default = render(&StackConfig::default(), &KindOptions::default(), &secrets)
            .unwrap()
            .objects_yaml();
        assert_eq!(
            manifests.objects_yaml(),
            default.replace(
                "\"imagePullPolicy\": \"IfNotPresent\"",
                "\"imagePullPolicy\": \"Never\""
            )
        );
        let containers = manifests
            .objects
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .flat_map(|o| {
                o["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .unwrap()
            });
        for container in containers {
            assert_eq!(container["imagePullPolicy"], "Never", "{container}");
        }
    }

    #[test]
    fn the_realm_and_oauth2_proxy_config_are_the_local_fixtures() {
        let config = StackConfig {
            role_mapper: false,
            forward_authorization: false,
            secure_session_cookie: false,
            ..StackConfig::default()
        };
        let manifests = render(&config, &KindOptions::default(), &secrets()).unwrap();
        let realm = find(&manifests, "Secret", "keycloak-realm")["stringData"]["realm.json"]
            .as_str()
            .unwrap();
        let realm: serde_json::Value = serde_json::from_str(realm).unwrap();
        assert_eq!(realm["realm"], config.realm.name());
        assert!(!realm.to_string().contains("\"claim.name\":\"realm_roles\""));
        let sign_in_client = realm["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["clientId"] == config.realm.client_id())
            .unwrap();
        assert_eq!(
            sign_in_client["redirectUris"][0],
            "https://127.0.0.1:18443/oauth2/callback"
        );
        let cfg = find(&manifests, "ConfigMap", "oauth2-proxy")["data"]["oauth2-proxy.cfg"]
            .as_str()
            .unwrap();
        assert!(cfg.contains("set_authorization_header = false"), "{cfg}");
        assert!(cfg.contains("cookie_secure = false"), "{cfg}");
        assert!(!cfg.contains("client-secret-value"), "{cfg}");
    }

    #[test]
    fn switches_remove_their_objects() {
        let config = StackConfig {
            ext_authz: false,
            request_authentication: false,
            ..StackConfig::default()
        };
        let manifests = render(&config, &KindOptions::default(), &secrets()).unwrap();
        let kinds = kinds(&manifests);
        // The CUSTOM policy goes; the app's sidecar keeps its own (only the gateway admitted).
        assert!(
            !kinds.contains(&"AuthorizationPolicy/oidc".to_string()),
            "{kinds:?}"
        );
        assert!(kinds.contains(&"AuthorizationPolicy/httpbin".to_string()));
        assert!(
            !kinds
                .iter()
                .any(|k| k.starts_with("RequestAuthentication/")),
            "{kinds:?}"
        );
        assert!(kinds.contains(&"Gateway/ingressgateway".to_string()));
    }

    #[test]
    fn baseline_route_is_exempt_from_ext_authz_by_path() {
        let config = StackConfig {
            baseline_route: true,
            ..StackConfig::default()
        };
        let manifests = render(&config, &KindOptions::default(), &secrets()).unwrap();
        let policy = find(&manifests, "AuthorizationPolicy", "oidc");
        assert_eq!(
            policy["spec"]["rules"][0]["to"][0]["operation"]["notPaths"],
            serde_json::json!(["/oauth2/*", "/baseline/*"])
        );
        let routes = find(&manifests, "VirtualService", "ingressgateway")["spec"]["http"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let position = |name: &str| routes.iter().position(|r| r["name"] == name);
        assert!(
            position("baseline") < position("httpbin") && position("baseline").is_some(),
            "{routes:?}"
        );
    }

    #[test]
    fn secrets_appear_only_in_secret_objects() {
        let config = StackConfig::default();
        let manifests = render(&config, &KindOptions::default(), &secrets()).unwrap();
        let s = secrets();
        for object in &manifests.objects {
            if object["kind"] == "Secret" {
                continue;
            }
            let text = object.to_string();
            for secret in s.all() {
                assert!(
                    !text.contains(secret.expose()),
                    "{} {} holds a secret",
                    object["kind"],
                    object["metadata"]["name"]
                );
            }
        }
        for text in [&manifests.cluster, &manifests.istio_install] {
            for secret in s.all() {
                assert!(!text.contains(secret.expose()));
            }
        }
    }

    #[test]
    fn a_wrong_client_secret_reaches_only_oauth2_proxy() {
        let config = StackConfig {
            wrong_client_secret: true,
            ..StackConfig::default()
        };
        let manifests = render(&config, &KindOptions::default(), &secrets()).unwrap();
        let proxy = find(&manifests, "Secret", "oauth2-proxy");
        assert_eq!(
            proxy["stringData"]["client-secret"],
            "not-the-client-secret"
        );
        let realm = find(&manifests, "Secret", "keycloak-realm").to_string();
        assert!(realm.contains("client-secret-value"));
    }
}
