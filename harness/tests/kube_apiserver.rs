//! The kind environment's apply path against a real Kubernetes API server: kube-apiserver and
//! etcd built from their Go modules (`kube/`) and started on loopback, envtest-style.
//! What this proves: the objects meshauth renders are accepted by the API server's own
//! validation (Istio's CRD schemas with their CEL rules included), server-side apply is
//! idempotent, a broken object is refused with the API server's message, the rollout wait
//! passes on rolled-out Deployments and stops at once on a pod that cannot pull its image, and
//! cleanup deletes everything. What only a real cluster proves: that pods run (there is no
//! kubelet, scheduler or controller manager here; a status updater plays the controllers, as
//! kwok does), Istio's install, and traffic.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meshauth::components::{self, CacheDir, Launch, Supervised};
use meshauth::env::StackConfig;
use meshauth::env::kind::{self, KindOptions, KindSecrets};
use serde_json::json;

struct ControlPlane {
    _etcd: Supervised,
    _apiserver: Supervised,
    kubeconfig: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(what: &str, timeout: Duration, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready().await {
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_control_plane(dir: &Path) -> ControlPlane {
    let cache = CacheDir::from_env().unwrap();
    let observe = |event: components::InstallEvent| eprintln!("[kube-apiserver] {event:?}");
    let binaries = components::ensure_control_plane(&cache, &observe).unwrap();
    std::fs::create_dir_all(dir.join("certs")).unwrap();

    let (client_port, peer_port, secure_port) = (free_port(), free_port(), free_port());
    let etcd = Supervised::spawn(
        &Launch::new("etcd", &binaries.etcd, dir.join("etcd.log"))
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{client_port}"
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{client_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            )),
    )
    .unwrap();
    let probe = reqwest::Client::new();
    wait_for("etcd", Duration::from_secs(30), async || {
        probe
            .get(format!("http://127.0.0.1:{client_port}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    let key = rcgen::KeyPair::generate().unwrap();
    let key_file = dir.join("sa.key");
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let public_key_file = dir.join("sa.pub");
    std::fs::write(&public_key_file, key.public_key_pem()).unwrap();
    let token = format!("meshauth-{}", std::process::id());
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, format!("{token},admin,admin-uid,system:masters\n")).unwrap();
    let apiserver = Supervised::spawn(
        &Launch::new(
            "kube-apiserver",
            &binaries.kube_apiserver,
            dir.join("kube-apiserver.log"),
        )
        .arg(format!("--etcd-servers=http://127.0.0.1:{client_port}"))
        .arg(format!("--cert-dir={}", dir.join("certs").display()))
        .arg(format!("--secure-port={secure_port}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!(
            "--service-account-key-file={}",
            public_key_file.display()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            key_file.display()
        ))
        .arg("--service-account-issuer=https://kubernetes.default.svc")
        .arg(format!("--token-auth-file={}", tokens.display()))
        .arg("--authorization-mode=RBAC")
        .arg("--service-cluster-ip-range=10.96.0.0/16")
        .arg("--disable-admission-plugins=ServiceAccount"),
    )
    .unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let ca = dir.join("certs/apiserver.crt");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: https://127.0.0.1:{secure_port}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: admin\ncurrent-context: envtest\n",
        ca.display()
    );
    std::fs::write(&kubeconfig, config).unwrap();
    wait_for("kube-apiserver", Duration::from_secs(90), async || {
        if let Some(status) = apiserver.exited() {
            panic!(
                "kube-apiserver exited ({status}):\n{}",
                apiserver.log_tail(20)
            );
        }
        if !ca.is_file() {
            return false;
        }
        match kind::client(&kubeconfig).await {
            Ok(client) => client.apiserver_version().await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    ControlPlane {
        _etcd: etcd,
        _apiserver: apiserver,
        kubeconfig,
    }
}

/// Plays the controllers: marks the deployments rolled out, as kwok makes pods Ready.
async fn mark_rolled_out(client: &kube::Client, namespace: &str, name: &str) {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), namespace);
    let status = json!({ "status": {
        "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 1, "availableReplicas": 1
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[test]
fn the_kind_apply_path_against_a_real_api_server() {
    let runtime = common::runtime();
    runtime.block_on(async {
        let dir = common::run_dir("kube-apiserver");
        let plane = start_control_plane(&dir).await;
        let client = kind::client(&plane.kubeconfig).await.unwrap();

        // Istio's CRDs first (from istio.io/api, as istioctl would install them).
        let cache = CacheDir::from_env().unwrap();
        let schemas = components::ensure_api_schemas(&cache, &|_| {}).unwrap();
        let crds: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&std::fs::read_to_string(&schemas.istio_crds).unwrap())
                .unwrap();
        let crds: Vec<serde_json::Value> = crds
            .into_iter()
            .filter(|c| c["kind"] == "CustomResourceDefinition")
            .collect();
        kind::apply_all(&client, &crds).await.unwrap();
        let names: Vec<String> = crds
            .iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        kind::wait_established(&client, &names).await.unwrap();
        let istio_system = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "istio-system"}});
        kind::apply(&client, &istio_system).await.unwrap();

        // Every rendered object, validated by the API server itself; twice.
        let (secrets, _) = KindSecrets::generate().unwrap();
        let manifests =
            kind::render(&StackConfig::default(), &KindOptions::default(), &secrets).unwrap();
        assert!(manifests.objects.len() > 15, "{}", manifests.objects.len());
        kind::apply_all(&client, &manifests.objects)
            .await
            .unwrap_or_else(|e| panic!("the API server refused a rendered object: {e}"));
        kind::apply_all(&client, &manifests.objects)
            .await
            .unwrap_or_else(|e| panic!("re-applying is not idempotent: {e}"));

        // A broken object is refused with the API server's own message.
        let mut broken = manifests
            .objects
            .iter()
            .find(|o| o["kind"] == "AuthorizationPolicy" && o["metadata"]["name"] == "oidc")
            .unwrap()
            .clone();
        broken["spec"]["action"] = json!("CUSTOMM");
        let error = kind::apply(&client, &broken).await.unwrap_err().to_string();
        assert!(
            error.contains("CUSTOMM") && error.contains("spec.action"),
            "the API server's refusal should name the field and value: {error}"
        );

        // A pod that cannot pull its image stops the rollout wait at once.
        let stuck = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "httpbin-stuck", "namespace": kind::NAMESPACE,
                         "labels": {"app": "httpbin"}},
            "spec": {"containers": [{"name": "httpbin", "image": "docker.io/mccutchen/go-httpbin:v2.26.0"}]}});
        kind::apply(&client, &stuck).await.unwrap();
        {
            use k8s_openapi::api::core::v1::Pod;
            use kube::api::{Patch, PatchParams};
            let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), kind::NAMESPACE);
            let status = json!({"status": {"containerStatuses": [{
                "name": "httpbin", "image": "docker.io/mccutchen/go-httpbin:v2.26.0", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": "Back-off pulling image"}}}]}});
            pods.patch_status("httpbin-stuck", &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
        }
        let started = Instant::now();
        let error = kind::wait_rollout(&client, &plane.kubeconfig, kind::NAMESPACE, "httpbin")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ImagePullBackOff") && error.contains("httpbin-stuck"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        kind::delete_all(
            &client,
            std::slice::from_ref(&stuck),
        )
        .await
        .unwrap();

        // Rolled out (the status updater plays the controllers): the wait passes.
        let deployments = manifests.deployments();
        assert!(
            deployments.iter().any(|(_, name)| name == "redis"),
            "the reference keeps sessions in redis: {deployments:?}"
        );
        for (namespace, name) in deployments.iter().filter(|(ns, _)| *ns == kind::NAMESPACE) {
            mark_rolled_out(&client, namespace, name).await;
            kind::wait_rollout(&client, &plane.kubeconfig, namespace, name)
                .await
                .unwrap_or_else(|e| panic!("{namespace}/{name}: {e}"));
        }

        in_mesh_caller_by_exec(&client, &plane.kubeconfig).await;

        // Cleanup deletes everything meshauth applied.
        kind::delete_all(&client, &manifests.objects).await.unwrap();
        let gateway = manifests
            .objects
            .iter()
            .find(|o| o["kind"] == "Gateway")
            .unwrap();
        let error = kind::apply(&client, &json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "probe", "namespace": kind::NAMESPACE}}))
            .await;
        // The namespace is being deleted (no controller manager finishes it here): a new
        // object in it is refused, which shows the delete went through.
        assert!(error.is_err(), "{gateway}");
    });
}

/// `--env existing`'s in-mesh caller against the API server: the pod is picked by its label
/// among running pods, the exec request goes through authentication, RBAC and the API
/// server's pods/exec handler, which then has no kubelet to hand the stream to; the caller
/// turns that into an error naming the pod and the API server's reason (never a pass, never
/// a "rejected" cell). What only a cluster proves: curl's answer coming back over the stream.
async fn in_mesh_caller_by_exec(client: &kube::Client, kubeconfig: &Path) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};
    use meshauth::browser::BrowserError;
    use meshauth::browser::curl_caller::CurlCaller;
    use meshauth::endpoints::{CallerRef, KubeAccess, PodRef};

