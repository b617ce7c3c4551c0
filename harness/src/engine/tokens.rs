//! Tokens: granted by the IdP (`token_grant`), or made, fetched or forged for a bearer header,
//! and the bearer matrix that sends each one and judges the answer.

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};

use super::{Engine, ScenarioState, StepOutput, bearer, expect};
use crate::browser::{Body, Page};
use crate::oidc;
use crate::redact::Secret;
use crate::scenario::{Bearer, BearerMatrix, Credentials};

impl Engine {
    pub(super) async fn token_grant(
        &self,
        credentials: Credentials,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let (page, token, refresh) = self.password_grant_for(credentials).await?;
        state.granted = token;
        state.granted_refresh = refresh;
        state.last = Some(page);
        Ok(StepOutput::default())
    }

    /// Redeems the granted refresh token twice at once, then once more. One redemption must
    /// succeed (the control: refresh works at all) and only one: an IdP that rotates refresh
    /// tokens refuses a used one, so a copy an attacker took stops working once its owner
    /// refreshes (and the IdP can tell that a token was stolen).
    pub(super) async fn refresh_token_reuse(
        &self,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let refresh = state.granted_refresh.clone().ok_or(
            "no refresh token: run a successful token_grant step first (an IdP that issued \
             none: Keycloak's client setting use.refresh.tokens is off)",
        )?;
        let discovery = self.discovery().await?;
        let redeem = || {
            oidc::refresh_grant(
                &self.http,
                &discovery.token_endpoint,
                &self.endpoints.client_id,
                &self.endpoints.client_secret,
                &refresh,
            )
        };
        let (first, second) = tokio::join!(redeem(), redeem());
        let (first, second) = (
            first.map_err(|e| e.to_string())?,
            second.map_err(|e| e.to_string())?,
        );
        let later = redeem().await.map_err(|e| e.to_string())?;
        for answer in [&first, &second, &later] {
            for token in [&answer.access_token, &answer.refresh_token]
                .into_iter()
                .flatten()
            {
                self.redactor.register(token);
            }
        }
        let checks = oidc::judge_refresh_reuse([&first, &second], &later);
        state.last = Some(Page {
            url: discovery.token_endpoint,
            status: later.status,
            headers: later.headers,
            body: later.body,
        });
        Ok(StepOutput { checks, jwt: None })
    }

    pub(super) async fn discovery(&self) -> Result<oidc::Discovery, String> {
        oidc::discover(&self.http, &self.endpoints.issuer)
            .await
            .map_err(|e| e.to_string())
    }

    pub(super) async fn password_grant_for(
        &self,
        credentials: Credentials,
    ) -> Result<(Page, Option<Secret>, Option<Secret>), String> {
        let discovery = self.discovery().await?;
        let (username, password) = self.credentials(credentials)?;
        let grant = oidc::password_grant(
            &self.http,
            &discovery.token_endpoint,
            &self.endpoints.client_id,
            &self.endpoints.client_secret,
            &username,
            &password,
        )
        .await
        .map_err(|e| e.to_string())?;
        for token in [&grant.access_token, &grant.refresh_token]
            .into_iter()
            .flatten()
        {
            self.redactor.register(token);
        }
        Ok((
            Page {
                url: discovery.token_endpoint,
                status: grant.status,
                headers: grant.headers,
                body: grant.body,
            },
            grant.access_token,
            grant.refresh_token,
        ))
    }

