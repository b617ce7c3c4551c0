//! The `kind` environment: a kind cluster running Istio and the same apps as the `local`
//! environment (Keycloak, oauth2-proxy, httpbin), configured from the same
//! [`StackConfig`](super::StackConfig). Rendering is pure ([`render`]);
//! [`KindEnvironment::start`] creates the cluster, installs Istio, applies the rendered objects
//! with server-side apply and waits for them.
//!
//! One file per concern: `options` (where the cluster lives, which images), `manifests`
//! (rendering), `tools` (docker, kind, istioctl), `cluster` (the Kubernetes API: apply, wait,
//! delete), `environment` (the lifecycle) and `control` (a scenario's mesh policy applied).

mod cluster;
mod control;
mod environment;
mod manifests;
mod options;
mod tools;

pub use cluster::{apply, apply_all, client, delete_all, get, wait_established, wait_rollout};
pub use control::{LaidOver, lay_over_cluster};
pub use environment::KindEnvironment;
pub use manifests::{KindSecrets, Manifests, render};
pub use options::{IMAGE_NAMES, ImageSource, Images, KindOptions, LOCAL_NODE_IMAGE};
pub use tools::KindTools;

/// The namespace the apps run in (sidecar injection on): the mesh policies' namespace, as on
/// the local environment (seed 003's `foo`).
pub const NAMESPACE: &str = crate::policy::NAMESPACE;
/// The namespace without sidecar injection where the caller outside the mesh (`sleep`) runs
/// (Istio's own examples call it `legacy`).
pub const OUTSIDE_NAMESPACE: &str = "legacy";
/// The in-mesh callers' Deployment and ServiceAccount, in both namespaces: the mesh identity
/// `cluster.local/ns/foo/sa/sleep` the mesh policies name.
pub const CALLER: &str = "sleep";
/// The server-side-apply field manager.
pub const FIELD_MANAGER: &str = "meshauth";
