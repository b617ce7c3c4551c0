//! Components from their official images (the `containers` environment), started with
//! `testcontainers` on the host's network, so that every rendered file, port and probe of the
//! local stack holds unchanged. Each container is run by a small supervising process, the
//! `meshauth` binary itself (`container-shim`): the stack supervises it like any component
//! (its output is the container's log, TERM stops the container, its exit is the container's),
//! and it pauses and unpauses the container on SIGUSR1 and SIGUSR2, as SIGSTOP freezes a local
//! process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use testcontainers::core::{AccessMode, Mount};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{GenericImage, ImageExt as _};
use tokio::io::AsyncBufReadExt as _;

use super::versions;
use super::{ComponentError, Launch};

/// The images the containers environment runs, each as its project publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerImages {
    pub keycloak: String,
    pub oauth2_proxy: String,
    pub httpbin: String,
    pub redis: String,
    pub envoy: String,
    /// The second OpenID Provider is a Node.js program (`oidc-idp/`): it runs on Node's image.
    pub node: String,
}

impl ContainerImages {
    /// Every image, each once.
    pub fn all(&self) -> [&str; 6] {
        [
            &self.keycloak,
            &self.oauth2_proxy,
            &self.httpbin,
            &self.redis,
            &self.envoy,
            &self.node,
        ]
    }

    pub fn pinned() -> Self {
        Self {
            keycloak: format!("quay.io/keycloak/keycloak:{}", versions::KEYCLOAK),
            oauth2_proxy: format!(
                "quay.io/oauth2-proxy/oauth2-proxy:{}",
                versions::OAUTH2_PROXY
            ),
            // go-httpbin tags its images without the leading `v`.
            httpbin: format!(
                "docker.io/mccutchen/go-httpbin:{}",
                versions::HTTPBIN.trim_start_matches('v')
            ),
            redis: format!("docker.io/library/redis:{}", versions::REDIS),
            envoy: format!("docker.io/envoyproxy/envoy:v{}", versions::ENVOY),
            node: "docker.io/library/node:22-bookworm-slim".into(),
        }
    }
}

/// One container as the shim starts it: the image, the command (the image's own program and
/// the component's arguments), the environment, and the host directories it sees at the same
/// paths (the run directory with the rendered files; read-only caches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub entrypoint: Option<String>,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<(PathBuf, PathBuf, bool)>,
    /// `uid:gid`: the host user, so that the rendered files (mode 0600) can be read; group 0,
    /// which images built for arbitrary user ids (Keycloak's) give write access to.
    pub user: String,
}

impl ContainerSpec {
    pub fn new(name: &str, image: &str) -> Self {
        // SAFETY: getuid(2) cannot fail and touches no memory.
        let uid = unsafe { libc::getuid() };
        Self {
            name: name.to_string(),
            image: image.to_string(),
            entrypoint: None,
            command: Vec::new(),
            env: Vec::new(),
            mounts: Vec::new(),
            user: format!("{uid}:0"),
        }
    }

    /// The host directory `dir`, at the same path inside the container.
    pub fn sees(mut self, dir: &Path, writable: bool) -> Self {
        self.mounts
            .push((dir.to_path_buf(), dir.to_path_buf(), writable));
        self
    }

    /// The launch that runs this container under the shim in place of `local` (its name and
    /// log kept): the `meshauth` binary, the spec in a private file beside the component's log
    /// (it holds the component's secrets, as its environment does for a local process).
    pub fn launch(&self, local: &Launch) -> Result<Launch, ComponentError> {
        let log_path = &local.log_path;
        let spec_path = log_path.with_extension("container.json");
        let text = serde_json::to_string(self).map_err(|e| ComponentError::Io {
            what: format!("serialize the container spec of {}", self.name),
            source: std::io::Error::other(e),
        })?;
        crate::files::write_private(&spec_path, &text).map_err(|source| ComponentError::Io {
            what: format!("write {}", spec_path.display()),
            source,
        })?;
        let program = std::env::current_exe().map_err(|source| ComponentError::Io {
            what: "find the meshauth binary (the container shim)".into(),
            source,
        })?;
        let mut launch = Launch::new(local.name, program, log_path.to_path_buf())
            .arg("container-shim")
            .arg(spec_path.display().to_string());
        launch.pause_signals = (libc::SIGUSR1, libc::SIGUSR2);
        Ok(launch)
    }

