//! Live changes at Keycloak through its admin API, so that neither needs a restart: where the
//! realm is published (`frontendUrl`), and a scenario's disruptions (the test user's sessions
//! ended, the user disabled, tokens made short-lived), each undone when the scenario restores
//! the IdP.

use super::LocalStack;
use crate::env::EnvError;
use crate::env::names::{SHORT_TOKEN_LIFETIME_SECONDS, USERNAME};
use crate::policy::KeycloakRealm;

/// How long Keycloak may take to delete a realm, or to create one from its JSON.
const REALM_IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Sends a call to Keycloak's admin API; a failure (no answer, or an error status) says what
/// was being done.
async fn idp_admin_call(
    request: reqwest::RequestBuilder,
    what: &'static str,
) -> Result<reqwest::Response, EnvError> {
    request
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|error| EnvError::IdpAdmin {
            what,
            detail: crate::error_chain(&error),
        })
}

/// The JSON body of an admin API answer.
async fn idp_admin_json(
    response: reqwest::Response,
    what: &'static str,
) -> Result<serde_json::Value, EnvError> {
    response.json().await.map_err(|error| EnvError::IdpAdmin {
        what,
        detail: error.to_string(),
    })
}

/// A live change a scenario made to the realm in use, and what undoes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum IdpChange {
    UserDisabled,
    TokenLifespan { was: i64 },
}

