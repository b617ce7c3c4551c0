//! The catalog's schema. A scenario is data: a list of operations (a tagged enum, `op: ...`)
//! with expected outcomes, run by the engine. Unknown fields are rejected and errors name the
//! file and line.

mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::check::Severity;
pub use crate::control::{Disruption, Part};
use crate::oidc::ClaimExpectation;
use crate::policy::StackProfile;

pub use vars::{VARIABLES, Variables, check_variables};

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: scenario {scenario:?}, step {step}: {message}")]
    Invalid {
        file: String,
        scenario: String,
        step: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Catalog { file: String, message: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One file of the catalog: a suite of scenarios, usually one reference deployment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub suite: String,
    pub description: String,
    /// The write-ups (in `shared/seeds/`) this suite reproduces.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// What the stack must be for this suite's scenarios (the runner reconfigures it first);
    /// absent: the default profile.
    #[serde(default)]
    pub stack: Option<StackProfile>,
    pub scenarios: Vec<Scenario>,
    #[serde(skip)]
    pub file: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Replaces the suite's `stack:` profile for this scenario (a matrix row per profile).
    #[serde(default)]
    pub stack: Option<StackProfile>,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// The stack profile this scenario runs against: its own, else its suite's, else the default.
    pub fn profile(&self, suite: &Suite) -> StackProfile {
        self.stack
            .as_ref()
            .or(suite.stack.as_ref())
            .cloned()
            .unwrap_or_default()
    }
}

/// What a scenario needs of its environment beyond an app behind SSO and a test user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// A `stack:` profile other than the default (the harness renders the policies).
    StackProfile,
    /// A mesh the harness can call into as a workload (`${sidecar}`, `as: mesh_workload`):
    /// the local mesh, or a pod of the user's cluster.
    Mesh,
    /// Workload certificates the harness mints from the mesh CA (untrusted, expired, another
    /// trust domain): the local mesh only.
    MeshCertificates,
    /// A caller without a sidecar that can reach the service's in-mesh address.
    OutsideCallerInMesh,
    /// A second user without the required role.
    SecondUser,
    /// Another client of the realm.
    OtherClient,
    /// A test signing key the IdP publishes.
    SigningKey,
    /// Disrupting a part of the deployment.
    Disrupt(Part, Disruption),
    /// The deployment's configuration files.
    ConfigFiles,
    /// The session refresh interval the deployment promises.
    SessionRefresh,
}

impl Requirement {
    /// Why a scenario with this requirement cannot run where it is missing, and what to do.
    pub fn unmet(self) -> String {
        match self {
            Requirement::StackProfile => {
                "it needs a stack profile this environment does not have: --env local applies \
                 any; an existing deployment runs the scenarios whose profile is the mesh \
                 policy its environment file declares (mesh.policy)"
                    .into()
            }
            Requirement::Mesh => {
                "it calls httpbin's in-mesh address as a workload: --env local, or an existing \
                 deployment's environment file with a mesh section (a pod with a sidecar to \
                 call from, or a command that runs curl where such a caller is)"
                    .into()
            }
            Requirement::MeshCertificates => {
                "it presents workload certificates the harness mints from the mesh CA \
                 (untrusted, expired, another trust domain), which only --env local can"
                    .into()
            }
            Requirement::OutsideCallerInMesh => {
                "it calls httpbin's in-mesh address from outside the mesh: name a pod without \
                 a sidecar as mesh.outside_caller in the environment file"
                    .into()
            }
            Requirement::SecondUser => {
                "the environment names no second_user (a user without the required role)".into()
            }
            Requirement::OtherClient => "the environment names no other_client of the realm".into(),
            Requirement::SigningKey => {
                "the environment names no test_signing_key_file (a key the IdP publishes)".into()
            }
            Requirement::ConfigFiles => "the environment names no config_files to audit".into(),
            Requirement::SessionRefresh => {
                "it waits for the auth proxy's session refresh, and the environment does not say \
                 how often that is: add session_refresh_seconds (oauth2-proxy's cookie_refresh) \
                 to the environment file"
                    .into()
            }
            Requirement::Disrupt(part, disruption) => format!(
                "it needs to {} the {}, and the environment gives the harness no way to ({})",
                disruption.verb(),
                part.name(),
                disruption.offered_by()
            ),
        }
    }
}

impl Bearer {
    fn requirement(self) -> Option<Requirement> {
        match self {
            Bearer::OtherClient | Bearer::ServiceAccount => Some(Requirement::OtherClient),
            Bearer::SecondUser => Some(Requirement::SecondUser),
            Bearer::Resigned
            | Bearer::Expired
            | Bearer::NotYetValid
            | Bearer::OtherIssuer
            | Bearer::WrongAudience => Some(Requirement::SigningKey),
            _ => None,
        }
    }
}

/// What calling `url` as `caller` needs: the mesh for a workload caller, minted certificates
/// for the broken ones, and a caller outside the mesh that can reach the in-mesh address.
fn caller_requirements(caller: Option<Caller>, url: &str) -> Vec<Requirement> {
    let in_mesh_address = url.contains("${sidecar}");
    match caller.unwrap_or(Caller::OutsideMesh) {
        Caller::OutsideMesh if in_mesh_address => vec![Requirement::OutsideCallerInMesh],
        Caller::OutsideMesh => Vec::new(),
        Caller::MeshWorkload => vec![Requirement::Mesh],
        Caller::UntrustedCaWorkload
        | Caller::ExpiredCertificateWorkload
        | Caller::ForeignTrustDomainWorkload => {
            vec![Requirement::Mesh, Requirement::MeshCertificates]
        }
    }
}

