//! The Istio policy model for the workload behind the gateway (httpbin and its sidecar): the
//! three objects that decide what a caller gets, as Istio defines them.
//!
//! - `PeerAuthentication` mode: which transports the sidecar's inbound listener accepts.
//! - `RequestAuthentication`: jwt_authn for the realm's issuer. An invalid token is refused
//!   (401); a request WITHOUT a token passes, unauthenticated.
//! - `AuthorizationPolicy` ALLOW: only a rule on `requestPrincipals` turns a missing token into
//!   403; a rule on `principals` (peer identities) needs mTLS.

use serde::{Deserialize, Serialize};

use crate::events::PolicySetting;

/// The mesh's trust domain and the namespace the seed deploys httpbin and sleep into.
pub const TRUST_DOMAIN: &str = "cluster.local";
pub const NAMESPACE: &str = "foo";

/// A workload's identity as Istio's CA writes it into the URI SAN:
/// `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
pub fn spiffe_id(namespace: &str, service_account: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}")
}

/// `PeerAuthentication.spec.mtls.mode` for the workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerAuthenticationMode {
    /// mTLS only, with a client certificate from the mesh CA. The reference deployment's
    /// namespace (seed 003 asks for it; the audit flags anything less).
    #[default]
    Strict,
    /// mTLS and plaintext side by side (Istio's default when no PeerAuthentication exists).
    Permissive,
    /// Plaintext only.
    Disable,
}

impl PeerAuthenticationMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Strict => "STRICT",
            Self::Permissive => "PERMISSIVE",
            Self::Disable => "DISABLE",
        }
    }

    pub fn accepts_mtls(self) -> bool {
        self != Self::Disable
    }

    pub fn accepts_plaintext(self) -> bool {
        self != Self::Strict
    }
}

/// The `from.source` of an `AuthorizationPolicy` ALLOW rule on the workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthorizationRequirement {
    /// No `AuthorizationPolicy`: everything authenticated (or not) is allowed.
    #[default]
    None,
    /// `requestPrincipals: ["*"]`: a verified JWT is required; a missing one is 403.
    RequestPrincipal,
    /// `principals: ["<trust domain>/ns/<ns>/sa/<sa>"]`: the mTLS peer must be this workload.
    PeerPrincipal(String),
}

impl AuthorizationRequirement {
    fn describe(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::RequestPrincipal => "ALLOW requestPrincipals [\"*\"]".into(),
            Self::PeerPrincipal(principal) => format!("ALLOW principals [\"{principal}\"]"),
        }
    }
}

/// The policies applied to httpbin's sidecar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarPolicy {
    #[serde(default)]
    pub peer_authentication: PeerAuthenticationMode,
    /// `RequestAuthentication` for the realm's issuer on the workload.
    #[serde(default)]
    pub request_authentication: bool,
    #[serde(default)]
    pub authorization: AuthorizationRequirement,
}

/// The ingress gateway's namespace and service account (Istio's defaults for its gateway).
pub const GATEWAY_NAMESPACE: &str = "istio-system";
pub const GATEWAY_SERVICE_ACCOUNT: &str = "istio-ingressgateway-service-account";

/// The ingress gateway's identity in the mesh, as AuthorizationPolicy `principals` name it.
pub fn gateway_principal() -> String {
    format!("{TRUST_DOMAIN}/ns/{GATEWAY_NAMESPACE}/sa/{GATEWAY_SERVICE_ACCOUNT}")
}

impl SidecarPolicy {
    /// The reference's: STRICT mTLS, and the ingress gateway the only caller the app admits.
    /// Sign-in at the gateway protects nothing a workload can reach around it: any pod of the
    /// mesh (or, without STRICT, any pod at all) would call the app directly, with whatever
    /// identity headers it likes.
    pub fn reference() -> Self {
        Self {
            authorization: AuthorizationRequirement::PeerPrincipal(gateway_principal()),
            ..Self::default()
        }
    }