impl LocalStack {
    /// Moves the realm to another published address without restarting Keycloak: its
    /// `frontendUrl` (empty: the root of Keycloak's `--hostname`), set with the admin API.
    pub(super) async fn set_realm_frontend_url(&self, url: Option<&str>) -> Result<(), EnvError> {
        let keycloak = format!("http://127.0.0.1:{}", self.ports.keycloak);
        let token = self.keycloak_admin_token().await?;
        for realm in KeycloakRealm::ALL {
            let request = self
                .probe
                .put(format!("{keycloak}/admin/realms/{}", realm.name()))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "attributes": { "frontendUrl": url.unwrap_or("") } }));
            idp_admin_call(request, "set the realm's frontendUrl").await?;
        }
        self.append_stack_log(&format!(
            "keycloak: realms published at {} (frontendUrl, set live through the admin API)",
            url.unwrap_or("the root of its --hostname")
        ));
        Ok(())
    }

    /// Replaces `realm` at the running Keycloak with the one this configuration renders, as
    /// the import at start would make it: deleted, then created from the same JSON (clients,
    /// mappers, users, their credentials). Its sessions end and it gets new signing keys.
    pub(super) async fn import_realm_again(
        &self,
        realm: KeycloakRealm,
        frontend_url: Option<String>,
    ) -> Result<(), EnvError> {
        let keycloak = format!("http://127.0.0.1:{}", self.ports.keycloak);
        let token = self.keycloak_admin_token().await?;
        // Deleting and creating a realm takes seconds on a Keycloak that has just started (its
        // code not yet compiled): far longer than the probe client's 2 s, and a call given up
        // on goes on inside Keycloak, colliding with the next one.
        let delete = self
            .probe
            .delete(format!("{keycloak}/admin/realms/{}", realm.name()))
            .timeout(REALM_IMPORT_TIMEOUT)
            .bearer_auth(&token);
        let deleted = delete.send().await.map_err(|error| EnvError::IdpAdmin {
            what: "delete the realm before importing it again",
            detail: crate::error_chain(&error),
        })?;
        if !(deleted.status().is_success() || deleted.status() == reqwest::StatusCode::NOT_FOUND) {
            return Err(EnvError::IdpAdmin {
                what: "delete the realm before importing it again",
                detail: format!("status {}", deleted.status()),
            });
        }
        let rendered = self.render_realm(realm, frontend_url)?;
        let create = self
            .probe
            .post(format!("{keycloak}/admin/realms"))
            .timeout(REALM_IMPORT_TIMEOUT)
            .bearer_auth(&token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(rendered);
        idp_admin_call(create, "import the realm again").await?;
        self.append_stack_log(&format!(
            "keycloak: realm {} imported again live (its configuration changed)",
            realm.name()
        ));
        Ok(())
    }

    /// Ends every session of the test user in the realm in use, as an administrator's "sign
    /// out all sessions" does: her refresh tokens stop working at once.
    pub(super) async fn revoke_user_sessions(&self) -> Result<(), EnvError> {
        let token = self.keycloak_admin_token().await?;
        let user = self.keycloak_test_user(&token).await?;
        let request = self
            .probe
            .post(format!("{user}/logout"))
            .bearer_auth(&token);
        idp_admin_call(request, "end the test user's sessions").await?;
        self.append_stack_log(&format!(
            "keycloak: every session of {USERNAME} ended (a scenario's disruption)"
        ));
        Ok(())
    }

    /// The admin API's URL of the realm in use.
    fn keycloak_admin_realm(&self) -> String {
        format!(
            "http://127.0.0.1:{}/admin/realms/{}",
            self.ports.keycloak,
            self.config.realm.name()
        )
    }

    /// The admin API's URL of the test user in the realm in use.
    async fn keycloak_test_user(&self, token: &str) -> Result<String, EnvError> {
        let users = format!("{}/users", self.keycloak_admin_realm());
        let find = "find the test user";
        let request = self
            .probe
            .get(&users)
            .query(&[("username", USERNAME), ("exact", "true")])
            .bearer_auth(token);
        let found = idp_admin_json(idp_admin_call(request, find).await?, find).await?;
        let id = found[0]["id"].as_str().ok_or_else(|| EnvError::IdpAdmin {
            what: find,
            detail: format!("no user {USERNAME} in realm {}", self.config.realm.name()),
        })?;
        Ok(format!("{users}/{id}"))
    }

    /// How long the realm in use lets access and ID tokens live, in seconds.
    pub(super) async fn realm_token_lifespan(&self, token: &str) -> Result<i64, EnvError> {
        let read = "read the realm's token lifespan";
        let request = self
            .probe
            .get(self.keycloak_admin_realm())
            .bearer_auth(token);
        let realm = idp_admin_json(idp_admin_call(request, read).await?, read).await?;
        realm["accessTokenLifespan"]
            .as_i64()
            .ok_or_else(|| EnvError::IdpAdmin {
                what: read,
                detail: "the realm has no accessTokenLifespan".into(),
            })
    }

    /// Makes `change` to the realm in use live, or undoes it, with an admin `token`.
    pub(super) async fn change_realm(
        &self,
        token: &str,
        change: IdpChange,
        undo: bool,
    ) -> Result<(), EnvError> {
        let (what, url, representation, log) = match change {
            IdpChange::UserDisabled => (
                "enable or disable the test user",
                self.keycloak_test_user(token).await?,
                serde_json::json!({ "enabled": undo }),
                format!(
                    "keycloak: {USERNAME} {}",
                    if undo { "enabled again" } else { "disabled" }
                ),
            ),
            IdpChange::TokenLifespan { was } => {
                let lifespan = if undo {
                    was
                } else {
                    SHORT_TOKEN_LIFETIME_SECONDS
                };
                (
                    "set the realm's token lifespan",
                    self.keycloak_admin_realm(),
                    serde_json::json!({ "accessTokenLifespan": lifespan }),
                    format!("keycloak: tokens issued from now on live {lifespan} s"),
                )
            }
        };
        let request = self.probe.put(url).bearer_auth(token).json(&representation);
        idp_admin_call(request, what).await?;
        let why = if undo {
            "undoing a scenario's disruption"
        } else {
            "a scenario's disruption"
        };
        self.append_stack_log(&format!("{log} ({why})"));
        Ok(())
    }

    /// A token of Keycloak's bootstrap admin, for the admin REST API.
    pub(super) async fn keycloak_admin_token(&self) -> Result<String, EnvError> {
        let sign_in = "sign in as the bootstrap admin";
        let request = self
            .probe
            .post(format!(
                "http://127.0.0.1:{}/realms/master/protocol/openid-connect/token",
                self.ports.keycloak
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", "admin"),
                ("password", self.secrets.admin_password.expose()),
            ]);
        let token = idp_admin_json(idp_admin_call(request, sign_in).await?, sign_in).await?;
        token["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| EnvError::IdpAdmin {
                what: sign_in,
                detail: "the token response has no access_token".into(),
            })
    }
}