impl Scenario {
    /// Whether this scenario changes what every other scenario sees (a part stopped, frozen,
    /// replaced, the test user's sessions or account or tokens changed), or reads what the
    /// environment saw as a whole (the impostor's handshakes): then it runs alone, never
    /// beside another. Every other scenario has its own browser, cookies and tokens.
    pub fn needs_the_stack_to_itself(&self) -> bool {
        self.steps.iter().any(|step| {
            matches!(
                step,
                Step::Disrupt { .. }
                    | Step::Restore { .. }
                    | Step::ExpectImpostorRefused {}
                    | Step::AuditConfig {}
            )
        })
    }

    /// Everything this scenario needs of its environment (see [`Requirement`]).
    pub fn requirements(&self, suite: &Suite) -> Vec<Requirement> {
        let mut needs = Vec::new();
        if !self.profile(suite).is_default() {
            needs.push(Requirement::StackProfile);
        }
        for step in &self.steps {
            if step
                .templated_strings()
                .iter()
                .any(|s| s.contains("${sidecar}"))
            {
                needs.push(Requirement::Mesh);
            }
            match step {
                Step::Request {
                    bearer,
                    caller,
                    url,
                } => {
                    needs.extend(bearer.and_then(Bearer::requirement));
                    needs.extend(caller_requirements(*caller, url));
                }
                Step::BearerMatrix(matrix) => {
                    needs.extend(
                        matrix
                            .accepted
                            .iter()
                            .chain(&matrix.refused)
                            .filter_map(|b| b.requirement()),
                    );
                    needs.extend(caller_requirements(matrix.caller, &matrix.url));
                }
                Step::SignIn { credentials, .. } | Step::TokenGrant { credentials }
                    if *credentials == Credentials::SecondUser =>
                {
                    needs.push(Requirement::SecondUser)
                }
                Step::Disrupt { component, action } => {
                    needs.push(Requirement::Disrupt(*component, *action))
                }
                Step::ExpectImpostorRefused {} => {
                    needs.push(Requirement::Disrupt(Part::App, Disruption::Impersonate))
                }
                Step::AuditConfig {} => needs.push(Requirement::ConfigFiles),
                Step::WaitForSessionRefresh {} => needs.push(Requirement::SessionRefresh),
                Step::Probe(probe) if probe.attacker == ProbeAttacker::SecondUserBearer => {
                    needs.push(Requirement::SecondUser)
                }
                _ => {}
            }
        }
        let mut unique = Vec::new();
        for need in needs {
            if !unique.contains(&need) {
                unique.push(need);
            }
        }
        unique
    }
}

/// One operation. Strings may use `${variable}` (see [`VARIABLES`]).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// GET a URL as a browser does, following and recording every redirect.
    Open { url: String },
    /// Sign in from the current page: press oauth2-proxy's provider button if it is shown,
    /// fill and post the IdP's login form, follow the redirects back to the app.
    SignIn {
        #[serde(default)]
        credentials: Credentials,
        /// Sign in at this upstream identity provider of the IdP (its alias): follow its link
        /// on the IdP's login page and fill the upstream login form (identity brokering).
        #[serde(default)]
        via: Option<String>,
    },
    /// One request that does not follow redirects. With `as`, it is sent by that caller
    /// instead of the scenario's browser (no cookies).
    Request {
        url: String,
        #[serde(default)]
        bearer: Option<Bearer>,
        #[serde(default, rename = "as")]
        caller: Option<Caller>,
    },
    /// A direct-access (password) grant at the IdP's token endpoint.
    TokenGrant {
        #[serde(default)]
        credentials: Credentials,
    },
    /// Checks on the last response.
    Expect(Box<ResponseExpectation>),
    /// Attack requests sent byte for byte as written (request target, Host header, header
    /// spelling) to the app's origin, each judged on evidence of what answered it. One check
    /// per request; every request carries a fresh `${nonce}`.
    Probe(Box<Probe>),
    /// Sends each listed bearer token to `url` and judges it (see [`BearerMatrix`]).
    BearerMatrix(Box<BearerMatrix>),
    /// Stops or freezes a part of the deployment until a `restore` step or the scenario's end
    /// (the runner always restores it): the fail-closed checks.
    Disrupt { component: Part, action: Disruption },
    /// Brings a disrupted part back, ready to serve.
    Restore { component: Part },
    /// Checks what the impostor in the app's place (`disrupt app impersonate`) saw: every
    /// caller aborted its TLS handshake over the impostor's certificate, and none sent it a
    /// request. The caller's own error (a 503) does not say why; the impostor does.
    ExpectImpostorRefused {},
    /// Changes the browser's copy of a cookie (the session), as an attacker holding it could.
    TamperCookie { name: String, how: Tampering },
    /// Keeps a copy of a cookie (with its pieces), as anyone who ever held it could: a
    /// shared machine, a proxy log, malware.
    KeepCookie { name: String },
    /// Puts the kept copy back into the browser, whatever the server did since.
    PutBackCookie { name: String },
    /// Sends the sign-in's authorization response (the callback URL, its code and state) again
    /// from a new browser holding only the cookies kept with `keep_cookie` (the CSRF cookie from
    /// before the sign-in): a code used twice. The scenario goes on in that browser.
    ReplayCallback {},
    /// Redeems the refresh token of the last `token_grant` twice at once, then once more: one
    /// redemption must succeed (the control), only one, and the used token is then refused.
    RefreshTokenReuse {},
    /// Audits the deployment's configuration files for insecure settings (one check per rule
    /// that applies to a file; see docs/attacks.md).
    AuditConfig {},
    /// Waits out the deployment's session refresh interval (and a second): long enough for
    /// the auth proxy to have re-checked the session at the IdP on the next request.
    WaitForSessionRefresh {},
    /// Waits until every token the app received on the last page has expired (and a second),
    /// at most a minute: with `disrupt idp short_lived_tokens` first, a few seconds.
    WaitForTokenExpiry {},
    /// Asks the TLS listener at `url` (host and port) for a handshake with each offer, one
    /// check each: the current offer must be taken (the control), every legacy one refused.
    TlsOffers {
        url: String,
        offers: Vec<TlsOfferKind>,
    },
    /// Verifies a JWT against the issuer's JWKS, its lifetime, and the listed claims.
    ExpectJwt {
        token: TokenSource,
        #[serde(default)]
        claims: BTreeMap<String, ClaimExpectation>,
        /// The longest lifetime (`exp - iat`) the token may be issued with: a stolen bearer
        /// token works until it expires, whatever happens to the session it came from.
        #[serde(default)]
        lifetime_at_most_seconds: Option<i64>,
    },
}

