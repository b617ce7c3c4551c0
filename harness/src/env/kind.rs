//! The `kind` environment: a kind cluster running Istio and the same apps as the `local`
//! environment (Keycloak, oauth2-proxy, httpbin), configured from the same [`StackConfig`].
//! Rendering is pure ([`render`]); [`KindEnvironment::start`] creates the cluster, installs
//! Istio, applies the rendered objects with server-side apply and waits for them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use url::Url;

use super::istio::{IstioContext, ServicePorts};
use super::local::{
    OAUTH2_PROXY_FIXTURE, OAuth2ProxyContext, REALM_FIXTURE, RealmContext, RealmSecrets,
    StackEvent,
};
use super::names::{EMAIL, ROLE, ROLES_CLAIM, SESSION_REFRESH_SECONDS, USERNAME};
use super::stack_config::SessionStore;
use super::pki::RunPki;
use super::{Endpoints, EnvError, StackConfig, TestUser};
use crate::components::ComponentVersion;
use crate::events::EnvironmentInfo;
use crate::redact::{Redactor, Secret};

const CLUSTER_FIXTURE: &str = "kind/cluster.yaml.j2";
const ISTIO_FIXTURE: &str = "kind/istio-operator.yaml.j2";
const MANIFESTS_FIXTURE: &str = "kind/manifests.yaml.j2";

/// The namespace the apps run in (sidecar injection on): the mesh policies' namespace, as on
/// the local environment (seed 003's `foo`).
pub const NAMESPACE: &str = crate::policy::NAMESPACE;
/// The server-side-apply field manager.
pub const FIELD_MANAGER: &str = "meshauth";
const KEYCLOAK_PORT: u16 = 8080;
const OAUTH2_PROXY_PORT: u16 = 4180;
const HTTPBIN_PORT: u16 = 8000;
const REDIS_PORT: u16 = 6379;
/// The ports the ingress gateway's Envoy listens on behind Service ports 80 and 443.
const GATEWAY_HTTP_TARGET_PORT: u16 = 8080;
const GATEWAY_HTTPS_TARGET_PORT: u16 = 8443;
const GATEWAY_APP_HTTP_TARGET_PORT: u16 = 8081;
const HTTP_NODE_PORT: u16 = 30080;
const HTTPS_NODE_PORT: u16 = 30443;

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);
const ISSUER_TIMEOUT: Duration = Duration::from_secs(120);

/// Container images, each a complete reference as its project publishes it: Keycloak and
/// oauth2-proxy on quay.io (oauth2-proxy's tags keep the `v`), go-httpbin on Docker Hub (its
/// tags drop the `v`), redis as Docker's official image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Images {
    pub keycloak: String,
    pub oauth2_proxy: String,
    pub httpbin: String,
    pub redis: String,
}

/// The names `--image NAME=REF` accepts.
pub const IMAGE_NAMES: [&str; 4] = ["keycloak", "oauth2-proxy", "httpbin", "redis"];

impl Images {
    /// The pinned images.
    pub fn pinned() -> Self {
        let images = crate::components::container::ContainerImages::pinned();
        Self {
            keycloak: images.keycloak,
            oauth2_proxy: images.oauth2_proxy,
            httpbin: images.httpbin,
            redis: images.redis,
        }
    }

    /// Every image pulled through `mirror` (`host[/path]`) instead of its own registry: the
    /// registry host is replaced, the repository path and tag are kept.
    pub fn mirrored(self, mirror: &str) -> Self {
        let mirror = mirror.trim_end_matches('/');
        let through = |image: String| match image.split_once('/') {
            Some((host, rest)) if host.contains('.') || host.contains(':') => {
                format!("{mirror}/{rest}")
            }
            _ => format!("{mirror}/{image}"),
        };
        Self {
            keycloak: through(self.keycloak),
            oauth2_proxy: through(self.oauth2_proxy),
            httpbin: through(self.httpbin),
            redis: through(self.redis),
        }
    }

    /// One image replaced (`--image keycloak=quay.io/keycloak/keycloak:26.8.0`).
    pub fn with(mut self, assignment: &str) -> Result<Self, String> {
        let (name, reference) = assignment
            .split_once('=')
            .filter(|(_, r)| !r.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "--image {assignment:?}: expected NAME=REFERENCE, NAME one of {IMAGE_NAMES:?}"
                )
            })?;
        let slot = match name.trim() {
            "keycloak" => &mut self.keycloak,
            "oauth2-proxy" => &mut self.oauth2_proxy,
            "httpbin" => &mut self.httpbin,
            "redis" => &mut self.redis,
            other => {
                return Err(format!(
                    "--image {other:?}: no such image; NAME is one of {IMAGE_NAMES:?}"
                ));
            }
        };
        *slot = reference.trim().to_string();
        Ok(self)
    }
}

