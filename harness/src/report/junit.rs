//! JUnit XML for CI test viewers: one `<testsuite>` per scenario suite (one scenario file),
//! one `<testcase>` per scenario. A failed scenario's `<failure>` carries its failure lines as
//! the message and the failing steps' hops and checks as text; every test case's
//! `<system-out>` holds its full step log. A selected scenario the planner left out (the
//! environment cannot run it) is a skipped test case in its suite, the reason as the message:
//! a CI viewer counts it as skipped, never as passed and never not at all.

use std::fmt::Write as _;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::document::ScenarioReport;
use super::{ReportError, RunReport};
use crate::events::{LeftOut, StepReport, Verdict};

pub fn render(report: &RunReport) -> Result<String, ReportError> {
    let mut junit = Report::new("meshauth");
    if let Ok(started) = chrono::DateTime::parse_from_rfc3339(&report.run.started_at) {
        junit.set_timestamp(started);
    }
    junit.set_time(millis(report.summary.duration_ms));
    for (suite_name, scenarios, left_out) in suites(report) {
        let mut suite = TestSuite::new(suite_name);
        if let Some(file) = scenarios.first().map(|s| s.file.as_str()) {
            suite.add_property(Property::new("file", file));
        }
        suite.add_property(Property::new(
            "environment",
            report.environment.kind.as_str(),
        ));
        suite.add_property(Property::new(
            "app_url",
            report.environment.app_url.as_str(),
        ));
        suite.set_time(millis(scenarios.iter().map(|s| s.duration_ms).sum()));
        for scenario in scenarios {
            suite.add_test_case(test_case(scenario));
        }
        for (id, left_out) in left_out {
            suite.add_test_case(skipped_case(suite_name, id, left_out));
        }
        junit.add_test_suite(suite);
    }
    junit.to_string().map_err(|e| ReportError::Render {
        reporter: "junit",
        detail: e.to_string(),
    })
}

/// A suite's name, its scenarios that ran, and its scenarios left out (`id`, why).
type SuiteCases<'a> = (
    &'a str,
    Vec<&'a ScenarioReport>,
    Vec<(&'a str, &'a LeftOut)>,
);

/// The run's suites in the order they first appeared, each with its scenarios that ran and
/// its selected scenarios the planner left out (`id`, why); a suite whose every scenario was
/// left out comes after those that ran.
fn suites(report: &RunReport) -> Vec<SuiteCases<'_>> {
    let mut suites: Vec<SuiteCases<'_>> = report
        .suites()
        .into_iter()
        .map(|(name, scenarios)| (name, scenarios, Vec::new()))
        .collect();
    for left_out in &report.environment.left_out {
        // `suite::id`; a name without a suite stays whole, in a suite of that name.
        let (suite_name, id) = left_out
            .scenario
            .split_once("::")
            .unwrap_or((left_out.scenario.as_str(), left_out.scenario.as_str()));
        match suites.iter_mut().find(|(name, _, _)| *name == suite_name) {
            Some((_, _, skipped)) => skipped.push((id, left_out)),
            None => suites.push((suite_name, Vec::new(), vec![(id, left_out)])),
        }
    }
    suites
}

/// A scenario the environment cannot run: skipped, with the planner's reason.
fn skipped_case(suite: &str, id: &str, left_out: &LeftOut) -> TestCase {
    let mut status = TestCaseStatus::skipped();
    status
        .set_message(left_out.reason.as_str())
        .set_type("left out");
    let mut case = TestCase::new(id, status);
    case.set_classname(suite);
    case
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn test_case(scenario: &ScenarioReport) -> TestCase {
    let status = match scenario.verdict {
        Some(Verdict::Pass) => TestCaseStatus::success(),
        Some(Verdict::Fail) => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_message(scenario.failures.join("; "))
                .set_type("conformance")
                .set_description(failure_text(scenario));
            status
        }
        None => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status
                .set_message("the run stopped before this scenario finished")
                .set_type("interrupted")
                .set_description(step_log(scenario.steps.iter()));
            status
        }
    };
    let mut case = TestCase::new(scenario.id.as_str(), status);
    case.set_classname(scenario.suite.as_str())
        .set_time(millis(scenario.duration_ms))
        .set_assertions(scenario.steps.iter().map(|s| s.checks.len()).sum())
        .set_system_out(format!(
            "{}\n{}",
            scenario.title,
            step_log(scenario.steps.iter())
        ));
    case
}

/// The failure lines, then the failing steps in full.
fn failure_text(scenario: &ScenarioReport) -> String {
    let mut text = scenario.failures.join("\n");
    text.push_str("\n\n");
    text.push_str(&step_log(scenario.steps.iter().filter(|s| !s.passed)));
    text
}