    /// The policy setting by setting, for reports.
    pub fn profile(&self) -> Vec<PolicySetting> {
        vec![
            PolicySetting::info(
                "httpbin sidecar PeerAuthentication",
                self.peer_authentication.name(),
            ),
            PolicySetting::protection_or_fix(
                "httpbin sidecar RequestAuthentication (jwt_authn)",
                self.request_authentication,
                "a RequestAuthentication selecting httpbin, with jwtRules for the realm's issuer and audiences",
            ),
            PolicySetting::info(
                "httpbin sidecar AuthorizationPolicy",
                self.authorization.describe(),
            ),
        ]
    }

    /// What is wrong with the combination, if anything: Istio accepts these objects, but they
    /// can never let anyone in, which is a mistake in a profile rather than a finding.
    pub fn validate(&self) -> Result<(), String> {
        if self.authorization == AuthorizationRequirement::RequestPrincipal
            && !self.request_authentication
        {
            return Err("authorization request_principal needs request_authentication: true \
                 (without a RequestAuthentication no request has a principal, so every request is 403)"
                .into());
        }
        if let AuthorizationRequirement::PeerPrincipal(principal) = &self.authorization {
            if self.peer_authentication == PeerAuthenticationMode::Disable {
                return Err(format!(
                    "authorization peer_principal {principal:?} needs mTLS, but peer_authentication is disable"
                ));
            }
            if principal.starts_with("spiffe://") || principal.split('/').count() != 5 {
                return Err(format!(
                    "peer_principal {principal:?} must look like Istio's principals: \
                     \"{TRUST_DOMAIN}/ns/<namespace>/sa/<service account>\" (no spiffe:// prefix)"
                ));
            }
        }
        Ok(())
    }
}

/// What a suite or scenario needs the stack to be: the catalog's side of `StackConfig`. The
/// runner reconfigures the stack to it before the scenario runs (restarting only what changes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StackProfile {
    /// The mesh policies on httpbin's sidecar; absent: the stack's own (the reference's STRICT
    /// and only the gateway admitted, unless a deployment profile sets them).
    #[serde(default)]
    pub sidecar: Option<SidecarPolicy>,
    #[serde(default)]
    pub sign_in: SignInProfile,
}

/// How users sign in at the gateway: which IdP, on which listener, where ext_authz applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignInProfile {
    #[serde(default)]
    pub idp: IdentityProvider,
    #[serde(default)]
    pub app_listener: AppListener,
    #[serde(default)]
    pub ext_authz_paths: ExtAuthzPaths,
    /// oauth2-proxy's `cookie_secure`; absent: the stack's own setting.
    #[serde(default)]
    pub session_cookie_secure: Option<bool>,
    #[serde(default)]
    pub admission: Admission,
    /// Where browsers and clients reach the IdP; absent: the stack's own setting.
    #[serde(default)]
    pub idp_address: Option<IdpAddress>,
    /// The Keycloak realm (and its client for the app); absent: the stack's own setting.
    #[serde(default)]
    pub realm: Option<KeycloakRealm>,
}

/// The Keycloak realm users sign in at and the client the app's tokens are issued to. The
/// local Keycloak holds every one of them, so switching is a matter of configuration, not of
/// restarting Keycloak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeycloakRealm {
    /// Realm `Test-oidc`, client `oauth2proxy` (seed 000's names): the reference.
    #[default]
    TestOidc,
    /// Realm `istio`, client `istio`, whose tokens carry audience `istio` (seed 003's names).
    Istio,
}

impl KeycloakRealm {
    pub const ALL: [Self; 2] = [Self::TestOidc, Self::Istio];

    /// The realm's name, as in `/realms/<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::TestOidc => "Test-oidc",
            Self::Istio => "istio",
        }
    }

    /// The client the app signs users in with; its tokens carry it as audience.
    pub fn client_id(self) -> &'static str {
        match self {
            Self::TestOidc => "oauth2proxy",
            Self::Istio => "istio",
        }
    }
}

