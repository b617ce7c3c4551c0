//! What a run may ask of the kind cluster ([`StackControl`]): a scenario's mesh policy on
//! httpbin's sidecar. Its Istio security objects are applied (and those it no longer has
//! deleted) with server-side apply, then the run waits until istiod has pushed the change and
//! every proxy has acknowledged it, as `istioctl proxy-status` shows it. Profiles that change
//! the sign-in (another IdP, listener, realm) and disruptions run on `--env local`; a kept
//! cluster judged with `--env existing` gets control commands that scale and freeze.
//! [`lay_over_cluster`] does the same for any Istio objects a user writes (`--istio DIR`) on a
//! running cluster, and takes them back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::cluster::{apply, client, delete_all, exec_output, get};
use super::environment::KindEnvironment;
use super::manifests::render;
use crate::control::{Disruption, Part, StackControl};
use crate::env::EnvError;
use crate::env::istio_overlay::{self, identity};
use crate::policy::{SignInProfile, StackProfile};

/// How long the proxies' xDS state must stay unchanged after a push before it counts as the
/// whole change (istiod debounces config events by 100 ms, at most 10 s under churn).
const QUIET: Duration = Duration::from_secs(1);
/// The proxies' drain time (`drainDuration`, the manifests' pod annotation), and a margin:
/// by then no connection accepted on a replaced filter chain is left to cut a request.
const DRAINED: Duration = Duration::from_secs(2);
/// How long istiod and the proxies get to take a policy change in.
const PUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// istiod answers its debug endpoints without authentication only on its own loopback: asked
/// there by exec, as `istioctl x internal-debug` does.
const SYNCZ: [&str; 4] = ["pilot-discovery", "request", "GET", "/debug/syncz"];

type Pending<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + 'a>>;

/// The Istio security objects (PeerAuthentication, RequestAuthentication,
/// AuthorizationPolicy): the only ones a sidecar profile changes.
pub(super) fn is_security_object(object: &serde_json::Value) -> bool {
    object["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("security.istio.io/"))
}

/// One proxy's xDS state as istiod's `/debug/syncz` reports it: the nonce of the last push of
/// each type, and the last one the proxy acknowledged.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct SyncStatus {
    #[serde(default)]
    proxy: String,
    #[serde(default)]
    listener_sent: String,
    #[serde(default)]
    listener_acked: String,
    #[serde(default)]
    cluster_sent: String,
    #[serde(default)]
    cluster_acked: String,
    #[serde(default)]
    route_sent: String,
    #[serde(default)]
    route_acked: String,
}

impl SyncStatus {
    fn in_sync(&self) -> bool {
        self.listener_sent == self.listener_acked
            && self.cluster_sent == self.cluster_acked
            && self.route_sent == self.route_acked
    }
}

/// Which proxies a change must reach before it counts as pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    /// httpbin's sidecar, where a sidecar profile's policies live: its listeners.
    AppSidecar,
    /// Whichever proxies the objects concern (the gateway, a sidecar): any new push.
    AnyProxy,
}

/// Whether a push that began after `before` has reached every proxy: the watched proxies got a
/// new push, and no proxy has a push outstanding.
fn pushed(before: &[SyncStatus], now: &[SyncStatus], watched: Watched) -> bool {
    let changed = match watched {
        Watched::AppSidecar => {
            let app_sidecar = |statuses: &[SyncStatus]| {
                statuses
                    .iter()
                    .find(|s| s.proxy.starts_with("httpbin-"))
                    .map(|s| s.listener_sent.clone())
            };
            match (app_sidecar(before), app_sidecar(now)) {
                (Some(old), Some(new)) => old != new,
                _ => false,
            }
        }
        Watched::AnyProxy => now.iter().any(|status| {
            before
                .iter()
                .find(|old| old.proxy == status.proxy)
                .is_none_or(|old| {
                    (&old.listener_sent, &old.cluster_sent, &old.route_sent)
                        != (
                            &status.listener_sent,
                            &status.cluster_sent,
                            &status.route_sent,
                        )
                })
        }),
    };
    changed && now.iter().all(SyncStatus::in_sync)
}

