//! What `--env kind --images local` needs beyond the apps' images, built here from pinned
//! sources so that a cluster runs with no registry: kind and istioctl, Istio's `pilot` and
//! `proxyv2` images, and a kind node image of Kubernetes built from its Go modules, which brings
//! the control plane's images with it (`meshauth images build --kind`).
//!
//! The node is kind's own base image (its `images/base` files, from kind's Go module) on a
//! Debian root file system made with mmdebstrap from the machine's apt sources, with Debian's
//! containerd, runc and CNI plugins where kind builds them from git. Everything is cached: the
//! programs by version and sources, each image by the digest of its inputs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::images::{
    BuiltImage, ImageEngine, ImageEvent, ImageRecipe, build_one, copy_file, ensure_busybox, fnv1a,
    resolve_program,
};
use super::install::{
    CacheDir, ETCD_PACKAGE, InstallEvent, KUBE_APISERVER_PACKAGE, Toolchain, build_go_programs,
    build_kube_programs, copy_tree, digest, go_command, go_module_dir, io, program_name, run,
};
use super::{ComponentError, versions};

/// Where Istio's images are with local images: `localhost/istio/{pilot,proxyv2}:TAG`, TAG
/// being the version the built istioctl reports.
pub const LOCAL_ISTIO_HUB: &str = "localhost/istio";
/// The node image `meshauth images build --kind` makes: Kubernetes `KUBE_APISERVER`, the CNI
/// configuration of its own (a bridge with host-local addresses), the control plane's images.
pub const LOCAL_NODE_IMAGE: &str = "localhost/meshauth/kind-node:v1.34.4";
const BASE_IMAGE: &str = "localhost/meshauth/kind-base:bookworm";
/// The in-mesh callers' image with local images: this machine's curl (Debian's, with the
/// libraries it links) and busybox for a shell and `sleep`, as `sleep` pods in and outside the
/// mesh run it.
pub const LOCAL_CALLER_IMAGE: &str = "localhost/meshauth/curl:debian";
/// The node's hard limits: this machine's (nofile 20000) and podman's conmon's (nproc 32768).
const NODE_NOFILE: u32 = 20_000;
const NODE_NPROC: u32 = 32_768;
/// The node's pod addresses (one node: kind's pod subnet's first /24).
const NODE_POD_SUBNET: &str = "10.244.0.0/24";

const KUBE_PROGRAMS: &[&str] = &[
    KUBE_APISERVER_PACKAGE,
    "k8s.io/kubernetes/cmd/kube-controller-manager",
    "k8s.io/kubernetes/cmd/kube-scheduler",
    "k8s.io/kubernetes/cmd/kube-proxy",
    "k8s.io/kubernetes/cmd/kubelet",
    "k8s.io/kubernetes/cmd/kubeadm",
    "k8s.io/kubernetes/cmd/kubectl",
    "sigs.k8s.io/cri-tools/cmd/crictl",
    "./cmd/coredns",
    "./cmd/pause",
    ETCD_PACKAGE,
];
const ISTIO_PROGRAMS: &[&str] = &[
    "istio.io/istio/pilot/cmd/pilot-discovery",
    "istio.io/istio/pilot/cmd/pilot-agent",
    "istio.io/istio/istioctl/cmd/istioctl",
];

type Observer<'a> = &'a (dyn Fn(InstallEvent) + Sync);

/// The programs built for a kind cluster without a registry.
#[derive(Debug, Clone)]
pub struct KindToolchain {
    pub kind: PathBuf,
    pub istioctl: PathBuf,
    /// Kubernetes' programs, CoreDNS, crictl, pause and etcd, by name.
    kube: PathBuf,
    /// pilot-discovery, pilot-agent and Envoy's bootstrap template.
    istio: PathBuf,
    /// kind's `images/base/files` (entrypoint, systemd units, containerd config).
    kind_base_files: PathBuf,
}

impl KindToolchain {
    fn kube(&self, name: &str) -> PathBuf {
        self.kube.join(name)
    }
}

