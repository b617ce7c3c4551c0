//! The HTML report: one self-contained page (styles, script and SVG charts inline, nothing
//! fetched) rendered with minijinja from the templates in the repository's `reports/` folder,
//! embedded at build time. Every value is HTML-escaped by minijinja's autoescape for `.html`
//! templates. The page works without script; the script only adds the failures filter and
//! expand/collapse-all buttons.

use std::sync::LazyLock;

use minijinja::Environment;
use serde::Serialize;
use serde_json::Value;

use super::document::ScenarioReport;
use super::{ReportError, RunReport};
use crate::browser::Hop;
use crate::check::CheckResult;
use crate::events::SettingState;
use crate::events::{StepReport, Verdict};
use crate::load::report::{LoadReport, PhaseReport};

const TEMPLATES: &[(&str, &str)] = &[
    (
        "report.html",
        include_str!("../../../reports/templates/report.html"),
    ),
    (
        "scenario.html",
        include_str!("../../../reports/templates/scenario.html"),
    ),
    (
        "load.html",
        include_str!("../../../reports/templates/load.html"),
    ),
    (
        "versions.html",
        include_str!("../../../reports/templates/versions.html"),
    ),
];
const STYLE: &str = include_str!("../../../reports/assets/report.css");
const SCRIPT: &str = include_str!("../../../reports/assets/report.js");

static ENVIRONMENT: LazyLock<Result<Environment<'static>, String>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Optional fields (a hop's location, a step's error) may be tested with `if`; printing
    // anything undefined is an error, so a typo in a template fails the render test.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|e| format!("template {name}: {e:#}"))?;
    }
    Ok(env)
});

fn render_error(error: impl std::error::Error) -> ReportError {
    // The causes name the template and line that failed (e.g. inside an include).
    ReportError::Render {
        reporter: "html",
        detail: crate::error_chain(&error),
    }
}

fn template(name: &str) -> Result<minijinja::Template<'static, 'static>, ReportError> {
    let env = ENVIRONMENT.as_ref().map_err(|detail| ReportError::Render {
        reporter: "html",
        detail: detail.clone(),
    })?;
    env.get_template(name).map_err(render_error)
}

/// The version-matrix page: scenario × version set, what changed between sets first.
pub fn render_versions(matrix: &super::versions::VersionMatrix) -> Result<String, ReportError> {
    let template = template("versions.html")?;
    template
        .render(minijinja::context! { matrix => matrix, style => STYLE })
        .map_err(render_error)
}

pub fn render(report: &RunReport) -> Result<String, ReportError> {
    let template = template("report.html")?;
    template.render(PageView::new(report)).map_err(render_error)
}

/// Everything the templates show, computed here so that the templates only lay it out.
#[derive(Serialize)]
struct PageView<'a> {
    report: &'a RunReport,
    verdict: &'static str,
    title: String,
    total_seconds: String,
    style: &'static str,
    script: &'static str,
    donut: Donut,
    durations: DurationChart,
    policy: Vec<PolicyCell<'a>>,
    /// Failed (and unfinished) scenarios first, then passed, each group in run order.
    scenarios: Vec<ScenarioView<'a>>,
    security: SecurityView<'a>,
    /// Suites whose scenarios are the cells of a grid (`<row>__<column>` ids, as the mesh
    /// matrix's profile × caller): shown as a table, rows with mismatches first.
    matrices: Vec<MatrixView<'a>>,
}

#[derive(Serialize)]
struct MatrixView<'a> {
    suite: &'a str,
    columns: Vec<&'a str>,
    rows: Vec<MatrixRow<'a>>,
    mismatches: usize,
}

#[derive(Serialize)]
struct MatrixRow<'a> {
    row: &'a str,
    mismatches: usize,
    cells: Vec<Option<MatrixCell>>,
}

#[derive(Serialize)]
struct MatrixCell {
    state: &'static str,
    anchor: String,
    expected: String,
    actual: String,
}

impl<'a> MatrixView<'a> {
    /// A grid for each suite of at least four scenarios whose ids all read `<row>__<column>`.
    fn all(report: &'a RunReport, scenarios: &[ScenarioView<'a>]) -> Vec<Self> {
        report
            .suites()
            .into_iter()
            .filter(|(_, members)| {
                members.len() >= 4 && members.iter().all(|s| s.id.contains("__"))
            })
            .map(|(suite, members)| Self::new(suite, &members, scenarios))
            .collect()
    }

    fn new(suite: &'a str, members: &[&'a ScenarioReport], views: &[ScenarioView<'a>]) -> Self {
        let split = |s: &'a ScenarioReport| s.id.split_once("__").expect("filtered on __");
        let mut rows: Vec<&'a str> = Vec::new();
        let mut columns: Vec<&'a str> = Vec::new();
        for scenario in members {
            let (row, column) = split(scenario);
            if !rows.contains(&row) {
                rows.push(row);
            }
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
        let mut rows: Vec<MatrixRow<'a>> = rows
            .into_iter()
            .map(|row| {
                let cells: Vec<Option<MatrixCell>> = columns
                    .iter()
                    .map(|column| {
                        let scenario = members.iter().find(|s| split(s) == (row, *column))?;
                        Some(MatrixCell::new(scenario, views))
                    })
                    .collect();
                MatrixRow {
                    row,
                    mismatches: cells.iter().flatten().filter(|c| c.state != "pass").count(),
                    cells,
                }
            })
            .collect();
        rows.sort_by_key(|r| r.mismatches == 0);
        Self {
            suite,
            mismatches: rows.iter().map(|r| r.mismatches).sum(),
            columns,
            rows,
        }
    }
}

