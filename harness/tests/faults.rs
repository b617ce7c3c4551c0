//! Proof that the checks can fail: the stack is broken on purpose, one realistic mistake at a
//! time (an Istio object, an oauth2-proxy setting, a realm setting), and every scenario that
//! guards against it must go red with a message naming the cause. Every scenario of the
//! catalog is turned red by at least one row (`every_scenario_has_a_fault_row`), and each row
//! first sees its scenarios green on the reference, so a red row proves the breakage, not a
//! scenario that never passes. Variants (other themes, no sign-in page) must stay green.
//! One stack, reconfigured in turn; only the components a change affects are restarted, and
//! the runs of all rows are ordered to restart as little as possible.

mod common;

use std::collections::{BTreeMap, BTreeSet};
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

/// A scenario a breakage must turn red, and text its failure must contain: specific to the
/// breakage, so that an unrelated red does not count.
struct Red {
    scenario: &'static str,
    says: &'static str,
}

const fn red(scenario: &'static str, says: &'static str) -> Red {
    Red { scenario, says }
}

struct Case {
    name: &'static str,
    /// How the stack differs from what each scenario's `stack:` profile asks for.
    breakage: fn(&mut StackConfig),
    /// A scenario may be listed more than once, with one text each.
    red: &'static [Red],
}

/// A way the stack may differ that its scenarios must still pass.
struct Variant {
    name: &'static str,
    change: fn(&mut StackConfig),
    green: &'static [&'static str],
}

const VARIANTS: &[Variant] = &[
    Variant {
        // PERMISSIVE with an AuthorizationPolicy admitting the gateway's principal only: a
        // plaintext caller has no principal, so RBAC refuses it where STRICT would have
        // ended its connection. Kept from the app either way.
        name: "permissive_sidecar_admitting_only_the_gateway_keeps_everyone_else_out",
        change: |c| {
            c.sidecar = SidecarPolicy {
                peer_authentication: PeerAuthenticationMode::Permissive,
                ..SidecarPolicy::reference()
            }
        },
        green: &[
            "attack_around_the_gateway::mesh_workload_cannot_skip_the_gateway",
            "attack_around_the_gateway::plaintext_caller_cannot_skip_the_gateway",
        ],
    },
    Variant {
        name: "request_authentication_off_is_masked_by_oauth2_proxy_at_the_gateway",
        // Istio runs CUSTOM (oauth2-proxy, which verifies bearer tokens itself and replaces
        // the client's Authorization with the session's token) before jwt_authn: without the
        // gateway's RequestAuthentication every wrong token is still refused. The second line
        // is not observable from outside at this deployment; the sidecar's is (the mesh
        // matrix's jwt_authn rows).
        change: |c| c.request_authentication = false,
        green: &[
            "attack_bearer_tokens::gateway_bearer_matrix",
            "attack_bearer_tokens::gateway_bearer_matrix_one_claim_wrong",
        ],
    },
    Variant {
        name: "legacy_login_theme_signs_in_and_shows_the_wrong_password_error",
        change: |c| c.login_theme = LoginTheme::Legacy,
        green: &[
            "seed000_browser_sso::browser_login",
            "seed000_browser_sso::wrong_password_is_rejected",
        ],
    },
    Variant {
        name: "skipped_sign_in_page_still_signs_in_and_requires_sign_in",
        change: |c| c.skip_provider_button = true,
        green: &[
            "seed000_browser_sso::browser_login",
            "seed000_browser_sso::no_session_is_sent_to_sign_in",
        ],
    },
];

