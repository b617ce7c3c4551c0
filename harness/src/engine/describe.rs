//! Each step in one line, for reports: what it does, with its variables expanded (and redacted
//! by the caller).

use super::Engine;
use crate::scenario::{Caller, Step};

impl Engine {
    pub(super) fn describe(&self, step: &Step) -> String {
        match step {
            Step::Open { url } => format!("open {}", self.vars.expand(url)),
            Step::SignIn { credentials, via } => format!(
                "sign in as {} ({credentials:?}){}",
                self.credentials(*credentials)
                    .map(|(user, _)| user)
                    .unwrap_or_default(),
                via.as_ref()
                    .map(|alias| format!(" at the upstream IdP {alias}"))
                    .unwrap_or_default()
            ),
            Step::Request {
                url,
                bearer,
                caller,
            } => {
                let mut text = format!("request {}", self.vars.expand(url));
                if let Some(caller) = caller {
                    text.push_str(match caller {
                        Caller::MeshWorkload => " as the in-mesh workload sleep (mTLS)",
                        Caller::OutsideMesh => " from outside the mesh (no client certificate)",
                        Caller::UntrustedCaWorkload => {
                            " as sleep with a certificate from a CA the mesh does not trust"
                        }
                        Caller::ExpiredCertificateWorkload => {
                            " as sleep with an expired mesh certificate"
                        }
                        Caller::ForeignTrustDomainWorkload => {
                            " with a mesh-CA certificate of another trust domain"
                        }
                    });
                }
                match bearer {
                    Some(bearer) => format!("{text} with {bearer:?} bearer token"),
                    None => format!("{text} without a token"),
                }
            }
            Step::TokenGrant { credentials } => format!(
                "password grant for {} ({credentials:?})",
                self.credentials(*credentials)
                    .map(|(user, _)| user)
                    .unwrap_or_default()
            ),
            Step::Expect(_) => "check the last response".to_string(),
            Step::Probe(probe) => format!(
                "probe {:?} with {} attack request(s)",
                probe.attack,
                probe.requests.len()
            ),
            Step::TlsOffers { url, offers } => format!(
                "ask {} for a TLS handshake with {} offer(s): {offers:?}",
                self.vars.expand(url),
                offers.len()
            ),
            Step::ExpectJwt {
                token,
                claims,
                lifetime_at_most_seconds,
            } => match lifetime_at_most_seconds {
                Some(bound) => format!(
                    "verify the {token:?} JWT, {} claim(s) and a lifetime of at most {bound}s",
                    claims.len()
                ),
                None => format!("verify the {token:?} JWT and {} claim(s)", claims.len()),
            },
            Step::Disrupt { component, action } => {
                format!("{} the {}", action.verb(), component.name())
            }
            Step::Restore { component } => format!("restore the {}", component.name()),
            Step::ExpectImpostorRefused {} => {
                "check how the impostor's callers ended their handshakes".to_string()
            }
            Step::TamperCookie { name, how } => {
                format!("tamper with cookie {} ({how:?})", self.vars.expand(name))
            }
            Step::KeepCookie { name } => {
                format!("keep a copy of cookie {}", self.vars.expand(name))
            }
            Step::PutBackCookie { name } => {
                format!(
                    "put the kept copy of cookie {} back",
                    self.vars.expand(name)
                )
            }
            Step::AuditConfig {} => "audit the deployment's configuration files".to_string(),
            Step::RefreshTokenReuse {} => "redeem the granted refresh token twice at once, then \
                 once more"
                .to_string(),
            Step::ReplayCallback {} => "send the sign-in's callback (its code and state) again \
                 from a new browser holding only the kept cookies"
                .to_string(),
            Step::WaitForSessionRefresh {} => format!(
                "wait {} s: the session refresh interval, and a second",
                self.session_refresh_wait().as_secs()
            ),
            Step::WaitForTokenExpiry {} => {
                "wait until the tokens the app received have expired, and a second".to_string()
            }
            Step::BearerMatrix(matrix) => format!(
                "send {} bearer token(s) to {}{}",
                matrix.accepted.len() + matrix.refused.len(),
                self.vars.expand(&matrix.url),
                if matrix.with_session {
                    ", the refused ones also with the session"
                } else {
                    ""
                }
            ),
        }
    }
}