/// The cached kind toolchain, or `None` when `meshauth images build --kind` has not built it
/// (from the sources this binary embeds).
pub fn cached_kind_toolchain(cache: &CacheDir) -> Option<KindToolchain> {
    let toolchain = kind_toolchain_paths(cache);
    let complete = [&toolchain.kind, &toolchain.istioctl]
        .into_iter()
        .all(|p| p.is_file())
        && toolchain.kube("kubelet").is_file()
        && toolchain.istio.join("pilot-discovery").is_file();
    complete.then_some(toolchain)
}

fn kind_toolchain_paths(cache: &CacheDir) -> KindToolchain {
    let kube = cache.path().join(format!(
        "kube-node-{}-{:016x}",
        versions::KUBE_APISERVER,
        digest(crate::embedded::KUBE)
    ));
    let istio = cache.path().join(format!(
        "istio-{}-{:016x}",
        versions::ISTIO_PROXY_VERSION,
        digest(crate::embedded::ISTIO_XDS)
    ));
    let kind_dir = cache.path().join(format!("kind-{}", versions::KIND));
    KindToolchain {
        kind: kind_dir.join("kind"),
        istioctl: istio.join("istioctl"),
        kube,
        istio,
        kind_base_files: kind_dir.join("base-files"),
    }
}

/// Builds (or finds cached) kind, Kubernetes' node programs and Istio's programs.
pub fn ensure_kind_toolchain(
    cache: &CacheDir,
    observe: Observer<'_>,
) -> Result<KindToolchain, ComponentError> {
    let toolchain = kind_toolchain_paths(cache);
    let hint = "check that Go is installed and its module proxy serves the modules named in \
                kube/go.mod, istio-xds/go.mod and sigs.k8s.io/kind at the pinned version";
    std::thread::scope(|scope| {
        let kind = scope.spawn(|| ensure_kind(cache, &toolchain, observe, hint));
        let istio = scope.spawn(|| ensure_istio(cache, &toolchain, observe, hint));
        let kube = ensure_kube(cache, &toolchain, observe);
        for (handle, component) in [(kind, "kind"), (istio, "istio")] {
            handle.join().unwrap_or_else(|_| {
                Err(ComponentError::Unusable {
                    component,
                    reason: "the build thread panicked".into(),
                    hint: "re-run with RUST_LOG=debug and report the output".into(),
                })
            })?;
        }
        kube
    })?;
    Ok(toolchain)
}

/// Reports `component` as cached when `built`, else runs `build` between a started and a
/// finished line.
fn cached_or_built(
    observe: Observer<'_>,
    component: &'static str,
    detail: &str,
    built: bool,
    action: String,
    build: impl FnOnce() -> Result<(), ComponentError>,
) -> Result<(), ComponentError> {
    if built {
        observe(InstallEvent::Finished {
            component,
            detail: format!("{detail} (cached)"),
        });
        return Ok(());
    }
    observe(InstallEvent::Started { component, action });
    build()?;
    observe(InstallEvent::Finished {
        component,
        detail: format!("{detail} built"),
    });
    Ok(())
}

fn ensure_kube(
    cache: &CacheDir,
    toolchain: &KindToolchain,
    observe: Observer<'_>,
) -> Result<(), ComponentError> {
    const COMPONENT: &str = "kubernetes";
    let detail = format!(
        "Kubernetes {}, CoreDNS {}, crictl {}, etcd {}",
        versions::KUBE_APISERVER,
        versions::COREDNS,
        versions::CRI_TOOLS,
        versions::ETCD
    );
    let built = KUBE_PROGRAMS
        .iter()
        .all(|package| toolchain.kube(program_name(package)).is_file());
    cached_or_built(
        observe,
        COMPONENT,
        &detail,
        built,
        format!("go build {detail} (about 10 minutes cold)"),
        || build_kube_programs(cache, COMPONENT, &toolchain.kube, KUBE_PROGRAMS),
    )
}