/// Ordered so that cases sharing a configuration are adjacent (fewer restarts).
const CASES: &[Case] = &[
    Case {
        name: "oauth2_proxy_not_forwarding_authorization",
        breakage: |c| c.forward_authorization = false,
        red: &[red(
            "seed000_browser_sso::browser_login",
            "app received Authorization: expected Authorization among the headers",
        )],
    },
    Case {
        // oauth2-proxy's cookie_secure = false: both of its cookies, session and CSRF.
        name: "cookies_without_secure_flag",
        breakage: |c| c.secure_session_cookie = false,
        red: &[
            red(
                "seed000_browser_sso::browser_login",
                "cookie _oauth2_proxy Secure: expected set, actual not set",
            ),
            red(
                "attack_cookies::csrf_cookie_attributes",
                "cookie _oauth2_proxy_csrf Secure: expected set, actual not set",
            ),
        ],
    },
    Case {
        // No CUSTOM AuthorizationPolicy at the gateway: nothing asks oauth2-proxy, the app is
        // served to everyone. Scenarios whose own claim no setting can break (the IdP refusing
        // a wrong password, oauth2-proxy refusing an edited cookie or a replayed code) go red
        // here on their control: the sign-in they start from is never asked for.
        name: "ext_authz_off_serves_the_app_without_sign_in",
        breakage: |c| c.ext_authz = false,
        red: &[
            red(
                "seed000_browser_sso::no_session_is_sent_to_sign_in",
                "sign-in page: expected a sign-in page",
            ),
            red(
                "seed000_browser_sso::idp_open_on_plain_port_app_protected",
                "sign-in page: expected a sign-in page",
            ),
            red(
                "seed001_any_idp::no_session_is_sent_to_sign_in",
                "sign-in page: expected a sign-in page",
            ),
            red(
                "attack_unauthenticated_reach::path_normalisation_variants",
                "GET /./anything: expected not answered by the app without a session, actual 200 from the app: the app echoed this request's nonce",
            ),
            red(
                "attack_unauthenticated_reach::smuggling_toward_the_check",
                "GET /anything [User-Agent: kube-probe/1.34]: expected not answered by the app without a session, actual 200 from the app: the app echoed this request's nonce",
            ),
            // A RequestAuthentication authenticates a token when there is one; with no auth
            // proxy and no AuthorizationPolicy, a request without a token goes through.
            red(
                "seed003_origin_auth::missing_bearer_is_rejected",
                "status: expected one of 302, 401, 403, actual 200 at https:",
            ),
            red(
                "attack_fail_closed::session_store_stopped",
                "without a session the request reached the app",
            ),
            red(
                "attack_fail_closed::idp_hung",
                "GET /headers: expected not answered by the app without a session, actual 200 from the app",
            ),
            red(
                "seed000_browser_sso::wrong_password_is_rejected",
                "no login form on https://127.0.0.1:",
            ),
            red(
                "seed001_any_idp::wrong_password_is_refused",
                "no login form on http://127.0.0.1:",
            ),
            red(
                "attack_cookies::edited_session_cookie_is_refused",
                "no login form on https://127.0.0.1:",
            ),
            red(
                "attack_cookies::session_cookie_signed_with_another_secret_is_refused",
                "no login form on https://127.0.0.1:",
            ),
            red(
                "attack_cookies::unsigned_session_cookie_is_refused",
                "no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::callback_with_tampered_state_is_refused",
                "sign-in page: expected a sign-in page",
            ),
            red(
                "attack_redirects_and_flow::authorization_code_used_twice_is_refused",
                "X-Auth-Request-User: expected X-Auth-Request-User among the headers the app received",
            ),
        ],
    },
    Case {
        // Seed 003's gateway without its RequestAuthentication: nothing checks the token.
        name: "no_request_authentication_and_no_ext_authz_let_any_token_in",
        breakage: |c| {
            c.ext_authz = false;
            c.request_authentication = false;
        },
        red: &[
            red(
                "seed003_origin_auth::forged_bearer_is_rejected",
                "status: expected one of 401, 403, actual 200 at https://127.0.0.1:",
            ),
            red(
                "seed003_origin_auth::garbage_bearer_is_rejected",
                "status: expected one of 401, 403, actual 200 at https://127.0.0.1:",
            ),
        ],
    },
    Case {
        // A user's mesh config copying Istio's ext-authz sample list of headers, without
        // `cookie`: every check is anonymous, the session the callback set never counts.
        name: "ext_authz_check_without_the_cookie_never_sees_the_session",
        breakage: |c| c.ext_authz_check_cookie = false,
        red: &[red(
            "seed000_browser_sso::session_cookie_is_reused",
            "status: expected 200, actual 403 at https://127.0.0.1:",
        )],
    },
    Case {
        // Also the control step of the hostile-IdP scenarios whose refusal no oauth2-proxy
        // setting can switch off (go-oidc always checks expiry and signature): no sign-in
        // succeeds after the IdP is honest again.
        name: "wrong_client_secret_fails_the_callback",
        breakage: |c| c.wrong_client_secret = true,
        red: &[
            red(
                "seed000_browser_sso::browser_login",
                "status: expected 200, actual 500 at https://127.0.0.1:",
            ),
            red(
                "attack_hostile_idp::expired_id_token_is_refused",
                "status: expected 200, actual 500 at https://127.0.0.1:",
            ),
            red(
                "attack_hostile_idp::unsigned_id_token_is_refused",
                "status: expected 200, actual 500 at https://127.0.0.1:",
            ),
            red(
                "attack_hostile_idp::id_token_signed_with_a_foreign_key_is_refused",
                "status: expected 200, actual 500 at https://127.0.0.1:",
            ),
        ],
    },
    Case {
        // oauth2-proxy's default: `insecure_oidc_skip_nonce` is true unless set.
        name: "oauth2_proxy_skipping_the_nonce_takes_an_injected_id_token",
        breakage: |c| c.oidc_nonce_checked = false,
        red: &[red(
            "attack_hostile_idp::id_token_with_a_wrong_nonce_is_refused",
            "cookie _oauth2_proxy: expected no _oauth2_proxy cookie for the app, actual present",
        )],
    },
    Case {
        name: "oauth2_proxy_skipping_issuer_verification_takes_another_issuers_id_token",
        breakage: |c| c.oidc_issuer_unchecked = true,
        red: &[red(
            "attack_hostile_idp::id_token_from_another_issuer_is_refused",
            "cookie _oauth2_proxy: expected no _oauth2_proxy cookie for the app, actual present",
        )],
    },
    Case {
        name: "oauth2_proxy_extra_audience_takes_another_clients_id_token",
        breakage: |c| c.oidc_extra_audience = Some("another-client"),
        red: &[red(
            "attack_hostile_idp::id_token_for_another_client_is_refused",
            "cookie _oauth2_proxy: expected no _oauth2_proxy cookie for the app, actual present",
        )],
    },
    Case {
        // The sign-in client with direct access grants off (Keycloak's default for new
        // clients): seed 003's password grant is refused as unauthorized, not for the password.
        name: "client_without_direct_access_grants_refuses_every_password_grant",
        breakage: |c| c.client_direct_access_grants = false,
        red: &[red(
            "seed003_origin_auth::wrong_password_grant_is_refused",
            "body: expected containing \"invalid_grant\"",
        )],
    },
    Case {
        // The realm's security headers cleared so that a portal can embed the login page.
        name: "realm_security_headers_cleared_let_any_site_frame_the_login_page",
        breakage: |c| c.realm_login_page_frameable = true,
        red: &[red(
            "attack_browser_hardening::login_page_not_frameable",
            "actual neither Content-Security-Policy frame-ancestors nor X-Frame-Options",
        )],
    },
    Case {
        // STRICT mTLS on the app's sidecar, but no AuthorizationPolicy naming who may call
        // it: every workload of the mesh reaches the app around the gateway's sign-in.
        name: "app_sidecar_admitting_every_mesh_workload",
        breakage: |c| c.sidecar.authorization = AuthorizationRequirement::None,
        red: &[red(
            "attack_around_the_gateway::mesh_workload_cannot_skip_the_gateway",
            "actual answered 200 at http://httpbin.foo.svc.cluster.local",
        )],
    },
    Case {
        // Nothing on the app's sidecar, as the write-ups leave it: Istio's PERMISSIVE
        // default takes plaintext from any pod, and every caller is admitted.
        name: "app_sidecar_left_at_istios_permissive_default",
        breakage: |c| {
            c.sidecar = SidecarPolicy {
                peer_authentication: PeerAuthenticationMode::Permissive,
                ..SidecarPolicy::default()
            }
        },
        red: &[
            red(
                "attack_around_the_gateway::mesh_workload_cannot_skip_the_gateway",
                "actual answered 200 at http://httpbin.foo.svc.cluster.local",
            ),
            red(
                "attack_around_the_gateway::plaintext_caller_cannot_skip_the_gateway",
                "actual answered 200 at http://127.0.0.11",
            ),
        ],
    },
    Case {
        // "Everyone from the upstream IdP gets the app's role": a Hardcoded Role mapper on
        // the identity provider, as brokering set-ups start out.
        name: "broker_gives_every_upstream_user_the_role",
        breakage: |c| c.broker_role_from_upstream_group = false,
        red: &[red(
            "seed002_identity_brokering::upstream_user_outside_the_group_is_refused",
            "status: expected 403, actual 200",
        )],
    },
    Case {
        // All of Keycloak on the gateway's IdP listener, as seed 000 publishes it: the admin
        // console and admin REST API come with it.
        name: "keycloak_published_whole_with_its_admin_console",
        breakage: |c| c.idp_admin_published = true,
        red: &[
            red(
                "attack_idp_exposure::admin_console_not_published",
                "302 redirect to Keycloak's admin console",
            ),
            red(
                "attack_idp_exposure::admin_console_not_published",
                "401 from Keycloak's admin REST API",
            ),
            red(
                "attack_idp_exposure::admin_console_not_published",
                "200: Keycloak's admin console page",
            ),
        ],
    },
    Case {
        // The admin console kept off by a route for "/admin/" only: "/admin" slips past.
        name: "keycloak_admin_blocked_with_its_slash_only",
        breakage: |c| {
            c.istio_overlay = Some(istio_fault("virtualservice-admin-blocked-with-slash-only"))
        },
        red: &[red(
            "attack_idp_exposure::admin_console_not_published",
            "/admin: expected an answer that is not Keycloak's administration (console, its redirect, or admin API), actual 302 redirect",
        )],
    },
    Case {
        // Health checkers from the pod network let through at the auth proxy, with the
        // gateway passing the client's own X-Real-IP into the check (as Istio's provider does
        // with x-real-ip in includeRequestHeadersInCheck and nothing removing the client's).
        name: "auth_proxy_trusting_the_pod_network_takes_the_clients_x_real_ip",
        breakage: |c| {
            c.strip_identity_headers = false;
            c.oauth2_proxy_trusted_ips = vec!["10.0.0.0/8"];
        },
        red: &[red(
            "attack_unauthenticated_reach::forwarded_headers_toward_the_check",
            "[X-Real-IP: 10.0.0.1]",
        )],
    },
    Case {
        // The health path exempted at the auth proxy instead of the gateway, with the client's
        // own X-Forwarded-Uri passed into the check.
        name: "auth_proxy_exempting_health_takes_the_clients_x_forwarded_uri",
        breakage: |c| {
            c.strip_identity_headers = false;
            c.oauth2_proxy_skip_auth_routes = vec!["GET=^/health$"];
        },
        red: &[red(
            "attack_unauthenticated_reach::forwarded_headers_toward_the_check",
            "[X-Forwarded-Uri: /health]",
        )],
    },
    Case {
        // Set for a cloud load balancer that forwards TCP and writes no X-Forwarded-For.
        name: "gateway_trusting_two_proxies_takes_the_clients_own_address",
        breakage: |c| c.gateway_trusted_proxies = 2,
        red: &[red(
            "attack_forged_identity::forged_client_address",
            "the app received the forged X-Envoy-External-Address: 198.",
        )],
    },
    Case {
        // Keycloak's default: Revoke Refresh Token off.
        name: "realm_refresh_tokens_reusable",
        breakage: |c| c.realm_refresh_token_reuse = true,
        red: &[red(
            "attack_session_lifecycle::refresh_token_redeemed_once",
            "simultaneous reuse: expected at most one of two simultaneous redemptions succeeds, actual 2 of 2 succeeded",
        )],
    },
    Case {
        // Lengthened to a day to stop users seeing refresh errors; Keycloak caps a token at
        // the SSO session's maximum (10 h by default), which is what the app then receives.
        // The cap counts from the session's start, a second before the token's iat when the
        // code exchange crosses a second boundary: 36000 s or 35999 s.
        name: "realm_access_tokens_valid_for_a_day",
        breakage: |c| c.access_token_lifespan_seconds = 86_400,
        red: &[
            red(
                "attack_session_lifecycle::issued_tokens_are_short_lived",
                "lifetime: expected exp - iat at most 3600s (1 h), actual 3",
            ),
            red(
                "attack_session_lifecycle::issued_tokens_are_short_lived",
                "10 h): a copied token works that long",
            ),
        ],
    },
    Case {
        name: "role_mapper_removed_drops_the_roles_claim",
        breakage: |c| c.role_mapper = false,
        red: &[
            red(
                "seed000_browser_sso::browser_login",
                "claim realm_roles: expected containing \"sso-user\", actual missing",
            ),
            red(
                "seed003_origin_auth::direct_grant_bearer",
                "claim realm_roles: expected containing \"sso-user\", actual missing",
            ),
        ],
    },
    Case {
        name: "audience_mapper_removed_drops_the_apps_audience",
        breakage: |c| c.audience_mapper = false,
        red: &[
            // The gateway's RequestAuthentication (audiences: the app's client) also guards
            // the IdP's listener, where oauth2-proxy fetches the user's profile with that
            // token: the callback fails before the token reaches the app.
            red(
                "seed000_browser_sso::browser_login",
                "status: expected 200, actual 500 at https://127.0.0.1:",
            ),
            // Without the mapper aud holds only what Keycloak's audience-resolve adds (the
            // roles client, `httpbin`), never the app's client.
            red(
                "seed003_origin_auth::direct_grant_bearer",
                "claim aud: expected containing \"oauth2proxy\", actual",
            ),
        ],
    },
    // httpbin's sidecar rendered differently from what the matrix cell's profile says, one
    // mistake each, every cell it shows in.
    Case {
        // The namespace left PERMISSIVE (migration mode) where the cell needs STRICT, or
        // PERMISSIVE where DISABLE is meant (sleep's mTLS then gets in).
        name: "sidecar_permissive_lets_plaintext_callers_in",
        breakage: |c| c.sidecar.peer_authentication = PeerAuthenticationMode::Permissive,
        red: &[
            red(
                "seed003_mesh_matrix::strict_ra_rp__outside_with_valid_jwt",
                "connection: expected the connection rejected (closed, reset or TLS handshake failed) without a response, actual answered 200 at http://127.0.0.11:",
            ),
            red(
                "seed003_mesh_matrix::strict_ra_rp__outside_without_jwt",
                "connection: expected the connection rejected (closed, reset or TLS handshake failed) without a response, actual answered 403 at http://127.0.0.11:",
            ),
            red(
                "seed003_mesh_matrix::strict_ra__outside_with_valid_jwt",
                "connection: expected the connection rejected (closed, reset or TLS handshake failed) without a response, actual answered 200 at http://127.0.0.11:",
            ),
            red(
                "seed003_mesh_matrix::strict_ra__outside_without_jwt",
                "connection: expected the connection rejected (closed, reset or TLS handshake failed) without a response, actual answered 200 at http://127.0.0.11:",
            ),
            red(
                "seed003_mesh_matrix::strict_peer_principal__outside_with_valid_jwt",
                "connection: expected the connection rejected (closed, reset or TLS handshake failed) without a response, actual answered 403 at http://127.0.0.11:",
            ),
            red(
                "seed003_mesh_matrix::strict_peer_principal__outside_without_jwt",
                "connection: expected the connection rejected (closed, reset or TLS handshake failed) without a response, actual answered 403 at http://127.0.0.11:",
            ),
            red(
                "seed003_mesh_matrix::disable_ra__sleep_without_jwt",
                "status: expected 503, actual 200 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::disable_ra__sleep_with_valid_jwt",
                "status: expected 503, actual 200 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::disable_ra__sleep_with_forged_jwt",
                "status: expected 503, actual 401 at http://httpbin.foo.svc.cluster.local:",
            ),
        ],
    },
    Case {
        // STRICT where the cell means PERMISSIVE or DISABLE: callers outside the mesh, meant
        // to be let in, are cut off at the handshake.
        name: "sidecar_strict_rejects_the_plaintext_callers_it_should_take",
        breakage: |c| c.sidecar.peer_authentication = PeerAuthenticationMode::Strict,
        red: &[
            red(
                "seed003_mesh_matrix::disable_ra__outside_without_jwt",
                "connection: expected an HTTP response, actual rejected (",
            ),
            red(
                "seed003_mesh_matrix::permissive_ra__outside_without_jwt",
                "connection: expected an HTTP response, actual rejected (",
            ),
        ],
    },
    Case {
        // The ALLOW policy requiring a request principal forgotten.
        name: "sidecar_without_rbac_lets_callers_in_without_a_jwt",
        breakage: |c| c.sidecar.authorization = AuthorizationRequirement::None,
        red: &[
            red(
                "seed003_mesh_matrix::strict_ra_rp__sleep_without_jwt",
                "status: expected 403, actual 200 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::permissive_ra_rp__sleep_without_jwt",
                "status: expected 403, actual 200 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::permissive_ra_rp__outside_without_jwt",
                "status: expected 403, actual 200 at http://127.0.0.11:",
            ),
        ],
    },
    Case {
        // The RequestAuthentication forgotten at the sidecar: a forged token is nobody's
        // business but RBAC's, which either lets it in or refuses it as merely missing.
        name: "sidecar_without_jwt_authn_never_refuses_a_forged_jwt",
        breakage: |c| c.sidecar.request_authentication = false,
        red: &[
            red(
                "seed003_mesh_matrix::strict_ra__sleep_with_forged_jwt",
                "status: expected 401, actual 200 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::permissive_ra__sleep_with_forged_jwt",
                "status: expected 401, actual 200 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::strict_ra_rp__sleep_with_forged_jwt",
                "status: expected 401, actual 403 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::permissive_ra_rp__sleep_with_forged_jwt",
                "status: expected 401, actual 403 at http://httpbin.foo.svc.cluster.local:",
            ),
        ],
    },
    Case {
        // An ALLOW policy naming another workload's service account: sleep is refused.
        name: "sidecar_rbac_for_another_workload_refuses_sleep",
        breakage: |c| {
            c.sidecar.authorization =
                AuthorizationRequirement::PeerPrincipal("cluster.local/ns/foo/sa/other".into())
        },
        red: &[
            red(
                "seed003_mesh_matrix::strict_peer_principal__sleep_without_jwt",
                "status: expected 200, actual 403 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::strict_peer_principal__sleep_with_valid_jwt",
                "status: expected 200, actual 403 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::strict_peer_principal__sleep_with_forged_jwt",
                "status: expected 200, actual 403 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::strict_ra__sleep_without_jwt",
                "status: expected 200, actual 403 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::permissive_ra__sleep_without_jwt",
                "status: expected 200, actual 403 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "attack_mesh_transport::mesh_caller_is_accepted",
                "status: expected 200, actual 403 at http://httpbin.foo.svc.cluster.local:",
            ),
        ],
    },
    Case {
        // The RequestAuthentication still names the issuer from before Keycloak moved (its
        // pre-17 /auth prefix): every valid token is refused, at the gateway and the sidecar.
        name: "jwt_rule_for_the_issuer_before_the_move_refuses_valid_tokens",
        breakage: |c| c.jwt_issuer_mismatch = true,
        red: &[
            red(
                "seed003_origin_auth::legacy_auth_path_issuer",
                "status: expected 200",
            ),
            red(
                "seed003_mesh_matrix::strict_ra_rp__sleep_with_valid_jwt",
                "status: expected 200, actual 401 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::strict_ra__sleep_with_valid_jwt",
                "status: expected 200, actual 401 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::permissive_ra__sleep_with_valid_jwt",
                "status: expected 200, actual 401 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::permissive_ra_rp__sleep_with_valid_jwt",
                "status: expected 200, actual 401 at http://httpbin.foo.svc.cluster.local:",
            ),
            red(
                "seed003_mesh_matrix::permissive_ra__outside_with_valid_jwt",
                "status: expected 200, actual 401 at http://127.0.0.11:",
            ),
            red(
                "seed003_mesh_matrix::permissive_ra_rp__outside_with_valid_jwt",
                "status: expected 200, actual 401 at http://127.0.0.11:",
            ),
            red(
                "seed003_mesh_matrix::disable_ra__outside_with_valid_jwt",
                "status: expected 200, actual 401 at http://127.0.0.11:",
            ),
        ],
    },
    // Istio objects of the user's own (--istio DIR overlays, tests/data/istio-faults/): one
    // realistic mistake per kind, translated by Istio's generator like any deployment's.
    Case {
        name: "istio_gateway_tls_opened_to_legacy_clients",
        breakage: |c| c.istio_overlay = Some(istio_fault("gateway-legacy-tls")),
        red: &[
            red(
                "attack_browser_hardening::legacy_tls_refused",
                "ServerHello: TLS 1.0 with ECDHE-ECDSA-AES128-SHA: the listener speaks TLS 1.0",
            ),
            red(
                "attack_browser_hardening::legacy_tls_refused",
                "ServerHello: TLS 1.2 with ECDHE-ECDSA-AES128-SHA: the listener takes the CBC suite",
            ),
        ],
    },
    Case {
        name: "istio_gateway_for_another_host_serves_nothing",
        breakage: |c| c.istio_overlay = Some(istio_fault("gateway-other-host")),
        red: &[red(
            "seed000_browser_sso::browser_login",
            "/headers): client error (Connect): Connection reset by peer",
        )],
    },
    Case {
        // Sign-in never starts, so every scenario that starts from it goes red there,
        // among them the return-URL spellings that oauth2-proxy refuses whatever its settings.
        name: "istio_virtualservice_without_the_oauth2_route_breaks_sign_in",
        breakage: |c| c.istio_overlay = Some(istio_fault("virtualservice-without-oauth2-route")),
        red: &[
            red(
                "seed000_browser_sso::browser_login",
                "step 2 (sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::rd_scheme_relative_via_start",
                "(sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::rd_scheme_relative_via_sign_in",
                "(sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::rd_backslash_via_start",
                "(sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::rd_backslash_via_sign_in",
                "(sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::rd_tab_in_scheme_relative_via_start",
                "(sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::rd_tab_in_scheme_relative_via_sign_in",
                "(sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::rd_scheme_without_slashes_via_start",
                "(sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::rd_scheme_without_slashes_via_sign_in",
                "(sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::rd_encoded_scheme_relative_via_start",
                "(sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::rd_encoded_scheme_relative_via_sign_in",
                "(sign_in): no login form on https://127.0.0.1:",
            ),
            red(
                "attack_redirects_and_flow::callback_without_csrf_cookie_is_refused",
                "login form: expected the IdP's login form",
            ),
            red(
                "seed002_identity_brokering::wrong_upstream_password_stays_upstream",
                "no link to the upstream identity provider",
            ),
        ],
    },
    Case {
        name: "istio_virtualservice_routing_only_the_sign_in_paths_to_oauth2_proxy_keeps_sessions_after_sign_out",
        breakage: |c| {
            c.istio_overlay = Some(istio_fault("virtualservice-oauth2-sign-in-paths-only"))
        },
        red: &[
            red(
                "attack_session_lifecycle::sign_out_ends_the_app_session",
                "expected no _oauth2_proxy cookie",
            ),
            red(
                "attack_redirects_and_flow::rd_scheme_relative_via_sign_out",
                "expected no _oauth2_proxy cookie",
            ),
            red(
                "attack_redirects_and_flow::rd_backslash_via_sign_out",
                "expected no _oauth2_proxy cookie",
            ),
            red(
                "attack_redirects_and_flow::rd_tab_in_scheme_relative_via_sign_out",
                "expected no _oauth2_proxy cookie",
            ),
            red(
                "attack_redirects_and_flow::rd_scheme_without_slashes_via_sign_out",
                "expected no _oauth2_proxy cookie",
            ),
            red(
                "attack_redirects_and_flow::rd_encoded_scheme_relative_via_sign_out",
                "expected no _oauth2_proxy cookie",
            ),
            red(
                "attack_redirects_and_flow::rd_userinfo_via_sign_out",
                "expected no _oauth2_proxy cookie",
            ),
            red(
                "attack_redirects_and_flow::rd_lookalike_subdomain_via_sign_out",
                "expected no _oauth2_proxy cookie",
            ),
            red(
                "seed002_many_apps::signing_out_of_one_app_signs_out_of_all",
                "sign-in page: expected a sign-in page",
            ),
        ],
    },
    Case {
        name: "istio_authorizationpolicy_exempting_health_prefix_exposes_the_app",
        breakage: |c| c.istio_overlay = Some(istio_fault("authorizationpolicy-exempts-health")),
        red: &[red(
            "attack_unauthenticated_reach::static_and_health_looking_paths",
            "[high finding] GET /health: expected not answered by the app without a session, actual 404 from the app: the body is exactly what the app serves the signed-in user here",
        )],
    },
    Case {
        name: "istio_authorizationpolicy_exempting_an_api_prefix_and_a_page_exposes_them",
        breakage: |c| c.istio_overlay = Some(istio_fault("authorizationpolicy-exempts-api")),
        red: &[
            red(
                "attack_unauthenticated_reach::static_and_health_looking_paths",
                "[high finding] GET /api/anything: expected not answered by the app without a session",
            ),
            red(
                "attack_unauthenticated_reach::static_and_health_looking_paths",
                "[high finding] GET /get: expected not answered by the app without a session",
            ),
        ],
    },
    Case {
        name: "istio_authorizationpolicy_exempting_oauth2_without_its_slash_exposes_near_misses",
        breakage: |c| c.istio_overlay = Some(istio_fault("oauth2-exempt-without-slash")),
        red: &[red(
            "attack_unauthenticated_reach::exempt_prefix_near_misses",
            "GET /oauth2x/anything: expected not answered by the app without a session",
        )],
    },
    Case {
        name: "istio_authorizationpolicy_for_one_host_spelling_exposes_the_others",
        breakage: |c| c.istio_overlay = Some(istio_fault("authorizationpolicy-one-host-spelling")),
        red: &[red(
            "attack_unauthenticated_reach::authority_variants",
            "GET /anything (Host: 127.0.0.1): expected not answered by the app without a session",
        )],
    },
    Case {
        name: "istio_authorizationpolicy_scoped_to_app_paths_misses_doubled_slashes",
        breakage: |c| {
            c.istio_overlay = Some(istio_fault("authorizationpolicy-scoped-to-app-paths"))
        },
        red: &[red(
            "attack_unauthenticated_reach::path_normalisation_variants",
            "GET //anything: expected not answered by the app without a session",
        )],
    },
    Case {
        name: "istio_authorizationpolicy_checking_only_get_exposes_the_app_to_other_methods",
        breakage: |c| c.istio_overlay = Some(istio_fault("authorizationpolicy-checks-only-get")),
        red: &[
            red(
                "attack_unauthenticated_reach::method_variants",
                "[critical finding] POST /anything: expected not answered by the app",
            ),
            red(
                "attack_unauthenticated_reach::method_variants",
                "[critical finding] HEAD /anything: expected not answered by the app",
            ),
            red(
                "attack_unauthenticated_reach::method_variants",
                "[critical finding] OPTIONS /anything [",
            ),
        ],
    },
    Case {
        name: "istio_requestauthentication_with_the_wrong_issuer_refuses_real_tokens",
        breakage: |c| c.istio_overlay = Some(istio_fault("requestauthentication-wrong-issuer")),
        red: &[red(
            "seed003_origin_auth::direct_grant_bearer",
            "with \"Jwt issuer is not configured\"",
        )],
    },
    Case {
        name: "istio_peerauthentication_permissive_accepts_plaintext",
        breakage: |c| c.istio_overlay = Some(istio_fault("peerauthentication-permissive")),
        red: &[red(
            "attack_mesh_transport::plaintext_is_rejected",
            "without a response, actual answered 200 at http://127.0.0.11:",
        )],
    },
    Case {
        name: "istio_authorizationpolicy_admitting_the_whole_mesh_at_the_app",
        breakage: |c| {
            c.istio_overlay = Some(istio_fault(
                "authorizationpolicy-httpbin-admits-the-whole-mesh",
            ))
        },
        red: &[red(
            "attack_around_the_gateway::mesh_workload_cannot_skip_the_gateway",
            "actual answered 200 at http://httpbin.foo.svc.cluster.local",
        )],
    },
    Case {
        name: "istio_envoyfilter_accepting_untrusted_peer_certificates",
        breakage: |c| c.istio_overlay = Some(istio_fault("envoyfilter-accepts-untrusted-peers")),
        red: &[
            red(
                "attack_mesh_transport::untrusted_ca_is_rejected",
                "without a response, actual answered 200 at https://127.0.0.11:",
            ),
            red(
                "attack_mesh_transport::expired_certificate_is_rejected",
                "without a response, actual answered 200 at https://127.0.0.11:",
            ),
        ],
    },
    Case {
        name: "istio_destinationrule_disabling_tls_breaks_the_gateway_to_httpbin",
        breakage: |c| c.istio_overlay = Some(istio_fault("destinationrule-plaintext-to-httpbin")),
        red: &[red(
            "seed000_browser_sso::browser_login",
            "status: expected 200, actual 503 at https://127.0.0.1:",
        )],
    },
    Case {
        name: "istio_destinationrule_skipping_verification_believes_an_impostor",
        breakage: |c| {
            c.istio_overlay = Some(istio_fault("destinationrule-skips-verification-to-httpbin"))
        },
        red: &[red(
            "attack_mesh_transport::impostor_server_is_refused",
            "status: expected 503, actual 200 at http://httpbin.foo.svc.cluster.local:",
        )],
    },
    // The attack catalog: each class goes red when the hardening that defeats it is removed.
    Case {
        name: "no_ext_authz_path_prefix_lets_robots_txt_reach_the_app",
        breakage: |c| c.ext_authz_path_prefix = false,
        red: &[red(
            "attack_unauthenticated_reach::auth_proxy_own_endpoints",
            "GET /robots.txt: expected not answered by the app without a session, actual 200 from the app: the body is exactly what the app serves the signed-in user",
        )],
    },
    Case {
        // Envoy overwrites only the headers oauth2-proxy answers with; every other identity
        // header a client sends passes, and so do underscore spellings.
        name: "identity_headers_not_dropped_reach_the_app",
        breakage: |c| c.strip_identity_headers = false,
        red: &[
            red(
                "attack_forged_identity::forwarded_identity_headers",
                "actual the app received the forged X-Forwarded-User: forged-",
            ),
            red(
                "attack_forged_identity::underscore_spellings",
                "actual the app received the forged X_",
            ),
            red(
                "attack_forged_identity::auth_request_headers",
                "the app received the forged X-Auth-Request-Groups: ",
            ),
            red(
                "attack_forged_identity::client_address_and_certificate",
                "the app received the forged X-Real-Ip: ",
            ),
            red(
                "attack_forged_identity::forwarded_request_headers",
                "the app received the forged X-Forwarded-Host: forged-",
            ),
        ],
    },
    Case {
        // The ext_authz provider's headersToDownstreamOnAllow copied from its
        // headersToUpstreamOnAllow: every answer of the app hands the browser the token.
        name: "ext_authz_passing_identity_headers_to_the_browser",
        breakage: |c| c.ext_authz_identity_to_browser = true,
        red: &[red(
            "attack_identity_to_browser::tokens_and_identity_headers_stay_server_side",
            "x-auth-request-access-token from GET https://127.0.0.1:",
        )],
    },
    Case {
        // The route to oauth2-proxy as the guides write it: /oauth2/auth answers the browser
        // with the identity headers meant for ext_authz.
        name: "oauth2_route_passing_oauth2_proxys_identity_headers_to_the_browser",
        breakage: |c| c.oauth2_route_strips_identity_headers = false,
        red: &[red(
            "attack_identity_to_browser::tokens_and_identity_headers_stay_server_side",
            "/oauth2/auth (a header the auth layer sets for the app)",
        )],
    },
    Case {
        // `whitelist_domains = [".evil.example"]`: the domain and every subdomain are valid
        // return URLs, whatever spelling carries them.
        name: "whitelisted_foreign_domain_takes_the_browser_off_the_app",
        breakage: |c| c.whitelist_domains = vec![".evil.example".into()],
        red: &[
            red(
                "attack_redirects_and_flow::rd_absolute_foreign_url_via_start",
                "https://evil.example/",
            ),
            red(
                "attack_redirects_and_flow::rd_absolute_foreign_url_via_sign_in",
                "https://evil.example/",
            ),
            red(
                "attack_redirects_and_flow::rd_absolute_foreign_url_via_sign_out",
                "https://evil.example/",
            ),
            red(
                "attack_redirects_and_flow::rd_userinfo_via_start",
                "@evil.example/",
            ),
            red(
                "attack_redirects_and_flow::rd_userinfo_via_sign_in",
                "@evil.example/",
            ),
            red(
                "attack_redirects_and_flow::rd_userinfo_via_sign_out",
                "@evil.example/",
            ),
            red(
                "attack_redirects_and_flow::rd_lookalike_subdomain_via_start",
                "127.0.0.1.evil.example/",
            ),
            red(
                "attack_redirects_and_flow::rd_lookalike_subdomain_via_sign_in",
                "127.0.0.1.evil.example/",
            ),
            red(
                "attack_redirects_and_flow::rd_lookalike_subdomain_via_sign_out",
                "127.0.0.1.evil.example/",
            ),
        ],
    },
    Case {
        name: "idp_client_with_wildcard_redirect_uri_accepts_another_path",
        breakage: |c| c.client_wildcard_redirect_uri = true,
        red: &[red(
            "attack_redirects_and_flow::idp_refuses_other_path_on_the_app_host",
            "login form: expected no login form",
        )],
    },
    Case {
        name: "idp_client_without_pkce_accepts_a_plain_code_request",
        breakage: |c| c.client_requires_pkce = false,
        red: &[red(
            "attack_redirects_and_flow::idp_requires_pkce",
            "login form: expected no login form",
        )],
    },
    Case {
        name: "idp_client_with_implicit_flow_accepts_response_type_token",
        breakage: |c| c.client_implicit_flow = true,
        red: &[red(
            "attack_redirects_and_flow::idp_refuses_implicit_flow",
            "login form: expected no login form",
        )],
    },
    Case {
        name: "ext_authz_fail_open_lets_everyone_in_when_the_auth_service_cannot_answer",
        breakage: |c| c.ext_authz_fail_open = true,
        red: &[
            red(
                "attack_fail_closed::auth_service_stopped",
                "without a session the request reached the app (fail open)",
            ),
            red(
                "attack_fail_closed::auth_service_hung",
                "without a session the request reached the app (fail open)",
            ),
            red(
                "attack_configuration::deployment_configuration",
                "[critical finding] istio/policy.yaml + istio/mesh.yaml: ext_authz fails open",
            ),
        ],
    },
    Case {
        name: "request_authentication_without_audiences_accepts_other_clients_tokens",
        breakage: |c| c.jwt_audiences = false,
        red: &[red(
            "attack_bearer_tokens::sidecar_bearer_matrix",
            "wrong_audience bearer is refused: expected refused (401/403), never the app, actual the app answered",
        )],
    },
    Case {
        // oauth2-proxy admitting every user of the realm (no allowed_roles; for seed 001's
        // IdP no allowed_groups): a valid token of anyone is a session.
        name: "no_admission_role_lets_every_user_of_the_realm_in",
        breakage: |c| c.admission_role = false,
        red: &[
            red(
                "attack_admission::user_without_role_is_refused",
                "status: expected 403, actual 200",
            ),
            red(
                "attack_admission::user_without_role_token_is_refused",
                "second_user bearer is refused: expected refused (401/403), never the app, actual the app answered",
            ),
            red(
                "attack_forged_identity::gateway_token_does_not_override_the_session",
                "second_user bearer with a session: expected refused, or the app sees exactly the session's user",
            ),
            red(
                "seed001_any_idp::user_outside_the_group_is_refused",
                "status: expected 403, actual 200",
            ),
            red(
                "attack_admission::user_without_role_token_refused_on_every_path",
                "GET /get with the second user's token (a user the app must not admit): expected not answered by the app with the second user's token",
            ),
        ],
    },
    Case {
        // oauth2-proxy's cookie_samesite = "none", set to make an embedded or cross-site
        // sign-in work: both cookies go with every cross-site request.
        name: "cookies_samesite_none_go_with_cross_site_requests",
        breakage: |c| c.cookie_samesite_none = true,
        red: &[
            red(
                "attack_cookies::session_cookie_attributes",
                "cookie _oauth2_proxy SameSite not None: expected Lax, Strict or unset",
            ),
            red(
                "attack_cookies::csrf_cookie_attributes",
                "cookie _oauth2_proxy_csrf SameSite not None: expected Lax, Strict or unset",
            ),
        ],
    },
    Case {
        // oauth2-proxy's cookie_domains: both cookies go to every host under the domain.
        name: "cookies_with_a_domain_go_to_other_hosts",
        breakage: |c| c.session_cookie_domain = Some("127.0.0.1".into()),
        red: &[
            red(
                "attack_cookies::session_cookie_attributes",
                "cookie _oauth2_proxy host-only: expected no Domain (this host only), actual Domain=127.0.0.1",
            ),
            red(
                "attack_cookies::csrf_cookie_attributes",
                "cookie _oauth2_proxy_csrf host-only: expected no Domain (this host only), actual Domain=127.0.0.1",
            ),
            red(
                "seed002_many_apps::one_sign_in_reaches_every_app",
                "host-only: expected no Domain (this host only), actual Domain=127.0.0.1",
            ),
        ],
    },
    Case {
        name: "sidecar_without_trust_domain_check_accepts_another_trust_domain",
        breakage: |c| c.sidecar_trust_domain_check = false,
        red: &[red(
            "attack_mesh_transport::foreign_trust_domain_is_rejected",
            "connection: expected the connection rejected (closed, reset or TLS handshake failed) without a response, actual answered 200",
        )],
    },
    Case {
        name: "sign_out_without_backend_logout_leaves_the_idp_session",
        breakage: |c| c.backend_logout = false,
        red: &[red(
            "attack_session_lifecycle::sign_out_ends_the_idp_session",
            "login form: expected",
        )],
    },
    Case {
        name: "sessions_in_the_cookie",
        breakage: |c| c.session_store = SessionStore::Cookie,
        red: &[
            red(
                "attack_session_lifecycle::copied_session_cookie_is_dead_after_sign_out",
                "sign-in page: expected a sign-in page",
            ),
            red(
                "seed002_redis_sessions::session_cookie_is_a_ticket",
                "cookie _oauth2_proxy size: expected at most 512 bytes",
            ),
        ],
    },
    Case {
        // oauth2-proxy's default cookie_secure on seed 001's plain-HTTP app: a browser drops
        // the CSRF cookie, and the sign-in cannot complete.
        name: "secure_cookies_on_a_plain_http_app_break_the_sign_in",
        breakage: |c| c.secure_session_cookie = true,
        red: &[red(
            "seed001_any_idp::browser_login",
            "the sign-in cannot complete over plain HTTP: the server set cookie _oauth2_proxy_csrf with the Secure attribute",
        )],
    },
    Case {
        name: "role_missing_from_the_custom_claim_keeps_the_user_out",
        breakage: |c| c.custom_claim_realm_roles = false,
        red: &[red(
            "seed002_role_claims::roles_claim_carries_realm_and_client_roles",
            "status: expected 200, actual 403",
        )],
    },
    Case {
        name: "no_roles_claim_policy_lets_users_and_tokens_without_roles_in",
        breakage: |c| c.gateway_role_claim_policy = false,
        red: &[
            red(
                "seed002_role_claims::user_without_the_roles_is_refused_by_the_policy",
                "status: expected 403, actual 200",
            ),
            red(
                "seed002_role_claims::token_without_the_roles_is_refused_by_the_policy",
                "status: expected 403, actual 200",
            ),
            red(
                "seed002_role_claims::token_without_the_roles_refused_on_every_path",
                "GET /anything/x with the second user's token (a user the app must not admit): expected not answered by the app",
            ),
        ],
    },
    Case {
        // Seed 002's own warning: the IdP on the app's host but /auth not exempted from
        // ext_authz. The browser is sent to sign in again by its own login page.
        name: "idp_on_the_app_host_not_exempted_loops_the_sign_in",
        breakage: |c| c.idp_path_exempt = false,
        red: &[red(
            "seed002_idp_on_app_host::sign_in_at_the_idp_on_the_app_host",
            "the IdP's own pages are behind the auth check",
        )],
    },
    Case {
        // The client-role mapper's "Client ID" picked wrong: the claim lacks the app's role.
        name: "client_role_mapper_on_another_client_leaves_the_app_role_out",
        breakage: |c| c.client_role_mapper_wrong_client = true,
        red: &[red(
            "seed002_role_claims::roles_claim_carries_the_client_role",
            "claim meshauth_roles: expected containing \"app-reader\"",
        )],
    },
    Case {
        // A cookie secret made anew at each start: the ticket in the cookie no longer opens
        // the session kept in redis.
        name: "cookie_secret_made_at_each_start_loses_every_session_on_restart",
        breakage: |c| c.cookie_secret_per_start = true,
        red: &[red(
            "seed002_redis_sessions::session_survives_an_auth_service_restart",
            "status: expected 200",
        )],
    },
    Case {
        // `redirectUris: ["*"]`, a development setting left in: codes go anywhere.
        name: "idp_client_accepting_any_redirect_uri",
        breakage: |c| c.client_any_redirect_uri = true,
        red: &[
            red(
                "attack_redirects_and_flow::idp_refuses_foreign_redirect_uri",
                "login form: expected no login form",
            ),
            red(
                "attack_redirects_and_flow::idp_refuses_callback_prefix_extension",
                "login form: expected no login form",
            ),
            red(
                "attack_redirects_and_flow::idp_refuses_plain_http_callback",
                "login form: expected no login form",
            ),
            // post.logout.redirect.uris "+" takes the redirect URIs' "*" too.
            red(
                "attack_redirects_and_flow::idp_refuses_foreign_post_logout_redirect",
                "the browser was sent off the deployment, to https://evil.example/",
            ),
        ],
    },
    Case {
        // `notPaths: ["/auth*"]`: a prefix match wider than the IdP exempts /authx… on the app.
        name: "idp_exempt_without_its_slash_lets_near_misses_reach_the_app",
        breakage: |c| c.idp_path_exempt_without_slash = true,
        red: &[red(
            "seed002_idp_on_app_host::idp_pages_open_apps_closed",
            "[critical finding] GET /authx/anything",
        )],
    },
    Case {
        // The IdP's plain-HTTP listener routes only Keycloak's paths to it: every other path
        // there reaches the app's catch-all route, on a port exempt from ext_authz.
        name: "idp_listener_routing_only_its_paths_opens_the_app_on_it",
        breakage: |c| c.idp_listener_routes_by_path = true,
        red: &[red(
            "attack_unauthenticated_reach::other_gateway_listeners",
            "[critical finding] GET http://127.0.0.1:",
        )],
    },
    Case {
        // oauth2-proxy's default: the session is never re-checked at the IdP. A user signed
        // out everywhere or disabled keeps access until the cookie expires, the app gets the
        // sign-in's tokens long after they expired, and the audit names the missing setting.
        name: "no_session_refresh_never_rechecks_the_session",
        breakage: |c| c.session_refresh_seconds = None,
        red: &[
            red(
                "attack_session_lifecycle::session_ended_at_the_idp_ends_access",
                "sign-in page: expected a sign-in page",
            ),
            red(
                "attack_session_lifecycle::user_disabled_at_the_idp_loses_access",
                "sign-in page: expected a sign-in page",
            ),
            red(
                "attack_session_lifecycle::expired_tokens_are_never_forwarded",
                "the app received expired tokens in Authorization",
            ),
            red(
                "attack_configuration::deployment_configuration",
                "[medium finding] oauth2-proxy.cfg: session re-checked at the IdP",
            ),
        ],
    },
    Case {
        // The client issues no refresh tokens: oauth2-proxy's cookie_refresh has nothing to
        // refresh with and never re-checks the session.
        name: "client_without_refresh_tokens_never_rechecks_the_session",
        breakage: |c| c.client_refresh_tokens = false,
        red: &[red(
            "attack_session_lifecycle::session_refresh_keeps_the_user_in",
            "sets cookie _oauth2_proxy: expected the response sets",
        )],
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
        red: &[
            red(
                "seed003_origin_auth::missing_bearer_is_rejected",
                "status: expected one of 302, 401, 403, actual 200 at https:",
            ),
            red(
                "seed003_origin_auth::token_required_on_every_path_and_method",
                "GET /ip: expected not answered by the app without a session",
            ),
        ],
    },
    Case {
        // A token required only where the API is thought to be: a DENY without a principal
        // scoped to /headers, which the single-path check passes; /get and the rest are open.
        name: "token_required_on_some_paths_only_leaves_the_others_open",
        breakage: |c| {
            c.ext_authz = false;
            c.istio_overlay = Some(istio_fault(
                "authorizationpolicy-token-required-on-some-paths",
            ));
        },
        red: &[red(
            "seed003_origin_auth::token_required_on_every_path_and_method",
            "GET /get: expected not answered by the app without a session",
        )],
    },
    Case {
        name: "policy_written_for_the_first_app_leaves_the_second_open",
        breakage: |c| c.second_app_exempt = true,
        red: &[red(
            "seed002_many_apps::second_app_is_protected_too",
            "sign-in page: expected a sign-in page",
        )],
    },
    Case {
        // Keycloak's audience-resolve mapper adds oauth2proxy to the aud of every full-scope
        // client's tokens for users holding oauth2proxy's roles: `audiences` stops telling them apart.
        name: "app_roles_on_the_sign_in_client_give_other_clients_its_audience",
        breakage: |c| c.app_roles_on_the_sign_in_client = true,
        red: &[red(
            "attack_bearer_tokens::gateway_bearer_matrix_someone_elses_token",
            "other_client bearer is refused: expected refused",
        )],
    },
    Case {
        // oauth2-proxy's default `skip_jwt_bearer_tokens = false`: bearer tokens count for
        // nothing at the gateway, so the good tokens of every matrix are refused with the rest.
        name: "oauth2_proxy_ignoring_bearer_tokens_refuses_good_ones",
        breakage: |c| c.bearer_tokens_accepted = false,
        red: &[
            red(
                "attack_bearer_tokens::gateway_bearer_matrix",
                "granted bearer is accepted: expected the app's answer",
            ),
            red(
                "attack_bearer_tokens::gateway_bearer_matrix_one_claim_wrong",
                "granted bearer is accepted: expected the app's answer",
            ),
        ],
    },
    Case {
        name: "brokering_with_a_wrong_upstream_client_secret_fails_the_sign_in",
        breakage: |c| c.broker_wrong_client_secret = true,
        red: &[red(
            "seed002_identity_brokering::brokered_login_reaches_the_app_as_the_upstream_user",
            "status: expected 200",
        )],
    },
    Case {
        name: "config_audit_finds_open_admission_and_no_audiences",
        breakage: |c| {
            c.admission_role = false;
            c.jwt_audiences = false;
        },
        red: &[red(
            "attack_configuration::deployment_configuration",
            "[medium finding] oauth2-proxy.cfg: admission",
        )],
    },
    Case {
        name: "config_audit_finds_query_strings_in_access_logs",
        breakage: |c| c.log_query_strings = true,
        red: &[red(
            "attack_configuration::deployment_configuration",
            "[medium finding] istio/policy.yaml + istio/mesh.yaml: query strings in access logs",
        )],
    },
];