impl MatrixCell {
    /// The cell's outcome: the last step's status or connection check (what the cell is
    /// about), expected against actual.
    fn new(scenario: &ScenarioReport, views: &[ScenarioView<'_>]) -> Self {
        let last_checks = scenario
            .steps
            .iter()
            .rev()
            .find(|s| !s.checks.is_empty())
            .map(|s| s.checks.as_slice())
            .unwrap_or_default();
        let outcome = last_checks
            .iter()
            .find(|c| c.name == "status")
            .or_else(|| last_checks.iter().find(|c| c.name == "connection"))
            .or_else(|| last_checks.first());
        // Short forms: "403", "rejected", "answered 200"; the scenario's section has the rest.
        let short = |text: &str| text.split(" at ").next().unwrap_or(text).to_string();
        let (expected, actual) = match outcome {
            Some(check) if check.name == "connection" => (
                if check.expected.contains("rejected") {
                    "rejected".to_string()
                } else {
                    "an HTTP response".to_string()
                },
                if check.actual.starts_with("rejected") {
                    "rejected".to_string()
                } else {
                    short(&check.actual)
                },
            ),
            Some(check) => (short(&check.expected), short(&check.actual)),
            None => (String::new(), scenario.failures.join("; ")),
        };
        Self {
            state: match scenario.verdict {
                Some(crate::events::Verdict::Pass) => "pass",
                _ => "fail",
            },
            anchor: views
                .iter()
                .find(|v| std::ptr::eq(v.scenario, scenario))
                .map(|v| v.anchor.clone())
                .unwrap_or_default(),
            expected,
            actual,
        }
    }
}

/// The attack checks (those with a severity), findings first, grouped by class (the suite
/// they come from), and what the environment could not check.
#[derive(Serialize)]
struct SecurityView<'a> {
    findings: usize,
    attacks: usize,
    /// Attack scenarios that failed without a finding (an error, a failed control): their
    /// class proved nothing.
    inconclusive: usize,
    classes: Vec<AttackClass<'a>>,
    left_out: &'a [crate::events::LeftOut],
    limits: &'a [String],
}

#[derive(Serialize)]
struct AttackClass<'a> {
    class: &'a str,
    attacks: usize,
    inconclusive: Vec<Finding<'a>>,
    /// Worst first.
    findings: Vec<Finding<'a>>,
}

#[derive(Serialize)]
struct Finding<'a> {
    severity: &'static str,
    scenario: String,
    anchor: String,
    check: &'a CheckResult,
}

#[derive(Serialize)]
struct PolicyCell<'a> {
    setting: &'a str,
    value: &'a str,
    state: &'static str,
    fix: Option<&'a str>,
}

/// A ring whose green arc is the pass share, drawn with `stroke-dasharray` on a circle of
/// circumference 100.
#[derive(Serialize)]
struct Donut {
    passed_arc: f64,
    failed_arc: f64,
}

#[derive(Serialize)]
struct DurationChart {
    height: u32,
    bars: Vec<DurationBar>,
}

#[derive(Serialize)]
struct DurationBar {
    y: u32,
    width: f64,
    /// The full name, in the bar's tooltip.
    label: String,
    /// The name cut to fit left of the bar.
    short_label: String,
    seconds: String,
    passed: bool,
    anchor: String,
}

#[derive(Serialize)]
struct ScenarioView<'a> {
    scenario: &'a ScenarioReport,
    anchor: String,
    state: &'static str,
    seconds: String,
    failed_checks: Vec<FailedCheck<'a>>,
    errors: Vec<String>,
    steps: Vec<StepView<'a>>,
    waterfall: Waterfall,
}

#[derive(Serialize)]
struct FailedCheck<'a> {
    step: usize,
    op: &'a str,
    check: &'a CheckResult,
}

#[derive(Serialize)]
struct StepView<'a> {
    step: &'a StepReport,
    jwt: Option<JwtView<'a>>,
    /// Checks not shown beside a JWT claim.
    checks: Vec<&'a CheckResult>,
}

#[derive(Serialize)]
struct JwtView<'a> {
    header: Vec<(String, String)>,
    claims: Vec<ClaimRow<'a>>,
    signature: &'static str,
    signature_checks: Vec<&'a CheckResult>,
}

#[derive(Serialize)]
struct ClaimRow<'a> {
    name: String,
    value: String,
    checks: Vec<&'a CheckResult>,
}

/// Every hop of a scenario on one time axis: a bar per hop, placed after all earlier hops.
#[derive(Serialize)]
struct Waterfall {
    height: u32,
    total_ms: u64,
    rows: Vec<WaterfallRow>,
}

#[derive(Serialize)]
struct WaterfallRow {
    y: u32,
    x: f64,
    width: f64,
    status_class: &'static str,
    /// The full hop, shown as the bar's tooltip.
    label: String,
    /// Status, method and path, drawn beside the bar.
    short_label: String,
    step: usize,
}

