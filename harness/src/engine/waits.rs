//! Waiting out time the deployment needs: its session refresh interval, or the lifetime of the
//! tokens the app last received.

use std::time::Duration;

use super::{Engine, ScenarioState, StepOutput, expect};
use crate::browser::Page;

impl Engine {
    pub(super) async fn wait_for_session_refresh(&self) -> Result<StepOutput, String> {
        tokio::time::sleep(self.session_refresh_wait()).await;
        Ok(StepOutput::default())
    }

    pub(super) async fn wait_for_token_expiry(
        &self,
        state: &ScenarioState,
    ) -> Result<StepOutput, String> {
        let page = state
            .last
            .as_ref()
            .ok_or("no page yet: open the app's /headers after signing in first")?;
        let wait = token_expiry_wait(page, crate::oidc::now_unix())?;
        tokio::time::sleep(wait).await;
        Ok(StepOutput::default())
    }

    /// The deployment's session refresh interval and a second (the plan leaves scenarios that
    /// wait for it out where the environment does not say).
    pub(super) fn session_refresh_wait(&self) -> Duration {
        self.endpoints.session_refresh.unwrap_or_default() + Duration::from_secs(1)
    }
}

/// The longest [`Step::WaitForTokenExpiry`] waits: longer-lived tokens must be made
/// short-lived first.
const LONGEST_TOKEN_WAIT: i64 = 60;

/// How long until every token the app echoed on `page` has expired, and a second.
fn token_expiry_wait(page: &Page, now: i64) -> Result<Duration, String> {
    let tokens = expect::forwarded_jwts(&page.body).ok_or_else(|| {
        format!(
            "the last page is not the app's echo of its request headers ({} at {}): open \
             the app's /headers after signing in first",
            page.status.as_u16(),
            page.url
        )
    })?;
    let last = tokens
        .iter()
        .max_by_key(|t| t.expires_at)
        .ok_or("the app received no token with an expiry (exp) to wait out")?;
    let remaining = last.expires_at - now;
    if remaining > LONGEST_TOKEN_WAIT {
        return Err(format!(
            "the token in {} lives another {remaining} s, longer than meshauth waits \
             ({LONGEST_TOKEN_WAIT} s): make the IdP's tokens short-lived first (disrupt idp \
             short_lived_tokens)",
            last.header
        ));
    }
    Ok(Duration::from_secs((remaining.max(0) + 1) as u64))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;
    use url::Url;

    use super::*;

    #[test]
    fn the_token_wait_lasts_until_the_last_token_expired_and_no_longer_than_a_minute() {
        let echo = Page {
            url: Url::parse("https://app.test/headers").unwrap(),
            status: reqwest::StatusCode::OK,
            headers: HeaderMap::new(),
            body: include_str!("../../tests/data/recorded/httpbin-headers.json").into(),
        };
        let exp = 1795436565;
        assert_eq!(
            token_expiry_wait(&echo, exp - 4),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(
            token_expiry_wait(&echo, exp + 30),
            Ok(Duration::from_secs(1))
        );
        let too_long = token_expiry_wait(&echo, exp - 300).unwrap_err();
        assert!(too_long.contains("lives another 300 s"), "{too_long}");
        assert!(too_long.contains("short_lived_tokens"), "{too_long}");
        let not_echo = Page {
            body: "<html></html>".into(),
            ..echo
        };
        let error = token_expiry_wait(&not_echo, exp).unwrap_err();
        assert!(error.contains("not the app's echo"), "{error}");
    }
}
