//! How each component is started: its program, arguments, environment and files, as a process
//! or under the containers runtime, and the readiness it must show before the next one starts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::readiness::{Probe, wait_listening, wait_ready};
use super::render::realm_import_file;
use super::{LocalStack, Runtime, StackEvent, container_spec, write_private};
use crate::components::{Launch, Supervised};
use crate::env::EnvError;
use crate::env::names::ECHO_PREFIX;
use crate::env::ports::Component;
use crate::policy::{AppListener, KeycloakRealm};
use crate::redact::Secret;

const KEYCLOAK_READY: Duration = Duration::from_secs(180);
pub(super) const COMPONENT_READY: Duration = Duration::from_secs(30);

/// What the stack knows about starting each component.
impl Component {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Keycloak => "keycloak",
            Self::Httpbin => "httpbin",
            Self::EchoApp => "echo",
            Self::IstioXds => "istio-xds",
            Self::Sidecar => "sidecar",
            Self::SleepSidecar => "sleep-sidecar",
            Self::Gateway => "envoy",
            Self::Redis => "redis",
            Self::OidcIdp => "oidc-idp",
            Self::OAuth2Proxy => "oauth2-proxy",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<Self> {
        Self::START_ORDER.into_iter().find(|c| c.name() == name)
    }

    /// Keycloak and the second IdP make new signing keys on restart, and these cache the JWKS
    /// (Envoy does not refetch on a new `kid`): they restart with either.
    pub(super) fn caches_realm_keys(self) -> bool {
        matches!(self, Self::Sidecar | Self::Gateway | Self::OAuth2Proxy)
    }
}

impl LocalStack {
    pub(super) fn log(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.log"))
    }

    /// Keycloak runs from a per-run home: `bin/` and `conf/` copied, the built `lib/` (and
    /// themes, providers) linked from the cache, and a per-run `data/` holding the realm import.
    pub(super) fn spawn_keycloak(&self) -> Result<Supervised, EnvError> {
        let home = self.run_dir.join("keycloak");
        let _ = std::fs::remove_dir_all(&home);
        let dist = &self.toolchain.keycloak_home;
        for dir in ["bin", "conf"] {
            copy_dir(&dist.join(dir), &home.join(dir))?;
        }
        for dir in ["lib", "themes", "providers"] {
            std::os::unix::fs::symlink(dist.join(dir), home.join(dir)).map_err(|source| {
                EnvError::Io {
                    what: "link Keycloak directory",
                    path: home.join(dir),
                    source,
                }
            })?;
        }
        for (file, realm) in self.realm_imports(self.keycloak_frontend_url())? {
            write_private(&home.join("data/import").join(file), &realm)?;
        }
        let launch = Launch::new("keycloak", home.join("bin/kc.sh"), self.log("keycloak"))
            .args([
                "start",
                "--optimized",
                "--import-realm",
                "--http-enabled=true",
                "--http-host=127.0.0.1",
            ])
            .arg(format!("--http-port={}", self.ports.keycloak))
            .arg(format!(
                "--http-management-port={}",
                self.ports.keycloak_management
            ))
            // The issuer is the gateway's plain-HTTP listener, as in seed 000.
            .arg(format!(
                "--hostname=http://127.0.0.1:{}",
                self.ports.gateway_http
            ))
            .arg("--hostname-backchannel-dynamic=false")
            .env("JAVA_HOME", self.toolchain.java.home.display().to_string())
            .env("KC_BOOTSTRAP_ADMIN_USERNAME", "admin")
            .env(
                "KC_BOOTSTRAP_ADMIN_PASSWORD",
                self.secrets.admin_password.expose(),
            )
            .cwd(&home);
        self.supervise(Component::Keycloak, &launch)
    }

    /// Starts `launch` as a process, or, in the containers environment, the component's
    /// official image under the container shim (istio-xds, Istio's generator standing in for
    /// istiod, has no image and stays a process).
    fn supervise(&self, component: Component, launch: &Launch) -> Result<Supervised, EnvError> {
        let Runtime::Containers(images) = &self.runtime else {
            return Ok(Supervised::spawn(launch)?);
        };
        let Some(spec) = container_spec(component, launch, images, &self.run_dir) else {
            return Ok(Supervised::spawn(launch)?);
        };
        Ok(Supervised::spawn(&spec.launch(launch)?)?)
    }