    let sleep = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sleep-exec-probe", "namespace": kind::NAMESPACE,
                     "labels": {"app": "meshauth-sleep"}},
        "spec": {"nodeName": "meshauth-no-kubelet",
                 "containers": [{"name": "sleep", "image": "docker.io/curlimages/curl:8.11.1"}]}});
    kind::apply(client, &sleep).await.unwrap();
    let access = KubeAccess {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        context: Some("envtest".into()),
    };
    let caller =
        |pod: PodRef| CurlCaller::new(&CallerRef::Pod(pod), access.clone(), Default::default());
    let by_label = PodRef {
        namespace: kind::NAMESPACE.into(),
        pod: None,
        selector: Some("app=meshauth-sleep".into()),
        container: Some("sleep".into()),
    };
    let url: url::Url = "http://httpbin.foo.svc.cluster.local:8000/headers"
        .parse()
        .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        "Bearer secret-token-value".parse().unwrap(),
    );

    // Not running yet: no pod to call from, and the error says how to fix it.
    let error = caller(by_label.clone())
        .send(&reqwest::Method::GET, &url, &headers)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no running pod matches \"app=meshauth-sleep\" in namespace foo (1 listed)"),
        "{error}"
    );

    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), kind::NAMESPACE);
    pods.patch_status(
        "sleep-exec-probe",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    let error = caller(by_label)
        .send(&reqwest::Method::GET, &url, &headers)
        .await
        .unwrap_err();
    let text = error.to_string();
    eprintln!("[kube-apiserver] exec without a kubelet: {text}");
    assert!(
        matches!(error, BrowserError::Request { .. })
            && text.contains("exec into pod foo/sleep-exec-probe failed")
            && text.contains("pods/exec"),
        "{text}"
    );
    assert!(!text.contains("secret-token-value"), "{text}");

    // A context the kubeconfig does not have is named as such.
    let error = CurlCaller::new(
        &CallerRef::Pod(PodRef {
            namespace: kind::NAMESPACE.into(),
            pod: Some("sleep-exec-probe".into()),
            selector: None,
            container: None,
        }),
        KubeAccess {
            kubeconfig: Some(kubeconfig.to_path_buf()),
            context: Some("prod".into()),
        },
        Default::default(),
    )
    .send(&reqwest::Method::GET, &url, &headers)
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("context \"prod\" is not usable"), "{error}");
    kind::delete_all(client, std::slice::from_ref(&sleep))
        .await
        .unwrap();
}
