//! The command-line tools the environment runs (docker, kind, istioctl), each checked before
//! anything is created, and how a failing run of one is reported.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::EnvError;

/// A tool the environment runs, and what to do when it is missing.
struct Tool {
    name: &'static str,
    purpose: &'static str,
    fix: &'static str,
}

const DOCKER: Tool = Tool {
    name: "docker",
    purpose: "run the kind cluster's node container",
    fix: "install Docker (or another engine kind supports) and start it; on machines without a container engine use `--env local`",
};
const PODMAN: Tool = Tool {
    name: "podman",
    purpose: "run the kind cluster's node (the engine is podman: kind's podman provider uses its CLI)",
    fix: "install podman's CLI beside its API service (`apt-get install podman`)",
};
const KIND: Tool = Tool {
    name: "kind",
    purpose: "create the Kubernetes cluster",
    fix: "install kind (`go install sigs.k8s.io/kind@v0.33.0`) and make sure it is on PATH; with `--images local`, `meshauth images build --kind` builds it",
};
const ISTIOCTL: Tool = Tool {
    name: "istioctl",
    purpose: "install Istio into the cluster",
    fix: "install a release istioctl (the archive from Istio's releases page) and make sure it is on PATH; a `go install` build reports no version and installs test images; with `--images local`, `meshauth images build --kind` builds one with its images",
};

fn find_on_path(tool: &Tool) -> Result<PathBuf, EnvError> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(tool.name))
        .find(|candidate| candidate.is_file())
        .ok_or(EnvError::MissingTool {
            tool: tool.name,
            purpose: tool.purpose,
            fix: tool.fix,
        })
}

/// The tools the environment needs, checked before anything is created. Docker and its engine
/// come first: without an engine nothing else matters.
#[derive(Debug, Clone)]
pub struct KindTools {
    pub docker: PathBuf,
    pub kind: PathBuf,
    pub istioctl: PathBuf,
    /// The engine behind the docker CLI is podman (its Docker-compatible API): kind must use
    /// its podman provider, which runs the node with the `podman` CLI.
    pub podman: bool,
    /// istioctl's release version (`1.31.0`), the tag of Istio's images.
    pub istio_version: String,
}

impl KindTools {
    /// The tools on `PATH`; `built` (kind and istioctl built with the local images, `meshauth
    /// images build --kind`) stand in for those two, so istioctl's version is the images' tag.
    pub fn find(built: Option<(&Path, &Path)>) -> Result<Self, EnvError> {
        let docker = find_on_path(&DOCKER)?;
        run_tool(
            Command::new(&docker).args(["info", "--format", "{{.ServerVersion}}"]),
            "reach the Docker engine (the docker CLI is installed, but no engine answers)",
            "start the Docker daemon and make sure this user may use it (`docker info` must work); on machines without a container engine use `--env local`",
        )?;
        let components = run_tool(
            Command::new(&docker).args(["version", "--format", "{{json .Server.Components}}"]),
            "ask the engine which it is",
            "`docker version` must work",
        )?;
        let podman = is_podman(&components);
        if podman {
            find_on_path(&PODMAN)?;
        }
        let (kind, istioctl) = match built {
            Some((kind, istioctl)) => (kind.to_path_buf(), istioctl.to_path_buf()),
            None => (find_on_path(&KIND)?, find_on_path(&ISTIOCTL)?),
        };
        let istio_version = release_istioctl(&istioctl)?;
        Ok(Self {
            docker,
            kind,
            istioctl,
            podman,
            istio_version,
        })
    }

    /// A `kind` command with the provider the engine needs: with podman,
    /// `KIND_EXPERIMENTAL_PROVIDER=podman`. Without it kind picks its docker provider as soon as
    /// a docker CLI is on PATH; its podman provider is the one proven against podman
    /// (docs/cluster-lab.md §4e). Every kind command (create, load, export logs, delete) must
    /// use the same provider, or it does not find the cluster.
    pub fn kind(&self) -> Command {
        let mut command = Command::new(&self.kind);
        if self.podman {
            command.env("KIND_EXPERIMENTAL_PROVIDER", "podman");
        }
        command
    }
}

/// `docker version`'s server components name podman's engine (`Podman Engine`) when the API
/// is podman's.
fn is_podman(components: &str) -> bool {
    components.contains("Podman Engine")
}

/// An istioctl built from source (`go install …/istioctl`) reports no release version and its
/// default profile installs test images: only a release istioctl is used.
fn release_istioctl(istioctl: &Path) -> Result<String, EnvError> {
    let output = run_tool(
        Command::new(istioctl).args(["version", "--remote=false", "--short"]),
        "ask istioctl for its version",
        "install a release istioctl (the archive from Istio's releases)",
    )?;
    let version = output.trim().trim_start_matches("client version:").trim();
    if is_release_version(version) {
        Ok(version.to_string())
    } else {
        Err(EnvError::Cluster {
            what: format!("istioctl at {} is not a release build", istioctl.display()),
            detail: format!("it reports version {version:?}"),
            fix: "install a release istioctl (the archive from Istio's releases page, e.g. 1.31.x); a `go install` build installs Istio's test images".into(),
        })
    }
}

/// `1.31.1`, not `unknown`, a `-dev` build or a commit hash.
fn is_release_version(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Runs a tool to completion; a failure names the command, its output's tail and the fix.
pub(super) fn run_tool(command: &mut Command, what: &str, fix: &str) -> Result<String, EnvError> {
    let shown = format!("{command:?}").replace('"', "");
    tracing::debug!(command = %shown, "running");
    let output = command.output().map_err(|e| EnvError::Cluster {
        what: format!("could not {what}: `{shown}`"),
        detail: e.to_string(),
        fix: fix.into(),
    })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let combined = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = combined.lines().collect();
    Err(EnvError::Cluster {
        what: format!("could not {what}: `{shown}` exited with {}", output.status),
        detail: lines[lines.len().saturating_sub(20)..].join("\n"),
        fix: fix.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_release_istioctl_is_used() {
        assert!(is_release_version("1.31.1"));
        for version in ["unknown", "1.31-dev", "1.31.0-alpha.1", "eed52ebb66ad", ""] {
            assert!(!is_release_version(version), "{version}");
        }
    }

    #[test]
    fn podman_is_told_from_its_components() {
        assert!(is_podman(
            r#"[{"Name":"Podman Engine","Version":"4.3.1"},{"Name":"Conmon","Version":"2.1.6"}]"#
        ));
        assert!(!is_podman(
            r#"[{"Name":"Engine","Version":"27.3.1"},{"Name":"containerd","Version":"1.7.22"}]"#
        ));
    }

    #[test]
    fn a_missing_tool_names_itself_and_the_fix() {
        let missing = Tool {
            name: "meshauth-no-such-tool",
            purpose: "prove the error",
            fix: "install it",
        };
        let error = find_on_path(&missing).unwrap_err().to_string();
        assert_eq!(
            error,
            "meshauth-no-such-tool is not on PATH (needed to prove the error)\nhow to fix: install it"
        );
    }
}
