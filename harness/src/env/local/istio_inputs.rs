//! The Istio inputs of one configuration (the deployment's objects, the local registry, the mesh
//! config and the user's overlay), as Istio's generator reads them for the local proxies, and
//! [`dump_istio`], what the generator makes of them.

use std::path::{Path, PathBuf};

use super::{LocalStack, write_private};
use crate::components::Toolchain;
use crate::env::istio::{self, IstioContext, LocalRegistryContext, ProxyIdentity, ServicePorts};
use crate::env::pki::RunPki;
use crate::env::ports::Ports;
use crate::env::{EnvError, StackConfig};

/// The Istio inputs of one configuration.
pub(super) struct IstioInputs {
    pub(super) policy: String,
    pub(super) registry: String,
    pub(super) mesh: String,
    /// The user's overlay files, by path relative to the overlay directory.
    pub(super) overlay: Option<Vec<(String, String)>>,
    pub(super) overlay_dir: Option<PathBuf>,
}

impl IstioInputs {
    fn render(
        config: &StackConfig,
        ports: &Ports,
        gateway_tls: (&str, &str),
        issuer: &str,
    ) -> Result<Self, EnvError> {
        let context = IstioContext::new(
            config,
            gateway_tls,
            issuer,
            ServicePorts {
                keycloak: ports.keycloak,
                oauth2_proxy: ports.oauth2_proxy,
                httpbin: ports.sidecar,
                echo: ports.echo_app,
                gateway_http_target: ports.gateway_http,
                gateway_app_http_target: ports.gateway_app_http,
                oidc_idp: ports.oidc_idp,
            },
        );
        let (policy, mesh) = context.render()?;
        let registry = crate::fixtures::render(
            istio::REGISTRY_FIXTURE,
            &LocalRegistryContext {
                istio: &context,
                httpbin_app_port: ports.httpbin,
                gateway_https_target_port: ports.gateway_https,
                gateway: ProxyIdentity::gateway(),
                httpbin: ProxyIdentity::httpbin(),
                sleep: ProxyIdentity::sleep(),
            },
        )?;
        let overlay = match &config.istio_overlay {
            Some(dir) => Some(crate::env::istio_overlay::read_files(dir)?),
            None => None,
        };
        Ok(Self {
            policy,
            registry,
            mesh,
            overlay,
            overlay_dir: config.istio_overlay.clone(),
        })
    }

    /// Writes the inputs under `root` for the generator, returning the directories it reads in
    /// order (the overlay last) and the mesh config's path.
    pub(super) fn write(&self, root: &Path) -> Result<Vec<PathBuf>, EnvError> {
        let _ = std::fs::remove_dir_all(root);
        let reference = root.join("reference");
        write_private(&reference.join("policy.yaml"), &self.policy)?;
        write_private(&reference.join("local-registry.yaml"), &self.registry)?;
        write_private(&root.join("mesh.yaml"), &self.mesh)?;
        let mut dirs = vec![reference];
        // The user's own directory, so that errors name their files.
        dirs.extend(self.overlay_dir.clone());
        Ok(dirs)
    }

    /// Everything the generator reads, as one text to compare configurations by.
    pub(super) fn digest(&self) -> String {
        let mut text = format!("{}\n{}\n{}", self.policy, self.registry, self.mesh);
        for (name, content) in self.overlay.iter().flatten() {
            text.push_str(&format!("\n# overlay {name}\n{content}"));
        }
        text
    }
}

impl LocalStack {
    /// The Istio objects and mesh config of this configuration, and the user's overlay.
    pub(super) fn istio_inputs(&self) -> Result<IstioInputs, EnvError> {
        IstioInputs::render(
            &self.config,
            &self.ports,
            (&self.gateway_tls.0, self.gateway_tls.1.expose()),
            &self.active_issuer(),
        )
    }
}

/// What Istio's generator makes of `config` for the local gateway and httpbin's sidecar:
/// `<out>/gateway.json` and `<out>/httpbin.json` (listeners, clusters, routes as Envoy gets
/// them), beside the inputs under `<out>/inputs/`. Ports are fixed, kind-like numbers so that
/// dumps of two configurations compare line by line.
pub fn dump_istio(
    toolchain: &Toolchain,
    config: &StackConfig,
    out: &Path,
) -> Result<Vec<PathBuf>, EnvError> {
    let ports = Ports {
        gateway_https: 8443,
        gateway_http: 8080,
        gateway_admin: 15000,
        oauth2_proxy: 4180,
        httpbin: 8081,
        keycloak: 8180,
        keycloak_management: 9000,
        sidecar: 8000,
        sidecar_admin: 15001,
        xds: 15010,
        sds: 15012,
        xds_health: 15014,
        sleep_admin: 15002,
        redis: 6379,
        echo_app: 8082,
        gateway_app_http: 8081,
        oidc_idp: 3000,
    };
    let pki = RunPki::generate()?;
    let issuer = format!(
        "http://127.0.0.1:{}/realms/{}",
        ports.gateway_http,
        config.realm.name()
    );
    let inputs = IstioInputs::render(
        config,
        &ports,
        (&pki.server_cert_pem, &pki.server_key_pem),
        &issuer,
    )?;
    let dirs = inputs.write(&out.join("inputs"))?;
    let proxies = out.join("inputs/proxies.json");
    write_private(
        &proxies,
        &istio::proxies_json(&[
            ("gateway", &ProxyIdentity::gateway()),
            ("httpbin", &ProxyIdentity::httpbin()),
            ("sleep", &ProxyIdentity::sleep()),
        ]),
    )?;
    let mut command = std::process::Command::new(&toolchain.istio_xds);
    command
        .arg("dump")
        .arg("--mesh")
        .arg(out.join("inputs/mesh.yaml"))
        .arg("--proxies")
        .arg(&proxies)
        .arg("--out")
        .arg(out);
    for dir in &dirs {
        command.arg("--config").arg(dir);
    }
    let output = command.output().map_err(|source| EnvError::Io {
        what: "run",
        path: toolchain.istio_xds.clone(),
        source,
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("\tinfo\t") && !l.contains("\terror\tCRD "))
            .collect();
        return Err(EnvError::Config {
            file: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            message: format!(
                "Istio's generator refused the configuration:\n{}",
                detail.join("\n")
            ),
            hint: "fix the object and field named above (Istio's own validation)".into(),
        });
    }
    Ok(vec![
        out.join("gateway.json"),
        out.join("httpbin.json"),
        out.join("sleep.json"),
    ])
}