/// What an inconclusive scenario that stopped on an error (no failed check) points to.
static NO_CHECK: std::sync::LazyLock<CheckResult> = std::sync::LazyLock::new(|| {
    CheckResult::new(
        "the scenario stopped on an error",
        false,
        "its attack checks to run",
        "see the scenario's steps",
    )
});

/// Charts are drawn in a 1000-unit-wide view box that scales to the page: labels on the
/// left, bars in the remaining width.
const LABEL_WIDTH: f64 = 380.0;
const BAR_SPACE: f64 = 520.0;
const ROW_HEIGHT: u32 = 24;

impl<'a> PageView<'a> {
    fn new(report: &'a RunReport) -> Self {
        let failed = report.scenarios.iter().filter(|s| s.failed());
        let passed = report.scenarios.iter().filter(|s| !s.failed());
        let scenarios = failed
            .chain(passed)
            .enumerate()
            .map(|(i, s)| ScenarioView::new(i, s))
            .collect::<Vec<_>>();
        let verdict = if !report.run.complete {
            "incomplete"
        } else if report.summary.all_passed() {
            "pass"
        } else {
            "fail"
        };
        Self {
            report,
            verdict,
            title: format!(
                "meshauth {} — {} passed, {} failed",
                report.run.run_id, report.summary.passed, report.summary.failed
            ),
            total_seconds: seconds(report.summary.duration_ms, 1),
            style: STYLE,
            script: SCRIPT,
            donut: Donut::new(report.summary.passed, report.summary.failed),
            durations: DurationChart::new(&scenarios),
            policy: report
                .environment
                .profile
                .iter()
                .map(|p| PolicyCell {
                    setting: &p.setting,
                    value: &p.value,
                    fix: p.fix.as_deref(),
                    state: match p.state {
                        SettingState::On => "on",
                        SettingState::Off => "off",
                        SettingState::Info => "info",
                    },
                })
                .collect(),
            security: SecurityView::new(report, &scenarios),
            matrices: MatrixView::all(report, &scenarios),
            scenarios,
        }
    }
}

impl<'a> SecurityView<'a> {
    fn new(report: &'a RunReport, scenarios: &[ScenarioView<'a>]) -> Self {
        let mut classes: Vec<AttackClass<'a>> = Vec::new();
        for view in scenarios {
            let scenario = view.scenario;
            let attack_checks: Vec<&'a CheckResult> = scenario
                .steps
                .iter()
                .flat_map(|s| &s.checks)
                .filter(|c| c.severity.is_some())
                .collect();
            if attack_checks.is_empty() && !scenario.suite.starts_with("attack_") {
                continue;
            }
            let class = match classes.iter_mut().position(|c| c.class == scenario.suite) {
                Some(index) => &mut classes[index],
                None => {
                    classes.push(AttackClass {
                        class: &scenario.suite,
                        attacks: 0,
                        inconclusive: Vec::new(),
                        findings: Vec::new(),
                    });
                    classes.last_mut().expect("pushed above")
                }
            };
            for check in &attack_checks {
                class.attacks += 1;
                if !check.passed {
                    class.findings.push(Finding {
                        severity: check.severity.map(|s| s.name()).unwrap_or("high"),
                        scenario: scenario.qualified_name(),
                        anchor: view.anchor.clone(),
                        check,
                    });
                }
            }
            let failed_without_finding =
                scenario.failed() && attack_checks.iter().all(|c| c.passed);
            if failed_without_finding {
                let why = scenario
                    .steps
                    .iter()
                    .flat_map(|s| s.checks.iter())
                    .find(|c| !c.passed);
                if let Some(check) = why {
                    class.inconclusive.push(Finding {
                        severity: "inconclusive",
                        scenario: scenario.qualified_name(),
                        anchor: view.anchor.clone(),
                        check,
                    });
                } else {
                    class.inconclusive.push(Finding {
                        severity: "inconclusive",
                        scenario: scenario.qualified_name(),
                        anchor: view.anchor.clone(),
                        check: &NO_CHECK,
                    });
                }
            }
        }
        let rank = |name: &str| match name {
            "critical" => 0,
            "high" => 1,
            "medium" => 2,
            _ => 3,
        };
        for class in &mut classes {
            class.findings.sort_by_key(|f| rank(f.severity));
        }
        classes.sort_by_key(|c| {
            (
                c.findings.is_empty() && c.inconclusive.is_empty(),
                c.findings.first().map(|f| rank(f.severity)),
            )
        });
        Self {
            inconclusive: classes.iter().map(|c| c.inconclusive.len()).sum(),
            findings: classes.iter().map(|c| c.findings.len()).sum(),
            attacks: classes.iter().map(|c| c.attacks).sum(),
            classes,
            left_out: &report.environment.left_out,
            limits: &report.environment.limits,
        }
    }
}

impl Donut {
    fn new(passed: usize, failed: usize) -> Self {
        let total = (passed + failed).max(1) as f64;
        Self {
            passed_arc: round(passed as f64 / total * 100.0),
            failed_arc: round(failed as f64 / total * 100.0),
        }
    }
}