    pub(super) async fn wait_keycloak(&mut self) -> Result<(), EnvError> {
        let probe = format!(
            "http://127.0.0.1:{}/health/ready",
            self.ports.keycloak_management
        );
        let running = self
            .running(Component::Keycloak)
            .expect("keycloak was spawned");
        wait_ready(
            &self.probe,
            &running.process,
            &Probe::Http(probe),
            KEYCLOAK_READY,
        )
        .await?;
        // The import files hold the client secret and the users' passwords: gone once imported.
        for realm in KeycloakRealm::ALL {
            let _ = std::fs::remove_file(
                self.run_dir
                    .join("keycloak/data/import")
                    .join(realm_import_file(realm)),
            );
        }
        Ok(())
    }

    /// How `component` is started and how it shows it is ready; writes the files it reads at
    /// start (the password-holding ones are removed once it is ready).
    fn launch_and_probe(&self, component: Component) -> Result<(Launch, Probe), EnvError> {
        let name = component.name();
        Ok(match component {
            Component::Keycloak => unreachable!("Keycloak starts in the background"),
            Component::Httpbin => (
                Launch::new(name, &self.toolchain.httpbin, self.log(name))
                    .args(["-host", "127.0.0.1", "-port"])
                    .arg(self.ports.httpbin.to_string()),
                Probe::Http(format!(
                    "http://127.0.0.1:{}/status/200",
                    self.ports.httpbin
                )),
            ),
            Component::EchoApp => (
                Launch::new(name, &self.toolchain.httpbin, self.log(name))
                    .args(["-host", "127.0.0.1", "-prefix", ECHO_PREFIX, "-port"])
                    .arg(self.ports.echo_app.to_string()),
                Probe::Http(format!(
                    "http://127.0.0.1:{}{ECHO_PREFIX}/status/200",
                    self.ports.echo_app
                )),
            ),
            Component::OidcIdp => {
                let path = self.run_dir.join("oidc-idp.json");
                write_private(&path, &self.oidc_idp_config()?)?;
                let idp = &self.toolchain.oidc_idp;
                (
                    Launch::new(name, &idp.node, self.log(name))
                        .arg(idp.server_dir.join("server.mjs").display().to_string())
                        .arg(path.display().to_string())
                        .cwd(&idp.server_dir),
                    Probe::Http(format!("{}/healthz", self.oidc_idp_issuer())),
                )
            }
            Component::Redis => {
                // The password is in a file of the user's, not on the command line.
                let path = self.run_dir.join("redis.conf");
                write_private(
                    &path,
                    &format!(
                        "bind 127.0.0.1\nport {}\nprotected-mode yes\nrequirepass {}\n\
                         save \"\"\nappendonly no\ndir {}\n",
                        self.ports.redis,
                        self.secrets.redis_password.expose(),
                        self.run_dir.display()
                    ),
                )?;
                let redis = &self.toolchain.redis;
                let mut launch = Launch::new(name, &redis.binary, self.log(name))
                    .arg(path.display().to_string());
                if let Some(libraries) = &redis.library_dir {
                    launch = launch.env("LD_LIBRARY_PATH", libraries.display().to_string());
                }
                (
                    launch,
                    Probe::Redis {
                        port: self.ports.redis,
                        password: self.secrets.redis_password.clone(),
                    },
                )
            }
            Component::IstioXds => {
                let inputs = self.istio_inputs()?;
                let dirs = inputs.write(&self.run_dir.join("istio"))?;
                let tls = self.run_dir.join("tls");
                let mut launch = Launch::new(name, &self.toolchain.istio_xds, self.log(name))
                    .arg("serve")
                    .arg("--mesh")
                    .arg(self.run_dir.join("istio/mesh.yaml").display().to_string())
                    .arg("--ca-cert")
                    .arg(tls.join("mesh-ca.pem").display().to_string())
                    .arg("--ca-key")
                    .arg(tls.join("mesh-ca-key.pem").display().to_string())
                    .arg(format!("--xds=127.0.0.1:{}", self.ports.xds))
                    .arg(format!("--sds=127.0.0.1:{}", self.ports.sds))
                    .arg(format!("--health=127.0.0.1:{}", self.ports.xds_health));
                for dir in dirs {
                    launch = launch.arg("--config").arg(dir.display().to_string());
                }
                if !self.config.sidecar_trust_domain_check {
                    // istiod's switch for accepting mTLS peers of any trust domain.
                    launch = launch.env("PILOT_SKIP_VALIDATE_TRUST_DOMAIN", "true");
                }
                (
                    launch,
                    Probe::Http(format!("http://127.0.0.1:{}/ready", self.ports.xds_health)),
                )
            }
            Component::Sidecar | Component::SleepSidecar | Component::Gateway => {
                let (file, admin) = match component {
                    Component::Sidecar => ("sidecar.yaml", self.ports.sidecar_admin),
                    Component::SleepSidecar => ("sleep-sidecar.yaml", self.ports.sleep_admin),
                    _ => ("gateway.yaml", self.ports.gateway_admin),
                };
                let path = self.run_dir.join(file);
                write_private(&path, &self.bootstrap(component)?)?;
                let mut launch =
                    crate::components::envoy_launch(&self.toolchain.envoy, &path, self.log(name));
                launch.name = name;
                (
                    launch,
                    Probe::Http(format!("http://127.0.0.1:{admin}/ready")),
                )
            }
            Component::OAuth2Proxy => {
                let config = self.oauth2_proxy_config()?;
                let path = self.run_dir.join("oauth2-proxy.cfg");
                write_private(&path, &config)?;
                (
                    Launch::new(name, &self.toolchain.oauth2_proxy, self.log(name))
                        .arg(format!("--config={}", path.display()))
                        .env(
                            "OAUTH2_PROXY_CLIENT_SECRET",
                            self.oauth2_proxy_client_secret(),
                        )
                        .env(
                            "OAUTH2_PROXY_COOKIE_SECRET",
                            if self.config.cookie_secret_per_start {
                                Secret::generate_alphanumeric(32).expose().to_string()
                            } else {
                                self.secrets.cookie_secret.expose().to_string()
                            },
                        )
                        .env(
                            "OAUTH2_PROXY_REDIS_PASSWORD",
                            self.secrets.redis_password.expose(),
                        ),
                    self.oauth2_proxy_ready(),
                )
            }
        })
    }

