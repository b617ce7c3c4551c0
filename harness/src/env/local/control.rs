//! What a run may ask of the local stack ([`StackControl`]): apply a scenario's stack
//! profile, hand over its configuration files, disrupt a part and restore it.

use std::time::Duration;

use super::keycloak_admin::IdpChange;
use super::launch::COMPONENT_READY;
use super::readiness::wait_ready;
use super::render::realm_import_file;
use super::{LocalStack, SessionStore};
use crate::control::{Disruption, Part};
use crate::env::istio::ProxyIdentity;
use crate::env::ports::Component;
use crate::env::{Endpoints, EnvError};
use crate::policy::{IdentityProvider, StackProfile};

/// How long the impostor's open connections get to end before they count as unfinished: the
/// caller's alert is on loopback, a caller that stalls longer has not refused anything yet.
const IMPOSTOR_SETTLES: Duration = Duration::from_secs(2);

/// The runner brings the stack to each scenario's `stack:` profile; the stack's other
/// settings (theme, sign-in page, load baseline) stay as they were started.
impl crate::control::StackControl for LocalStack {
    fn apply<'a>(
        &'a mut self,
        profile: &'a StackProfile,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + 'a>> {
        Box::pin(async move {
            let config = self.base.clone().with_profile(profile);
            if config != self.config {
                self.append_stack_log(&format!(
                    "applying the scenario's stack profile {}",
                    serde_json::to_string(profile).unwrap_or_default()
                ));
            }
            self.converge_to(config)
                .await
                .map_err(|e| format!("reconfiguring the local stack failed: {e}"))
        })
    }

    fn accepts_profile(&self, _: &StackProfile, _: bool) -> bool {
        true
    }

    fn can_disrupt(&self, part: Part, disruption: Disruption) -> bool {
        match (part, disruption) {
            // Through Keycloak's admin API: the second OpenID Provider has none.
            (
                Part::Idp,
                Disruption::RevokeSessions | Disruption::DisableUser | Disruption::ShortLivedTokens,
            ) => self.config.idp.keycloak_issues(),
            (Part::App, Disruption::Impersonate) => true,
            // The second OpenID Provider always runs; whether the scenario signs in there is
            // its stack profile's to say (checked when it disrupts).
            (Part::Idp, Disruption::ForgeIdTokens(_)) => true,
            (
                _,
                Disruption::RevokeSessions
                | Disruption::Impersonate
                | Disruption::DisableUser
                | Disruption::ShortLivedTokens
                | Disruption::ForgeIdTokens(_),
            ) => false,
            (Part::SessionStore, _) => self.config.session_store == SessionStore::Redis,
            _ => true,
        }
    }

    fn endpoints(&self) -> Option<Endpoints> {
        Some(self.endpoints.clone())
    }

    fn config_files(&self) -> Result<Vec<crate::audit::ConfigFile>, String> {
        let istio = self.istio_inputs().map_err(|e| e.to_string())?;
        // One file, as an IstioOperator holds the mesh config beside the policies: the
        // provider's settings and the policies that name it are judged together.
        let mut files = vec![crate::audit::ConfigFile {
            name: "istio/policy.yaml + istio/mesh.yaml".into(),
            text: format!("{}\n---\n{}", istio.policy, istio.mesh),
        }];
        for (name, text) in istio.overlay.unwrap_or_default() {
            files.push(crate::audit::ConfigFile {
                name: format!("istio/overlay/{name}"),
                text,
            });
        }
        // Without the CUSTOM policy no request reaches oauth2-proxy: it is not part of the
        // deployment under test.
        if self.config.ext_authz {
            files.push(crate::audit::ConfigFile {
                name: "oauth2-proxy.cfg".into(),
                text: self.oauth2_proxy_config().map_err(|e| e.to_string())?,
            });
        }
        // The realm in use: the others are there only to switch to.
        files.push(crate::audit::ConfigFile {
            name: realm_import_file(self.config.realm),
            text: self
                .render_realm(self.config.realm, self.keycloak_frontend_url())
                .map_err(|e| e.to_string())?,
        });
        Ok(files)
    }

    fn has_config_files(&self) -> bool {
        true
    }