/// Where the cluster lives and how it is reached from this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindOptions {
    pub cluster_name: String,
    /// Loopback ports kind maps to the gateway's HTTP and HTTPS node ports.
    pub http_host_port: u16,
    pub https_host_port: u16,
    pub images: Images,
    /// Leave the cluster running when the environment is dropped.
    pub keep_cluster: bool,
}

impl Default for KindOptions {
    fn default() -> Self {
        Self {
            cluster_name: "meshauth".into(),
            http_host_port: 18080,
            https_host_port: 18443,
            images: Images::pinned(),
            keep_cluster: false,
        }
    }
}

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

    fn all(&self) -> [&Secret; 9] {
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
}

#[derive(Serialize)]
struct KindContext<'a> {
    cluster_name: &'a str,
    namespace: &'a str,
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
struct PublicUrls {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    idp: String,
    app: String,
    issuer: String,
    redirect_uri: String,
    /// The realm's `frontendUrl` when Keycloak is published under `/auth`.
    frontend_url: Option<String>,
}

impl PublicUrls {
    fn new(options: &KindOptions, config: &StackConfig) -> Self {
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
        namespace: NAMESPACE,
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
        redis_port: (config.session_store == SessionStore::Redis)
            .then_some(REDIS_PORT),
        redis_password: secrets.redis_password.expose(),
        idp_url: &urls.idp,
        keycloak_internal_url: &keycloak_internal_url,
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
    Ok(Manifests {
        cluster: crate::fixtures::render(CLUSTER_FIXTURE, &context)?,
        istio_install: crate::fixtures::render(ISTIO_FIXTURE, &context)?,
        objects: objects.into_iter().filter(|o| !o.is_null()).collect(),
    })
}

/// A tool the environment runs, and what to do when it is missing.
struct Tool {
    name: &'static str,
    purpose: &'static str,
    fix: &'static str,
}

const DOCKER: Tool = Tool {
    name: "docker",
    purpose: "run the kind cluster's node container",
    fix: "install Docker (or another engine kind supports) and start it; on machines without a container engine use `--env local`",
};
const KIND: Tool = Tool {
    name: "kind",
    purpose: "create the Kubernetes cluster",
    fix: "install kind (`go install sigs.k8s.io/kind@latest`) and make sure it is on PATH",
};
const ISTIOCTL: Tool = Tool {
    name: "istioctl",
    purpose: "install Istio into the cluster",
    fix: "install a release istioctl (the archive from Istio's releases page) and make sure it is on PATH; a `go install` build reports no version and installs test images",
};

fn find_on_path(tool: &Tool) -> Result<PathBuf, EnvError> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(tool.name))
        .find(|candidate| candidate.is_file())
        .ok_or(EnvError::MissingTool {
            tool: tool.name,
            purpose: tool.purpose,
            fix: tool.fix,
        })
}

/// The tools the environment needs, checked before anything is created. Docker and its engine
/// come first: without an engine nothing else matters.
#[derive(Debug, Clone)]
pub struct KindTools {
    pub docker: PathBuf,
    pub kind: PathBuf,
    pub istioctl: PathBuf,
}

impl KindTools {
    pub fn find() -> Result<Self, EnvError> {
        let docker = find_on_path(&DOCKER)?;
        run_tool(
            Command::new(&docker).args(["info", "--format", "{{.ServerVersion}}"]),
            "reach the Docker engine (the docker CLI is installed, but no engine answers)",
            "start the Docker daemon and make sure this user may use it (`docker info` must work); on machines without a container engine use `--env local`",
        )?;
        let istioctl = find_on_path(&ISTIOCTL)?;
        release_istioctl(&istioctl)?;
        Ok(Self {
            docker,
            kind: find_on_path(&KIND)?,
            istioctl,
        })
    }
}