    /// Starts a fast-starting component (all but Keycloak) and waits until it is ready.
    pub(super) async fn start_component(
        &self,
        component: Component,
        progress: &(dyn Fn(StackEvent) + Sync),
    ) -> Result<Supervised, EnvError> {
        let started = Instant::now();
        let name = component.name();
        let (launch, probe) = self.launch_and_probe(component)?;
        let process = self.supervise(component, &launch)?;
        wait_ready(&self.probe, &process, &probe, COMPONENT_READY).await?;
        // These files hold passwords and are read once at start: gone once it is ready, like
        // Keycloak's realm import.
        let read_once = match component {
            Component::Redis => Some("redis.conf"),
            Component::OidcIdp => Some("oidc-idp.json"),
            _ => None,
        };
        if let Some(file) = read_once {
            let _ = std::fs::remove_file(self.run_dir.join(file));
        }
        // A proxy is ready when Envoy lists the generated listeners as its own: one it cannot
        // bind it reports in its log and drops, and a connection test would reach whoever
        // holds the port instead.
        let (admin, listeners) = match component {
            Component::Gateway => (
                self.ports.gateway_admin,
                match self.config.app_listener {
                    AppListener::Https => vec![self.ports.gateway_https, self.ports.gateway_http],
                    AppListener::PlainHttp => vec![
                        self.ports.gateway_https,
                        self.ports.gateway_http,
                        self.ports.gateway_app_http,
                    ],
                },
            ),
            Component::Sidecar => (self.ports.sidecar_admin, vec![self.ports.sidecar]),
            // sleep's outbound listener for httpbin's service port.
            Component::SleepSidecar => (self.ports.sleep_admin, vec![self.ports.sidecar]),
            _ => (0, Vec::new()),
        };
        wait_listening(&self.probe, &process, admin, &listeners, COMPONENT_READY).await?;
        progress(StackEvent::Ready {
            component: name,
            after: started.elapsed(),
        });
        Ok(process)
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), EnvError> {
    let io = |source| EnvError::Io {
        what: "copy Keycloak files into",
        path: to.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(to).map_err(io)?;
    for entry in std::fs::read_dir(from).map_err(io)? {
        let entry = entry.map_err(io)?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io)?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(io)?;
        }
    }
    Ok(())
}