/// pilot-discovery, pilot-agent and istioctl from the pinned `istio.io/istio` (istio-xds's
/// module, so its build is shared), stamped as the release line they belong to with the local
/// hub: istioctl then installs exactly the images built here.
fn ensure_istio(
    cache: &CacheDir,
    toolchain: &KindToolchain,
    observe: Observer<'_>,
    hint: &str,
) -> Result<(), ComponentError> {
    const COMPONENT: &str = "istio";
    let detail = format!(
        "istioctl, pilot-discovery, pilot-agent {} ({})",
        versions::ISTIO_PROXY_VERSION,
        versions::ISTIO_GENERATOR
    );
    let dir = &toolchain.istio;
    let bootstrap = dir.join("envoy_bootstrap_tmpl.json");
    let built = ISTIO_PROGRAMS
        .iter()
        .all(|package| dir.join(program_name(package)).is_file())
        && bootstrap.is_file();
    cached_or_built(
        observe,
        COMPONENT,
        &detail,
        built,
        format!("go build {detail}"),
        || {
            let stamp = "istio.io/istio/pkg/version";
            let version = versions::ISTIO_PROXY_VERSION;
            let ldflags = format!(
                "-s -w -X {stamp}.buildVersion={version} -X {stamp}.buildTag={version} \
                 -X {stamp}.buildHub={LOCAL_ISTIO_HUB} -X {stamp}.buildStatus=Clean"
            );
            let sources = crate::embedded::ISTIO_XDS;
            build_go_programs(
                cache,
                COMPONENT,
                sources,
                dir,
                ISTIO_PROGRAMS,
                &ldflags,
                hint,
            )?;
            let module = run(
                COMPONENT,
                go_command(cache)
                    .args(["list", "-m", "-f", "{{.Dir}}", "istio.io/istio"])
                    .current_dir(dir.join("src")),
                hint,
            )?;
            copy_file(
                &Path::new(module.trim()).join("tools/packaging/common/envoy_bootstrap.json"),
                &bootstrap,
            )
        },
    )
}

/// kind from its Go module, and its base image's files from the same module.
fn ensure_kind(
    cache: &CacheDir,
    toolchain: &KindToolchain,
    observe: Observer<'_>,
    hint: &str,
) -> Result<(), ComponentError> {
    const COMPONENT: &str = "kind";
    let module_version = format!("{}@{}", versions::KIND_MODULE, versions::KIND);
    cached_or_built(
        observe,
        COMPONENT,
        versions::KIND,
        toolchain.kind.is_file() && toolchain.kind_base_files.is_dir(),
        format!("go install {module_version}"),
        || {
            let dir = toolchain.kind.parent().expect("kind lives in a directory");
            std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
            run(
                COMPONENT,
                go_command(cache)
                    .env("GOBIN", dir)
                    .arg("install")
                    .arg(&module_version),
                hint,
            )?;
            let module = go_module_dir(cache, COMPONENT, &module_version, hint)?;
            let _ = std::fs::remove_dir_all(&toolchain.kind_base_files);
            copy_tree(
                &module.join("images/base/files"),
                &toolchain.kind_base_files,
            )
        },
    )
}