    fn disrupt(
        &mut self,
        part: Part,
        disruption: Disruption,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + '_>> {
        let component = self.playing(part);
        let result = match disruption {
            Disruption::Stop => {
                self.stop_component(component);
                Ok(())
            }
            Disruption::Pause => match self.running(component) {
                Some(running) => {
                    running.process.pause();
                    self.paused.push(component);
                    Ok(())
                }
                None => Err(format!("{} is not running", component.name())),
            },
            Disruption::RevokeSessions => {
                return Box::pin(async move {
                    self.revoke_user_sessions()
                        .await
                        .map_err(|e| format!("ending the test user's sessions failed: {e}"))
                });
            }
            Disruption::DisableUser | Disruption::ShortLivedTokens => {
                return Box::pin(async move {
                    let failed =
                        |e: EnvError| format!("{} keycloak failed: {e}", disruption.verb());
                    let token = self.keycloak_admin_token().await.map_err(failed)?;
                    let change = match disruption {
                        Disruption::DisableUser => IdpChange::UserDisabled,
                        _ => IdpChange::TokenLifespan {
                            was: self.realm_token_lifespan(&token).await.map_err(failed)?,
                        },
                    };
                    self.change_realm(&token, change, false)
                        .await
                        .map_err(failed)?;
                    self.idp_changes.push(change);
                    Ok(())
                });
            }
            Disruption::ForgeIdTokens(_) if self.config.idp.keycloak_issues() => Err(
                "the IdP in use is Keycloak, which has no fault-injection route: a scenario that \
                 forges ID tokens signs in at the second OpenID Provider (stack: sign_in: idp: \
                 oidc_provider)"
                    .to_string(),
            ),
            Disruption::ForgeIdTokens(fault) => {
                return Box::pin(async move {
                    self.set_id_token_fault(Some(fault)).await.map_err(|e| {
                        format!(
                            "{} the second OpenID Provider failed: {e}",
                            disruption.verb()
                        )
                    })
                });
            }
            Disruption::Impersonate => {
                return Box::pin(async move {
                    // The impostor takes the address the sidecar listens on.
                    self.stop_component(Component::Sidecar);
                    let address = format!("{}:{}", ProxyIdentity::httpbin().ip, self.ports.sidecar)
                        .parse::<std::net::SocketAddr>()
                        .map_err(|e| format!("httpbin's sidecar address: {e}"))?;
                    let (cert, key) = &self.impostor_certificate;
                    let impostor =
                        crate::env::impostor::Impostor::start(address, cert, key).await?;
                    self.impostor = Some(impostor);
                    self.append_stack_log(&format!(
                        "an impostor (httpbin's identity from another CA) listens at {address} \
                         in httpbin's sidecar's place (a scenario's disruption)"
                    ));
                    Ok(())
                });
            }
        };
        self.append_stack_log(&format!(
            "{}: {disruption:?} (a scenario's disruption)",
            component.name()
        ));
        Box::pin(std::future::ready(result))
    }

    fn restore(
        &mut self,
        part: Part,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + '_>> {
        Box::pin(async move {
            let component = self.playing(part);
            if part == Part::App
                && let Some(impostor) = self.impostor.take()
            {
                let seen = impostor.seen(IMPOSTOR_SETTLES).await;
                self.append_stack_log(&format!(
                    "the impostor saw its callers' handshakes end: {seen:?}"
                ));
                impostor.stop().await;
            }
            if let Some(index) = self.paused.iter().position(|c| *c == component) {
                self.paused.remove(index);
                if let Some(running) = self.running(component) {
                    running.process.resume();
                }
            }
            self.append_stack_log(&format!("{}: restored", component.name()));
            let failed =
                |e: &dyn std::fmt::Display| format!("restoring {} failed: {e}", component.name());
            self.converge(&|_| {}).await.map_err(|e| failed(&e))?;
            if part == Part::Idp && self.id_tokens_forged {
                self.set_id_token_fault(None)
                    .await
                    .map_err(|e| failed(&e))?;
            }
            if part == Part::Idp && !self.idp_changes.is_empty() {
                let token = self.keycloak_admin_token().await.map_err(|e| failed(&e))?;
                // Newest first, each forgotten only once undone: a failed restore is retried.
                while let Some(change) = self.idp_changes.last().copied() {
                    self.change_realm(&token, change, true)
                        .await
                        .map_err(|e| failed(&e))?;
                    self.idp_changes.pop();
                }
            }
            // Its clients may not use it at once (oauth2-proxy's redis pool redials on its own
            // schedule): restored means the auth service answers its deep readiness check.
            if let Some(running) = self.running(Component::OAuth2Proxy) {
                wait_ready(
                    &self.probe,
                    &running.process,
                    &self.oauth2_proxy_ready(),
                    COMPONENT_READY,
                )
                .await
                .map_err(|e| failed(&e))?;
            }
            Ok(())
        })
    }

    fn impostor_handshakes(
        &self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Option<Vec<crate::control::Handshake>>, String>>
                + '_,
        >,
    > {
        Box::pin(async move {
            match &self.impostor {
                Some(impostor) => Ok(Some(impostor.seen(IMPOSTOR_SETTLES).await)),
                None => Ok(None),
            }
        })
    }
}

impl LocalStack {
    /// The local component that plays `part` in this configuration.
    fn playing(&self, part: Part) -> Component {
        match part {
            Part::AuthService => Component::OAuth2Proxy,
            Part::Idp => match self.config.idp {
                IdentityProvider::Keycloak | IdentityProvider::KeycloakBrokering => {
                    Component::Keycloak
                }
                IdentityProvider::OidcProvider => Component::OidcIdp,
            },
            Part::App => Component::Httpbin,
            Part::SessionStore => Component::Redis,
        }
    }
}

impl LocalStack {
    /// Makes the second OpenID Provider issue ID tokens wrong in `fault`'s way from now on, or
    /// honest ones again (`None`), through its fault-injection route.
    async fn set_id_token_fault(
        &mut self,
        fault: Option<crate::control::IdTokenFault>,
    ) -> Result<(), String> {
        let name = fault.map_or("none", crate::control::IdTokenFault::name);
        let response = self
            .probe
            .post(format!(
                "http://127.0.0.1:{}/meshauth/id-token-fault",
                self.ports.oidc_idp
            ))
            .bearer_auth(self.secrets.oidc_idp_control_token.expose())
            .json(&serde_json::json!({ "fault": name }))
            .send()
            .await
            .map_err(|e| format!("its fault-injection route: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "its fault-injection route answered {}",
                response.status()
            ));
        }
        self.id_tokens_forged = fault.is_some();
        self.append_stack_log(&format!(
            "oidc-idp: ID tokens from now on {}",
            match fault {
                Some(_) => format!("made wrong: {name} (a scenario's disruption)"),
                None => "honest again".to_string(),
            }
        ));
        Ok(())
    }
}
