//! The cluster's Kubernetes API: server-side apply, waiting for roll-outs and CRDs, deleting.

use std::path::Path;
use std::time::{Duration, Instant};

use super::FIELD_MANAGER;
use crate::env::EnvError;

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> EnvError {
    let what = what.into();
    move |e| EnvError::Cluster {
        what,
        detail: e.to_string(),
        fix: "check the cluster with `kubectl --kubeconfig RUN_DIR/kind/kubeconfig get pods -A`"
            .into(),
    }
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
    use kube::api::DeleteParams;
    for object in objects.iter().rev() {
        let (api, _, name, label) = api_for(client, object).await?;
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

/// The API of an object's kind (in its namespace), its parsed form, its name and a label for
/// messages.
async fn api_for(
    client: &kube::Client,
    object: &serde_json::Value,
) -> Result<
    (
        kube::Api<kube::api::DynamicObject>,
        kube::api::DynamicObject,
        String,
        String,
    ),
    EnvError,
> {
    use kube::api::{Api, DynamicObject};
    let (parsed, label, resource, namespaced) = resolve(client, object).await?;
    let name = parsed.metadata.name.clone().unwrap_or_default();
    let api: Api<DynamicObject> = if namespaced {
        let namespace = parsed.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced_with(client.clone(), namespace, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    Ok((api, parsed, name, label))
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

/// Server-side apply of one object, whatever its kind (CRDs included). Strict: a field the
/// cluster does not know (a misspelt `notPath`) is an error, not silently dropped.
pub async fn apply(client: &kube::Client, object: &serde_json::Value) -> Result<(), EnvError> {
    use kube::api::{Patch, PatchParams};
    let (api, parsed, name, label) = api_for(client, object).await?;
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER)
            .force()
            .validation_strict(),
        &Patch::Apply(&parsed),
    )
    .await
    .map_err(kube_error(format!("apply {label}")))?;
    Ok(())
}

/// The object of the same kind, namespace and name as the cluster has it now, without what
/// the cluster adds (status, managed fields, resource version…), so that applying it again
/// puts it back; `None` when the cluster has no such object.
pub async fn get(
    client: &kube::Client,
    object: &serde_json::Value,
) -> Result<Option<serde_json::Value>, EnvError> {
    let (api, _, name, label) = api_for(client, object).await?;
    let found = api
        .get_opt(&name)
        .await
        .map_err(kube_error(format!("read {label}")))?;
    let Some(found) = found else {
        return Ok(None);
    };
    let mut value = serde_json::to_value(found).map_err(|e| EnvError::Cluster {
        what: format!("{label} as the cluster has it is not JSON"),
        detail: e.to_string(),
        fix: "report this as a bug".into(),
    })?;
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    if let Some(metadata) = value["metadata"].as_object_mut() {
        for added in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "selfLink",
        ] {
            metadata.remove(added);
        }
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(|a| a.as_object_mut())
        {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    Ok(Some(value))
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
    // The status must describe the current spec: right after a change (CoreDNS restarted
    // with its new Corefile) it still reports the old, rolled-out generation.
    let generation = deployment.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return false;
    }
    status.updated_replicas.unwrap_or(0) >= wanted
        && status.available_replicas.unwrap_or(0) >= wanted
        && status.replicas.unwrap_or(0) == wanted
}

/// A container that will not start by waiting: (container, reason, message).
/// Crashes a container may have before its CrashLoopBackOff stops the wait: a component started
/// before what it needs (oauth2-proxy before redis) crashes once or twice and then runs, as a
/// Deployment does on any cluster; one that keeps crashing will not come up.
const CRASHES_TOLERATED: i32 = 3;

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
            let crashing_still =
                reason != "CrashLoopBackOff" || container.restart_count >= CRASHES_TOLERATED;
            (HOPELESS.contains(&reason) && crashing_still).then(|| {
                (
                    container.name.clone(),
                    reason.to_string(),
                    waiting.message.clone(),
                )
            })
        })
}

/// Runs `command` in `container` of the first running pod `selector` picks in `namespace`, by
/// kube's websocket exec, and returns what it wrote to stdout (an error with its stderr when
/// it fails).
pub async fn exec_output(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    container: &str,
    command: &[&str],
) -> Result<String, String> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams, ListParams};
    use tokio::io::AsyncReadExt;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("listing pods {namespace}/[{selector}]: {e}"))?;
    let name = listed
        .items
        .iter()
        .find(|pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Running")
        })
        .and_then(|pod| pod.metadata.name.clone())
        .ok_or_else(|| format!("no running pod {namespace}/[{selector}]"))?;
    let params = AttachParams::default()
        .container(container)
        .stdout(true)
        .stderr(true);
    let run = async {
        let mut attached = pods
            .exec(&name, command.iter().copied(), &params)
            .await
            .map_err(|e| format!("exec into {namespace}/{name}: {e}"))?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (out, err) = (attached.stdout(), attached.stderr());
        tokio::join!(
            async {
                if let Some(mut reader) = out {
                    let _ = reader.read_to_end(&mut stdout).await;
                }
            },
            async {
                if let Some(mut reader) = err {
                    let _ = reader.read_to_end(&mut stderr).await;
                }
            }
        );
        let status = match attached.take_status() {
            Some(status) => status.await,
            None => None,
        };
        let _ = attached.join().await;
        let succeeded = match &status {
            Some(status) => status.status.as_deref() == Some("Success"),
            None => stderr.is_empty(),
        };
        match succeeded {
            true => Ok(String::from_utf8_lossy(&stdout).into_owned()),
            false => Err(format!(
                "`{}` in {namespace}/{name} failed: {}",
                command.join(" "),
                String::from_utf8_lossy(&stderr).trim()
            )),
        }
    };
    tokio::time::timeout(ROLLOUT_TIMEOUT, run)
        .await
        .map_err(|_| {
            format!(
                "`{}` in {namespace}/{name} did not finish",
                command.join(" ")
            )
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_of_an_older_generation_is_not_rolled_out() {
        let deployment = |observed: i64| -> k8s_openapi::api::apps::v1::Deployment {
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": "coredns", "generation": 2 },
                "spec": { "replicas": 2, "selector": {}, "template": {} },
                "status": { "observedGeneration": observed, "replicas": 2,
                            "updatedReplicas": 2, "availableReplicas": 2 }
            }))
            .unwrap()
        };
        assert!(!rolled_out(&deployment(1)));
        assert!(rolled_out(&deployment(2)));
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
    fn a_crash_loop_stops_the_wait_only_after_a_few_crashes() {
        let crashed = |restarts: i32| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": "oauth2-proxy-1" },
                "status": { "containerStatuses": [
                    { "name": "oauth2-proxy", "image": "x", "imageID": "", "ready": false,
                      "restartCount": restarts,
                      "state": { "waiting": { "reason": "CrashLoopBackOff",
                                              "message": "back-off 10s restarting failed container" } } }
                ] }
            }))
            .unwrap()
        };
        assert_eq!(
            stuck(&crashed(1)),
            None,
            "started before redis: it will come up"
        );
        assert_eq!(
            stuck(&crashed(CRASHES_TOLERATED)).map(|(_, reason, _)| reason),
            Some("CrashLoopBackOff".into())
        );
    }
}
