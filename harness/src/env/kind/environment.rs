//! A running kind environment: created, installed and applied in order, each step reported;
//! the cluster is deleted when the environment is dropped (and on Ctrl-C), unless kept.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use url::Url;

use super::cluster::{apply_all, client, wait_rollout};
use super::manifests::{KindSecrets, PublicUrls, render};
use super::options::KindOptions;
use super::tools::{KindTools, run_tool};
use super::{CALLER, NAMESPACE, OUTSIDE_NAMESPACE};
use crate::components::ComponentVersion;
use crate::endpoints::{CallerRef, KubeAccess, MeshCallers, PodRef};
use crate::env::local::StackEvent;
use crate::env::names::{EMAIL, ROLE, ROLES_CLAIM, SESSION_REFRESH_SECONDS, USERNAME};
use crate::env::{Endpoints, EnvError, StackConfig, TestUser};
use crate::events::EnvironmentInfo;
use crate::redact::{Redactor, Secret};

const ISSUER_TIMEOUT: Duration = Duration::from_secs(120);

/// A running kind environment. Dropping it deletes the cluster unless it is kept.
pub struct KindEnvironment {
    tools: KindTools,
    options: KindOptions,
    /// What the cluster runs now, and what it was started with (a scenario's mesh policy is
    /// applied over `base`: see `control.rs`).
    config: StackConfig,
    base: StackConfig,
    secrets: KindSecrets,
    /// The objects applied, as rendered from `config`.
    objects: Vec<serde_json::Value>,
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
        mut options: KindOptions,
        redactor: &Redactor,
        progress: &(dyn Fn(StackEvent) + Sync),
    ) -> Result<Self, EnvError> {
        let built = options
            .local_images()
            .then(|| crate::components::CacheDir::from_env().ok())
            .flatten()
            .and_then(|cache| crate::components::kind_images::cached_kind_toolchain(&cache));
        let tools = KindTools::find(
            built
                .as_ref()
                .map(|built| (built.kind.as_path(), built.istioctl.as_path())),
        )?;
        if options.local_images() {
            options.istio_tag = Some(tools.istio_version.clone());
        }
        if tools.podman {
            lib_modules()?;
        }
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
            crate::env::ports::Ports::check_free(port, purpose)?;
        }
        let (secrets, ca_pem) = KindSecrets::generate()?;
        for secret in secrets.all() {
            redactor.register(secret);
        }
        let manifests = render(&config, &options, &secrets)?;
        let dir = run_dir.join("kind");
        let write = |name: &str, text: &str| write_run_file(&dir, name, text);
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
            upstream_second_user: None,
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
            // The harness cannot hold a workload certificate of the cluster's mesh: the
            // scenarios that present made-up ones run on the local environment only.
            mesh: None,
            mesh_callers: Some(callers(&options, &kubeconfig)),
        };
        secrets.realm.fill(&mut endpoints);
        // From here on the cluster exists: dropping `environment` deletes it on any error.
        // Ctrl-C from here on (kind create included) deletes the cluster.
        if !options.keep_cluster {
            let mut kind = tools.kind();
            let name = options.cluster_name.clone();
            let kubeconfig = kubeconfig.clone();
            crate::components::process::on_interrupt(&interrupt_key(&name), move || {
                let _ = kind
                    .args(["delete", "cluster", "--name", &name])
                    .arg("--kubeconfig")
                    .arg(kubeconfig)
                    .status();
            });
        }
        progress(StackEvent::Starting("kind cluster"));
        let started = Instant::now();
        let mut create = tools.kind();
        create
            .args(["create", "cluster", "--name", &options.cluster_name])
            .arg("--config")
            .arg(&cluster_file)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--wait", "180s"]);
        if let Some(image) = options.node_image() {
            create.args(["--image", image]);
        }
        run_tool(
            &mut create,
            "create the kind cluster",
            "see kind's output above; `kind delete cluster --name NAME` removes a half-created cluster",
        )?;
        let mut environment = Self {
            tools,
            options,
            base: config.clone(),
            config,
            secrets,
            objects: manifests.objects.clone(),
            run_dir: run_dir.to_path_buf(),
            endpoints,
            ready: false,
        };
        progress(StackEvent::Ready {
            component: "kind cluster",
            after: started.elapsed(),
        });
        let client = client(&kubeconfig).await?;
        if environment.options.local_images() {
            progress(StackEvent::Starting("images (kind load)"));
            let started = Instant::now();
            let redis = manifests
                .deployments()
                .iter()
                .any(|(_, name)| name == "redis");
            let mut images = environment.options.istio_images();
            images.extend(environment.options.app_images(redis));
            environment.load_images(&images)?;
            progress(StackEvent::Ready {
                component: "images (kind load)",
                after: started.elapsed(),
            });
            progress(StackEvent::Starting("coredns (cluster names only)"));
            let started = Instant::now();
            cluster_dns_only(&client, &kubeconfig).await?;
            progress(StackEvent::Ready {
                component: "coredns (cluster names only)",
                after: started.elapsed(),
            });
        }

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

        progress(StackEvent::Starting("apps"));
        apply_all(&client, &manifests.objects).await?;
        for (namespace, name) in manifests.deployments() {
            let started = Instant::now();
            wait_rollout(&client, &kubeconfig, &namespace, &name).await?;
            progress(StackEvent::Ready {
                component: deployment_label(&namespace, &name),
                after: started.elapsed(),
            });
        }
        environment.wait_issuer().await?;
        environment.ready = true;
        if environment.options.keep_cluster {
            environment.write_existing_file(&manifests)?;
        }
        Ok(environment)
    }

    /// Loads each image from the local engine into the node, one per `kind load` (an archive of
    /// several images from podman's API can carry every name on the first image).
    fn load_images(&self, images: &[String]) -> Result<(), EnvError> {
        for image in images {
            run_tool(
                self.tools
                    .kind()
                    .args(["load", "docker-image", "--name", &self.options.cluster_name])
                    .arg(image),
                &format!("load the image {image} into the kind node"),
                "the image must exist in the local engine (`docker image inspect IMAGE`): `meshauth images build` builds the apps' images, `meshauth images build --kind` the node's and Istio's (`localhost/istio/pilot`, `proxyv2`, tagged with istioctl's version); or use `--images pull` on a machine with registry access",
            )?;
        }
        Ok(())
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Whether the cluster outlives the environment (`--keep-cluster`).
    pub fn kept(&self) -> bool {
        self.options.keep_cluster
    }

    pub(super) fn config(&self) -> &StackConfig {
        &self.config
    }

    pub(super) fn base_config(&self) -> &StackConfig {
        &self.base
    }

    pub(super) fn options(&self) -> &KindOptions {
        &self.options
    }

    pub(super) fn secrets(&self) -> &KindSecrets {
        &self.secrets
    }

    pub(super) fn objects(&self) -> &[serde_json::Value] {
        &self.objects
    }

    pub(super) fn kubeconfig(&self) -> PathBuf {
        self.run_dir.join("kind/kubeconfig")
    }

    /// What the cluster runs after a profile was applied.
    pub(super) fn set_config(&mut self, config: StackConfig, objects: Vec<serde_json::Value>) {
        self.config = config;
        self.objects = objects;
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
                ComponentVersion {
                    component: "Istio".into(),
                    version: self.tools.istio_version.clone(),
                    source: "istioctl".into(),
                },
                ComponentVersion {
                    component: "kind node".into(),
                    version: self
                        .options
                        .node_image()
                        .unwrap_or("kind's default node image")
                        .into(),
                    source: if self.tools.podman {
                        "kind (podman provider)".into()
                    } else {
                        "kind".into()
                    },
                },
            ],
            run_dir: Some(self.run_dir.display().to_string()),
            left_out: Vec::new(),
            limits: vec![
                "the in-mesh callers are curl by exec in `sleep` pods (foo, with a sidecar; \
                 legacy, without); a scenario's mesh policy is applied to the cluster, its \
                 sign-in profile (another IdP, listener, realm) is not; disruptions run with \
                 --env local, or on a kept cluster (--keep-cluster) judged with --env existing; \
                 callers with made-up certificates (another CA, expired, another trust domain) \
                 run on --env local only"
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

impl KindEnvironment {
    /// A kept cluster is a deployment like any user's: `RUN_DIR/kind/existing.yaml` describes
    /// it for `--env existing` (its in-mesh callers, control commands through the node's own
    /// kubectl, its configuration files), the secrets it names in `existing.env` (readable by
    /// the user only), so that the cluster can be judged again, or by other tools, after this
    /// run.
    fn write_existing_file(&self, manifests: &super::Manifests) -> Result<PathBuf, EnvError> {
        let dir = self.run_dir.join("kind");
        let write = |name: &str, text: &str| write_run_file(&dir, name, text).map(drop);
        let mut config_files = Vec::new();
        for (name, text) in &manifests.config_files {
            let name = format!("config/{name}");
            write(&name, text)?;
            config_files.push(name);
        }
        let endpoints = &self.endpoints;
        let mut secrets = vec![
            (
                "MESHAUTH_KIND_CLIENT_SECRET",
                endpoints.client_secret.expose(),
            ),
            (
                "MESHAUTH_KIND_USER_PASSWORD",
                endpoints.user.password.expose(),
            ),
        ];
        let mut file = serde_json::json!({
            "app_url": endpoints.app.as_str(),
            "idp_url": endpoints.idp.as_str(),
            "issuer": endpoints.issuer,
            "client_id": endpoints.client_id,
            "client_secret_env": "MESHAUTH_KIND_CLIENT_SECRET",
            "user": {
                "username": endpoints.user.username,
                "email": endpoints.user.email,
                "password_env": "MESHAUTH_KIND_USER_PASSWORD",
            },
            "role": endpoints.role,
            "roles_claim": endpoints.roles_claim,
            "session_cookie": endpoints.session_cookie,
            "session_refresh_seconds": endpoints.session_refresh.map(|d| d.as_secs()),
            "ca_file": "ca.pem",
            "config_files": config_files,
            "control": self.control_commands(),
            "mesh": self.endpoints.mesh_callers.as_ref().map(|callers| serde_json::json!({
                "kubeconfig": "kubeconfig",
                "context": callers.access.context,
                "service_url": callers.service.as_str().trim_end_matches('/'),
                "caller": callers.mesh_workload,
                "outside_caller": callers.outside_mesh,
                "policy": self.config.sidecar,
            })),
        });
        if let Some(second) = &endpoints.second_user {
            file["second_user"] = serde_json::json!({
                "username": second.username,
                "email": second.email,
                "password_env": "MESHAUTH_KIND_SECOND_PASSWORD",
            });
            secrets.push(("MESHAUTH_KIND_SECOND_PASSWORD", second.password.expose()));
        }
        if let Some(other) = &endpoints.other_client {
            file["other_client"] = serde_json::json!({
                "client_id": other.id,
                "client_secret_env": "MESHAUTH_KIND_OTHER_SECRET",
            });
            secrets.push(("MESHAUTH_KIND_OTHER_SECRET", other.secret.expose()));
        }
        if let Some(key) = &endpoints.signing_key {
            write("test-key.pem", key.private_key_pem.expose())?;
            file["test_signing_key_file"] = "test-key.pem".into();
        }
        let text = format!(
            "# The kept kind cluster {} as a deployment for `meshauth run --env existing`:\n\
             #   set -a; . {}; meshauth run --env existing --env-file {}\n{}\n",
            self.options.cluster_name,
            dir.join("existing.env").display(),
            dir.join("existing.yaml").display(),
            serde_json::to_string_pretty(&file).unwrap_or_default()
        );
        write("existing.yaml", &text)?;
        let env: String = secrets
            .iter()
            .map(|(name, value)| format!("{name}='{}'\n", value.replace('\'', "'\\''")))
            .collect();
        write("existing.env", &env)?;
        Ok(dir.join("existing.yaml"))
    }

    /// Commands that disrupt and restore the apps as a user of this cluster would: Deployments
    /// scaled through the node's own kubectl (nothing needed on this machine but the engine's
    /// CLI), processes frozen with `pkill` in the node (which sees every container's). A
    /// command that restores returns once the gateway's Envoy has a healthy endpoint of the
    /// service again: a pod ready in Kubernetes is not yet one the gateway routes to (the
    /// endpoint reaches it over xDS), and a frozen or restarted dependency makes the pods
    /// that check it unready for a while (oauth2-proxy's `/ready` checks redis).
    fn control_commands(&self) -> serde_json::Value {
        let engine = if self.tools.podman {
            "podman".to_string()
        } else {
            self.tools.docker.display().to_string()
        };
        let node = format!("{}-control-plane", self.options.cluster_name);
        let node_kubectl =
            format!("{engine} exec {node} kubectl --kubeconfig /etc/kubernetes/admin.conf");
        let kubectl = format!("{node_kubectl} -n {NAMESPACE}");
        let until = |test: String, what: String| {
            format!(
                "for i in $(seq 180); do {test} && exit 0; sleep 1; done; \
                 echo '{what} after 180 s' >&2; exit 1"
            )
        };
        let gateway_routes_to = |service: &str, port: u16| {
            until(
                format!(
                    "{node_kubectl} -n istio-system exec deploy/istio-ingressgateway -- \
                     pilot-agent request GET clusters 2>/dev/null | grep -q \
                     'outbound|{port}||{service}.{NAMESPACE}.svc.cluster.local::.*::health_flags::healthy$'"
                ),
                format!("the gateway has no healthy endpoint of {service}"),
            )
        };
        let ports = |deployment: &str| match deployment {
            "httpbin" => ("httpbin", super::manifests::HTTPBIN_PORT),
            "keycloak" | "java" => ("keycloak", super::manifests::KEYCLOAK_PORT),
            // The session store is reached by oauth2-proxy, whose readiness follows it.
            _ => ("oauth2-proxy", super::manifests::OAUTH2_PROXY_PORT),
        };
        let scaled = |deployment: &str| {
            let (service, port) = ports(deployment);
            serde_json::json!({
                "stop": format!(
                    "{kubectl} scale deploy/{deployment} --replicas=0 && {}",
                    until(
                        format!("[ -z \"$({kubectl} get pods -l app={deployment} -o name)\" ]"),
                        format!("pods of {deployment} still there"),
                    )
                ),
                "start": format!(
                    "{kubectl} scale deploy/{deployment} --replicas=1 && \
                     {kubectl} rollout status deploy/{deployment} --timeout=180s && {}",
                    gateway_routes_to(service, port)
                ),
            })
        };
        let frozen = |process: &str| {
            let (service, port) = ports(process);
            serde_json::json!({
                "pause": format!("{engine} exec {node} pkill -STOP -x {process}"),
                "resume": format!(
                    "{engine} exec {node} pkill -CONT -x {process} && {}",
                    gateway_routes_to(service, port)
                ),
            })
        };
        let mut auth_service = scaled("oauth2-proxy");
        auth_service.as_object_mut().expect("an object").extend(
            frozen("oauth2-proxy")
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let mut control = serde_json::json!({
            "auth_service": auth_service,
            "idp": frozen("java"),
            "app": scaled("httpbin"),
        });
        if self.config.session_store == crate::env::stack_config::SessionStore::Redis {
            control["session_store"] = scaled("redis");
        }
        control
    }
}

/// Writes `dir/name` readable by the user only (the run's files carry secrets), returning its path.
fn write_run_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, EnvError> {
    let path = dir.join(name);
    crate::files::write_private(&path, text).map_err(|source| EnvError::Io {
        what: "write",
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The `sleep` pods the manifests run, reached through the cluster's own kubeconfig.
fn callers(options: &KindOptions, kubeconfig: &Path) -> MeshCallers {
    let sleep = |namespace: &str| {
        CallerRef::Pod(PodRef {
            namespace: namespace.into(),
            pod: None,
            selector: Some(format!("app={CALLER}")),
            container: Some(CALLER.into()),
        })
    };
    MeshCallers {
        service: url(&format!(
            "http://httpbin.{NAMESPACE}.svc.cluster.local:{}",
            super::manifests::HTTPBIN_PORT
        )),
        access: KubeAccess {
            kubeconfig: Some(kubeconfig.to_path_buf()),
            context: Some(format!("kind-{}", options.cluster_name)),
        },
        mesh_workload: sleep(NAMESPACE),
        outside_mesh: Some(sleep(OUTSIDE_NAMESPACE)),
    }
}

fn interrupt_key(cluster: &str) -> String {
    format!("deleting kind cluster {cluster}")
}

impl KindEnvironment {
    /// What the cluster looked like, kept in `RUN_DIR/kind/logs` before the cluster is gone:
    /// every pod's and the node's logs (`kind export logs`), the cluster's events and every
    /// pod described. Called when the start failed and, by the runner, when a scenario failed.
    pub fn export_diagnostics(&self) {
        let logs = self.run_dir.join("kind/logs");
        let fix = "the cluster is deleted next; rerun with --keep-cluster to inspect it";
        if let Err(error) = run_tool(
            self.tools
                .kind()
                .args(["export", "logs"])
                .arg(&logs)
                .args(["--name", &self.options.cluster_name]),
            "export the cluster's logs",
            fix,
        ) {
            eprintln!("warning: {error}");
        }
        let node = format!("{}-control-plane", self.options.cluster_name);
        for (file, what) in [
            (
                "events.txt",
                &[
                    "get",
                    "events",
                    "--all-namespaces",
                    "--sort-by=.lastTimestamp",
                ][..],
            ),
            (
                "pods-described.txt",
                &["describe", "pods", "--all-namespaces"][..],
            ),
        ] {
            let described = run_tool(
                std::process::Command::new(&self.tools.docker)
                    .args([
                        "exec",
                        &node,
                        "kubectl",
                        "--kubeconfig",
                        "/etc/kubernetes/admin.conf",
                    ])
                    .args(what),
                "ask the node's kubectl",
                fix,
            );
            let text = described.unwrap_or_else(|error| error.to_string());
            let path = logs.join(file);
            if let Err(error) =
                std::fs::create_dir_all(&logs).and_then(|()| std::fs::write(&path, text))
            {
                eprintln!("warning: could not write {}: {error}", path.display());
            }
        }
        eprintln!(
            "the cluster's pod and node logs, events and pod descriptions are in {}",
            logs.display()
        );
    }
}

impl Drop for KindEnvironment {
    fn drop(&mut self) {
        crate::components::process::forget_on_interrupt(&interrupt_key(&self.options.cluster_name));
        if self.options.keep_cluster {
            let dir = self.run_dir.join("kind");
            eprintln!(
                "keeping kind cluster {name} (kubeconfig {kubeconfig}; delete it with `{kind} delete cluster --name {name} --kubeconfig {kubeconfig}`)",
                name = self.options.cluster_name,
                kubeconfig = dir.join("kubeconfig").display(),
                kind = self.tools.kind.display(),
            );
            if self.ready {
                eprintln!(
                    "to judge it again as a deployment of your own: set -a; . {}; meshauth run --env existing --env-file {}",
                    dir.join("existing.env").display(),
                    dir.join("existing.yaml").display()
                );
            }
            return;
        }
        let kubeconfig = self.run_dir.join("kind/kubeconfig");
        if !self.ready {
            self.export_diagnostics();
        }
        // With the run's own kubeconfig: the user's is never edited.
        if let Err(error) = run_tool(
            self.tools
                .kind()
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

/// kind's podman provider bind-mounts `/lib/modules` into the node; podman refuses a missing
/// bind source, and some machines (containers, sandboxes) have none: create the empty directory.
fn lib_modules() -> Result<(), EnvError> {
    let path = Path::new("/lib/modules");
    if path.is_dir() {
        return Ok(());
    }
    eprintln!(
        "creating the empty directory /lib/modules: kind's podman provider mounts it into the node and this machine has none"
    );
    std::fs::create_dir_all(path).map_err(|source| EnvError::Io {
        what: "create",
        path: path.to_path_buf(),
        source,
    })
}

/// Without a registry the machine is offline too: CoreDNS's default Corefile forwards every
/// name outside the cluster to the node's resolver, i.e. off this machine, and its `loop`
/// check and readiness wait on those queries (readiness 503, `i/o timeout` to the upstream
/// resolver). With local images the Corefile keeps only the cluster's own zones; CoreDNS is
/// restarted with it and waited for.
async fn cluster_dns_only(client: &kube::Client, kubeconfig: &Path) -> Result<(), EnvError> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Patch, PatchParams};
    let error = |what: &str| {
        let what = what.to_string();
        move |e: kube::Error| {
            EnvError::Cluster {
            what,
            detail: e.to_string(),
            fix: "check `kubectl --kubeconfig RUN_DIR/kind/kubeconfig -n kube-system get cm/coredns deploy/coredns`".into(),
        }
        }
    };
    let config_maps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "kube-system");
    let coredns = config_maps
        .get("coredns")
        .await
        .map_err(error("read CoreDNS's ConfigMap"))?;
    let corefile = coredns
        .data
        .as_ref()
        .and_then(|data| data.get("Corefile"))
        .cloned()
        .unwrap_or_default();
    let local = corefile_without_upstream(&corefile);
    if local != corefile {
        config_maps
            .patch(
                "coredns",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "data": { "Corefile": local } })),
            )
            .await
            .map_err(error("change CoreDNS's Corefile"))?;
        let deployments: kube::Api<Deployment> =
            kube::Api::namespaced(client.clone(), "kube-system");
        let restarted = restart_stamp();
        deployments
            .patch(
                "coredns",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": { "template": { "metadata": {
                    "annotations": { "kubectl.kubernetes.io/restartedAt": restarted }
                } } } })),
            )
            .await
            .map_err(error("restart CoreDNS"))?;
    }
    wait_rollout(client, kubeconfig, "kube-system", "coredns").await
}

