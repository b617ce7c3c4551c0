//! The `existing` environment: a user's own deployment described in a YAML file. Secrets are
//! never written in the file; it names the environment variables that hold them.

use std::path::Path;

use serde::Deserialize;
use url::Url;

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ClientCredentials, Endpoints, EnvError, TestUser};
use crate::control::{Disruption, Part, StackControl};
use crate::endpoints::{CallerRef, KubeAccess, MeshCallers};
use crate::events::{EnvironmentInfo, PolicySetting};
use crate::oidc::forge::SigningKey;
use crate::policy::{SidecarPolicy, SignInProfile, StackProfile};
use crate::redact::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExistingFile {
    /// The application's URL through the gateway.
    app_url: Url,
    /// The IdP's public base URL.
    idp_url: Url,
    issuer: String,
    client_id: String,
    /// Name of the environment variable holding the client secret (for token grants).
    client_secret_env: String,
    user: UserFile,
    role: String,
    #[serde(default = "default_roles_claim")]
    roles_claim: String,
    /// The auth proxy's session cookie name (`cookie_name`; its CSRF cookie is this + `_csrf`).
    #[serde(default = "default_session_cookie")]
    session_cookie: String,
    /// The auth proxy's session refresh interval (oauth2-proxy's `cookie_refresh`), in
    /// seconds: how soon a session ended at the IdP must end at the app. Without it the
    /// session-refresh checks are left out.
    #[serde(default)]
    session_refresh_seconds: Option<u64>,
    /// Hosts besides the app, the IdP and the issuer that the sign-in passes through (an
    /// upstream IdP your realm brokers to, e.g. login.microsoftonline.com).
    #[serde(default)]
    sign_in_hosts: Vec<String>,
    /// A PEM file with an extra CA to trust, relative to the config file.
    #[serde(default)]
    ca_file: Option<String>,
    /// A user without `role`, for the admission and other-user's-token checks.
    #[serde(default)]
    second_user: Option<UserFile>,
    /// Another confidential client of the realm, with direct grants and a service account.
    #[serde(default)]
    other_client: Option<ClientFile>,
    /// A PKCS#8 PEM file holding the private half of a key the IdP publishes in its JWKS (a
    /// test realm's extra key), relative to the config file: tokens minted with it are wrong
    /// in one claim only (expired, other issuer, other audience).
    #[serde(default)]
    test_signing_key_file: Option<String>,
    /// Shell commands that disrupt and restore parts of the deployment, for the fail-closed
    /// checks (e.g. `kubectl scale --replicas=0`). Without them those checks are left out.
    #[serde(default)]
    control: BTreeMap<Part, PartCommands>,
    /// The deployment's configuration files (oauth2-proxy config or manifests, Istio objects
    /// and mesh config, a realm export), relative to this file: audited for insecure settings.
    #[serde(default)]
    config_files: Vec<String>,
    /// Callers inside the cluster, for the mesh scenarios: without it they are left out.
    #[serde(default)]
    mesh: Option<MeshFile>,
}

/// The in-mesh callers: `curl` by exec in pods of the user's cluster, or by commands that run
/// it where the callers are (nothing is created).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeshFile {
    /// A kubeconfig, relative to this file (absent: `$KUBECONFIG`, else `~/.kube/config`).
    #[serde(default)]
    kubeconfig: Option<String>,
    /// The kubeconfig's context (absent: its current one).
    #[serde(default)]
    context: Option<String>,
    /// The app's address inside the mesh, `http://` (the caller's sidecar adds mTLS).
    service_url: Url,
    /// A workload with a sidecar: a pod with curl in the container, or a command.
    caller: CallerRef,
    /// A workload without a sidecar, for the plaintext cells.
    #[serde(default)]
    outside_caller: Option<CallerRef>,
    /// What the deployment applies to the app's workload, as a stack profile's `sidecar:`
    /// says it; the mesh scenarios written for this policy run. Absent: Istio's defaults.
    #[serde(default)]
    policy: SidecarPolicy,
}

