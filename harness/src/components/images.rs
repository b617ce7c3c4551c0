//! Images of the components built here from the very binaries the local environment runs,
//! tagged with the references the containers environment names, so that nothing is pulled:
//! `meshauth images build` (for machines and clusters without registry access).
//!
//! Each image is `FROM scratch`: the component's files, the shared libraries `ldd` resolves for
//! its binaries (the ones they run with here), a few files of `/etc`, and the machine's CA
//! bundle. An image is built again only when what goes into it changed: its inputs' digest is a
//! label on the image.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::ComponentError;
use super::container::ContainerImages;
use super::install::{CacheDir, Toolchain, io, run};

/// The label holding the digest of an image's inputs.
const INPUTS_LABEL: &str = "meshauth.inputs";
/// The statically linked shell and tools Keycloak's `kc.sh` needs, from Debian's packages.
const BUSYBOX_PACKAGE: &str = "busybox-static";

/// A container engine's command-line client that builds images: podman or docker.
#[derive(Debug, Clone)]
pub struct ImageEngine {
    pub program: PathBuf,
}

impl ImageEngine {
    /// `$MESHAUTH_CONTAINER_ENGINE`, else `podman`, else `docker`, from `PATH`.
    pub fn find() -> Result<Self, ComponentError> {
        if let Some(program) =
            std::env::var_os("MESHAUTH_CONTAINER_ENGINE").filter(|v| !v.is_empty())
        {
            return Ok(Self {
                program: program.into(),
            });
        }
        ["podman", "docker"]
            .into_iter()
            .find(|program| {
                Command::new(program)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .map(|program| Self {
                program: program.into(),
            })
            .ok_or_else(|| ComponentError::Unusable {
                component: "images",
                reason: "neither podman nor docker is on PATH".into(),
                hint: "install podman (Debian: apt-get install podman) or Docker, or set \
                       MESHAUTH_CONTAINER_ENGINE to its client"
                    .into(),
            })
    }

    /// Builds `context` (its `Containerfile`) as `references`, labelled with `inputs`.
    pub(super) fn build(
        &self,
        references: &[&str],
        inputs: &str,
        context: &Path,
    ) -> Result<(), ComponentError> {
        let mut command = Command::new(&self.program);
        command.arg("build");
        for reference in references {
            command.arg("--tag").arg(reference);
        }
        command
            .arg("--label")
            .arg(format!("{INPUTS_LABEL}={inputs}"))
            .arg("--file")
            .arg(context.join("Containerfile"))
            .arg(context);
        run(
            "images",
            &mut command,
            "the engine must build FROM scratch without a registry; with podman as root, \
             /etc/containers/containers.conf needs ulimits within the hard limits (see \
             docs/cluster-lab.md)",
        )
        .map(drop)
    }

    /// The inputs digest labelled on `reference`, if the engine has that image.
    pub(super) fn inputs_of(&self, reference: &str) -> Option<String> {
        let output = Command::new(&self.program)
            .args(["image", "inspect", "--format"])
            .arg(format!("{{{{ index .Config.Labels \"{INPUTS_LABEL}\" }}}}"))
            .arg(reference)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }
}

/// What building one image did.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub reference: String,
    /// Built now (and how long it took), or already there with the same inputs.
    pub built_seconds: Option<f64>,
}

/// Progress, one line per image.
#[derive(Debug, Clone)]
pub enum ImageEvent {
    Building { reference: String },
    Done(BuiltImage),
}

/// One image's build context: its files (host path → path in the image), symlinks, and the
/// Containerfile lines after `COPY rootfs/ /`.
pub(super) struct ImageRecipe {
    reference: String,
    /// The image this one starts from (`FROM`), built here too; `None`: `FROM scratch` with
    /// the libraries `ldd` finds and a few files of `/etc`.
    base: Option<String>,
    /// More references the same image is tagged with.
    also_tagged: Vec<String>,
    files: Vec<(PathBuf, PathBuf)>,
    /// Whole directories copied as they are (symlinks pointing outside resolved).
    trees: Vec<(PathBuf, PathBuf)>,
    links: Vec<(PathBuf, PathBuf)>,
    /// Binaries whose shared libraries go in too, with extra library directories.
    binaries: Vec<(PathBuf, Vec<PathBuf>)>,
    /// Directories (created if absent) the image's user may write to through group 0, as
    /// `chmod -R g+rwX` in the upstream image.
    group_writable: Vec<PathBuf>,
    instructions: Vec<String>,
}

impl ImageRecipe {
    pub(super) fn new(reference: &str) -> Self {
        Self {
            reference: reference.to_string(),
            base: None,
            also_tagged: Vec::new(),
            files: Vec::new(),
            trees: Vec::new(),
            links: Vec::new(),
            binaries: Vec::new(),
            group_writable: Vec::new(),
            instructions: Vec::new(),
        }
    }

