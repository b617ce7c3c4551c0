//! Environments hand out [`Endpoints`]: where the app, the IdP and the issuer are, and who the
//! test user is. `local` starts real components on loopback; `existing` reads a user's own
//! deployment from a file; `kind` deploys the same apps with Istio on a kind cluster. Environments never judge outcomes.

pub mod existing;
pub mod impostor;
pub mod istio;
pub mod istio_overlay;
pub mod kind;
pub mod local;
mod names;
pub mod pki;
pub mod ports;
pub mod profiles;
mod stack_config;

use std::path::PathBuf;

use crate::components::ComponentError;

pub use crate::endpoints::{ClientCredentials, ClientIdentity, Endpoints, MeshEndpoints, TestUser};
pub use local::{LocalStack, StackEvent};
pub use pki::MeshPki;
pub use profiles::DeploymentProfile;
pub use stack_config::StackConfig;

/// Where a running environment's components show their own timing and CPU use, for a load
/// run's per-hop breakdown (`StackConfig::hop_timing`).
#[derive(Debug, Clone)]
pub struct ComponentTelemetry {
    /// The gateway's access log, in the `istio::HOP_TIMING_LOG_FORMAT` line.
    pub gateway_log: PathBuf,
    /// The app's sidecar's access log, in the same line.
    pub sidecar_log: Option<PathBuf>,
    /// Each component's process group (`/proc` CPU counters); empty where the components run
    /// somewhere the harness cannot read them (containers, a cluster).
    pub processes: Vec<ComponentProcess>,
}

#[derive(Debug, Clone)]
pub struct ComponentProcess {
    pub component: &'static str,
    /// The process group's leader: the component and every process it started.
    pub process_group: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Component(#[from] ComponentError),
    #[error(transparent)]
    Fixture(#[from] crate::fixtures::FixtureError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "port {port} on 127.0.0.1 ({purpose}) is already in use\nhow to fix: stop whatever listens there, or choose another port"
    )]
    PortInUse { port: u16, purpose: String },
    #[error("{tool} is not on PATH (needed to {purpose})\nhow to fix: {fix}")]
    MissingTool {
        tool: &'static str,
        purpose: &'static str,
        fix: &'static str,
    },
    #[error("{what}: {detail}\nhow to fix: {fix}")]
    Cluster {
        what: String,
        detail: String,
        fix: String,
    },
    #[error(
        "Keycloak's admin API could not {what}: {detail}\nhow to fix: read keycloak.log in the run directory"
    )]
    IdpAdmin { what: &'static str, detail: String },
    #[error("{file}: {message}\nhow to fix: {hint}")]
    Config {
        file: String,
        message: String,
        hint: String,
    },
}

impl From<&pki::WorkloadCert> for ClientIdentity {
    fn from(cert: &pki::WorkloadCert) -> Self {
        Self {
            cert_pem: cert.cert_pem.clone(),
            key_pem: cert.key_pem.clone(),
        }
    }
}