impl Step {
    pub fn op_name(&self) -> &'static str {
        match self {
            Step::Open { .. } => "open",
            Step::SignIn { .. } => "sign_in",
            Step::Request { .. } => "request",
            Step::TokenGrant { .. } => "token_grant",
            Step::Expect(_) => "expect",
            Step::ExpectJwt { .. } => "expect_jwt",
            Step::TlsOffers { .. } => "tls_offers",
            Step::Probe(_) => "probe",
            Step::BearerMatrix(_) => "bearer_matrix",
            Step::Disrupt { .. } => "disrupt",
            Step::Restore { .. } => "restore",
            Step::ExpectImpostorRefused {} => "expect_impostor_refused",
            Step::TamperCookie { .. } => "tamper_cookie",
            Step::KeepCookie { .. } => "keep_cookie",
            Step::PutBackCookie { .. } => "put_back_cookie",
            Step::AuditConfig {} => "audit_config",
            Step::WaitForSessionRefresh {} => "wait_for_session_refresh",
            Step::WaitForTokenExpiry {} => "wait_for_token_expiry",
            Step::ReplayCallback {} => "replay_callback",
            Step::RefreshTokenReuse {} => "refresh_token_reuse",
        }
    }

    /// Every string in the step that may hold `${variables}`.
    fn templated_strings(&self) -> Vec<&str> {
        let mut out = Vec::new();
        match self {
            Step::Open { url } | Step::Request { url, .. } | Step::TlsOffers { url, .. } => {
                out.push(url.as_str())
            }
            Step::BearerMatrix(matrix) => out.push(matrix.url.as_str()),
            Step::Expect(e) => {
                out.extend(e.app_cookies.iter().map(String::as_str));
                out.extend(e.no_app_cookies.iter().map(String::as_str));
                out.extend(e.sets_cookies.iter().map(String::as_str));
                out.extend(e.cookie_attributes.as_ref().map(|c| c.name.as_str()));
                out.extend(e.url_starts_with.as_deref());
                out.extend(e.location_starts_with.as_deref());
                out.extend(e.body_contains.iter().map(String::as_str));
            }
            Step::ExpectJwt { claims, .. } => {
                out.extend(claims.keys().map(String::as_str));
                for expectation in claims.values() {
                    if let ClaimExpectation::Equals(serde_json::Value::String(s))
                    | ClaimExpectation::Contains(serde_json::Value::String(s)) = expectation
                    {
                        out.push(s.as_str());
                    }
                }
            }
            Step::Probe(probe) => {
                for request in &probe.requests {
                    out.push(request.path.as_str());
                    out.extend(request.origin.as_deref());
                    out.extend(request.host.as_deref());
                    out.extend(
                        request
                            .headers
                            .iter()
                            .flat_map(|(n, v)| [n.as_str(), v.as_str()]),
                    );
                }
            }
            Step::TamperCookie { name, .. }
            | Step::KeepCookie { name }
            | Step::PutBackCookie { name } => out.push(name.as_str()),
            Step::SignIn { .. }
            | Step::TokenGrant { .. }
            | Step::Disrupt { .. }
            | Step::Restore { .. }
            | Step::ExpectImpostorRefused {}
            | Step::AuditConfig {}
            | Step::WaitForSessionRefresh {}
            | Step::WaitForTokenExpiry {}
            | Step::ReplayCallback {}
            | Step::RefreshTokenReuse {} => {}
        }
        out
    }
}

/// What a TLS client offers a listener in `tls_offers`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsOfferKind {
    /// TLS 1.2 with forward-secret AEAD suites, as every current browser can: the control,
    /// which must be taken.
    Current,
    /// A TLS 1.0 client (CBC suites only), which must be refused.
    Tls1_0,
    /// A TLS 1.1 client (CBC suites only), which must be refused.
    Tls1_1,
    /// A TLS 1.2 client offering only CBC suites, which must be refused.
    Tls1_2Cbc,
}

/// A table of attack requests and what they must not achieve.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub attack: Attack,
    /// How bad it is when a request succeeds: the finding's severity.
    #[serde(default)]
    pub severity: Severity,
    /// What the reference send carries: the standing the app must let in, whose answer tells
    /// the app's from anyone else's.
    #[serde(default)]
    pub reference: ProbeReference,
    /// What the attack send carries.
    #[serde(default)]
    pub attacker: ProbeAttacker,
    pub requests: Vec<ProbeRequest>,
}

