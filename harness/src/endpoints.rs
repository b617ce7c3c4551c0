//! Where a deployment is reached and who signs in: what environments hand the engine (and
//! what a stack profile may move, such as the app's listener or the IdP).

use serde::Serialize;
use url::Url;

use crate::redact::Secret;
use crate::scenario::Variables;

/// The test user the scenarios sign in as.
#[derive(Debug, Clone, Serialize)]
pub struct TestUser {
    pub username: String,
    pub password: Secret,
    pub email: String,
}

/// oauth2-proxy's default session cookie name.
pub const DEFAULT_SESSION_COOKIE: &str = "_oauth2_proxy";

/// A confidential client's id and secret.
#[derive(Debug, Clone, Serialize)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: Secret,
}

/// Everything the engine needs to know about a deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoints {
    /// The application through the gateway (HTTPS, behind ext_authz).
    pub app: Url,
    /// The IdP's public base URL.
    pub idp: Url,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub user: TestUser,
    /// A user of the realm without the required role, where the environment has one: the
    /// deployment must not admit them, and their valid token must not pass as the user's.
    pub second_user: Option<TestUser>,
    /// A user known only to the upstream IdP the realm brokers to, where the environment has
    /// one.
    pub upstream_user: Option<TestUser>,
    /// Another user of that upstream IdP, outside the group the realm admits.
    pub upstream_second_user: Option<TestUser>,
    /// Another client of the realm (password and client-credentials grants): valid tokens of
    /// the realm for another audience.
    pub other_client: Option<ClientCredentials>,
    /// A key the IdP publishes whose private half the harness holds, to mint tokens wrong in
    /// one claim only (expired, other issuer, other audience).
    #[serde(skip)]
    pub signing_key: Option<crate::oidc::forge::SigningKey>,
    /// The auth proxy's session cookie name (its CSRF cookie is this plus `_csrf`).
    pub session_cookie: String,
    /// How soon the deployment must notice a session ended at the IdP: the auth proxy's
    /// session refresh interval (oauth2-proxy's `cookie_refresh`) it promises; `None` where
    /// the environment does not say.
    pub session_refresh: Option<std::time::Duration>,
    /// Further hosts the sign-in legitimately passes through (an upstream IdP the realm
    /// brokers to); every other host a redirect points to is reported, never followed.
    pub sign_in_hosts: Vec<String>,
    /// The realm role the test user has, and the claim the mapper puts it in.
    pub role: String,
    pub roles_claim: String,
    /// An extra CA to trust (the local environment's per-run CA).
    #[serde(skip)]
    pub ca_pem: Option<String>,
    /// httpbin's sidecar and the in-mesh caller's identity, where the environment has a mesh
    /// the harness can join (the local one does).
    #[serde(skip)]
    pub mesh: Option<MeshEndpoints>,
    /// Callers inside a deployment's mesh that the harness runs curl as (`--env existing`
    /// with `mesh:`, the kind environment's `sleep` pods).
    #[serde(skip)]
    pub mesh_callers: Option<MeshCallers>,
}

/// Where httpbin's sidecar listens and who the in-mesh caller (`sleep`) is.
#[derive(Debug, Clone)]
pub struct MeshEndpoints {
    /// The service address as an app calls it (`http://`); an in-mesh caller's sidecar
    /// upgrades the connection to mTLS.
    pub sidecar: Url,
    /// The service's name in the mesh (`httpbin.foo.svc.cluster.local`).
    pub service_host: String,
    /// The in-mesh caller's own sidecar (sleep's Envoy, configured by Istio): where `sleep`
    /// sends its plain-HTTP request for `service_host`, the sidecar originating mTLS. Without
    /// one the harness originates mTLS with the workload certificate itself.
    pub workload_proxy: Option<std::net::SocketAddr>,
    /// The mesh CA the in-mesh caller trusts.
    pub ca_pem: String,
    /// `spiffe://cluster.local/ns/foo/sa/sleep`.
    pub workload_id: String,
    pub workload_cert_pem: String,
    pub workload_key_pem: Secret,
    /// Callers the sidecar must refuse at the handshake (see [`crate::scenario::Caller`]).
    pub untrusted: ClientIdentity,
    pub expired: ClientIdentity,
    pub foreign_trust_domain: ClientIdentity,
}