struct Fixture {
    stack: LocalStack,
    engine: Engine,
    /// What each run of the schedule gave, by (row or `REFERENCE`, scenario); each run once.
    outcomes: BTreeMap<(&'static str, &'static str), Outcome>,
}

/// How a trial judges what the schedule recorded.
type Judge = Box<dyn Fn(&Fixture) -> Result<(), Failed> + Send>;

/// A scenario's verdict, the failures it reported and its transcript.
type Outcome = (Verdict, Vec<String>, String);

/// The key of runs on the reference (each scenario's own profile, nothing broken).
const REFERENCE: &str = "reference";

/// The trial that keeps the table up with the catalog; it needs no stack.
const COVERAGE: &str = "every_scenario_has_a_fault_row";

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // Rows share one stack, so they run one at a time.
    args.test_threads = Some(1);
    let catalog = Arc::new(Catalog::builtin());
    let names: Vec<&'static str> = CASES
        .iter()
        .map(|case| case.name)
        .chain(VARIANTS.iter().map(|variant| variant.name))
        .collect();
    let coverage = {
        let catalog = Arc::clone(&catalog);
        Trial::test(COVERAGE, move || every_scenario_has_a_fault_row(&catalog))
    };
    let selected: Vec<&'static str> = names
        .iter()
        .copied()
        .filter(|name| common::selected_by(&args, name))
        .collect();
    if args.list || selected.is_empty() {
        let trials = names
            .iter()
            .map(|name| Trial::test(*name, || Ok(())))
            .chain([coverage])
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }

    let runtime = Arc::new(common::runtime());
    let redactor = Redactor::new();
    let fixture = common::start_stack(&runtime, "faults", StackConfig::default(), &redactor)
        .and_then(|stack| {
            let engine = Engine::new(stack.endpoints().clone(), redactor.clone())
                .map_err(|e| e.to_string())?;
            Ok(Fixture {
                stack,
                engine,
                outcomes: BTreeMap::new(),
            })
        });
    let fixture = Arc::new(Mutex::new(fixture));
    let trial = |name: &'static str, judge: Judge| {
        let (catalog, fixture, runtime, selected) = (
            Arc::clone(&catalog),
            Arc::clone(&fixture),
            Arc::clone(&runtime),
            selected.clone(),
        );
        Trial::test(name, move || {
            let mut guard = fixture.lock().unwrap_or_else(|p| p.into_inner());
            let fixture = guard
                .as_mut()
                .map_err(|e| Failed::from(format!("the local stack did not start:\n{e}")))?;
            run_schedule(fixture, &catalog, &runtime, &selected)?;
            judge(fixture)
        })
    };
    let trials = CASES
        .iter()
        .map(|case| {
            trial(
                case.name,
                Box::new(move |fixture| judge_case(case, fixture)),
            )
        })
        .chain(VARIANTS.iter().map(|variant| {
            trial(
                variant.name,
                Box::new(move |fixture| judge_variant(variant, fixture)),
            )
        }))
        .chain([coverage])
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(fixture);
    conclusion.exit_code()
}

