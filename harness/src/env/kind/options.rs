//! Where the cluster lives, how it is reached from this machine, and the images it runs.

use serde::Serialize;

/// Container images, each a complete reference as its project publishes it: Keycloak and
/// oauth2-proxy on quay.io (oauth2-proxy's tags keep the `v`), go-httpbin on Docker Hub (its
/// tags drop the `v`), redis as Docker's official image, the in-mesh callers' curl as curl's
/// own image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Images {
    pub keycloak: String,
    pub oauth2_proxy: String,
    pub httpbin: String,
    pub redis: String,
    /// The `sleep` pods the in-mesh callers exec curl in.
    pub curl: String,
}

/// The names `--image NAME=REF` accepts.
pub const IMAGE_NAMES: [&str; 5] = ["keycloak", "oauth2-proxy", "httpbin", "redis", "curl"];

impl Images {
    /// The pinned images, as a cluster pulls them.
    pub fn pinned() -> Self {
        let images = crate::components::container::ContainerImages::pinned();
        Self {
            keycloak: images.keycloak,
            oauth2_proxy: images.oauth2_proxy,
            httpbin: images.httpbin,
            redis: images.redis,
            curl: crate::components::versions::CALLER_IMAGE.into(),
        }
    }

    /// The pinned images for `source`: with local images the callers' curl is the one
    /// `meshauth images build --kind` makes (the apps' images are built under the references
    /// a cluster would pull).
    pub fn pinned_for(source: ImageSource) -> Self {
        let images = Self::pinned();
        match source {
            ImageSource::Pull => images,
            ImageSource::Local => Self {
                curl: LOCAL_CALLER_IMAGE.into(),
                ..images
            },
        }
    }

    /// Every image pulled through `mirror` (`host[/path]`) instead of its own registry: the
    /// registry host is replaced, the repository path and tag are kept.
    pub fn mirrored(self, mirror: &str) -> Self {
        let mirror = mirror.trim_end_matches('/');
        let through = |image: String| match image.split_once('/') {
            Some((host, rest)) if host.contains('.') || host.contains(':') => {
                format!("{mirror}/{rest}")
            }
            _ => format!("{mirror}/{image}"),
        };
        Self {
            keycloak: through(self.keycloak),
            oauth2_proxy: through(self.oauth2_proxy),
            httpbin: through(self.httpbin),
            redis: through(self.redis),
            curl: through(self.curl),
        }
    }

    /// One image replaced (`--image keycloak=quay.io/keycloak/keycloak:26.8.0`).
    pub fn with(mut self, assignment: &str) -> Result<Self, String> {
        let (name, reference) = assignment
            .split_once('=')
            .filter(|(_, r)| !r.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "--image {assignment:?}: expected NAME=REFERENCE, NAME one of {IMAGE_NAMES:?}"
                )
            })?;
        let slot = match name.trim() {
            "keycloak" => &mut self.keycloak,
            "oauth2-proxy" => &mut self.oauth2_proxy,
            "httpbin" => &mut self.httpbin,
            "redis" => &mut self.redis,
            "curl" => &mut self.curl,
            other => {
                return Err(format!(
                    "--image {other:?}: no such image; NAME is one of {IMAGE_NAMES:?}"
                ));
            }
        };
        *slot = reference.trim().to_string();
        Ok(self)
    }
}

/// Where the cluster's images come from (`--images`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ImageSource {
    /// The cluster pulls every image from its registry (or `--image-registry`'s mirror).
    #[default]
    Pull,
    /// No registry: every image already exists in the local engine (`meshauth images build`,
    /// Istio's images built here) and is loaded into the node with `kind load`; nothing is
    /// ever pulled (`imagePullPolicy: Never`), the node image brings its own CNI, CoreDNS
    /// answers only for the cluster, and Istio is told its proxy is upstream Envoy.
    Local,
}

/// The node image a local-images cluster runs when `--node-image` is not given, and where
/// Istio's images are: both built by `meshauth images build --kind`.
pub use crate::components::kind_images::{LOCAL_CALLER_IMAGE, LOCAL_ISTIO_HUB, LOCAL_NODE_IMAGE};