impl DurationChart {
    fn new(scenarios: &[ScenarioView]) -> Self {
        let longest = scenarios
            .iter()
            .map(|s| s.scenario.duration_ms)
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let bars = scenarios
            .iter()
            .enumerate()
            .map(|(i, s)| DurationBar {
                y: i as u32 * ROW_HEIGHT,
                width: round((s.scenario.duration_ms as f64 / longest * BAR_SPACE).max(2.0)),
                label: s.scenario.qualified_name(),
                short_label: cut_front(&s.scenario.qualified_name(), 50),
                seconds: seconds(s.scenario.duration_ms, 2),
                passed: !s.scenario.failed(),
                anchor: s.anchor.clone(),
            })
            .collect::<Vec<_>>();
        Self {
            height: bars.len() as u32 * ROW_HEIGHT,
            bars,
        }
    }
}

impl<'a> ScenarioView<'a> {
    fn new(position: usize, scenario: &'a ScenarioReport) -> Self {
        let state = match scenario.verdict {
            Some(Verdict::Pass) => "pass",
            Some(Verdict::Fail) => "fail",
            None => "unfinished",
        };
        let failed_checks = scenario
            .steps
            .iter()
            .flat_map(|step| {
                step.checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(move |check| FailedCheck {
                        step: step.index,
                        op: step.op,
                        check,
                    })
            })
            .collect();
        let errors = scenario
            .steps
            .iter()
            .filter_map(|s| {
                s.error
                    .as_ref()
                    .map(|e| format!("step {} ({}): {e}", s.index, s.op))
            })
            .collect();
        Self {
            anchor: format!("s{position}-{}-{}", scenario.suite, scenario.id),
            state,
            seconds: seconds(scenario.duration_ms, 2),
            failed_checks,
            errors,
            steps: scenario.steps.iter().map(StepView::new).collect(),
            waterfall: Waterfall::new(&scenario.steps),
            scenario,
        }
    }
}

impl<'a> StepView<'a> {
    fn new(step: &'a StepReport) -> Self {
        let Some(jwt) = &step.jwt else {
            return Self {
                step,
                jwt: None,
                checks: step.checks.iter().collect(),
            };
        };
        let claim_of = |check: &CheckResult| -> Option<String> {
            match check.name.as_str() {
                "exp" | "iat" => Some(check.name.clone()),
                name => name.strip_prefix("claim ").map(str::to_string),
            }
        };
        let mut claims: Vec<ClaimRow> = jwt
            .claims
            .iter()
            .map(|(name, value)| ClaimRow {
                name: name.clone(),
                value: plain(value),
                checks: step
                    .checks
                    .iter()
                    .filter(|c| claim_of(c).as_deref() == Some(name))
                    .collect(),
            })
            .collect();
        // A check on a claim the token lacks still gets a row.
        for check in &step.checks {
            if let Some(name) = claim_of(check)
                && !jwt.claims.contains_key(&name)
            {
                claims.push(ClaimRow {
                    name,
                    value: "(absent)".into(),
                    checks: vec![check],
                });
            }
        }
        Self {
            step,
            jwt: Some(JwtView {
                header: match &jwt.header {
                    Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), plain(v))).collect(),
                    other => vec![("header".into(), plain(other))],
                },
                claims,
                signature: jwt.signature,
                signature_checks: step
                    .checks
                    .iter()
                    .filter(|c| c.name == "signature")
                    .collect(),
            }),
            checks: step
                .checks
                .iter()
                .filter(|c| c.name != "signature" && claim_of(c).is_none())
                .collect(),
        }
    }
}

impl Waterfall {
    fn new(steps: &[StepReport]) -> Self {
        let hops: Vec<(usize, &Hop)> = steps
            .iter()
            .flat_map(|s| s.hops.iter().map(move |h| (s.index, h)))
            .collect();
        let total_ms: u64 = hops.iter().map(|(_, h)| h.duration_ms).sum();
        let scale = BAR_SPACE / total_ms.max(1) as f64;
        let mut elapsed = 0u64;
        let rows = hops
            .iter()
            .enumerate()
            .map(|(i, (step, hop))| {
                let row = WaterfallRow {
                    y: i as u32 * ROW_HEIGHT,
                    x: round(LABEL_WIDTH + elapsed as f64 * scale),
                    width: round((hop.duration_ms as f64 * scale).max(2.0)),
                    status_class: match hop.status {
                        200..=299 => "s2xx",
                        300..=399 => "s3xx",
                        _ => "s4xx",
                    },
                    label: format!(
                        "{} {} → {} ({} ms)",
                        hop.method, hop.url, hop.status, hop.duration_ms
                    ),
                    short_label: format!("{} {} {}", hop.status, hop.method, short_url(&hop.url)),
                    step: *step,
                };
                elapsed += hop.duration_ms;
                row
            })
            .collect::<Vec<_>>();
        Self {
            height: rows.len() as u32 * ROW_HEIGHT,
            total_ms,
            rows,
        }
    }
}

/// `text` cut to its last `max` characters, marked with an ellipsis when cut.
fn cut_front(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        text.to_string()
    } else {
        format!(
            "…{}",
            text.chars().skip(count - max + 1).collect::<String>()
        )
    }
}