    /// A directory the image's user (uid 1000, gid 0) may write to.
    fn group_writable(mut self, inside: &str) -> Self {
        self.group_writable.push(inside.into());
        self
    }

    /// Built `FROM base` (which brings its own libraries and `/etc`).
    pub(super) fn from(mut self, base: &str) -> Self {
        self.base = Some(base.to_string());
        self
    }

    pub(super) fn also_tagged(mut self, reference: &str) -> Self {
        self.also_tagged.push(reference.to_string());
        self
    }

    /// A file at `inside`, as it is.
    pub(super) fn file(mut self, host: &Path, inside: &str) -> Self {
        self.files.push((host.to_path_buf(), inside.into()));
        self
    }

    /// A program at `inside`, with its shared libraries.
    pub(super) fn program(mut self, host: &Path, inside: &str, library_dirs: &[PathBuf]) -> Self {
        self.files.push((host.to_path_buf(), inside.into()));
        self.binaries
            .push((host.to_path_buf(), library_dirs.to_vec()));
        self
    }

    /// Busybox as `/bin/busybox`, and a link in `/bin` for each of its applets (a shell, `sleep`).
    pub(super) fn with_busybox(mut self, busybox: &Path) -> Result<Self, ComponentError> {
        self = self.program(busybox, "/bin/busybox", &[]);
        self.links.extend(busybox_applets(busybox)?);
        Ok(self)
    }

    /// A directory at `inside`, as it is.
    fn tree(mut self, host: &Path, inside: &str) -> Self {
        self.trees.push((host.to_path_buf(), inside.into()));
        self
    }

