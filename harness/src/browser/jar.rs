//! The browser's cookie jar as a browser treats a gateway's public address. The harness reaches
//! the gateway on loopback, which cookie stores (like browsers, and Keycloak when it decides to
//! mark its cookies `Secure`) count as a secure origin even over `http://`; a deployment's
//! `http://<gateway-address>/` is not one. So for the origins the harness stands in for a
//! public address (the app's, when it is served over plain HTTP), a cookie with the `Secure`
//! attribute is neither stored from nor sent to `http://`, as a browser does for the real
//! address; each one refused is remembered, to explain a sign-in that then cannot complete.

use std::sync::{Arc, Mutex};

use reqwest::header::HeaderValue;
use reqwest_cookie_store::CookieStoreMutex;
use url::Url;

use super::CookieAttributes;

/// A `Secure` cookie a plain-HTTP response tried to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedCookie {
    pub name: String,
    pub url: String,
}

pub(super) struct Jar {
    store: Arc<CookieStoreMutex>,
    refused: Arc<Mutex<Vec<RefusedCookie>>>,
    /// `http://host:port` origins that stand for a public, non-loopback address.
    public_origins: Arc<Mutex<Vec<String>>>,
}

impl Jar {
    pub(super) fn new(
        store: Arc<CookieStoreMutex>,
        refused: Arc<Mutex<Vec<RefusedCookie>>>,
        public_origins: Arc<Mutex<Vec<String>>>,
    ) -> Self {
        Self {
            store,
            refused,
            public_origins,
        }
    }

    /// A plain-HTTP URL of an origin that stands for a public address.
    fn plain_http(&self, url: &Url) -> bool {
        url.scheme() == "http"
            && self
                .public_origins
                .lock()
                .is_ok_and(|origins| origins.contains(&origin(url)))
    }
}

/// `scheme://host:port` of `url`.
pub(super) fn origin(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

impl reqwest::cookie::CookieStore for Jar {
    fn set_cookies(&self, cookie_headers: &mut dyn Iterator<Item = &HeaderValue>, url: &Url) {
        if !self.plain_http(url) {
            return self.store.set_cookies(cookie_headers, url);
        }
        let mut kept = Vec::new();
        for header in cookie_headers {
            let attributes = header.to_str().ok().and_then(CookieAttributes::parse);
            match attributes {
                Some(attributes) if attributes.secure => {
                    if let Ok(mut refused) = self.refused.lock() {
                        refused.push(RefusedCookie {
                            name: attributes.name,
                            url: format!("{}{}", origin(url), url.path()),
                        });
                    }
                }
                _ => kept.push(header),
            }
        }
        self.store.set_cookies(&mut kept.into_iter(), url);
    }

    fn cookies(&self, url: &Url) -> Option<HeaderValue> {
        if !self.plain_http(url) {
            return self.store.cookies(url);
        }
        let store = self.store.lock().ok()?;
        let pairs: Vec<String> = store
            .matches(url)
            .iter()
            .filter(|c| !c.secure().unwrap_or(false))
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        if pairs.is_empty() {
            return None;
        }
        HeaderValue::from_str(&pairs.join("; ")).ok()
    }
}