/// Every run the selected rows need, each scenario on the reference and under each row that
/// names it, ordered so that runs needing the same Keycloak realm, then the same whole
/// configuration, are adjacent: a realm change restarts Keycloak, the slowest part by far.
/// Runs once, on the first trial; the trials then judge what it recorded.
fn run_schedule(
    fixture: &mut Fixture,
    catalog: &Catalog,
    runtime: &tokio::runtime::Runtime,
    selected: &[&'static str],
) -> Result<(), Failed> {
    let mut runs: Vec<(&'static str, &'static str, StackConfig)> = Vec::new();
    let mut plan = |row: &'static str, scenario: &'static str, change: fn(&mut StackConfig)| {
        if fixture.outcomes.contains_key(&(row, scenario))
            || runs.iter().any(|(r, s, _)| (*r, *s) == (row, scenario))
        {
            return Ok::<(), Failed>(());
        }
        let (suite, found) = find(catalog, scenario)?;
        let mut config = StackConfig::default().with_profile(&found.profile(suite));
        change(&mut config);
        runs.push((row, scenario, config));
        Ok(())
    };
    for case in CASES.iter().filter(|case| selected.contains(&case.name)) {
        for red in case.red {
            plan(REFERENCE, red.scenario, |_| {})?;
            plan(case.name, red.scenario, case.breakage)?;
        }
    }
    for variant in VARIANTS.iter().filter(|v| selected.contains(&v.name)) {
        for scenario in variant.green {
            plan(REFERENCE, scenario, |_| {})?;
            plan(variant.name, scenario, variant.change)?;
        }
    }
    runs.sort_by_cached_key(|(_, _, config)| (realm_of(config), format!("{config:?}")));
    // Runs on the same configuration share one reconfiguration and run together, side by
    // side where they may, as `meshauth run` runs a profile's scenarios.
    let mut rest = runs.as_slice();
    while let Some((_, _, config)) = rest.first() {
        let same = rest.iter().take_while(|(_, _, c)| c == config).count();
        let (group, later) = rest.split_at(same);
        rest = later;
        let mut names: Vec<&'static str> = Vec::new();
        for (_, scenario, _) in group {
            if !names.contains(scenario) {
                names.push(scenario);
            }
        }
        let transcripts = run_together(fixture, catalog, runtime, &names, config.clone())?;
        for (row, scenario, _) in group {
            let (verdict, failures, transcript) = transcripts
                .get(scenario)
                .cloned()
                .ok_or_else(|| format!("{scenario} did not run"))?;
            fixture
                .outcomes
                .insert((row, scenario), (verdict, failures, transcript));
        }
    }
    Ok(())
}

/// What Keycloak's realm import is rendered from: runs that agree on it share a Keycloak.
/// (A field missing here costs restarts, never a wrong verdict.)
fn realm_of(c: &StackConfig) -> String {
    format!(
        "{:?}",
        (
            (
                &c.idp,
                &c.app_listener,
                &c.login_theme,
                c.role_mapper,
                c.audience_mapper
            ),
            (
                c.custom_claim_realm_roles,
                c.client_role_mapper_wrong_client,
                c.app_roles_on_the_sign_in_client,
                c.broker_wrong_client_secret,
            ),
            (
                c.client_wildcard_redirect_uri,
                c.client_any_redirect_uri,
                c.client_requires_pkce,
                c.client_implicit_flow,
                c.client_direct_access_grants,
                c.realm_login_page_frameable,
                c.client_refresh_tokens,
                c.access_token_lifespan_seconds,
                c.realm_refresh_token_reuse,
            ),
        )
    )
}

/// The scenario's reference verdict: a row is evidence only if the scenario passes there.
fn green_on_reference(fixture: &Fixture, name: &'static str) -> Result<(), String> {
    match fixture.outcomes.get(&(REFERENCE, name)) {
        Some((Verdict::Pass, _, _)) => Ok(()),
        Some((_, failures, transcript)) => Err(format!(
            "{name} fails on the reference itself, so its red here proves nothing:\n{}\n{transcript}",
            failures.join("\n")
        )),
        None => Err(format!("{name} was not run on the reference")),
    }
}

/// The stack reconfigured to `config`, then the named scenarios run on it through the engine;
/// each one's outcome by name.
fn run_together(
    fixture: &mut Fixture,
    catalog: &Catalog,
    runtime: &tokio::runtime::Runtime,
    names: &[&'static str],
    config: StackConfig,
) -> Result<BTreeMap<&'static str, Outcome>, Failed> {
    let scenarios = names
        .iter()
        .map(|name| find(catalog, name))
        .collect::<Result<Vec<_>, _>>()?;
    runtime
        .block_on(fixture.stack.reconfigure(config))
        .map_err(|e| format!("reconfiguring the stack for {names:?} failed: {e}"))?;
    // A profile may move the app or the IdP (seed 001's plain-HTTP app, another IdP).
    let moved = fixture.engine.for_target(&fixture.stack)?;
    let engine = moved.as_ref().unwrap_or(&fixture.engine);
    let mut transcripts = common::Transcripts::default();
    let outcomes =
        runtime.block_on(engine.run_on(&scenarios, &mut fixture.stack, &mut transcripts));
    let mut by_name = BTreeMap::new();
    for ((suite, scenario), outcome) in outcomes {
        let name = qualified_name(suite, scenario);
        let transcript = transcripts
            .outcome(&name)
            .map(|(_, text)| text)
            .unwrap_or_default();
        if let Some(name) = names.iter().find(|n| **n == name) {
            by_name.insert(*name, (outcome.verdict, outcome.failures, transcript));
        }
    }
    Ok(by_name)
}

fn judge_case(case: &Case, fixture: &Fixture) -> Result<(), Failed> {
    let mut scenarios: Vec<&'static str> = Vec::new();
    for red in case.red {
        if !scenarios.contains(&red.scenario) {
            scenarios.push(red.scenario);
        }
    }
    let mut problems = Vec::new();
    for name in scenarios {
        if let Err(why) = green_on_reference(fixture, name) {
            problems.push(why);
            continue;
        }
        let Some((verdict, failures, transcript)) = fixture.outcomes.get(&(case.name, name)) else {
            problems.push(format!("{name} was not run with this breakage"));
            continue;
        };
        if *verdict == Verdict::Pass {
            problems.push(format!(
                "{name} PASSED against the broken stack: the check cannot catch this breakage"
            ));
            continue;
        }
        let needles = case.red.iter().filter(|red| red.scenario == name);
        for needle in needles.map(|red| red.says) {
            if !failures.iter().any(|f| f.contains(needle)) {
                problems.push(format!(
                    "{name} failed, but not with the expected message {needle:?}; it said:\n{}\n{transcript}",
                    failures.join("\n")
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n\n").into())
    }
}

fn judge_variant(variant: &Variant, fixture: &Fixture) -> Result<(), Failed> {
    let mut problems = Vec::new();
    for name in variant.green {
        if let Err(why) = green_on_reference(fixture, name) {
            problems.push(why);
            continue;
        }
        match fixture.outcomes.get(&(variant.name, *name)) {
            Some((Verdict::Pass, _, _)) => {}
            Some((_, failures, transcript)) => problems.push(format!(
                "{name} should pass with this variant but failed:\n{}\n{transcript}",
                failures.join("\n")
            )),
            None => problems.push(format!("{name} was not run with this variant")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n\n").into())
    }
}

/// The table cannot fall behind the catalog: every scenario of every suite is turned red by
/// some row, and every scenario a row names exists.
fn every_scenario_has_a_fault_row(catalog: &Catalog) -> Result<(), Failed> {
    let covered: BTreeSet<&str> = CASES
        .iter()
        .flat_map(|case| case.red.iter().map(|red| red.scenario))
        .collect();
    let named: BTreeSet<&str> = covered
        .iter()
        .copied()
        .chain(VARIANTS.iter().flat_map(|v| v.green.iter().copied()))
        .collect();
    let in_catalog: BTreeSet<String> = catalog
        .suites
        .iter()
        .flat_map(|suite| {
            suite
                .scenarios
                .iter()
                .map(move |s| qualified_name(suite, s))
        })
        .collect();
    let uncovered: Vec<&String> = in_catalog
        .iter()
        .filter(|name| !covered.contains(name.as_str()))
        .collect();
    let unknown: Vec<&&str> = named
        .iter()
        .filter(|name| !in_catalog.contains(**name))
        .collect();
    let mut problems = Vec::new();
    if !uncovered.is_empty() {
        problems.push(format!(
            "{} of {} scenarios have no fault row that turns them red; add a realistic breakage \
             for each to CASES:\n  {}",
            uncovered.len(),
            in_catalog.len(),
            uncovered
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        ));
    }
    if !unknown.is_empty() {
        problems.push(format!(
            "rows name scenarios the catalog does not have: {unknown:?}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
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
