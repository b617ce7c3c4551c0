//! What each component is started from: the realms, oauth2-proxy's config, the second OpenID
//! Provider's config and each proxy's bootstrap, rendered from the fixtures. The realm's and
//! oauth2-proxy's template variables are shared with the kind environment, so that both deploy
//! the same configuration.

use serde::Serialize;

use super::LocalStack;
use super::RealmSecrets;
use super::SessionStore;
use crate::env::EnvError;
use crate::env::StackConfig;
use crate::env::istio::{self, BootstrapContext, ProxyIdentity};
use crate::env::names::{
    EMAIL, OIDC_IDP_CLIENT_ID, OTHER_CLIENT_ID, ROLE, ROLES_CLIENT_ID, SECOND_EMAIL,
    SECOND_USERNAME, UPSTREAM_ALIAS, UPSTREAM_CLIENT_ID, UPSTREAM_EMAIL, UPSTREAM_SECOND_EMAIL,
    UPSTREAM_SECOND_USERNAME, UPSTREAM_USERNAME, USERNAME,
};
use crate::env::ports::Component;
use crate::policy::{AppListener, IdentityProvider, IdpAddress, KeycloakRealm};

pub(in crate::env) const REALM_FIXTURE: &str = "keycloak/realm.json.j2";

/// The file Keycloak imports `realm` from.
pub(super) fn realm_import_file(realm: KeycloakRealm) -> String {
    format!("realm-{}.json", realm.name().to_ascii_lowercase())
}
pub(in crate::env) const OAUTH2_PROXY_FIXTURE: &str = "oauth2-proxy/oauth2-proxy.cfg.j2";
const OIDC_IDP_FIXTURE: &str = "oidc-idp/config.json.j2";

/// The realm template's variables: one definition for every environment that renders it.
#[derive(Serialize)]
pub(in crate::env) struct RealmContext<'a> {
    realm: &'static str,
    client_id: &'static str,
    client_secret: &'a str,
    redirect_uri: String,
    username: &'a str,
    user_password: &'a str,
    email: &'a str,
    second_username: &'a str,
    second_user_password: &'a str,
    second_email: &'a str,
    other_client_id: &'a str,
    other_client_secret: &'a str,
    test_signing_key_pem: &'a str,
    login_theme: &'a str,
    include_role_mapper: bool,
    include_audience_mapper: bool,
    custom_claim_realm_roles: bool,
    /// The client whose roles the custom claim's client-role mapper writes.
    client_role_mapper_client: &'static str,
    /// The client whose roles the app's users hold (its own, or the sign-in client).
    roles_client: &'static str,
    /// The upstream IdP the realm brokers to (the second OpenID Provider), where there is one.
    upstream: Option<UpstreamIdp<'a>>,
    client_wildcard_redirect_uri: bool,
    client_any_redirect_uri: bool,
    client_requires_pkce: bool,
    client_implicit_flow: bool,
    client_direct_access_grants: bool,
    client_refresh_tokens: bool,
    login_page_frameable: bool,
    access_token_lifespan_seconds: u32,
    refresh_token_reuse: bool,
    /// Where the realm says it is published, when not at the root of Keycloak's hostname.
    frontend_url: Option<String>,
}

/// The realm's identity provider entry for the second OpenID Provider.
#[derive(Serialize)]
pub(in crate::env) struct UpstreamIdp<'a> {
    alias: &'static str,
    issuer: String,
    client_id: &'static str,
    client_secret: &'a str,
    role: &'static str,
    /// The role from the upstream `groups` claim (Keycloak's Claim to Role mapper), not given
    /// to every upstream user (the Hardcoded Role mapper).
    role_from_groups: bool,
}