/// A probe's reference credential.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProbeReference {
    /// The scenario's session cookie (a `sign_in` first).
    #[default]
    Session,
    /// The access token of the last `token_grant`, as `Authorization: Bearer`: for
    /// deployments that require a token rather than a session (origin authentication).
    Bearer,
}

/// Who sends a probe's attack requests.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProbeAttacker {
    /// No credential at all.
    #[default]
    Anonymous,
    /// The second user of the realm (valid, without the required role) with their own access
    /// token from the IdP: admission must hold on every path spelling, not one.
    SecondUserBearer,
}

impl ProbeAttacker {
    /// How the attack send goes, for check texts.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Anonymous => "without a session",
            Self::SecondUserBearer => {
                "with the second user's token (a user the app must not admit)"
            }
        }
    }
}

/// One attack request. `path` is the request target exactly as sent.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    /// Where the request goes (`scheme://host:port`, e.g. `${idp}`: the gateway's other
    /// listener); default: the app's origin.
    #[serde(default)]
    pub origin: Option<String>,
    pub path: String,
    /// The Host header (default: the app's own authority).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra headers, names as spelled.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub evidence: Evidence,
    /// The HTTP version the request goes over.
    #[serde(default)]
    pub protocol: Protocol,
}

/// How a probe request travels.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1, byte for byte as written.
    #[default]
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`), as browsers reach an HTTPS gateway: a separate codec and
    /// header map in the gateway, where a check or a header rule may apply differently.
    H2,
}

/// What proves an answer came from the app.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The request's nonce echoed, or the signed-in user's exact (non-refusal) answer.
    #[default]
    NonceOrSignedInAnswer,
    /// Only the nonce echoed: for paths that answer everyone alike and are not the app's
    /// (the auth proxy's own assets).
    Nonce,
}

fn default_method() -> String {
    "GET".into()
}

/// What a probe's requests try, and so how each is judged.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// Without a session, reach the app. Each request is also sent with the scenario's session
    /// (a `sign_in` must come first): the app was reached if it echoed the anonymous
    /// request's nonce, or answered it exactly as it answers the signed-in user.
    UnauthenticatedReach,
    /// Make the app believe client-sent identity headers. Each request (carrying forged values
    /// with `${nonce}`) is sent anonymously, which must not reach the app, and with the
    /// scenario's session, which must reach it without any forged value (an
    /// `X-Forwarded-For` may keep it, but never as the last hop).
    ForgedIdentity,
    /// While a `disrupt` step has a part down, reach the app. Each request is sent anonymously
    /// and with the scenario's session: neither may echo its nonce (the gateway fails closed).
    ReachDuringOutage,
    /// Reach the IdP's administration (Keycloak's admin console or admin REST API) through
    /// the gateway. Each request is sent anonymously (no session needed) and must get an
    /// answer that is not Keycloak's administration: a redirect to the console, the console's
    /// page, or the admin API's own 401.
    IdpAdministration,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Credentials {
    /// The environment's test user with the right password.
    #[default]
    TestUser,
    /// The test user with a password that is certainly wrong.
    WrongPassword,
    /// The environment's second user, who lacks the required role.
    SecondUser,
    /// A user who exists only at the upstream IdP the realm brokers to (signs in there).
    UpstreamUser,
    /// Another user of the upstream IdP, outside the group the realm admits.
    UpstreamSecondUser,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Bearer {
    /// The access token of the last `token_grant`.
    Granted,
    /// A made-up JWT (claims, `kid` and signature invented): no key signed it.
    Forged,
    /// Not a JWT at all.
    Garbage,
    /// The granted token with `alg: none` and no signature.
    AlgNone,
    /// The granted token's claims, HS256-signed with the PEM of the IdP's public key.
    Hs256WithPublicKey,
    /// The granted token with its `kid` naming no published key.
    UnknownKid,
    /// The granted token without its signature.
    StrippedSignature,
    /// The granted token with `sub` and `preferred_username` changed, signature kept.
    TamperedClaims,
    /// The granted token's claims signed with the test key the IdP publishes: the control
    /// that must be accepted for the minted negatives to mean anything.
    Resigned,
    /// Minted like `resigned`, expired ten minutes ago.
    Expired,
    /// Minted like `resigned`, valid only from ten minutes ahead (`nbf`).
    NotYetValid,
    /// Minted like `resigned`, with the issuer of another realm.
    OtherIssuer,
    /// Minted like `resigned`, for another client (`aud`, `azp`).
    WrongAudience,
    /// The test user's token from another client of the realm (password grant).
    OtherClient,
    /// The other client's service-account token (client-credentials grant).
    ServiceAccount,
    /// The second user's token (password grant, the app's client): valid, but not the
    /// session's user and without the required role.
    SecondUser,
}

impl Bearer {
    /// How bad it is when a deployment accepts this token where it must not.
    pub fn severity(self) -> Severity {
        match self {
            Bearer::Granted | Bearer::Resigned => Severity::Low,
            Bearer::NotYetValid => Severity::Medium,
            Bearer::Expired
            | Bearer::OtherIssuer
            | Bearer::WrongAudience
            | Bearer::OtherClient
            | Bearer::ServiceAccount
            | Bearer::SecondUser => Severity::High,
            Bearer::Forged
            | Bearer::Garbage
            | Bearer::AlgNone
            | Bearer::Hs256WithPublicKey
            | Bearer::UnknownKid
            | Bearer::StrippedSignature
            | Bearer::TamperedClaims => Severity::Critical,
        }
    }
}

/// Bearer tokens against one URL, one check each: `accepted` ones must reach the app (the
/// evidence that verification is on and the test tokens are good), `refused` ones must not
/// (an answer that is not 2xx and no echo of the request's nonce).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BearerMatrix {
    pub url: String,
    #[serde(default, rename = "as")]
    pub caller: Option<Caller>,
    #[serde(default)]
    pub accepted: Vec<Bearer>,
    #[serde(default)]
    pub refused: Vec<Bearer>,
    /// Also send each refused token with the scenario's session (a `sign_in` first): it must
    /// be refused, or reach the app as the session's user, never as the token's subject.
    #[serde(default)]
    pub with_session: bool,
}

/// Who sends a request to a workload, from the workload's point of view.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Caller {
    /// A workload in the mesh (`sleep`), its sidecar originating ISTIO_MUTUAL: an `http://`
    /// URL is sent over mTLS with the sleep workload's certificate, trusting the mesh CA.
    MeshWorkload,
    /// A client without a sidecar: the URL as written, no client certificate.
    OutsideMesh,
    /// mTLS as `sleep`, with a certificate from a CA the mesh does not trust.
    UntrustedCaWorkload,
    /// mTLS as `sleep`, with a mesh-CA certificate that has expired.
    ExpiredCertificateWorkload,
    /// mTLS with a mesh-CA certificate for another trust domain (`spiffe://evil.example/...`).
    ForeignTrustDomainWorkload,
}

