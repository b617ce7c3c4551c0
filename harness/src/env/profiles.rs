//! Deployment profiles: the local stack configured as a reference write-up configures its
//! deployment, so its report shows that write-up's findings (and, for each protection it
//! leaves off, the fix). `reference` is the hardened default every check passes on.

use super::stack_config::{SessionStore, StackConfig};
use crate::policy::{
    AuthorizationRequirement, IdpAddress, KeycloakRealm, PeerAuthenticationMode, SidecarPolicy,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentProfile {
    /// The hardened reference: every protection on.
    Reference,
    /// Seed 000: ASM + Keycloak + oauth2-proxy (managed OIDC service), httpbin.
    Seed000,
    /// Seed 001: ASM + IDaaS + oauth2-proxy, the app on plain HTTP (port 80).
    Seed001,
    /// Seed 002: Istio + oauth2-proxy (Helm) + Keycloak federating Azure AD, redis sessions.
    Seed002,
    /// Seed 003: Istio + Keycloak origin authentication (RequestAuthentication) and mTLS,
    /// no auth proxy.
    Seed003,
}

impl DeploymentProfile {
    pub const ALL: [Self; 5] = [
        Self::Reference,
        Self::Seed000,
        Self::Seed001,
        Self::Seed002,
        Self::Seed003,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::Seed000 => "seed000",
            Self::Seed001 => "seed001",
            Self::Seed002 => "seed002",
            Self::Seed003 => "seed003",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The write-up (`shared/seeds/NNN_*`) this profile reproduces; its suites are the ones
    /// tagged with it.
    pub fn seed(self) -> Option<&'static str> {
        match self {
            Self::Reference => None,
            Self::Seed000 => Some("000"),
            Self::Seed001 => Some("001"),
            Self::Seed002 => Some("002"),
            Self::Seed003 => Some("003"),
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Reference => "the hardened reference: every protection on",
            Self::Seed000 => {
                "as seed 000 writes it: ASM's managed oauth2-proxy with the provider's defaults \
                 (no pathPrefix, 600 s timeout), no identity-header stripping, any realm user \
                 admitted, no audiences, no IdP logout, no PKCE required of the client, \
                 sessions in the cookie and never re-checked at the IdP"
            }
            Self::Seed001 => {
                "as seed 001 writes it: seed 000's gateway setup with the app and its callback \
                 on plain HTTP, so the session cookie cannot be Secure"
            }
            Self::Seed002 => {
                "as seed 002 writes it: Istio's envoyExtAuthzHttp to oauth2-proxy with default \
                 provider settings, admission left to the IdP, no audiences, no IdP logout, \
                 sessions in redis never re-checked at the IdP, Keycloak under /auth on the app's host"
            }
            Self::Seed003 => {
                "as seed 003 writes it: nothing at the gateway (no auth proxy, no JWT rule); \
                 on httpbin's sidecar STRICT mTLS and a required JWT of realm istio with \
                 audience istio (its v1alpha1 Policy, translated), any realm user admitted, \
                 Keycloak's legacy /auth/realms/istio issuer"
            }
        }
    }

    /// `config` changed the way this write-up configures its deployment.
    pub fn apply(self, config: StackConfig) -> StackConfig {
        let istio_provider_defaults = |config: StackConfig| StackConfig {
            ext_authz_path_prefix: false,
            strip_identity_headers: false,
            oauth2_route_strips_identity_headers: false,
            ext_authz_timeout_seconds: 600,
            jwt_audiences: false,
            admission_role: false,
            backend_logout: false,
            oidc_nonce_checked: false,
            client_requires_pkce: false,
            session_refresh_seconds: None,
            // Keycloak's default for a new realm: Revoke Refresh Token off.
            realm_refresh_token_reuse: true,
            // Nothing on the app's sidecar: Istio's PERMISSIVE default, every caller admitted.
            sidecar: SidecarPolicy {
                peer_authentication: PeerAuthenticationMode::Permissive,
                ..SidecarPolicy::default()
            },
            ..config
        };
        match self {
            Self::Reference => config,
            // ASM's managed oauth2-proxy keeps sessions in the cookie.
            // All of Keycloak on the gateway's port 80, its admin console included.
            Self::Seed000 => StackConfig {
                session_store: SessionStore::Cookie,
                idp_admin_published: true,
                ..istio_provider_defaults(config)
            },
            Self::Seed001 => StackConfig {
                secure_session_cookie: false,
                session_store: SessionStore::Cookie,
                ..istio_provider_defaults(config)
            },
            // Its oauth2-proxy "stores tokens in redis".
            // Keycloak under /auth on the app's host, exempt by notPaths.
            // `notPaths: ["/auth/*"]` exempts Keycloak's /auth/admin/ with the rest.
            Self::Seed002 => StackConfig {
                session_store: SessionStore::Redis,
                idp_address: IdpAddress::AppHostUnderAuth,
                idp_admin_published: true,
                ..istio_provider_defaults(config)
            },
            // Its issuer is Keycloak's legacy http://<keycloak>/auth/realms/istio; its Policy's
            // origin lists `audiences: [istio]`, the client its tokens come from. The Policy
            // targets httpbin, not the gateway: its v1alpha1 `peers: mtls` + required `origins`
            // + `USE_ORIGIN` are today STRICT + RequestAuthentication + requestPrincipals on
            // the sidecar (docs/istio.md), and the gateway checks nothing.
            Self::Seed003 => StackConfig {
                ext_authz: false,
                request_authentication: false,
                sidecar: SidecarPolicy {
                    peer_authentication: PeerAuthenticationMode::Strict,
                    request_authentication: true,
                    authorization: AuthorizationRequirement::RequestPrincipal,
                },
                jwt_audiences: true,
                admission_role: false,
                // Keycloak behind its own public LoadBalancer, /auth/admin/ included.
                idp_address: IdpAddress::OwnListenerUnderAuth,
                idp_admin_published: true,
                realm: KeycloakRealm::Istio,
                realm_refresh_token_reuse: true,
                ..config
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_the_default_and_each_seed_turns_protections_off() {
        assert_eq!(
            DeploymentProfile::Reference.apply(StackConfig::default()),
            StackConfig::default()
        );
        for profile in DeploymentProfile::ALL {
            assert_eq!(DeploymentProfile::from_name(profile.name()), Some(profile));
            if profile == DeploymentProfile::Reference {
                continue;
            }
            let settings = profile.apply(StackConfig::default()).profile();
            let off: Vec<_> = settings
                .iter()
                .filter(|s| s.state == crate::events::SettingState::Off)
                .collect();
            assert!(!off.is_empty(), "{profile:?} changes nothing");
            assert!(
                off.iter().all(|s| s.fix.is_some()),
                "{profile:?}: every protection that is off says how to fix it"
            );
        }
    }
}
