//! Proof that the checks can fail: the stack is broken on purpose, one way at a time, and the
//! scenario that guards against that breakage must go red with a message naming the cause.
//! Variants (other themes, no sign-in page) must stay green. One stack, reconfigured in turn;
//! only the components a change affects are restarted.

mod common;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Failed, Trial};
use meshauth::engine::Engine;
use meshauth::env::local::{LoginTheme, SessionStore};
use meshauth::env::{LocalStack, StackConfig};
use meshauth::events::Verdict;
use meshauth::policy::{AuthorizationRequirement, PeerAuthenticationMode, SidecarPolicy};
use meshauth::redact::Redactor;
use meshauth::scenario::{Catalog, Scenario, Suite, qualified_name};

/// What a case expects of its scenario.
enum Expect {
    /// Red, with a failure line containing this text.
    FailsWith(&'static str),
    Passes,
}

struct Case {
    name: &'static str,
    /// How the stack differs from what the scenario's `stack:` profile asks for.
    breakage: fn(&mut StackConfig),
    scenario: &'static str,
    expect: Expect,
}

/// Ordered so that cases sharing a configuration are adjacent (fewer restarts).
const CASES: &[Case] = &[
    Case {
        name: "oauth2_proxy_not_forwarding_authorization",
        breakage: |c| c.forward_authorization = false,
        scenario: "seed000_browser_sso::browser_login",
        expect: Expect::FailsWith(
            "app received Authorization: expected Authorization among the headers",
        ),
    },
    Case {
        name: "session_cookie_without_secure_flag",
        breakage: |c| c.secure_session_cookie = false,
        scenario: "seed000_browser_sso::browser_login",
        expect: Expect::FailsWith("cookie _oauth2_proxy Secure: expected set, actual not set"),
    },
    Case {
        name: "ext_authz_off_lets_anonymous_users_in",
        breakage: |c| c.ext_authz = false,
        scenario: "seed000_browser_sso::no_session_is_sent_to_sign_in",
        expect: Expect::FailsWith("sign-in page: expected a sign-in page"),
    },
    Case {
        name: "ext_authz_off_exposes_the_app_beside_the_open_idp",
        breakage: |c| c.ext_authz = false,
        scenario: "seed000_browser_sso::idp_open_on_plain_port_app_protected",
        expect: Expect::FailsWith("sign-in page: expected a sign-in page"),
    },
    Case {
        name: "request_authentication_off_is_masked_by_oauth2_proxy_at_the_gateway",
        // Istio runs CUSTOM (oauth2-proxy, which verifies bearer tokens itself and replaces
        // the client's Authorization with the session's token) before jwt_authn: without the
        // gateway's RequestAuthentication every wrong token is still refused. The second line
        // is not observable from outside at this deployment; the sidecar's is (the mesh
        // matrix's jwt_authn rows).
        breakage: |c| c.request_authentication = false,
        scenario: "attack_bearer_tokens::gateway_bearer_matrix",
        expect: Expect::Passes,
    },
    Case {
        name: "no_request_authentication_and_no_ext_authz_let_a_forged_token_in",
        // Seed 003's gateway without its RequestAuthentication: nothing checks the token.
        breakage: |c| {
            c.ext_authz = false;
            c.request_authentication = false;
        },
        scenario: "seed003_origin_auth::forged_bearer_is_rejected",
        expect: Expect::FailsWith(
            "status: expected one of 401, 403, actual 200 at https://127.0.0.1:",
        ),
    },
    Case {
        name: "wrong_client_secret_fails_the_callback",
        breakage: |c| c.wrong_client_secret = true,
        scenario: "seed000_browser_sso::browser_login",
        expect: Expect::FailsWith("status: expected 200, actual 500 at https://127.0.0.1:"),
    },
    Case {
        name: "role_mapper_removed_drops_the_roles_claim",
        breakage: |c| c.role_mapper = false,
        scenario: "seed000_browser_sso::browser_login",
        expect: Expect::FailsWith(
            "claim realm_roles: expected containing \"sso-user\", actual missing",
        ),
    },
    Case {
        name: "role_mapper_removed_drops_the_roles_claim_from_granted_tokens",
        breakage: |c| c.role_mapper = false,
        scenario: "seed003_origin_auth::direct_grant_bearer",
        expect: Expect::FailsWith(
            "claim realm_roles: expected containing \"sso-user\", actual missing",
        ),
    },
    Case {
        name: "audience_mapper_removed_drops_aud_from_the_forwarded_access_token",
        breakage: |c| c.audience_mapper = false,
        scenario: "seed000_browser_sso::browser_login",
        // The gateway's RequestAuthentication (audiences: the app's client) also guards the
        // IdP's listener, where oauth2-proxy fetches the user's profile with that token: the
        // callback fails before the token reaches the app.
        expect: Expect::FailsWith("status: expected 200, actual 500 at https://127.0.0.1:"),
    },
    Case {
        name: "audience_mapper_removed_drops_aud_from_granted_tokens",
        breakage: |c| c.audience_mapper = false,
        scenario: "seed003_origin_auth::direct_grant_bearer",
        // Without the mapper aud holds only what Keycloak's audience-resolve adds (the roles
        // client, `httpbin`), never the app's client.
        expect: Expect::FailsWith("claim aud: expected containing \"oauth2proxy\", actual"),
    },
    // httpbin's sidecar rendered differently from what the matrix cell's profile says.
    Case {
        name: "sidecar_permissive_where_strict_lets_outside_callers_in",
        breakage: |c| c.sidecar.peer_authentication = PeerAuthenticationMode::Permissive,
        scenario: "seed003_mesh_matrix::strict_ra_rp__outside_with_valid_jwt",
        expect: Expect::FailsWith(
            "connection: expected the connection rejected (closed, reset or TLS handshake failed) without a response, actual answered 200 at http://127.0.0.11:",
        ),
    },
    Case {
        name: "sidecar_without_rbac_lets_sleep_in_without_a_jwt",
        breakage: |c| c.sidecar.authorization = AuthorizationRequirement::None,
        scenario: "seed003_mesh_matrix::strict_ra_rp__sleep_without_jwt",
        expect: Expect::FailsWith(
            "status: expected 403, actual 200 at http://httpbin.foo.svc.cluster.local:",
        ),
    },
    Case {
        name: "sidecar_without_jwt_authn_lets_a_forged_jwt_in",
        breakage: |c| c.sidecar.request_authentication = false,
        scenario: "seed003_mesh_matrix::strict_ra__sleep_with_forged_jwt",
        expect: Expect::FailsWith(
            "status: expected 401, actual 200 at http://httpbin.foo.svc.cluster.local:",
        ),
    },
    Case {
        name: "sidecar_rbac_for_another_workload_refuses_sleep",
        breakage: |c| {
            c.sidecar.authorization =
                AuthorizationRequirement::PeerPrincipal("cluster.local/ns/foo/sa/other".into())
        },
        scenario: "seed003_mesh_matrix::strict_peer_principal__sleep_without_jwt",
        expect: Expect::FailsWith(
            "status: expected 200, actual 403 at http://httpbin.foo.svc.cluster.local:",
        ),
    },
    Case {
        name: "sidecar_strict_where_disable_rejects_plaintext",
        breakage: |c| c.sidecar.peer_authentication = PeerAuthenticationMode::Strict,
        scenario: "seed003_mesh_matrix::disable_ra__outside_without_jwt",
        expect: Expect::FailsWith("connection: expected an HTTP response, actual rejected ("),
    },
    Case {
        name: "legacy_login_theme_still_signs_in",
        breakage: |c| c.login_theme = LoginTheme::Legacy,
        scenario: "seed000_browser_sso::browser_login",
        expect: Expect::Passes,
    },
    Case {
        name: "legacy_login_theme_shows_the_wrong_password_error",
        breakage: |c| c.login_theme = LoginTheme::Legacy,
        scenario: "seed000_browser_sso::wrong_password_is_rejected",
        expect: Expect::Passes,
    },
    // Istio objects of the user's own (--istio DIR overlays, tests/data/istio-faults/): one
    // realistic mistake per kind, translated by Istio's generator like any deployment's.
    Case {
        name: "istio_gateway_for_another_host_serves_nothing",
        breakage: |c| c.istio_overlay = Some(istio_fault("gateway-other-host")),
        scenario: "seed000_browser_sso::browser_login",
        expect: Expect::FailsWith("/headers): client error (Connect): Connection reset by peer"),
    },
    Case {
        name: "istio_virtualservice_without_the_oauth2_route_breaks_sign_in",
        breakage: |c| c.istio_overlay = Some(istio_fault("virtualservice-without-oauth2-route")),
        scenario: "seed000_browser_sso::browser_login",
        expect: Expect::FailsWith("step 2 (sign_in): no login form on https://127.0.0.1:"),
    },
    Case {
        name: "istio_authorizationpolicy_exempting_health_prefix_exposes_the_app",
        breakage: |c| c.istio_overlay = Some(istio_fault("authorizationpolicy-exempts-health")),
        scenario: "attack_unauthenticated_reach::static_and_health_looking_paths",
        expect: Expect::FailsWith(
            "[high finding] GET /health: expected not answered by the app without a session, actual 404 from the app: the body is exactly what the app serves the signed-in user here",
        ),
    },
    Case {
        name: "istio_authorizationpolicy_checking_only_get_exposes_the_app_to_other_methods",
        breakage: |c| c.istio_overlay = Some(istio_fault("authorizationpolicy-checks-only-get")),
        scenario: "attack_unauthenticated_reach::method_variants",
        expect: Expect::FailsWith(
            "[critical finding] POST /anything: expected not answered by the app",
        ),
    },
    Case {
        name: "istio_requestauthentication_with_the_wrong_issuer_refuses_real_tokens",
        breakage: |c| c.istio_overlay = Some(istio_fault("requestauthentication-wrong-issuer")),
        scenario: "seed003_origin_auth::direct_grant_bearer",
        expect: Expect::FailsWith("with \"Jwt issuer is not configured\""),
    },
    Case {
        name: "istio_peerauthentication_permissive_accepts_plaintext",
        breakage: |c| c.istio_overlay = Some(istio_fault("peerauthentication-permissive")),
        scenario: "attack_mesh_transport::plaintext_is_rejected",
        expect: Expect::FailsWith("without a response, actual answered 200 at http://127.0.0.11:"),
    },
    Case {
        name: "istio_destinationrule_disabling_tls_breaks_the_gateway_to_httpbin",
        breakage: |c| c.istio_overlay = Some(istio_fault("destinationrule-plaintext-to-httpbin")),
        scenario: "seed000_browser_sso::browser_login",
        expect: Expect::FailsWith("status: expected 200, actual 503 at https://127.0.0.1:"),
    },
    Case {
        name: "istio_destinationrule_skipping_verification_believes_an_impostor",
        breakage: |c| {
            c.istio_overlay = Some(istio_fault("destinationrule-skips-verification-to-httpbin"))
        },
        scenario: "attack_mesh_transport::impostor_server_is_refused",
        expect: Expect::FailsWith(
            "status: expected 503, actual 200 at http://httpbin.foo.svc.cluster.local:",
        ),
    },
    // The attack catalog: each class goes red when the hardening that defeats it is removed.
    Case {
        name: "ext_authz_off_lets_every_path_spelling_through",
        breakage: |c| c.ext_authz = false,
        scenario: "attack_unauthenticated_reach::path_normalisation_variants",
        expect: Expect::FailsWith(
            "GET /./anything: expected not answered by the app without a session, actual 200 from the app: the app echoed this request's nonce",
        ),
    },
    Case {
        name: "no_ext_authz_path_prefix_lets_robots_txt_reach_the_app",
        breakage: |c| c.ext_authz_path_prefix = false,
        scenario: "attack_unauthenticated_reach::auth_proxy_own_endpoints",
        expect: Expect::FailsWith(
            "GET /robots.txt: expected not answered by the app without a session, actual 200 from the app: the body is exactly what the app serves the signed-in user",
        ),
    },
    Case {
        name: "identity_headers_not_dropped_reach_the_app",
        breakage: |c| c.strip_identity_headers = false,
        scenario: "attack_forged_identity::forwarded_identity_headers",
        expect: Expect::FailsWith("actual the app received the forged X-Forwarded-User: forged-"),
    },
    Case {
        name: "underscore_headers_allowed_reach_the_app",
        breakage: |c| c.strip_identity_headers = false,
        scenario: "attack_forged_identity::underscore_spellings",
        expect: Expect::FailsWith("actual the app received the forged X_"),
    },
    Case {
        name: "whitelisted_foreign_domain_takes_the_browser_off_the_app",
        breakage: |c| c.whitelist_domains = vec!["evil.example".into()],
        scenario: "attack_redirects_and_flow::rd_absolute_foreign_url_via_start",
        expect: Expect::FailsWith("https://evil.example/"),
    },
    Case {
        // The same list lets a sign-out link hand the signed-out user to the foreign site.
        name: "whitelisted_foreign_domain_takes_the_browser_off_after_sign_out",
        breakage: |c| c.whitelist_domains = vec!["evil.example".into()],
        scenario: "attack_redirects_and_flow::rd_absolute_foreign_url_via_sign_out",
        expect: Expect::FailsWith("https://evil.example/"),
    },
    Case {
        name: "idp_client_with_wildcard_redirect_uri_accepts_another_path",
        breakage: |c| c.client_wildcard_redirect_uri = true,
        scenario: "attack_redirects_and_flow::idp_refuses_other_path_on_the_app_host",
        expect: Expect::FailsWith("login form: expected no login form"),
    },
    Case {
        name: "idp_client_without_pkce_accepts_a_plain_code_request",
        breakage: |c| c.client_requires_pkce = false,
        scenario: "attack_redirects_and_flow::idp_requires_pkce",
        expect: Expect::FailsWith("login form: expected no login form"),
    },
    Case {
        name: "idp_client_with_implicit_flow_accepts_response_type_token",
        breakage: |c| c.client_implicit_flow = true,
        scenario: "attack_redirects_and_flow::idp_refuses_implicit_flow",
        expect: Expect::FailsWith("login form: expected no login form"),
    },
    Case {
        name: "ext_authz_fail_open_lets_everyone_in_while_the_auth_service_is_down",
        breakage: |c| c.ext_authz_fail_open = true,
        scenario: "attack_fail_closed::auth_service_stopped",
        expect: Expect::FailsWith("without a session the request reached the app (fail open)"),
    },
    Case {
        name: "ext_authz_fail_open_lets_everyone_in_once_a_hung_auth_service_times_out",
        breakage: |c| c.ext_authz_fail_open = true,
        scenario: "attack_fail_closed::auth_service_hung",
        expect: Expect::FailsWith("without a session the request reached the app (fail open)"),
    },
    Case {
        name: "request_authentication_without_audiences_accepts_other_clients_tokens",
        breakage: |c| c.jwt_audiences = false,
        scenario: "attack_bearer_tokens::sidecar_bearer_matrix",
        expect: Expect::FailsWith(
            "wrong_audience bearer is refused: expected refused (401/403), never the app, actual the app answered",
        ),
    },
    Case {
        name: "no_admission_role_lets_a_user_without_the_role_in",
        breakage: |c| c.admission_role = false,
        scenario: "attack_admission::user_without_role_is_refused",
        expect: Expect::FailsWith("status: expected 403, actual 200"),
    },
    Case {
        name: "no_admission_role_accepts_the_token_of_a_user_without_the_role",
        breakage: |c| c.admission_role = false,
        scenario: "attack_admission::user_without_role_token_is_refused",
        expect: Expect::FailsWith(
            "second_user bearer is refused: expected refused (401/403), never the app, actual the app answered",
        ),
    },
    Case {
        name: "session_cookie_with_a_domain_goes_to_other_hosts",
        breakage: |c| c.session_cookie_domain = Some("127.0.0.1".into()),
        scenario: "attack_cookies::session_cookie_attributes",
        expect: Expect::FailsWith(
            "cookie _oauth2_proxy host-only: expected no Domain (this host only), actual Domain=127.0.0.1",
        ),
    },
    Case {
        name: "sidecar_without_trust_domain_check_accepts_another_trust_domain",
        breakage: |c| c.sidecar_trust_domain_check = false,
        scenario: "attack_mesh_transport::foreign_trust_domain_is_rejected",
        expect: Expect::FailsWith(
            "connection: expected the connection rejected (closed, reset or TLS handshake failed) without a response, actual answered 200",
        ),
    },
    Case {
        name: "sign_out_without_backend_logout_leaves_the_idp_session",
        breakage: |c| c.backend_logout = false,
        scenario: "attack_session_lifecycle::sign_out_ends_the_idp_session",
        expect: Expect::FailsWith("login form: expected"),
    },
    Case {
        name: "sessions_in_the_cookie_survive_sign_out_in_a_copy",
        breakage: |c| c.session_store = SessionStore::Cookie,
        scenario: "attack_session_lifecycle::copied_session_cookie_is_dead_after_sign_out",
        expect: Expect::FailsWith("sign-in page: expected a sign-in page"),
    },
    Case {
        name: "sessions_in_the_cookie_make_it_kilobytes_not_a_ticket",
        breakage: |c| c.session_store = SessionStore::Cookie,
        scenario: "seed002_redis_sessions::session_cookie_is_a_ticket",
        expect: Expect::FailsWith("cookie _oauth2_proxy size: expected at most 512 bytes"),
    },
    Case {
        // oauth2-proxy's default cookie_secure on seed 001's plain-HTTP app: a browser drops
        // the CSRF cookie, and the sign-in cannot complete.
        name: "secure_cookies_on_a_plain_http_app_break_the_sign_in",
        breakage: |c| c.secure_session_cookie = true,
        scenario: "seed001_any_idp::browser_login",
        expect: Expect::FailsWith(
            "the sign-in cannot complete over plain HTTP: the server set cookie _oauth2_proxy_csrf with the Secure attribute",
        ),
    },
    Case {
        name: "role_missing_from_the_custom_claim_keeps_the_user_out",
        breakage: |c| c.custom_claim_realm_roles = false,
        scenario: "seed002_role_claims::roles_claim_carries_realm_and_client_roles",
        expect: Expect::FailsWith("status: expected 200, actual 403"),
    },
    Case {
        name: "no_roles_claim_policy_lets_a_user_without_roles_in",
        breakage: |c| c.gateway_role_claim_policy = false,
        scenario: "seed002_role_claims::user_without_the_roles_is_refused_by_the_policy",
        expect: Expect::FailsWith("status: expected 403, actual 200"),
    },
    Case {
        // Seed 002's own warning: the IdP on the app's host but /auth not exempted from
        // ext_authz. The browser is sent to sign in again by its own login page.
        name: "idp_on_the_app_host_not_exempted_loops_the_sign_in",
        breakage: |c| c.idp_path_exempt = false,
        scenario: "seed002_idp_on_app_host::sign_in_at_the_idp_on_the_app_host",
        expect: Expect::FailsWith("the IdP's own pages are behind the auth check"),
    },
    Case {
        // The client-role mapper's "Client ID" picked wrong: the claim lacks the app's role.
        name: "client_role_mapper_on_another_client_leaves_the_app_role_out",
        breakage: |c| c.client_role_mapper_wrong_client = true,
        scenario: "seed002_role_claims::roles_claim_carries_the_client_role",
        expect: Expect::FailsWith("claim meshauth_roles: expected containing \"app-reader\""),
    },
    Case {
        // A cookie secret made anew at each start: the ticket in the cookie no longer opens
        // the session kept in redis.
        name: "cookie_secret_made_at_each_start_loses_every_session_on_restart",
        breakage: |c| c.cookie_secret_per_start = true,
        scenario: "seed002_redis_sessions::session_survives_an_auth_service_restart",
        expect: Expect::FailsWith("status: expected 200"),
    },
    Case {
        // `redirectUris: ["*"]`, a development setting left in: codes go anywhere.
        name: "idp_client_accepting_any_redirect_uri_accepts_a_foreign_host",
        breakage: |c| c.client_any_redirect_uri = true,
        scenario: "attack_redirects_and_flow::idp_refuses_foreign_redirect_uri",
        expect: Expect::FailsWith("login form: expected no login form"),
    },
    Case {
        name: "idp_client_accepting_any_redirect_uri_accepts_the_callback_extended",
        breakage: |c| c.client_any_redirect_uri = true,
        scenario: "attack_redirects_and_flow::idp_refuses_callback_prefix_extension",
        expect: Expect::FailsWith("login form: expected no login form"),
    },
    Case {
        // `notPaths: ["/auth*"]`: a prefix match wider than the IdP exempts /authx… on the app.
        name: "idp_exempt_without_its_slash_lets_near_misses_reach_the_app",
        breakage: |c| c.idp_path_exempt_without_slash = true,
        scenario: "seed002_idp_on_app_host::idp_pages_open_apps_closed",
        expect: Expect::FailsWith("[critical finding] GET /authx/anything"),
    },
    Case {
        // The RequestAuthentication still names the issuer from before Keycloak moved (its
        // pre-17 /auth prefix): every valid token is refused.
        name: "jwt_rule_for_the_issuer_before_the_move_refuses_valid_tokens",
        breakage: |c| c.jwt_issuer_mismatch = true,
        scenario: "seed003_origin_auth::legacy_auth_path_issuer",
        expect: Expect::FailsWith("status: expected 200"),
    },
    Case {
        // The IdP's plain-HTTP listener routes only Keycloak's paths to it: every other path
        // there reaches the app's catch-all route, on a port exempt from ext_authz.
        name: "idp_listener_routing_only_its_paths_opens_the_app_on_it",
        breakage: |c| c.idp_listener_routes_by_path = true,
        scenario: "attack_unauthenticated_reach::other_gateway_listeners",
        expect: Expect::FailsWith("[critical finding] GET http://127.0.0.1:"),
    },
    Case {
        // oauth2-proxy's default: the session is never re-checked at the IdP, so a user
        // signed out everywhere by an administrator keeps access until the cookie expires.
        name: "no_session_refresh_keeps_a_revoked_user_in",
        breakage: |c| c.session_refresh_seconds = None,
        scenario: "attack_session_lifecycle::session_ended_at_the_idp_ends_access",
        expect: Expect::FailsWith("sign-in page: expected a sign-in page"),
    },
    Case {
        // Nor is a disabled account noticed: the session outlives it.
        name: "no_session_refresh_keeps_a_disabled_user_in",
        breakage: |c| c.session_refresh_seconds = None,
        scenario: "attack_session_lifecycle::user_disabled_at_the_idp_loses_access",
        expect: Expect::FailsWith("sign-in page: expected a sign-in page"),
    },
    Case {
        // Without a refresh the session's tokens are forwarded as they were at sign-in, long
        // after they expired.
        name: "no_session_refresh_forwards_expired_tokens",
        breakage: |c| c.session_refresh_seconds = None,
        scenario: "attack_session_lifecycle::expired_tokens_are_never_forwarded",
        expect: Expect::FailsWith("the app received expired tokens in Authorization"),
    },
    Case {
        // The same, read from oauth2-proxy's configuration.
        name: "config_audit_finds_sessions_never_rechecked",
        breakage: |c| c.session_refresh_seconds = None,
        scenario: "attack_configuration::deployment_configuration",
        expect: Expect::FailsWith(
            "[medium finding] oauth2-proxy.cfg: session re-checked at the IdP",
        ),
    },
    Case {
        // The client issues no refresh tokens: oauth2-proxy's cookie_refresh has nothing to
        // refresh with and never re-checks the session.
        name: "client_without_refresh_tokens_never_rechecks_the_session",
        breakage: |c| c.client_refresh_tokens = false,
        scenario: "attack_session_lifecycle::session_refresh_keeps_the_user_in",
        expect: Expect::FailsWith("sets cookie _oauth2_proxy: expected the response sets"),
    },
    Case {
        // A RequestAuthentication authenticates a token when there is one; with no auth proxy
        // and no AuthorizationPolicy, a request without a token goes through.
        name: "request_authentication_alone_lets_tokenless_requests_through",
        breakage: |c| c.ext_authz = false,
        scenario: "seed003_origin_auth::missing_bearer_is_rejected",
        expect: Expect::FailsWith("status: expected one of 302, 401, 403, actual 200 at https:"),
    },
    Case {
        // Seed 003's v1alpha1 Policy translated without its required origin: STRICT and a
        // RequestAuthentication on the sidecar, but no requestPrincipals rule.
        name: "origin_translated_without_request_principals_lets_tokenless_requests_through",
        breakage: |c| {
            c.ext_authz = false;
            c.request_authentication = false;
            c.sidecar = SidecarPolicy {
                peer_authentication: PeerAuthenticationMode::Strict,
                request_authentication: true,
                authorization: AuthorizationRequirement::None,
            };
        },
        scenario: "seed003_origin_auth::missing_bearer_is_rejected",
        expect: Expect::FailsWith("status: expected one of 302, 401, 403, actual 200 at https:"),
    },
    Case {
        name: "policy_written_for_the_first_app_leaves_the_second_open",
        breakage: |c| c.second_app_exempt = true,
        scenario: "seed002_many_apps::second_app_is_protected_too",
        expect: Expect::FailsWith("sign-in page: expected a sign-in page"),
    },
    Case {
        // Keycloak's audience-resolve mapper adds oauth2proxy to the aud of every full-scope
        // client's tokens for users holding oauth2proxy's roles: `audiences` stops telling them apart.
        name: "app_roles_on_the_sign_in_client_give_other_clients_its_audience",
        breakage: |c| c.app_roles_on_the_sign_in_client = true,
        scenario: "attack_bearer_tokens::gateway_bearer_matrix_someone_elses_token",
        expect: Expect::FailsWith("other_client bearer is refused: expected refused"),
    },
    Case {
        name: "brokering_with_a_wrong_upstream_client_secret_fails_the_sign_in",
        breakage: |c| c.broker_wrong_client_secret = true,
        scenario: "seed002_identity_brokering::brokered_login_reaches_the_app_as_the_upstream_user",
        expect: Expect::FailsWith("status: expected 200"),
    },
    Case {
        name: "config_audit_finds_ext_authz_failing_open",
        breakage: |c| c.ext_authz_fail_open = true,
        scenario: "attack_configuration::deployment_configuration",
        expect: Expect::FailsWith(
            "[critical finding] istio/policy.yaml + istio/mesh.yaml: ext_authz fails open",
        ),
    },
    Case {
        name: "config_audit_finds_open_admission_and_no_audiences",
        breakage: |c| {
            c.admission_role = false;
            c.jwt_audiences = false;
        },
        scenario: "attack_configuration::deployment_configuration",
        expect: Expect::FailsWith("[medium finding] oauth2-proxy.cfg: admission"),
    },
    Case {
        name: "config_audit_finds_query_strings_in_access_logs",
        breakage: |c| c.log_query_strings = true,
        scenario: "attack_configuration::deployment_configuration",
        expect: Expect::FailsWith(
            "[medium finding] istio/policy.yaml + istio/mesh.yaml: query strings in access logs",
        ),
    },
    Case {
        name: "skipped_sign_in_page_still_signs_in",
        breakage: |c| c.skip_provider_button = true,
        scenario: "seed000_browser_sso::browser_login",
        expect: Expect::Passes,
    },
    Case {
        name: "skipped_sign_in_page_still_requires_sign_in",
        breakage: |c| c.skip_provider_button = true,
        scenario: "seed000_browser_sso::no_session_is_sent_to_sign_in",
        expect: Expect::Passes,
    },
];

struct Fixture {
    stack: LocalStack,
    engine: Engine,
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // Cases reconfigure one shared stack, so they run one at a time.
    args.test_threads = Some(1);
    let catalog = Arc::new(Catalog::builtin());
    let selected = CASES
        .iter()
        .any(|case| common::selected_by(&args, case.name));
    if args.list || !selected {
        let trials = CASES
            .iter()
            .map(|case| Trial::test(case.name, || Ok(())))
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }

