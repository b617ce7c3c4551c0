//! The run's secrets: made anew for each run, registered with the redactor before anything
//! renders them, and handed to the engine through the endpoints.

use crate::env::names::{OTHER_CLIENT_ID, SECOND_EMAIL, SECOND_USERNAME};
use crate::env::{ClientCredentials, Endpoints, EnvError, TestUser, pki};
use crate::oidc::forge::SigningKey;
use crate::redact::{Redactor, Secret};

pub(super) struct Secrets {
    pub(super) realm: RealmSecrets,
    pub(super) cookie_secret: Secret,
    pub(super) admin_password: Secret,
    pub(super) redis_password: Secret,
    /// Signs the second OpenID Provider's cookies.
    pub(super) oidc_idp_cookie_key: Secret,
    /// Lets the harness make the second OpenID Provider issue wrong ID tokens (a scenario's
    /// disruption), and nobody else.
    pub(super) oidc_idp_control_token: Secret,
}

/// The secrets the realm is imported with.
#[derive(Debug, Clone)]
pub struct RealmSecrets {
    pub client_secret: Secret,
    pub user_password: Secret,
    pub second_user_password: Secret,
    pub other_client_secret: Secret,
    /// The realm's client at the upstream IdP it brokers to, and the user who exists only there.
    pub upstream_client_secret: Secret,
    pub upstream_user_password: Secret,
    pub upstream_second_user_password: Secret,
    /// A key the realm publishes (and signs nothing with) whose private half the harness
    /// holds, to mint tokens that differ from real ones in one claim only.
    pub test_signing_key: SigningKey,
}

impl RealmSecrets {
    pub fn generate() -> Result<Self, EnvError> {
        Ok(Self {
            client_secret: Secret::generate(24),
            user_password: Secret::generate(18),
            second_user_password: Secret::generate(18),
            other_client_secret: Secret::generate(24),
            upstream_client_secret: Secret::generate(24),
            upstream_user_password: Secret::generate(18),
            upstream_second_user_password: Secret::generate(18),
            test_signing_key: SigningKey::generate().map_err(pki::PkiError::from)?,
        })
    }

    pub(in crate::env) fn register(&self, redactor: &Redactor) {
        for secret in [
            &self.client_secret,
            &self.user_password,
            &self.second_user_password,
            &self.other_client_secret,
            &self.upstream_client_secret,
            &self.upstream_user_password,
            &self.upstream_second_user_password,
            &self.test_signing_key.private_key_pem,
        ] {
            redactor.register(secret);
        }
    }

    /// The users, clients and key the engine uses, in an environment's endpoints.
    pub(in crate::env) fn fill(&self, endpoints: &mut Endpoints) {
        endpoints.client_secret = self.client_secret.clone();
        endpoints.user.password = self.user_password.clone();
        endpoints.second_user = Some(TestUser {
            username: SECOND_USERNAME.to_string(),
            password: self.second_user_password.clone(),
            email: SECOND_EMAIL.to_string(),
        });
        endpoints.other_client = Some(ClientCredentials {
            id: OTHER_CLIENT_ID.to_string(),
            secret: self.other_client_secret.clone(),
        });
        endpoints.signing_key = Some(self.test_signing_key.clone());
    }
}
