//! Starting, converging and stopping the stack. One `converge` serves the first start, every
//! reconfiguration and every port retry, so that each restarts only what a change affects.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{LocalStack, Running, Runtime, Secrets, StackEvent, url, write_private};
use super::{RealmSecrets, SessionStore};
use crate::components::{ComponentError, Supervised, Toolchain};
use crate::env::Endpoints;
use crate::env::names::{EMAIL, ROLE, ROLES_CLAIM, SESSION_REFRESH_SECONDS, USERNAME};
use crate::env::pki::{MeshPki, RunPki};
use crate::env::ports::{Component, Ports};
use crate::env::{EnvError, MeshEndpoints, StackConfig, TestUser};
use crate::policy::KeycloakRealm;
use crate::redact::{Redactor, Secret};

/// How often a component that meets "address already in use" is given new ports.
const PORT_ATTEMPTS: usize = 5;

/// What starts while Keycloak does, in waves: each wave's components need only earlier
/// waves', so they start side by side. The apps, the session store, the second IdP and the
/// config server first; then the proxies, which take their configuration from it.
/// (oauth2-proxy waits for the IdP, after Keycloak is ready.)
const START_WAVES: [&[Component]; 2] = [
    &[
        Component::Httpbin,
        Component::EchoApp,
        Component::IstioXds,
        Component::Redis,
        Component::OidcIdp,
    ],
    &[
        Component::Sidecar,
        Component::SleepSidecar,
        Component::Gateway,
    ],
];

impl LocalStack {
    /// Starts every component and waits until each is ready.
    pub async fn start(
        toolchain: Toolchain,
        run_dir: &Path,
        config: StackConfig,
        redactor: &Redactor,
        progress: &(dyn Fn(StackEvent) + Sync),
    ) -> Result<Self, EnvError> {
        Self::start_on(
            Runtime::Processes,
            toolchain,
            run_dir,
            config,
            redactor,
            progress,
        )
        .await
    }

