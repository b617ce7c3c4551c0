//! Shared set-up for the integration tests: install the components (cached), start one real
//! local stack, and render a scenario's events into text for failure messages.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Instant;

use meshauth::components::{self, CacheDir, InstallEvent};
use meshauth::env::{LocalStack, StackConfig, StackEvent};
use meshauth::events::{EventSink, RunEvent, Verdict};
use meshauth::redact::Redactor;
use meshauth::report::Reporter;
use meshauth::report::terminal::TerminalReporter;

/// The `meshauth` binary under test, without colour, its run directories under `runs` in the
/// tests' scratch space (never in the source tree: they hold logs and per-run secrets).
pub fn meshauth(runs: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_meshauth"));
    command.env("NO_COLOR", "1");
    command.env(
        "MESHAUTH_RUNS_DIR",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(runs),
    );
    command
}

/// Whether the tests run under CI (env `CI` set and not false), where a missing prerequisite
/// that `.ci/run` installs is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A run directory under Cargo's per-target temporary directory.
pub fn run_dir(test: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("runs/{test}-{stamp}"))
}

/// Installs what is missing and starts the stack, logging progress to stderr.
pub fn start_stack(
    runtime: &tokio::runtime::Runtime,
    test: &str,
    config: StackConfig,
    redactor: &Redactor,
) -> Result<LocalStack, String> {
    let started = Instant::now();
    let cache = CacheDir::from_env().map_err(|e| e.to_string())?;
    let observe = |event: InstallEvent| match event {
        InstallEvent::Started { component, action } => eprintln!("[{test}] {component}: {action}"),
        InstallEvent::Finished { component, detail } => eprintln!("[{test}] {component}: {detail}"),
    };
    let toolchain = components::ensure_installed(&cache, &observe).map_err(|e| e.to_string())?;
    let dir = run_dir(test);
    let progress = |event: StackEvent| {
        if let StackEvent::Ready { component, after } = event {
            eprintln!(
                "[{test}] {component} ready after {:.1}s",
                after.as_secs_f64()
            );
        }
    };
    let stack = runtime
        .block_on(LocalStack::start(
            toolchain, &dir, config, redactor, &progress,
        ))
        .map_err(|e| e.to_string())?;
    eprintln!(
        "[{test}] stack up in {:.1}s, run directory {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(stack)
}

/// Collects a scenario's events as the terminal reporter would print them (failing steps
/// with their hops and checks), for a test's failure message.
pub struct Transcript {
    reporter: TerminalReporter<Vec<u8>>,
}

impl Transcript {
    pub fn new() -> Self {
        Self {
            reporter: TerminalReporter::new(Vec::new(), false),
        }
    }

    pub fn text(self) -> String {
        String::from_utf8_lossy(&self.reporter.into_inner()).into_owned()
    }
}

impl EventSink for Transcript {
    fn emit(&mut self, event: RunEvent) {
        let _ = self.reporter.on_event(&event);
    }
}

/// Each scenario's events as the terminal reporter prints them, and its verdict, from one
/// engine run of many: events are routed by scenario name, so nothing here depends on the
/// order the engine emits them in.
#[derive(Default)]
pub struct Transcripts {
    running: Vec<(String, Transcript)>,
    finished: Vec<(String, Verdict, String)>,
    pub left_out: Vec<(String, String)>,
}

impl Transcripts {
    /// The verdict and transcript of `name` (`suite::id`); a left-out scenario fails with why.
    pub fn outcome(&self, name: &str) -> Option<(Verdict, String)> {
        let finished = self
            .finished
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, verdict, text)| (*verdict, text.clone()));
        finished.or_else(|| {
            self.left_out
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, why)| (Verdict::Fail, why.clone()))
        })
    }
}

impl EventSink for Transcripts {
    fn emit(&mut self, event: RunEvent) {
        let name = match &event {
            RunEvent::ScenarioStarted {
                suite, scenario, ..
            }
            | RunEvent::StepFinished {
                suite, scenario, ..
            }
            | RunEvent::ScenarioFinished {
                suite, scenario, ..
            } => format!("{suite}::{scenario}"),
            _ => return,
        };
        let verdict = match &event {
            RunEvent::ScenarioFinished { verdict, .. } => Some(*verdict),
            _ => None,
        };
        let at = match self.running.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                self.running.push((name.clone(), Transcript::new()));
                self.running.len() - 1
            }
        };
        self.running[at].1.emit(event);
        if let Some(verdict) = verdict {
            let (name, transcript) = self.running.swap_remove(at);
            self.finished.push((name, verdict, transcript.text()));
        }
    }
}

/// Whether libtest's name filters (`cargo test -- FILTER --skip X --exact`) select `name`, so a
/// run that selects nothing does not start a stack.
pub fn selected_by(args: &libtest_mimic::Arguments, name: &str) -> bool {
    let matches = |filter: &str| {
        if args.exact {
            name == filter
        } else {
            name.contains(filter)
        }
    };
    args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}

/// Every process descended from `root` (not `root` itself), read from /proc.
pub fn descendants(root: u32) -> std::collections::BTreeSet<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which may hold spaces: state, then ppid.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = std::collections::BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, _) in parents.iter().filter(|(_, ppid)| *ppid == parent) {
            if found.insert(*pid) {
                frontier.push(*pid);
            }
        }
    }
    found
}
