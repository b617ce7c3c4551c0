//! The `local` environment: real Keycloak, oauth2-proxy, httpbin and three Envoys (the Istio
//! ingress gateway, httpbin's sidecar, sleep's sidecar) configured by Istio's own generator
//! (`istio-xds`) from the deployment's Istio objects, as supervised processes on loopback,
//! mirroring seed 000 (and seed 003's mesh policies). Changing the stack's configuration
//! restarts only the components it affects.
//!
//! One file per concern: `lifecycle` (start, converge, stop), `launch` (how each component is
//! started), `readiness` (when it serves), `render` and `istio_inputs` (what it is started
//! from), `addresses` (where it is reached), `secrets`, `keycloak_admin` (live changes through
//! Keycloak's admin API), `control` (profiles, disruptions and the impostor, for the runner)
//! and `containers` (the same components from their official images).
//!
//! The stack's knobs ([`StackConfig`]) and the deployment's names live in `env/` beside this
//! folder, so that the Istio objects and the kind environment render them without importing
//! the room that starts processes.

mod addresses;
mod containers;
mod control;
mod istio_inputs;
mod keycloak_admin;
mod launch;
mod lifecycle;
mod readiness;
mod render;
mod secrets;

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::ports::{Component, Ports};
use super::{Endpoints, EnvError};
use crate::components::{Supervised, Toolchain};
use crate::events::EnvironmentInfo;
use crate::policy::KeycloakRealm;
use crate::redact::Secret;
use keycloak_admin::IdpChange;
use secrets::Secrets;

// Every path other code names as `env::local::…` resolves as it did before the split.
pub use super::names::{
    CLIENT_ROLE, CUSTOM_ROLES_CLAIM, ECHO_PREFIX, EMAIL, OIDC_IDP_CLIENT_ID, OTHER_CLIENT_ID, ROLE,
    ROLES_CLAIM, ROLES_CLIENT_ID, SECOND_EMAIL, SECOND_USERNAME, SESSION_REFRESH_SECONDS,
    SHORT_TOKEN_LIFETIME_SECONDS, UPSTREAM_ALIAS, UPSTREAM_CLIENT_ID, UPSTREAM_EMAIL,
    UPSTREAM_USERNAME, USERNAME,
};
pub use super::stack_config::{LoginTheme, SessionStore, StackConfig};
pub use containers::{Runtime, container_spec};
pub use istio_inputs::dump_istio;
pub use secrets::RealmSecrets;
// The kind environment renders the same realm and oauth2-proxy config.
pub(super) use render::{OAUTH2_PROXY_FIXTURE, OAuth2ProxyContext, REALM_FIXTURE, RealmContext};

/// Start-up progress, for a progress display.
#[derive(Debug, Clone)]
pub enum StackEvent {
    Starting(&'static str),
    Ready {
        component: &'static str,
        after: Duration,
    },
    /// The loopback ports a component is about to bind.
    Binding {
        component: &'static str,
        ports: Vec<u16>,
    },
    /// A component's ports were taken and it is started again on new ones.
    Retrying {
        component: &'static str,
        detail: String,
    },
}

/// A started component and everything it was started from (rendered configuration, ports,
/// secrets), to tell whether a change affects it.
struct Running {
    component: Component,
    process: Supervised,
    inputs: String,
}

/// A running local stack. Dropping it stops every process.
pub struct LocalStack {
    toolchain: Toolchain,
    run_dir: PathBuf,
    ports: Ports,
    secrets: Secrets,
    /// The configuration as started or last reconfigured; scenarios' profiles apply to it.
    base: StackConfig,
    /// What runs now: `base` with the current scenario's profile.
    config: StackConfig,
    issuer: String,
    endpoints: Endpoints,
    probe: reqwest::Client,
    runtime: Runtime,
    /// PEM of the gateway's serving certificate and key (the `credentialName` secret).
    gateway_tls: (String, Secret),
    /// In start order; stopped in reverse.
    running: Vec<Running>,
    /// Running components frozen by a scenario (SIGSTOP), until it restores them.
    paused: Vec<Component>,
    keycloak_ready: bool,
    /// The realm's `frontendUrl` as the running Keycloak has it.
    realm_frontend_url: Option<String>,
    /// Each realm as the running Keycloak imported it (rendered without `frontendUrl`): a
    /// realm that changes is imported again live, never by a restart.
    keycloak_realms: Vec<(KeycloakRealm, String)>,
    /// httpbin's identity from a CA the mesh does not trust, for the impostor.
    impostor_certificate: (String, Secret),
    /// The impostor in httpbin's sidecar's place, while a scenario has it there.
    impostor: Option<super::impostor::Impostor>,
    /// What scenarios changed at Keycloak through its admin API, undone when they restore it.
    idp_changes: Vec<IdpChange>,
    /// The second OpenID Provider issues wrong ID tokens (a scenario's disruption).
    id_tokens_forged: bool,
}

impl LocalStack {
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The Keycloak bootstrap admin's password (for `meshauth up` users).
    pub fn admin_password(&self) -> &Secret {
        &self.secrets.admin_password
    }

    /// Where the components' own timing and CPU counters are, when the stack was started for a
    /// load run (`StackConfig::hop_timing`).
    pub fn telemetry(&self) -> Option<super::ComponentTelemetry> {
        if !self.config.hop_timing {
            return None;
        }
        let log_of = |component: Component| {
            self.running
                .iter()
                .find(|r| r.component == component)
                .map(|r| r.process.log_path().to_path_buf())
        };
        let processes = match self.runtime {
            Runtime::Processes => self
                .running
                .iter()
                .map(|r| super::ComponentProcess {
                    component: match r.component {
                        Component::Gateway => "gateway",
                        Component::Sidecar => "app sidecar",
                        other => other.name(),
                    },
                    process_group: r.process.pid(),
                })
                .collect(),
            Runtime::Containers(_) => Vec::new(),
        };
        Some(super::ComponentTelemetry {
            gateway_log: log_of(Component::Gateway)?,
            sidecar_log: log_of(Component::Sidecar),
            processes,
        })
    }

    pub fn info(&self) -> EnvironmentInfo {
        EnvironmentInfo {
            kind: match self.runtime {
                Runtime::Processes => "local",
                Runtime::Containers(_) => "containers",
            }
            .into(),
            app_url: self.endpoints.app.to_string(),
            idp_url: self.endpoints.idp.to_string(),
            issuer: self.issuer.clone(),
            profile: self.config.profile(),
            components: self.toolchain.versions.clone(),
            run_dir: Some(self.run_dir.display().to_string()),
            left_out: Vec::new(),
            limits: vec![format!(
                "httpbin itself listens on 127.0.0.1:{}, reachable without its sidecar: processes \
                 on loopback cannot have their inbound traffic redirected to a sidecar as a pod's \
                 is, so here the sidecar can be bypassed where a real mesh closes that path \
                 (the mesh checks target the sidecar's port)",
                self.ports.httpbin
            )],
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.stop();
    }
}

fn url(text: &str) -> Url {
    Url::parse(text).expect("loopback URLs built from ports are valid")
}

/// Writes a file readable only by the user: rendered configs can hold secrets.
fn write_private(path: &Path, contents: &str) -> Result<(), EnvError> {
    crate::files::write_private(path, contents).map_err(|source| EnvError::Io {
        what: "write",
        path: path.to_path_buf(),
        source,
    })
}