/// Where the IdP (Keycloak) is published: its own listener at the root, its own listener
/// under Keycloak's legacy `/auth` (before Keycloak 17, and seed 003's issuer), or under
/// `/auth` on the app's own host (seed 002), where the CUSTOM policy must exempt it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdpAddress {
    /// `http://<gateway>:80/realms/…`: the gateway's plain-HTTP listener, outside ext_authz.
    #[default]
    OwnListener,
    /// `http://<gateway>:80/auth/realms/…`: the legacy path.
    OwnListenerUnderAuth,
    /// `https://<app host>/auth/realms/…`: the app's listener, the app's host.
    AppHostUnderAuth,
}

/// The path Keycloak is published under when not at the root.
pub const IDP_PATH_PREFIX: &str = "/auth";

impl IdpAddress {
    /// The IdP's public base URL (no trailing slash), given the plain-HTTP listener's and the
    /// app's origins.
    pub fn public_base(self, idp_listener: &str, app: &str) -> String {
        let trim = |s: &str| s.trim_end_matches('/').to_string();
        match self {
            Self::OwnListener => trim(idp_listener),
            Self::OwnListenerUnderAuth => format!("{}{IDP_PATH_PREFIX}", trim(idp_listener)),
            Self::AppHostUnderAuth => format!("{}{IDP_PATH_PREFIX}", trim(app)),
        }
    }

    /// Whether the gateway routes `/auth/…` to Keycloak (rewritten to Keycloak's root).
    pub fn under_auth_path(self) -> bool {
        self != Self::OwnListener
    }
}

/// Who decides which signed-in users may use the app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    /// oauth2-proxy (`allowed_roles` / `allowed_groups`), as the stack is configured.
    #[default]
    AuthProxy,
    /// The gateway: an `AuthorizationPolicy` ALLOW with `when` on the custom roles claim
    /// (`request.auth.claims[meshauth_roles]`, realm and client roles), seed 002's way;
    /// oauth2-proxy admits every user of the IdP.
    RoleClaim,
}

/// The OpenID Provider oauth2-proxy sends browsers to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityProvider {
    /// Keycloak, served through the gateway's plain-HTTP listener.
    #[default]
    Keycloak,
    /// A second, independent provider (the `oidc-provider` npm package) on its own port, as a
    /// hosted IdP (seed 001's IDaaS) is reached directly rather than through the mesh.
    OidcProvider,
    /// Keycloak, brokering to the second provider as its upstream identity provider (seed
    /// 002's Keycloak federating Azure AD): the user signs in upstream, Keycloak creates the
    /// user on first login and issues the tokens.
    KeycloakBrokering,
}

impl IdentityProvider {
    /// Keycloak issues the tokens (itself, or after brokering upstream).
    pub fn keycloak_issues(self) -> bool {
        matches!(self, Self::Keycloak | Self::KeycloakBrokering)
    }
}

/// Where the gateway serves the app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppListener {
    #[default]
    Https,
    /// A plain-HTTP server on the gateway (seed 001: `http://<gateway>/`, callback over HTTP).
    PlainHttp,
}

/// Which requests the CUSTOM AuthorizationPolicy sends to oauth2-proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtAuthzPaths {
    /// All but oauth2-proxy's own `/oauth2/*`, which the VirtualService routes to it.
    #[default]
    ExceptAuthProxy,
    /// Every path (`rules: [{}]`, seed 001): oauth2-proxy answers its sign-in, callback and
    /// sign-out inside the check, so the check goes to its own paths (no `pathPrefix`).
    EveryPath,
}

