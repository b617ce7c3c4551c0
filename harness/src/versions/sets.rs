//! Sets of component versions for `meshauth run --versions FILE`: the same catalog over several
//! pinned sets, each installed side by side in the cache.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::pinned;

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
    pinned::KEYCLOAK.into()
}
fn pinned_oauth2_proxy() -> String {
    pinned::OAUTH2_PROXY.into()
}
fn pinned_envoy() -> String {
    pinned::ENVOY.into()
}
fn pinned_httpbin() -> String {
    pinned::HTTPBIN.into()
}

impl VersionSet {
    /// The versions pinned in `pinned.rs`.
    pub fn pinned() -> Self {
        Self {
            name: PINNED.into(),
            keycloak: pinned_keycloak(),
            oauth2_proxy: pinned_oauth2_proxy(),
            envoy: pinned_envoy(),
            httpbin: pinned_httpbin(),
        }
    }

    /// The components whose version differs from the pinned one, with that version.
    pub fn overrides(&self) -> Vec<(&'static str, &str)> {
        let pinned = Self::pinned();
        self.components()
            .into_iter()
            .zip(pinned.components())
            .filter(|((_, version), (_, pinned))| version != pinned)
            .map(|(component, _)| component)
            .collect()
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
    /// Optional so that a missing or empty `sets:` gets its own message.
    #[serde(default)]
    sets: Option<Vec<VersionSet>>,
}

/// The name of the set that keeps every pinned version (the comparison's baseline).
pub const PINNED: &str = "pinned";

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
    const EXAMPLE: &str = "list the sets under `sets:`, e.g. `sets: [{name: pinned}, {name: old-proxy, oauth2_proxy: v7.8.1}]`";
    if text.trim().is_empty() {
        return Err((
            "the file is empty: it defines no version set".into(),
            EXAMPLE,
        ));
    }
    let file: VersionsFile = serde_saphyr::from_str(text).map_err(|e| (e.to_string(), FIELDS))?;
    let Some(sets) = file.sets.filter(|sets| !sets.is_empty()) else {
        return Err(("`sets:` lists no version set".into(), EXAMPLE));
    };
    if sets.len() < 2 {
        return Err((
            format!("{} set(s): a comparison needs at least two", sets.len()),
            "add another set under `sets:`",
        ));
    }
    let mut names = Vec::new();
    for set in &sets {
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
    for (position, set) in sets.iter().enumerate() {
        // A set that changes nothing runs the pinned versions under another name: a
        // comparison against it would show "no change" for a version never installed. Only
        // the baseline named `pinned` may do so, and says what it is.
        if set.overrides().is_empty() && set.name != PINNED {
            return Err((
                format!(
                    "set {:?} (set {} under `sets:`) overrides no component: it would run the \
                     pinned versions under another name",
                    set.name,
                    position + 1
                ),
                "give it at least one of keycloak, oauth2_proxy, envoy, httpbin with a version \
                 other than the pinned one, or name it `pinned` if it is meant as the baseline",
            ));
        }
    }
    Ok(sets)
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
        assert_eq!(sets[1].keycloak, pinned::KEYCLOAK);
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

    /// No set at all, or a set that overrides nothing (other than the `pinned` baseline), is
    /// an error saying what, where and how to fix it, not a comparison of identical stacks.
    #[test]
    fn no_sets_or_a_set_overriding_nothing_is_refused() {
        for text in ["", "  \n", "sets:\n", "sets: []\n", "{}\n"] {
            let (message, hint) = parse(text).unwrap_err();
            assert!(message.contains("no version set"), "{text:?}: {message}");
            assert!(hint.contains("sets:"), "{text:?}: {hint}");
        }
        let (message, hint) = parse("sets:\n  - name: pinned\n  - name: next\n").unwrap_err();
        assert!(
            message.contains(r#"set "next" (set 2 under `sets:`) overrides no component"#),
            "{message}"
        );
        assert!(
            hint.contains("oauth2_proxy") && hint.contains("`pinned`"),
            "{hint}"
        );
        // The pinned version written out is no override either.
        let pinned_again = format!(
            "sets:\n  - name: pinned\n  - name: same\n    envoy: {}\n",
            pinned::ENVOY
        );
        let (message, _) = parse(&pinned_again).unwrap_err();
        assert!(message.contains("overrides no component"), "{message}");
        // The documented baseline stays accepted.
        let sets = parse("sets:\n  - name: pinned\n  - name: next\n    envoy: 1.39.3\n").unwrap();
        assert_eq!(sets[1].overrides(), [("Envoy", "1.39.3")]);
        assert!(sets[0].overrides().is_empty());
    }
}
