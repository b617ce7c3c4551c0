//! Environments hand out [`Endpoints`]: where the app, the IdP and the issuer are, and who the
//! test user is. `local` starts real components on loopback; `existing` reads a user's own
//! deployment from a file; `kind` deploys the same apps with Istio on a kind cluster. Environments never judge outcomes.

pub mod existing;
pub mod impostor;
pub mod istio;
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