/// Builds the node image (its base, the control plane's images inside it) and Istio's images,
/// each kept when its inputs did not change.
pub fn build_kind_images(
    cache: &CacheDir,
    apps: &Toolchain,
    kind: &KindToolchain,
    engine: &ImageEngine,
    observe: &dyn Fn(ImageEvent),
) -> Result<Vec<BuiltImage>, ComponentError> {
    let root = cache.path().join("images");
    let mut built = vec![build_base(cache, kind, engine, observe)?];
    let kube_version = versions::KUBE_APISERVER;
    let control_plane = [
        scratch_program(kind, "kube-apiserver", kube_version),
        scratch_program(kind, "kube-controller-manager", kube_version),
        scratch_program(kind, "kube-scheduler", kube_version),
        ImageRecipe::new(&format!("registry.k8s.io/kube-proxy:{kube_version}"))
            .from(BASE_IMAGE)
            .file(&kind.kube("kube-proxy"), "/usr/local/bin/kube-proxy"),
        scratch_program(kind, "etcd", versions::KUBEADM_ETCD_TAG),
        ImageRecipe::new(&format!(
            "registry.k8s.io/coredns/coredns:{}",
            versions::COREDNS
        ))
        .program(&kind.kube("coredns"), "/coredns", &[])
        .instruction("ENTRYPOINT [\"/coredns\"]"),
        ImageRecipe::new(&pause_image(versions::KUBEADM_PAUSE_TAG))
            .also_tagged(&pause_image(versions::KIND_PAUSE_TAG))
            .program(&kind.kube("pause"), "/pause", &[])
            .instruction("ENTRYPOINT [\"/pause\"]"),
    ];
    for recipe in &control_plane {
        built.push(build_one(&root, recipe, engine, observe)?);
    }
    built.push(build_node(cache, kind, engine, &built, observe)?);
    let tag = versions::ISTIO_PROXY_VERSION;
    let istio = [
        ImageRecipe::new(&format!("{LOCAL_ISTIO_HUB}/pilot:{tag}"))
            .program(
                &kind.istio.join("pilot-discovery"),
                "/usr/local/bin/pilot-discovery",
                &[],
            )
            .instruction("USER 1337:1337")
            .instruction("ENTRYPOINT [\"/usr/local/bin/pilot-discovery\"]"),
        // The sidecar and its init container: pilot-agent starts upstream Envoy, the same build
        // the local environment runs, and sets up the pod's capture with iptables.
        ImageRecipe::new(&format!("{LOCAL_ISTIO_HUB}/proxyv2:{tag}"))
            .from(BASE_IMAGE)
            .file(&kind.istio.join("pilot-agent"), "/usr/local/bin/pilot-agent")
            .file(&apps.envoy, "/usr/local/bin/envoy")
            .file(
                &kind.istio.join("envoy_bootstrap_tmpl.json"),
                "/var/lib/istio/envoy/envoy_bootstrap_tmpl.json",
            )
            .instruction(
                "RUN useradd --uid 1337 --user-group --no-create-home --shell /usr/sbin/nologin istio-proxy \
                 && mkdir -p /etc/istio/proxy && chown -R 1337:1337 /etc/istio/proxy /var/lib/istio",
            )
            .instruction("USER 1337:1337")
            .instruction("ENTRYPOINT [\"/usr/local/bin/pilot-agent\"]"),
    ];
    for recipe in &istio {
        built.push(build_one(&root, recipe, engine, observe)?);
    }
    let caller = ImageRecipe::new(LOCAL_CALLER_IMAGE)
        .with_busybox(&ensure_busybox(cache)?)?
        .program(
            &resolve_program(
                Path::new("curl"),
                "install curl (apt-get install curl): the in-mesh callers run it",
            )?,
            "/usr/bin/curl",
            &[],
        )
        .instruction("ENV PATH=/usr/bin:/bin");
    built.push(build_one(&root, &caller, engine, observe)?);
    Ok(built)
}

fn pause_image(tag: &str) -> String {
    format!("registry.k8s.io/pause:{tag}")
}

/// A control-plane program alone in an image, on `PATH` (kubeadm's manifests name the command).
fn scratch_program(kind: &KindToolchain, name: &str, tag: &str) -> ImageRecipe {
    ImageRecipe::new(&format!("registry.k8s.io/{name}:{tag}")).program(
        &kind.kube(name),
        &format!("/usr/local/bin/{name}"),
        &[],
    )
}

/// A build context prepared by hand: its files and its Containerfile, kept when its inputs
/// digest is the image's label.
fn build_context(
    reference: &str,
    context: &Path,
    inputs: String,
    engine: &ImageEngine,
    observe: &dyn Fn(ImageEvent),
    prepare: impl FnOnce(&Path) -> Result<(), ComponentError>,
) -> Result<BuiltImage, ComponentError> {
    if engine.inputs_of(reference).as_deref() == Some(inputs.as_str()) {
        let done = BuiltImage {
            reference: reference.to_string(),
            built_seconds: None,
        };
        observe(ImageEvent::Done(done.clone()));
        return Ok(done);
    }
    observe(ImageEvent::Building {
        reference: reference.to_string(),
    });
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(context);
    std::fs::create_dir_all(context).map_err(io(format!("create {}", context.display())))?;
    prepare(context)?;
    engine.build(&[reference], &inputs, context)?;
    let _ = std::fs::remove_dir_all(context);
    let done = BuiltImage {
        reference: reference.to_string(),
        built_seconds: Some(started.elapsed().as_secs_f64()),
    };
    observe(ImageEvent::Done(done.clone()));
    Ok(done)
}