/// Where the cluster lives and how it is reached from this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindOptions {
    pub cluster_name: String,
    /// Loopback ports kind maps to the gateway's HTTP and HTTPS node ports.
    pub http_host_port: u16,
    pub https_host_port: u16,
    pub images: Images,
    /// Leave the cluster running when the environment is dropped.
    pub keep_cluster: bool,
    /// Pulled by the cluster, or loaded from the local engine.
    pub image_source: ImageSource,
    /// `kind create cluster --image`; `None`: kind's own pinned default (pull) or
    /// [`LOCAL_NODE_IMAGE`] (local).
    pub node_image: Option<String>,
    /// Istio's image tag with local images: istioctl's own version (filled in from istioctl
    /// before rendering).
    pub istio_tag: Option<String>,
}

impl Default for KindOptions {
    fn default() -> Self {
        Self {
            cluster_name: "meshauth".into(),
            http_host_port: 18080,
            https_host_port: 18443,
            images: Images::pinned_for(ImageSource::Pull),
            keep_cluster: false,
            image_source: ImageSource::Pull,
            node_image: None,
            istio_tag: None,
        }
    }
}

impl KindOptions {
    /// Whether nothing may be pulled.
    pub fn local_images(&self) -> bool {
        self.image_source == ImageSource::Local
    }

    /// The node image passed to `kind create cluster --image`, if any.
    pub fn node_image(&self) -> Option<&str> {
        match (&self.node_image, self.image_source) {
            (Some(image), _) => Some(image),
            (None, ImageSource::Local) => Some(LOCAL_NODE_IMAGE),
            (None, ImageSource::Pull) => None,
        }
    }

    /// The node image brings its own CNI configuration, so kind must not install kindnetd
    /// (whose image would have to be pulled): true with local images.
    pub fn node_brings_cni(&self) -> bool {
        self.local_images()
    }

    /// Istio's images with local images (`HUB/pilot:TAG`, `HUB/proxyv2:TAG`): loaded into the
    /// node like the apps'.
    pub fn istio_images(&self) -> Vec<String> {
        match (&self.istio_tag, self.local_images()) {
            (Some(tag), true) => ["pilot", "proxyv2"]
                .iter()
                .map(|image| format!("{LOCAL_ISTIO_HUB}/{image}:{tag}"))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The images the apps' Deployments and the callers' `sleep` pods use (redis only with a
    /// redis session store).
    pub fn app_images(&self, redis: bool) -> Vec<String> {
        let mut images = vec![
            self.images.keycloak.clone(),
            self.images.oauth2_proxy.clone(),
            self.images.httpbin.clone(),
            self.images.curl.clone(),
        ];
        if redis {
            images.push(self.images.redis.clone());
        }
        images
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::components::versions;

    #[test]
    fn images_are_complete_references_and_each_can_be_rewritten() {
        let images = Images::pinned();
        assert_eq!(
            images.keycloak,
            format!("quay.io/keycloak/keycloak:{}", versions::KEYCLOAK)
        );
        assert_eq!(
            images.oauth2_proxy,
            format!(
                "quay.io/oauth2-proxy/oauth2-proxy:{}",
                versions::OAUTH2_PROXY
            )
        );
        assert!(versions::HTTPBIN.starts_with('v'));
        assert_eq!(
            images.httpbin,
            format!("docker.io/mccutchen/go-httpbin:{}", &versions::HTTPBIN[1..])
        );
        let mirrored = Images::pinned().mirrored("registry.example.test/mirror/");
        assert_eq!(
            mirrored.httpbin,
            format!(
                "registry.example.test/mirror/mccutchen/go-httpbin:{}",
                &versions::HTTPBIN[1..]
            )
        );
        assert!(
            mirrored
                .keycloak
                .starts_with("registry.example.test/mirror/keycloak/keycloak:")
        );
        let newer = Images::pinned()
            .with("keycloak=quay.io/keycloak/keycloak:26.8.0")
            .unwrap();
        assert_eq!(newer.keycloak, "quay.io/keycloak/keycloak:26.8.0");
        assert_eq!(newer.httpbin, Images::pinned().httpbin);
        let error = Images::pinned().with("keycloack=x").unwrap_err();
        assert!(error.contains("no such image"), "{error}");
        assert!(Images::pinned().with("keycloak").is_err());
    }
}