/// The path and query of a URL, cut to fit a chart label.
fn short_url(url: &str) -> String {
    const MAX: usize = 36;
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(url);
    if path.chars().count() <= MAX {
        path.to_string()
    } else {
        format!("{}…", path.chars().take(MAX - 1).collect::<String>())
    }
}

/// Strings as they are, everything else as compact JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn seconds(ms: u64, decimals: usize) -> String {
    format!("{:.decimals$} s", ms as f64 / 1000.0)
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Renders a load run as its own self-contained page: per phase a throughput-over-time chart,
/// a latency-percentile chart and the numbers; the overhead ratios with how they were computed;
/// thresholds; the generator's own CPU and memory.
pub fn render_load(report: &LoadReport) -> Result<String, ReportError> {
    let template = template("load.html")?;
    let view = LoadPageView {
        report,
        style: STYLE,
        passed: report.thresholds.iter().all(|t| t.passed),
        phases: report.phases.iter().map(PhaseView::new).collect(),
    };
    template.render(view).map_err(render_error)
}

#[derive(Serialize)]
struct LoadPageView<'a> {
    report: &'a LoadReport,
    style: &'static str,
    passed: bool,
    phases: Vec<PhaseView<'a>>,
}

const CHART_WIDTH: f64 = 640.0;
const CHART_HEIGHT: f64 = 180.0;
const CHART_LEFT: f64 = 48.0;
const CHART_BOTTOM: f64 = 24.0;

#[derive(Serialize)]
struct PhaseView<'a> {
    phase: &'a PhaseReport,
    name: &'static str,
    slice_warning: Option<String>,
    throughput: LineChart,
    latency: PercentileChart,
    hops: Option<HopChart>,
}

/// Each path's mean latency as a stacked bar of its hops, on one scale.
#[derive(Serialize)]
struct HopChart {
    width: f64,
    height: f64,
    max_ms: String,
    legend: Vec<HopLegend>,
    rows: Vec<HopRow>,
}

#[derive(Serialize)]
struct HopLegend {
    hop: &'static str,
    index: usize,
    describe: &'static str,
}

#[derive(Serialize)]
struct HopRow {
    name: &'static str,
    y: f64,
    total: String,
    segments: Vec<HopSegment>,
}

#[derive(Serialize)]
struct HopSegment {
    hop: &'static str,
    index: usize,
    x: f64,
    width: f64,
    title: String,
}

impl HopChart {
    const LEFT: f64 = 110.0;
    const ROW: f64 = 26.0;

    fn new(breakdown: &crate::load::hops::HopBreakdown) -> Option<Self> {
        use crate::load::hops::Hop;
        if breakdown.paths.is_empty() {
            return None;
        }
        let plot = CHART_WIDTH - Self::LEFT - 64.0;
        // The widest bar drawn: hops measured below zero are drawn empty, so a path's bar may
        // be longer than its mean.
        let max_us = breakdown
            .paths
            .iter()
            .map(|p| p.hops.iter().map(|h| h.mean_us.max(0.0)).sum::<f64>())
            .fold(1.0_f64, f64::max);
        let hops = breakdown.hops();
        let index = |hop: Hop| hops.iter().position(|h| *h == hop).unwrap_or(0);
        let rows = breakdown
            .paths
            .iter()
            .enumerate()
            .map(|(row, path)| {
                let mut x = Self::LEFT;
                let segments = path
                    .hops
                    .iter()
                    .map(|h| {
                        // A hop measured below zero (two logs' populations differ a little)
                        // is drawn empty, its value kept in the tooltip.
                        let width = (h.mean_us.max(0.0) / max_us) * plot;
                        let segment = HopSegment {
                            hop: h.hop.name(),
                            index: index(h.hop),
                            x,
                            width,
                            title: format!(
                                "{} {}: {:.0} µs{}",
                                path.transaction.name(),
                                h.hop.name(),
                                h.mean_us,
                                h.added_us
                                    .map(|a| format!(" ({a:+.0} µs over baseline)"))
                                    .unwrap_or_default()
                            ),
                        };
                        x += width;
                        segment
                    })
                    .collect();
                HopRow {
                    name: path.transaction.name(),
                    y: 8.0 + row as f64 * Self::ROW,
                    total: format!("{:.2} ms", path.client_mean_us / 1000.0),
                    segments,
                }
            })
            .collect();
        Some(Self {
            width: CHART_WIDTH,
            height: 16.0 + breakdown.paths.len() as f64 * Self::ROW,
            max_ms: format!("{:.2}", max_us / 1000.0),
            legend: hops
                .iter()
                .enumerate()
                .map(|(index, hop)| HopLegend {
                    hop: hop.name(),
                    index,
                    describe: hop.describe(),
                })
                .collect(),
            rows,
        })
    }
}

/// Successful requests per second, one line per transaction.
#[derive(Serialize)]
struct LineChart {
    title: &'static str,
    width: f64,
    height: f64,
    plot_left: f64,
    plot_bottom: f64,
    y_max: u64,
    x_extent: String,
    series: Vec<LineSeries>,
}

#[derive(Serialize)]
struct LineSeries {
    name: &'static str,
    index: usize,
    points: String,
}

