//! Reporters consume the engine's [`RunEvent`] stream; none of them runs anything.

pub mod terminal;

use crate::events::{EventSink, RunEvent};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing the {reporter} report to {path}: {source}")]
    Io {
        reporter: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
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