impl<'a> RealmContext<'a> {
    /// The variables of `realm`, configured as `config` says (every realm of a stack gets the
    /// same settings, so that which one is in use is the only difference).
    pub(in crate::env) fn new(
        realm: KeycloakRealm,
        config: &StackConfig,
        secrets: &'a RealmSecrets,
        redirect_uri: String,
        upstream_issuer: Option<String>,
        frontend_url: Option<String>,
    ) -> Self {
        Self {
            realm: realm.name(),
            client_id: realm.client_id(),
            frontend_url,
            upstream: upstream_issuer.map(|issuer| UpstreamIdp {
                alias: UPSTREAM_ALIAS,
                issuer,
                client_id: UPSTREAM_CLIENT_ID,
                client_secret: if config.broker_wrong_client_secret {
                    "not-the-upstream-client-secret"
                } else {
                    secrets.upstream_client_secret.expose()
                },
                role: ROLE,
                role_from_groups: config.broker_role_from_upstream_group,
            }),
            client_secret: secrets.client_secret.expose(),
            redirect_uri,
            username: USERNAME,
            user_password: secrets.user_password.expose(),
            email: EMAIL,
            second_username: SECOND_USERNAME,
            second_user_password: secrets.second_user_password.expose(),
            second_email: SECOND_EMAIL,
            other_client_id: OTHER_CLIENT_ID,
            other_client_secret: secrets.other_client_secret.expose(),
            test_signing_key_pem: secrets.test_signing_key.private_key_pem.expose(),
            login_theme: config.login_theme.name(),
            include_role_mapper: config.role_mapper,
            include_audience_mapper: config.audience_mapper,
            custom_claim_realm_roles: config.custom_claim_realm_roles,
            client_role_mapper_client: match (
                config.client_role_mapper_wrong_client,
                config.app_roles_on_the_sign_in_client,
            ) {
                (true, _) => "account",
                (false, true) => realm.client_id(),
                (false, false) => ROLES_CLIENT_ID,
            },
            roles_client: if config.app_roles_on_the_sign_in_client {
                realm.client_id()
            } else {
                ROLES_CLIENT_ID
            },
            client_wildcard_redirect_uri: config.client_wildcard_redirect_uri,
            client_any_redirect_uri: config.client_any_redirect_uri,
            client_requires_pkce: config.client_requires_pkce,
            client_implicit_flow: config.client_implicit_flow,
            client_direct_access_grants: config.client_direct_access_grants,
            login_page_frameable: config.realm_login_page_frameable,
            access_token_lifespan_seconds: config.access_token_lifespan_seconds,
            refresh_token_reuse: config.realm_refresh_token_reuse,
            client_refresh_tokens: config.client_refresh_tokens,
        }
    }
}

/// The oauth2-proxy config template's variables, for every environment that renders it.
#[derive(Serialize)]
pub(in crate::env) struct OAuth2ProxyContext<'a> {
    port: u16,
    issuer_url: String,
    client_id: &'a str,
    redirect_uri: String,
    skip_provider_button: bool,
    bearer_tokens_accepted: bool,
    forward_authorization: bool,
    secure_session_cookie: bool,
    cookie_samesite_none: bool,
    whitelist_domains: &'a [String],
    required_role: Option<&'static str>,
    cookie_domain: Option<&'a str>,
    backend_logout: bool,
    oidc_nonce_checked: bool,
    oidc_issuer_unchecked: bool,
    oidc_extra_audience: Option<&'static str>,
    trusted_ips: &'a [&'static str],
    skip_auth_routes: &'a [&'static str],
    /// `redis://host:port` of the session store; none for cookie sessions.
    redis_url: Option<String>,
    /// `cookie_refresh`, e.g. `2s`; none: never refresh.
    cookie_refresh: Option<String>,
    /// oauth2-proxy's provider: Keycloak's own, or plain OIDC for any other IdP.
    provider: &'static str,
    /// Admission by the IdP's groups claim (plain OIDC), where Keycloak's provider has roles.
    required_group: Option<&'static str>,
    /// The realm's URL inside the mesh, where Keycloak shares the app's host: oauth2-proxy
    /// then redeems codes and fetches keys there instead of discovering them through the
    /// gateway (where the app's ext_authz would check its own calls).
    idp_backchannel_url: Option<String>,
}

