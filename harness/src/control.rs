//! What the runner may ask of an environment before and during a scenario: bring it to the
//! stack profile the scenario needs (`stack:` in the catalog), and disrupt one of its parts
//! (stop it, or freeze it as a hung service) and restore it, for the fail-closed checks.
//! Environments implement it; the engine only calls it, so neither reaches into the other.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::policy::StackProfile;

/// A part of the deployment, by the role it plays.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The external authorization service the gateway asks (oauth2-proxy).
    AuthService,
    /// The identity provider (Keycloak).
    Idp,
    /// The protected application (httpbin).
    App,
    /// The auth service's server-side session store (redis), where it has one.
    SessionStore,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::AuthService, Part::Idp, Part::App, Part::SessionStore];

    pub fn name(self) -> &'static str {
        match self {
            Part::AuthService => "auth_service",
            Part::Idp => "idp",
            Part::App => "app",
            Part::SessionStore => "session_store",
        }
    }
}

/// How a part is disrupted.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Disruption {
    /// Stopped: connections to it are refused.
    Stop,
    /// Frozen (SIGSTOP, or the environment's own pause command): connections are accepted
    /// and never answered, as with a hung service; callers wait for their timeouts.
    Pause,
    /// The test user's sessions ended there (an administrator signing her out everywhere, as
    /// when an account is disabled): the IdP only. Nothing to undo.
    RevokeSessions,
    /// An impostor in its place at its in-mesh address, holding a certificate for its identity
    /// from a CA the mesh does not trust: the app only.
    Impersonate,
    /// The test user's account disabled (an administrator locking it): the IdP only; enabled
    /// again on restore.
    DisableUser,
    /// The tokens it issues from now on expire within seconds, so a scenario can watch a
    /// session outlive its tokens: the IdP only; its own lifetime back on restore.
    ShortLivedTokens,
    /// Every ID token it issues from now on is wrong in one way (a hostile or broken IdP):
    /// the IdP only, the second OpenID Provider's fault-injection route; honest on restore.
    ForgeIdTokens(IdTokenFault),
}

/// One way an ID token can be wrong; a relying party must refuse each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdTokenFault {
    /// `nonce` other than the one the sign-in sent (a replayed or injected ID token).
    WrongNonce,
    /// `iss` another issuer's.
    WrongIssuer,
    /// `aud` another client's.
    WrongAudience,
    /// `exp` an hour ago.
    Expired,
    /// `alg: none`, no signature.
    AlgNone,
    /// Signed with a key the IdP does not publish.
    ForeignKey,
}

impl IdTokenFault {
    /// The name the IdP's fault-injection route takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::WrongNonce => "wrong_nonce",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Expired => "expired",
            Self::AlgNone => "alg_none",
            Self::ForeignKey => "foreign_key",
        }
    }
}

impl Disruption {
    /// What is done, as a verb phrase ("stop the idp").
    pub fn verb(self) -> &'static str {
        match self {
            Disruption::Stop => "stop",
            Disruption::Pause => "freeze (as if hung)",
            Disruption::RevokeSessions => "end the test user's sessions at",
            Disruption::Impersonate => "put an impostor (its identity, another CA) in place of",
            Disruption::DisableUser => "disable the test user's account at",
            Disruption::ShortLivedTokens => "make short-lived the tokens issued by",
            Disruption::ForgeIdTokens(_) => "make wrong the ID tokens issued by",
        }
    }

    /// Which environments can do it, for the note on a scenario left out without it.
    pub fn offered_by(self) -> &'static str {
        match self {
            Disruption::Stop | Disruption::Pause => {
                "control commands in the environment file, or --env local"
            }
            Disruption::RevokeSessions => {
                "a revoke_sessions command in the environment file, or --env local with Keycloak"
            }
            Disruption::Impersonate => "only --env local, which runs the mesh",
            Disruption::DisableUser => {
                "disable_user and enable_user commands in the environment file, or --env local \
                 with Keycloak"
            }
            Disruption::ShortLivedTokens => {
                "short_lived_tokens and usual_tokens commands in the environment file, or --env \
                 local with Keycloak"
            }
            Disruption::ForgeIdTokens(_) => {
                "only --env local signing in at the second OpenID Provider (its fault-injection \
                 route)"
            }
        }
    }
}

