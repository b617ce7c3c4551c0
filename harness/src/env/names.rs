//! The reference deployment's names: users, roles, claims, clients and paths that the local and
//! kind environments and the Istio objects all render. They live below every one of those, so
//! that none imports another for a name.

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
/// A second user of the upstream IdP, outside the group the realm maps to the app's role.
pub const UPSTREAM_SECOND_USERNAME: &str = "dave";
pub const UPSTREAM_SECOND_EMAIL: &str = "dave@upstream.example.test";