impl<'a> OAuth2ProxyContext<'a> {
    pub(in crate::env) fn new(
        config: &'a StackConfig,
        port: u16,
        issuer_url: String,
        redirect_uri: String,
        redis_address: &str,
        keycloak_internal_url: &str,
    ) -> Self {
        Self {
            idp_backchannel_url: (config.idp_address == IdpAddress::AppHostUnderAuth
                && config.idp.keycloak_issues())
            .then(|| format!("{keycloak_internal_url}/realms/{}", config.realm.name())),
            port,
            issuer_url,
            client_id: config.sign_in_client_id(),
            redirect_uri,
            skip_provider_button: config.skip_provider_button,
            bearer_tokens_accepted: config.bearer_tokens_accepted,
            forward_authorization: config.forward_authorization,
            secure_session_cookie: config.secure_session_cookie,
            cookie_samesite_none: config.cookie_samesite_none,
            whitelist_domains: &config.whitelist_domains,
            trusted_ips: &config.oauth2_proxy_trusted_ips,
            skip_auth_routes: &config.oauth2_proxy_skip_auth_routes,
            required_role: (config.admission_role && config.idp.keycloak_issues()).then_some(ROLE),
            cookie_domain: config.session_cookie_domain.as_deref(),
            // The second IdP's end_session asks the browser to confirm, which oauth2-proxy's
            // server-side call cannot do.
            backend_logout: config.backend_logout && config.idp.keycloak_issues(),
            oidc_nonce_checked: config.oidc_nonce_checked,
            oidc_issuer_unchecked: config.oidc_issuer_unchecked,
            oidc_extra_audience: config.oidc_extra_audience,
            redis_url: (config.session_store == SessionStore::Redis)
                .then(|| format!("redis://{redis_address}")),
            cookie_refresh: config.session_refresh_seconds.map(|s| format!("{s}s")),
            provider: match config.idp {
                IdentityProvider::Keycloak | IdentityProvider::KeycloakBrokering => "keycloak-oidc",
                IdentityProvider::OidcProvider => "oidc",
            },
            required_group: (config.admission_role && config.idp == IdentityProvider::OidcProvider)
                .then_some(ROLE),
        }
    }
}

impl LocalStack {
    /// The second OpenID Provider's configuration (users, client, secrets: written 0600).
    pub(super) fn oidc_idp_config(&self) -> Result<String, EnvError> {
        let realm = &self.secrets.realm;
        // Keycloak's broker endpoint of every realm wherever a profile publishes it, so that
        // moving Keycloak or switching realms never restarts the upstream IdP.
        let broker_redirect_uris: Vec<String> = [
            IdpAddress::OwnListener,
            IdpAddress::OwnListenerUnderAuth,
            IdpAddress::AppHostUnderAuth,
        ]
        .into_iter()
        .flat_map(|address| {
            let base = address.public_base(
                &format!("http://127.0.0.1:{}", self.ports.gateway_http),
                &format!("https://127.0.0.1:{}", self.ports.gateway_https),
            );
            KeycloakRealm::ALL.map(|realm| {
                format!(
                    "{base}/realms/{}/broker/{UPSTREAM_ALIAS}/endpoint",
                    realm.name()
                )
            })
        })
        .collect();
        // Both of the app's listeners, so switching listeners never restarts it.
        let listeners = [AppListener::Https, AppListener::PlainHttp];
        let redirect_uris =
            listeners.map(|listener| format!("{}oauth2/callback", self.app_url_on(listener)));
        let app_urls = listeners.map(|listener| self.app_url_on(listener).to_string());
        Ok(crate::fixtures::render(
            OIDC_IDP_FIXTURE,
            &serde_json::json!({
                "issuer": self.oidc_idp_issuer(),
                "port": self.ports.oidc_idp,
                "cookie_key": self.secrets.oidc_idp_cookie_key.expose(),
                "control_token": self.secrets.oidc_idp_control_token.expose(),
                "client_id": OIDC_IDP_CLIENT_ID,
                "client_secret": realm.client_secret.expose(),
                "redirect_uris": redirect_uris,
                "app_urls": app_urls,
                "username": USERNAME,
                "user_password": realm.user_password.expose(),
                "email": EMAIL,
                "role": ROLE,
                "second_username": SECOND_USERNAME,
                "second_user_password": realm.second_user_password.expose(),
                "second_email": SECOND_EMAIL,
                "broker_client_id": UPSTREAM_CLIENT_ID,
                "broker_client_secret": realm.upstream_client_secret.expose(),
                "broker_redirect_uris": broker_redirect_uris,
                "upstream_username": UPSTREAM_USERNAME,
                "upstream_user_password": realm.upstream_user_password.expose(),
                "upstream_email": UPSTREAM_EMAIL,
                "upstream_second_username": UPSTREAM_SECOND_USERNAME,
                "upstream_second_user_password": realm.upstream_second_user_password.expose(),
                "upstream_second_email": UPSTREAM_SECOND_EMAIL,
            }),
        )?)
    }