    pub(super) fn instruction(mut self, line: impl Into<String>) -> Self {
        self.instructions.push(line.into());
        self
    }
}

/// Builds every image the containers environment runs (those already built from the same
/// inputs are kept), from the components of `toolchain`.
pub fn build_images(
    cache: &CacheDir,
    toolchain: &Toolchain,
    engine: &ImageEngine,
    observe: &dyn Fn(ImageEvent),
) -> Result<Vec<BuiltImage>, ComponentError> {
    let images = ContainerImages::pinned();
    let busybox = ensure_busybox(cache)?;
    let java = &toolchain.java.home;
    let java_libraries = [java.join("lib"), java.join("lib/server")];
    let mut keycloak = ImageRecipe::new(&images.keycloak)
        .with_busybox(&busybox)?
        .tree(java, "/opt/java/openjdk")
        .tree(&toolchain.keycloak_home, "/opt/keycloak")
        // Keycloak writes its build (lib/quarkus) and data/ (the truststore, the dev database)
        // at start. With `--user 0:0` (--env containers) any mode does; on Kubernetes the
        // image's own user 1000 runs it, whose group is 0: the upstream image makes
        // /opt/keycloak group-writable for exactly that.
        .group_writable("/opt/keycloak")
        .group_writable("/opt/keycloak/data")
        .instruction("ENV JAVA_HOME=/opt/java/openjdk PATH=/opt/java/openjdk/bin:/usr/local/bin:/usr/bin:/bin LANG=en_US.UTF-8")
        .instruction("USER 1000")
        .instruction("ENTRYPOINT [\"/opt/keycloak/bin/kc.sh\"]");
    keycloak
        .binaries
        .push((java.join("bin/java"), java_libraries.to_vec()));
    for library in walk(&java.join("lib"))? {
        if library.extension().is_some_and(|e| e == "so") {
            keycloak.binaries.push((library, java_libraries.to_vec()));
        }
    }
    let redis_libs: Vec<PathBuf> = toolchain.redis.library_dir.iter().cloned().collect();
    let mut redis = ImageRecipe::new(&images.redis).program(
        &toolchain.redis.binary,
        "/usr/local/bin/redis-server",
        &redis_libs,
    );
    // Its libraries from the cache (liblzf, jemalloc) sit at the cache's path inside the image
    // too: the image itself says where (the local launch's LD_LIBRARY_PATH made --env
    // containers work, a Kubernetes pod has no such variable).
    if !redis_libs.is_empty() {
        let joined = std::env::join_paths(&redis_libs).map_err(|e| ComponentError::Unusable {
            component: "redis",
            reason: format!("its library directory cannot be a search path: {e}"),
            hint: "move the component cache to a path without ':'".into(),
        })?;
        redis = redis.instruction(format!("ENV LD_LIBRARY_PATH={}", joined.to_string_lossy()));
    }
    let recipes = [
        ImageRecipe::new(&images.httpbin)
            .program(&toolchain.httpbin, "/bin/go-httpbin", &[])
            .instruction("ENTRYPOINT [\"/bin/go-httpbin\"]"),
        ImageRecipe::new(&images.oauth2_proxy)
            .program(&toolchain.oauth2_proxy, "/bin/oauth2-proxy", &[])
            .instruction("ENTRYPOINT [\"/bin/oauth2-proxy\"]"),
        ImageRecipe::new(&images.envoy)
            .program(&toolchain.envoy, "/usr/local/bin/envoy", &[])
            .instruction("ENTRYPOINT [\"/usr/local/bin/envoy\"]"),
        redis.instruction("ENTRYPOINT [\"/usr/local/bin/redis-server\"]"),
        ImageRecipe::new(&images.node)
            .program(
                &resolve_program(
                    &toolchain.oidc_idp.node,
                    "set MESHAUTH_NODE to the node binary",
                )?,
                "/usr/local/bin/node",
                &[],
            )
            .instruction("ENTRYPOINT [\"/usr/local/bin/node\"]"),
        keycloak,
    ];
    let root = cache.path().join("images");
    recipes
        .iter()
        .map(|recipe| build_one(&root, recipe, engine, observe))
        .collect()
}

pub(super) fn build_one(
    root: &Path,
    recipe: &ImageRecipe,
    engine: &ImageEngine,
    observe: &dyn Fn(ImageEvent),
) -> Result<BuiltImage, ComponentError> {
    let mut libraries = BTreeSet::new();
    if recipe.base.is_none() {
        for (binary, library_dirs) in &recipe.binaries {
            libraries.extend(shared_libraries(binary, library_dirs)?);
        }
    }
    // Libraries of a tree the image holds anyway (the JDK's own) are not copied twice.
    libraries.retain(|library| {
        !recipe
            .trees
            .iter()
            .any(|(tree, _)| library.starts_with(tree))
    });
    let containerfile = containerfile(recipe);
    // An image built on an older base is built again.
    let base_inputs = recipe
        .base
        .as_deref()
        .and_then(|base| engine.inputs_of(base));
    let inputs = inputs_digest(
        recipe,
        &libraries,
        &format!("{containerfile}{base_inputs:?}"),
    )?;
    if engine.inputs_of(&recipe.reference).as_deref() == Some(inputs.as_str()) {
        let done = BuiltImage {
            reference: recipe.reference.clone(),
            built_seconds: None,
        };
        observe(ImageEvent::Done(done.clone()));
        return Ok(done);
    }
    observe(ImageEvent::Building {
        reference: recipe.reference.clone(),
    });
    let started = Instant::now();
    let context = root.join(context_name(&recipe.reference));
    let _ = std::fs::remove_dir_all(&context);
    let rootfs = context.join("rootfs");
    if recipe.base.is_none() {
        write_etc(&rootfs)?;
    } else {
        std::fs::create_dir_all(&rootfs).map_err(io(format!("create {}", rootfs.display())))?;
    }
    for library in &libraries {
        copy_file(library, &inside(&rootfs, library))?;
    }
    for (host, path) in &recipe.trees {
        copy_tree(host, &inside(&rootfs, path))?;
    }
    for (host, path) in &recipe.files {
        copy_file(host, &inside(&rootfs, path))?;
    }
    for (link, target) in &recipe.links {
        let at = inside(&rootfs, link);
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
        }
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(target, &at).map_err(io(format!("link {}", at.display())))?;
    }
    for path in &recipe.group_writable {
        let at = inside(&rootfs, path);
        std::fs::create_dir_all(&at).map_err(io(format!("create {}", at.display())))?;
        group_writable(&at)?;
    }
    let file = context.join("Containerfile");
    std::fs::write(&file, &containerfile).map_err(io(format!("write {}", file.display())))?;
    let mut references = vec![recipe.reference.as_str()];
    references.extend(recipe.also_tagged.iter().map(String::as_str));
    engine.build(&references, &inputs, &context)?;
    // The context holds copies of the JDK and Keycloak: the image has them now.
    let _ = std::fs::remove_dir_all(&context);
    let done = BuiltImage {
        reference: recipe.reference.clone(),
        built_seconds: Some(started.elapsed().as_secs_f64()),
    };
    observe(ImageEvent::Done(done.clone()));
    Ok(done)
}

