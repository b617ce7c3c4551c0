//! The `local` environment: real Keycloak, oauth2-proxy, httpbin and three Envoys (the Istio
//! ingress gateway, httpbin's sidecar, sleep's sidecar) configured by Istio's own generator
//! (`istio-xds`) from the deployment's Istio objects, as supervised processes on loopback,
//! mirroring seed 000 (and seed 003's mesh policies). Changing the stack's configuration
//! restarts only the components it affects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use url::Url;

use super::istio::{
    self, BootstrapContext, IstioContext, LocalRegistryContext, ProxyIdentity, ServicePorts,
};
use super::pki::{self, MeshPki, RunPki};
use super::ports::{Component, Ports};
use super::{ClientCredentials, Endpoints, EnvError, MeshEndpoints, TestUser};
use crate::components::container::{ContainerImages, ContainerSpec};
use crate::components::{ComponentError, Launch, Supervised, Toolchain};
use crate::control::{Disruption, Part};
use crate::events::{EnvironmentInfo, PolicySetting, SettingState};
use crate::oidc::forge::SigningKey;
use crate::policy::{
    Admission, AppListener, ExtAuthzPaths, IdentityProvider, IdpAddress, KeycloakRealm,
    SidecarPolicy, StackProfile,
};
use crate::redact::{Redactor, Secret};

/// oauth2-proxy's client at the second OpenID Provider.
pub const OIDC_IDP_CLIENT_ID: &str = "oauth2proxy";
pub const USERNAME: &str = "alice";
pub const EMAIL: &str = "alice@example.test";
pub const ROLE: &str = "sso-user";
pub const ROLES_CLAIM: &str = "realm_roles";
/// Seed 002's custom claim: the realm roles and the client's roles together.
pub const CUSTOM_ROLES_CLAIM: &str = "meshauth_roles";
/// Where the second app (another go-httpbin) answers behind the gateway: one login, many apps.
pub const ECHO_PREFIX: &str = "/echo";
/// The reference's session refresh interval (oauth2-proxy's `cookie_refresh`): how soon a
/// session ended at the IdP ends at the app. Short, so the check takes seconds; a production
/// deployment would pick a minute or so.
pub const SESSION_REFRESH_SECONDS: u32 = 2;
/// How long tokens live while a scenario has made them short-lived: long enough for a sign-in
/// to verify them (milliseconds after they are issued), short enough to wait out.
pub const SHORT_TOKEN_LIFETIME_SECONDS: i64 = 3;
/// The client holding the app's roles (nobody signs in with it).
pub const ROLES_CLIENT_ID: &str = "httpbin";
/// The client role the test user holds on the app's roles client.
pub const CLIENT_ROLE: &str = "app-reader";
/// A second user of the realm, without [`ROLE`]: who the deployment must not admit.
pub const SECOND_USERNAME: &str = "bob";
pub const SECOND_EMAIL: &str = "bob@example.test";
/// Another confidential client of the realm, with a service account: its tokens are valid
/// tokens of the realm for another audience.
pub const OTHER_CLIENT_ID: &str = "meshauth-other";
/// The upstream IdP's alias in the realm, its client there, and the user who exists only there.
pub const UPSTREAM_ALIAS: &str = "upstream";
pub const UPSTREAM_CLIENT_ID: &str = "keycloak-broker";
pub const UPSTREAM_USERNAME: &str = "carol";
pub const UPSTREAM_EMAIL: &str = "carol@upstream.example.test";

pub(super) const REALM_FIXTURE: &str = "keycloak/realm.json.j2";

/// The file Keycloak imports `realm` from.
pub(super) fn realm_import_file(realm: KeycloakRealm) -> String {
    format!("realm-{}.json", realm.name().to_ascii_lowercase())
}
pub(super) const OAUTH2_PROXY_FIXTURE: &str = "oauth2-proxy/oauth2-proxy.cfg.j2";
const OIDC_IDP_FIXTURE: &str = "oidc-idp/config.json.j2";

const KEYCLOAK_READY: Duration = Duration::from_secs(180);
const COMPONENT_READY: Duration = Duration::from_secs(30);
/// How long the impostor's open connections get to end before they count as unfinished: the
/// caller's alert is on loopback, a caller that stalls longer has not refused anything yet.
const IMPOSTOR_SETTLES: Duration = Duration::from_secs(2);

/// Keycloak's login theme: the current one and the legacy one have different markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum LoginTheme {
    #[default]
    #[serde(rename = "keycloak.v2")]
    KeycloakV2,
    #[serde(rename = "keycloak")]
    Legacy,
}

impl LoginTheme {
    pub fn name(self) -> &'static str {
        match self {
            Self::KeycloakV2 => "keycloak.v2",
            Self::Legacy => "keycloak",
        }
    }
}

/// Where oauth2-proxy keeps its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionStore {
    /// On the server (redis): the cookie holds only a ticket, so signing out ends the session
    /// for every copy of the cookie.
    #[default]
    Redis,
    /// In the cookie itself (encrypted): whoever holds a copy keeps the session until it
    /// expires, sign-out or not.
    Cookie,
}

/// The stack's configuration: the policy profile plus the knobs tests turn to break it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// `AuthorizationPolicy` action CUSTOM on the gateway: ext_authz to oauth2-proxy.
    pub ext_authz: bool,
    /// The ext_authz provider's `pathPrefix`: checks go to oauth2-proxy under a prefix of their
    /// own, so no app path coincides with oauth2-proxy's own public endpoints (`/robots.txt`,
    /// `/ping`, `/ready`), which it answers 200 and ext_authz reads as "allow". The original
    /// path goes along as `X-Auth-Request-Redirect` for the sign-in's return URL.
    pub ext_authz_path_prefix: bool,
    /// The gateway drops client-sent identity headers (`X-Auth-Request-*`, `X-Forwarded-User`
    /// and kin, `X-Real-IP`) before ext_authz, and headers with underscores in their names, so
    /// the app only sees what oauth2-proxy derived.
    pub strip_identity_headers: bool,
    /// oauth2-proxy's `whitelist_domains`: hosts a return URL (`rd=`) may point to besides
    /// the app's own. Empty in the reference.
    pub whitelist_domains: Vec<String>,
    /// The ext_authz provider's `failOpen`: when oauth2-proxy cannot be asked, let the
    /// request through. Off in the reference.
    pub ext_authz_fail_open: bool,
    /// The ext_authz provider sends the browser's `Cookie` to oauth2-proxy
    /// (`includeRequestHeadersInCheck`). Without it every check is anonymous: the session
    /// cookie the callback set never counts.
    pub ext_authz_check_cookie: bool,
    /// The ext_authz provider passes oauth2-proxy's identity headers (`Authorization`,
    /// `X-Auth-Request-*`) to the browser too (`headersToDownstreamOnAllow`), not only to the
    /// app. Off in the reference.
    pub ext_authz_identity_to_browser: bool,
    /// The VirtualService's route to oauth2-proxy removes the identity headers its answers
    /// carry (`/oauth2/auth` answers with `X-Auth-Request-Access-Token`, `Authorization`)
    /// before they reach the browser.
    pub oauth2_route_strips_identity_headers: bool,
    /// The ext_authz provider's `timeout`: how long the gateway waits for a hung oauth2-proxy
    /// before failing the request (Istio's default is 600 s).
    pub ext_authz_timeout_seconds: u32,
    /// `RequestAuthentication` on the gateway: Envoy's jwt_authn for the realm's issuer.
    pub request_authentication: bool,
    /// `RequestAuthentication` `audiences` (gateway and sidecar): only tokens for this app's
    /// client, not every valid token of the realm.
    pub jwt_audiences: bool,
    /// oauth2-proxy admits only users holding the test role (`allowed_roles`).
    pub admission_role: bool,
    /// oauth2-proxy puts the user's token in the `Authorization` header it answers with.
    pub forward_authorization: bool,
    /// oauth2-proxy's `cookie_refresh`, in seconds: it re-checks the session at the IdP (a
    /// refresh-token grant) this often, so a user disabled or signed out there loses access
    /// within it. `None`: never (oauth2-proxy's default), the session lives until it expires.
    pub session_refresh_seconds: Option<u32>,
    /// The realm's client issues refresh tokens (Keycloak's default); without them the auth
    /// proxy can never re-check a session.
    pub client_refresh_tokens: bool,
    /// oauth2-proxy goes straight to the IdP instead of showing its sign-in button.
    pub skip_provider_button: bool,
    /// oauth2-proxy's `skip_jwt_bearer_tokens`: a request with a valid bearer token of the
    /// IdP passes the check without a session (off by oauth2-proxy's default).
    pub bearer_tokens_accepted: bool,
    pub login_theme: LoginTheme,
    /// The realm's "User Realm Role" mapper that writes the roles claim.
    pub role_mapper: bool,
    /// The audience mapper that puts the client id into `aud`.
    pub audience_mapper: bool,
    /// The gateway admits by the custom roles claim: an AuthorizationPolicy ALLOW with `when`
    /// on `request.auth.claims[meshauth_roles]` (both the realm and the client role).
    pub gateway_role_claim_policy: bool,
    /// The app's client role lives on oauth2-proxy's own client instead of a client of its
    /// own: Keycloak's audience-resolve mapper then puts `oauth2proxy` into the `aud` of every
    /// full-scope client's tokens for those users, and `audiences` no longer tells them apart.
    pub app_roles_on_the_sign_in_client: bool,
    /// The realm's identity provider entry carries a wrong client secret for the upstream IdP
    /// (brokering misconfigured).
    pub broker_wrong_client_secret: bool,
    /// The AuthorizationPolicy CUSTOM exempts the second app's paths (`/echo/*`): a policy
    /// written for the first app only. Off in the reference.
    pub second_app_exempt: bool,
    /// The client's mapper that writes the realm roles into the custom claim `meshauth_roles`
    /// (beside the client roles): seed 002's roles claim.
    pub custom_claim_realm_roles: bool,
    /// The client-role mapper of the custom claim names another client than the one holding
    /// the app's roles (the "Client ID" picked wrong): the claim lacks the app's role.
    pub client_role_mapper_wrong_client: bool,
    /// oauth2-proxy is given a cookie secret made anew at each start (a chart templating a
    /// random secret on every rollout): no session outlives a restart.
    pub cookie_secret_per_start: bool,
    /// oauth2-proxy is given a wrong client secret.
    pub wrong_client_secret: bool,
    /// The realm's client accepts any redirect URI on the app host (`https://host/*`).
    pub client_wildcard_redirect_uri: bool,
    /// The realm's client accepts any redirect URI at all (`redirectUris: ["*"]`, a
    /// development setting left in).
    pub client_any_redirect_uri: bool,
    /// With Keycloak under `/auth` on the app's host, the CUSTOM policy exempts `/auth*`
    /// (no slash), which also exempts `/authx…` and `/auth-…` on the app.
    pub idp_path_exempt_without_slash: bool,
    /// The VirtualService sends only Keycloak's own paths (`/realms/`, `/resources/`, …) on
    /// the IdP's plain-HTTP listener to Keycloak, so every other path there falls through to
    /// the app's catch-all route, on a port the CUSTOM policy exempts (`notPorts`).
    pub idp_listener_routes_by_path: bool,
    /// The RequestAuthentication's issuer does not match where the IdP is published: Keycloak's
    /// pre-17 `/auth` prefix left in, or left out, after the IdP moved.
    pub jwt_issuer_mismatch: bool,
    /// The realm's client refuses authorization requests without PKCE (S256).
    pub client_requires_pkce: bool,
    /// The realm's client allows the implicit flow (tokens in the front channel).
    pub client_implicit_flow: bool,
    /// The realm's client takes password grants (Keycloak's Direct Access Grants), as seed
    /// 003's token requests need.
    pub client_direct_access_grants: bool,
    /// oauth2-proxy marks its session cookie `Secure`.
    pub secure_session_cookie: bool,
    pub session_store: SessionStore,
    /// The IdP browsers sign in at.
    pub idp: IdentityProvider,
    /// Where the gateway serves the app.
    pub app_listener: AppListener,
    /// Where Keycloak is published (its own listener, or under `/auth`).
    pub idp_address: IdpAddress,
    /// The Keycloak realm and client the app signs users in with.
    pub realm: KeycloakRealm,
    /// With Keycloak under `/auth` on the app's host, the CUSTOM policy exempts `/auth/*`
    /// (seed 002's `notPaths`). Off, the IdP's own pages go through ext_authz: the sign-in
    /// loops.
    pub idp_path_exempt: bool,
    /// Which requests go through ext_authz.
    pub ext_authz_paths: ExtAuthzPaths,
    /// oauth2-proxy's `backend_logout_url`: signing out of the app also ends the IdP session.
    pub backend_logout: bool,
    /// Envoy's access logs (gateway, sidecar) write full paths with their query strings,
    /// where OIDC carries codes, state and the logout's `id_token_hint`. Off in the reference.
    pub log_query_strings: bool,
    /// oauth2-proxy's `cookie_domains`: a `Domain` on its cookies, so they also go to every
    /// other host under it. None (host-only) in the reference.
    pub session_cookie_domain: Option<String>,
    /// An unauthenticated `/baseline/` route to httpbin on the HTTPS listener, for load tests'
    /// overhead baseline. Off unless a load run asks for it: a conformance run must not have it.
    pub baseline_route: bool,
    /// httpbin's sidecar accepts mTLS peers of the mesh's trust domain only, as Istio does.
    pub sidecar_trust_domain_check: bool,
    /// The mesh policies on httpbin's sidecar (PeerAuthentication, RequestAuthentication,
    /// AuthorizationPolicy). Istio's defaults unless a suite's `stack:` profile says otherwise.
    pub sidecar: SidecarPolicy,
    /// A directory of the user's own Istio YAML, laid over the objects rendered from the
    /// settings above: an object of the same kind, namespace and name replaces the rendered
    /// one, others are added (`meshauth run --istio DIR`).
    pub istio_overlay: Option<PathBuf>,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            ext_authz: true,
            ext_authz_path_prefix: true,
            strip_identity_headers: true,
            whitelist_domains: Vec::new(),
            ext_authz_fail_open: false,
            ext_authz_check_cookie: true,
            ext_authz_identity_to_browser: false,
            oauth2_route_strips_identity_headers: true,
            ext_authz_timeout_seconds: 5,
            request_authentication: true,
            jwt_audiences: true,
            admission_role: true,
            forward_authorization: true,
            session_refresh_seconds: Some(SESSION_REFRESH_SECONDS),
            client_refresh_tokens: true,
            skip_provider_button: false,
            bearer_tokens_accepted: true,
            login_theme: LoginTheme::KeycloakV2,
            role_mapper: true,
            audience_mapper: true,
            custom_claim_realm_roles: true,
            client_role_mapper_wrong_client: false,
            cookie_secret_per_start: false,
            gateway_role_claim_policy: false,
            second_app_exempt: false,
            broker_wrong_client_secret: false,
            app_roles_on_the_sign_in_client: false,
            wrong_client_secret: false,
            client_wildcard_redirect_uri: false,
            client_any_redirect_uri: false,
            idp_path_exempt_without_slash: false,
            idp_listener_routes_by_path: false,
            jwt_issuer_mismatch: false,
            client_requires_pkce: true,
            client_implicit_flow: false,
            client_direct_access_grants: true,
            secure_session_cookie: true,
            session_store: SessionStore::Redis,
            idp: IdentityProvider::Keycloak,
            app_listener: AppListener::Https,
            idp_address: IdpAddress::OwnListener,
            realm: KeycloakRealm::TestOidc,
            idp_path_exempt: true,
            ext_authz_paths: ExtAuthzPaths::ExceptAuthProxy,
            session_cookie_domain: None,
            backend_logout: true,
            log_query_strings: false,
            baseline_route: false,
            sidecar_trust_domain_check: true,
            sidecar: SidecarPolicy::default(),
            istio_overlay: None,
        }
    }
}

