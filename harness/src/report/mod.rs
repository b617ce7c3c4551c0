//! Reporters consume the engine's [`RunEvent`] stream; none of them runs anything.

pub mod document;
pub mod html;
pub mod json;
pub mod junit;

pub mod terminal;
pub mod versions;

use std::path::{Path, PathBuf};

use crate::events::{EventSink, RunEvent};
use crate::redact::Redactor;
pub use document::RunReport;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing the {reporter} report to {path}: {source}")]
    Io {
        reporter: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "rendering the {reporter} report failed: {detail} (this is a bug in meshauth; please report it)"
    )]
    Render {
        reporter: &'static str,
        detail: String,
    },
}

pub trait Reporter {
    fn on_event(&mut self, event: &RunEvent) -> Result<(), ReportError>;

    /// Called once after the last event; file reporters write their output here.
    fn finish(&mut self) -> Result<(), ReportError> {
        Ok(())
    }
}

/// Fans events out to several reporters, remembering the first error instead of stopping
/// the run: a report that cannot be written must not hide the verdicts of the others.
#[derive(Default)]
pub struct Reporters {
    reporters: Vec<Box<dyn Reporter>>,
    errors: Vec<ReportError>,
}

impl Reporters {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, reporter: Box<dyn Reporter>) {
        self.reporters.push(reporter);
    }

    /// Finishes every reporter and returns all errors seen.
    pub fn finish(mut self) -> Vec<ReportError> {
        for reporter in &mut self.reporters {
            if let Err(e) = reporter.finish() {
                self.errors.push(e);
            }
        }
        self.errors
    }
}

impl EventSink for Reporters {
    fn emit(&mut self, event: RunEvent) {
        for reporter in &mut self.reporters {
            if let Err(e) = reporter.on_event(&event) {
                self.errors.push(e);
            }
        }
    }
}

/// A report file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// One self-contained HTML page (`report.html`).
    Html,
    /// JUnit XML for CI test viewers (`junit.xml`).
    Junit,
    /// The versioned JSON document (`report.json`).
    Json,
}

impl ReportFormat {
    pub const ALL: [ReportFormat; 3] = [Self::Html, Self::Junit, Self::Json];

    pub fn name(self) -> &'static str {
        match self {
            Self::Html => "html",
            Self::Junit => "junit",
            Self::Json => "json",
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Self::Html => "report.html",
            Self::Junit => "junit.xml",
            Self::Json => "report.json",
        }
    }

    pub fn render(self, report: &RunReport) -> Result<String, ReportError> {
        match self {
            Self::Html => html::render(report),
            Self::Junit => junit::render(report),
            Self::Json => json::render(report),
        }
    }
}

impl std::fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ReportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown report format {s:?}; use html, junit or json"))
    }
}

/// Folds the event stream into a [`RunReport`] and writes it in one format when the run ends.
/// The written text passes through the run's [`Redactor`] once more: events are redacted when
/// recorded, and this second pass removes any registered secret or JWT signature from a field
/// that was not (query-parameter redaction is per value only: on a whole document its pattern
/// would run into the document's own quotes and break the JSON).
pub struct FileReporter {
    format: ReportFormat,
    path: PathBuf,
    redactor: Redactor,
    report: RunReport,
}

