//! Checks on what earlier steps got: the last response (`expect`), a token's signature,
//! lifetime and claims (`expect_jwt`), and attack requests judged on evidence (`probe`).

use super::{CLOCK_SKEW_SECONDS, Engine, ScenarioState, StepOutput, expect, probe};
use crate::browser::Page;
use crate::oidc;
use crate::scenario::{Probe, ResponseExpectation, TokenSource};

impl Engine {
    /// Without a response (the caller's connection was refused) only the refusal is judged.
    pub(super) fn expect_response(
        &self,
        expectation: &ResponseExpectation,
        state: &ScenarioState,
    ) -> Result<StepOutput, String> {
        if let Some(reason) = &state.rejected {
            return Ok(StepOutput {
                checks: expect::check_without_response(expectation, reason),
                jwt: None,
            });
        }
        let page = state
            .last
            .as_ref()
            .ok_or("nothing to check: no request was made yet")?;
        let checks = expect::check_response(
            expectation,
            page,
            &state.browser,
            &self.endpoints,
            &self.vars,
        );
        Ok(StepOutput { checks, jwt: None })
    }

    /// The session's cookie goes along, so that attacks are judged both with and without it.
    pub(super) async fn probe(
        &self,
        attack: &Probe,
        state: &ScenarioState,
    ) -> Result<StepOutput, String> {
        use crate::scenario::{Credentials, ProbeAttacker, ProbeReference};
        let reference = match attack.reference {
            ProbeReference::Session => state
                .browser
                .cookie_header_for(&self.endpoints.app)
                .map(probe::ProbeCredential::Cookie),
            ProbeReference::Bearer => state.granted.clone().map(probe::ProbeCredential::Bearer),
        };
        let attacker = match attack.attacker {
            ProbeAttacker::Anonymous => None,
            ProbeAttacker::SecondUserBearer => {
                let (answer, token, _) = self.password_grant_for(Credentials::SecondUser).await?;
                let token = token.ok_or_else(|| {
                    format!(
                        "the second user's token grant gave no access token ({} at {})",
                        answer.status, answer.url
                    )
                })?;
                Some(probe::ProbeCredential::Bearer(token))
            }
        };
        let checks = probe::run(
            attack,
            &self.endpoints.app,
            &self.raw,
            &self.vars,
            &probe::Standings {
                reference,
                attacker,
            },
        )
        .await?;
        Ok(StepOutput { checks, jwt: None })
    }

    pub(super) async fn expect_jwt(
        &self,
        token: TokenSource,
        claims: &std::collections::BTreeMap<String, oidc::ClaimExpectation>,
        lifetime_at_most_seconds: Option<i64>,
        state: &ScenarioState,
    ) -> Result<StepOutput, String> {
        let raw = match token {
            TokenSource::Granted => state
                .granted
                .as_ref()
                .map(|t| t.expose().to_string())
                .ok_or("no token: run a successful token_grant step first")?,
            TokenSource::Forwarded | TokenSource::ForwardedAccessToken => {
                let page = state
                    .last
                    .as_ref()
                    .ok_or("nothing to check: no request was made yet")?;
                if token == TokenSource::Forwarded {
                    forwarded_bearer(page)?
                } else {
                    forwarded_header(page, "X-Auth-Request-Access-Token")?
                }
            }
        };
        let mut output = self.verify_jwt(&raw, claims).await?;
        if let (Some(bound), Some(jwt)) = (lifetime_at_most_seconds, &output.jwt) {
            output
                .checks
                .push(oidc::check_lifetime_bound(&jwt.claims, bound));
        }
        Ok(output)
    }

    async fn verify_jwt(
        &self,
        token: &str,
        claims: &std::collections::BTreeMap<String, oidc::ClaimExpectation>,
    ) -> Result<StepOutput, String> {
        let decoded = oidc::decode_unverified(token).map_err(|e| e.to_string())?;
        // Fetched per check, not cached: the check is against what the IdP publishes now.
        let discovery = self.discovery().await?;
        let jwks = oidc::fetch_jwks(&self.http, &discovery)
            .await
            .map_err(|e| e.to_string())?;
        let mut checks = vec![oidc::verify_signature(token, &jwks)];
        checks.extend(oidc::check_lifetime(
            &decoded.claims,
            oidc::now_unix(),
            CLOCK_SKEW_SECONDS,
        ));
        for (name, expectation) in claims {
            let expectation = expectation.map_strings(&|s| self.vars.expand(s));
            checks.push(oidc::check_claim(
                &decoded.claims,
                &self.vars.expand(name),
                &expectation,
            ));
        }
        Ok(StepOutput {
            checks,
            jwt: Some(decoded),
        })
    }
}

/// The bearer token in the `Authorization` header httpbin echoed on `page`.
pub fn forwarded_bearer(page: &Page) -> Result<String, String> {
    forwarded_header(page, "Authorization")?
        .strip_prefix("Bearer ")
        .map(str::to_string)
        .ok_or_else(|| "the app's Authorization header is not a Bearer token".to_string())
}

/// A header httpbin echoed on `page` as received by the app.
fn forwarded_header(page: &Page, wanted: &str) -> Result<String, String> {
    let headers = expect::echoed_headers(page)
        .map_err(|got| format!("expected the app's echo of its request headers, got {got}"))?;
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
        .map(|(_, value)| value.clone())
        .ok_or_else(|| {
            let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "the app received no {wanted} header (it received: {})",
                names.join(", ")
            )
        })
}