impl StackConfig {
    /// This configuration with a catalog profile applied (what a suite's `stack:` asks for).
    pub fn with_profile(self, profile: &StackProfile) -> Self {
        let sign_in = &profile.sign_in;
        let every_path = sign_in.ext_authz_paths == ExtAuthzPaths::EveryPath;
        let by_claim = sign_in.admission == Admission::RoleClaim;
        Self {
            admission_role: self.admission_role && !by_claim,
            gateway_role_claim_policy: by_claim,
            sidecar: profile.sidecar.clone().unwrap_or(self.sidecar),
            idp: sign_in.idp,
            app_listener: sign_in.app_listener,
            // Only Keycloak is published under /auth; another IdP keeps its own address.
            idp_address: if sign_in.idp.keycloak_issues() {
                sign_in.idp_address.unwrap_or(self.idp_address)
            } else {
                IdpAddress::OwnListener
            },
            realm: sign_in.realm.unwrap_or(self.realm),
            ext_authz_paths: sign_in.ext_authz_paths,
            // Checked under a prefix, the callback would be an unknown app path to oauth2-proxy.
            ext_authz_path_prefix: self.ext_authz_path_prefix && !every_path,
            secure_session_cookie: sign_in
                .session_cookie_secure
                .unwrap_or(self.secure_session_cookie),
            ..self
        }
    }

    /// This configuration as a load run provisions it: the unauthenticated `/baseline/` route
    /// for the overhead baseline, and a production-like session refresh interval (a
    /// conformance run's few seconds would put a refresh-token grant into the measured hot
    /// path every few seconds per session).
    pub fn for_load(self) -> Self {
        Self {
            baseline_route: true,
            session_refresh_seconds: self.session_refresh_seconds.map(|_| 60),
            ..self
        }
    }

