//! The version matrix (`meshauth run --versions FILE`): the same catalog over several sets of
//! component versions, as one grid of scenario × set and the list of what changed between sets.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{ReportError, Reporter, RunReport};
use crate::events::{RunEvent, Verdict};
use crate::versions::sets::VersionSet;

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
    /// Why the set did not run (an install or a start that failed), or why its run counts
    /// for nothing (no scenario ran), if so.
    pub error: Option<String>,
}

/// One component's version in each set, in set order: what the set's binary reported, as its
/// run recorded it; the requested version only for a set that did not run, marked so.
#[derive(Debug, Serialize)]
pub struct ComponentRow {
    pub component: String,
    pub versions: Vec<String>,
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
    /// Keycloak, oauth2-proxy, Envoy and go-httpbin, each with its version per set.
    pub components: Vec<ComponentRow>,
    /// Components whose version differs between sets: (component, one version per set).
    pub differing: Vec<(String, Vec<String>)>,
    /// Scenarios whose verdict differs between sets first, then the rest, in catalog order.
    pub rows: Vec<MatrixRow>,
    pub changed: usize,
}

impl VersionMatrix {
    pub fn new(mut runs: Vec<(SetRun, Option<RunReport>)>) -> Self {
        for (set, report) in &mut runs {
            if set.error.is_none() && set.passed + set.failed == 0 {
                set.error = Some(nothing_ran(report.as_ref()));
            }
        }
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
        // The version each set's run recorded (its binary's own report); a set that did not
        // run recorded none, so its requested version is shown as such.
        let components: Vec<ComponentRow> = VersionSet::pinned()
            .components()
            .iter()
            .map(|(component, _)| ComponentRow {
                component: component.to_string(),
                versions: runs
                    .iter()
                    .map(|(set, report)| {
                        let recorded = report.as_ref().and_then(|r| {
                            r.environment
                                .components
                                .iter()
                                .find(|c| c.component == *component)
                        });
                        match recorded {
                            Some(recorded) => recorded.version.clone(),
                            None => {
                                let requested = set
                                    .set
                                    .components()
                                    .iter()
                                    .find(|(c, _)| c == component)
                                    .map(|(_, v)| v.to_string())
                                    .unwrap_or_default();
                                format!("{requested} (requested; no version recorded)")
                            }
                        }
                    })
                    .collect(),
            })
            .collect();
        let differing = components
            .iter()
            .filter(|row| row.versions.windows(2).any(|w| w[0] != w[1]))
            .map(|row| (row.component.clone(), row.versions.clone()))
            .collect();
        let sets: Vec<SetRun> = runs.into_iter().map(|(set, _)| set).collect();
        Self {
            changed: rows.iter().filter(|r| r.changed).count(),
            sets,
            components,
            differing,
            rows,
        }
    }

    /// Every set ran and every scenario passed in every set.
    pub fn all_passed(&self) -> bool {
        self.sets
            .iter()
            .all(|s| s.error.is_none() && s.failed == 0 && s.passed > 0)
    }
}