    let runtime = Arc::new(common::runtime());
    let redactor = Redactor::new();
    let fixture = common::start_stack(&runtime, "faults", StackConfig::default(), &redactor)
        .and_then(|stack| {
            let engine = Engine::new(stack.endpoints().clone(), redactor.clone())
                .map_err(|e| e.to_string())?;
            Ok(Fixture { stack, engine })
        });
    let fixture = Arc::new(Mutex::new(fixture));
    let trials = CASES
        .iter()
        .map(|case| {
            let (catalog, fixture, runtime) = (
                Arc::clone(&catalog),
                Arc::clone(&fixture),
                Arc::clone(&runtime),
            );
            Trial::test(case.name, move || {
                run_case(case, &catalog, &fixture, &runtime)
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(fixture);
    conclusion.exit_code()
}

fn run_case(
    case: &Case,
    catalog: &Catalog,
    fixture: &Mutex<Result<Fixture, String>>,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failed> {
    let mut guard = fixture
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let fixture = guard
        .as_mut()
        .map_err(|e| Failed::from(format!("the local stack did not start:\n{e}")))?;
    let (suite, scenario) = find(catalog, case.scenario)?;
    let mut config = StackConfig::default().with_profile(&scenario.profile(suite));
    (case.breakage)(&mut config);
    runtime
        .block_on(fixture.stack.reconfigure(config))
        .map_err(|e| format!("reconfiguring the stack failed: {e}"))?;
    // A profile may move the app or the IdP (seed 001's plain-HTTP app, another IdP).
    let moved = fixture.engine.for_target(&fixture.stack)?;
    let engine = moved.as_ref().unwrap_or(&fixture.engine);
    let mut transcript = common::Transcript::new();
    let outcome =
        runtime.block_on(engine.run_scenario(suite, scenario, &mut fixture.stack, &mut transcript));
    match (&case.expect, outcome.verdict) {
        (Expect::Passes, Verdict::Pass) => Ok(()),
        (Expect::Passes, Verdict::Fail) => Err(format!(
            "{} should pass with this variant but failed:\n{}",
            case.scenario,
            transcript.text()
        )
        .into()),
        (Expect::FailsWith(_), Verdict::Pass) => Err(format!(
            "{} PASSED against a broken stack: the check cannot catch this breakage",
            case.scenario
        )
        .into()),
        (Expect::FailsWith(needle), Verdict::Fail) => {
            if outcome.failures.iter().any(|f| f.contains(needle)) {
                Ok(())
            } else {
                Err(format!(
                    "{} failed, but not with the expected message {needle:?}; it said:\n{}",
                    case.scenario,
                    outcome.failures.join("\n")
                )
                .into())
            }
        }
    }
}

fn find<'a>(catalog: &'a Catalog, name: &str) -> Result<(&'a Suite, &'a Scenario), Failed> {
    catalog
        .suites
        .iter()
        .flat_map(|suite| suite.scenarios.iter().map(move |s| (suite, s)))
        .find(|(suite, s)| qualified_name(suite, s) == name)
        .ok_or_else(|| format!("no scenario {name} in the catalog").into())
}

/// A directory of Istio YAML under tests/data/istio-faults/, laid over the reference's objects.
fn istio_fault(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/istio-faults")
        .join(name)
}