fn render(template: &str, context: minijinja::Value) -> Result<String, ComponentError> {
    crate::fixtures::render(template, &context).map_err(|e| ComponentError::Unusable {
        component: "images",
        reason: format!("rendering {template}: {e}"),
        hint: "the embedded template is broken: report it".into(),
    })
}

fn write(path: &Path, text: &str) -> Result<(), ComponentError> {
    std::fs::write(path, text).map_err(io(format!("write {}", path.display())))
}

/// kind's base image on Debian: the root file system (cached per package list), kind's files.
fn build_base(
    cache: &CacheDir,
    kind: &KindToolchain,
    engine: &ImageEngine,
    observe: &dyn Fn(ImageEvent),
) -> Result<BuiltImage, ComponentError> {
    let rootfs = ensure_rootfs(cache, observe)?;
    let containerfile = render(
        "kind/node-image/base.Containerfile.j2",
        minijinja::context! {
            kind_version => versions::KIND,
            nofile => NODE_NOFILE,
            nproc => NODE_NPROC,
        },
    )?;
    let inputs = format!(
        "{:016x}",
        fnv1a(format!("{containerfile}{}{}", rootfs.display(), versions::KIND).as_bytes())
    );
    let context = cache.path().join("images/kind-base");
    build_context(BASE_IMAGE, &context, inputs, engine, observe, |context| {
        link_or_copy(&rootfs, &context.join("rootfs.tar"))?;
        copy_tree(&kind.kind_base_files, &context.join("kind-files"))?;
        write(&context.join("Containerfile"), &containerfile)
    })
}

/// A Debian root file system with the node's packages (mmdebstrap, from the machine's own apt
/// sources, which are then left out of it).
fn ensure_rootfs(
    cache: &CacheDir,
    observe: &dyn Fn(ImageEvent),
) -> Result<PathBuf, ComponentError> {
    let packages = versions::NODE_DEBIAN_PACKAGES.join(",");
    let tar = cache.path().join(format!(
        "kind-node-rootfs-{}-{:016x}.tar",
        versions::NODE_DEBIAN_SUITE,
        fnv1a(packages.as_bytes())
    ));
    if tar.is_file() {
        return Ok(tar);
    }
    observe(ImageEvent::Building {
        reference: format!(
            "a Debian {} root file system for the node (mmdebstrap)",
            versions::NODE_DEBIAN_SUITE
        ),
    });
    let sources = apt_sources()?;
    let staging = tar.with_extension("partial");
    run(
        "images",
        Command::new("mmdebstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={packages}"))
            .arg("--customize-hook=rm -f \"$1\"/etc/apt/sources.list \"$1\"/etc/apt/sources.list.d/*")
            .arg("--format=tar")
            .arg(versions::NODE_DEBIAN_SUITE)
            .arg(&staging)
            .arg(&sources),
        "install mmdebstrap (apt-get install mmdebstrap) and run as root with apt's sources \
         configured for Debian",
    )?;
    std::fs::rename(&staging, &tar).map_err(io(format!("move {}", tar.display())))?;
    Ok(tar)
}

/// The machine's apt sources for Debian, handed to mmdebstrap as they are.
fn apt_sources() -> Result<PathBuf, ComponentError> {
    let classic = PathBuf::from("/etc/apt/sources.list");
    if std::fs::read_to_string(&classic).is_ok_and(|text| text.contains("deb ")) {
        return Ok(classic);
    }
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|e| e == "sources" || e == "list")
        })
        .collect();
    candidates.sort();
    candidates
        .into_iter()
        .find(|path| std::fs::read_to_string(path).is_ok_and(|text| text.contains("debian")))
        .ok_or_else(|| ComponentError::Unusable {
            component: "images",
            reason: "no apt sources for Debian in /etc/apt/sources.list or /etc/apt/sources.list.d"
                .into(),
            hint: "configure apt for Debian: the node's root file system is made from its packages"
                .into(),
        })
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), ComponentError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    copy_file(from, to)
}