/// How one connection to an impostor (`Disruption::Impersonate`) went, as the impostor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// The caller aborted the handshake with this TLS alert about the impostor's certificate
    /// (`UnknownCA`, `BadCertificate`, ...): it verified the certificate and refused it.
    CertificateRefused(String),
    /// The handshake failed otherwise (another alert, closed, reset, not TLS).
    Failed(String),
    /// The handshake completed: the caller took the impostor for the workload; `request`
    /// says whether it went on to send a request, which the impostor answered.
    Completed { request: bool },
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + 'a>>;

/// An environment the runner can reconfigure or disrupt.
pub trait StackControl {
    /// Reconfigures to `profile` (a no-op when nothing changes), or says why it cannot.
    fn apply<'a>(&'a mut self, profile: &'a StackProfile) -> Pending<'a, ()>;

    /// Whether [`StackControl::apply`] can bring the environment to `profile`, for a scenario
    /// that does (`uses_mesh`) or does not call into the mesh: a local stack to any, a user's
    /// deployment only to what it is (its declared mesh policy).
    fn accepts_profile(&self, profile: &StackProfile, uses_mesh: bool) -> bool;

    /// Whether [`StackControl::disrupt`] can disrupt `part` this way.
    fn can_disrupt(&self, part: Part, disruption: Disruption) -> bool;

    /// Stops or freezes `part`.
    fn disrupt(&mut self, part: Part, disruption: Disruption) -> Pending<'_, ()>;

    /// Brings `part` back as it was before it was disrupted, ready to serve.
    fn restore(&mut self, part: Part) -> Pending<'_, ()>;

    /// What the impostor in place (`Disruption::Impersonate`) has seen of its callers so far;
    /// `None` when there is none in place.
    fn impostor_handshakes(&self) -> Pending<'_, Option<Vec<Handshake>>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Where the deployment is reached now, when a profile can move it (another IdP, the app
    /// on another listener); `None`: as it was when the run began.
    fn endpoints(&self) -> Option<crate::endpoints::Endpoints> {
        None
    }

    /// The deployment's configuration as it is now, for the configuration findings; empty
    /// when the environment has none to show.
    fn config_files(&self) -> Result<Vec<crate::audit::ConfigFile>, String> {
        Ok(Vec::new())
    }

    /// Whether [`StackControl::config_files`] has anything to audit.
    fn has_config_files(&self) -> bool {
        false
    }
}

/// An environment the harness does not control (a user's deployment without control
/// commands): it runs scenarios that need the default profile and nothing disrupted.
pub struct Uncontrolled;

/// For environments the harness cannot reconfigure: fine for the default profile, else why not.
pub fn default_profile_only(profile: &StackProfile) -> Result<(), String> {
    if profile.is_default() {
        Ok(())
    } else {
        Err(format!(
            "this scenario needs the stack profile {}, and this environment cannot be \
             reconfigured by the harness\nhow to fix: run it with --env local, or deselect it",
            serde_json::to_string(profile).unwrap_or_default()
        ))
    }
}

impl StackControl for Uncontrolled {
    fn apply<'a>(&'a mut self, profile: &'a StackProfile) -> Pending<'a, ()> {
        Box::pin(std::future::ready(default_profile_only(profile)))
    }

    fn accepts_profile(&self, profile: &StackProfile, _uses_mesh: bool) -> bool {
        profile.is_default()
    }

    fn can_disrupt(&self, _: Part, _: Disruption) -> bool {
        false
    }

    fn disrupt(&mut self, part: Part, _: Disruption) -> Pending<'_, ()> {
        Box::pin(std::future::ready(Err(format!(
            "this environment gives the harness no way to disrupt the {}\nhow to fix: run with \
             --env local, or name control commands in the environment file",
            part.name()
        ))))
    }

    fn restore(&mut self, _: Part) -> Pending<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}