/// An istioctl built from source (`go install …/istioctl`) reports no release version and its
/// default profile installs test images: only a release istioctl is used.
fn release_istioctl(istioctl: &Path) -> Result<String, EnvError> {
    let output = run_tool(
        Command::new(istioctl).args(["version", "--remote=false", "--short"]),
        "ask istioctl for its version",
        "install a release istioctl (the archive from Istio's releases)",
    )?;
    let version = output.trim().trim_start_matches("client version:").trim();
    if is_release_version(version) {
        Ok(version.to_string())
    } else {
        Err(EnvError::Cluster {
            what: format!("istioctl at {} is not a release build", istioctl.display()),
            detail: format!("it reports version {version:?}"),
            fix: "install a release istioctl (the archive from Istio's releases page, e.g. 1.31.x); a `go install` build installs Istio's test images".into(),
        })
    }
}

/// `1.31.1`, not `unknown`, a `-dev` build or a commit hash.
fn is_release_version(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Runs a tool to completion; a failure names the command, its output's tail and the fix.
fn run_tool(command: &mut Command, what: &str, fix: &str) -> Result<String, EnvError> {
    let shown = format!("{command:?}").replace('"', "");
    tracing::debug!(command = %shown, "running");
    let output = command.output().map_err(|e| EnvError::Cluster {
        what: format!("could not {what}: `{shown}`"),
        detail: e.to_string(),
        fix: fix.into(),
    })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let combined = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = combined.lines().collect();
    Err(EnvError::Cluster {
        what: format!("could not {what}: `{shown}` exited with {}", output.status),
        detail: lines[lines.len().saturating_sub(20)..].join("\n"),
        fix: fix.into(),
    })
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> EnvError {
    let what = what.into();
    move |e| EnvError::Cluster {
        what,
        detail: e.to_string(),
        fix: "check the cluster with `kubectl --kubeconfig RUN_DIR/kind/kubeconfig get pods -A`"
            .into(),
    }
}

/// A running kind environment. Dropping it deletes the cluster unless it is kept.
pub struct KindEnvironment {
    tools: KindTools,
    options: KindOptions,
    config: StackConfig,
    run_dir: PathBuf,
    endpoints: Endpoints,
    /// Set once everything is up; a cluster dropped before that has its logs exported first.
    ready: bool,
}

impl KindEnvironment {
    /// Checks the tools, then creates the cluster, installs Istio, applies the objects and
    /// waits until the gateway serves the realm's discovery document.
    pub async fn start(
        run_dir: &Path,
        config: StackConfig,
        options: KindOptions,
        redactor: &Redactor,
        progress: &(dyn Fn(StackEvent) + Sync),
    ) -> Result<Self, EnvError> {
        let tools = KindTools::find()?;
        for (port, purpose) in [
            (
                options.http_host_port,
                "kind: gateway HTTP; choose another with --kind-http-port",
            ),
            (
                options.https_host_port,
                "kind: gateway HTTPS; choose another with --kind-https-port",
            ),
        ] {
            super::ports::Ports::check_free(port, purpose)?;
        }
        let (secrets, ca_pem) = KindSecrets::generate()?;
        for secret in secrets.all() {
            redactor.register(secret);
        }
        let manifests = render(&config, &options, &secrets)?;
        let dir = run_dir.join("kind");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            crate::files::write_private(&path, text).map_err(|source| EnvError::Io {
                what: "write",
                path,
                source,
            })?;
            Ok::<_, EnvError>(dir.join(name))
        };
        let cluster_file = write("cluster.yaml", &manifests.cluster)?;
        let istio_file = write("istio-operator.yaml", &manifests.istio_install)?;
        write("objects.yaml", &manifests.objects_yaml())?;
        write("ca.pem", &ca_pem)?;
        let kubeconfig = dir.join("kubeconfig");

        let urls = PublicUrls::new(&options, &config);
        let mut endpoints = Endpoints {
            app: url(&format!("{}/", urls.app)),
            idp: url(&format!("{}/", urls.idp)),
            issuer: urls.issuer.clone(),
            client_id: config.sign_in_client_id().into(),
            client_secret: Secret::new(String::new()),
            user: TestUser {
                username: USERNAME.into(),
                password: Secret::new(String::new()),
                email: EMAIL.into(),
            },
            second_user: None,
            upstream_user: None,
            other_client: None,
            signing_key: None,
            role: ROLE.into(),
            roles_claim: ROLES_CLAIM.into(),
            session_cookie: crate::endpoints::DEFAULT_SESSION_COOKIE.into(),
            session_refresh: Some(std::time::Duration::from_secs(
                SESSION_REFRESH_SECONDS.into(),
            )),
            sign_in_hosts: Vec::new(),
            ca_pem: Some(ca_pem),
            // The harness cannot join the cluster's mesh from outside it: the mesh matrix
            // (sidecar, in-mesh caller) runs on the local environment only.
            mesh: None,
            cluster: None,
        };
        secrets.realm.fill(&mut endpoints);
        // From here on the cluster exists: dropping `environment` deletes it on any error.
        // Ctrl-C from here on (kind create included) deletes the cluster.
        if !options.keep_cluster {
            let kind = tools.kind.clone();
            let name = options.cluster_name.clone();
            let kubeconfig = kubeconfig.clone();
            crate::components::process::on_interrupt(&interrupt_key(&name), move || {
                let _ = Command::new(kind)
                    .args(["delete", "cluster", "--name", &name])
                    .arg("--kubeconfig")
                    .arg(kubeconfig)
                    .status();
            });
        }
        progress(StackEvent::Starting("kind cluster"));
        let started = Instant::now();
        run_tool(
            Command::new(&tools.kind)
                .args(["create", "cluster", "--name", &options.cluster_name])
                .arg("--config")
                .arg(&cluster_file)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["--wait", "180s"]),
            "create the kind cluster",
            "see kind's output above; `kind delete cluster --name NAME` removes a half-created cluster",
        )?;
        let mut environment = Self {
            tools,
            options,
            config,
            run_dir: run_dir.to_path_buf(),
            endpoints,
            ready: false,
        };
        progress(StackEvent::Ready {
            component: "kind cluster",
            after: started.elapsed(),
        });

        progress(StackEvent::Starting("istio"));
        let started = Instant::now();
        run_tool(
            Command::new(&environment.tools.istioctl)
                .args(["install", "-y", "-f"])
                .arg(&istio_file)
                .arg("--kubeconfig")
                .arg(&kubeconfig),
            "install Istio",
            "check istioctl's output; its version must support the IstioOperator fields used",
        )?;
        progress(StackEvent::Ready {
            component: "istio",
            after: started.elapsed(),
        });

        let client = client(&kubeconfig).await?;
        progress(StackEvent::Starting("apps"));
        apply_all(&client, &manifests.objects).await?;
        for (namespace, name) in manifests.deployments() {
            let started = Instant::now();
            wait_rollout(&client, &kubeconfig, &namespace, &name).await?;
            progress(StackEvent::Ready {
                component: deployment_label(&name),
                after: started.elapsed(),
            });
        }
        environment.wait_issuer().await?;
        environment.ready = true;
        Ok(environment)
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn info(&self) -> EnvironmentInfo {
        EnvironmentInfo {
            kind: "kind".into(),
            app_url: self.endpoints.app.to_string(),
            idp_url: self.endpoints.idp.to_string(),
            issuer: self.endpoints.issuer.clone(),
            profile: self.config.profile(),
            components: vec![
                image_version("Keycloak", &self.options.images.keycloak),
                image_version("oauth2-proxy", &self.options.images.oauth2_proxy),
                image_version("go-httpbin", &self.options.images.httpbin),
                image_version("redis", &self.options.images.redis),
            ],
            run_dir: Some(self.run_dir.display().to_string()),
            left_out: Vec::new(),
            limits: vec![
                "the harness cannot join the cluster's mesh from outside it: the mesh matrix and \
                 the sidecar checks run on --env local only"
                    .into(),
            ],
        }
    }

    /// The issuer's discovery document through the gateway proves the whole HTTP path:
    /// kind's port mapping, the gateway, the VirtualService and Keycloak's realm import.
    async fn wait_issuer(&self) -> Result<(), EnvError> {
        let probe = format!("{}/.well-known/openid-configuration", self.endpoints.issuer);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .no_proxy()
            .build()
            .map_err(|e| EnvError::Cluster {
                what: "build the readiness-probe client".into(),
                detail: e.to_string(),
                fix: "report this as a bug".into(),
            })?;
        let deadline = Instant::now() + ISSUER_TIMEOUT;
        loop {
            if let Ok(response) = client.get(&probe).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EnvError::Cluster {
                    what: format!("the gateway did not serve {probe}"),
                    detail: format!("no 2xx answer within {}s", ISSUER_TIMEOUT.as_secs()),
                    fix: "check `kubectl -n istio-system logs deploy/istio-ingressgateway` and the kind port mappings in RUN_DIR/kind/cluster.yaml".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn interrupt_key(cluster: &str) -> String {
    format!("deleting kind cluster {cluster}")
}

impl Drop for KindEnvironment {
    fn drop(&mut self) {
        crate::components::process::forget_on_interrupt(&interrupt_key(&self.options.cluster_name));
        if self.options.keep_cluster {
            eprintln!(
                "keeping kind cluster {} (kubeconfig {}; delete it with `kind delete cluster --name {} --kubeconfig {}`)",
                self.options.cluster_name,
                self.run_dir.join("kind/kubeconfig").display(),
                self.options.cluster_name,
                self.run_dir.join("kind/kubeconfig").display()
            );
            return;
        }
        let kubeconfig = self.run_dir.join("kind/kubeconfig");
        if !self.ready {
            // What went wrong stays inspectable after the cluster is gone.
            let logs = self.run_dir.join("kind/logs");
            match run_tool(
                Command::new(&self.tools.kind)
                    .args(["export", "logs"])
                    .arg(&logs)
                    .args(["--name", &self.options.cluster_name]),
                "export the cluster's logs",
                "the cluster is deleted next; rerun with --keep-cluster to inspect it",
            ) {
                Ok(_) => eprintln!("the cluster's pod and node logs are in {}", logs.display()),
                Err(error) => eprintln!("warning: {error}"),
            }
        }
        // With the run's own kubeconfig: the user's is never edited.
        if let Err(error) = run_tool(
            Command::new(&self.tools.kind)
                .args(["delete", "cluster", "--name", &self.options.cluster_name])
                .arg("--kubeconfig")
                .arg(&kubeconfig),
            "delete the kind cluster",
            "delete it by hand with `kind delete cluster --name NAME --kubeconfig RUN_DIR/kind/kubeconfig`",
        ) {
            eprintln!("warning: {error}");
        }
    }
}

fn image_version(component: &str, image: &str) -> ComponentVersion {
    ComponentVersion {
        component: component.into(),
        version: image
            .rsplit_once(':')
            .map(|(_, t)| t)
            .unwrap_or(image)
            .into(),
        source: "container image".into(),
    }
}

fn deployment_label(name: &str) -> &'static str {
    match name {
        "istio-ingressgateway" => "istio ingress gateway",
        "httpbin" => "httpbin",
        "echo" => "echo (second app)",
        "oauth2-proxy" => "oauth2-proxy",
        "redis" => "redis",
        _ => "keycloak",
    }
}

fn url(text: &str) -> Url {
    Url::parse(text).expect("loopback URLs built from ports are valid")
}

/// A client for the cluster a kubeconfig describes.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client, EnvError> {
    let cluster_error = |detail: String| EnvError::Cluster {
        what: format!("could not use the kubeconfig {}", kubeconfig.display()),
        detail,
        fix: "re-create the cluster (`kind delete cluster` then run again)".into(),
    };
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| cluster_error(e.to_string()))?;
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| cluster_error(e.to_string()))?;
    kube::Client::try_from(config).map_err(kube_error("build the Kubernetes client"))
}

/// Server-side applies every object in order (the cluster's own validation, CEL included,
/// decides); applying the same objects again changes nothing.
pub async fn apply_all(
    client: &kube::Client,
    objects: &[serde_json::Value],
) -> Result<(), EnvError> {
    for object in objects {
        apply(client, object).await?;
    }
    Ok(())
}

/// Deletes every object (in reverse order), ignoring those already gone: `down`'s cleanup.
pub async fn delete_all(
    client: &kube::Client,
    objects: &[serde_json::Value],
) -> Result<(), EnvError> {
    use kube::api::{Api, DeleteParams, DynamicObject};
    for object in objects.iter().rev() {
        let (parsed, label, resource, namespaced) = resolve(client, object).await?;
        let name = parsed.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = if namespaced {
            let namespace = parsed.metadata.namespace.as_deref().unwrap_or("default");
            Api::namespaced_with(client.clone(), namespace, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(kube_error(format!("delete {label}"))(error)),
        }
    }
    Ok(())
}

/// Waits until the cluster serves each CustomResourceDefinition named (`Established`).
pub async fn wait_established(client: &kube::Client, names: &[String]) -> Result<(), EnvError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let crd = api
                .get(name)
                .await
                .map_err(kube_error(format!("read CustomResourceDefinition {name}")))?;
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            if Instant::now() >= deadline {
                return Err(EnvError::Cluster {
                    what: format!("CustomResourceDefinition {name} was not established"),
                    detail: "not within 60s".into(),
                    fix: "check the API server's log".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

impl Manifests {
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

/// An object's parsed form, a label for messages, its API resource and whether it is
/// namespaced, from the cluster's discovery.
async fn resolve(
    client: &kube::Client,
    object: &serde_json::Value,
) -> Result<
    (
        kube::api::DynamicObject,
        String,
        kube::api::ApiResource,
        bool,
    ),
    EnvError,
> {
    use kube::core::GroupVersionKind;
    use kube::discovery::Scope;
    let parsed: kube::api::DynamicObject =
        serde_json::from_value(object.clone()).map_err(|e| EnvError::Cluster {
            what: "a rendered object is not a Kubernetes object".into(),
            detail: e.to_string(),
            fix: "fix kind/manifests.yaml.j2".into(),
        })?;
    let types = parsed.types.clone().unwrap_or_default();
    let name = parsed.metadata.name.clone().unwrap_or_default();
    let label = format!("{} {name}", types.kind);
    let gvk = GroupVersionKind::try_from(&types).map_err(|e| EnvError::Cluster {
        what: format!("{label} has an unusable apiVersion"),
        detail: e.to_string(),
        fix: "fix kind/manifests.yaml.j2".into(),
    })?;
    let (resource, capabilities) =
        kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(kube_error(format!(
                "the cluster does not serve {label}'s kind (is Istio installed?)"
            )))?;
    let namespaced = matches!(capabilities.scope, Scope::Namespaced);
    Ok((parsed, label, resource, namespaced))
}

/// Server-side apply of one rendered object, whatever its kind (CRDs included).
pub async fn apply(client: &kube::Client, object: &serde_json::Value) -> Result<(), EnvError> {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    let (parsed, label, resource, namespaced) = resolve(client, object).await?;
    let name = parsed.metadata.name.clone().unwrap_or_default();
    let api: Api<DynamicObject> = if namespaced {
        let namespace = parsed.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced_with(client.clone(), namespace, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&parsed),
    )
    .await
    .map_err(kube_error(format!("apply {label}")))?;
    Ok(())
}

/// Waits until the deployment is rolled out, stopping at once when one of its pods cannot
/// start (an image that cannot be pulled, a container that keeps crashing) instead of waiting
/// out the timeout.
pub async fn wait_rollout(
    client: &kube::Client,
    kubeconfig: &Path,
    namespace: &str,
    name: &str,
) -> Result<(), EnvError> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;

    let deployments: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), namespace);
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let describe = format!(
        "kubectl --kubeconfig {} -n {namespace} describe deploy/{name}",
        kubeconfig.display()
    );
    let deadline = Instant::now() + ROLLOUT_TIMEOUT;
    loop {
        let deployment = deployments
            .get(name)
            .await
            .map_err(kube_error(format!("read deployment {namespace}/{name}")))?;
        if rolled_out(&deployment) {
            return Ok(());
        }
        let selector = deployment
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let listed = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .map_err(kube_error(format!("list the pods of {namespace}/{name}")))?;
        for pod in &listed.items {
            if let Some((container, reason, message)) = stuck(pod) {
                return Err(EnvError::Cluster {
                    what: format!("deployment {namespace}/{name} cannot start"),
                    detail: format!(
                        "pod {} container {container}: {reason}{}",
                        pod.metadata.name.as_deref().unwrap_or("?"),
                        message.map(|m| format!(": {m}")).unwrap_or_default()
                    ),
                    fix: if reason.contains("Image") {
                        format!(
                            "the image must be pullable from the cluster: check its reference (--image NAME=REF, --image-registry MIRROR); `{describe}`"
                        )
                    } else {
                        format!(
                            "see the container's log in RUN_DIR/kind/logs (exported on failure) or `{describe}`"
                        )
                    },
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(EnvError::Cluster {
                what: format!("deployment {namespace}/{name} did not roll out"),
                detail: format!("not complete within {}s", ROLLOUT_TIMEOUT.as_secs()),
                fix: format!(
                    "look at `{describe}` and its pods' events (RUN_DIR/kind/logs holds the cluster's logs)"
                ),
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Every replica updated and available.
fn rolled_out(deployment: &k8s_openapi::api::apps::v1::Deployment) -> bool {
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = &deployment.status else {
        return false;
    };
    status.updated_replicas.unwrap_or(0) >= wanted
        && status.available_replicas.unwrap_or(0) >= wanted
        && status.replicas.unwrap_or(0) == wanted
}

/// A container that will not start by waiting: (container, reason, message).
fn stuck(pod: &k8s_openapi::api::core::v1::Pod) -> Option<(String, String, Option<String>)> {
    const HOPELESS: [&str; 6] = [
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
    ];
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|container| {
            let waiting = container.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            HOPELESS.contains(&reason).then(|| {
                (
                    container.name.clone(),
                    reason.to_string(),
                    waiting.message.clone(),
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::versions;
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
        assert!(
            !kinds.iter().any(|k| k.starts_with("AuthorizationPolicy/")),
            "{kinds:?}"
        );
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
        let routes = &find(&manifests, "VirtualService", "ingressgateway")["spec"]["http"];
        assert_eq!(routes[2]["name"], "baseline");
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

    #[test]
    fn images_are_complete_references_and_each_can_be_rewritten() {
        let images = Images::pinned();
        assert_eq!(
            images.keycloak,
            format!("quay.io/keycloak/keycloak:{}", versions::KEYCLOAK)
        );
        assert_eq!(
            images.oauth2_proxy,
            format!(
                "quay.io/oauth2-proxy/oauth2-proxy:{}",
                versions::OAUTH2_PROXY
            )
        );
        assert!(versions::HTTPBIN.starts_with('v'));
        assert_eq!(
            images.httpbin,
            format!("docker.io/mccutchen/go-httpbin:{}", &versions::HTTPBIN[1..])
        );
        let mirrored = Images::pinned().mirrored("registry.example.test/mirror/");
        assert_eq!(
            mirrored.httpbin,
            format!(
                "registry.example.test/mirror/mccutchen/go-httpbin:{}",
                &versions::HTTPBIN[1..]
            )
        );
        assert!(
            mirrored
                .keycloak
                .starts_with("registry.example.test/mirror/keycloak/keycloak:")
        );
        let newer = Images::pinned()
            .with("keycloak=quay.io/keycloak/keycloak:26.8.0")
            .unwrap();
        assert_eq!(newer.keycloak, "quay.io/keycloak/keycloak:26.8.0");
        assert_eq!(newer.httpbin, Images::pinned().httpbin);
        let error = Images::pinned().with("keycloack=x").unwrap_err();
        assert!(error.contains("no such image"), "{error}");
        assert!(Images::pinned().with("keycloak").is_err());
    }

    #[test]
    fn a_pod_that_cannot_pull_its_image_stops_the_wait() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "httpbin-1" },
            "status": { "containerStatuses": [
                { "name": "istio-proxy", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                  "state": { "running": {} } },
                { "name": "httpbin", "image": "docker.io/mccutchen/go-httpbin:v2.26.0", "imageID": "",
                  "ready": false, "restartCount": 0,
                  "state": { "waiting": { "reason": "ImagePullBackOff", "message": "Back-off pulling image" } } }
            ] }
        }))
        .unwrap();
        assert_eq!(
            stuck(&pod),
            Some((
                "httpbin".into(),
                "ImagePullBackOff".into(),
                Some("Back-off pulling image".into())
            ))
        );
        let starting: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "keycloak-1" },
            "status": { "containerStatuses": [
                { "name": "keycloak", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                  "state": { "waiting": { "reason": "ContainerCreating" } } }
            ] }
        }))
        .unwrap();
        assert_eq!(stuck(&starting), None);
    }

    #[test]
    fn only_a_release_istioctl_is_used() {
        assert!(is_release_version("1.31.1"));
        for version in ["unknown", "1.31-dev", "1.31.0-alpha.1", "eed52ebb66ad", ""] {
            assert!(!is_release_version(version), "{version}");
        }
    }

    #[test]
    fn a_missing_tool_names_itself_and_the_fix() {
        let missing = Tool {
            name: "meshauth-no-such-tool",
            purpose: "prove the error",
            fix: "install it",
        };
        let error = find_on_path(&missing).unwrap_err().to_string();
        assert_eq!(
            error,
            "meshauth-no-such-tool is not on PATH (needed to prove the error)\nhow to fix: install it"
        );
    }
}
