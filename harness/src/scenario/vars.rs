//! `${variable}` substitution in scenario strings. The set of variables is closed, so a typo is
//! caught when the catalog is loaded rather than when a step runs.

use std::collections::BTreeMap;

/// Every variable a scenario may use, with what it stands for.
pub const VARIABLES: &[(&str, &str)] = &[
    (
        "app",
        "the application's URL through the gateway (HTTPS, behind ext_authz)",
    ),
    (
        "idp",
        "the IdP's public URL (the gateway's plain-HTTP listener in seed 000)",
    ),
    (
        "idp_path",
        "the path the IdP is published under on its origin (empty at the root, /auth under /auth)",
    ),
    ("issuer", "the OIDC issuer URL"),
    (
        "sidecar",
        "httpbin's service address behind its sidecar (http://; in-mesh callers upgrade to mTLS)",
    ),
    ("client_id", "the OIDC client oauth2-proxy uses"),
    ("username", "the test user's name"),
    ("email", "the test user's email"),
    ("role", "the realm role given to the test user"),
    ("roles_claim", "the claim the realm-role mapper writes"),
    (
        "app_authority",
        "the app's Host header as a browser sends it (host[:port])",
    ),
    ("app_authority_upper", "the app's Host header in upper case"),
    ("app_hostname", "the app's host name, without port"),
    (
        "app_port",
        "the app's port (explicit or the scheme's default)",
    ),
    (
        "session_cookie",
        "the name of the auth proxy's session cookie (oauth2-proxy: _oauth2_proxy)",
    ),
    (
        "csrf_cookie",
        "the name of the auth proxy's sign-in CSRF cookie (oauth2-proxy: <session cookie>_csrf)",
    ),
    (
        "nonce",
        "in a probe request: a value unique to that request, which an echoing app gives back",
    ),
    (
        "nonce_address",
        "in a probe request: the nonce as an IPv4 address (198.18.0.0/15), for forged client addresses",
    ),
];

/// Values for [`VARIABLES`], taken from an environment's endpoints.
#[derive(Debug, Clone, Default)]
pub struct Variables(BTreeMap<&'static str, String>);

impl Variables {
    pub fn new(values: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        Self(values.into_iter().collect())
    }

    /// These values plus `name` (replacing any value it had).
    pub fn with(&self, name: &'static str, value: String) -> Self {
        let mut values = self.0.clone();
        values.insert(name, value);
        Self(values)
    }

    /// Replaces every `${name}`; unknown names were rejected at load time and stay verbatim.
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    match self.0.get(name) {
                        Some(value) => out.push_str(value),
                        None => out.push_str(&rest[start..start + 3 + end]),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Rejects unknown or unterminated `${...}` references.
pub fn check_variables(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {text:?}"))?;
        let name = &after[..end];
        if !VARIABLES.iter().any(|(known, _)| *known == name) {
            let known: Vec<&str> = VARIABLES.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "unknown variable ${{{name}}} in {text:?}; known variables: {}",
                known.join(", ")
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_known_variables() {
        let vars = Variables::new([("app", "https://127.0.0.1:8443".to_string())]);
        assert_eq!(
            vars.expand("${app}/headers"),
            "https://127.0.0.1:8443/headers"
        );
        assert_eq!(vars.expand("plain"), "plain");
        assert_eq!(
            vars.expand("${app}${app}"),
            "https://127.0.0.1:8443https://127.0.0.1:8443"
        );
    }

    #[test]
    fn rejects_unknown_and_unterminated_variables() {
        assert!(check_variables("${app}/x").is_ok());
        let err = check_variables("${ap}/x").unwrap_err();
        assert!(
            err.contains("unknown variable ${ap}") && err.contains("known variables: app"),
            "{err}"
        );
        assert!(
            check_variables("${app")
                .unwrap_err()
                .contains("unterminated")
        );
    }
}