/// p50, p90 and p99 latency per transaction, on one scale.
#[derive(Serialize)]
struct PercentileChart {
    width: f64,
    height: f64,
    max_ms: String,
    rows: Vec<PercentileRow>,
}

#[derive(Serialize)]
struct PercentileRow {
    name: &'static str,
    y: f64,
    bars: Vec<PercentileBar>,
}

#[derive(Serialize)]
struct PercentileBar {
    label: &'static str,
    y: f64,
    width: f64,
    ms: String,
}

impl<'a> PhaseView<'a> {
    fn new(phase: &'a PhaseReport) -> Self {
        Self {
            phase,
            name: phase.phase.name(),
            slice_warning: phase.slice_warning(),
            throughput: LineChart::new(phase),
            latency: PercentileChart::new(phase),
            hops: phase.hops.as_ref().and_then(HopChart::new),
        }
    }
}

impl LineChart {
    /// Interleaved phases: each path's throughput per round; other phases: successful
    /// completions in each second.
    fn new(phase: &PhaseReport) -> Self {
        if phase.rounds.is_empty() {
            let series = phase
                .transactions
                .iter()
                .map(|t| {
                    let counts = t.ok_per_second.iter().map(|&c| c as f64).collect();
                    (t.transaction.name(), counts)
                })
                .collect();
            Self::plot(
                series,
                "Throughput over time (successful requests per second)",
                "s",
            )
        } else {
            let series = phase
                .transactions
                .iter()
                .map(|t| {
                    let per_round = phase
                        .rounds
                        .iter()
                        .map(|r| {
                            r.requests_per_second
                                .get(&t.transaction)
                                .copied()
                                .unwrap_or_default()
                        })
                        .collect();
                    (t.transaction.name(), per_round)
                })
                .collect();
            Self::plot(
                series,
                "Throughput per round (successful requests per second in each path's slice)",
                "rounds",
            )
        }
    }

