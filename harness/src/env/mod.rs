//! Environments hand out [`Endpoints`]: where the app, the IdP and the issuer are, and who the
//! test user is. `local` starts real components on loopback; `existing` reads a user's own
//! deployment from a file; `kind` deploys the same apps with Istio on a kind cluster. Environments never judge outcomes.

pub mod existing;
pub mod kind;
pub mod local;
pub mod pki;
pub mod ports;

use std::path::PathBuf;

use serde::Serialize;
use url::Url;

use crate::components::ComponentError;
use crate::redact::Secret;
use crate::scenario::Variables;

pub use local::{LocalStack, StackConfig, StackEvent};

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
    #[error("{file}: {message}\nhow to fix: {hint}")]
    Config {
        file: String,
        message: String,
        hint: String,
    },
}

/// The test user the scenarios sign in as.
#[derive(Debug, Clone, Serialize)]
pub struct TestUser {
    pub username: String,
    pub password: Secret,
    pub email: String,
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
    /// The realm role the test user has, and the claim the mapper puts it in.
    pub role: String,
    pub roles_claim: String,
    /// An extra CA to trust (the local environment's per-run CA).
    #[serde(skip)]
    pub ca_pem: Option<String>,
}

impl Endpoints {
    pub fn variables(&self) -> Variables {
        let trim = |u: &Url| u.as_str().trim_end_matches('/').to_string();
        Variables::new([
            ("app", trim(&self.app)),
            ("idp", trim(&self.idp)),
            ("issuer", self.issuer.clone()),
            ("client_id", self.client_id.clone()),
            ("username", self.user.username.clone()),
            ("email", self.user.email.clone()),
            ("role", self.role.clone()),
            ("roles_claim", self.roles_claim.clone()),
        ])
    }
}
