//! The containers environment's runtime: each component from its official image, run with the
//! local launch's own arguments and environment.

use std::path::{Path, PathBuf};

use crate::components::Launch;
use crate::components::container::{ContainerImages, ContainerSpec};
use crate::env::ports::Component;

/// How the stack runs its components.
#[derive(Debug, Clone, Default)]
pub enum Runtime {
    /// As processes on this machine, from the component cache (`local`).
    #[default]
    Processes,
    /// From their official images on the host's network (`containers`; needs Docker).
    Containers(ContainerImages),
}

/// The container that runs `component` as `launch` would run it locally: the image's own
/// program with the same arguments and environment, seeing the run directory (the rendered
/// files) at the same path. `None` for what has no image.
pub fn container_spec(
    component: Component,
    launch: &Launch,
    images: &ContainerImages,
    run_dir: &Path,
) -> Option<ContainerSpec> {
    let spec = |image: &str| {
        let mut spec = ContainerSpec::new(component.name(), image).sees(run_dir, true);
        spec.command = launch.args.clone();
        spec.env = launch.env.clone();
        spec
    };
    Some(match component {
        Component::IstioXds => return None,
        Component::Keycloak => {
            let mut spec = spec(&images.keycloak);
            // The image is built with Keycloak's defaults: `start` builds ours in.
            spec.command = launch
                .args
                .iter()
                .flat_map(|arg| {
                    if arg == "--optimized" {
                        crate::components::install::KEYCLOAK_BUILD_OPTIONS
                            .iter()
                            .map(|o| o.to_string())
                            .collect()
                    } else {
                        vec![arg.clone()]
                    }
                })
                .collect();
            spec.env.retain(|(key, _)| key != "JAVA_HOME");
            let import = launch.cwd.as_ref()?.join("data/import");
            spec.mounts
                .push((import, PathBuf::from("/opt/keycloak/data/import"), false));
            spec
        }
        Component::OAuth2Proxy => spec(&images.oauth2_proxy),
        Component::Httpbin | Component::EchoApp => {
            // go-httpbin's image names its program in CMD only, which our arguments replace.
            let mut spec = spec(&images.httpbin);
            spec.entrypoint = Some("/bin/go-httpbin".into());
            spec
        }
        Component::Redis => {
            let mut spec = spec(&images.redis);
            spec.entrypoint = Some("redis-server".into());
            spec
        }
        Component::Gateway | Component::Sidecar | Component::SleepSidecar => {
            let mut spec = spec(&images.envoy);
            spec.entrypoint = Some("envoy".into());
            spec
        }
        Component::OidcIdp => {
            let mut spec = spec(&images.node);
            spec.entrypoint = Some("node".into());
            if let Some(server_dir) = &launch.cwd {
                spec = spec.sees(server_dir, false);
            }
            spec
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The containers environment runs each component's image with the local launch's own
    /// arguments and environment, the run directory at the same path; Keycloak builds its
    /// options in (the image is not built with ours) and keeps its own Java.
    #[test]
    fn containers_run_the_images_with_the_local_launches() {
        let images = ContainerImages::pinned();
        let run_dir = Path::new("/tmp/meshauth-run");
        let keycloak = Launch::new(
            "keycloak",
            "/cache/keycloak/bin/kc.sh",
            run_dir.join("k.log"),
        )
        .args(["start", "--optimized", "--http-port=18080"])
        .env("JAVA_HOME", "/usr/lib/jvm/17")
        .env("KC_BOOTSTRAP_ADMIN_USERNAME", "admin")
        .cwd(run_dir.join("keycloak"));
        let spec = container_spec(Component::Keycloak, &keycloak, &images, run_dir).unwrap();
        assert_eq!(spec.image, images.keycloak);
        assert_eq!(
            spec.command,
            [
                "start",
                "--db=dev-mem",
                "--health-enabled=true",
                "--cache=local",
                "--http-port=18080"
            ]
        );
        assert_eq!(
            spec.env,
            [(
                "KC_BOOTSTRAP_ADMIN_USERNAME".to_string(),
                "admin".to_string()
            )]
        );
        assert!(spec.mounts.contains(&(
            run_dir.join("keycloak/data/import"),
            PathBuf::from("/opt/keycloak/data/import"),
            false
        )));
        let envoy = crate::components::envoy_launch(
            Path::new("/cache/envoy"),
            &run_dir.join("gateway.yaml"),
            run_dir.join("envoy.log"),
        );
        let spec = container_spec(Component::Gateway, &envoy, &images, run_dir).unwrap();
        assert_eq!(
            (spec.image.as_str(), spec.entrypoint.as_deref()),
            (images.envoy.as_str(), Some("envoy"))
        );
        assert_eq!(
            spec.command[..2],
            [
                "-c".to_string(),
                "/tmp/meshauth-run/gateway.yaml".to_string()
            ]
        );
        assert!(
            spec.mounts
                .contains(&(run_dir.to_path_buf(), run_dir.to_path_buf(), true))
        );
        assert!(spec.user.ends_with(":0"));
        assert!(container_spec(Component::IstioXds, &envoy, &images, run_dir).is_none());
    }
}