    fn plot(
        series: Vec<(&'static str, Vec<f64>)>,
        title: &'static str,
        x_unit: &'static str,
    ) -> Self {
        let points = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        let y_max = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0_f64, f64::max)
            .max(1.0)
            .ceil();
        let plot_width = CHART_WIDTH - CHART_LEFT - 8.0;
        let plot_height = CHART_HEIGHT - CHART_BOTTOM - 8.0;
        let step = plot_width / (points.max(2) - 1) as f64;
        let series = series
            .into_iter()
            .enumerate()
            .map(|(index, (name, values))| LineSeries {
                name,
                index,
                points: values
                    .iter()
                    .enumerate()
                    .map(|(i, &value)| {
                        let x = CHART_LEFT + i as f64 * step;
                        let y = 8.0 + plot_height * (1.0 - value / y_max);
                        format!("{},{}", round(x), round(y))
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            })
            .collect();
        Self {
            title,
            width: CHART_WIDTH,
            height: CHART_HEIGHT,
            plot_left: CHART_LEFT,
            plot_bottom: CHART_HEIGHT - CHART_BOTTOM,
            y_max: y_max as u64,
            x_extent: format!("{points} {x_unit}"),
            series,
        }
    }
}

impl PercentileChart {
    fn new(phase: &PhaseReport) -> Self {
        let max_ms = phase
            .transactions
            .iter()
            .filter_map(|t| t.latency_ms.map(|l| l.p99))
            .fold(0.0_f64, f64::max)
            .max(0.001);
        let label_width = 110.0;
        let bar_space = CHART_WIDTH - label_width - 70.0;
        let row_height = 46.0;
        let rows = phase
            .transactions
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let y = 8.0 + i as f64 * row_height;
                let bars = t
                    .latency_ms
                    .map(|l| {
                        [("p50", l.p50), ("p90", l.p90), ("p99", l.p99)]
                            .into_iter()
                            .enumerate()
                            .map(|(j, (label, ms))| PercentileBar {
                                label,
                                y: y + j as f64 * 13.0,
                                width: round((ms / max_ms * bar_space).max(1.0)),
                                ms: format!("{ms:.2} ms"),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                PercentileRow {
                    name: t.transaction.name(),
                    y: y + 16.0,
                    bars,
                }
            })
            .collect::<Vec<_>>();
        Self {
            width: CHART_WIDTH,
            height: 16.0 + rows.len() as f64 * row_height,
            max_ms: format!("{max_ms:.2}"),
            rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample_events as sample;

    fn sample_html() -> String {
        render(&RunReport::from_events(&sample::events())).unwrap()
    }

    #[test]
    fn a_row_by_column_suite_is_a_grid_with_mismatches_first() {
        use crate::check::CheckResult;
        use crate::report::document::ScenarioReport;
        let cell = |id: &str, passed: bool, expected: &str, actual: &str| ScenarioReport {
            suite: "matrix".into(),
            id: id.into(),
            title: String::new(),
            file: String::new(),
            verdict: Some(if passed { Verdict::Pass } else { Verdict::Fail }),
            duration_ms: 1,
            failures: Vec::new(),
            steps: vec![StepReport {
                index: 1,
                op: "expect",
                summary: String::new(),
                passed,
                duration_ms: 1,
                hops: Vec::new(),
                checks: vec![CheckResult {
                    name: "status".into(),
                    passed,
                    expected: expected.into(),
                    actual: format!(
                        "{actual} at http://httpbin.foo.svc.cluster.local:8000/headers"
                    ),
                    severity: None,
                }],
                error: None,
                jwt: None,
            }],
        };
        let mut report = RunReport::new();
        report.scenarios = vec![
            cell("strict__sleep", true, "403", "403"),
            cell("strict__outside", true, "403", "403"),
            cell("open__sleep", true, "200", "200"),
            cell("open__outside", false, "403", "200"),
        ];
        let html = render(&report).unwrap();
        let grid = &html[html.find("id=\"matrix-matrix\"").unwrap()..];
        assert!(grid.contains("1 cell(s) differ from what they expect"));
        // The row with the mismatch comes first; cells show the short outcome, not the URL.
        assert!(grid.find(">open<").unwrap() < grid.find(">strict<").unwrap());
        assert!(grid.contains(
            "expected <strong>403</strong></span><span class=\"actual\">actual <strong>200</strong>"
        ));
        assert!(!grid[..grid.find("</table>").unwrap()].contains("svc.cluster.local"));
    }

    #[test]
    fn page_is_self_contained_and_escapes_scenario_data() {
        let html = sample_html();
        assert!(html.starts_with("<!doctype html>"), "{}", &html[..80]);
        for remote in ["src=\"http", "href=\"http", "@import", "url(http", "<link"] {
            assert!(!html.contains(remote), "the page must not load {remote}");
        }
        assert!(
            html.contains("A forged &lt;JWT&gt; &amp; a garbage token are &quot;rejected&quot;")
        );
        assert!(!html.contains("<JWT>"));
        assert!(html.contains("&lt;RBAC: access denied&gt;"));
        assert!(html.contains("[signature-redacted]"));
    }

    #[test]
    fn security_section_lists_findings_worst_first_with_what_was_not_checked() {
        let html = sample_html();
        let section =
            &html[html.find("id=\"security\"").unwrap()..html.find("id=\"policy\"").unwrap()];
        assert!(
            section.contains("1 finding(s) in 2 attack check(s)"),
            "{section}"
        );
        assert!(
            section
                .contains("<strong>seed003_origin_auth</strong> — 1 finding(s), 2 attack check(s)")
        );
        assert!(section.contains("<tr class=\"severity-critical\"><td><span class=\"severity\">critical</span></td><td><code>status</code></td><td>401</td><td>200</td>"));
        assert!(section.contains("<code>attack_fail_closed::auth_service_stopped</code>: it needs to stop the auth_service"));
        assert!(section.contains("Limits of this environment"));
    }

    #[test]
    fn failures_come_first_with_expected_and_actual() {
        let html = sample_html();
        let failed = html
            .find("id=\"s0-seed003_origin_auth-forged_token_is_rejected\"")
            .unwrap();
        let passed = html
            .find("id=\"s1-seed000_browser_sso-browser_login\"")
            .unwrap();
        assert!(failed < passed);
        assert!(
            html.contains("<td class=\"expected\">401</td>"),
            "expected/actual table"
        );
        assert!(html.contains("<td class=\"actual\">200</td>"));
    }

    fn sample_load() -> LoadReport {
        use crate::load::report::{GeneratorCpu, Percentiles, TransactionReport};
        use crate::load::schedule::Round;
        use crate::load::{LoadOptions, RunPhase, TransactionKind};
        let transaction = |kind, rps: f64, p50: f64, errors: u64| TransactionReport {
            transaction: kind,
            requests: 100 + errors,
            ok: 100,
            errors,
            error_rate: errors as f64 / (100 + errors) as f64,
            errors_by_kind: if errors > 0 {
                [("HTTP 503 <upstream>".to_string(), errors)].into()
            } else {
                Default::default()
            },
            requests_per_second: rps,
            latency_ms: Some(Percentiles {
                p50,
                p90: p50 * 2.0,
                p99: p50 * 4.0,
                max: p50 * 8.0,
                mean: p50,
            }),
            ok_per_second: vec![10, 40, 35, 15],
            errors_per_second: vec![0, errors, 0, 0],
        };
        let phase = |phase, transactions| PhaseReport {
            phase,
            users: 8,
            seconds: 4.0,
            steady_seconds: 3.0,
            steady: true,
            stopped_at_request_cap: false,
            transactions,
            rounds: [(900.0, 300.0), (880.0, 290.0), (910.0, 310.0)]
                .into_iter()
                .enumerate()
                .map(|(round, (base, cookie))| Round {
                    round,
                    requests_per_second: [
                        (TransactionKind::Baseline, base),
                        (TransactionKind::Cookie, cookie),
                    ]
                    .into(),
                })
                .collect(),
            slice_seconds: Some(1.0),
            window_seconds: Some(0.8),
            precise_after_rounds: None,
            generator: GeneratorCpu {
                cpu_seconds: 0.2,
                cpu_seconds_per_1000_requests: Some(0.05),
                share_of_machine: 0.1,
                machine_busy: 0.9,
            },
            hops: Some(sample_hops()),
        };
        LoadReport::new(
            "2026-01-01T00:00:00Z".into(),
            "https://127.0.0.1:1/status/200".into(),
            Some("https://127.0.0.1:1/baseline/status/200".into()),
            LoadOptions::default(),
            1.5,
            vec![phase(
                RunPhase::Interleaved,
                vec![
                    transaction(TransactionKind::Baseline, 900.0, 1.0, 0),
                    transaction(TransactionKind::Cookie, 300.0, 3.0, 2),
                ],
            )],
        )
    }

    /// A breakdown from recorded gateway and sidecar lines, and a component's CPU.
    fn sample_hops() -> crate::load::hops::HopBreakdown {
        use crate::load::TransactionKind;
        use crate::load::hops::{ComponentCpu, HopLine, breakdown};
        let lines =
            |text: &str| -> Vec<HopLine> { text.lines().filter_map(HopLine::parse).collect() };
        let mut notes = Vec::new();
        let mut hops = breakdown(
            &[
                (TransactionKind::Baseline, 1.0),
                (TransactionKind::Cookie, 14.0),
            ],
            &lines(include_str!(
                "../../tests/data/recorded/gateway-hop-timing.log"
            )),
            &lines(include_str!(
                "../../tests/data/recorded/sidecar-hop-timing.log"
            )),
            &mut notes,
        );
        hops.cpu.push(ComponentCpu {
            component: "oauth2-proxy".into(),
            cpu_seconds: 4.6,
            share_of_machine: 0.14,
            per_request_us: [(TransactionKind::Cookie, 500.0)].into(),
        });
        hops
    }

    #[test]
    fn load_page_shows_each_paths_hops_as_a_stacked_bar() {
        let html = render_load(&sample_load()).unwrap();
        assert!(
            html.contains("Where the time goes, hop by hop"),
            "hop section"
        );
        assert!(html.contains("<rect class=\"hop-"), "stacked segments");
        assert!(
            html.contains("cookie ext_authz: 6735 µs"),
            "a segment's tooltip"
        );
        assert!(
            html.contains("% of added"),
            "each hop's share of the added latency"
        );
        assert!(html.contains("oauth2-proxy</td><td>4.60"), "component CPU");
    }

    #[test]
    fn load_page_is_self_contained_with_charts_ratios_and_errors() {
        let html = render_load(&sample_load()).unwrap();
        assert!(html.starts_with("<!doctype html>"));
        for remote in ["src=\"http", "href=\"http", "@import", "url(http", "<link"] {
            assert!(!html.contains(remote), "the page must not load {remote}");
        }
        assert!(html.contains("Throughput per round"), "throughput chart");
        assert!(
            html.contains("<polyline class=\"series-0\""),
            "a line per transaction"
        );
        assert!(html.contains("<rect class=\"p99\""), "percentile bars");
        assert!(
            html.contains("cookie ÷ baseline") || html.contains("cookie"),
            "ratio row"
        );
        assert!(
            html.contains("0.333"),
            "the cookie/baseline throughput ratio (300/900)"
        );
        assert!(
            html.contains("error: HTTP 503 &lt;upstream&gt;"),
            "errors by kind, escaped"
        );
        assert!(html.contains("PASS — every threshold held"));
        let mut failing = sample_load();
        failing.judge(&crate::load::Thresholds {
            max_p99_ms: Some(0.001),
            ..Default::default()
        });
        let html = render_load(&failing).unwrap();
        assert!(html.contains("FAIL — a threshold was violated") && html.contains("VIOLATED"));
    }

    #[test]
    fn slices_shorter_than_the_latency_are_flagged() {
        let report = sample_load();
        assert!(!render_load(&report).unwrap().contains("slices too short"));
        let mut slow = report.clone();
        let cookie = &mut slow.phases[0].transactions[1];
        cookie.latency_ms.as_mut().unwrap().p99 = 450.0;
        let warning = slow.phases[0]
            .slice_warning()
            .expect("p99 450 ms > 200 ms guard");
        assert!(
            warning.contains("raise --slice to at least 12s"),
            "{warning}"
        );
        assert!(
            render_load(&slow)
                .unwrap()
                .contains("Warning: slices too short")
        );
        assert!(slow.render_text().contains("WARNING: slices too short"));
    }

    #[test]
    fn policy_grid_colours_settings_by_state() {
        let html = sample_html();
        assert!(html.contains("class=\"cell off\""));
        assert!(html.contains("class=\"cell on\""));
    }

    #[test]
    fn waterfall_places_hops_one_after_another() {
        let events = sample::events();
        let report = RunReport::from_events(&events);
        let waterfall = Waterfall::new(&report.scenarios[0].steps);
        assert_eq!(waterfall.rows.len(), 5);
        assert_eq!(waterfall.total_ms, 60);
        let bar_start = |row: usize| (waterfall.rows[row].x - LABEL_WIDTH) / BAR_SPACE;
        assert_eq!(bar_start(0), 0.0);
        assert_eq!(bar_start(1), 0.2);
        assert_eq!(bar_start(4), 0.8);
        assert_eq!(waterfall.rows[2].step, 2);
        assert_eq!(
            waterfall.rows[2].short_label,
            "302 POST /realms/Test-oidc/login-actions/aut…"
        );
    }
}