fn containerfile(recipe: &ImageRecipe) -> String {
    let mut text = match &recipe.base {
        None => String::from(
            "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n",
        ),
        Some(base) => format!("FROM {base}\nCOPY rootfs/ /\n"),
    };
    // Part of the inputs' digest: an image built before the directories were writable is
    // built again.
    for path in &recipe.group_writable {
        text.push_str(&format!("# group-writable in rootfs: {}\n", path.display()));
    }
    for line in &recipe.instructions {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// What decides an image's content: the Containerfile, and each input file's path, size and
/// modification time (a directory's: every file under it).
fn inputs_digest(
    recipe: &ImageRecipe,
    libraries: &BTreeSet<PathBuf>,
    containerfile: &str,
) -> Result<String, ComponentError> {
    let mut listing = String::from(containerfile);
    let mut note = |path: &Path| -> Result<(), ComponentError> {
        let meta = std::fs::metadata(path).map_err(io(format!("read {}", path.display())))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let _ = writeln!(listing, "{} {} {modified}", path.display(), meta.len());
        Ok(())
    };
    for (host, _) in &recipe.files {
        note(host)?;
    }
    for library in libraries {
        note(library)?;
    }
    for (host, _) in &recipe.trees {
        for entry in walk(host)? {
            note(&entry)?;
        }
    }
    for (link, target) in &recipe.links {
        let _ = writeln!(listing, "{} -> {}", link.display(), target.display());
    }
    Ok(format!("{:016x}", fnv1a(listing.as_bytes())))
}

pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every regular file under `dir` (symlinks followed), sorted.
pub(super) fn walk(dir: &Path) -> Result<Vec<PathBuf>, ComponentError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).map_err(io(format!("read {}", next.display())))? {
            let path = entry
                .map_err(io(format!("read {}", next.display())))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `inside` as a path under `rootfs`.
fn inside(rootfs: &Path, inside: &Path) -> PathBuf {
    rootfs.join(inside.strip_prefix("/").unwrap_or(inside))
}

fn context_name(reference: &str) -> String {
    reference
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The shared libraries `ldd` resolves for `binary` (with `library_dirs` searched first, as
/// the component runs), the dynamic loader included; none for a static binary.
fn shared_libraries(
    binary: &Path,
    library_dirs: &[PathBuf],
) -> Result<Vec<PathBuf>, ComponentError> {
    let mut ldd = Command::new("ldd");
    ldd.arg(binary);
    if !library_dirs.is_empty() {
        let joined = std::env::join_paths(library_dirs).map_err(|e| {
            io(format!("library path for {}", binary.display()))(std::io::Error::other(e))
        })?;
        ldd.env("LD_LIBRARY_PATH", joined);
    }
    let output = ldd
        .output()
        .map_err(io(format!("run ldd {}", binary.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_ldd(&stdout).map_err(|missing| ComponentError::Unusable {
        component: "images",
        reason: format!(
            "{} needs {missing}, which ldd cannot find",
            binary.display()
        ),
        hint: "install the library, or point the component's MESHAUTH_* override at a build \
               that runs here"
            .into(),
    })
}

/// The library paths in `ldd`'s output, or the first library it could not find.
fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut libraries = Vec::new();
    for line in output.lines().map(str::trim) {
        let target = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    return Err(name.trim().to_string());
                }
                target
            }
            None => line,
        };
        let path = target.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// `program` as a path: itself when it has a slash, else where `PATH` finds it.
pub(super) fn resolve_program(program: &Path, hint: &str) -> Result<PathBuf, ComponentError> {
    if program.components().count() > 1 {
        return Ok(program.to_path_buf());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ComponentError::Unusable {
            component: "images",
            reason: format!("{} is not on PATH", program.display()),
            hint: hint.into(),
        })
}

/// Debian's statically linked busybox, unpacked into the cache (`apt-get download`).
pub(super) fn ensure_busybox(cache: &CacheDir) -> Result<PathBuf, ComponentError> {
    let dir = cache.path().join("busybox-static");
    let binary = dir.join("bin/busybox");
    if binary.is_file() {
        return Ok(binary);
    }
    let hint = "run `apt-get update` so apt knows busybox-static";
    let staging = cache.path().join("busybox-static.partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(format!("create {}", staging.display())))?;
    run(
        "images",
        Command::new("apt-get")
            .current_dir(&staging)
            .args(["download", BUSYBOX_PACKAGE]),
        hint,
    )?;
    let unpacked = staging.join("root");
    for entry in std::fs::read_dir(&staging).map_err(io(format!("read {}", staging.display())))? {
        let deb = entry
            .map_err(io(format!("read {}", staging.display())))?
            .path();
        if deb.extension().is_some_and(|e| e == "deb") {
            run(
                "images",
                Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
                hint,
            )?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&unpacked, &dir).map_err(io(format!("move busybox into {}", dir.display())))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(binary)
}

/// A link in `/bin` for every applet busybox has (the shell and tools `kc.sh` runs).
fn busybox_applets(busybox: &Path) -> Result<Vec<(PathBuf, PathBuf)>, ComponentError> {
    let listed = run(
        "images",
        Command::new(busybox).arg("--list"),
        "the busybox-static package's binary must run here",
    )?;
    Ok(listed
        .lines()
        .map(str::trim)
        .filter(|applet| !applet.is_empty() && *applet != "busybox")
        .map(|applet| (PathBuf::from("/bin").join(applet), PathBuf::from("busybox")))
        .collect())
}

/// The few files of `/etc` programs expect, the machine's CA bundle, and a `/tmp`.
fn write_etc(rootfs: &Path) -> Result<(), ComponentError> {
    let etc = rootfs.join("etc");
    std::fs::create_dir_all(etc.join("ssl/certs"))
        .map_err(io(format!("create {}", etc.display())))?;
    for (name, text) in [
        (
            "passwd",
            "root:x:0:0:root:/root:/bin/sh\nkeycloak:x:1000:0:keycloak:/opt/keycloak:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("group", "root:x:0:\nnogroup:x:65534:\n"),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files dns\n",
        ),
        ("hosts", "127.0.0.1 localhost\n::1 localhost\n"),
    ] {
        std::fs::write(etc.join(name), text).map_err(io(format!("write /etc/{name}")))?;
    }
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if bundle.is_file() {
        copy_file(bundle, &etc.join("ssl/certs/ca-certificates.crt"))?;
    }
    let tmp = rootfs.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
        .map_err(io(format!("chmod {}", tmp.display())))?;
    Ok(())
}

/// Copies `from` (a symlink's target, for a link) to `to`, keeping its mode.
pub(super) fn copy_file(from: &Path, to: &Path) -> Result<(), ComponentError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
    }
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to).map_err(io(format!("copy {} to {}", from.display(), to.display())))?;
    Ok(())
}

/// Copies the tree `from` to `to`: links that stay inside it are kept as links, links out of
/// it (a JDK's `cacerts` into `/etc`) are replaced by what they point at.
/// `chmod -R g+rwX`: group read and write everywhere, group execute on directories and on
/// files someone may execute. Symbolic links are left alone.
fn group_writable(path: &Path) -> Result<(), ComponentError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata =
        std::fs::symlink_metadata(path).map_err(io(format!("read {}", path.display())))?;
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    let mode = metadata.permissions().mode();
    let mut wanted = mode | 0o060;
    if metadata.is_dir() || mode & 0o111 != 0 {
        wanted |= 0o010;
    }
    if wanted != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))
            .map_err(io(format!("chmod {}", path.display())))?;
    }
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io(format!("read {}", path.display())))? {
            let entry = entry.map_err(io(format!("read {}", path.display())))?;
            group_writable(&entry.path())?;
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), ComponentError> {
    let root = from
        .canonicalize()
        .map_err(io(format!("read {}", from.display())))?;
    copy_tree_within(&root, from, to)
}