/// Why a set whose run passed and failed nothing is no result: the planner's reasons when it
/// left the selection out.
fn nothing_ran(report: Option<&RunReport>) -> String {
    let mut message = "no scenario ran (0 passed, 0 failed): a set that ran nothing shows \
                       nothing about its versions"
        .to_string();
    if let Some(report) = report {
        let left_out = &report.environment.left_out;
        if let Some(first) = left_out.first() {
            message.push_str(&format!(
                "; {} selected scenario(s) left out, e.g. {}: {}",
                left_out.len(),
                first.scenario,
                first.reason
            ));
        }
        if !report.run.complete {
            message.push_str("; the run stopped before it finished");
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::document::ScenarioReport;
    use crate::versions::ComponentVersion;

    /// A set's run: its verdicts, and the versions its binaries reported (those of `set`).
    fn report(set: &SetRun, verdicts: &[(&str, Verdict)]) -> RunReport {
        let mut report = RunReport::new();
        report.run.complete = true;
        report.environment.components = set
            .set
            .components()
            .iter()
            .map(|(component, version)| ComponentVersion {
                component: component.to_string(),
                version: version.to_string(),
                source: "test".into(),
            })
            .collect();
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

    /// A set's run with its counts as the command line fills them from its report.
    fn ran(set: SetRun, verdicts: &[(&str, Verdict)]) -> (SetRun, Option<RunReport>) {
        let mut report = report(&set, verdicts);
        let passed = verdicts.iter().filter(|(_, v)| *v == Verdict::Pass).count();
        report.summary.passed = passed;
        report.summary.failed = verdicts.len() - passed;
        let set = SetRun {
            passed,
            failed: verdicts.len() - passed,
            ..set
        };
        (set, Some(report))
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
            ran(
                run("new", "v7.15.6"),
                &[("a", Verdict::Pass), ("b", Verdict::Pass)],
            ),
            ran(
                run("old", "v7.8.1"),
                &[("a", Verdict::Pass), ("b", Verdict::Fail)],
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

    /// A set whose run passed and failed nothing (every scenario left out, or none selected)
    /// is red with the reason, never a quiet "0 passed, 0 failed" that exits 0.
    #[test]
    fn a_set_that_ran_nothing_is_an_error_not_a_pass() {
        let (pinned, pinned_report) = ran(run("pinned", "v7.15.6"), &[("a", Verdict::Pass)]);
        let empty = run("old", "v7.8.1");
        let mut empty_report = report(&empty, &[]);
        empty_report.environment.left_out = vec![crate::events::LeftOut {
            scenario: "s::a".into(),
            reason: "it needs a mesh".into(),
        }];
        let matrix = VersionMatrix::new(vec![(pinned, pinned_report), (empty, Some(empty_report))]);
        assert_eq!(matrix.sets[0].error, None);
        let error = matrix.sets[1].error.as_deref().unwrap_or_default();
        assert!(
            error.contains("no scenario ran (0 passed, 0 failed)"),
            "{error}"
        );
        assert!(error.contains("s::a: it needs a mesh"), "{error}");
        assert!(!matrix.all_passed());
        let html = crate::report::html::render_versions(&matrix).unwrap();
        assert!(html.contains("no scenario ran"), "{html}");
    }

    /// The version rows show what each set's run recorded (the binaries' own answers), not the
    /// versions the set asked for; a set that did not run says its version is only requested.
    #[test]
    fn the_matrix_shows_the_recorded_versions_not_the_requested_ones() {
        let (new, new_report) = ran(run("new", "v7.15.6"), &[("a", Verdict::Pass)]);
        let mut new_report = new_report.unwrap();
        let httpbin = new_report
            .environment
            .components
            .iter_mut()
            .find(|c| c.component == "go-httpbin")
            .unwrap();
        httpbin.version = "unreported: the binary carries no module version".into();
        let mut broken = run("broken", "v7.8.1");
        broken.error = Some("oauth2-proxy reports v7.8.0, v7.8.1 was requested".into());
        let matrix = VersionMatrix::new(vec![(new, Some(new_report)), (broken, None)]);
        let row = |component: &str| {
            matrix
                .components
                .iter()
                .find(|r| r.component == component)
                .unwrap()
                .versions
                .clone()
        };
        assert_eq!(
            row("go-httpbin")[0],
            "unreported: the binary carries no module version"
        );
        assert_eq!(
            row("oauth2-proxy"),
            ["v7.15.6", "v7.8.1 (requested; no version recorded)"]
        );
        let html = crate::report::html::render_versions(&matrix).unwrap();
        assert!(
            html.contains("unreported: the binary carries no module version"),
            "{html}"
        );
        assert!(
            html.contains("v7.8.1 (requested; no version recorded)"),
            "{html}"
        );
    }
}
