//! The browser's cookies as an attacker handles them: tampered with, copied and put back later,
//! and the sign-in's callback replayed from a new browser holding only the copies.

use reqwest::Method;
use reqwest::header::HeaderMap;
use url::Url;

use super::{Engine, ScenarioState, StepOutput, tamper};
use crate::browser::Body;
use crate::scenario::Tampering;

impl Engine {
    pub(super) fn tamper_cookie(
        &self,
        name: &str,
        how: Tampering,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let name = &self.vars.expand(name);
        let count = state
            .browser
            .rewrite_cookies(&self.endpoints.app, name, |n, v| tamper::tamper(n, v, how));
        if count == 0 {
            return Err(format!(
                "the browser holds no cookie {name} for the app: sign in first"
            ));
        }
        Ok(StepOutput::default())
    }

    pub(super) fn keep_cookie(
        &self,
        name: &str,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let name = self.vars.expand(name);
        let copy = state.browser.copy_cookies(&self.endpoints.app, &name);
        if copy.is_empty() {
            return Err(format!(
                "the browser holds no cookie {name} for the app: sign in first"
            ));
        }
        state.kept_cookies.retain(|(kept, _)| *kept != name);
        state.kept_cookies.push((name, copy));
        Ok(StepOutput::default())
    }

    pub(super) fn put_back_cookie(
        &self,
        name: &str,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let name = self.vars.expand(name);
        let (_, copy) = state
            .kept_cookies
            .iter()
            .find(|(kept, _)| *kept == name)
            .ok_or_else(|| format!("no copy of cookie {name} was kept: keep_cookie first"))?;
        state.browser.put_cookies(&self.endpoints.app, copy);
        Ok(StepOutput::default())
    }

    pub(super) async fn replay_callback(
        &self,
        state: &mut ScenarioState,
    ) -> Result<StepOutput, String> {
        let callback = state.browser.last_callback().cloned().ok_or_else(|| {
            "no authorization response was delivered yet: put a sign_in step before \
             replay_callback"
                .to_string()
        })?;
        let callback = Url::parse(callback.expose())
            .map_err(|e| format!("the recorded callback is not a URL: {e}"))?;
        let replaying = self.scenario_browser().map_err(|e| e.to_string())?;
        for (_, copy) in &state.kept_cookies {
            replaying.put_cookies(&self.endpoints.app, copy);
        }
        state.browser = replaying;
        let page = state
            .browser
            .navigate(Method::GET, callback, Body::Empty, &HeaderMap::new())
            .await
            .map_err(|e| e.to_string())?;
        state.last = Some(page);
        Ok(StepOutput::default())
    }
}