/// How to disrupt one part and bring it back. Each command runs with `sh -c` and must return
/// only once the change is in effect (e.g. followed by `kubectl rollout status`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartCommands {
    #[serde(default)]
    stop: Option<String>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    pause: Option<String>,
    #[serde(default)]
    resume: Option<String>,
    /// Ends the test user's sessions at the IdP (e.g. Keycloak's "sign out all sessions").
    #[serde(default)]
    revoke_sessions: Option<String>,
    /// Disables the test user's account at the IdP, and enables it again.
    #[serde(default)]
    disable_user: Option<String>,
    #[serde(default)]
    enable_user: Option<String>,
    /// Makes the tokens the IdP issues from now on expire within seconds (a few: meshauth
    /// waits them out), and gives them their usual lifetime again.
    #[serde(default)]
    short_lived_tokens: Option<String>,
    #[serde(default)]
    usual_tokens: Option<String>,
}

impl PartCommands {
    /// The command that does `disruption`, and the one that undoes it (none where there is
    /// nothing to undo).
    fn for_disruption(&self, disruption: Disruption) -> (Option<&String>, Option<&String>) {
        match disruption {
            Disruption::Stop => (self.stop.as_ref(), self.start.as_ref()),
            Disruption::Pause => (self.pause.as_ref(), self.resume.as_ref()),
            Disruption::RevokeSessions => (self.revoke_sessions.as_ref(), None),
            Disruption::DisableUser => (self.disable_user.as_ref(), self.enable_user.as_ref()),
            Disruption::ShortLivedTokens => {
                (self.short_lived_tokens.as_ref(), self.usual_tokens.as_ref())
            }
            // Certificates from another CA at the app's address, ID tokens made wrong at the
            // IdP: only a stack the harness runs.
            Disruption::Impersonate | Disruption::ForgeIdTokens(_) => (None, None),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    client_id: String,
    client_secret_env: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    username: String,
    email: String,
    password_env: String,
}

fn default_roles_claim() -> String {
    "realm_roles".into()
}

fn default_session_cookie() -> String {
    crate::endpoints::DEFAULT_SESSION_COOKIE.into()
}

/// A deployment the harness does not manage.
#[derive(Debug, Clone)]
pub struct ExistingEnvironment {
    endpoints: Endpoints,
    file: String,
    control: BTreeMap<Part, PartCommands>,
    config_files: Vec<std::path::PathBuf>,
    /// The mesh policy the file declares for the app's workload.
    declared_sidecar: SidecarPolicy,
}

impl ExistingEnvironment {
    pub fn load(path: &Path) -> Result<Self, EnvError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::Io {
            what: "read the environment file",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(
            &file,
            &text,
            path.parent().unwrap_or(Path::new(".")),
            &|name| std::env::var(name).ok(),
        )
    }

    /// Parses the file's text; `lookup` reads environment variables (injected for tests).
    pub fn parse(
        file: &str,
        text: &str,
        base_dir: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, EnvError> {
        let config_error = |message: String, hint: &str| EnvError::Config {
            file: file.to_string(),
            message,
            hint: hint.to_string(),
        };
        let parsed: ExistingFile = serde_saphyr::from_str(text).map_err(|e| {
            config_error(
                e.to_string(),
                "see `meshauth run --help` and docs/existing-environment.md for the file's fields",
            )
        })?;
        let secret = |var: &str, what: &str| {
            lookup(var)
                .filter(|v| !v.is_empty())
                .map(Secret::new)
                .ok_or_else(|| {
                    config_error(
                        format!("{what} is read from ${var}, which is not set"),
                        &format!("export {var}=... before running meshauth"),
                    )
                })
        };
        let client_secret = secret(&parsed.client_secret_env, "the client secret")?;
        let password = secret(&parsed.user.password_env, "the test user's password")?;
        let ca_pem = match &parsed.ca_file {
            Some(relative) => {
                let path = base_dir.join(relative);
                Some(std::fs::read_to_string(&path).map_err(|e| {
                    config_error(
                        format!("ca_file {}: {e}", path.display()),
                        "ca_file is a PEM file path relative to this file",
                    )
                })?)
            }
            None => None,
        };
        let second_user = match &parsed.second_user {
            Some(user) => Some(TestUser {
                username: user.username.clone(),
                password: secret(&user.password_env, "the second user's password")?,
                email: user.email.clone(),
            }),
            None => None,
        };
        let other_client = match &parsed.other_client {
            Some(client) => Some(ClientCredentials {
                id: client.client_id.clone(),
                secret: secret(&client.client_secret_env, "the other client's secret")?,
            }),
            None => None,
        };
        let signing_key = match &parsed.test_signing_key_file {
            Some(relative) => {
                let path = base_dir.join(relative);
                let hint = "test_signing_key_file is a PKCS#8 PEM private key (RSA), relative to this file";
                let pem = std::fs::read_to_string(&path).map_err(|e| {
                    config_error(
                        format!("test_signing_key_file {}: {e}", path.display()),
                        hint,
                    )
                })?;
                Some(SigningKey::from_pem(&pem).map_err(|e| {
                    config_error(
                        format!("test_signing_key_file {}: {e}", path.display()),
                        hint,
                    )
                })?)
            }
            None => None,
        };
        for (name, url) in [("app_url", &parsed.app_url), ("idp_url", &parsed.idp_url)] {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(config_error(
                    format!("{name} {url} is not http(s)"),
                    "use an http:// or https:// URL",
                ));
            }
        }
        for (part, commands) in &parsed.control {
            let pairs = [
                ("stop", &commands.stop, "start", &commands.start),
                ("pause", &commands.pause, "resume", &commands.resume),
                (
                    "disable_user",
                    &commands.disable_user,
                    "enable_user",
                    &commands.enable_user,
                ),
                (
                    "short_lived_tokens",
                    &commands.short_lived_tokens,
                    "usual_tokens",
                    &commands.usual_tokens,
                ),
            ];
            for (undo_name, undo, redo_name, redo) in pairs {
                if undo.is_some() != redo.is_some() {
                    return Err(config_error(
                        format!(
                            "control.{}: {undo_name} and {redo_name} go together (one is missing)",
                            part.name()
                        ),
                        "give both commands, or neither",
                    ));
                }
            }
        }
        let mesh_callers = match &parsed.mesh {
            Some(mesh) => Some(
                mesh_callers(mesh, base_dir)
                    .map_err(|(message, hint)| config_error(format!("mesh: {message}"), hint))?,
            ),
            None => None,
        };
        Ok(Self {
            declared_sidecar: parsed.mesh.map(|m| m.policy).unwrap_or_default(),
            file: file.to_string(),
            control: parsed.control,
            config_files: parsed
                .config_files
                .iter()
                .map(|relative| base_dir.join(relative))
                .collect(),
            endpoints: Endpoints {
                app: parsed.app_url,
                idp: parsed.idp_url,
                issuer: parsed.issuer,
                client_id: parsed.client_id,
                client_secret,
                user: TestUser {
                    username: parsed.user.username,
                    password,
                    email: parsed.user.email,
                },
                second_user,
                upstream_user: None,
                upstream_second_user: None,
                other_client,
                signing_key,
                role: parsed.role,
                roles_claim: parsed.roles_claim,
                session_cookie: parsed.session_cookie,
                session_refresh: parsed
                    .session_refresh_seconds
                    .map(std::time::Duration::from_secs),
                sign_in_hosts: parsed.sign_in_hosts,
                ca_pem,
                mesh: None,
                mesh_callers,
            },
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// What the runner may do to this deployment: only what the file's control commands say.
    pub fn control(&self) -> ExistingControl {
        ExistingControl {
            declared_sidecar: self.declared_sidecar.clone(),
            commands: self.control.clone(),
            disrupted: BTreeMap::new(),
            config_files: self.config_files.clone(),
        }
    }

    pub fn info(&self) -> EnvironmentInfo {
        EnvironmentInfo {
            kind: "existing".into(),
            app_url: self.endpoints.app.to_string(),
            idp_url: self.endpoints.idp.to_string(),
            issuer: self.endpoints.issuer.clone(),
            profile: std::iter::once(PolicySetting::info("described by", &self.file))
                .chain(self.endpoints.mesh_callers.iter().flat_map(|callers| {
                    let declared = |mut setting: PolicySetting| {
                        setting.setting = format!("{} (declared)", setting.setting);
                        setting
                    };
                    std::iter::once(PolicySetting::info(
                        "in-mesh callers (curl)",
                        format!(
                            "{}, outside the mesh: {}",
                            callers.mesh_workload.describe(),
                            callers
                                .outside_mesh
                                .as_ref()
                                .map(CallerRef::describe)
                                .unwrap_or_else(|| "none".into())
                        ),
                    ))
                    .chain(self.declared_sidecar.profile().into_iter().map(declared))
                }))
                .collect(),
            components: Vec::new(),
            run_dir: None,
            left_out: Vec::new(),
            limits: Vec::new(),
        }
    }
}

/// The in-mesh callers the `mesh:` section describes, or what is wrong with it.
fn mesh_callers(mesh: &MeshFile, base_dir: &Path) -> Result<MeshCallers, (String, &'static str)> {
    if mesh.service_url.scheme() != "http" {
        return Err((
            format!("service_url {} is not http://", mesh.service_url),
            "give the service's plain in-mesh address (http://httpbin.foo.svc.cluster.local:8000): \
             the caller's sidecar originates the mesh's mTLS",
        ));
    }
    for (field, caller) in std::iter::once(("caller", &mesh.caller))
        .chain(mesh.outside_caller.iter().map(|c| ("outside_caller", c)))
    {
        match caller {
            CallerRef::Pod(pod) if pod.pod.is_some() == pod.selector.is_some() => {
                return Err((
                    format!("{field} needs exactly one of pod and selector"),
                    "name the pod (pod: sleep-7d9f…) or a label selector (selector: app=sleep)",
                ));
            }
            CallerRef::Command(command) if command.command.is_empty() => {
                return Err((
                    format!("{field}'s command is empty"),
                    "give the program and its arguments that run curl where the caller is \
                     (command: [ssh, vm1, curl])",
                ));
            }
            _ => {}
        }
    }
    mesh.policy
        .validate()
        .map_err(|message| (format!("policy: {message}"), "see docs/mesh-matrix.md"))?;
    Ok(MeshCallers {
        service: mesh.service_url.clone(),
        access: KubeAccess {
            kubeconfig: mesh.kubeconfig.as_ref().map(|k| base_dir.join(k)),
            context: mesh.context.clone(),
        },
        mesh_workload: mesh.caller.clone(),
        outside_mesh: mesh.outside_caller.clone(),
    })
}

/// Disrupts a user's deployment with the commands its environment file names.
pub struct ExistingControl {
    declared_sidecar: SidecarPolicy,
    commands: BTreeMap<Part, PartCommands>,
    config_files: Vec<std::path::PathBuf>,
    /// How each part was disrupted, in order, to undo it the same way, newest first.
    disrupted: BTreeMap<Part, Vec<Disruption>>,
}

/// How long one control command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

impl ExistingControl {
    /// The commands that do and undo `disruption` of `part`.
    fn commands_for(&self, part: Part, disruption: Disruption) -> (Option<String>, Option<String>) {
        let (doing, undoing) = self
            .commands
            .get(&part)
            .map_or((None, None), |c| c.for_disruption(disruption));
        (doing.cloned(), undoing.cloned())
    }
}

async fn run_command(what: String, command: String) -> Result<(), String> {
    let output = tokio::time::timeout(
        COMMAND_TIMEOUT,
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("{what}: `{command}` did not finish within {COMMAND_TIMEOUT:?}"))?
    .map_err(|e| format!("{what}: could not run `{command}`: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
    Err(format!(
        "{what}: `{command}` failed ({}):\n{}",
        output.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ))
}

impl StackControl for ExistingControl {
    fn apply<'a>(
        &'a mut self,
        profile: &'a crate::policy::StackProfile,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + 'a>> {
        let is_what_it_is = profile.sign_in == SignInProfile::default()
            && profile
                .sidecar
                .as_ref()
                .is_none_or(|sidecar| *sidecar == self.declared_sidecar);
        Box::pin(std::future::ready(if is_what_it_is {
            Ok(())
        } else {
            crate::control::default_profile_only(profile)
        }))
    }

    /// The deployment is what it is: scenarios of its declared mesh policy run, and those
    /// of the default profile that do not call into the mesh (whose policy is not theirs).
    fn accepts_profile(&self, profile: &StackProfile, uses_mesh: bool) -> bool {
        // Without a `sidecar:` the scenario takes the deployment's own mesh policy.
        profile.sign_in == SignInProfile::default()
            && match &profile.sidecar {
                None => true,
                Some(sidecar) => {
                    *sidecar == self.declared_sidecar
                        || (!uses_mesh && *sidecar == SidecarPolicy::default())
                }
            }
    }

    fn config_files(&self) -> Result<Vec<crate::audit::ConfigFile>, String> {
        crate::audit::read_files(&self.config_files)
    }

    fn has_config_files(&self) -> bool {
        !self.config_files.is_empty()
    }

    fn can_disrupt(&self, part: Part, disruption: Disruption) -> bool {
        self.commands_for(part, disruption).0.is_some()
    }

    fn disrupt(
        &mut self,
        part: Part,
        disruption: Disruption,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + '_>> {
        let (command, undo) = self.commands_for(part, disruption);
        let disruptions = self.disrupted.entry(part).or_default();
        disruptions.push(disruption);
        // Ctrl-C must not leave the user's deployment disrupted: undone on the way out.
        if let Some(undo) = undo {
            let what = interrupt_key(part, disruptions.len());
            crate::components::process::on_interrupt(&what, move || {
                if let Err(error) = run_command_blocking(&undo) {
                    eprintln!("{error}");
                }
            });
        }
        Box::pin(async move {
            let command = command.ok_or_else(|| {
                format!(
                    "the environment file names no {disruption:?} command for {}",
                    part.name()
                )
            })?;
            run_command(format!("disrupting the {}", part.name()), command).await
        })
    }

    fn restore(
        &mut self,
        part: Part,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + '_>> {
        Box::pin(async move {
            // Newest first, each forgotten only once undone: a failed restore is tried again.
            while let Some(&disruption) = self.disrupted.get(&part).and_then(|d| d.last()) {
                if let (_, Some(command)) = self.commands_for(part, disruption) {
                    run_command(format!("restoring the {}", part.name()), command).await?;
                }
                if let Some(done) = self.disrupted.get_mut(&part) {
                    crate::components::process::forget_on_interrupt(&interrupt_key(
                        part,
                        done.len(),
                    ));
                    done.pop();
                }
            }
            self.disrupted.remove(&part);
            Ok(())
        })
    }
}

/// Whatever a run leaves disrupted (it stopped early: an error, a cancelled scenario) is
/// undone before the harness lets go of the deployment, newest first.
impl Drop for ExistingControl {
    fn drop(&mut self) {
        for (part, disruptions) in std::mem::take(&mut self.disrupted) {
            for (depth, disruption) in disruptions.into_iter().enumerate().rev() {
                crate::components::process::forget_on_interrupt(&interrupt_key(part, depth + 1));
                if let (_, Some(undo)) = self.commands_for(part, disruption) {
                    eprintln!("restoring the {} the run left disrupted", part.name());
                    if let Err(error) = run_command_blocking(&undo) {
                        eprintln!("{error}");
                    }
                }
            }
        }
    }
}

fn interrupt_key(part: Part, depth: usize) -> String {
    format!("restoring the {} (disruption {depth})", part.name())
}

/// [`run_command`] outside the runtime (Ctrl-C, drop), bounded the same way.
fn run_command_blocking(command: &str) -> Result<(), String> {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("could not run `{command}`: {e}"))?;
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("`{command}` failed ({status})")),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{command}` did not finish within {COMMAND_TIMEOUT:?}"
                ));
            }
            Err(e) => return Err(format!("`{command}`: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "app_url: https://app.example.test/\nidp_url: https://idp.example.test/\n\
        issuer: https://idp.example.test/realms/r\nclient_id: proxy\nclient_secret_env: CS\n\
        user:\n  username: alice\n  email: a@example.test\n  password_env: PW\nrole: sso-user\n";

    fn env(name: &str) -> Option<String> {
        match name {
            "CS" => Some("client-secret-value".into()),
            "PW" => Some("password-value".into()),
            _ => None,
        }
    }

    #[test]
    fn control_commands_come_in_pairs_and_enable_only_their_disruptions() {
        let with_control =
            format!("{GOOD}control:\n  auth_service:\n    stop: \"true\"\n    start: \"true\"\n");
        let parsed =
            ExistingEnvironment::parse("env.yaml", &with_control, Path::new("."), &env).unwrap();
        let control = parsed.control();
        assert!(control.can_disrupt(Part::AuthService, Disruption::Stop));
        assert!(!control.can_disrupt(Part::AuthService, Disruption::Pause));
        assert!(!control.can_disrupt(Part::Idp, Disruption::Stop));
        for (half, message) in [
            ("pause", "control.idp: pause and resume go together"),
            (
                "short_lived_tokens",
                "control.idp: short_lived_tokens and usual_tokens go together",
            ),
        ] {
            let file = format!("{GOOD}control:\n  idp:\n    {half}: \"true\"\n");
            let error = ExistingEnvironment::parse("env.yaml", &file, Path::new("."), &env)
                .unwrap_err()
                .to_string();
            assert!(error.contains(message), "{error}");
        }
        let idp = format!(
            "{GOOD}control:\n  idp:\n    disable_user: \"true\"\n    enable_user: \"true\"\n"
        );
        let parsed = ExistingEnvironment::parse("env.yaml", &idp, Path::new("."), &env).unwrap();
        let control = parsed.control();
        assert!(control.can_disrupt(Part::Idp, Disruption::DisableUser));
        assert!(!control.can_disrupt(Part::Idp, Disruption::ShortLivedTokens));
    }

    #[tokio::test]
    async fn a_failing_control_command_says_which_and_why() {
        let file = format!(
            "{GOOD}control:\n  app:\n    stop: \"echo no permission >&2; exit 3\"\n    start: \"true\"\n"
        );
        let parsed = ExistingEnvironment::parse("env.yaml", &file, Path::new("."), &env).unwrap();
        let mut control = parsed.control();
        let error = control
            .disrupt(Part::App, Disruption::Stop)
            .await
            .unwrap_err();
        assert!(
            error.starts_with("disrupting the app: `echo no permission >&2; exit 3` failed")
                && error.ends_with("no permission"),
            "{error}"
        );
        control.restore(Part::App).await.unwrap();
    }

    #[tokio::test]
    async fn a_part_disrupted_twice_is_restored_newest_first() {
        let log = std::env::temp_dir().join(format!("meshauth-undo-{}", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let step = |word: &str| format!("\"echo {word} >> {}\"", log.display());
        let file = format!(
            "{GOOD}control:\n  idp:\n    short_lived_tokens: {}\n    usual_tokens: {}\n    \
             disable_user: {}\n    enable_user: {}\n",
            step("short"),
            step("usual"),
            step("disable"),
            step("enable")
        );
        let parsed = ExistingEnvironment::parse("env.yaml", &file, Path::new("."), &env).unwrap();
        let mut control = parsed.control();
        control
            .disrupt(Part::Idp, Disruption::ShortLivedTokens)
            .await
            .unwrap();
        control
            .disrupt(Part::Idp, Disruption::DisableUser)
            .await
            .unwrap();
        control.restore(Part::Idp).await.unwrap();
        // Nothing left to undo: a second restore runs no command.
        control.restore(Part::Idp).await.unwrap();
        let done = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        assert_eq!(done, "short\ndisable\nenable\nusual\n");
    }

    /// A run that ends with a part still disrupted (an error, a cancelled scenario) leaves
    /// the deployment as it found it: the undo commands run, newest first, when the control
    /// is dropped (Ctrl-C runs the same commands from the interrupt handler).
    #[tokio::test]
    async fn what_a_run_leaves_disrupted_is_undone_when_it_lets_go() {
        let log = std::env::temp_dir().join(format!("meshauth-left-{}", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let step = |word: &str| format!("\"echo {word} >> {}\"", log.display());
        let file = format!(
            "{GOOD}control:\n  auth_service:\n    stop: {}\n    start: {}\n    pause: {}\n    \
             resume: {}\n",
            step("stop"),
            step("start"),
            step("pause"),
            step("resume")
        );
        let parsed = ExistingEnvironment::parse("env.yaml", &file, Path::new("."), &env).unwrap();
        let mut control = parsed.control();
        control
            .disrupt(Part::AuthService, Disruption::Stop)
            .await
            .unwrap();
        control
            .disrupt(Part::AuthService, Disruption::Pause)
            .await
            .unwrap();
        drop(control);
        let done = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        assert_eq!(done, "stop\npause\nresume\nstart\n");
    }

    const MESH: &str = "mesh:\n  context: prod\n  kubeconfig: kube/config\n  \
        service_url: http://httpbin.foo.svc.cluster.local:8000\n  \
        caller: { namespace: foo, selector: app=sleep, container: sleep }\n  \
        policy: { peer_authentication: strict, request_authentication: true, authorization: request_principal }\n";

    /// A kube context and a pod to call from: the endpoints the mesh scenarios call by exec
    /// (which of them run is the plan's: `engine::plan`'s tests).
    #[test]
    fn a_mesh_section_gives_pod_callers() {
        let parsed = ExistingEnvironment::parse(
            "env.yaml",
            &format!("{GOOD}{MESH}"),
            Path::new("/etc/meshauth"),
            &env,
        )
        .unwrap();
        let callers = parsed.endpoints().mesh_callers.as_ref().unwrap();
        assert_eq!(
            callers.access.kubeconfig.as_deref(),
            Some(Path::new("/etc/meshauth/kube/config"))
        );
        assert_eq!(callers.access.context.as_deref(), Some("prod"));
        assert_eq!(callers.mesh_workload.describe(), "foo/[app=sleep]");
        assert_eq!(
            parsed.endpoints().variables().expand("${sidecar}/headers"),
            "http://httpbin.foo.svc.cluster.local:8000/headers"
        );
    }

    /// Callers outside Kubernetes: commands that run curl where the callers are; no context.
    #[test]
    fn a_mesh_section_gives_command_callers() {
        let mesh = "mesh:\n  service_url: http://httpbin.foo.svc.cluster.local:8000\n  \
            caller: { command: [ssh, vm1, curl] }\n  \
            outside_caller: { command: [docker, exec, -i, legacy-sleep, curl] }\n";
        let parsed =
            ExistingEnvironment::parse("env.yaml", &format!("{GOOD}{mesh}"), Path::new("."), &env)
                .unwrap();
        let callers = parsed.endpoints().mesh_callers.as_ref().unwrap();
        assert_eq!(callers.access, KubeAccess::default());
        assert_eq!(callers.mesh_workload.describe(), "`ssh vm1 curl`");
        assert_eq!(
            callers.outside_mesh.as_ref().map(CallerRef::describe),
            Some("`docker exec -i legacy-sleep curl`".to_string())
        );
    }

    #[test]
    fn a_mesh_section_with_mistakes_says_which() {
        for (broken, says) in [
            (
                MESH.replace("http://httpbin", "https://httpbin"),
                "is not http://",
            ),
            (
                MESH.replace("selector: app=sleep,", "selector: app=sleep, pod: sleep-1,"),
                "caller needs exactly one of pod and selector",
            ),
            (
                MESH.replace(
                    "request_authentication: true",
                    "request_authentication: false",
                ),
                "policy: authorization request_principal needs request_authentication",
            ),
            (MESH.replace("context: prod", "contxt: prod"), "contxt"),
            (
                MESH.replace("container: sleep", "containr: sleep"),
                "unknown field `containr`",
            ),
            (
                MESH.replace(
                    "{ namespace: foo, selector: app=sleep, container: sleep }",
                    "{ command: [] }",
                ),
                "caller's command is empty",
            ),
            (
                MESH.replace(
                    "{ namespace: foo, selector: app=sleep, container: sleep }",
                    "{ command: [ssh, vm1, curl], namespace: foo }",
                ),
                "unknown field `namespace`",
            ),
        ] {
            let error = ExistingEnvironment::parse(
                "env.yaml",
                &format!("{GOOD}{broken}"),
                Path::new("."),
                &env,
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains(says), "{says}: {error}");
        }
    }

    #[test]
    fn parses_a_complete_file() {
        let parsed = ExistingEnvironment::parse("env.yaml", GOOD, Path::new("."), &env).unwrap();
        assert_eq!(parsed.endpoints().client_id, "proxy");
        assert_eq!(parsed.endpoints().roles_claim, "realm_roles");
        assert_eq!(
            parsed.endpoints().client_secret.expose(),
            "client-secret-value"
        );
    }

    #[test]
    fn unknown_fields_and_missing_secrets_are_clear_errors() {
        let typo = GOOD.replace("role: sso-user", "rol: sso-user");
        let error = ExistingEnvironment::parse("env.yaml", &typo, Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("env.yaml:") && error.contains("rol"),
            "{error}"
        );
        let error = ExistingEnvironment::parse("env.yaml", GOOD, Path::new("."), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("$CS, which is not set") && error.contains("export CS="),
            "{error}"
        );
    }
}