/// Callers inside a deployment's mesh, where the harness runs curl as them: in pods the user
/// names (kube's websocket exec), or by commands that run curl where the caller is. Nothing
/// there is created or changed.
#[derive(Debug, Clone)]
pub struct MeshCallers {
    /// The service's address inside the mesh (`http://httpbin.foo.svc.cluster.local:8000`):
    /// what `${sidecar}` stands for.
    pub service: Url,
    /// How to reach the cluster of callers in pods.
    pub access: KubeAccess,
    /// A workload with a sidecar: its plain requests leave through the mesh (mTLS as the mesh
    /// decides), as seed 003's `sleep`.
    pub mesh_workload: CallerRef,
    /// A workload without a sidecar, where the user names one: plaintext from inside.
    pub outside_mesh: Option<CallerRef>,
}

/// How to reach the cluster's API server: a kubeconfig (absent: `$KUBECONFIG`, else
/// `~/.kube/config`) and the context to use in it (absent: its current context).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeAccess {
    pub kubeconfig: Option<std::path::PathBuf>,
    pub context: Option<String>,
}

/// Where an in-mesh caller's curl runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CallerRef {
    /// In a pod of the cluster, by exec.
    Pod(PodRef),
    /// On this machine, by a command that runs curl where the caller is.
    Command(CommandRef),
}

/// A command that runs curl where an in-mesh caller is (`[ssh, vm1, curl]`,
/// `[docker, exec, -i, sleep, curl]`, or curl itself with `--connect-to`): the harness adds
/// curl's arguments after it and writes the request's headers to its stdin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRef {
    pub command: Vec<String>,
}

impl CallerRef {
    /// The pod, or the command as written.
    pub fn describe(&self) -> String {
        match self {
            Self::Pod(pod) => pod.describe(),
            Self::Command(command) => format!("`{}`", command.command.join(" ")),
        }
    }
}

/// A pod (namespace, pod or selector, container) or a command (`command: [...]`), told apart by
/// the `command` key so that a mistake in either is reported as that one's.
impl<'de> serde::Deserialize<'de> for CallerRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let value = serde_json::Value::deserialize(deserializer)?;
        let parsed = if value.get("command").is_some() {
            serde_json::from_value(value).map(Self::Command)
        } else {
            serde_json::from_value(value).map(Self::Pod)
        };
        parsed.map_err(|e| {
            D::Error::custom(format!(
                "{e} (a caller is a pod: namespace, pod or selector, container; or a command: \
                 [program, args…] that runs curl where the caller is)"
            ))
        })
    }
}

/// A pod to run a caller in: by name, or the first running pod a label selector picks; the
/// container (absent: the pod's default) must have `curl`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodRef {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl PodRef {
    /// `ns/name`, or `ns/<selector>` until a pod is picked.
    pub fn describe(&self) -> String {
        match (&self.pod, &self.selector) {
            (Some(pod), _) => format!("{}/{pod}", self.namespace),
            (None, Some(selector)) => format!("{}/[{selector}]", self.namespace),
            (None, None) => format!("{}/?", self.namespace),
        }
    }
}

/// A client certificate and its key.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: Secret,
}

impl Endpoints {
    /// The deployment's own hosts (app, IdP, issuer): the only ones a scenario's browser goes to.
    pub fn hosts(&self) -> Vec<String> {
        let issuer = Url::parse(&self.issuer).ok();
        [Some(&self.app), Some(&self.idp), issuer.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|url| url.host_str().map(str::to_string))
            .chain(self.sign_in_hosts.iter().cloned())
            .collect()
    }

    pub fn variables(&self) -> Variables {
        let trim = |u: &Url| u.as_str().trim_end_matches('/').to_string();
        let sidecar = self
            .mesh
            .as_ref()
            .map(|m| &m.sidecar)
            .or(self.mesh_callers.as_ref().map(|c| &c.service))
            .map(|sidecar| ("sidecar", trim(sidecar)));
        let host = self.app.host_str().unwrap_or_default();
        let authority = match self.app.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Variables::new(
            sidecar.into_iter().chain([
                ("app", trim(&self.app)),
                ("idp", trim(&self.idp)),
                (
                    "idp_path",
                    self.idp.path().trim_end_matches('/').to_string(),
                ),
                ("issuer", self.issuer.clone()),
                ("client_id", self.client_id.clone()),
                ("username", self.user.username.clone()),
                ("email", self.user.email.clone()),
                ("role", self.role.clone()),
                ("roles_claim", self.roles_claim.clone()),
                ("session_cookie", self.session_cookie.clone()),
                ("csrf_cookie", format!("{}_csrf", self.session_cookie)),
                ("app_authority", authority.clone()),
                ("app_authority_upper", authority.to_uppercase()),
                (
                    "app_hostname",
                    self.app.host_str().unwrap_or_default().to_string(),
                ),
                (
                    "app_port",
                    self.app
                        .port_or_known_default()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                ),
            ]),
        )
    }
}
