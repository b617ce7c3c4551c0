//! The version matrix (`meshauth run --versions FILE`): the same catalog over several sets of
//! component versions, as one grid of scenario × set and the list of what changed between sets.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{ReportError, Reporter, RunReport};
use crate::components::version_sets::VersionSet;
use crate::events::{RunEvent, Verdict};

/// Folds a run's events into a [`RunReport`] the caller keeps.
pub struct CollectingReporter(pub Arc<Mutex<RunReport>>);

impl Reporter for CollectingReporter {
    fn on_event(&mut self, event: &RunEvent) -> Result<(), ReportError> {
        if let Ok(mut report) = self.0.lock() {
            report.apply(event);
        }
        Ok(())
    }
}

/// One version set's run.
#[derive(Debug, Serialize)]
pub struct SetRun {
    pub set: VersionSet,
    /// The set's own reports, relative to the matrix page.
    pub report_dir: String,
    pub passed: usize,
    pub failed: usize,
    /// Why the set did not run (an install or a start that failed), if it did not.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MatrixRow {
    pub scenario: String,
    /// One verdict per set, in set order: `pass`, `fail` or `not-run`.
    pub verdicts: Vec<&'static str>,
    /// The first failure line per set (empty when it passed).
    pub details: Vec<String>,
    pub changed: bool,
}

#[derive(Debug, Serialize)]
pub struct VersionMatrix {
    pub sets: Vec<SetRun>,
    /// Components whose version differs between sets: (component, one version per set).
    pub differing: Vec<(String, Vec<String>)>,
    /// Scenarios whose verdict differs between sets first, then the rest, in catalog order.
    pub rows: Vec<MatrixRow>,
    pub changed: usize,
}

impl VersionMatrix {
    pub fn new(runs: Vec<(SetRun, Option<RunReport>)>) -> Self {
        let mut scenarios: Vec<String> = Vec::new();
        for (_, report) in &runs {
            for scenario in report.iter().flat_map(|r| &r.scenarios) {
                let name = scenario.qualified_name();
                if !scenarios.contains(&name) {
                    scenarios.push(name);
                }
            }
        }
        let mut rows: Vec<MatrixRow> = scenarios
            .into_iter()
            .map(|name| {
                let (verdicts, details): (Vec<&'static str>, Vec<String>) = runs
                    .iter()
                    .map(|(_, report)| {
                        let found = report
                            .iter()
                            .flat_map(|r| &r.scenarios)
                            .find(|s| s.qualified_name() == name);
                        match found {
                            Some(s) if s.verdict == Some(Verdict::Pass) => ("pass", String::new()),
                            Some(s) => ("fail", s.failures.first().cloned().unwrap_or_default()),
                            None => ("not-run", String::new()),
                        }
                    })
                    .unzip();
                let changed = verdicts.windows(2).any(|w| w[0] != w[1]);
                MatrixRow {
                    scenario: name,
                    verdicts,
                    details,
                    changed,
                }
            })
            .collect();
        rows.sort_by_key(|r| !r.changed);
        let sets: Vec<SetRun> = runs.into_iter().map(|(set, _)| set).collect();
        let differing = ["Keycloak", "oauth2-proxy", "Envoy", "go-httpbin"]
            .iter()
            .filter_map(|component| {
                let versions: Vec<String> = sets
                    .iter()
                    .map(|s| {
                        s.set
                            .components()
                            .iter()
                            .find(|(c, _)| c == component)
                            .map(|(_, v)| v.to_string())
                            .unwrap_or_default()
                    })
                    .collect();
                versions
                    .windows(2)
                    .any(|w| w[0] != w[1])
                    .then(|| (component.to_string(), versions))
            })
            .collect();
        Self {
            changed: rows.iter().filter(|r| r.changed).count(),
            sets,
            differing,
            rows,
        }
    }

    /// Every set ran and every scenario passed in every set.
    pub fn all_passed(&self) -> bool {
        self.sets.iter().all(|s| s.error.is_none() && s.failed == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::document::ScenarioReport;

    fn report(verdicts: &[(&str, Verdict)]) -> RunReport {
        let mut report = RunReport::new();
        report.scenarios = verdicts
            .iter()
            .map(|(id, verdict)| ScenarioReport {
                suite: "s".into(),
                id: id.to_string(),
                title: String::new(),
                file: String::new(),
                verdict: Some(*verdict),
                duration_ms: 0,
                failures: if *verdict == Verdict::Pass {
                    vec![]
                } else {
                    vec!["step 1: status: expected 200, actual 500".into()]
                },
                steps: vec![],
            })
            .collect();
        report
    }

    fn run(name: &str, proxy: &str) -> SetRun {
        SetRun {
            set: VersionSet {
                name: name.into(),
                oauth2_proxy: proxy.into(),
                ..VersionSet::pinned()
            },
            report_dir: name.into(),
            passed: 0,
            failed: 0,
            error: None,
        }
    }

    #[test]
    fn changed_scenarios_come_first_and_differing_components_are_named() {
        let matrix = VersionMatrix::new(vec![
            (
                run("new", "v7.15.6"),
                Some(report(&[("a", Verdict::Pass), ("b", Verdict::Pass)])),
            ),
            (
                run("old", "v7.8.1"),
                Some(report(&[("a", Verdict::Pass), ("b", Verdict::Fail)])),
            ),
        ]);
        assert_eq!(matrix.changed, 1);
        assert_eq!(matrix.rows[0].scenario, "s::b");
        assert_eq!(matrix.rows[0].verdicts, ["pass", "fail"]);
        assert!(matrix.rows[0].details[1].contains("actual 500"));
        assert_eq!(
            matrix.differing,
            [(
                "oauth2-proxy".to_string(),
                vec!["v7.15.6".to_string(), "v7.8.1".to_string()]
            )]
        );
        let html = crate::report::html::render_versions(&matrix).unwrap();
        assert!(html.contains("s::b") && html.contains("v7.8.1"));
    }
}