    /// The token `bearer` stands for, made or fetched now; every one is registered as a secret.
    /// `jwks` holds the IdP's key set once fetched, for every token of one step.
    pub(super) async fn bearer_token(
        &self,
        kind: Bearer,
        state: &ScenarioState,
        jwks: &tokio::sync::OnceCell<jsonwebtoken::jwk::JwkSet>,
    ) -> Result<String, String> {
        let granted = || {
            state
                .granted
                .as_ref()
                .map(|t| t.expose().to_string())
                .ok_or_else(|| {
                    format!("the {kind:?} bearer is made from the granted token: run a successful token_grant step first")
                })
        };
        let jwks = || {
            jwks.get_or_try_init(|| async {
                let discovery = self.discovery().await?;
                oidc::fetch_jwks(&self.http, &discovery)
                    .await
                    .map_err(|e| e.to_string())
            })
        };
        let other_client = || {
            self.endpoints.other_client.as_ref().ok_or(
                "this environment names no other client of the realm: add other_client to the \
                 environment file (see docs/existing-environment.md), or deselect this scenario"
                    .to_string(),
            )
        };
        let issued =
            |token: Option<Secret>, status: reqwest::StatusCode, body: &str, what: &str| {
                token.map(|t| t.expose().to_string()).ok_or_else(|| {
                    format!(
                        "the IdP issued no {what}: {} {}",
                        status.as_u16(),
                        expect::excerpt(body)
                    )
                })
            };
        let token = match bearer::source(kind) {
            bearer::Source::Granted => granted()?,
            bearer::Source::Invented(token) => token,
            bearer::Source::Forged(forgery) => {
                oidc::forge::forge(&granted()?, forgery, jwks().await?)
                    .map_err(|e| e.to_string())?
            }
            bearer::Source::Minted(minted) => {
                let key = self.endpoints.signing_key.as_ref().ok_or(
                    "this environment has no test signing key the IdP publishes: set \
                     test_signing_key_file in the environment file (see \
                     docs/existing-environment.md), or deselect this scenario",
                )?;
                oidc::forge::mint(&granted()?, minted, key, jwks().await?, oidc::now_unix())
                    .map_err(|e| e.to_string())?
            }
            bearer::Source::OtherClientPassword => {
                let client = other_client()?;
                let discovery = self.discovery().await?;
                let grant = oidc::password_grant(
                    &self.http,
                    &discovery.token_endpoint,
                    &client.id,
                    &client.secret,
                    &self.endpoints.user.username,
                    self.endpoints.user.password.expose(),
                )
                .await
                .map_err(|e| e.to_string())?;
                issued(
                    grant.access_token,
                    grant.status,
                    &grant.body,
                    "token to the other client",
                )?
            }
            bearer::Source::OtherClientService => {
                let client = other_client()?;
                let discovery = self.discovery().await?;
                let grant = oidc::client_credentials_grant(
                    &self.http,
                    &discovery.token_endpoint,
                    &client.id,
                    &client.secret,
                )
                .await
                .map_err(|e| e.to_string())?;
                issued(
                    grant.access_token,
                    grant.status,
                    &grant.body,
                    "service-account token",
                )?
            }
            bearer::Source::SecondUserPassword => {
                let (answer, token, _) = self.password_grant_for(Credentials::SecondUser).await?;
                issued(
                    token,
                    answer.status,
                    &answer.body,
                    "token to the second user",
                )?
            }
        };
        if !matches!(kind, Bearer::Forged | Bearer::Garbage) {
            self.redactor.register_str(&token);
        }
        Ok(token)
    }

    pub(super) async fn bearer_matrix(
        &self,
        matrix: &BearerMatrix,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let url = self.url(&matrix.url)?;
        let mut checks = Vec::new();
        let mut session = None;
        if matrix.with_session {
            if state.browser.cookie_header_for(&url).is_none() {
                return Err(
                    "with_session needs the scenario's session: put a sign_in step before it"
                        .into(),
                );
            }
            let nonce = bearer::nonce();
            let mut headers = HeaderMap::new();
            headers.insert(
                reqwest::header::HeaderName::from_static(bearer::NONCE_HEADER),
                HeaderValue::from_str(&nonce).map_err(|e| e.to_string())?,
            );
            let page = state
                .browser
                .send(Method::GET, url.clone(), &Body::Empty, &headers)
                .await
                .map_err(|e| e.to_string())?;
            let (control, identity) = bearer::judge_session(&page, &nonce);
            checks.push(control);
            match identity {
                Some(identity) => session = Some(identity),
                None => return Ok(StepOutput { checks, jwt: None }),
            }
        }
        let jwks = tokio::sync::OnceCell::new();
        let wanted = matrix
            .accepted
            .iter()
            .map(|b| (*b, true))
            .chain(matrix.refused.iter().map(|b| (*b, false)));
        for (kind, accept) in wanted {
            let token = self.bearer_token(kind, state, &jwks).await?;
            let nonce = bearer::nonce();
            let headers = bearer::headers(&token, &nonce)?;
            let anonymous = self
                .send_as(matrix.caller, state, url.clone(), &headers)
                .await?;
            checks.push(if accept {
                bearer::judge_accepted(kind, &anonymous, &nonce)
            } else {
                bearer::judge_refused(kind, &anonymous, &nonce)
            });
            if let (Some(session), false) = (&session, accept) {
                let nonce = bearer::nonce();
                let headers = bearer::headers(&token, &nonce)?;
                let page = state
                    .browser
                    .send(Method::GET, url.clone(), &Body::Empty, &headers)
                    .await
                    .map_err(|e| e.to_string())?;
                checks.push(bearer::judge_with_session(kind, &page, &nonce, session));
            }
        }
        Ok(StepOutput { checks, jwt: None })
    }
}
