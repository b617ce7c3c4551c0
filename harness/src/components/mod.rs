//! The real components of the stack: one module per component knows its pinned version, how to
//! obtain it through its ordinary package client, and how to start it. Nothing here knows about
//! scenarios.

pub mod container;
pub mod images;
pub mod install;
pub mod java;
pub mod kind_images;
pub mod process;

use std::path::PathBuf;

pub use install::{
    ApiSchemas, CacheDir, ControlPlaneBinaries, InstallEvent, Toolchain, ensure_api_schemas,
    ensure_control_plane, ensure_installed, ensure_installed_set,
};
pub use process::{Launch, Supervised};
// The versions are data that reports and events need; they live in `crate::versions`, a room
// that starts nothing, and keep their paths here.
pub use crate::versions::ComponentVersion;
pub use crate::versions::pinned as versions;
pub use crate::versions::sets as version_sets;

/// How Envoy is started everywhere: one worker (the machine has two cores shared with the rest
/// of the stack) and no hot-restart shared memory, so several Envoys can run side by side.
pub fn envoy_launch(envoy: &std::path::Path, config: &std::path::Path, log: PathBuf) -> Launch {
    Launch::new("envoy", envoy, log)
        .arg("-c")
        .arg(config.display().to_string())
        .args([
            "--concurrency",
            "1",
            // As Istio's pilot-agent starts it: access logs written out every second (Envoy's
            // own default is 10 s), so a load run's per-hop lines are on disk a second after.
            "--file-flush-interval-msec",
            "1000",
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ])
}

#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error(
        "installing {component} failed: `{command}` exited with {status}\n--- last output ---\n{tail}\n--- how to fix ---\n{hint}"
    )]
    Install {
        component: &'static str,
        command: String,
        status: String,
        tail: String,
        hint: String,
    },
    #[error("{component}: `{program}` could not be started: {source}")]
    Spawn {
        component: &'static str,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{component} is not usable: {reason}\nhow to fix: {hint}")]
    Unusable {
        component: &'static str,
        reason: String,
        hint: String,
    },
    #[error(
        "{component} did not become ready within {seconds}s (probe: {probe})\n--- last lines of {log} ---\n{tail}"
    )]
    NotReady {
        component: &'static str,
        seconds: u64,
        probe: String,
        log: String,
        tail: String,
    },
    #[error(
        "{component} could not bind its port: address already in use ({status})\n--- last lines of {log} ---\n{tail}"
    )]
    AddressInUse {
        component: &'static str,
        status: String,
        log: String,
        tail: String,
    },
    #[error("{component} died ({status})\n--- last lines of {log} ---\n{tail}")]
    Died {
        component: &'static str,
        status: String,
        log: String,
        tail: String,
    },
    #[error("{component} exited during start-up ({status})\n--- last lines of {log} ---\n{tail}")]
    Exited {
        component: &'static str,
        status: String,
        log: String,
        tail: String,
    },
}