fn step_log<'a>(steps: impl Iterator<Item = &'a StepReport>) -> String {
    let mut log = String::new();
    for step in steps {
        let mark = if step.passed { "ok" } else { "FAIL" };
        let _ = writeln!(
            log,
            "{mark} step {} {}: {} ({} ms)",
            step.index, step.op, step.summary, step.duration_ms
        );
        for hop in &step.hops {
            let _ = writeln!(log, "    {hop}");
        }
        for check in &step.checks {
            let mark = if check.passed { "✓" } else { "✗" };
            let _ = writeln!(log, "    {mark} {check}");
        }
        if let Some(jwt) = &step.jwt {
            let _ = writeln!(
                log,
                "    jwt header {} claims {} signature {}",
                jwt.header,
                serde_json::Value::Object(jwt.claims.clone()),
                jwt.signature
            );
        }
        if let Some(error) = &step.error {
            let _ = writeln!(log, "    error: {error}");
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RunEvent;
    use crate::sample_events as sample;

    fn sample_xml() -> String {
        render(&RunReport::from_events(&sample::events())).unwrap()
    }

    #[test]
    fn one_suite_per_file_one_case_per_scenario_with_counts() {
        let xml = sample_xml();
        let document = well_formed(&xml);
        // Two suites ran; the sample's left-out scenario has a suite of its own.
        assert_eq!(document.matches("<testsuite ").count(), 3);
        assert_eq!(document.matches("<testcase ").count(), 3);
        let root = &xml[xml.find("<testsuites").unwrap()..];
        let root = &root[..root.find('>').unwrap()];
        for attribute in [
            r#"tests="3""#,
            r#"skipped="1""#,
            r#"failures="1""#,
            r#"errors="0""#,
            r#"time="1.600""#,
        ] {
            assert!(root.contains(attribute), "{attribute} missing in {root}");
        }
        assert!(
            xml.contains("step 2 (expect): [critical finding] status: expected 401, actual 200")
        );
        // Escaped, never raw markup from scenario data.
        assert!(xml.contains("&lt;RBAC: access denied&gt;"));
        assert!(!xml.contains("<RBAC"));
    }

    /// Scenarios the planner left out are skipped test cases with the planner's reason, in
    /// their own suite (beside the scenarios of that suite that ran) or in a suite of their
    /// own: never missing, so a CI viewer does not show a green run with nothing skipped.
    #[test]
    fn left_out_scenarios_are_skipped_cases_with_the_reason_in_their_suite() {
        let mut events = sample::events();
        let Some(RunEvent::RunStarted { environment, .. }) = events.first_mut() else {
            panic!("the sample starts with run_started");
        };
        environment.left_out.push(LeftOut {
            scenario: "seed000_browser_sso::session_refresh".into(),
            reason: "it waits for the session refresh, and the environment does not say <when>"
                .into(),
        });
        let xml = well_formed(&render(&RunReport::from_events(&events)).unwrap());
        let root = &xml[xml.find("<testsuites").unwrap()..];
        let root = &root[..root.find('>').unwrap()];
        for attribute in [r#"tests="4""#, r#"skipped="2""#, r#"failures="1""#] {
            assert!(root.contains(attribute), "{attribute} missing in {root}");
        }
        let suite = |name: &str| {
            let start = xml
                .find(&format!(r#"<testsuite name="{name}""#))
                .unwrap_or_else(|| panic!("no suite {name} in {xml}"));
            let end = start + xml[start..].find("</testsuite>").unwrap();
            xml[start..end].to_string()
        };
        let browser = suite("seed000_browser_sso");
        assert!(browser.contains(r#"tests="2" skipped="1""#), "{browser}");
        assert!(
            browser.contains(r#"<testcase name="session_refresh" classname="seed000_browser_sso""#),
            "{browser}"
        );
        assert!(
            browser.contains(
                r#"<skipped message="it waits for the session refresh, and the environment does not say &lt;when&gt;" type="left out"/>"#
            ),
            "{browser}"
        );
        let fail_closed = suite("attack_fail_closed");
        assert!(
            fail_closed.contains(r#"tests="1" skipped="1""#),
            "{fail_closed}"
        );
        assert!(
            fail_closed.contains(r#"<testcase name="auth_service_stopped""#)
                && fail_closed.contains("it needs to stop the auth_service"),
            "{fail_closed}"
        );
    }

    /// The XML must be well formed: parse it with quick-xml (a dependency of quick-junit).
    fn well_formed(xml: &str) -> String {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut depth = 0i32;
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Start(_)) => depth += 1,
                Ok(quick_xml::events::Event::End(_)) => depth -= 1,
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("invalid XML at {}: {e}\n{xml}", reader.buffer_position()),
            }
        }
        assert_eq!(depth, 0, "unbalanced XML");
        xml.to_string()
    }

    #[test]
    fn junit_snapshot() {
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r#"timestamp="[^"]*""#, r#"timestamp="[timestamp]""#);
        settings.add_filter(r#"time="[0-9.]+""#, r#"time="[seconds]""#);
        settings.add_filter(r"\(\d+ ms\)", "([ms])");
        settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]");
        settings.bind(|| insta::assert_snapshot!("junit_report", sample_xml()));
    }
}
