//! Where the stack is reached: the URLs that carry the run's ports or follow the configuration
//! (the listener the app is served on, where Keycloak is published, the IdP in use).

use url::Url;

use super::{LocalStack, url};
use crate::env::istio::ProxyIdentity;
use crate::env::names::{
    OTHER_CLIENT_ID, UPSTREAM_EMAIL, UPSTREAM_SECOND_EMAIL, UPSTREAM_SECOND_USERNAME,
    UPSTREAM_USERNAME,
};
use crate::env::{ClientCredentials, TestUser};
use crate::policy::{AppListener, IdentityProvider};

impl LocalStack {
    /// The URLs that carry ports or follow the configuration: the app (on the listener the
    /// configuration serves it on), the IdP in use and its issuer, and the sidecar.
    pub(super) fn address_endpoints(&mut self) {
        let ports = self.ports;
        self.endpoints.app = self.app_url();
        let keycloak_base = self.keycloak_public_base();
        self.issuer = format!("{keycloak_base}/realms/{}", self.config.realm.name());
        self.endpoints.client_id = self.config.sign_in_client_id().to_string();
        match self.config.idp {
            IdentityProvider::Keycloak | IdentityProvider::KeycloakBrokering => {
                self.endpoints.issuer = self.issuer.clone();
                self.endpoints.idp = url(&format!("{keycloak_base}/"));
            }
            IdentityProvider::OidcProvider => {
                self.endpoints.issuer = self.oidc_idp_issuer();
                self.endpoints.idp = url(&format!("{}/", self.oidc_idp_issuer()));
            }
        }
        // Only Keycloak's realm has another client and a key whose private half we hold.
        let keycloak = self.config.idp.keycloak_issues();
        self.endpoints.upstream_user = (self.config.idp == IdentityProvider::KeycloakBrokering)
            .then(|| TestUser {
                username: UPSTREAM_USERNAME.to_string(),
                password: self.secrets.realm.upstream_user_password.clone(),
                email: UPSTREAM_EMAIL.to_string(),
            });
        self.endpoints.upstream_second_user =
            (self.config.idp == IdentityProvider::KeycloakBrokering).then(|| TestUser {
                username: UPSTREAM_SECOND_USERNAME.to_string(),
                password: self.secrets.realm.upstream_second_user_password.clone(),
                email: UPSTREAM_SECOND_EMAIL.to_string(),
            });
        self.endpoints.other_client = keycloak.then(|| ClientCredentials {
            id: OTHER_CLIENT_ID.to_string(),
            secret: self.secrets.realm.other_client_secret.clone(),
        });
        self.endpoints.signing_key = keycloak.then(|| self.secrets.realm.test_signing_key.clone());
        if let Some(mesh) = self.endpoints.mesh.as_mut() {
            mesh.sidecar = url(&format!(
                "http://{}:{}/",
                ProxyIdentity::httpbin().ip,
                ports.sidecar
            ));
            mesh.workload_proxy = format!("{}:{}", ProxyIdentity::sleep().egress_ip, ports.sidecar)
                .parse()
                .ok();
        }
    }

    /// Keycloak's public base URL, no trailing slash: the gateway's plain-HTTP listener, or
    /// `/auth` under it or under the app's own origin.
    fn keycloak_public_base(&self) -> String {
        self.config.idp_address.public_base(
            &format!("http://127.0.0.1:{}", self.ports.gateway_http),
            self.app_url().as_str(),
        )
    }

    /// Keycloak's realm `frontendUrl`: where it says it is published, when not at the root
    /// of its own listener (the `--hostname`).
    pub(super) fn keycloak_frontend_url(&self) -> Option<String> {
        self.config
            .idp_address
            .under_auth_path()
            .then(|| self.keycloak_public_base())
    }

    pub(super) fn app_url(&self) -> Url {
        self.app_url_on(self.config.app_listener)
    }

    pub(super) fn app_url_on(&self, listener: AppListener) -> Url {
        match listener {
            AppListener::Https => url(&format!("https://127.0.0.1:{}/", self.ports.gateway_https)),
            AppListener::PlainHttp => url(&format!(
                "http://127.0.0.1:{}/",
                self.ports.gateway_app_http
            )),
        }
    }

    pub(super) fn oidc_idp_issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.oidc_idp)
    }

    /// The issuer of the IdP in use.
    pub(super) fn active_issuer(&self) -> String {
        match self.config.idp {
            IdentityProvider::Keycloak | IdentityProvider::KeycloakBrokering => self.issuer.clone(),
            IdentityProvider::OidcProvider => self.oidc_idp_issuer(),
        }
    }

    /// oauth2-proxy's callback on the app's listener.
    pub(super) fn callback_url(&self) -> String {
        format!("{}oauth2/callback", self.app_url())
    }
}