    /// The client oauth2-proxy signs users in with at the IdP in use; the app's tokens carry
    /// it as their audience.
    pub fn sign_in_client_id(&self) -> &'static str {
        if self.idp.keycloak_issues() {
            self.realm.client_id()
        } else {
            OIDC_IDP_CLIENT_ID
        }
    }

    /// The profile setting by setting, for reports; each protection that is off says how
    /// to turn it on.
    pub fn profile(&self) -> Vec<PolicySetting> {
        use PolicySetting as P;
        let mut settings = vec![
            P::protection_or_fix(
                "AuthorizationPolicy CUSTOM (ext_authz → oauth2-proxy) on HTTPS",
                self.ext_authz,
                "an AuthorizationPolicy with action CUSTOM naming the oauth2-proxy extension provider, selecting the ingress gateway",
            ),
            P::info(
                "plain-HTTP listener (IdP) exempt from ext_authz",
                "notPorts",
            ),
            P::protection_or_fix(
                "ext_authz pathPrefix (oauth2-proxy's own endpoints unreachable as app paths)",
                self.ext_authz_path_prefix,
                "set pathPrefix on the envoyExtAuthzHttp provider (e.g. /ext-authz) and pass the path as includeAdditionalHeadersInCheck x-auth-request-redirect: \"%REQ(:PATH)%\"",
            ),
            P::protection_or_fix(
                "client-sent identity headers dropped at the gateway",
                self.strip_identity_headers,
                "remove X-Auth-Request-*, X-Forwarded-User/-Email/-Groups/-Preferred-Username/-Access-Token, X-Real-IP, Forwarded at the gateway before ext_authz (an EnvoyFilter with header_mutation), and set headersWithUnderscoresAction: DROP_HEADER",
            ),
            P::protection_or_fix(
                "ext_authz check sees the session cookie",
                self.ext_authz_check_cookie,
                "list cookie under includeRequestHeadersInCheck on the envoyExtAuthzHttp provider",
            ),
            P::protection_or_fix(
                "identity headers kept from the browser",
                !self.ext_authz_identity_to_browser && self.oauth2_route_strips_identity_headers,
                "list only set-cookie under headersToDownstreamOnAllow, and remove authorization and x-auth-request-* from the responses of the VirtualService route to oauth2-proxy (headers.response.remove)",
            ),
            P::protection_or_fix(
                "ext_authz fails closed",
                !self.ext_authz_fail_open,
                "failOpen: false on the envoyExtAuthzHttp provider",
            ),
            P::info(
                "ext_authz timeout",
                format!("{} s", self.ext_authz_timeout_seconds),
            ),
            P::protection_or_fix(
                "RequestAuthentication (jwt_authn, issuer's JWKS)",
                self.request_authentication,
                "a RequestAuthentication on the gateway with jwtRules for the realm's issuer and jwksUri",
            ),
            P::protection_or_fix(
                "RequestAuthentication audiences (this app's client only)",
                self.jwt_audiences,
                "list the app's client id under jwtRules[].audiences, so other clients' and service accounts' tokens of the realm are refused",
            ),
            P::protection_or_fix(
                "admission by role (oauth2-proxy allowed_roles)",
                self.admission_role,
                "oauth2-proxy allowed_roles (keycloak-oidc) or allowed_groups, or an AuthorizationPolicy on the role claim",
            ),
            P::protection_or_fix(
                "oauth2-proxy forwards Authorization",
                self.forward_authorization,
                "oauth2-proxy set_authorization_header = true and Authorization in headersToUpstreamOnAllow",
            ),
            P::info(
                "oauth2-proxy sign-in page",
                if self.skip_provider_button {
                    "skipped"
                } else {
                    "shown"
                },
            ),
            P::protection_or_fix(
                "sessions re-checked at the IdP (cookie_refresh)",
                self.session_refresh_seconds.is_some() && self.client_refresh_tokens,
                "cookie_refresh well below the access token's lifetime (e.g. \"1m\"), with refresh tokens on the client: a user disabled or signed out at the IdP then loses access within it, not when the cookie expires (cookie_expire, 168h by default)",
            ),
            P::info("Keycloak login theme", self.login_theme.name()),
            P::info(
                "identity provider browsers sign in at",
                match self.idp {
                    IdentityProvider::Keycloak => "Keycloak",
                    IdentityProvider::OidcProvider => "the second OpenID Provider (oidc-provider)",
                    IdentityProvider::KeycloakBrokering => {
                        "Keycloak, brokering to the second OpenID Provider"
                    }
                },
            ),
            P::info(
                "where Keycloak is published",
                match self.idp_address {
                    IdpAddress::OwnListener => "its own listener, /realms/…",
                    IdpAddress::OwnListenerUnderAuth => "its own listener, legacy /auth/realms/…",
                    IdpAddress::AppHostUnderAuth => "the app's host, /auth/realms/…",
                },
            ),
            P::info(
                "Keycloak realm / the app's client (its tokens' audience)",
                format!("{} / {}", self.realm.name(), self.realm.client_id()),
            ),
            P::protection_or_fix(
                "IdP path exempt from ext_authz where it shares the app's host",
                self.idp_address != IdpAddress::AppHostUnderAuth || self.idp_path_exempt,
                "exempt the IdP's prefix in the CUSTOM AuthorizationPolicy (notPaths: [\"/auth/*\"]): the IdP's own pages checked by the auth proxy send the browser back to sign-in, forever",
            ),
            P::protection_or_fix(
                "realm role mapper",
                self.role_mapper,
                "a User Realm Role mapper on the client's scope writing the roles claim",
            ),
            P::info(
                "admission at the gateway by the roles claim (AuthorizationPolicy when request.auth.claims[meshauth_roles])",
                if self.gateway_role_claim_policy {
                    "on"
                } else {
                    "off"
                },
            ),
            P::protection_or_fix(
                "every app behind the gateway under ext_authz (the second app, /echo, too)",
                !self.second_app_exempt,
                "one CUSTOM AuthorizationPolicy on the gateway for every host and path, exempting only oauth2-proxy's own /oauth2/*",
            ),
            P::protection_or_fix(
                "the app's client roles on a client of their own (not oauth2-proxy's)",
                !self.app_roles_on_the_sign_in_client,
                "keep the app's roles on a roles-only client: Keycloak's audience-resolve mapper adds a client to the aud of any token holding its roles, so roles on the sign-in client make every full-scope client's tokens pass an audiences check",
            ),
            P::protection_or_fix(
                "custom roles claim carries realm and client roles",
                self.custom_claim_realm_roles && !self.client_role_mapper_wrong_client,
                "a User Realm Role mapper and a User Client Role mapper on the client, both writing the claim the AuthorizationPolicy reads (multivalued)",
            ),
            P::protection_or_fix(
                "audience mapper",
                self.audience_mapper,
                "an Audience mapper on the client adding its own id to aud",
            ),
            P::protection_or_fix(
                "client redirect URI exact (no wildcard)",
                !self.client_wildcard_redirect_uri && !self.client_any_redirect_uri,
                "register exactly https://<app>/oauth2/callback as the client's redirect URI",
            ),
            P::protection_or_fix(
                "client requires PKCE",
                self.client_requires_pkce,
                "client attribute pkce.code.challenge.method = S256 (oauth2-proxy code_challenge_method = S256)",
            ),
            P::protection_or_fix(
                "client implicit flow off",
                !self.client_implicit_flow,
                "turn off Implicit Flow on the client",
            ),
            P::protection_or_fix(
                "session cookie Secure",
                self.secure_session_cookie,
                "serve the app over HTTPS only and set cookie_secure = true",
            ),
            P::protection_or_fix(
                "sessions kept server-side (redis): sign-out ends every copy of the cookie",
                self.session_store == SessionStore::Redis,
                "oauth2-proxy session_store_type = \"redis\" with redis_connection_url (and a redis password): the cookie then holds only a ticket the server can revoke",
            ),
            P::protection_or_fix(
                "sign-out ends the IdP session (backend_logout_url)",
                self.backend_logout,
                "oauth2-proxy backend_logout_url = \"<issuer>/protocol/openid-connect/logout?id_token_hint={id_token}\"",
            ),
            P::protection_or_fix(
                "access logs without query strings (codes, state, id_token_hint)",
                !self.log_query_strings,
                "meshConfig.accessLogFormat with %REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
            ),
            P::protection_or_fix(
                "session cookie host-only (no cookie_domains)",
                self.session_cookie_domain.is_none(),
                "leave cookie_domains unset unless the session must span hosts you all own",
            ),
            P::protection_or_fix(
                "return URLs limited to the app (no whitelist_domains)",
                self.whitelist_domains.is_empty(),
                "whitelist_domains only for hosts you own, never wildcards or leading dots",
            ),
            P::protection_or_fix(
                "oauth2-proxy has the right client secret",
                !self.wrong_client_secret,
                "give oauth2-proxy the client secret from the IdP's credentials tab",
            ),
            P::protection_or_fix(
                "sidecar accepts its trust domain only",
                self.sidecar_trust_domain_check,
                "keep Istio's trust-domain validation (no foreign trust domain aliases)",
            ),
        ];
        settings.extend(self.sidecar.profile());
        if self.baseline_route {
            settings.push(PolicySetting {
                setting: "unauthenticated /baseline/ route to httpbin (load tests only)".into(),
                value: "present".into(),
                state: SettingState::Off,
                fix: Some(
                    "never render the load tests' baseline route in a conformance run".into(),
                ),
            });
        }
        settings
    }
}

/// Start-up progress, for a progress display.
#[derive(Debug, Clone)]
pub enum StackEvent {
    Starting(&'static str),
    Ready {
        component: &'static str,
        after: Duration,
    },
    /// The loopback ports a component is about to bind.
    Binding {
        component: &'static str,
        ports: Vec<u16>,
    },
    /// A component's ports were taken and it is started again on new ones.
    Retrying {
        component: &'static str,
        detail: String,
    },
}

struct Secrets {
    realm: RealmSecrets,
    cookie_secret: Secret,
    admin_password: Secret,
    redis_password: Secret,
    /// Signs the second OpenID Provider's cookies.
    oidc_idp_cookie_key: Secret,
}

/// Variables for every fixture template (each template uses the ones it needs).
/// The secrets the realm is imported with.
#[derive(Debug, Clone)]
pub struct RealmSecrets {
    pub client_secret: Secret,
    pub user_password: Secret,
    pub second_user_password: Secret,
    pub other_client_secret: Secret,
    /// The realm's client at the upstream IdP it brokers to, and the user who exists only there.
    pub upstream_client_secret: Secret,
    pub upstream_user_password: Secret,
    /// A key the realm publishes (and signs nothing with) whose private half the harness
    /// holds, to mint tokens that differ from real ones in one claim only.
    pub test_signing_key: SigningKey,
}

impl RealmSecrets {
    pub fn generate() -> Result<Self, EnvError> {
        Ok(Self {
            client_secret: Secret::generate(24),
            user_password: Secret::generate(18),
            second_user_password: Secret::generate(18),
            other_client_secret: Secret::generate(24),
            upstream_client_secret: Secret::generate(24),
            upstream_user_password: Secret::generate(18),
            test_signing_key: SigningKey::generate().map_err(pki::PkiError::from)?,
        })
    }

    pub(super) fn register(&self, redactor: &Redactor) {
        for secret in [
            &self.client_secret,
            &self.user_password,
            &self.second_user_password,
            &self.other_client_secret,
            &self.upstream_client_secret,
            &self.upstream_user_password,
            &self.test_signing_key.private_key_pem,
        ] {
            redactor.register(secret);
        }
    }

    /// The users, clients and key the engine uses, in an environment's endpoints.
    pub(super) fn fill(&self, endpoints: &mut Endpoints) {
        endpoints.client_secret = self.client_secret.clone();
        endpoints.user.password = self.user_password.clone();
        endpoints.second_user = Some(TestUser {
            username: SECOND_USERNAME.to_string(),
            password: self.second_user_password.clone(),
            email: SECOND_EMAIL.to_string(),
        });
        endpoints.other_client = Some(ClientCredentials {
            id: OTHER_CLIENT_ID.to_string(),
            secret: self.other_client_secret.clone(),
        });
        endpoints.signing_key = Some(self.test_signing_key.clone());
    }
}

/// Sends a call to Keycloak's admin API; a failure (no answer, or an error status) says what
/// was being done.
async fn idp_admin_call(
    request: reqwest::RequestBuilder,
    what: &'static str,
) -> Result<reqwest::Response, EnvError> {
    request
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|error| EnvError::IdpAdmin {
            what,
            detail: error.to_string(),
        })
}

/// The JSON body of an admin API answer.
async fn idp_admin_json(
    response: reqwest::Response,
    what: &'static str,
) -> Result<serde_json::Value, EnvError> {
    response.json().await.map_err(|error| EnvError::IdpAdmin {
        what,
        detail: error.to_string(),
    })
}

/// The realm template's variables: one definition for every environment that renders it.
#[derive(Serialize)]
pub(super) struct RealmContext<'a> {
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
    /// Where the realm says it is published, when not at the root of Keycloak's hostname.
    frontend_url: Option<String>,
}

/// The realm's identity provider entry for the second OpenID Provider.
#[derive(Serialize)]
pub(super) struct UpstreamIdp<'a> {
    alias: &'static str,
    issuer: String,
    client_id: &'static str,
    client_secret: &'a str,
    role: &'static str,
}

impl<'a> RealmContext<'a> {
    /// The variables of `realm`, configured as `config` says (every realm of a stack gets the
    /// same settings, so that which one is in use is the only difference).
    pub(super) fn new(
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
            client_refresh_tokens: config.client_refresh_tokens,
        }
    }
}