    /// [`LocalStack::start`], its components run as `runtime` says.
    pub async fn start_on(
        runtime: Runtime,
        toolchain: Toolchain,
        run_dir: &Path,
        config: StackConfig,
        redactor: &Redactor,
        progress: &(dyn Fn(StackEvent) + Sync),
    ) -> Result<Self, EnvError> {
        crate::components::process::install_signal_cleanup();
        std::fs::create_dir_all(run_dir).map_err(|source| EnvError::Io {
            what: "create run directory",
            path: run_dir.to_path_buf(),
            source,
        })?;
        let ports = Ports::allocate()?;
        let secrets = Secrets {
            realm: RealmSecrets::generate()?,
            cookie_secret: Secret::generate_alphanumeric(32),
            admin_password: Secret::generate(18),
            redis_password: Secret::generate_alphanumeric(32),
            oidc_idp_cookie_key: Secret::generate_alphanumeric(32),
            oidc_idp_control_token: Secret::generate_alphanumeric(32),
        };
        secrets.realm.register(redactor);
        for secret in [
            &secrets.cookie_secret,
            &secrets.admin_password,
            &secrets.redis_password,
            &secrets.oidc_idp_cookie_key,
            &secrets.oidc_idp_control_token,
        ] {
            redactor.register(secret);
        }
        let pki = RunPki::generate()?;
        let tls_dir = run_dir.join("tls");
        write_private(&tls_dir.join("ca.pem"), &pki.ca_cert_pem)?;
        write_private(&tls_dir.join("gateway.pem"), &pki.server_cert_pem)?;
        write_private(&tls_dir.join("gateway-key.pem"), &pki.server_key_pem)?;
        let mesh = MeshPki::generate()?;
        write_private(&tls_dir.join("mesh-ca.pem"), &mesh.ca_cert_pem)?;
        write_private(&tls_dir.join("mesh-ca-key.pem"), mesh.ca_key_pem.expose())?;
        for (name, workload) in [
            ("httpbin", &mesh.httpbin),
            ("sleep", &mesh.sleep),
            ("istio-ingressgateway", &mesh.gateway),
        ] {
            write_private(&tls_dir.join(format!("{name}.pem")), &workload.cert_pem)?;
            write_private(
                &tls_dir.join(format!("{name}-key.pem")),
                workload.key_pem.expose(),
            )?;
        }

        let mut endpoints = Endpoints {
            app: url("https://127.0.0.1/"),
            idp: url("http://127.0.0.1/"),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: Secret::new(String::new()),
            user: TestUser {
                username: USERNAME.to_string(),
                password: Secret::new(String::new()),
                email: EMAIL.to_string(),
            },
            second_user: None,
            upstream_user: None,
            upstream_second_user: None,
            other_client: None,
            signing_key: None,
            role: ROLE.to_string(),
            roles_claim: ROLES_CLAIM.to_string(),
            session_cookie: crate::endpoints::DEFAULT_SESSION_COOKIE.to_string(),
            // The reference's bound, whatever the profile: a deployment that never refreshes
            // keeps a revoked user in, and that is the finding.
            session_refresh: Some(Duration::from_secs(SESSION_REFRESH_SECONDS.into())),
            sign_in_hosts: Vec::new(),
            ca_pem: Some(pki.ca_cert_pem.clone()),
            mesh: Some(MeshEndpoints {
                sidecar: url("http://127.0.0.1/"),
                service_host: format!("httpbin.{}.svc.cluster.local", crate::policy::NAMESPACE),
                workload_proxy: None,
                ca_pem: mesh.ca_cert_pem.clone(),
                workload_id: mesh.sleep.spiffe_id.clone(),
                workload_cert_pem: mesh.sleep.cert_pem.clone(),
                workload_key_pem: mesh.sleep.key_pem.clone(),
                untrusted: (&mesh.untrusted).into(),
                expired: (&mesh.expired).into(),
                foreign_trust_domain: (&mesh.foreign_trust_domain).into(),
            }),
            mesh_callers: None,
        };
        secrets.realm.fill(&mut endpoints);
        let mut stack = Self {
            toolchain,
            run_dir: run_dir.to_path_buf(),
            ports,
            secrets,
            base: config.clone(),
            config,
            issuer: String::new(),
            endpoints,
            gateway_tls: (
                pki.server_cert_pem.clone(),
                Secret::new(pki.server_key_pem.clone()),
            ),
            runtime,
            probe: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .no_proxy()
                .build()
                .map_err(|e| EnvError::Io {
                    what: "build the readiness-probe client for",
                    path: run_dir.to_path_buf(),
                    source: std::io::Error::other(e),
                })?,
            running: Vec::new(),
            paused: Vec::new(),
            idp_changes: Vec::new(),
            id_tokens_forged: false,
            keycloak_ready: false,
            realm_frontend_url: None,
            keycloak_realms: Vec::new(),
            impostor_certificate: (
                mesh.impostor_httpbin.cert_pem.clone(),
                mesh.impostor_httpbin.key_pem.clone(),
            ),
            impostor: None,
        };
        stack.address_endpoints();
        stack.converge(progress).await?;
        Ok(stack)
    }

    /// Applies a new configuration, restarting only the components whose rendered inputs
    /// change (and, when Keycloak restarts, those that cache its keys).
    pub async fn reconfigure(&mut self, config: StackConfig) -> Result<(), EnvError> {
        self.base = config.clone();
        self.converge_to(config).await
    }

    pub(super) async fn converge_to(&mut self, config: StackConfig) -> Result<(), EnvError> {
        let previous = std::mem::replace(&mut self.config, config);
        if let Err(error) = self.wanted_inputs() {
            self.config = previous;
            self.address_endpoints();
            return Err(error);
        }
        self.address_endpoints();
        let started = Instant::now();
        let before = self.running_pids();
        let ready_after = std::sync::Mutex::new(Vec::new());
        let converged = self
            .converge(&|event| {
                if let StackEvent::Ready { component, after } = event {
                    let mut ready = ready_after.lock().unwrap_or_else(|p| p.into_inner());
                    ready.push((component, after));
                }
            })
            .await;
        let ready_after = ready_after.into_inner().unwrap_or_else(|p| p.into_inner());
        // Each with how long it took to be ready, so a slow switch says which part was slow.
        let restarted: Vec<String> = self
            .running_pids()
            .into_iter()
            .filter(|now| !before.contains(now))
            .map(|(component, _)| {
                match ready_after
                    .iter()
                    .find(|(name, _)| *name == component.name())
                {
                    Some((name, after)) => format!("{name} ({} ms)", after.as_millis()),
                    None => component.name().to_string(),
                }
            })
            .collect();
        if !restarted.is_empty() {
            self.append_stack_log(&format!(
                "profile applied in {} ms, (re)started: {}",
                started.elapsed().as_millis(),
                restarted.join(", ")
            ));
        }
        converged
    }