/// How the connection of the last request is expected to have gone.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionExpectation {
    /// The server accepted the TCP connection and answered with HTTP.
    Answered,
    /// The server accepted the TCP connection, then closed or reset it or failed the TLS
    /// handshake: no HTTP response (e.g. plaintext to a STRICT mTLS listener). A port where
    /// nothing listens is an environment error, never this.
    Rejected,
    /// Kept from the app either way: rejected as above, or answered by the mesh's own refusal
    /// (RBAC's 403 or jwt_authn's 401, told by their own bodies). For callers a deployment may
    /// stop at the handshake or at its authorization policy; the app's answer is neither.
    Refused,
}

/// A part of the deployment that refuses a request on its own, and answers in its own words.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Refuser {
    /// Envoy's jwt_authn (a RequestAuthentication): 401, a `WWW-Authenticate: Bearer` challenge
    /// and a body of its own naming what is wrong with the token (`Jwt verification fails`,
    /// `Jwt issuer is not configured`, ...).
    JwtAuthn,
    /// Envoy's RBAC (an AuthorizationPolicy): 403 `RBAC: access denied`.
    Rbac,
    /// The auth proxy sending the caller to sign in: its sign-in page, the IdP's login form,
    /// or a redirect to either.
    SignIn,
}

impl Refuser {
    /// What its refusal looks like, for a check's expected and actual values.
    pub fn describe(self) -> &'static str {
        match self {
            Refuser::JwtAuthn => {
                "jwt_authn's refusal (401, WWW-Authenticate: Bearer, a body \"Jwt ...\")"
            }
            Refuser::Rbac => "RBAC's refusal (403 \"RBAC: access denied\")",
            Refuser::SignIn => {
                "the auth proxy's sign-in (its sign-in page, or a redirect to sign in)"
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The bearer token the app received in `Authorization` (oauth2-proxy forwards the ID
    /// token there), as httpbin echoed it on the last page.
    Forwarded,
    /// The access token the app received in `X-Auth-Request-Access-Token`, as echoed.
    ForwardedAccessToken,
    /// The access token of the last `token_grant`.
    Granted,
}

/// Expected properties of the last response. Absent fields are not checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseExpectation {
    /// Whether the last request got an HTTP response at all.
    #[serde(default)]
    pub connection: Option<ConnectionExpectation>,
    #[serde(default)]
    pub status: Option<u16>,
    /// The status is one of these: for outcomes a deployment may produce at more than one
    /// layer (a wrong token refused by oauth2-proxy with 403, or by jwt_authn with 401).
    #[serde(default)]
    pub status_in: Option<Vec<u16>>,
    /// The final URL (after redirects) starts with this.
    #[serde(default)]
    pub url_starts_with: Option<String>,
    /// The response is a redirect whose Location starts with this.
    #[serde(default)]
    pub location_starts_with: Option<String>,
    #[serde(default)]
    pub body_contains: Vec<String>,
    /// The answer is the refusal of one of these parts, told by its own status and body:
    /// for a refusal the deployment may make at more than one layer, the evidence of which.
    #[serde(default)]
    pub refused_by: Vec<Refuser>,
    /// The IdP's login page shows an error containing this text.
    #[serde(default)]
    pub login_error: Option<String>,
    /// The page is the IdP's login form.
    #[serde(default)]
    pub login_form: Option<bool>,
    /// The page asks the user to sign in (oauth2-proxy's sign-in page or the IdP's login
    /// form) instead of showing the app.
    #[serde(default)]
    pub sign_in_page: Option<bool>,
    /// Cookies the browser holds for the app.
    #[serde(default)]
    pub app_cookies: Vec<String>,
    #[serde(default)]
    pub no_app_cookies: Vec<String>,
    /// Cookies the last response set (a cookie split in parts, `name_0`, … counts as `name`).
    #[serde(default)]
    pub sets_cookies: Vec<String>,
    /// Security attributes the server set on a cookie (e.g. the session cookie).
    #[serde(default)]
    pub cookie_attributes: Option<CookieExpectation>,
    /// Request headers the app (httpbin) echoed back as received.
    #[serde(default)]
    pub app_received_headers: Vec<String>,
    #[serde(default)]
    pub app_did_not_receive_headers: Vec<String>,
    /// No JWT the app received, in any request header, had expired: the deployment renewed
    /// the session's tokens or asked the user to sign in again (a page that is not the app's
    /// echo passes: the app was not reached).
    #[serde(default)]
    pub no_expired_token_forwarded: Option<bool>,
    /// No response this browser got so far handed it a token or an identity header meant
    /// for the app (`Authorization`, `X-Auth-Request-*`, `X-Forwarded-User` and kin, in any
    /// spelling, or any header holding a JWT). The app's own echo body is the app's business.
    #[serde(default)]
    pub no_identity_sent_to_browser: Option<bool>,
    /// The page tells browsers not to let another site frame it (clickjacking): CSP
    /// `frame-ancestors` without wildcards, or, without one, `X-Frame-Options` DENY or
    /// SAMEORIGIN.
    #[serde(default)]
    pub not_frameable: Option<bool>,
}

/// Expected attributes of a cookie; absent fields are not checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CookieExpectation {
    pub name: String,
    #[serde(default)]
    pub secure: Option<bool>,
    #[serde(default)]
    pub http_only: Option<bool>,
    /// `Lax`, `Strict` or `None` (case-insensitive).
    #[serde(default)]
    pub same_site: Option<String>,
    /// No `Domain` attribute: the cookie goes back to the app's host only, never to
    /// sibling hosts under a shared domain.
    #[serde(default)]
    pub host_only: Option<bool>,
    /// The `Path` attribute, exactly.
    #[serde(default)]
    pub path: Option<String>,
    /// Not `SameSite=Strict`: the IdP sends the browser back to the callback cross-site,
    /// and a strict CSRF or session cookie is then withheld, so real browsers cannot sign in.
    #[serde(default)]
    pub not_strict: Option<bool>,
    /// Not `SameSite=None`: such a cookie goes with every cross-site request, so a form
    /// posted from any site arrives signed in (cross-site request forgery).
    #[serde(default)]
    pub not_none: Option<bool>,
    /// At most this many bytes of value, its pieces (`name_0`, `name_1`, ...) together: a
    /// session kept server-side leaves only a ticket in the cookie, one that holds the
    /// tokens runs to kilobytes.
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

/// How a `tamper_cookie` step changes the session cookie.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Tampering {
    /// One character of the value changed, the signature kept.
    Value,
    /// Signed again with another deployment's secret (oauth2-proxy's `value|time|HMAC`
    /// format; other formats get their last characters changed).
    OtherSecret,
    /// The signature removed.
    Unsigned,
    /// The cookie deleted from the browser (e.g. the CSRF cookie before the callback).
    Removed,
}

/// The whole catalog, in file order.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub suites: Vec<Suite>,
}