async fn syncz(client: &kube::Client) -> Result<Vec<SyncStatus>, String> {
    let text = exec_output(client, "istio-system", "app=istiod", "discovery", &SYNCZ)
        .await
        .map_err(|e| format!("istiod's /debug/syncz: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("istiod's /debug/syncz is not JSON: {e}"))
}

impl KindEnvironment {
    async fn apply_sidecar_policy(&mut self, profile: &StackProfile) -> Result<(), String> {
        let config = self.base_config().clone().with_profile(profile);
        if &config == self.config() {
            return Ok(());
        }
        let manifests =
            render(&config, self.options(), self.secrets()).map_err(|e| e.to_string())?;
        let others = |objects: &[serde_json::Value]| {
            objects
                .iter()
                .filter(|o| !is_security_object(o))
                .cloned()
                .collect::<Vec<_>>()
        };
        if others(&manifests.objects) != others(self.objects()) {
            return Err(
                "this profile changes more than the mesh policy, which the kind environment \
                 cannot apply\nhow to fix: run the scenario with --env local"
                    .into(),
            );
        }
        let wanted: Vec<serde_json::Value> = manifests
            .objects
            .iter()
            .filter(|o| is_security_object(o))
            .cloned()
            .collect();
        let current: Vec<&serde_json::Value> = self
            .objects()
            .iter()
            .filter(|o| is_security_object(o))
            .collect();
        let changed: Vec<&serde_json::Value> =
            wanted.iter().filter(|o| !current.contains(o)).collect();
        let removed: Vec<serde_json::Value> = current
            .iter()
            .filter(|o| !wanted.iter().any(|w| identity(w) == identity(o)))
            .map(|o| (*o).clone())
            .collect();
        let client = client(&self.kubeconfig())
            .await
            .map_err(|e| e.to_string())?;
        self.set_config(config, manifests.objects);
        apply_and_wait(&client, &changed, &removed, Watched::AppSidecar).await
    }
}

/// Applies `changed` and deletes `removed` (server-side, as [`FIELD_MANAGER`](super::FIELD_MANAGER)),
/// then waits until istiod has pushed the change to the watched proxies, every proxy has
/// acknowledged it, and the drain of replaced filter chains is over.
async fn apply_and_wait(
    client: &kube::Client,
    changed: &[&serde_json::Value],
    removed: &[serde_json::Value],
    watched: Watched,
) -> Result<(), String> {
    if changed.is_empty() && removed.is_empty() {
        return Ok(());
    }
    let before = syncz(client).await?;
    for object in changed {
        apply(client, object).await.map_err(|e| e.to_string())?;
    }
    delete_all(client, removed)
        .await
        .map_err(|e| e.to_string())?;
    // Each object changed is a config event; istiod debounces them (100 ms) but may push
    // more than once: done once pushed, and unchanged for a quiet second.
    let deadline = Instant::now() + PUSH_TIMEOUT;
    let mut settled: Option<(Vec<SyncStatus>, Instant)> = None;
    loop {
        let now = syncz(client).await?;
        if pushed(&before, &now, watched) {
            match &settled {
                Some((last, since)) if *last == now => {
                    if since.elapsed() >= QUIET {
                        tokio::time::sleep(DRAINED).await;
                        return Ok(());
                    }
                }
                _ => settled = Some((now.clone(), Instant::now())),
            }
        } else {
            settled = None;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "istiod did not push the change to every proxy within {PUSH_TIMEOUT:?} \
                 (still out of sync: {})\nhow to fix: look at istiod's log (kubectl -n \
                 istio-system logs deploy/istiod) and RUN_DIR/kind/logs",
                now.iter()
                    .filter(|s| !s.in_sync())
                    .map(|s| s.proxy.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Istio objects laid over a running cluster's own by [`lay_over_cluster`], and what takes
/// them back.
pub struct LaidOver {
    client: kube::Client,
    dir: PathBuf,
    /// The objects replaced, as the cluster had them.
    replaced: Vec<serde_json::Value>,
    /// The objects the cluster did not have.
    added: Vec<serde_json::Value>,
}

fn lay_over_error(dir: &Path, what: &str) -> impl FnOnce(String) -> EnvError {
    let what = format!("could not {what} the Istio objects of {}", dir.display());
    move |detail| EnvError::Cluster {
        what,
        detail,
        fix: "look at istiod's log (kubectl -n istio-system logs deploy/istiod)".into(),
    }
}

/// Lays the Istio objects of `dir` over a running cluster's own, as `meshauth run --istio DIR`
/// lays them over the rendered ones (an object of the same kind, namespace and name replaces
/// the cluster's, others are added), and waits until every proxy has them: a deployment
/// changed the way its owners change it, for a run against it (`--env existing`) to judge.
pub async fn lay_over_cluster(kubeconfig: &Path, dir: &Path) -> Result<LaidOver, EnvError> {
    let objects = istio_overlay::read_objects(dir)?;
    let client = client(kubeconfig).await?;
    let mut replaced = Vec::new();
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for object in &objects {
        match get(&client, object).await? {
            Some(current) if current["spec"] == object["spec"] => {}
            Some(current) => {
                replaced.push(current);
                changed.push(object);
            }
            None => {
                added.push(object.clone());
                changed.push(object);
            }
        }
    }
    apply_and_wait(&client, &changed, &[], Watched::AnyProxy)
        .await
        .map_err(lay_over_error(dir, "lay"))?;
    Ok(LaidOver {
        client,
        dir: dir.to_path_buf(),
        replaced,
        added,
    })
}

impl LaidOver {
    /// Puts the replaced objects back as they were and deletes the added ones, then waits until
    /// every proxy has the cluster's own policy again.
    pub async fn take_back(self) -> Result<(), EnvError> {
        let replaced: Vec<&serde_json::Value> = self.replaced.iter().collect();
        apply_and_wait(&self.client, &replaced, &self.added, Watched::AnyProxy)
            .await
            .map_err(lay_over_error(&self.dir, "take back"))
    }
}

impl StackControl for KindEnvironment {
    fn apply<'a>(&'a mut self, profile: &'a StackProfile) -> Pending<'a, ()> {
        Box::pin(async move {
            if !self.accepts_profile(profile, false) {
                return crate::control::default_profile_only(profile);
            }
            self.apply_sidecar_policy(profile).await
        })
    }

    /// Mesh policies only: the sign-in stays the cluster's.
    fn accepts_profile(&self, profile: &StackProfile, _uses_mesh: bool) -> bool {
        profile.sign_in == SignInProfile::default()
    }

    fn can_disrupt(&self, _: Part, _: Disruption) -> bool {
        false
    }

    fn disrupt(&mut self, part: Part, _: Disruption) -> Pending<'_, ()> {
        Box::pin(std::future::ready(Err(format!(
            "the kind environment does not disrupt the {}\nhow to fix: run with --env local, \
             or keep the cluster (--keep-cluster) and judge it with --env existing, whose \
             environment file has control commands",
            part.name()
        ))))
    }

    fn restore(&mut self, _: Part) -> Pending<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn config_files(&self) -> Result<Vec<crate::audit::ConfigFile>, String> {
        let manifests =
            render(self.config(), self.options(), self.secrets()).map_err(|e| e.to_string())?;
        Ok(manifests
            .config_files
            .into_iter()
            .map(|(name, text)| crate::audit::ConfigFile { name, text })
            .collect())
    }

    fn has_config_files(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(proxy: &str, listener: (&str, &str)) -> SyncStatus {
        SyncStatus {
            proxy: proxy.into(),
            listener_sent: listener.0.into(),
            listener_acked: listener.1.into(),
            cluster_sent: "c".into(),
            cluster_acked: "c".into(),
            route_sent: "r".into(),
            route_acked: "r".into(),
        }
    }

    /// Pushed means: the app's sidecar got a new push, and every proxy acknowledged its last.
    #[test]
    fn a_push_counts_once_the_app_sidecar_has_it_and_every_proxy_acknowledged() {
        let before = [
            status("httpbin-1.foo", ("a", "a")),
            status("sleep-1.foo", ("b", "b")),
        ];
        assert!(
            !pushed(&before, &before, Watched::AppSidecar),
            "nothing pushed yet"
        );
        let sent = [
            status("httpbin-1.foo", ("a2", "a")),
            status("sleep-1.foo", ("b2", "b2")),
        ];
        assert!(
            !pushed(&before, &sent, Watched::AppSidecar),
            "the app's sidecar has not acknowledged"
        );
        let other_pending = [
            status("httpbin-1.foo", ("a2", "a2")),
            status("sleep-1.foo", ("b3", "b2")),
        ];
        assert!(
            !pushed(&before, &other_pending, Watched::AppSidecar),
            "a proxy has a push outstanding"
        );
        let done = [
            status("httpbin-1.foo", ("a2", "a2")),
            status("sleep-1.foo", ("b2", "b2")),
        ];
        assert!(pushed(&before, &done, Watched::AppSidecar));
        assert!(
            !pushed(&[], &done, Watched::AppSidecar),
            "no app sidecar before: nothing to compare"
        );
    }

    /// Objects of any kind (the gateway's, a DestinationRule): any proxy's new push counts,
    /// once every proxy acknowledged.
    #[test]
    fn any_proxys_push_counts_for_objects_of_any_kind() {
        let before = [
            status("istio-ingressgateway-1.istio-system", ("g", "g")),
            status("httpbin-1.foo", ("a", "a")),
        ];
        assert!(!pushed(&before, &before, Watched::AnyProxy));
        let gateway_pending = [
            status("istio-ingressgateway-1.istio-system", ("g2", "g")),
            status("httpbin-1.foo", ("a", "a")),
        ];
        assert!(!pushed(&before, &gateway_pending, Watched::AnyProxy));
        let gateway_done = [
            status("istio-ingressgateway-1.istio-system", ("g2", "g2")),
            status("httpbin-1.foo", ("a", "a")),
        ];
        assert!(pushed(&before, &gateway_done, Watched::AnyProxy));
        assert!(
            !pushed(&before, &gateway_done, Watched::AppSidecar),
            "the app's sidecar did not change"
        );
    }

    #[test]
    fn syncz_is_read_as_istiod_writes_it() {
        let text = r#"[{"cluster_id":"Kubernetes","proxy":"httpbin-7476c7bc86-j9d6m.foo","proxy_type":"sidecar","istio_version":"1.31.0","cluster_sent":"x1","cluster_acked":"x1","listener_sent":"l1","listener_acked":"l1","route_sent":"r1","route_acked":"r1","endpoint_sent":"e1","endpoint_acked":"e1","resources":{}}]"#;
        let parsed: Vec<SyncStatus> = serde_json::from_str(text).unwrap();
        assert_eq!(parsed[0].proxy, "httpbin-7476c7bc86-j9d6m.foo");
        assert!(parsed[0].in_sync());
    }
}