    fn image_name_and_tag(&self) -> (String, String) {
        // The tag follows the last ':' after the last '/' (a registry may carry a port).
        let slash = self.image.rfind('/').map(|i| i + 1).unwrap_or(0);
        match self.image[slash..].rfind(':') {
            Some(colon) => (
                self.image[..slash + colon].to_string(),
                self.image[slash + colon + 1..].to_string(),
            ),
            None => (self.image.clone(), "latest".into()),
        }
    }
}

/// Whether a Docker engine answers (`DOCKER_HOST`, else the default socket), and if not, what
/// is missing and how to fix it.
pub async fn engine_available() -> Result<String, String> {
    let docker = testcontainers::bollard::Docker::connect_with_defaults()
        .map_err(|e| format!("no Docker engine configuration is usable: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(5), docker.version()).await {
        Ok(Ok(version)) => Ok(format!(
            "Docker engine {}",
            version
                .version
                .unwrap_or_else(|| "(version unknown)".into())
        )),
        Ok(Err(error)) => Err(format!(
            "no Docker engine answers at {}: {error}",
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
        )),
        Err(_) => Err("the Docker engine did not answer within 5 s".into()),
    }
}

/// Pulls every image the stack runs, before anything starts: a first pull takes longer than a
/// component's readiness wait, and a missing image is better said up front, by name.
pub async fn pull_all(images: &ContainerImages, progress: &dyn Fn(&str)) -> Result<(), String> {
    use futures::StreamExt as _;
    use testcontainers::bollard::query_parameters::CreateImageOptionsBuilder;
    let docker = testcontainers::bollard::Docker::connect_with_defaults()
        .map_err(|e| format!("no Docker engine configuration is usable: {e}"))?;
    for image in images.all() {
        if docker.inspect_image(image).await.is_ok() {
            continue;
        }
        progress(image);
        let mut pull = docker.create_image(
            Some(CreateImageOptionsBuilder::new().from_image(image).build()),
            None,
            None,
        );
        while let Some(step) = pull.next().await {
            step.map_err(|e| {
                format!(
                    "pulling {image} failed: {e}\nhow to fix: check the reference and that \
                     this machine may pull from its registry"
                )
            })?;
        }
    }
    Ok(())
}

/// The shim: starts the container, copies its output to ours, stops it on TERM or INT,
/// pauses it on USR1 and unpauses it on USR2, and exits with its exit code (an error when that
/// is unknown).
pub async fn run_shim(spec_path: &Path) -> Result<i32, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let text = std::fs::read_to_string(spec_path)
        .map_err(|e| format!("read the container spec {}: {e}", spec_path.display()))?;
    // The spec holds secrets: read once, then gone.
    let _ = std::fs::remove_file(spec_path);
    let spec: ContainerSpec =
        serde_json::from_str(&text).map_err(|e| format!("the container spec is invalid: {e}"))?;
    let (name, tag) = spec.image_name_and_tag();
    let mut image = GenericImage::new(name, tag);
    if let Some(entrypoint) = &spec.entrypoint {
        image = image.with_entrypoint(entrypoint);
    }
    let mut request = image
        .with_cmd(spec.command.clone())
        // The network mode, not `with_network("host")`: that looks "host" up among the
        // engine's networks, which podman does not list, and then tries to create it.
        .with_host_config_modifier(|config| config.network_mode = Some("host".into()))
        .with_user(spec.user.clone())
        .with_labels([("meshauth.component", spec.name.as_str())])
        .with_startup_timeout(Duration::from_secs(600));
    for (key, value) in &spec.env {
        request = request.with_env_var(key, value);
    }
    for (host, inside, writable) in &spec.mounts {
        let mount = Mount::bind_mount(host.display().to_string(), inside.display().to_string())
            .with_access_mode(if *writable {
                AccessMode::ReadWrite
            } else {
                AccessMode::ReadOnly
            });
        request = request.with_mount(mount);
    }
    let container = request
        .start()
        .await
        .map_err(|e| format!("starting {} ({}) failed: {e}", spec.name, spec.image))?;
    let mut stdout = container.stdout(true);
    let mut stderr = container.stderr(true);
    let copy_out = async {
        let mut line = String::new();
        while stdout.read_line(&mut line).await.is_ok_and(|n| n > 0) {
            print!("{line}");
            line.clear();
        }
    };
    let copy_err = async {
        let mut line = String::new();
        while stderr.read_line(&mut line).await.is_ok_and(|n| n > 0) {
            eprint!("{line}");
            line.clear();
        }
    };
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut pause = signal(SignalKind::user_defined1()).map_err(|e| e.to_string())?;
    let mut unpause = signal(SignalKind::user_defined2()).map_err(|e| e.to_string())?;
    let logs = async { tokio::join!(copy_out, copy_err) };
    tokio::pin!(logs);
    loop {
        tokio::select! {
            _ = &mut logs => break,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = pause.recv() => {
                if let Err(error) = container.pause().await {
                    eprintln!("meshauth: pausing {} failed: {error}", spec.name);
                }
            }
            _ = unpause.recv() => {
                if let Err(error) = container.unpause().await {
                    eprintln!("meshauth: unpausing {} failed: {error}", spec.name);
                }
            }
        }
    }
    // A paused container would hold its stop until the timeout.
    let _ = container.unpause().await;
    let _ = container.stop_with_timeout(Some(5)).await;
    let code = container.exit_code().await.map_err(|e| e.to_string());
    let _ = container.rm().await;
    shim_exit_code(&spec.name, code)
}