/// A scenario's stable name: `suite::id`, as used in test names and filters.
pub fn qualified_name(suite: &Suite, scenario: &Scenario) -> String {
    format!("{}::{}", suite.suite, scenario.id)
}

impl Catalog {
    /// Parses and validates one suite file's text.
    pub fn parse_suite(file: &str, text: &str) -> Result<Suite, ScenarioError> {
        let mut suite: Suite = serde_saphyr::from_str(text).map_err(|e| ScenarioError::Parse {
            file: file.to_string(),
            message: e.to_string().trim_start_matches("error: ").to_string(),
        })?;
        suite.file = file.to_string();
        validate_suite(&suite)?;
        Ok(suite)
    }

    /// Builds a catalog from `(file name, text)` pairs.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ScenarioError> {
        let mut suites = Vec::new();
        for (file, text) in sources {
            suites.push(Self::parse_suite(file, text)?);
        }
        let catalog = Self { suites };
        catalog.check_unique_names()?;
        Ok(catalog)
    }

    /// Loads every `*.yaml` file in `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Self, ScenarioError> {
        let io = |source| ScenarioError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        let mut sources = Vec::new();
        for path in &files {
            let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
                path: path.clone(),
                source,
            })?;
            sources.push((path.display().to_string(), text));
        }
        if sources.is_empty() {
            return Err(ScenarioError::Catalog {
                file: dir.display().to_string(),
                message: "no *.yaml scenario files in this directory".into(),
            });
        }
        Self::from_sources(sources.iter().map(|(f, t)| (f.as_str(), t.as_str())))
    }

    /// The catalog compiled into the binary (the repository's `scenarios/`).
    pub fn builtin() -> Self {
        Self::from_sources(crate::embedded::SCENARIOS.iter().copied())
            .expect("the built-in catalog is validated by the test suite")
    }

    fn check_unique_names(&self) -> Result<(), ScenarioError> {
        let mut seen = std::collections::BTreeMap::new();
        for suite in &self.suites {
            for scenario in &suite.scenarios {
                let name = qualified_name(suite, scenario);
                if let Some(other) = seen.insert(name.clone(), suite.file.clone()) {
                    return Err(ScenarioError::Catalog {
                        file: suite.file.clone(),
                        message: format!("scenario {name} is also defined in {other}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Scenarios whose qualified name contains any of `filters` (all when empty).
    pub fn select<'a>(&'a self, filters: &[String]) -> Vec<(&'a Suite, &'a Scenario)> {
        self.suites
            .iter()
            .flat_map(|suite| suite.scenarios.iter().map(move |s| (suite, s)))
            .filter(|(suite, s)| {
                let name = qualified_name(suite, s);
                filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
            })
            .collect()
    }
}

fn validate_suite(suite: &Suite) -> Result<(), ScenarioError> {
    let catalog_error = |message: String| ScenarioError::Catalog {
        file: suite.file.clone(),
        message,
    };
    if !is_identifier(&suite.suite) {
        return Err(catalog_error(format!(
            "suite name {:?} must be lower_snake_case (it becomes part of test names)",
            suite.suite
        )));
    }
    if suite.scenarios.is_empty() {
        return Err(catalog_error("a suite needs at least one scenario".into()));
    }
    if let Some(profile) = &suite.stack {
        profile.validate().map_err(|message| {
            catalog_error(format!("stack profile of suite {}: {message}", suite.suite))
        })?;
    }
    for scenario in &suite.scenarios {
        if let Some(profile) = &scenario.stack {
            profile.validate().map_err(|message| {
                catalog_error(format!(
                    "stack profile of scenario {}: {message}",
                    scenario.id
                ))
            })?;
        }
        if !is_identifier(&scenario.id) {
            return Err(catalog_error(format!(
                "scenario id {:?} must be lower_snake_case (it becomes a test name)",
                scenario.id
            )));
        }
        if scenario.steps.is_empty() {
            return Err(catalog_error(format!(
                "scenario {} has no steps",
                scenario.id
            )));
        }
        let mut has_check = false;
        for (index, step) in scenario.steps.iter().enumerate() {
            let invalid = |message: String| ScenarioError::Invalid {
                file: suite.file.clone(),
                scenario: scenario.id.clone(),
                step: index + 1,
                message,
            };
            for text in step.templated_strings() {
                check_variables(text).map_err(invalid)?;
            }
            if let Step::Expect(expectation) = step {
                if **expectation == ResponseExpectation::default() {
                    return Err(invalid(
                        "an expect step must check at least one thing".into(),
                    ));
                }
                if expectation
                    .connection
                    .is_some_and(|c| c != ConnectionExpectation::Answered)
                    && **expectation
                        != (ResponseExpectation {
                            connection: expectation.connection,
                            ..ResponseExpectation::default()
                        })
                {
                    return Err(invalid(
                        "connection: rejected (or refused) means there may be no response, so nothing else of it can be checked; \
                         move the other checks to an expect after a request that is answered"
                            .into(),
                    ));
                }
                has_check = true;
            }
            if let Step::Probe(probe) = step {
                if probe.requests.is_empty() {
                    return Err(catalog_error(format!(
                        "scenario {}: a probe step needs at least one request",
                        scenario.id
                    )));
                }
                if probe.attack != Attack::UnauthenticatedReach
                    && (probe.reference != ProbeReference::Session
                        || probe.attacker != ProbeAttacker::Anonymous)
                {
                    return Err(invalid(
                        "reference and attacker choose the standings of an unauthenticated_reach probe; other attacks send as they describe".into(),
                    ));
                }
                let granted_before = scenario.steps[..index].iter().any(|s| {
                    matches!(
                        s,
                        Step::TokenGrant {
                            credentials: Credentials::TestUser
                        }
                    )
                });
                if probe.reference == ProbeReference::Bearer && !granted_before {
                    return Err(invalid(
                        "a probe with reference: bearer sends the test user's token: put a token_grant step (the test user's credentials) before it".into(),
                    ));
                }
                has_check = true;
            }
            if let Step::ExpectJwt { .. } | Step::AuditConfig {} = step {
                has_check = true;
            }
            if let Step::TlsOffers { offers, .. } = step {
                // A refusal is judged against the control; without it, it proves nothing.
                if !offers.contains(&TlsOfferKind::Current) {
                    return Err(invalid(
                        "tls_offers needs the control: list `current` among the offers, the \
                         offer a listener must take for its refusals of the others to count"
                            .into(),
                    ));
                }
                has_check = true;
            }
            if let Step::ExpectImpostorRefused {} = step {
                // Without one in place there is nothing to ask, and the check could only fail.
                let impersonated = scenario.steps[..index].iter().any(|earlier| {
                    matches!(
                        earlier,
                        Step::Disrupt {
                            component: Part::App,
                            action: Disruption::Impersonate
                        }
                    )
                });
                if !impersonated {
                    return Err(invalid(
                        "expect_impostor_refused needs an impostor in place: a `disrupt` of \
                         component app with action impersonate before it"
                            .into(),
                    ));
                }
                has_check = true;
            }
            if let Step::BearerMatrix(matrix) = step {
                if matrix.accepted.is_empty() && matrix.refused.is_empty() {
                    return Err(invalid(
                        "a bearer_matrix needs at least one token in accepted or refused".into(),
                    ));
                }
                // A refusal alone proves nothing: a route that refuses every token looks the
                // same. The session (with_session) or an accepted token is the control.
                if !matrix.refused.is_empty() && matrix.accepted.is_empty() && !matrix.with_session
                {
                    return Err(invalid(
                        "a bearer_matrix that expects refusals needs an accepted control: list a \
                         token that must reach the app under accepted (e.g. granted, after a \
                         token_grant step), or send the refused ones with_session"
                            .into(),
                    ));
                }
                has_check = true;
            }
        }
        if !has_check {
            return Err(catalog_error(format!(
                "scenario {} checks nothing: add an expect, expect_jwt, probe, bearer_matrix or tls_offers step",
                scenario.id
            )));
        }
    }
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalog_is_valid() {
        let catalog = Catalog::from_sources(crate::embedded::SCENARIOS.iter().copied()).unwrap();
        assert!(catalog.select(&[]).len() >= 9);
        assert_eq!(
            catalog
                .select(&["seed000_browser_sso::browser_login".into()])
                .len(),
            1
        );
    }

    fn parse(text: &str) -> Result<Suite, ScenarioError> {
        Catalog::parse_suite("s.yaml", text)
    }

    #[test]
    fn invalid_suites_are_rejected_with_the_reason() {
        let head = "suite: s\ndescription: d\nscenarios:\n  - id: one\n    title: t\n    steps:\n";
        let cases = [
            ("      - op: open\n        url: x\n", "checks nothing"),
            (
                "      - op: open\n        url: x\n      - op: expect\n",
                "must check at least one thing",
            ),
            (
                "      - op: expect\n        status: 200\n        stauts: 1\n",
                "unknown field `stauts`",
            ),
            (
                "      - op: expect_jwt\n        token: forwarded\n        claims:\n          iss: { equal: x }\n",
                "unknown variant `equal`",
            ),
            (
                "      - op: request\n        url: ${sidecar}/headers\n        as: sleep\n",
                "unknown variant `sleep`, expected one of mesh_workload, outside_mesh",
            ),
            (
                "      - op: bearer_matrix\n        url: x\n        refused: [forged]\n",
                "needs an accepted control",
            ),
            (
                "      - op: expect\n        connection: closed\n",
                "unknown variant `closed`, expected one of answered, rejected, refused",
            ),
            (
                "      - op: expect\n        connection: rejected\n        status: 403\n",
                "connection: rejected (or refused) means there may be no response",
            ),
            (
                "      - op: request\n        url: ${sidecr}/headers\n      - op: expect\n        status: 1\n",
                "unknown variable ${sidecr}",
            ),
            (
                "      - op: probe\n        attack: unauthenticated_reach\n        reference: bearer\n        requests: [{ path: /x }]\n",
                "put a token_grant step (the test user's credentials) before it",
            ),
            (
                "      - op: token_grant\n        credentials: second_user\n      - op: probe\n        attack: unauthenticated_reach\n        reference: bearer\n        requests: [{ path: /x }]\n",
                "put a token_grant step (the test user's credentials) before it",
            ),
            (
                "      - op: probe\n        attack: forged_identity\n        attacker: second_user_bearer\n        requests: [{ path: /x }]\n",
                "reference and attacker choose the standings of an unauthenticated_reach probe",
            ),
            (
                "      - op: expect\n        refused_by: [oauth2_proxy]\n",
                "unknown variant `oauth2_proxy`, expected one of jwt_authn, rbac, sign_in",
            ),
            (
                "      - op: expect_impostor_refused\n      - op: disrupt\n        component: app\n        action: impersonate\n",
                "needs an impostor in place",
            ),
        ];
        for (steps, reason) in cases {
            let error = parse(&format!("{head}{steps}")).unwrap_err().to_string();
            assert!(error.starts_with("s.yaml: "), "{error}");
            assert!(error.contains(reason), "{reason}: {error}");
        }
        let bad_id = parse(
            "suite: s\ndescription: d\nscenarios:\n  - id: Bad-Id\n    title: t\n    steps:\n      - op: expect\n        status: 1\n",
        );
        assert!(
            bad_id
                .unwrap_err()
                .to_string()
                .contains("must be lower_snake_case")
        );
    }

    #[test]
    fn stack_profiles_are_inherited_and_checked() {
        let suite = parse(
            "suite: s\ndescription: d\nstack:\n  sidecar:\n    peer_authentication: strict\nscenarios:\n  - id: one\n    title: t\n    steps:\n      - op: expect\n        status: 1\n  - id: two\n    title: t\n    stack:\n      sidecar: { peer_authentication: disable }\n    steps:\n      - op: expect\n        status: 1\n",
        )
        .unwrap();
        use crate::policy::PeerAuthenticationMode::{Disable, Strict};
        let modes: Vec<_> = suite
            .scenarios
            .iter()
            .map(|s| s.profile(&suite).sidecar.unwrap().peer_authentication)
            .collect();
        assert_eq!(modes, [Strict, Disable]);
        let bad = parse(
            "suite: s\ndescription: d\nstack:\n  sidecar: { authorization: request_principal }\nscenarios:\n  - id: one\n    title: t\n    steps:\n      - op: expect\n        status: 1\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            bad,
            "s.yaml: stack profile of suite s: authorization request_principal needs request_authentication: true \
             (without a RequestAuthentication no request has a principal, so every request is 403)"
        );
        let typo = parse(
            "suite: s\ndescription: d\nstack:\n  sidecar: { peer_authentication: strict }\n  gateway: {}\nscenarios: []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(typo.contains("unknown field `gateway`"), "{typo}");
    }

    #[test]
    fn duplicate_names_across_files_are_rejected() {
        let text = "suite: s\ndescription: d\nscenarios:\n  - id: one\n    title: t\n    steps:\n      - op: expect\n        status: 1\n";
        let error = Catalog::from_sources([("a.yaml", text), ("b.yaml", text)])
            .unwrap_err()
            .to_string();
        assert_eq!(error, "b.yaml: scenario s::one is also defined in a.yaml");
    }
}