    /// The process (and process group) of a running component: what an environment file's
    /// control commands name when the stack stands in for a user's deployment.
    pub fn pid(&self, component: Component) -> Option<u32> {
        self.running
            .iter()
            .find(|running| running.component == component)
            .map(|running| running.process.pid())
    }

    fn running_pids(&self) -> Vec<(Component, u32)> {
        self.running
            .iter()
            .map(|r| (r.component, r.process.pid()))
            .collect()
    }

    /// A component that exited although nobody stopped it: which, how, and its log's tail.
    pub fn died(&self) -> Option<ComponentError> {
        self.running.iter().find_map(|running| {
            let status = running.process.died()?;
            Some(ComponentError::Died {
                component: running.process.name(),
                status: status.to_string(),
                log: running.process.log_path().display().to_string(),
                tail: running.process.log_tail(25),
            })
        })
    }

    /// Stops every component, in reverse start order (also done on drop), and removes
    /// Keycloak's per-run home (its copied scripts and database, some 16 MB a run); the run
    /// directory keeps the logs, the rendered configuration and the reports.
    pub fn stop(&mut self) {
        while let Some(mut running) = self.running.pop() {
            running.process.stop(Duration::from_secs(10));
        }
        self.keycloak_ready = false;
        let _ = std::fs::remove_dir_all(self.run_dir.join("keycloak"));
    }

    /// Sum of each stack process's peak resident memory (VmHWM), in KiB, from /proc.
    pub fn peak_resident_kib(&self) -> u64 {
        self.running
            .iter()
            .map(|r| group_peak_rss_kib(r.process.pid()))
            .sum()
    }

    /// Brings the running components in line with the configuration and ports: stops those
    /// whose inputs changed, starts whatever is not running, in dependency order. A component
    /// that meets "address already in use" gets new ports and everything that renders them is
    /// brought in line again, a bounded number of times, each said in `stack.log`.
    pub(super) async fn converge(
        &mut self,
        progress: &(dyn Fn(StackEvent) + Sync),
    ) -> Result<(), EnvError> {
        let mut attempt = 1;
        loop {
            let error = match self.converge_once(progress).await {
                Err(EnvError::Component(error @ ComponentError::AddressInUse { .. })) => error,
                other => return other,
            };
            let component = match &error {
                ComponentError::AddressInUse { component, .. } => Component::from_name(component),
                _ => None,
            };
            match component {
                Some(component) if attempt < PORT_ATTEMPTS => {
                    self.move_ports(component, "address already in use", attempt, progress)?;
                    attempt += 1;
                }
                _ => return Err(error.into()),
            }
        }
    }