/// The shim's exit code: the container's, which must be known. A container whose exit code
/// the engine cannot tell (it is still running, or inspecting it failed) did not exit 0 as far
/// as anyone knows: an error naming the container, never a success. A code outside 0..=255
/// (which a process cannot exit with) becomes 1.
fn shim_exit_code(name: &str, code: Result<Option<i64>, String>) -> Result<i32, String> {
    match code {
        Ok(Some(code)) => Ok(i32::try_from(code)
            .ok()
            .filter(|c| (0..=255).contains(c))
            .unwrap_or(1)),
        Ok(None) => Err(format!(
            "the exit code of container {name} is unknown: the container engine reports none \
             (the container may still be running)"
        )),
        Err(error) => Err(format!(
            "the exit code of container {name} is unknown: asking the container engine failed: \
             {error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_name_and_tag() {
        let spec = |image: &str| ContainerSpec::new("x", image).image_name_and_tag();
        assert_eq!(
            spec("quay.io/keycloak/keycloak:26.7.3"),
            ("quay.io/keycloak/keycloak".into(), "26.7.3".into())
        );
        assert_eq!(
            spec("registry.local:5000/envoy:v1.40.0"),
            ("registry.local:5000/envoy".into(), "v1.40.0".into())
        );
        assert_eq!(
            spec("registry.local:5000/envoy"),
            ("registry.local:5000/envoy".into(), "latest".into())
        );
    }

    #[test]
    fn pinned_images_are_complete_references() {
        let images = ContainerImages::pinned();
        assert_eq!(images.httpbin, "docker.io/mccutchen/go-httpbin:2.26.0");
        assert_eq!(images.envoy, "docker.io/envoyproxy/envoy:v1.40.0");
        for image in images.all() {
            assert_eq!(image.split('/').count(), 3, "{image}");
        }
    }

    /// An unknown exit code is an error saying so, never the success it used to be reported
    /// as; known codes pass through.
    #[test]
    fn an_unknown_exit_code_is_an_error_not_zero() {
        let error = shim_exit_code("keycloak", Ok(None)).unwrap_err();
        assert!(
            error.contains("the exit code of container keycloak is unknown"),
            "{error}"
        );
        let error = shim_exit_code("envoy", Err("connection refused".into())).unwrap_err();
        assert!(
            error.contains("container envoy is unknown") && error.contains("connection refused"),
            "{error}"
        );
        assert_eq!(shim_exit_code("x", Ok(Some(0))), Ok(0));
        assert_eq!(shim_exit_code("x", Ok(Some(143))), Ok(143));
        assert_eq!(shim_exit_code("x", Ok(Some(-1))), Ok(1));
        assert_eq!(shim_exit_code("x", Ok(Some(4096))), Ok(1));
    }
}