fn copy_tree_within(root: &Path, from: &Path, to: &Path) -> Result<(), ComponentError> {
    std::fs::create_dir_all(to).map_err(io(format!("create {}", to.display())))?;
    for entry in std::fs::read_dir(from).map_err(io(format!("read {}", from.display())))? {
        let entry = entry.map_err(io(format!("read {}", from.display())))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(io(format!("read {}", source.display())))?;
        if kind.is_symlink() {
            let link =
                std::fs::read_link(&source).map_err(io(format!("read {}", source.display())))?;
            let stays_inside = link.is_relative()
                && source
                    .canonicalize()
                    .is_ok_and(|resolved| resolved.starts_with(root));
            if stays_inside {
                let _ = std::fs::remove_file(&target);
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(io(format!("link {}", target.display())))?;
            } else if source.is_dir() {
                copy_tree_within(root, &source, &target)?;
            } else if source.is_file() {
                copy_file(&source, &target)?;
            }
        } else if kind.is_dir() {
            copy_tree_within(root, &source, &target)?;
        } else {
            copy_file(&source, &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_every_resolved_library_and_names_a_missing_one() {
        let recorded = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        assert_eq!(
            parse_ldd(recorded).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libm.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(
            parse_ldd("\tnot a dynamic executable\n")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            parse_ldd("\tliblzf.so.1 => not found\n").unwrap_err(),
            "liblzf.so.1"
        );
    }

    #[test]
    fn group_writable_is_chmod_g_plus_rwx() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("meshauth-gw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/kc.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(root.join("README.md"), "hi\n").unwrap();
        for (path, mode) in [("bin", 0o755), ("bin/kc.sh", 0o755), ("README.md", 0o644)] {
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        group_writable(&root).unwrap();
        let mode = |path: &str| {
            std::fs::metadata(root.join(path))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(""), 0o775);
        assert_eq!(mode("bin"), 0o775);
        assert_eq!(mode("bin/kc.sh"), 0o775);
        assert_eq!(mode("README.md"), 0o664);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn containerfiles_start_from_scratch_and_name_the_program() {
        let recipe = ImageRecipe::new("docker.io/mccutchen/go-httpbin:2.26.0")
            .program(Path::new("/cache/go-httpbin"), "/bin/go-httpbin", &[])
            .instruction("ENTRYPOINT [\"/bin/go-httpbin\"]");
        let text = containerfile(&recipe);
        assert!(text.starts_with("FROM scratch\nCOPY rootfs/ /\n"), "{text}");
        assert!(
            text.ends_with("ENTRYPOINT [\"/bin/go-httpbin\"]\n"),
            "{text}"
        );
        assert_eq!(
            context_name("docker.io/mccutchen/go-httpbin:2.26.0"),
            "docker-io-mccutchen-go-httpbin-2-26-0"
        );
    }
}
