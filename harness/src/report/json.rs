//! The JSON report: the [`RunReport`] document as pretty-printed JSON, `schema_version` 1,
//! described by `reports/schema/run-report.v1.schema.json` (documented in `docs/reports.md`).

use super::{ReportError, RunReport};

/// The JSON Schema (draft 2020-12) every JSON report validates against.
pub const SCHEMA: &str = include_str!("../../../reports/schema/run-report.v1.schema.json");

pub fn render(report: &RunReport) -> Result<String, ReportError> {
    let mut text = serde_json::to_string_pretty(report).map_err(|e| ReportError::Render {
        reporter: "json",
        detail: e.to_string(),
    })?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample_events as sample;

    fn sample_json() -> serde_json::Value {
        let report = RunReport::from_events(&sample::events());
        serde_json::from_str(&render(&report).unwrap()).unwrap()
    }

    fn validator() -> jsonschema::Validator {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        jsonschema::draft202012::new(&schema).unwrap()
    }

    fn errors(document: &serde_json::Value) -> Vec<String> {
        validator()
            .iter_errors(document)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    #[test]
    fn sample_report_matches_the_schema() {
        assert_eq!(errors(&sample_json()), Vec::<String>::new());
    }

    #[test]
    fn schema_rejects_a_wrong_version_and_a_missing_verdict_field() {
        let mut wrong_version = sample_json();
        wrong_version["schema_version"] = 2.into();
        assert!(!errors(&wrong_version).is_empty());
        let mut no_steps = sample_json();
        no_steps["scenarios"][0]
            .as_object_mut()
            .unwrap()
            .remove("steps");
        assert!(!errors(&no_steps).is_empty());
        let mut bad_verdict = sample_json();
        bad_verdict["scenarios"][0]["verdict"] = "maybe".into();
        assert!(!errors(&bad_verdict).is_empty());
    }

    #[test]
    fn json_snapshot() {
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]");
        let _guard = settings.bind_to_scope();
        insta::assert_json_snapshot!("json_report", sample_json(), {
            ".run.started_at" => "[timestamp]",
            ".run.run_id" => "[run-id]",
            ".summary.duration_ms" => "[ms]",
            ".scenarios[].duration_ms" => "[ms]",
            ".scenarios[].steps[].duration_ms" => "[ms]",
            ".scenarios[].steps[].hops[].duration_ms" => "[ms]",
            ".tool.version" => "[version]",
        });
    }
}