    /// The Envoy bootstrap of the gateway or httpbin's sidecar.
    pub(super) fn bootstrap(&self, component: Component) -> Result<String, EnvError> {
        let (proxy, admin_port) = match component {
            Component::Gateway => (ProxyIdentity::gateway(), self.ports.gateway_admin),
            Component::SleepSidecar => (ProxyIdentity::sleep(), self.ports.sleep_admin),
            _ => (ProxyIdentity::httpbin(), self.ports.sidecar_admin),
        };
        Ok(crate::fixtures::render(
            istio::BOOTSTRAP_FIXTURE,
            &BootstrapContext {
                proxy: &proxy,
                admin_port,
                xds_port: self.ports.xds,
                sds_port: self.ports.sds,
            },
        )?)
    }

    /// The secret oauth2-proxy is given: the realm's, unless the test breaks it on purpose.
    pub(super) fn oauth2_proxy_client_secret(&self) -> &str {
        if self.config.wrong_client_secret {
            "not-the-client-secret"
        } else {
            self.secrets.realm.client_secret.expose()
        }
    }

    /// Every realm Keycloak imports, rendered, with the file each is imported from. Keycloak
    /// holds them all, so that a profile switching realms restarts no IdP.
    pub(super) fn realm_imports(
        &self,
        frontend_url: Option<String>,
    ) -> Result<Vec<(String, String)>, EnvError> {
        KeycloakRealm::ALL
            .into_iter()
            .map(|realm| {
                let rendered = self.render_realm(realm, frontend_url.clone())?;
                Ok((realm_import_file(realm), rendered))
            })
            .collect()
    }

    /// Every realm as this configuration renders it, `frontendUrl` aside (set live).
    pub(super) fn wanted_realms(&self) -> Result<Vec<(KeycloakRealm, String)>, EnvError> {
        KeycloakRealm::ALL
            .into_iter()
            .map(|realm| Ok((realm, self.render_realm(realm, None)?)))
            .collect()
    }

    /// `realm` rendered as this configuration says.
    pub(super) fn render_realm(
        &self,
        realm: KeycloakRealm,
        frontend_url: Option<String>,
    ) -> Result<String, EnvError> {
        // Keycloak's client is registered for the HTTPS app only: the plain-HTTP app (seed 001)
        // signs in at the second IdP, and switching listeners never restarts Keycloak.
        let redirect_uri = format!(
            "https://127.0.0.1:{}/oauth2/callback",
            self.ports.gateway_https
        );
        let context = RealmContext::new(
            realm,
            &self.config,
            &self.secrets.realm,
            redirect_uri,
            Some(self.oidc_idp_issuer()),
            frontend_url,
        );
        Ok(crate::fixtures::render(REALM_FIXTURE, &context)?)
    }

    pub(super) fn oauth2_proxy_config(&self) -> Result<String, EnvError> {
        let context = OAuth2ProxyContext::new(
            &self.config,
            self.ports.oauth2_proxy,
            self.active_issuer(),
            self.callback_url(),
            &format!("127.0.0.1:{}", self.ports.redis),
            &format!("http://127.0.0.1:{}", self.ports.keycloak),
        );
        Ok(crate::fixtures::render(OAUTH2_PROXY_FIXTURE, &context)?)
    }
}