/// The oauth2-proxy config template's variables, for every environment that renders it.
#[derive(Serialize)]
pub(super) struct OAuth2ProxyContext<'a> {
    port: u16,
    issuer_url: String,
    client_id: &'a str,
    redirect_uri: String,
    skip_provider_button: bool,
    bearer_tokens_accepted: bool,
    forward_authorization: bool,
    secure_session_cookie: bool,
    whitelist_domains: &'a [String],
    required_role: Option<&'static str>,
    cookie_domain: Option<&'a str>,
    backend_logout: bool,
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
    pub(super) fn new(
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
            whitelist_domains: &config.whitelist_domains,
            required_role: (config.admission_role && config.idp.keycloak_issues()).then_some(ROLE),
            cookie_domain: config.session_cookie_domain.as_deref(),
            // The second IdP's end_session asks the browser to confirm, which oauth2-proxy's
            // server-side call cannot do.
            backend_logout: config.backend_logout && config.idp.keycloak_issues(),
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

/// How the stack runs its components.
#[derive(Debug, Clone, Default)]
pub enum Runtime {
    /// As processes on this machine, from the component cache (`local`).
    #[default]
    Processes,
    /// From their official images on the host's network (`containers`; needs Docker).
    Containers(ContainerImages),
}

/// The container that runs `component` as `launch` would run it locally: the image's own
/// program with the same arguments and environment, seeing the run directory (the rendered
/// files) at the same path. `None` for what has no image.
pub fn container_spec(
    component: Component,
    launch: &Launch,
    images: &ContainerImages,
    run_dir: &Path,
) -> Option<ContainerSpec> {
    let spec = |image: &str| {
        let mut spec = ContainerSpec::new(component.name(), image).sees(run_dir, true);
        spec.command = launch.args.clone();
        spec.env = launch.env.clone();
        spec
    };
    Some(match component {
        Component::IstioXds => return None,
        Component::Keycloak => {
            let mut spec = spec(&images.keycloak);
            // The image is built with Keycloak's defaults: `start` builds ours in.
            spec.command = launch
                .args
                .iter()
                .flat_map(|arg| {
                    if arg == "--optimized" {
                        crate::components::install::KEYCLOAK_BUILD_OPTIONS
                            .iter()
                            .map(|o| o.to_string())
                            .collect()
                    } else {
                        vec![arg.clone()]
                    }
                })
                .collect();
            spec.env.retain(|(key, _)| key != "JAVA_HOME");
            let import = launch.cwd.as_ref()?.join("data/import");
            spec.mounts
                .push((import, PathBuf::from("/opt/keycloak/data/import"), false));
            spec
        }
        Component::OAuth2Proxy => spec(&images.oauth2_proxy),
        Component::Httpbin | Component::EchoApp => spec(&images.httpbin),
        Component::Redis => {
            let mut spec = spec(&images.redis);
            spec.entrypoint = Some("redis-server".into());
            spec
        }
        Component::Gateway | Component::Sidecar | Component::SleepSidecar => {
            let mut spec = spec(&images.envoy);
            spec.entrypoint = Some("envoy".into());
            spec
        }
        Component::OidcIdp => {
            let mut spec = spec(&images.node);
            spec.entrypoint = Some("node".into());
            if let Some(server_dir) = &launch.cwd {
                spec = spec.sees(server_dir, false);
            }
            spec
        }
    })
}

/// What the stack knows about starting each component.
impl Component {
    fn name(self) -> &'static str {
        match self {
            Self::Keycloak => "keycloak",
            Self::Httpbin => "httpbin",
            Self::EchoApp => "echo",
            Self::IstioXds => "istio-xds",
            Self::Sidecar => "sidecar",
            Self::SleepSidecar => "sleep-sidecar",
            Self::Gateway => "envoy",
            Self::Redis => "redis",
            Self::OidcIdp => "oidc-idp",
            Self::OAuth2Proxy => "oauth2-proxy",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::START_ORDER.into_iter().find(|c| c.name() == name)
    }

    /// Keycloak and the second IdP make new signing keys on restart, and these cache the JWKS
    /// (Envoy does not refetch on a new `kid`): they restart with either.
    fn caches_realm_keys(self) -> bool {
        matches!(self, Self::Sidecar | Self::Gateway | Self::OAuth2Proxy)
    }
}

/// A started component and everything it was started from (rendered configuration, ports,
/// secrets), to tell whether a change affects it.
struct Running {
    component: Component,
    process: Supervised,
    inputs: String,
}

/// How often a component that meets "address already in use" is given new ports.
const PORT_ATTEMPTS: usize = 5;

/// A running local stack. Dropping it stops every process.
pub struct LocalStack {
    toolchain: Toolchain,
    run_dir: PathBuf,
    ports: Ports,
    secrets: Secrets,
    /// The configuration as started or last reconfigured; scenarios' profiles apply to it.
    base: StackConfig,
    /// What runs now: `base` with the current scenario's profile.
    config: StackConfig,
    issuer: String,
    endpoints: Endpoints,
    probe: reqwest::Client,
    runtime: Runtime,
    /// PEM of the gateway's serving certificate and key (the `credentialName` secret).
    gateway_tls: (String, Secret),
    /// In start order; stopped in reverse.
    running: Vec<Running>,
    /// Running components frozen by a scenario (SIGSTOP), until it restores them.
    paused: Vec<Component>,
    keycloak_ready: bool,
    /// The realm's `frontendUrl` as the running Keycloak has it.
    realm_frontend_url: Option<String>,
    /// httpbin's identity from a CA the mesh does not trust, for the impostor.
    impostor_certificate: (String, Secret),
    /// The impostor in httpbin's sidecar's place, while a scenario has it there.
    impostor: Option<super::impostor::Impostor>,
    /// What scenarios changed at Keycloak through its admin API, undone when they restore it.
    idp_changes: Vec<IdpChange>,
}

/// A live change a scenario made to the realm in use, and what undoes it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum IdpChange {
    UserDisabled,
    TokenLifespan { was: i64 },
}

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
        };
        secrets.realm.register(redactor);
        for secret in [
            &secrets.cookie_secret,
            &secrets.admin_password,
            &secrets.redis_password,
            &secrets.oidc_idp_cookie_key,
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
            cluster: None,
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
            keycloak_ready: false,
            realm_frontend_url: None,
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

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The Keycloak bootstrap admin's password (for `meshauth up` users).
    pub fn admin_password(&self) -> &Secret {
        &self.secrets.admin_password
    }

    pub fn info(&self) -> EnvironmentInfo {
        EnvironmentInfo {
            kind: "local".into(),
            app_url: self.endpoints.app.to_string(),
            idp_url: self.endpoints.idp.to_string(),
            issuer: self.issuer.clone(),
            profile: self.config.profile(),
            components: self.toolchain.versions.clone(),
            run_dir: Some(self.run_dir.display().to_string()),
            left_out: Vec::new(),
            limits: vec![format!(
                "httpbin itself listens on 127.0.0.1:{}, reachable without its sidecar: processes \
                 on loopback cannot have their inbound traffic redirected to a sidecar as a pod's \
                 is, so here the sidecar can be bypassed where a real mesh closes that path \
                 (the mesh checks target the sidecar's port)",
                self.ports.httpbin
            )],
        }
    }

    /// Applies a new configuration, restarting only the components whose rendered inputs
    /// change (and, when Keycloak restarts, those that cache its keys).
    pub async fn reconfigure(&mut self, config: StackConfig) -> Result<(), EnvError> {
        self.base = config.clone();
        self.converge_to(config).await
    }

    async fn converge_to(&mut self, config: StackConfig) -> Result<(), EnvError> {
        let previous = std::mem::replace(&mut self.config, config);
        if let Err(error) = self.wanted_inputs() {
            self.config = previous;
            self.address_endpoints();
            return Err(error);
        }
        self.address_endpoints();
        let started = Instant::now();
        let before = self.running_pids();
        let converged = self.converge(&|_| {}).await;
        let restarted: Vec<&str> = self
            .running_pids()
            .into_iter()
            .filter(|now| !before.contains(now))
            .map(|(component, _)| component.name())
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
    async fn converge(&mut self, progress: &(dyn Fn(StackEvent) + Sync)) -> Result<(), EnvError> {
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
        let idp_restarts = [Component::Keycloak, Component::OidcIdp]
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
            self.record(Component::Keycloak, process, inputs(Component::Keycloak));
        }
        for component in [
            Component::Httpbin,
            Component::EchoApp,
            Component::IstioXds,
            Component::Sidecar,
            Component::SleepSidecar,
            Component::Gateway,
            Component::Redis,
            Component::OidcIdp,
        ] {
            let is_wanted = wanted.iter().any(|(w, _)| *w == component);
            if is_wanted && !self.is_running(component) {
                progress(StackEvent::Starting(component.name()));
                self.announce_ports(component, progress);
                let process = self.start_component(component, progress).await?;
                self.record(component, process, inputs(component));
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

    fn append_stack_log(&self, line: &str) {
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

    /// The URLs that carry ports or follow the configuration: the app (on the listener the
    /// configuration serves it on), the IdP in use and its issuer, and the sidecar.
    fn address_endpoints(&mut self) {
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
    fn keycloak_frontend_url(&self) -> Option<String> {
        self.config
            .idp_address
            .under_auth_path()
            .then(|| self.keycloak_public_base())
    }

    fn app_url(&self) -> Url {
        self.app_url_on(self.config.app_listener)
    }

    fn app_url_on(&self, listener: AppListener) -> Url {
        match listener {
            AppListener::Https => url(&format!("https://127.0.0.1:{}/", self.ports.gateway_https)),
            AppListener::PlainHttp => url(&format!(
                "http://127.0.0.1:{}/",
                self.ports.gateway_app_http
            )),
        }
    }

    fn oidc_idp_issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.oidc_idp)
    }

    /// The issuer of the IdP in use.
    fn active_issuer(&self) -> String {
        match self.config.idp {
            IdentityProvider::Keycloak | IdentityProvider::KeycloakBrokering => self.issuer.clone(),
            IdentityProvider::OidcProvider => self.oidc_idp_issuer(),
        }
    }

    fn running(&self, component: Component) -> Option<&Running> {
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

    fn stop_component(&mut self, component: Component) {
        if let Some(index) = self.running.iter().position(|r| r.component == component) {
            let mut running = self.running.remove(index);
            running.process.stop(Duration::from_secs(10));
        }
        self.paused.retain(|c| *c != component);
        if component == Component::Keycloak {
            self.keycloak_ready = false;
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
        // The realm's frontendUrl is changed live (admin API), never by a restart.
        let realms: Vec<String> = self
            .realm_imports(None)?
            .into_iter()
            .map(|(_, realm)| realm)
            .collect();
        let mut wanted = vec![
            (
                Component::Keycloak,
                format!(
                    "{}\n{}\nhostname {}",
                    realms.join("\n"),
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

    /// The Istio objects and mesh config of this configuration, and the user's overlay.
    fn istio_inputs(&self) -> Result<IstioInputs, EnvError> {
        IstioInputs::render(
            &self.config,
            &self.ports,
            (&self.gateway_tls.0, self.gateway_tls.1.expose()),
            &self.active_issuer(),
        )
    }

    /// The second OpenID Provider's configuration (users, client, secrets: written 0600).
    fn oidc_idp_config(&self) -> Result<String, EnvError> {
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
            }),
        )?)
    }

    /// oauth2-proxy's callback on the app's listener.
    fn callback_url(&self) -> String {
        format!("{}oauth2/callback", self.app_url())
    }

    /// The Envoy bootstrap of the gateway or httpbin's sidecar.
    fn bootstrap(&self, component: Component) -> Result<String, EnvError> {
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

    /// oauth2-proxy's deep readiness check: it answers 200 only while it can use its session
    /// store (`/ping` answers whatever the store's state).
    fn oauth2_proxy_ready(&self) -> Probe {
        Probe::Http(format!(
            "http://127.0.0.1:{}/ready",
            self.ports.oauth2_proxy
        ))
    }

    /// The secret oauth2-proxy is given: the realm's, unless the test breaks it on purpose.
    fn oauth2_proxy_client_secret(&self) -> &str {
        if self.config.wrong_client_secret {
            "not-the-client-secret"
        } else {
            self.secrets.realm.client_secret.expose()
        }
    }

    /// Every realm Keycloak imports, rendered, with the file each is imported from. Keycloak
    /// holds them all, so that a profile switching realms restarts no IdP.
    fn realm_imports(
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

    /// `realm` rendered as this configuration says.
    fn render_realm(
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

    fn oauth2_proxy_config(&self) -> Result<String, EnvError> {
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

    fn log(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.log"))
    }

    /// Keycloak runs from a per-run home: `bin/` and `conf/` copied, the built `lib/` (and
    /// themes, providers) linked from the cache, and a per-run `data/` holding the realm import.
    fn spawn_keycloak(&self) -> Result<Supervised, EnvError> {
        let home = self.run_dir.join("keycloak");
        let _ = std::fs::remove_dir_all(&home);
        let dist = &self.toolchain.keycloak_home;
        for dir in ["bin", "conf"] {
            copy_dir(&dist.join(dir), &home.join(dir))?;
        }
        for dir in ["lib", "themes", "providers"] {
            std::os::unix::fs::symlink(dist.join(dir), home.join(dir)).map_err(|source| {
                EnvError::Io {
                    what: "link Keycloak directory",
                    path: home.join(dir),
                    source,
                }
            })?;
        }
        for (file, realm) in self.realm_imports(self.keycloak_frontend_url())? {
            write_private(&home.join("data/import").join(file), &realm)?;
        }
        let launch = Launch::new("keycloak", home.join("bin/kc.sh"), self.log("keycloak"))
            .args([
                "start",
                "--optimized",
                "--import-realm",
                "--http-enabled=true",
                "--http-host=127.0.0.1",
            ])
            .arg(format!("--http-port={}", self.ports.keycloak))
            .arg(format!(
                "--http-management-port={}",
                self.ports.keycloak_management
            ))
            // The issuer is the gateway's plain-HTTP listener, as in seed 000.
            .arg(format!(
                "--hostname=http://127.0.0.1:{}",
                self.ports.gateway_http
            ))
            .arg("--hostname-backchannel-dynamic=false")
            .env("JAVA_HOME", self.toolchain.java.home.display().to_string())
            .env("KC_BOOTSTRAP_ADMIN_USERNAME", "admin")
            .env(
                "KC_BOOTSTRAP_ADMIN_PASSWORD",
                self.secrets.admin_password.expose(),
            )
            .cwd(&home);
        self.supervise(Component::Keycloak, &launch)
    }

    /// Moves the realm to another published address without restarting Keycloak: its
    /// `frontendUrl` (empty: the root of Keycloak's `--hostname`), set with the admin API.
    async fn set_realm_frontend_url(&self, url: Option<&str>) -> Result<(), EnvError> {
        let keycloak = format!("http://127.0.0.1:{}", self.ports.keycloak);
        let token = self.keycloak_admin_token().await?;
        for realm in KeycloakRealm::ALL {
            let request = self
                .probe
                .put(format!("{keycloak}/admin/realms/{}", realm.name()))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "attributes": { "frontendUrl": url.unwrap_or("") } }));
            idp_admin_call(request, "set the realm's frontendUrl").await?;
        }
        self.append_stack_log(&format!(
            "keycloak: realms published at {} (frontendUrl, set live through the admin API)",
            url.unwrap_or("the root of its --hostname")
        ));
        Ok(())
    }

    /// Ends every session of the test user in the realm in use, as an administrator's "sign
    /// out all sessions" does: her refresh tokens stop working at once.
    async fn revoke_user_sessions(&self) -> Result<(), EnvError> {
        let token = self.keycloak_admin_token().await?;
        let user = self.keycloak_test_user(&token).await?;
        let request = self
            .probe
            .post(format!("{user}/logout"))
            .bearer_auth(&token);
        idp_admin_call(request, "end the test user's sessions").await?;
        self.append_stack_log(&format!(
            "keycloak: every session of {USERNAME} ended (a scenario's disruption)"
        ));
        Ok(())
    }

    /// The admin API's URL of the realm in use.
    fn keycloak_admin_realm(&self) -> String {
        format!(
            "http://127.0.0.1:{}/admin/realms/{}",
            self.ports.keycloak,
            self.config.realm.name()
        )
    }

    /// The admin API's URL of the test user in the realm in use.
    async fn keycloak_test_user(&self, token: &str) -> Result<String, EnvError> {
        let users = format!("{}/users", self.keycloak_admin_realm());
        let find = "find the test user";
        let request = self
            .probe
            .get(&users)
            .query(&[("username", USERNAME), ("exact", "true")])
            .bearer_auth(token);
        let found = idp_admin_json(idp_admin_call(request, find).await?, find).await?;
        let id = found[0]["id"].as_str().ok_or_else(|| EnvError::IdpAdmin {
            what: find,
            detail: format!("no user {USERNAME} in realm {}", self.config.realm.name()),
        })?;
        Ok(format!("{users}/{id}"))
    }

    /// How long the realm in use lets access and ID tokens live, in seconds.
    async fn realm_token_lifespan(&self, token: &str) -> Result<i64, EnvError> {
        let read = "read the realm's token lifespan";
        let request = self
            .probe
            .get(self.keycloak_admin_realm())
            .bearer_auth(token);
        let realm = idp_admin_json(idp_admin_call(request, read).await?, read).await?;
        realm["accessTokenLifespan"]
            .as_i64()
            .ok_or_else(|| EnvError::IdpAdmin {
                what: read,
                detail: "the realm has no accessTokenLifespan".into(),
            })
    }

    /// Makes `change` to the realm in use live, or undoes it, with an admin `token`.
    async fn change_realm(
        &self,
        token: &str,
        change: IdpChange,
        undo: bool,
    ) -> Result<(), EnvError> {
        let (what, url, representation, log) = match change {
            IdpChange::UserDisabled => (
                "enable or disable the test user",
                self.keycloak_test_user(token).await?,
                serde_json::json!({ "enabled": undo }),
                format!(
                    "keycloak: {USERNAME} {}",
                    if undo { "enabled again" } else { "disabled" }
                ),
            ),
            IdpChange::TokenLifespan { was } => {
                let lifespan = if undo {
                    was
                } else {
                    SHORT_TOKEN_LIFETIME_SECONDS
                };
                (
                    "set the realm's token lifespan",
                    self.keycloak_admin_realm(),
                    serde_json::json!({ "accessTokenLifespan": lifespan }),
                    format!("keycloak: tokens issued from now on live {lifespan} s"),
                )
            }
        };
        let request = self.probe.put(url).bearer_auth(token).json(&representation);
        idp_admin_call(request, what).await?;
        let why = if undo {
            "undoing a scenario's disruption"
        } else {
            "a scenario's disruption"
        };
        self.append_stack_log(&format!("{log} ({why})"));
        Ok(())
    }

    /// A token of Keycloak's bootstrap admin, for the admin REST API.
    async fn keycloak_admin_token(&self) -> Result<String, EnvError> {
        let sign_in = "sign in as the bootstrap admin";
        let request = self
            .probe
            .post(format!(
                "http://127.0.0.1:{}/realms/master/protocol/openid-connect/token",
                self.ports.keycloak
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", "admin"),
                ("password", self.secrets.admin_password.expose()),
            ]);
        let token = idp_admin_json(idp_admin_call(request, sign_in).await?, sign_in).await?;
        token["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| EnvError::IdpAdmin {
                what: sign_in,
                detail: "the token response has no access_token".into(),
            })
    }

    /// Starts `launch` as a process, or, in the containers environment, the component's
    /// official image under the container shim (istio-xds, Istio's generator standing in for
    /// istiod, has no image and stays a process).
    fn supervise(&self, component: Component, launch: &Launch) -> Result<Supervised, EnvError> {
        let Runtime::Containers(images) = &self.runtime else {
            return Ok(Supervised::spawn(launch)?);
        };
        let Some(spec) = container_spec(component, launch, images, &self.run_dir) else {
            return Ok(Supervised::spawn(launch)?);
        };
        Ok(Supervised::spawn(&spec.launch(launch)?)?)
    }

    async fn wait_keycloak(&mut self) -> Result<(), EnvError> {
        let probe = format!(
            "http://127.0.0.1:{}/health/ready",
            self.ports.keycloak_management
        );
        let running = self
            .running(Component::Keycloak)
            .expect("keycloak was spawned");
        wait_ready(
            &self.probe,
            &running.process,
            &Probe::Http(probe),
            KEYCLOAK_READY,
        )
        .await?;
        // The import files hold the client secret and the users' passwords: gone once imported.
        for realm in KeycloakRealm::ALL {
            let _ = std::fs::remove_file(
                self.run_dir
                    .join("keycloak/data/import")
                    .join(realm_import_file(realm)),
            );
        }
        Ok(())
    }

    /// Starts a fast-starting component (all but Keycloak) and waits until it is ready.
    async fn start_component(
        &self,
        component: Component,
        progress: &(dyn Fn(StackEvent) + Sync),
    ) -> Result<Supervised, EnvError> {
        let started = Instant::now();
        let name = component.name();
        let (launch, probe) = match component {
            Component::Keycloak => unreachable!("Keycloak starts in the background"),
            Component::Httpbin => (
                Launch::new(name, &self.toolchain.httpbin, self.log(name))
                    .args(["-host", "127.0.0.1", "-port"])
                    .arg(self.ports.httpbin.to_string()),
                Probe::Http(format!(
                    "http://127.0.0.1:{}/status/200",
                    self.ports.httpbin
                )),
            ),
            Component::EchoApp => (
                Launch::new(name, &self.toolchain.httpbin, self.log(name))
                    .args(["-host", "127.0.0.1", "-prefix", ECHO_PREFIX, "-port"])
                    .arg(self.ports.echo_app.to_string()),
                Probe::Http(format!(
                    "http://127.0.0.1:{}{ECHO_PREFIX}/status/200",
                    self.ports.echo_app
                )),
            ),
            Component::OidcIdp => {
                let path = self.run_dir.join("oidc-idp.json");
                write_private(&path, &self.oidc_idp_config()?)?;
                let idp = &self.toolchain.oidc_idp;
                (
                    Launch::new(name, &idp.node, self.log(name))
                        .arg(idp.server_dir.join("server.mjs").display().to_string())
                        .arg(path.display().to_string())
                        .cwd(&idp.server_dir),
                    Probe::Http(format!("{}/healthz", self.oidc_idp_issuer())),
                )
            }
            Component::Redis => {
                // The password is in a file of the user's, not on the command line.
                let path = self.run_dir.join("redis.conf");
                write_private(
                    &path,
                    &format!(
                        "bind 127.0.0.1\nport {}\nprotected-mode yes\nrequirepass {}\n\
                         save \"\"\nappendonly no\ndir {}\n",
                        self.ports.redis,
                        self.secrets.redis_password.expose(),
                        self.run_dir.display()
                    ),
                )?;
                let redis = &self.toolchain.redis;
                let mut launch = Launch::new(name, &redis.binary, self.log(name))
                    .arg(path.display().to_string());
                if let Some(libraries) = &redis.library_dir {
                    launch = launch.env("LD_LIBRARY_PATH", libraries.display().to_string());
                }
                (
                    launch,
                    Probe::Redis {
                        port: self.ports.redis,
                        password: self.secrets.redis_password.clone(),
                    },
                )
            }
            Component::IstioXds => {
                let inputs = self.istio_inputs()?;
                let dirs = inputs.write(&self.run_dir.join("istio"))?;
                let tls = self.run_dir.join("tls");
                let mut launch = Launch::new(name, &self.toolchain.istio_xds, self.log(name))
                    .arg("serve")
                    .arg("--mesh")
                    .arg(self.run_dir.join("istio/mesh.yaml").display().to_string())
                    .arg("--ca-cert")
                    .arg(tls.join("mesh-ca.pem").display().to_string())
                    .arg("--ca-key")
                    .arg(tls.join("mesh-ca-key.pem").display().to_string())
                    .arg(format!("--xds=127.0.0.1:{}", self.ports.xds))
                    .arg(format!("--sds=127.0.0.1:{}", self.ports.sds))
                    .arg(format!("--health=127.0.0.1:{}", self.ports.xds_health));
                for dir in dirs {
                    launch = launch.arg("--config").arg(dir.display().to_string());
                }
                if !self.config.sidecar_trust_domain_check {
                    // istiod's switch for accepting mTLS peers of any trust domain.
                    launch = launch.env("PILOT_SKIP_VALIDATE_TRUST_DOMAIN", "true");
                }
                (
                    launch,
                    Probe::Http(format!("http://127.0.0.1:{}/ready", self.ports.xds_health)),
                )
            }
            Component::Sidecar | Component::SleepSidecar | Component::Gateway => {
                let (file, admin) = match component {
                    Component::Sidecar => ("sidecar.yaml", self.ports.sidecar_admin),
                    Component::SleepSidecar => ("sleep-sidecar.yaml", self.ports.sleep_admin),
                    _ => ("gateway.yaml", self.ports.gateway_admin),
                };
                let path = self.run_dir.join(file);
                write_private(&path, &self.bootstrap(component)?)?;
                let mut launch =
                    crate::components::envoy_launch(&self.toolchain.envoy, &path, self.log(name));
                launch.name = name;
                (
                    launch,
                    Probe::Http(format!("http://127.0.0.1:{admin}/ready")),
                )
            }
            Component::OAuth2Proxy => {
                let config = self.oauth2_proxy_config()?;
                let path = self.run_dir.join("oauth2-proxy.cfg");
                write_private(&path, &config)?;
                (
                    Launch::new(name, &self.toolchain.oauth2_proxy, self.log(name))
                        .arg(format!("--config={}", path.display()))
                        .env(
                            "OAUTH2_PROXY_CLIENT_SECRET",
                            self.oauth2_proxy_client_secret(),
                        )
                        .env(
                            "OAUTH2_PROXY_COOKIE_SECRET",
                            if self.config.cookie_secret_per_start {
                                Secret::generate_alphanumeric(32).expose().to_string()
                            } else {
                                self.secrets.cookie_secret.expose().to_string()
                            },
                        )
                        .env(
                            "OAUTH2_PROXY_REDIS_PASSWORD",
                            self.secrets.redis_password.expose(),
                        ),
                    self.oauth2_proxy_ready(),
                )
            }
        };
        let process = self.supervise(component, &launch)?;
        wait_ready(&self.probe, &process, &probe, COMPONENT_READY).await?;
        // These files hold passwords and are read once at start: gone once it is ready, like
        // Keycloak's realm import.
        let read_once = match component {
            Component::Redis => Some("redis.conf"),
            Component::OidcIdp => Some("oidc-idp.json"),
            _ => None,
        };
        if let Some(file) = read_once {
            let _ = std::fs::remove_file(self.run_dir.join(file));
        }
        // A proxy is ready when Envoy lists the generated listeners as its own: one it cannot
        // bind it reports in its log and drops, and a connection test would reach whoever
        // holds the port instead.
        let (admin, listeners) = match component {
            Component::Gateway => (
                self.ports.gateway_admin,
                match self.config.app_listener {
                    AppListener::Https => vec![self.ports.gateway_https, self.ports.gateway_http],
                    AppListener::PlainHttp => vec![
                        self.ports.gateway_https,
                        self.ports.gateway_http,
                        self.ports.gateway_app_http,
                    ],
                },
            ),
            Component::Sidecar => (self.ports.sidecar_admin, vec![self.ports.sidecar]),
            // sleep's outbound listener for httpbin's service port.
            Component::SleepSidecar => (self.ports.sleep_admin, vec![self.ports.sidecar]),
            _ => (0, Vec::new()),
        };
        wait_listening(&self.probe, &process, admin, &listeners, COMPONENT_READY).await?;
        progress(StackEvent::Ready {
            component: name,
            after: started.elapsed(),
        });
        Ok(process)
    }
}

/// The runner brings the stack to each scenario's `stack:` profile; the stack's other
/// settings (theme, sign-in page, load baseline) stay as they were started.
impl crate::control::StackControl for LocalStack {
    fn apply<'a>(
        &'a mut self,
        profile: &'a StackProfile,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + 'a>> {
        Box::pin(async move {
            let config = self.base.clone().with_profile(profile);
            if config != self.config {
                self.append_stack_log(&format!(
                    "applying the scenario's stack profile {}",
                    serde_json::to_string(profile).unwrap_or_default()
                ));
            }
            self.converge_to(config)
                .await
                .map_err(|e| format!("reconfiguring the local stack failed: {e}"))
        })
    }

    fn accepts_profile(&self, _: &StackProfile, _: bool) -> bool {
        true
    }

    fn can_disrupt(&self, part: Part, disruption: Disruption) -> bool {
        match (part, disruption) {
            // Through Keycloak's admin API: the second OpenID Provider has none.
            (
                Part::Idp,
                Disruption::RevokeSessions | Disruption::DisableUser | Disruption::ShortLivedTokens,
            ) => self.config.idp.keycloak_issues(),
            (Part::App, Disruption::Impersonate) => true,
            (
                _,
                Disruption::RevokeSessions
                | Disruption::Impersonate
                | Disruption::DisableUser
                | Disruption::ShortLivedTokens,
            ) => false,
            (Part::SessionStore, _) => self.config.session_store == SessionStore::Redis,
            _ => true,
        }
    }

    fn endpoints(&self) -> Option<Endpoints> {
        Some(self.endpoints.clone())
    }

    fn config_files(&self) -> Result<Vec<crate::audit::ConfigFile>, String> {
        let istio = self.istio_inputs().map_err(|e| e.to_string())?;
        // One file, as an IstioOperator holds the mesh config beside the policies: the
        // provider's settings and the policies that name it are judged together.
        let mut files = vec![crate::audit::ConfigFile {
            name: "istio/policy.yaml + istio/mesh.yaml".into(),
            text: format!("{}\n---\n{}", istio.policy, istio.mesh),
        }];
        for (name, text) in istio.overlay.unwrap_or_default() {
            files.push(crate::audit::ConfigFile {
                name: format!("istio/overlay/{name}"),
                text,
            });
        }
        // Without the CUSTOM policy no request reaches oauth2-proxy: it is not part of the
        // deployment under test.
        if self.config.ext_authz {
            files.push(crate::audit::ConfigFile {
                name: "oauth2-proxy.cfg".into(),
                text: self.oauth2_proxy_config().map_err(|e| e.to_string())?,
            });
        }
        // The realm in use: the others are there only to switch to.
        files.push(crate::audit::ConfigFile {
            name: realm_import_file(self.config.realm),
            text: self
                .render_realm(self.config.realm, self.keycloak_frontend_url())
                .map_err(|e| e.to_string())?,
        });
        Ok(files)
    }

    fn has_config_files(&self) -> bool {
        true
    }

    fn disrupt(
        &mut self,
        part: Part,
        disruption: Disruption,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + '_>> {
        let component = self.playing(part);
        let result = match disruption {
            Disruption::Stop => {
                self.stop_component(component);
                Ok(())
            }
            Disruption::Pause => match self.running(component) {
                Some(running) => {
                    running.process.pause();
                    self.paused.push(component);
                    Ok(())
                }
                None => Err(format!("{} is not running", component.name())),
            },
            Disruption::RevokeSessions => {
                return Box::pin(async move {
                    self.revoke_user_sessions()
                        .await
                        .map_err(|e| format!("ending the test user's sessions failed: {e}"))
                });
            }
            Disruption::DisableUser | Disruption::ShortLivedTokens => {
                return Box::pin(async move {
                    let failed =
                        |e: EnvError| format!("{} keycloak failed: {e}", disruption.verb());
                    let token = self.keycloak_admin_token().await.map_err(failed)?;
                    let change = match disruption {
                        Disruption::DisableUser => IdpChange::UserDisabled,
                        _ => IdpChange::TokenLifespan {
                            was: self.realm_token_lifespan(&token).await.map_err(failed)?,
                        },
                    };
                    self.change_realm(&token, change, false)
                        .await
                        .map_err(failed)?;
                    self.idp_changes.push(change);
                    Ok(())
                });
            }
            Disruption::Impersonate => {
                return Box::pin(async move {
                    // The impostor takes the address the sidecar listens on.
                    self.stop_component(Component::Sidecar);
                    let address = format!("{}:{}", ProxyIdentity::httpbin().ip, self.ports.sidecar)
                        .parse::<std::net::SocketAddr>()
                        .map_err(|e| format!("httpbin's sidecar address: {e}"))?;
                    let (cert, key) = &self.impostor_certificate;
                    let impostor = super::impostor::Impostor::start(address, cert, key).await?;
                    self.impostor = Some(impostor);
                    self.append_stack_log(&format!(
                        "an impostor (httpbin's identity from another CA) listens at {address} \
                         in httpbin's sidecar's place (a scenario's disruption)"
                    ));
                    Ok(())
                });
            }
        };
        self.append_stack_log(&format!(
            "{}: {disruption:?} (a scenario's disruption)",
            component.name()
        ));
        Box::pin(std::future::ready(result))
    }

    fn restore(
        &mut self,
        part: Part,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + '_>> {
        Box::pin(async move {
            let component = self.playing(part);
            if part == Part::App
                && let Some(impostor) = self.impostor.take()
            {
                let seen = impostor.seen(IMPOSTOR_SETTLES).await;
                self.append_stack_log(&format!(
                    "the impostor saw its callers' handshakes end: {seen:?}"
                ));
                impostor.stop().await;
            }
            if let Some(index) = self.paused.iter().position(|c| *c == component) {
                self.paused.remove(index);
                if let Some(running) = self.running(component) {
                    running.process.resume();
                }
            }
            self.append_stack_log(&format!("{}: restored", component.name()));
            let failed =
                |e: &dyn std::fmt::Display| format!("restoring {} failed: {e}", component.name());
            self.converge(&|_| {}).await.map_err(|e| failed(&e))?;
            if part == Part::Idp && !self.idp_changes.is_empty() {
                let token = self.keycloak_admin_token().await.map_err(|e| failed(&e))?;
                // Newest first, each forgotten only once undone: a failed restore is retried.
                while let Some(change) = self.idp_changes.last().copied() {
                    self.change_realm(&token, change, true)
                        .await
                        .map_err(|e| failed(&e))?;
                    self.idp_changes.pop();
                }
            }
            // Its clients may not use it at once (oauth2-proxy's redis pool redials on its own
            // schedule): restored means the auth service answers its deep readiness check.
            if let Some(running) = self.running(Component::OAuth2Proxy) {
                wait_ready(
                    &self.probe,
                    &running.process,
                    &self.oauth2_proxy_ready(),
                    COMPONENT_READY,
                )
                .await
                .map_err(|e| failed(&e))?;
            }
            Ok(())
        })
    }

    fn impostor_handshakes(
        &self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Option<Vec<crate::control::Handshake>>, String>>
                + '_,
        >,
    > {
        Box::pin(async move {
            match &self.impostor {
                Some(impostor) => Ok(Some(impostor.seen(IMPOSTOR_SETTLES).await)),
                None => Ok(None),
            }
        })
    }
}

impl LocalStack {
    /// The local component that plays `part` in this configuration.
    fn playing(&self, part: Part) -> Component {
        match part {
            Part::AuthService => Component::OAuth2Proxy,
            Part::Idp => match self.config.idp {
                IdentityProvider::Keycloak | IdentityProvider::KeycloakBrokering => {
                    Component::Keycloak
                }
                IdentityProvider::OidcProvider => Component::OidcIdp,
            },
            Part::App => Component::Httpbin,
            Part::SessionStore => Component::Redis,
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Istio inputs of one configuration.
struct IstioInputs {
    policy: String,
    registry: String,
    mesh: String,
    /// The user's overlay files, by path relative to the overlay directory.
    overlay: Option<Vec<(String, String)>>,
    overlay_dir: Option<PathBuf>,
}

impl IstioInputs {
    fn render(
        config: &StackConfig,
        ports: &Ports,
        gateway_tls: (&str, &str),
        issuer: &str,
    ) -> Result<Self, EnvError> {
        let context = IstioContext::new(
            config,
            gateway_tls,
            issuer,
            ServicePorts {
                keycloak: ports.keycloak,
                oauth2_proxy: ports.oauth2_proxy,
                httpbin: ports.sidecar,
                echo: ports.echo_app,
                gateway_http_target: ports.gateway_http,
                gateway_app_http_target: ports.gateway_app_http,
                oidc_idp: ports.oidc_idp,
            },
        );
        let (policy, mesh) = context.render()?;
        let registry = crate::fixtures::render(
            istio::REGISTRY_FIXTURE,
            &LocalRegistryContext {
                istio: &context,
                httpbin_app_port: ports.httpbin,
                gateway_https_target_port: ports.gateway_https,
                gateway: ProxyIdentity::gateway(),
                httpbin: ProxyIdentity::httpbin(),
                sleep: ProxyIdentity::sleep(),
            },
        )?;
        let overlay = match &config.istio_overlay {
            Some(dir) => Some(read_overlay(dir)?),
            None => None,
        };
        Ok(Self {
            policy,
            registry,
            mesh,
            overlay,
            overlay_dir: config.istio_overlay.clone(),
        })
    }

    /// Writes the inputs under `root` for the generator, returning the directories it reads in
    /// order (the overlay last) and the mesh config's path.
    fn write(&self, root: &Path) -> Result<Vec<PathBuf>, EnvError> {
        let _ = std::fs::remove_dir_all(root);
        let reference = root.join("reference");
        write_private(&reference.join("policy.yaml"), &self.policy)?;
        write_private(&reference.join("local-registry.yaml"), &self.registry)?;
        write_private(&root.join("mesh.yaml"), &self.mesh)?;
        let mut dirs = vec![reference];
        // The user's own directory, so that errors name their files.
        dirs.extend(self.overlay_dir.clone());
        Ok(dirs)
    }

    /// Everything the generator reads, as one text to compare configurations by.
    fn digest(&self) -> String {
        let mut text = format!("{}\n{}\n{}", self.policy, self.registry, self.mesh);
        for (name, content) in self.overlay.iter().flatten() {
            text.push_str(&format!("\n# overlay {name}\n{content}"));
        }
        text
    }
}

/// What Istio's generator makes of `config` for the local gateway and httpbin's sidecar:
/// `<out>/gateway.json` and `<out>/httpbin.json` (listeners, clusters, routes as Envoy gets
/// them), beside the inputs under `<out>/inputs/`. Ports are fixed, kind-like numbers so that
/// dumps of two configurations compare line by line.
pub fn dump_istio(
    toolchain: &Toolchain,
    config: &StackConfig,
    out: &Path,
) -> Result<Vec<PathBuf>, EnvError> {
    let ports = Ports {
        gateway_https: 8443,
        gateway_http: 8080,
        gateway_admin: 15000,
        oauth2_proxy: 4180,
        httpbin: 8081,
        keycloak: 8180,
        keycloak_management: 9000,
        sidecar: 8000,
        sidecar_admin: 15001,
        xds: 15010,
        sds: 15012,
        xds_health: 15014,
        sleep_admin: 15002,
        redis: 6379,
        echo_app: 8082,
        gateway_app_http: 8081,
        oidc_idp: 3000,
    };
    let pki = RunPki::generate()?;
    let issuer = format!(
        "http://127.0.0.1:{}/realms/{}",
        ports.gateway_http,
        config.realm.name()
    );
    let inputs = IstioInputs::render(
        config,
        &ports,
        (&pki.server_cert_pem, &pki.server_key_pem),
        &issuer,
    )?;
    let dirs = inputs.write(&out.join("inputs"))?;
    let proxies = out.join("inputs/proxies.json");
    write_private(
        &proxies,
        &istio::proxies_json(&[
            ("gateway", &ProxyIdentity::gateway()),
            ("httpbin", &ProxyIdentity::httpbin()),
            ("sleep", &ProxyIdentity::sleep()),
        ]),
    )?;
    let mut command = std::process::Command::new(&toolchain.istio_xds);
    command
        .arg("dump")
        .arg("--mesh")
        .arg(out.join("inputs/mesh.yaml"))
        .arg("--proxies")
        .arg(&proxies)
        .arg("--out")
        .arg(out);
    for dir in &dirs {
        command.arg("--config").arg(dir);
    }
    let output = command.output().map_err(|source| EnvError::Io {
        what: "run",
        path: toolchain.istio_xds.clone(),
        source,
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("\tinfo\t") && !l.contains("\terror\tCRD "))
            .collect();
        return Err(EnvError::Config {
            file: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            message: format!(
                "Istio's generator refused the configuration:\n{}",
                detail.join("\n")
            ),
            hint: "fix the object and field named above (Istio's own validation)".into(),
        });
    }
    Ok(vec![
        out.join("gateway.json"),
        out.join("httpbin.json"),
        out.join("sleep.json"),
    ])
}

/// The YAML files of a user's Istio directory (recursively), sorted by path.
fn read_overlay(dir: &Path) -> Result<Vec<(String, String)>, EnvError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<(), EnvError> {
        let entries = std::fs::read_dir(dir).map_err(|source| EnvError::Io {
            what: "read the Istio directory",
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).map_err(|source| EnvError::Io {
                    what: "read Istio YAML",
                    path: path.clone(),
                    source,
                })?;
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                out.push((name, text));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    if files.is_empty() {
        return Err(EnvError::Config {
            file: dir.display().to_string(),
            message: "no *.yaml or *.yml files in the Istio directory".into(),
            hint: "point --istio at a directory holding your Istio objects".into(),
        });
    }
    files.sort();
    Ok(files)
}

fn url(text: &str) -> Url {
    Url::parse(text).expect("loopback URLs built from ports are valid")
}

/// Polls `probe` until it answers 2xx, failing early (with the log tail) if the process exits;
/// an exit because a port was taken is [`ComponentError::AddressInUse`], so it can be retried.
/// How a component shows it is ready to serve.
enum Probe {
    /// A GET answered 2xx.
    Http(String),
    /// redis answers `PING` after `AUTH`.
    Redis { port: u16, password: Secret },
}

impl Probe {
    async fn passes(&self, client: &reqwest::Client) -> bool {
        match self {
            Probe::Http(url) => client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Probe::Redis { port, password } => redis_ping(*port, password).await.is_ok(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Probe::Http(url) => url.clone(),
            Probe::Redis { port, .. } => format!("redis PING on 127.0.0.1:{port}"),
        }
    }
}

/// `AUTH` then `PING` on redis's port; Ok once it answers `+PONG`.
async fn redis_ping(port: u16, password: &Secret) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).await?;
    let request = format!("AUTH {}\r\nPING\r\n", password.expose());
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
        if answer.ends_with(b"+PONG\r\n") {
            return Ok(());
        }
    }
    Err(std::io::Error::other(format!(
        "redis answered {:?}",
        String::from_utf8_lossy(&answer)
    )))
}

async fn wait_ready(
    client: &reqwest::Client,
    process: &Supervised,
    probe: &Probe,
    timeout: Duration,
) -> Result<(), ComponentError> {
    let deadline = Instant::now() + timeout;
    let mut pause = ReadinessPause::default();
    loop {
        if let Some(status) = process.exited() {
            if mentions_address_in_use(&process.log_since_start()) {
                return Err(ComponentError::AddressInUse {
                    component: process.name(),
                    status: status.to_string(),
                    log: process.log_path().display().to_string(),
                    tail: process.log_tail(25),
                });
            }
            return Err(ComponentError::Exited {
                component: process.name(),
                status: status.to_string(),
                log: process.log_path().display().to_string(),
                tail: process.log_tail(25),
            });
        }
        if probe.passes(client).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ComponentError::NotReady {
                component: process.name(),
                seconds: timeout.as_secs(),
                probe: probe.describe(),
                log: process.log_path().display().to_string(),
                tail: process.log_tail(25),
            });
        }
        pause.sleep().await;
    }
}

/// The pause between readiness probes: short at first, since most components are ready within
/// tens of milliseconds (a fixed 200 ms made every restart cost at least that), then longer for
/// the slow starters (Keycloak) so as not to busy them.
struct ReadinessPause(Duration);

impl Default for ReadinessPause {
    fn default() -> Self {
        Self(Duration::from_millis(10))
    }
}

impl ReadinessPause {
    const LONGEST: Duration = Duration::from_millis(200);

    async fn sleep(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Self::LONGEST);
    }
}

/// Waits until the Envoy behind `admin_port` lists an active listener on each of `ports`; a
/// listener it could not bind (its log says so) is [`ComponentError::AddressInUse`].
async fn wait_listening(
    client: &reqwest::Client,
    process: &Supervised,
    admin_port: u16,
    ports: &[u16],
    timeout: Duration,
) -> Result<(), ComponentError> {
    if ports.is_empty() {
        return Ok(());
    }
    let probe = format!("http://127.0.0.1:{admin_port}/listeners?format=json");
    let deadline = Instant::now() + timeout;
    let mut pause = ReadinessPause::default();
    loop {
        if mentions_address_in_use(&process.log_since_start()) {
            return Err(ComponentError::AddressInUse {
                component: process.name(),
                status: format!("could not listen on one of the ports {ports:?}"),
                log: process.log_path().display().to_string(),
                tail: process.log_tail(25),
            });
        }
        if let Ok(response) = client.get(&probe).send().await
            && let Ok(listing) = response.json::<serde_json::Value>().await
        {
            let listening: Vec<u64> = listing["listener_statuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
                .collect();
            if ports.iter().all(|p| listening.contains(&u64::from(*p))) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(ComponentError::NotReady {
                component: process.name(),
                seconds: timeout.as_secs(),
                probe: format!("listeners on ports {ports:?} in {probe} (from Istio's config)"),
                log: process.log_path().display().to_string(),
                tail: process.log_tail(25),
            });
        }
        pause.sleep().await;
    }
}

/// Go ("bind: address already in use"), Envoy ("Address already in use") and Quarkus
/// ("Port(s) already bound: …: Address already in use") all say it this way.
fn mentions_address_in_use(log: &str) -> bool {
    log.to_ascii_lowercase().contains("address already in use")
}

/// Writes a file readable only by the user: rendered configs can hold secrets.
fn write_private(path: &Path, contents: &str) -> Result<(), EnvError> {
    crate::files::write_private(path, contents).map_err(|source| EnvError::Io {
        what: "write",
        path: path.to_path_buf(),
        source,
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), EnvError> {
    let io = |source| EnvError::Io {
        what: "copy Keycloak files into",
        path: to.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(to).map_err(io)?;
    for entry in std::fs::read_dir(from).map_err(io)? {
        let entry = entry.map_err(io)?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io)?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(io)?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The containers environment runs each component's image with the local launch's own
    /// arguments and environment, the run directory at the same path; Keycloak builds its
    /// options in (the image is not built with ours) and keeps its own Java.
    #[test]
    fn containers_run_the_images_with_the_local_launches() {
        let images = ContainerImages::pinned();
        let run_dir = Path::new("/tmp/meshauth-run");
        let keycloak = Launch::new(
            "keycloak",
            "/cache/keycloak/bin/kc.sh",
            run_dir.join("k.log"),
        )
        .args(["start", "--optimized", "--http-port=18080"])
        .env("JAVA_HOME", "/usr/lib/jvm/17")
        .env("KC_BOOTSTRAP_ADMIN_USERNAME", "admin")
        .cwd(run_dir.join("keycloak"));
        let spec = container_spec(Component::Keycloak, &keycloak, &images, run_dir).unwrap();
        assert_eq!(spec.image, images.keycloak);
        assert_eq!(
            spec.command,
            [
                "start",
                "--db=dev-mem",
                "--health-enabled=true",
                "--cache=local",
                "--http-port=18080"
            ]
        );
        assert_eq!(
            spec.env,
            [(
                "KC_BOOTSTRAP_ADMIN_USERNAME".to_string(),
                "admin".to_string()
            )]
        );
        assert!(spec.mounts.contains(&(
            run_dir.join("keycloak/data/import"),
            PathBuf::from("/opt/keycloak/data/import"),
            false
        )));
        let envoy = crate::components::envoy_launch(
            Path::new("/cache/envoy"),
            &run_dir.join("gateway.yaml"),
            run_dir.join("envoy.log"),
        );
        let spec = container_spec(Component::Gateway, &envoy, &images, run_dir).unwrap();
        assert_eq!(
            (spec.image.as_str(), spec.entrypoint.as_deref()),
            (images.envoy.as_str(), Some("envoy"))
        );
        assert_eq!(
            spec.command[..2],
            [
                "-c".to_string(),
                "/tmp/meshauth-run/gateway.yaml".to_string()
            ]
        );
        assert!(
            spec.mounts
                .contains(&(run_dir.to_path_buf(), run_dir.to_path_buf(), true))
        );
        assert!(spec.user.ends_with(":0"));
        assert!(container_spec(Component::IstioXds, &envoy, &images, run_dir).is_none());
    }
    use crate::policy::{AuthorizationRequirement, PeerAuthenticationMode};

    /// The Istio inputs for a configuration, with fixed ports and placeholder secrets.
    fn render(config: &StackConfig, fixture: &str) -> String {
        let context = IstioContext::new(
            config,
            ("<gateway certificate PEM>", "<gateway key PEM>"),
            "http://127.0.0.1:20080/realms/Test-oidc",
            ServicePorts {
                keycloak: 20180,
                oauth2_proxy: 20418,
                httpbin: 20800,
                echo: 20801,
                gateway_http_target: 20080,
                gateway_app_http_target: 20081,
                oidc_idp: 20300,
            },
        );
        let registry = LocalRegistryContext {
            istio: &context,
            httpbin_app_port: 20801,
            gateway_https_target_port: 20443,
            gateway: ProxyIdentity::gateway(),
            httpbin: ProxyIdentity::httpbin(),
            sleep: ProxyIdentity::sleep(),
        };
        crate::fixtures::render(fixture, &registry).unwrap()
    }

    fn objects(rendered: &str) -> Vec<serde_json::Value> {
        rendered
            .split("\n---\n")
            .filter_map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).ok())
            .filter(|doc| doc.get("kind").is_some())
            .collect()
    }

    fn find<'a>(
        objects: &'a [serde_json::Value],
        kind: &str,
        name: &str,
    ) -> Option<&'a serde_json::Value> {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    #[test]
    fn the_sidecar_profile_becomes_istio_objects() {
        let config = StackConfig {
            sidecar: SidecarPolicy {
                peer_authentication: PeerAuthenticationMode::Strict,
                request_authentication: true,
                authorization: AuthorizationRequirement::RequestPrincipal,
            },
            ..StackConfig::default()
        };
        let rendered = objects(&render(&config, istio::POLICY_FIXTURE));
        let peer = find(&rendered, "PeerAuthentication", "default").unwrap();
        assert_eq!(peer["spec"]["mtls"]["mode"], "STRICT");
        assert!(find(&rendered, "RequestAuthentication", "httpbin-jwt").is_some());
        let allow = find(&rendered, "AuthorizationPolicy", "httpbin").unwrap();
        assert_eq!(
            allow["spec"]["rules"][0]["from"][0]["source"]["requestPrincipals"][0],
            "*"
        );

        let permissive = StackConfig {
            sidecar: SidecarPolicy {
                peer_authentication: PeerAuthenticationMode::Permissive,
                ..SidecarPolicy::default()
            },
            ..StackConfig::default()
        };
        let bare = objects(&render(&permissive, istio::POLICY_FIXTURE));
        assert!(find(&bare, "RequestAuthentication", "httpbin-jwt").is_none());
        assert!(find(&bare, "AuthorizationPolicy", "httpbin").is_none());
        let peer = find(&bare, "PeerAuthentication", "default").unwrap();
        assert_eq!(peer["spec"]["mtls"]["mode"], "PERMISSIVE");
    }

    #[test]
    fn gateway_settings_become_istio_objects_and_mesh_config() {
        let reference = objects(&render(&StackConfig::default(), istio::POLICY_FIXTURE));
        let custom = find(&reference, "AuthorizationPolicy", "oidc").unwrap();
        assert_eq!(custom["spec"]["action"], "CUSTOM");
        assert_eq!(
            custom["spec"]["rules"][0]["to"][0]["operation"]["notPorts"][0],
            "20080"
        );
        assert!(find(&reference, "EnvoyFilter", "strip-identity-headers").is_some());

        let open = StackConfig {
            ext_authz: false,
            strip_identity_headers: false,
            ext_authz_fail_open: true,
            log_query_strings: true,
            ..StackConfig::default()
        };
        let broken = objects(&render(&open, istio::POLICY_FIXTURE));
        assert!(find(&broken, "AuthorizationPolicy", "oidc").is_none());
        assert!(find(&broken, "EnvoyFilter", "strip-identity-headers").is_none());
        let mesh: serde_json::Value =
            serde_saphyr::from_str(&render(&open, istio::MESH_FIXTURE)).unwrap();
        assert_eq!(
            mesh["extensionProviders"][0]["envoyExtAuthzHttp"]["failOpen"],
            true
        );
        assert!(mesh.get("accessLogFormat").is_none());
    }

    #[test]
    fn istio_inputs_snapshot_reference() {
        let config = StackConfig::default();
        insta::assert_snapshot!(format!(
            "# policy.yaml\n{}\n# mesh.yaml\n{}\n# local-registry.yaml\n{}",
            render(&config, istio::POLICY_FIXTURE),
            render(&config, istio::MESH_FIXTURE),
            render(&config, istio::REGISTRY_FIXTURE)
        ));
    }
}