fn restart_stamp() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_default()
}

/// The Corefile without its `forward` block and `loop` plugin (see [`cluster_dns_only`]).
fn corefile_without_upstream(corefile: &str) -> String {
    let mut kept = Vec::new();
    let mut depth_in_forward = 0usize;
    for line in corefile.lines() {
        let word = line.split_whitespace().next().unwrap_or("");
        if depth_in_forward > 0 {
            depth_in_forward += line.matches('{').count();
            depth_in_forward -= line.matches('}').count().min(depth_in_forward);
            continue;
        }
        if word == "forward" {
            depth_in_forward = line
                .matches('{')
                .count()
                .saturating_sub(line.matches('}').count());
            continue;
        }
        if word == "loop" {
            continue;
        }
        kept.push(line);
    }
    let mut text = kept.join("\n");
    if corefile.ends_with('\n') {
        text.push('\n');
    }
    text
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

fn deployment_label(namespace: &str, name: &str) -> &'static str {
    match (namespace, name) {
        (_, "istio-ingressgateway") => "istio ingress gateway",
        (_, "httpbin") => "httpbin",
        (_, "echo") => "echo (second app)",
        (_, "oauth2-proxy") => "oauth2-proxy",
        (_, "redis") => "redis",
        (_, "keycloak") => "keycloak",
        (OUTSIDE_NAMESPACE, CALLER) => "sleep (outside the mesh)",
        (_, CALLER) => "sleep (in-mesh caller)",
        _ => "deployment",
    }
}

fn url(text: &str) -> Url {
    Url::parse(text).expect("loopback URLs built from ports are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corefile_keeps_only_the_cluster_zones() {
        // kind's (kubeadm's) default Corefile.
        let corefile = ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30 {\n       disable success cluster.local\n       disable denial cluster.local\n    }\n    loop\n    reload\n    loadbalance\n}\n";
        let local = corefile_without_upstream(corefile);
        assert!(!local.contains("forward"), "{local}");
        assert!(!local.contains("max_concurrent"), "{local}");
        assert!(!local.contains("loop\n"), "{local}");
        assert!(local.contains("kubernetes cluster.local"), "{local}");
        assert!(
            local.contains("cache 30 {\n       disable success"),
            "{local}"
        );
        assert!(
            local.contains("    reload\n    loadbalance\n}\n"),
            "{local}"
        );
        assert_eq!(local.matches('{').count(), local.matches('}').count());
        let forward_on_one_line = ".:53 {\n    forward . 10.0.0.1\n    cache 30\n}\n";
        assert_eq!(
            corefile_without_upstream(forward_on_one_line),
            ".:53 {\n    cache 30\n}\n"
        );
    }
}
