//! Sets of component versions for `meshauth run --versions FILE`: the same catalog over several
//! pinned sets, each installed side by side in the cache.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::versions;

/// One set of component versions; a field left out keeps the pinned version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSet {
    /// A short name for reports and directories (letters, digits, `.`, `-`, `_`).
    pub name: String,
    #[serde(default = "pinned_keycloak")]
    pub keycloak: String,
    #[serde(default = "pinned_oauth2_proxy")]
    pub oauth2_proxy: String,
    #[serde(default = "pinned_envoy")]
    pub envoy: String,
    #[serde(default = "pinned_httpbin")]
    pub httpbin: String,
}

fn pinned_keycloak() -> String {
    versions::KEYCLOAK.into()
}
fn pinned_oauth2_proxy() -> String {
    versions::OAUTH2_PROXY.into()
}
fn pinned_envoy() -> String {
    versions::ENVOY.into()
}
fn pinned_httpbin() -> String {
    versions::HTTPBIN.into()
}

impl VersionSet {
    /// The versions pinned in `versions.rs`.
    pub fn pinned() -> Self {
        Self {
            name: "pinned".into(),
            keycloak: pinned_keycloak(),
            oauth2_proxy: pinned_oauth2_proxy(),
            envoy: pinned_envoy(),
            httpbin: pinned_httpbin(),
        }
    }

    /// `component version` for each component, for the "what changed" column.
    pub fn components(&self) -> [(&'static str, &str); 4] {
        [
            ("Keycloak", &self.keycloak),
            ("oauth2-proxy", &self.oauth2_proxy),
            ("Envoy", &self.envoy),
            ("go-httpbin", &self.httpbin),
        ]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionsFile {
    sets: Vec<VersionSet>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}\nhow to fix: {hint}")]
pub struct VersionsFileError {
    pub file: String,
    pub message: String,
    pub hint: String,
}

/// Reads a versions file:
///
/// ```yaml
/// sets:
///   - name: pinned
///   - name: oauth2-proxy-7.8.1
///     oauth2_proxy: v7.8.1
/// ```
pub fn load(path: &Path) -> Result<Vec<VersionSet>, VersionsFileError> {
    let fail = |message: String, hint: &str| VersionsFileError {
        file: path.display().to_string(),
        message,
        hint: hint.into(),
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(e.to_string(), "give the path of a YAML versions file"))?;
    parse(&text).map_err(|(message, hint)| fail(message, hint))
}

fn parse(text: &str) -> Result<Vec<VersionSet>, (String, &'static str)> {
    const FIELDS: &str = "each set has a name and any of keycloak, oauth2_proxy, envoy, httpbin";
    let file: VersionsFile = serde_saphyr::from_str(text).map_err(|e| (e.to_string(), FIELDS))?;
    if file.sets.len() < 2 {
        return Err((
            format!(
                "{} set(s): a comparison needs at least two",
                file.sets.len()
            ),
            "add another set under `sets:`",
        ));
    }
    let mut names = Vec::new();
    for set in &file.sets {
        let valid = !set.name.is_empty()
            && set
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            return Err((
                format!("set name {:?} is not usable as a directory name", set.name),
                "use letters, digits, '.', '-' and '_'",
            ));
        }
        if names.contains(&set.name) {
            return Err((
                format!("two sets are named {:?}", set.name),
                "name each set once",
            ));
        }
        names.push(set.name.clone());
        for (component, version) in set.components() {
            if version.trim().is_empty() || version.contains(char::is_whitespace) {
                return Err((
                    format!(
                        "set {:?}: {component} version {version:?} is not a version",
                        set.name
                    ),
                    FIELDS,
                ));
            }
        }
    }
    Ok(file.sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_default_to_the_pinned_versions() {
        let sets =
            parse("sets:\n  - name: pinned\n  - name: old-proxy\n    oauth2_proxy: v7.8.1\n")
                .unwrap();
        assert_eq!(sets[0], VersionSet::pinned());
        assert_eq!(sets[1].oauth2_proxy, "v7.8.1");
        assert_eq!(sets[1].keycloak, versions::KEYCLOAK);
    }

    #[test]
    fn bad_files_are_refused_with_a_fix() {
        let (message, _) = parse("sets:\n  - name: a\n").unwrap_err();
        assert!(message.contains("at least two"), "{message}");
        let (message, _) = parse("sets:\n  - name: a\n  - name: a\n").unwrap_err();
        assert!(message.contains("two sets are named"), "{message}");
        let (message, hint) =
            parse("sets:\n  - name: a\n  - name: b\n    oauth2proxy: v7.8.1\n").unwrap_err();
        assert!(message.contains("oauth2proxy"), "{message}");
        assert!(hint.contains("oauth2_proxy"));
        let (message, _) = parse("sets:\n  - name: a b\n  - name: c\n").unwrap_err();
        assert!(message.contains("directory name"), "{message}");
    }
}
