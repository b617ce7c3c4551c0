//! The stack's configuration: the policy profile plus the knobs tests turn to break it. The
//! local, containers and kind environments and the Istio objects are all rendered from it, so it
//! lives below them and imports none of them.

use std::path::PathBuf;

use serde::Serialize;

use super::names::{OIDC_IDP_CLIENT_ID, SESSION_REFRESH_SECONDS};
use crate::events::{PolicySetting, SettingState};
use crate::policy::{
    Admission, AppListener, ExtAuthzPaths, IdentityProvider, IdpAddress, KeycloakRealm,
    SidecarPolicy, StackProfile,
};

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
    /// oauth2-proxy's `trusted_ips`: client addresses that pass without a session (for health
    /// checkers). None in the reference.
    pub oauth2_proxy_trusted_ips: Vec<&'static str>,
    /// oauth2-proxy's `skip_auth_routes` (`METHOD=regex`): paths that pass without a session.
    /// None in the reference.
    pub oauth2_proxy_skip_auth_routes: Vec<&'static str>,
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
    /// The realm's security headers cleared so that a portal can embed the login page in an
    /// iframe (`browserSecurityHeaders` without `frame-ancestors` and `X-Frame-Options`):
    /// any site can then frame it. Keycloak's defaults in the reference.
    pub realm_login_page_frameable: bool,
    /// The realm's `accessTokenLifespan` (Keycloak's ID tokens live as long): Keycloak's
    /// default of 5 minutes in the reference; a day where someone lengthened it to stop
    /// refresh errors.
    pub access_token_lifespan_seconds: u32,
    /// The realm lets a refresh token be redeemed again (Keycloak's default: Revoke Refresh
    /// Token off). The reference rotates them: each redemption's token is the only one left.
    pub realm_refresh_token_reuse: bool,
    /// oauth2-proxy marks its session cookie `Secure`.
    pub secure_session_cookie: bool,
    /// oauth2-proxy's `cookie_samesite = "none"`: its cookies go with every cross-site
    /// request. Unset (the browser's Lax) in the reference.
    pub cookie_samesite_none: bool,
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
    /// oauth2-proxy checks the ID token's `nonce` (`insecure_oidc_skip_nonce = false`; its
    /// default skips the check).
    pub oidc_nonce_checked: bool,
    /// oauth2-proxy's `insecure_oidc_skip_issuer_verification = true` (as multi-tenant IdPs
    /// tempt): an ID token from any issuer is taken. Off in the reference.
    pub oidc_issuer_unchecked: bool,
    /// oauth2-proxy's `oidc_extra_audiences`: ID tokens issued to this other client are taken
    /// too. None in the reference.
    pub oidc_extra_audience: Option<&'static str>,
    /// Envoy's access logs (gateway, sidecar) write full paths with their query strings,
    /// where OIDC carries codes, state and the logout's `id_token_hint`. Off in the reference.
    pub log_query_strings: bool,
    /// The mesh's `defaultConfig.gatewayTopology.numTrustedProxies`: how many proxies in
    /// front of the gateway it trusts to have written `X-Forwarded-For`. 0 in the reference,
    /// where clients reach the gateway directly; more lets a client choose its address.
    pub gateway_trusted_proxies: u32,
    /// oauth2-proxy's `cookie_domains`: a `Domain` on its cookies, so they also go to every
    /// other host under it. None (host-only) in the reference.
    pub session_cookie_domain: Option<String>,
    /// An unauthenticated `/baseline/` route to httpbin on the HTTPS listener, for load tests'
    /// overhead baseline. Off unless a load run asks for it: a conformance run must not have it.
    pub baseline_route: bool,
    /// The proxies log each request's per-hop timing (Envoy's µs timers and ext_authz's
    /// round trip) instead of Istio's default line: for a load run's hop breakdown.
    pub hop_timing: bool,
    /// Keycloak's administration (its console and admin REST API, `/admin/`) is published on
    /// the gateway with the rest of Keycloak. Off in the reference: the gateway answers those
    /// paths itself (404), and administrators reach Keycloak on its own port.
    pub idp_admin_published: bool,
    /// Brokered sign-in (`idp: keycloak_brokering`): the realm gives the app's role to upstream
    /// users in the upstream IdP's group that stands for it (a Claim to Role mapper on
    /// `groups`). Off: every upstream user gets it (a Hardcoded Role mapper).
    pub broker_role_from_upstream_group: bool,
    /// httpbin's sidecar accepts mTLS peers of the mesh's trust domain only, as Istio does.
    pub sidecar_trust_domain_check: bool,
    /// The mesh policies on httpbin's sidecar (PeerAuthentication, RequestAuthentication,
    /// AuthorizationPolicy): STRICT and only the gateway admitted in the reference
    /// ([`SidecarPolicy::reference`]); a suite's `stack:` profile replaces them whole.
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
            oauth2_proxy_trusted_ips: Vec::new(),
            oauth2_proxy_skip_auth_routes: Vec::new(),
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
            realm_login_page_frameable: false,
            access_token_lifespan_seconds: 300,
            realm_refresh_token_reuse: false,
            secure_session_cookie: true,
            cookie_samesite_none: false,
            session_store: SessionStore::Redis,
            idp: IdentityProvider::Keycloak,
            app_listener: AppListener::Https,
            idp_address: IdpAddress::OwnListener,
            realm: KeycloakRealm::TestOidc,
            idp_path_exempt: true,
            ext_authz_paths: ExtAuthzPaths::ExceptAuthProxy,
            session_cookie_domain: None,
            backend_logout: true,
            oidc_nonce_checked: true,
            oidc_issuer_unchecked: false,
            oidc_extra_audience: None,
            log_query_strings: false,
            gateway_trusted_proxies: 0,
            baseline_route: false,
            hop_timing: false,
            idp_admin_published: false,
            broker_role_from_upstream_group: true,
            sidecar_trust_domain_check: true,
            sidecar: SidecarPolicy::reference(),
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
    /// for the overhead baseline, the per-hop timing log lines, and a production-like session refresh interval (a
    /// conformance run's few seconds would put a refresh-token grant into the measured hot
    /// path every few seconds per session).
    pub fn for_load(self) -> Self {
        Self {
            baseline_route: true,
            hop_timing: true,
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
                "cookies not SameSite=None",
                !self.cookie_samesite_none,
                "leave cookie_samesite unset or \"lax\"",
            ),
            P::protection_or_fix(
                "sessions kept server-side (redis): sign-out ends every copy of the cookie",
                self.session_store == SessionStore::Redis,
                "oauth2-proxy session_store_type = \"redis\" with redis_connection_url (and a redis password): the cookie then holds only a ticket the server can revoke",
            ),
            P::protection_or_fix(
                "access tokens live at most an hour",
                self.access_token_lifespan_seconds <= 3600,
                "the realm's Access Token Lifespan (Realm settings → Tokens) at 5 to 60 minutes; sessions renew tokens with cookie_refresh",
            ),
            P::protection_or_fix(
                "refresh tokens rotated (a used one is refused)",
                !self.realm_refresh_token_reuse,
                "the realm's Revoke Refresh Token on with Refresh Token Max Reuse 0 (revokeRefreshToken: true, refreshTokenMaxReuse: 0)",
            ),
            P::protection_or_fix(
                "the ID token's nonce checked at sign-in",
                self.oidc_nonce_checked,
                "oauth2-proxy insecure_oidc_skip_nonce = false (its default, true, skips the check)",
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
                "the gateway takes the client's address from its own peer (numTrustedProxies 0)",
                self.gateway_trusted_proxies == 0,
                "meshConfig.defaultConfig.gatewayTopology.numTrustedProxies = the number of proxies that really stand in front of the gateway and append to X-Forwarded-For (0 behind a TCP load balancer)",
            ),
            P::protection_or_fix(
                "brokered users get the app's role from their upstream group only",
                self.broker_role_from_upstream_group,
                "map the role from the upstream IdP's group claim (Keycloak: Identity providers → Mappers → Claim to Role, claim groups), never a Hardcoded Role for everyone the upstream IdP knows",
            ),
            P::protection_or_fix(
                "Keycloak's administration (/admin/) not published on the gateway",
                !self.idp_admin_published,
                "route only Keycloak's public paths (/realms/, /resources/) through the gateway, or answer /admin on the IdP's routes with a directResponse 404; administrators use Keycloak's own port or an internal route",
            ),
            P::protection_or_fix(
                "session cookie host-only (no cookie_domains)",
                self.session_cookie_domain.is_none(),
                "leave cookie_domains unset unless the session must span hosts you all own",
            ),
            P::protection_or_fix(
                "no client address or path passes the auth proxy without a session (no trusted_ips, skip_auth_routes)",
                self.oauth2_proxy_trusted_ips.is_empty()
                    && self.oauth2_proxy_skip_auth_routes.is_empty(),
                "leave oauth2-proxy's trusted_ips and skip_auth_routes unset: exempt health paths at the gateway (the CUSTOM policy's notPaths), where the client cannot choose the address or path the check sees",
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