impl StackProfile {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// What is wrong with the combination, if anything (see [`SidecarPolicy::validate`]).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(sidecar) = &self.sidecar {
            sidecar.validate()?;
        }
        if let Some(realm) = self.sign_in.realm
            && !self.sign_in.idp.keycloak_issues()
        {
            return Err(format!(
                "realm {} is a Keycloak realm, but idp is {}: use idp: keycloak (or \
                 keycloak_brokering), or drop realm",
                serde_json::to_string(&realm).unwrap_or_default(),
                serde_json::to_string(&self.sign_in.idp).unwrap_or_default()
            ));
        }
        if let Some(address) = self.sign_in.idp_address
            && address.under_auth_path()
            && !self.sign_in.idp.keycloak_issues()
        {
            return Err(format!(
                "idp_address {} publishes Keycloak under {IDP_PATH_PREFIX}, but idp is {}: \
                     use idp: keycloak (or keycloak_brokering), or drop idp_address",
                serde_json::to_string(&address).unwrap_or_default(),
                serde_json::to_string(&self.sign_in.idp).unwrap_or_default()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StackProfile, String> {
        serde_saphyr::from_str::<StackProfile>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn profiles_parse_in_the_catalog_style() {
        let profile = parse(
            "sidecar:\n  peer_authentication: strict\n  request_authentication: true\n  authorization: request_principal\n",
        )
        .unwrap();
        let sidecar = profile.sidecar.unwrap();
        assert_eq!(sidecar.peer_authentication, PeerAuthenticationMode::Strict);
        assert_eq!(
            sidecar.authorization,
            AuthorizationRequirement::RequestPrincipal
        );
        let peer =
            parse("sidecar:\n  authorization: { peer_principal: cluster.local/ns/foo/sa/sleep }\n")
                .unwrap();
        assert_eq!(
            peer.sidecar.unwrap().authorization,
            AuthorizationRequirement::PeerPrincipal("cluster.local/ns/foo/sa/sleep".into())
        );
        assert!(parse("").is_ok_and(|p| p.is_default()));
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let unknown_mode = parse("sidecar:\n  peer_authentication: strickt\n").unwrap_err();
        assert!(
            unknown_mode.contains("unknown variant `strickt`"),
            "{unknown_mode}"
        );
        let unknown_field = parse("sidecar:\n  mtls: strict\n").unwrap_err();
        assert!(
            unknown_field.contains("unknown field `mtls`"),
            "{unknown_field}"
        );
        let no_ra = SidecarPolicy {
            authorization: AuthorizationRequirement::RequestPrincipal,
            ..SidecarPolicy::default()
        };
        assert!(
            no_ra
                .validate()
                .unwrap_err()
                .contains("needs request_authentication: true")
        );
        let spiffe = SidecarPolicy {
            authorization: AuthorizationRequirement::PeerPrincipal(
                "spiffe://cluster.local/ns/foo/sa/sleep".into(),
            ),
            ..SidecarPolicy::default()
        };
        assert!(
            spiffe
                .validate()
                .unwrap_err()
                .contains("no spiffe:// prefix")
        );
        let disabled = SidecarPolicy {
            peer_authentication: PeerAuthenticationMode::Disable,
            authorization: AuthorizationRequirement::PeerPrincipal(
                "cluster.local/ns/foo/sa/sleep".into(),
            ),
            ..SidecarPolicy::default()
        };
        assert!(disabled.validate().unwrap_err().contains("needs mTLS"));
    }

    #[test]
    fn keycloak_settings_with_another_idp_say_so() {
        let realm = parse("sign_in:\n  idp: oidc_provider\n  realm: istio\n").unwrap();
        assert!(
            realm
                .validate()
                .unwrap_err()
                .contains("realm \"istio\" is a Keycloak realm, but idp is \"oidc_provider\"")
        );
        let address =
            parse("sign_in:\n  idp: oidc_provider\n  idp_address: app_host_under_auth\n").unwrap();
        assert!(address.validate().unwrap_err().contains("drop idp_address"));
        let legacy =
            parse("sign_in:\n  idp_address: own_listener_under_auth\n  realm: istio\n").unwrap();
        assert_eq!(legacy.validate(), Ok(()));
        assert_eq!(
            legacy.sign_in.realm.map(KeycloakRealm::client_id),
            Some("istio")
        );
    }

    #[test]
    fn spiffe_ids_follow_istio() {
        assert_eq!(
            spiffe_id("foo", "sleep"),
            "spiffe://cluster.local/ns/foo/sa/sleep"
        );
    }
}
