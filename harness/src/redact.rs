//! Secrets never reach a report or a log: every string the engine records passes through the
//! run's [`Redactor`], which removes the run's known secrets, JWT signatures, and the values
//! of sensitive query parameters (authorization codes, state, session codes).

use std::sync::{Arc, LazyLock, RwLock};

use rand::RngCore;
use regex::Regex;
use serde::{Serialize, Serializer};

pub const REDACTED: &str = "[redacted]";
pub const SIGNATURE_REDACTED: &str = "[signature-redacted]";

/// A secret value: its `Debug`, `Display` and `Serialize` forms never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// A random URL-safe secret of `bytes` random bytes.
    pub fn generate(bytes: usize) -> Self {
        let mut raw = vec![0u8; bytes];
        rand::rng().fill_bytes(&mut raw);
        use base64::Engine as _;
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
    }

    /// A random secret of exactly `len` alphanumeric characters (for consumers that count
    /// bytes, like oauth2-proxy's cookie secret).
    pub fn generate_alphanumeric(len: usize) -> Self {
        use rand::Rng as _;
        Self(
            rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(len)
                .map(char::from)
                .collect(),
        )
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

static JWT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,})\.([A-Za-z0-9_-]{8,})")
        .expect("valid regex")
});

static SENSITIVE_PARAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(code|state|session_state|session_code|client_data|client_secret|password|access_token|id_token|refresh_token|tab_id|execution)=([^&\s#"'<>,;]+)"#,
    )
    .expect("valid regex")
});

/// `text` without the values of sensitive query parameters (authorization codes, `state`,
/// tokens, passwords in URLs): for component logs, which know no registered secret.
pub fn without_url_credentials(text: &str) -> std::borrow::Cow<'_, str> {
    SENSITIVE_PARAM.replace_all(text, format!("$1={REDACTED}"))
}

/// Removes secrets from text. Cheap to clone; all clones share the registered secrets.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret so that it is removed from everything redacted from now on.
    pub fn register(&self, secret: &Secret) {
        self.register_str(secret.expose());
    }

    pub fn register_str(&self, value: &str) {
        // Very short values would shred ordinary text; secrets here are always long.
        if value.len() < 6 {
            return;
        }
        if let Ok(mut secrets) = self.secrets.write()
            && !secrets.iter().any(|s| s == value)
        {
            secrets.push(value.to_string());
            // Longest first, so a secret containing another is removed whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// The registered secret values, for audits that prove none of them leaked into a file
    /// (the redaction integration test). Never print or store what this returns.
    pub fn registered_secrets_for_audit(&self) -> Vec<Secret> {
        self.secrets
            .read()
            .map(|secrets| secrets.iter().map(Secret::new).collect())
            .unwrap_or_default()
    }

    /// Redacts one recorded value (a URL, a message): known secrets, JWT signatures, and the
    /// values of sensitive query parameters.
    pub fn redact(&self, text: &str) -> String {
        without_url_credentials(&self.redact_known_secrets(text)).into_owned()
    }

    /// Redacts only registered secrets and JWT signatures. Safe on a whole rendered document
    /// (JSON, XML, HTML): unlike a query-parameter value, neither can run into the
    /// document's own syntax, so the document stays well formed.
    pub fn redact_known_secrets(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Ok(secrets) = self.secrets.read() {
            for secret in secrets.iter() {
                if out.contains(secret.as_str()) {
                    out = out.replace(secret.as_str(), REDACTED);
                }
            }
        }
        JWT.replace_all(&out, format!("$1.{SIGNATURE_REDACTED}"))
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_registered_secrets_signatures_and_sensitive_params() {
        let redactor = Redactor::new();
        let secret = Secret::new("s3cr3t-client-value");
        redactor.register(&secret);
        let text = "secret=s3cr3t-client-value token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl \
                    url=https://gw/oauth2/callback?state=abc%3A%2Fheaders&code=1234-5678&iss=http%3A%2F%2Fkc";
        let redacted = redactor.redact(text);
        assert!(!redacted.contains("s3cr3t-client-value"));
        assert!(!redacted.contains("c2lnbmF0dXJl"));
        assert!(!redacted.contains("1234-5678"));
        assert!(redacted.contains("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.[signature-redacted]"));
        assert!(redacted.contains("code=[redacted]"));
        assert!(redacted.contains("iss=http%3A%2F%2Fkc"), "{redacted}");
    }

    #[test]
    fn parameter_redaction_stops_at_json_and_html_delimiters() {
        let redactor = Redactor::new();
        let json = r#"{"url":"https://gw/cb?state=abc123","next":"x"}"#;
        assert_eq!(
            redactor.redact(json),
            r#"{"url":"https://gw/cb?state=[redacted]","next":"x"}"#
        );
        let html = "<a href='/cb?code=zz9'>go</a>";
        assert_eq!(
            redactor.redact(html),
            "<a href='/cb?code=[redacted]'>go</a>"
        );
    }

    #[test]
    fn secret_never_prints() {
        let secret = Secret::generate(32);
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"[redacted]\"");
        assert!(secret.expose().len() >= 40);
    }
}
