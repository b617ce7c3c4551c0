//! meshauth: end-to-end conformance and load testing of single sign-on at a service-mesh
//! gateway (Istio ingress gateway + `AuthorizationPolicy` CUSTOM → oauth2-proxy → OIDC IdP).
//!
//! Data flows one way: scenario files → [`scenario::Catalog`]; fixtures → component configs →
//! an environment's [`env::Endpoints`]; [`engine::Engine`] runs operations and emits
//! [`events::RunEvent`]s; [`report`] reporters consume them.

/// An error and every cause under it, `: `-joined: the causes (a TLS failure under reqwest's
/// "error sending request", the template line under a render error) are what users need.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub mod audit;
pub mod browser;
pub mod check;
pub mod cli;
pub mod components;
pub mod control;
pub mod endpoints;
pub mod engine;
pub mod env;
pub mod events;
pub mod files;
pub mod fixtures;
pub mod load;
pub mod oidc;
pub mod policy;
pub mod redact;
pub mod report;
pub mod scenario;
pub mod versions;

// The sample data lives with the tests; it names items as `meshauth::…` from either side.
#[cfg(test)]
extern crate self as meshauth;
#[cfg(test)]
#[path = "../tests/data/sample_events.rs"]
mod sample_events;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}
