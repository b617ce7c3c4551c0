//! The run's events folded into one report document: the single model the JSON, JUnit and
//! HTML reporters render. Its serialized form is the JSON report, described by
//! `reports/schema/run-report.v1.schema.json` (see `docs/reports.md`).

use serde::Serialize;

use crate::events::{EnvironmentInfo, RunEvent, RunSummary, StepReport, Verdict};

/// Bumped whenever a field is removed or changes meaning; adding a field keeps the version.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Default)]
pub struct RunReport {
    pub schema_version: u32,
    pub tool: ToolInfo,
    pub run: RunInfo,
    pub environment: EnvironmentInfo,
    pub scenarios: Vec<ScenarioReport>,
    pub summary: RunSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    pub name: &'static str,
    pub version: &'static str,
}

impl Default for ToolInfo {
    fn default() -> Self {
        Self {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RunInfo {
    pub run_id: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// How many scenarios were selected to run.
    pub selected: usize,
    /// False when the run stopped before its `run_finished` event (interrupted or crashed):
    /// the summary then counts only the scenarios that finished.
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub suite: String,
    pub id: String,
    pub title: String,
    /// The scenario file, relative to the catalog.
    pub file: String,
    /// `None` while running, or when the run stopped before the scenario finished.
    pub verdict: Option<Verdict>,
    pub duration_ms: u64,
    /// One line per failed check or error.
    pub failures: Vec<String>,
    pub steps: Vec<StepReport>,
}

impl ScenarioReport {
    pub fn qualified_name(&self) -> String {
        format!("{}::{}", self.suite, self.id)
    }

    pub fn failed(&self) -> bool {
        self.verdict != Some(Verdict::Pass)
    }
}

impl RunReport {
    pub fn new() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            ..Self::default()
        }
    }

    /// Folds a whole event stream.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a RunEvent>) -> Self {
        let mut report = Self::new();
        for event in events {
            report.apply(event);
        }
        report
    }

    /// Folds one event. Events for a scenario that never started are attached to a
    /// scenario entry created on the spot, so no step is ever lost.
    pub fn apply(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted {
                run_id,
                started_at,
                environment,
                selected,
            } => {
                self.run = RunInfo {
                    run_id: run_id.clone(),
                    started_at: started_at.clone(),
                    selected: *selected,
                    complete: false,
                };
                self.environment = environment.clone();
            }
            RunEvent::ScenarioStarted {
                suite,
                scenario,
                title,
                file,
            } => self.scenarios.push(ScenarioReport {
                suite: suite.clone(),
                id: scenario.clone(),
                title: title.clone(),
                file: file.clone(),
                verdict: None,
                duration_ms: 0,
                failures: Vec::new(),
                steps: Vec::new(),
            }),
            RunEvent::StepFinished {
                suite,
                scenario,
                step,
            } => self.scenario_mut(suite, scenario).steps.push(step.clone()),
            RunEvent::ScenarioFinished {
                suite,
                scenario,
                verdict,
                duration_ms,
                failures,
            } => {
                let entry = self.scenario_mut(suite, scenario);
                entry.verdict = Some(*verdict);
                entry.duration_ms = *duration_ms;
                entry.failures = failures.clone();
                self.summary = self.counted_summary();
            }
            RunEvent::RunFinished { summary } => {
                self.summary = summary.clone();
                self.run.complete = true;
            }
        }
    }

    /// The summary as far as the finished scenarios tell (used until `run_finished`).
    fn counted_summary(&self) -> RunSummary {
        let finished = self.scenarios.iter().filter(|s| s.verdict.is_some());
        let passed = finished
            .clone()
            .filter(|s| s.verdict == Some(Verdict::Pass))
            .count();
        let total = finished.clone().count();
        RunSummary {
            total,
            passed,
            failed: total - passed,
            duration_ms: finished.map(|s| s.duration_ms).sum(),
        }
    }

    fn scenario_mut(&mut self, suite: &str, scenario: &str) -> &mut ScenarioReport {
        // The latest entry wins: a scenario that runs twice gets two entries.
        let position = self
            .scenarios
            .iter()
            .rposition(|s| s.suite == suite && s.id == scenario);
        let index = match position {
            Some(index) => index,
            None => {
                self.scenarios.push(ScenarioReport {
                    suite: suite.to_string(),
                    id: scenario.to_string(),
                    title: String::new(),
                    file: String::new(),
                    verdict: None,
                    duration_ms: 0,
                    failures: Vec::new(),
                    steps: Vec::new(),
                });
                self.scenarios.len() - 1
            }
        };
        &mut self.scenarios[index]
    }

    /// Scenarios grouped by suite, in the order suites first appeared.
    pub fn suites(&self) -> Vec<(&str, Vec<&ScenarioReport>)> {
        let mut suites: Vec<(&str, Vec<&ScenarioReport>)> = Vec::new();
        for scenario in &self.scenarios {
            match suites.iter_mut().find(|(name, _)| *name == scenario.suite) {
                Some((_, members)) => members.push(scenario),
                None => suites.push((scenario.suite.as_str(), vec![scenario])),
            }
        }
        suites
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample_events as sample;

    #[test]
    fn folds_the_stream_and_counts_an_interrupted_run() {
        let events = sample::events();
        let full = RunReport::from_events(&events);
        assert!(full.run.complete);
        assert_eq!((full.summary.passed, full.summary.failed), (1, 1));
        assert_eq!(full.scenarios[0].steps.len(), 4);

        // Cut the stream after the first scenario finished.
        let cut = events
            .iter()
            .position(|e| matches!(e, RunEvent::ScenarioFinished { .. }))
            .unwrap();
        let partial = RunReport::from_events(&events[..=cut + 1]);
        assert!(!partial.run.complete);
        assert_eq!(partial.summary.total, 1);
        assert_eq!(partial.scenarios.len(), 2);
        assert_eq!(partial.scenarios[1].verdict, None);
        assert!(partial.scenarios[1].failed());
    }
}