/// The node image: kubelet, kubeadm, kubectl and crictl on the base, the CNI configuration, and
/// the control plane's images as archives imported at boot.
fn build_node(
    cache: &CacheDir,
    kind: &KindToolchain,
    engine: &ImageEngine,
    control_plane: &[BuiltImage],
    observe: &dyn Fn(ImageEvent),
) -> Result<BuiltImage, ComponentError> {
    let reference = LOCAL_NODE_IMAGE;
    let containerfile = render(
        "kind/node-image/node.Containerfile.j2",
        minijinja::context! {
            base_image => BASE_IMAGE,
            kubernetes_version => versions::KUBE_APISERVER,
            pause_image => pause_image(versions::KUBEADM_PAUSE_TAG),
        },
    )?;
    let conflist = render(
        "kind/node-image/10-meshauth.conflist.j2",
        minijinja::context! { pod_subnet => NODE_POD_SUBNET },
    )?;
    let preload = render(
        "kind/node-image/meshauth-preload.service.j2",
        minijinja::context! {},
    )?;
    let node_programs = ["kubelet", "kubeadm", "kubectl", "crictl"];
    let mut listing = format!("{containerfile}{conflist}{preload}");
    for image in control_plane {
        listing.push_str(&format!(
            "{} {:?}\n",
            image.reference,
            engine.inputs_of(&image.reference)
        ));
    }
    for name in node_programs {
        let meta = std::fs::metadata(kind.kube(name))
            .map_err(io(format!("read {}", kind.kube(name).display())))?;
        listing.push_str(&format!(
            "{name} {} {:?}\n",
            meta.len(),
            meta.modified().ok()
        ));
    }
    let inputs = format!("{:016x}", fnv1a(listing.as_bytes()));
    let context = cache.path().join("images/kind-node");
    build_context(reference, &context, inputs, engine, observe, |context| {
        let bin = context.join("bin");
        std::fs::create_dir_all(&bin).map_err(io(format!("create {}", bin.display())))?;
        for name in node_programs {
            link_or_copy(&kind.kube(name), &bin.join(name))?;
        }
        let images = context.join("images");
        std::fs::create_dir_all(&images).map_err(io(format!("create {}", images.display())))?;
        // One image per archive: several in one docker-archive all get the first one's tags.
        let mut saved: Vec<String> = control_plane
            .iter()
            .filter(|image| image.reference != BASE_IMAGE)
            .map(|image| image.reference.clone())
            .collect();
        saved.push(pause_image(versions::KIND_PAUSE_TAG));
        for (index, reference) in saved.iter().enumerate() {
            run(
                "images",
                Command::new(&engine.program)
                    .args(["save", "--format", "docker-archive", "--output"])
                    .arg(images.join(format!("{index:02}.tar")))
                    .arg(reference),
                "the engine must save the images it just built",
            )?;
        }
        write(&context.join("10-meshauth.conflist"), &conflist)?;
        write(&context.join("meshauth-preload.service"), &preload)?;
        write(&context.join("Containerfile"), &containerfile)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_image_is_named_for_the_kubernetes_it_runs() {
        assert!(LOCAL_NODE_IMAGE.ends_with(&format!(":{}", versions::KUBE_APISERVER)));
    }

    #[test]
    fn every_program_is_found_under_the_name_it_is_built_as() {
        let names: Vec<&str> = KUBE_PROGRAMS.iter().map(|p| program_name(p)).collect();
        for name in [
            "kube-apiserver",
            "kubelet",
            "kubeadm",
            "kube-proxy",
            "crictl",
            "coredns",
            "pause",
            "etcd",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
    }
}
