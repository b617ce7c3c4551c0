//! Human-readable progress and verdicts on a terminal. Colour only when the stream is a
//! terminal and `NO_COLOR` is unset.

use std::io::Write;

use owo_colors::{OwoColorize, Stream};

use super::{ReportError, Reporter};
use crate::events::{RunEvent, Verdict};

pub struct TerminalReporter<W: Write> {
    out: W,
    verbose: bool,
    /// The running scenario's step lines, printed under its verdict line so that in a log they
    /// read as that scenario's, never the previous one's.
    pending: Vec<String>,
}

impl<W: Write> TerminalReporter<W> {
    pub fn new(out: W, verbose: bool) -> Self {
        Self {
            out,
            verbose,
            pending: Vec::new(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

fn io(source: std::io::Error) -> ReportError {
    ReportError::Io {
        reporter: "terminal",
        path: "<stdout>".into(),
        source,
    }
}

impl<W: Write> Reporter for TerminalReporter<W> {
    fn on_event(&mut self, event: &RunEvent) -> Result<(), ReportError> {
        let out = &mut self.out;
        match event {
            RunEvent::RunStarted {
                environment,
                selected,
                ..
            } => {
                writeln!(
                    out,
                    "running {selected} scenario(s) against the {} environment",
                    environment.kind
                )
                .map_err(io)?;
                writeln!(out, "  app:    {}", environment.app_url).map_err(io)?;
                writeln!(out, "  issuer: {}", environment.issuer).map_err(io)?;
            }
            RunEvent::ScenarioStarted { .. } => self.pending.clear(),
            RunEvent::StepFinished { step, .. } => {
                if self.verbose || !step.passed {
                    let lines = &mut self.pending;
                    let mark = if step.passed { "ok  " } else { "FAIL" };
                    lines.push(format!(
                        "    {mark} step {} {} ({} ms)",
                        step.index, step.summary, step.duration_ms
                    ));
                    for hop in &step.hops {
                        lines.push(format!("         {hop}"));
                    }
                    for check in step.checks.iter().filter(|c| self.verbose || !c.passed) {
                        let mark = if check.passed { "✓" } else { "✗" };
                        lines.push(format!("         {mark} {check}"));
                    }
                    if let Some(error) = &step.error {
                        lines.push(format!("         error: {error}"));
                    }
                }
            }
            RunEvent::ScenarioFinished {
                suite,
                scenario,
                verdict,
                duration_ms,
                ..
            } => {
                let label = match verdict {
                    Verdict::Pass => format!(
                        "{}",
                        "PASS".if_supports_color(Stream::Stdout, |t| t.green())
                    ),
                    Verdict::Fail => {
                        format!("{}", "FAIL".if_supports_color(Stream::Stdout, |t| t.red()))
                    }
                };
                writeln!(
                    out,
                    "{label} {suite}::{scenario} ({:.1}s)",
                    *duration_ms as f64 / 1000.0
                )
                .map_err(io)?;
                for line in self.pending.drain(..) {
                    writeln!(out, "{line}").map_err(io)?;
                }
            }
            RunEvent::RunFinished { summary } => {
                let line = format!(
                    "{} passed, {} failed, {} total in {:.1}s",
                    summary.passed,
                    summary.failed,
                    summary.total,
                    summary.duration_ms as f64 / 1000.0
                );
                if summary.all_passed() {
                    writeln!(
                        out,
                        "\n{}",
                        line.if_supports_color(Stream::Stdout, |t| t.green())
                    )
                    .map_err(io)?;
                } else {
                    writeln!(
                        out,
                        "\n{}",
                        line.if_supports_color(Stream::Stdout, |t| t.red())
                    )
                    .map_err(io)?;
                }
            }
        }
        out.flush().map_err(io)
    }
}