    async fn converge_once(
        &mut self,
        progress: &(dyn Fn(StackEvent) + Sync),
    ) -> Result<(), EnvError> {
        // A port taken since it was chosen is replaced before anything renders it.
        for component in Component::START_ORDER {
            if !self.is_running(component)
                && let Some(port) = self
                    .ports
                    .owned(component)
                    .into_iter()
                    .find(|&port| Ports::check_free(port, "").is_err())
            {
                let reason = format!("port {port} was taken before the start");
                self.move_ports(component, &reason, 0, progress)?;
            }
        }
        let wanted = self.wanted_inputs()?;
        let inputs = |component: Component| {
            wanted
                .iter()
                .find(|(c, _)| *c == component)
                .map(|(_, inputs)| inputs.clone())
                .unwrap_or_default()
        };
        let wanted_realms = self.wanted_realms()?;
        let keycloak_kept = self
            .running(Component::Keycloak)
            .is_some_and(|r| r.inputs == inputs(Component::Keycloak));
        let realms_to_import: Vec<(KeycloakRealm, String)> = if keycloak_kept {
            wanted_realms
                .iter()
                .filter(|wanted| !self.keycloak_realms.contains(wanted))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        // A realm imported again has new signing keys, as after a restart.
        let idp_restarts = !realms_to_import.is_empty()
            || [Component::Keycloak, Component::OidcIdp]
                .into_iter()
                .filter(|idp| wanted.iter().any(|(w, _)| w == idp))
                .any(|idp| self.running(idp).is_none_or(|r| r.inputs != inputs(idp)));
        for (component, inputs) in wanted.iter().rev() {
            let stale = self.running(*component).is_some_and(|r| {
                &r.inputs != inputs || (idp_restarts && component.caches_realm_keys())
            });
            if stale {
                self.stop_component(*component);
            }
        }
        let unwanted: Vec<Component> = self
            .running
            .iter()
            .map(|r| r.component)
            .filter(|c| !wanted.iter().any(|(w, _)| w == c))
            .collect();
        for component in unwanted {
            self.stop_component(component);
        }
        // Keycloak is slow to start; everything that does not depend on it starts meanwhile.
        let keycloak_started = Instant::now();
        if !self.is_running(Component::Keycloak) {
            progress(StackEvent::Starting("keycloak"));
            self.announce_ports(Component::Keycloak, progress);
            let process = self.spawn_keycloak()?;
            self.keycloak_ready = false;
            self.realm_frontend_url = self.keycloak_frontend_url();
            self.keycloak_realms = wanted_realms;
            self.record(Component::Keycloak, process, inputs(Component::Keycloak));
        } else if !realms_to_import.is_empty() {
            // Before the proxies start: they fetch the realm's new keys.
            if !self.keycloak_ready {
                self.wait_keycloak().await?;
                self.keycloak_ready = true;
            }
            // Published where the other realms are; moving them all is the frontendUrl step's.
            for (realm, rendered) in realms_to_import {
                self.import_realm_again(realm, self.realm_frontend_url.clone())
                    .await?;
                self.keycloak_realms.retain(|(r, _)| *r != realm);
                self.keycloak_realms.push((realm, rendered));
            }
        }
        for wave in START_WAVES {
            let to_start: Vec<Component> = wave
                .iter()
                .copied()
                .filter(|&c| wanted.iter().any(|(w, _)| *w == c) && !self.is_running(c))
                .collect();
            for &component in &to_start {
                progress(StackEvent::Starting(component.name()));
                self.announce_ports(component, progress);
            }
            let started = futures::future::join_all(
                to_start
                    .iter()
                    .map(|&component| self.start_component(component, progress)),
            )
            .await;
            // Those that came up are kept (and stopped with the stack) whatever the others did.
            let mut failed = None;
            for (component, result) in to_start.into_iter().zip(started) {
                match result {
                    Ok(process) => self.record(component, process, inputs(component)),
                    Err(error) => failed = failed.or(Some(error)),
                }
            }
            if let Some(error) = failed {
                return Err(error);
            }
        }
        if !self.keycloak_ready {
            self.wait_keycloak().await?;
            self.keycloak_ready = true;
            progress(StackEvent::Ready {
                component: "keycloak",
                after: keycloak_started.elapsed(),
            });
        }
        let frontend_url = self.keycloak_frontend_url();
        if self.realm_frontend_url != frontend_url {
            self.set_realm_frontend_url(frontend_url.as_deref()).await?;
            self.realm_frontend_url = frontend_url;
        }
        if !self.is_running(Component::OAuth2Proxy) {
            progress(StackEvent::Starting("oauth2-proxy"));
            self.announce_ports(Component::OAuth2Proxy, progress);
            let process = self
                .start_component(Component::OAuth2Proxy, progress)
                .await?;
            self.record(
                Component::OAuth2Proxy,
                process,
                inputs(Component::OAuth2Proxy),
            );
        }
        Ok(())
    }

    /// Gives `component` new ports, re-addresses the endpoints, and says so in the run log.
    fn move_ports(
        &mut self,
        component: Component,
        reason: &str,
        attempt: usize,
        progress: &(dyn Fn(StackEvent) + Sync),
    ) -> Result<(), EnvError> {
        let before = self.ports.owned(component);
        self.ports.reassign(component)?;
        self.address_endpoints();
        let retry = if attempt > 0 {
            format!(" (retry {attempt} of {})", PORT_ATTEMPTS - 1)
        } else {
            String::new()
        };
        let detail = format!(
            "{reason}: ports {before:?} → {:?}; components that use them are re-rendered{retry}",
            self.ports.owned(component)
        );
        tracing::warn!(component = component.name(), "{detail}");
        self.append_stack_log(&format!("{}: {detail}", component.name()));
        progress(StackEvent::Retrying {
            component: component.name(),
            detail,
        });
        Ok(())
    }

    fn announce_ports(&self, component: Component, progress: &(dyn Fn(StackEvent) + Sync)) {
        progress(StackEvent::Binding {
            component: component.name(),
            ports: self.ports.owned(component),
        });
    }

    pub(super) fn append_stack_log(&self, line: &str) {
        use std::io::Write as _;
        let path = self.run_dir.join("stack.log");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "could not write the stack log");
        }
    }

    pub(super) fn running(&self, component: Component) -> Option<&Running> {
        self.running.iter().find(|r| r.component == component)
    }

    fn is_running(&self, component: Component) -> bool {
        self.running(component).is_some()
    }

    fn record(&mut self, component: Component, process: Supervised, inputs: String) {
        self.running.push(Running {
            component,
            process,
            inputs,
        });
        self.running.sort_by_key(|r| {
            Component::START_ORDER
                .iter()
                .position(|c| *c == r.component)
        });
    }

    pub(super) fn stop_component(&mut self, component: Component) {
        if let Some(index) = self.running.iter().position(|r| r.component == component) {
            let mut running = self.running.remove(index);
            running.process.stop(Duration::from_secs(10));
        }
        self.paused.retain(|c| *c != component);
        if component == Component::Keycloak {
            self.keycloak_ready = false;
        }
        if component == Component::OidcIdp {
            self.id_tokens_forged = false;
        }
    }

    /// Everything each component is started from (rendered files, the ports it binds, the
    /// secrets it is given), in start order. The proxies restart with any change of the Istio
    /// inputs, so none keeps configuration from before a change.
    fn wanted_inputs(&self) -> Result<Vec<(Component, String)>, EnvError> {
        let ports = |component: Component| format!("{:?}", self.ports.owned(component));
        let istio = self.istio_inputs()?;
        // The generator's switches are inputs too.
        let istio_text = format!(
            "{}\nvalidate trust domain {}",
            istio.digest(),
            self.config.sidecar_trust_domain_check
        );
        // The realms (and their frontendUrl) are changed live through the admin API, never
        // by a restart: only Keycloak's own ports and hostname are its process's inputs.
        let mut wanted = vec![
            (
                Component::Keycloak,
                format!(
                    "{}\nhostname {}",
                    ports(Component::Keycloak),
                    self.ports.gateway_http
                ),
            ),
            (Component::Httpbin, ports(Component::Httpbin)),
            (Component::EchoApp, ports(Component::EchoApp)),
            (
                Component::IstioXds,
                format!("{istio_text}\n{}", ports(Component::IstioXds)),
            ),
            (
                Component::Sidecar,
                format!("{}\n{istio_text}", self.bootstrap(Component::Sidecar)?),
            ),
            (
                Component::SleepSidecar,
                format!("{}\n{istio_text}", self.bootstrap(Component::SleepSidecar)?),
            ),
            (
                Component::Gateway,
                format!("{}\n{istio_text}", self.bootstrap(Component::Gateway)?),
            ),
        ];
        if self.config.session_store == SessionStore::Redis {
            wanted.push((Component::Redis, ports(Component::Redis)));
        }
        // Always running, on inputs no profile changes: its start overlaps Keycloak's, and a
        // profile that signs in there (or brokers to it) switches without waiting for Node.
        wanted.push((Component::OidcIdp, self.oidc_idp_config()?));
        wanted.push((
            Component::OAuth2Proxy,
            format!(
                "{}\nsecret {}",
                self.oauth2_proxy_config()?,
                self.oauth2_proxy_client_secret()
            ),
        ));
        Ok(wanted)
    }
}

/// Peak resident memory of a process group's members (the group leader's pid is the group id).
fn group_peak_rss_kib(pgid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .map(|s| (pid, s))
        })
        .filter(|(_, stat)| {
            // Fields after the parenthesised command: state ppid pgrp ...
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2))
                .and_then(|g| g.parse::<u32>().ok())
                == Some(pgid)
        })
        .filter_map(|(pid, _)| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}