impl FileReporter {
    pub fn new(format: ReportFormat, dir: &Path, redactor: Redactor) -> Self {
        Self {
            format,
            path: dir.join(format.file_name()),
            redactor,
            report: RunReport::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Reporter for FileReporter {
    fn on_event(&mut self, event: &RunEvent) -> Result<(), ReportError> {
        self.report.apply(event);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        let text = self
            .redactor
            .redact_known_secrets(&self.format.render(&self.report)?);
        write_atomically(&self.path, &text).map_err(|source| ReportError::Io {
            reporter: self.format.name(),
            path: self.path.display().to_string(),
            source,
        })
    }
}

/// One [`FileReporter`] per format, writing into `dir` (created if missing), and the paths
/// they will write.
pub fn file_reporters(
    formats: &[ReportFormat],
    dir: &Path,
    redactor: &Redactor,
) -> Result<(Vec<FileReporter>, Vec<PathBuf>), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        reporter: "file",
        path: dir.display().to_string(),
        source,
    })?;
    let mut seen = Vec::new();
    let reporters: Vec<FileReporter> = formats
        .iter()
        .filter(|f| {
            let first = !seen.contains(*f);
            seen.push(**f);
            first
        })
        .map(|format| FileReporter::new(*format, dir, redactor.clone()))
        .collect();
    let paths = reporters.iter().map(|r| r.path().to_path_buf()).collect();
    Ok((reporters, paths))
}

/// Writes via a temporary file and a rename, so a viewer never sees half a report.
/// What a load run writes: its own page and its JSON document (`LoadReport`, schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadReportFormat {
    /// `load.html`: throughput-over-time and latency-percentile charts, ratios, thresholds.
    Html,
    /// `load.json`: the serialized `LoadReport`.
    Json,
}

impl LoadReportFormat {
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Html => "load.html",
            Self::Json => "load.json",
        }
    }
}

/// Writes a load run's reports into `dir`, each through the run's redactor, and returns the
/// paths written.
pub fn write_load_reports(
    report: &crate::load::report::LoadReport,
    formats: &[LoadReportFormat],
    dir: &Path,
    redactor: &Redactor,
) -> Result<Vec<PathBuf>, ReportError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ReportError::Io {
            reporter: "load",
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    for format in formats {
        let text = match format {
            LoadReportFormat::Html => html::render_load(report)?,
            LoadReportFormat::Json => {
                serde_json::to_string_pretty(report).map_err(|e| ReportError::Render {
                    reporter: "load",
                    detail: e.to_string(),
                })?
            }
        };
        let path = dir.join(format.file_name());
        write_atomically(&path, &redactor.redact_known_secrets(&text)).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample_events as sample;

    #[test]
    fn formats_parse_from_cli_words() {
        assert_eq!("HTML".parse::<ReportFormat>(), Ok(ReportFormat::Html));
        assert_eq!(" junit".parse::<ReportFormat>(), Ok(ReportFormat::Junit));
        assert!(
            "pdf"
                .parse::<ReportFormat>()
                .unwrap_err()
                .contains("html, junit or json")
        );
    }

    #[test]
    fn file_reporters_write_every_format_once_and_redact_a_leak() {
        let dir = std::env::temp_dir().join(format!("meshauth-report-test-{}", std::process::id()));
        let redactor = Redactor::new();
        // A secret the sample does not know about, smuggled into a title and a hop URL.
        redactor.register_str("leaky-secret-value-123");
        let mut events = sample::events();
        if let RunEvent::ScenarioStarted { title, .. } = &mut events[1] {
            title.push_str(" leaky-secret-value-123");
        }
        let (reporters, paths) = file_reporters(
            &[
                ReportFormat::Json,
                ReportFormat::Html,
                ReportFormat::Junit,
                ReportFormat::Json,
            ],
            &dir,
            &redactor,
        )
        .unwrap();
        assert_eq!(paths.len(), 3);
        let mut fan_out = Reporters::new();
        for reporter in reporters {
            fan_out.add(Box::new(reporter));
        }
        for event in events {
            fan_out.emit(event);
        }
        assert!(fan_out.finish().is_empty());
        for path in &paths {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(
                !text.contains("leaky-secret-value-123"),
                "{}",
                path.display()
            );
            assert!(text.contains("[redacted]"), "{}", path.display());
        }
        // The second pass must leave the documents well formed (the sample's URLs end in
        // `state=[redacted]`, right before a closing quote).
        let json = std::fs::read_to_string(dir.join("report.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&json).expect("report.json stays valid JSON");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
