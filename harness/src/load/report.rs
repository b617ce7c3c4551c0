//! [`LoadReport`]: what a load run measured, serialisable as JSON (`meshauth load --out`) and
//! laid out for charts: per-second throughput series and latency percentiles per transaction.
//!
//! Shape (schema 1), for report writers:
//! - `phases[]`: one per phase run in order; each has `transactions[]` (`transaction`,
//!   `requests`, `ok`, `errors`, `error_rate`, `errors_by_kind`, `requests_per_second`,
//!   `latency_ms` {`p50`,`p90`,`p99`,`max`,`mean`}, `ok_per_second[]`, `errors_per_second[]`:
//!   index i counts completions in second i since the phase started) and `generator` (CPU).
//!   The interleaved phase also has `rounds[]`: each round's `requests_per_second` per path.
//! - `ratios[]`: overhead ratios (median over rounds, with their spread) and the formula used
//!   (`method`).
//! - `thresholds[]`: each threshold asked for, its limit, the measured value, pass/fail.
//! - `phases[].hops` (or null): `paths[]` (`transaction`, `client_mean_us`, `hops[]` of `hop`,
//!   `mean_us`, `p50_us`, `added_us`, `share_of_added`), `cpu[]` (`component`, `cpu_seconds`,
//!   `share_of_machine`, `per_request_us` per path) and `notes[]`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use super::cpu::{CpuUse, MachineInfo, peak_resident_kib};
use super::recorder::{Recorder, TransactionRecorder};
use super::schedule::{AUTHENTICATED, Round, Spread, round_ratios};
use super::{LoadOptions, RunPhase, TransactionKind};

/// 2: baseline, cookie and bearer run interleaved (`phases[].rounds`, ratio spreads).
/// 3: `phases[].hops`, the per-hop breakdown and each component's CPU.
pub const SCHEMA: u32 = 3;

pub fn serialize_seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TransactionReport {
    pub transaction: TransactionKind,
    /// Completed attempts: `ok + errors`.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Successful completions per second in the steady window (every user started and holding
    /// its credential), or over the whole phase when it never got steady (`steady` false). In
    /// the interleaved phase: over the measurement windows of this path's slices.
    pub requests_per_second: f64,
    /// Latency of successful requests (for login_storm: of the whole login flow), in ms.
    /// `None` when nothing succeeded.
    pub latency_ms: Option<Percentiles>,
    pub ok_per_second: Vec<u64>,
    pub errors_per_second: Vec<u64>,
}

/// The generator's (this process's) CPU use during a phase.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GeneratorCpu {
    pub cpu_seconds: f64,
    pub cpu_seconds_per_1000_requests: Option<f64>,
    pub share_of_machine: f64,
    pub machine_busy: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseReport {
    pub phase: RunPhase,
    pub users: usize,
    /// Wall time of the phase, ramp included.
    pub seconds: f64,
    /// Length of the steady window the throughput is computed over.
    pub steady_seconds: f64,
    pub steady: bool,
    /// Set when the phase stopped at its request cap rather than its duration.
    pub stopped_at_request_cap: bool,
    pub transactions: Vec<TransactionReport>,
    /// The interleaved phase's whole rounds (empty for other phases).
    pub rounds: Vec<Round>,
    /// The interleaved phase's slice and the counted window within it, in seconds.
    pub slice_seconds: Option<f64>,
    pub window_seconds: Option<f64>,
    /// With `--precision`: the rounds after which every ratio was precise enough (the phase
    /// then stopped); `None` when it was not asked for or not reached within `--duration`.
    pub precise_after_rounds: Option<usize>,
    pub generator: GeneratorCpu,
    /// Where each path's time and the machine's CPU went, hop by hop, where the environment
    /// shows its components' own timing.
    pub hops: Option<super::hops::HopBreakdown>,
}

/// How much of the unauthenticated throughput an authenticated path keeps.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OverheadRatio {
    /// e.g. `cookie/baseline`.
    pub name: String,
    /// Authenticated requests/s ÷ baseline requests/s (1.0 = SSO costs nothing; 0.5 = half
    /// the throughput): the median of the rounds' ratios.
    pub throughput_ratio: f64,
    /// The rounds' ratios: how steady the measurement was, and the 95% confidence interval
    /// of the median.
    pub throughput_ratio_spread: Spread,
    /// Half the confidence interval's width relative to the median (0.02 = ±2%).
    pub precision: f64,
    pub rounds: usize,
    /// Authenticated p50 ÷ baseline p50.
    pub p50_latency_ratio: f64,
    /// Authenticated p50 − baseline p50, in ms: what SSO adds to a typical request.
    pub p50_added_ms: f64,
    pub method: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThresholdOutcome {
    /// The option, e.g. `--max-p99`.
    pub threshold: String,
    /// What it was applied to, e.g. `cookie` or `cookie/baseline`.
    pub subject: String,
    pub limit: f64,
    pub measured: f64,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GeneratorInfo {
    pub peak_resident_mib: f64,
    pub machine: MachineInfo,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub schema: u32,
    pub started_at: String,
    pub protected_url: String,
    pub baseline_url: Option<String>,
    pub options: LoadOptions,
    /// Time spent obtaining every user's cookie and token before the phases (not measured).
    pub credential_seconds: f64,
    pub phases: Vec<PhaseReport>,
    pub ratios: Vec<OverheadRatio>,
    pub thresholds: Vec<ThresholdOutcome>,
    pub generator: GeneratorInfo,
}

fn series(slots: &[std::sync::atomic::AtomicU64], until_second: usize) -> Vec<u64> {
    slots
        .iter()
        .take(until_second.max(1))
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .collect()
}

/// How a transaction's successful requests per second are computed.
enum Rate<'a> {
    /// Over the interleaved phase's rounds: the mean of the path's per-window throughput.
    Rounds(&'a [Round]),
    /// Over `seconds`: the steady window's successes when `steady`, else all of them.
    Window { seconds: f64, steady: bool },
}

fn transaction_report(
    kind: TransactionKind,
    recorder: &TransactionRecorder,
    rate: Rate<'_>,
    seconds: usize,
) -> TransactionReport {
    let ok = recorder.ok();
    let errors_by_kind = recorder
        .errors
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    let errors: u64 = errors_by_kind.values().sum();
    let requests = ok + errors;
    let h = &recorder.latency;
    let latency_ms = h.max_ms().map(|max| Percentiles {
        p50: h.quantile_ms(0.50).unwrap_or_default(),
        p90: h.quantile_ms(0.90).unwrap_or_default(),
        p99: h.quantile_ms(0.99).unwrap_or_default(),
        max,
        mean: h.mean_ms().unwrap_or_default(),
    });
    let requests_per_second = match rate {
        Rate::Rounds(rounds) => {
            let per_round: Vec<f64> = rounds
                .iter()
                .filter_map(|r| r.requests_per_second.get(&kind).copied())
                .collect();
            if per_round.is_empty() {
                0.0
            } else {
                per_round.iter().sum::<f64>() / per_round.len() as f64
            }
        }
        Rate::Window { seconds, steady } => {
            let counted = if steady {
                recorder
                    .steady_ok
                    .load(std::sync::atomic::Ordering::Relaxed)
            } else {
                ok
            };
            if seconds > 0.0 {
                counted as f64 / seconds
            } else {
                0.0
            }
        }
    };
    TransactionReport {
        transaction: kind,
        requests,
        ok,
        errors,
        error_rate: if requests > 0 {
            errors as f64 / requests as f64
        } else {
            0.0
        },
        errors_by_kind,
        requests_per_second,
        latency_ms,
        ok_per_second: series(&recorder.ok_per_second, seconds),
        errors_per_second: series(&recorder.errors_per_second, seconds),
    }
}

impl PhaseReport {
    pub fn from_recorder(
        phase: RunPhase,
        kinds: &[TransactionKind],
        users: usize,
        recorder: &Recorder,
        cpu: CpuUse,
    ) -> Self {
        let ended = Instant::now();
        let seconds = ended.duration_since(recorder.started()).as_secs_f64();
        let steady_window = recorder
            .steady_since()
            .map(|since| ended.duration_since(since).as_secs_f64())
            .filter(|s| *s > 0.5);
        let steady = steady_window.is_some();
        let rate_seconds = steady_window.unwrap_or(seconds);
        let rounds = recorder.rounds(ended);
        let transactions: Vec<TransactionReport> = kinds
            .iter()
            .map(|&kind| {
                let rate = match recorder.schedule() {
                    Some(_) => Rate::Rounds(&rounds),
                    None => Rate::Window {
                        seconds: rate_seconds,
                        steady,
                    },
                };
                transaction_report(
                    kind,
                    recorder.transaction(kind),
                    rate,
                    seconds.ceil() as usize,
                )
            })
            .collect();
        let requests: u64 = transactions.iter().map(|t| t.requests).sum();
        Self {
            phase,
            users,
            seconds,
            steady_seconds: steady_window.unwrap_or(0.0),
            steady,
            stopped_at_request_cap: recorder.cap_reached(),
            transactions,
            rounds,
            slice_seconds: recorder.schedule().map(|s| s.slice().as_secs_f64()),
            window_seconds: recorder.schedule().map(|s| s.window().as_secs_f64()),
            precise_after_rounds: recorder.schedule().and_then(|s| s.precise_after()),
            generator: GeneratorCpu {
                cpu_seconds: cpu.cpu_seconds,
                cpu_seconds_per_1000_requests: (requests > 0)
                    .then(|| cpu.cpu_seconds * 1000.0 / requests as f64),
                share_of_machine: cpu.share_of_machine,
                machine_busy: cpu.machine_busy,
            },
            hops: None,
        }
    }

    /// A warning when the interleaved slices are too short for the latency measured: a
    /// slice's guard must outlast the requests still in flight from the previous path, and a
    /// window must hold many requests per user, or the rounds compare switch-overs.
    pub fn slice_warning(&self) -> Option<String> {
        let (slice, window) = (self.slice_seconds?, self.window_seconds?);
        let guard_ms = (slice - window) * 1000.0;
        let worst_p99 = self
            .transactions
            .iter()
            .filter_map(|t| t.latency_ms.map(|l| l.p99))
            .fold(0.0_f64, f64::max);
        (worst_p99 > guard_ms || worst_p99 * 20.0 > window * 1000.0).then(|| {
            format!(
                "slices too short for this latency: p99 {worst_p99:.0} ms against a {guard_ms:.0} ms guard and a {:.0} ms window; the ratios are unreliable — raise --slice to at least {:.0}s",
                window * 1000.0,
                ((worst_p99 * 25.0) / 1000.0).max(guard_ms * 5.0 / 1000.0).ceil()
            )
        })
    }

    pub fn transaction(&self, kind: TransactionKind) -> Option<&TransactionReport> {
        self.transactions.iter().find(|t| t.transaction == kind)
    }

    /// A progress line for the terminal while the run goes on.
    pub fn one_line(&self) -> String {
        let parts: Vec<String> = self
            .transactions
            .iter()
            .map(|t| {
                format!(
                    "{} {:.0} req/s, p99 {}, {} error(s)",
                    t.transaction.name(),
                    t.requests_per_second,
                    t.latency_ms
                        .map_or("-".into(), |l| format!("{:.2} ms", l.p99)),
                    t.errors
                )
            })
            .collect();
        format!("phase {} done: {}", self.phase.name(), parts.join("; "))
    }
}

/// Cookie and bearer against the baseline, from the interleaved phase: each round's ratio of
/// the two paths' throughputs (measured a slice apart), summarised by the median.
fn ratios(phases: &[PhaseReport]) -> Vec<OverheadRatio> {
    let Some(phase) = phases.iter().find(|p| p.phase == RunPhase::Interleaved) else {
        return Vec::new();
    };
    let Some(base_latency) = phase
        .transaction(TransactionKind::Baseline)
        .and_then(|t| t.latency_ms)
    else {
        return Vec::new();
    };
    AUTHENTICATED
        .into_iter()
        .filter_map(|kind| {
            let latency = phase.transaction(kind)?.latency_ms?;
            let per_round = round_ratios(&phase.rounds, kind);
            let spread = Spread::of(&per_round)?;
            (base_latency.p50 > 0.0).then(|| OverheadRatio {
                name: format!("{}/baseline", kind.name()),
                throughput_ratio: spread.median,
                throughput_ratio_spread: spread,
                precision: spread.relative_ci95_half_width(),
                rounds: per_round.len(),
                p50_latency_ratio: latency.p50 / base_latency.p50,
                p50_added_ms: latency.p50 - base_latency.p50,
                method: format!(
                    "median over {rounds} rounds of ({0} successful req/s ÷ baseline successful \
                     req/s), each round giving every path one {slice:.2} s slice with the same \
                     users on the same gateway and counting completions in the last {window:.2} s \
                     of it; 95% confidence interval of the median from order statistics; p50 of \
                     all measured {0} requests ÷ and − the baseline's p50",
                    kind.name(),
                    rounds = per_round.len(),
                    slice = phase.slice_seconds.unwrap_or_default(),
                    window = phase.window_seconds.unwrap_or_default(),
                ),
            })
        })
        .collect()
}

impl LoadReport {
    pub fn new(
        started_at: String,
        protected_url: String,
        baseline_url: Option<String>,
        options: LoadOptions,
        credential_seconds: f64,
        phases: Vec<PhaseReport>,
    ) -> Self {
        let ratios = ratios(&phases);
        Self {
            schema: SCHEMA,
            started_at,
            protected_url,
            baseline_url,
            options,
            credential_seconds,
            phases,
            ratios,
            thresholds: Vec::new(),
            generator: GeneratorInfo {
                peak_resident_mib: peak_resident_kib() as f64 / 1024.0,
                machine: MachineInfo::detect(),
            },
        }
    }

    /// Transactions that completed no successful request: a load run with one of these did
    /// not measure what it claims to.
    pub fn silent_transactions(&self) -> Vec<String> {
        self.phases
            .iter()
            .flat_map(|p| {
                p.transactions
                    .iter()
                    .filter(|t| t.ok == 0)
                    .map(move |t| format!("{} in phase {}", t.transaction.name(), p.phase.name()))
            })
            .collect()
    }

    /// Judges `thresholds`, records each outcome in the report and returns the violations.
    pub fn judge(&mut self, thresholds: &Thresholds) -> Vec<Violation> {
        let mut outcomes = Vec::new();
        for phase in &self.phases {
            for t in &phase.transactions {
                let subject = format!("{} (phase {})", t.transaction.name(), phase.phase.name());
                if let Some(limit) = thresholds.max_p99_ms
                    && t.transaction != TransactionKind::LoginStorm
                {
                    // Nothing measured counts as infinitely slow: a gate must not pass on no data.
                    let measured = t.latency_ms.map_or(f64::INFINITY, |l| l.p99);
                    outcomes.push(ThresholdOutcome {
                        threshold: "--max-p99".into(),
                        subject: subject.clone(),
                        limit,
                        measured,
                        passed: measured <= limit,
                    });
                }
                if let Some(limit) = thresholds.max_error_rate {
                    let measured = if t.requests == 0 { 1.0 } else { t.error_rate };
                    outcomes.push(ThresholdOutcome {
                        threshold: "--max-error-rate".into(),
                        subject,
                        limit,
                        measured,
                        passed: measured <= limit,
                    });
                }
            }
        }
        if let Some(limit) = thresholds.min_ratio {
            if self.ratios.is_empty() {
                outcomes.push(ThresholdOutcome {
                    threshold: "--min-ratio".into(),
                    subject: "no ratio could be computed (baseline or auth phase missing or empty)"
                        .into(),
                    limit,
                    measured: 0.0,
                    passed: false,
                });
            }
            for ratio in &self.ratios {
                outcomes.push(ThresholdOutcome {
                    threshold: "--min-ratio".into(),
                    subject: ratio.name.clone(),
                    limit,
                    measured: ratio.throughput_ratio,
                    passed: ratio.throughput_ratio >= limit,
                });
            }
        }
        let violations = outcomes
            .iter()
            .filter(|o| !o.passed)
            .map(|o| Violation {
                threshold: o.threshold.clone(),
                subject: o.subject.clone(),
                limit: o.limit,
                measured: o.measured,
            })
            .collect();
        self.thresholds = outcomes;
        violations
    }

    /// The terminal summary.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "load: {} users, hatch {}/s, {}s per phase, path /{}",
            self.options.users,
            self.options.hatch_rate,
            self.options.duration.as_secs(),
            self.options.path.trim_start_matches('/')
        );
        let _ = writeln!(
            out,
            "{:<12} {:<12} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "phase", "transaction", "req/s", "ok", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
        );
        for phase in &self.phases {
            for t in &phase.transactions {
                let l = t.latency_ms.unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:<12} {:<12} {:>9.1} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
                    phase.phase.name(),
                    t.transaction.name(),
                    t.requests_per_second,
                    t.ok,
                    l.p50,
                    l.p90,
                    l.p99,
                    l.max,
                    t.errors
                );
                for (kind, count) in &t.errors_by_kind {
                    let _ = writeln!(out, "{:>26} {count} × {kind}", "error:");
                }
            }
            let g = &phase.generator;
            let _ = writeln!(
                out,
                "{:<12} generator CPU {:.2} s ({} per 1,000 requests), {:.0}% of the machine (machine busy {:.0}%){}{}",
                "",
                g.cpu_seconds,
                g.cpu_seconds_per_1000_requests
                    .map_or("-".into(), |c| format!("{c:.3} s")),
                g.share_of_machine * 100.0,
                g.machine_busy * 100.0,
                if phase.steady {
                    ""
                } else {
                    "; never steady: rate over the whole phase"
                },
                if phase.stopped_at_request_cap {
                    "; stopped at the request cap"
                } else {
                    ""
                },
            );
            if let Some(warning) = phase.slice_warning() {
                let _ = writeln!(out, "{:<12} WARNING: {warning}", "");
            }
            if let Some(hops) = &phase.hops {
                render_hops(&mut out, hops);
            }
            if let Some(rounds) = phase.precise_after_rounds {
                let _ = writeln!(
                    out,
                    "{:<12} every ratio reached the requested precision after {rounds} rounds: stopped there",
                    ""
                );
            } else if let (Some(precision), RunPhase::Interleaved) =
                (self.options.precision, phase.phase)
            {
                let _ = writeln!(
                    out,
                    "{:<12} the requested precision (±{:.1}%) was not reached within --duration: raise it, or accept the precision shown below",
                    "",
                    precision * 100.0
                );
            }
        }
        for r in &self.ratios {
            let _ = writeln!(
                out,
                "overhead {}: throughput ratio {:.3} ±{:.1}% (median of {} rounds; 95% CI {:.3}–{:.3}, IQR {:.3}–{:.3}, range {:.3}–{:.3}), p50 {:.2}x (+{:.2} ms)",
                r.name,
                r.throughput_ratio,
                r.precision * 100.0,
                r.rounds,
                r.throughput_ratio_spread.median_ci95_low,
                r.throughput_ratio_spread.median_ci95_high,
                r.throughput_ratio_spread.p25,
                r.throughput_ratio_spread.p75,
                r.throughput_ratio_spread.min,
                r.throughput_ratio_spread.max,
                r.p50_latency_ratio,
                r.p50_added_ms
            );
        }
        let _ = writeln!(
            out,
            "generator peak memory {:.1} MiB on {} CPU(s) ({})",
            self.generator.peak_resident_mib,
            self.generator.machine.cpus,
            self.generator.machine.cpu_model
        );
        for t in &self.thresholds {
            let _ = writeln!(
                out,
                "threshold {} {} for {}: measured {} — {}",
                t.threshold,
                t.limit,
                t.subject,
                format_measured(t.measured),
                if t.passed { "ok" } else { "VIOLATED" }
            );
        }
        out
    }
}

/// The per-hop breakdown as text: a row per hop, a column per path (mean µs, and what it adds
/// over the baseline), then each component's CPU.
fn render_hops(out: &mut String, hops: &super::hops::HopBreakdown) {
    let order = hops.hops();
    if !hops.paths.is_empty() {
        let _ = write!(out, "{:<12} {:<18}", "", "hop (mean µs)");
        for path in &hops.paths {
            let _ = write!(out, " {:>22}", path.transaction.name());
        }
        let _ = writeln!(out);
        for hop in &order {
            let _ = write!(out, "{:<12} {:<18}", "", hop.name());
            for path in &hops.paths {
                let cell = path.hops.iter().find(|h| h.hop == *hop).map_or_else(
                    || "-".to_string(),
                    |h| match (h.added_us, h.share_of_added) {
                        (Some(added), Some(share)) => {
                            format!("{:.0} ({added:+.0}, {:.0}%)", h.mean_us, share * 100.0)
                        }
                        (Some(added), None) => format!("{:.0} ({added:+.0})", h.mean_us),
                        _ => format!("{:.0}", h.mean_us),
                    },
                );
                let _ = write!(out, " {cell:>22}");
            }
            let _ = writeln!(out);
        }
        let _ = write!(out, "{:<12} {:<18}", "", "= generator mean");
        for path in &hops.paths {
            let _ = write!(out, " {:>22.0}", path.client_mean_us);
        }
        let _ = writeln!(out);
    }
    for component in &hops.cpu {
        let per_request: Vec<String> = component
            .per_request_us
            .iter()
            .map(|(kind, us)| format!("{} {us:.0} µs", kind.name()))
            .collect();
        let _ = writeln!(
            out,
            "{:<12} CPU {:<14} {:>6.2} s, {:>4.1}% of the machine; per request: {}",
            "",
            component.component,
            component.cpu_seconds,
            component.share_of_machine * 100.0,
            if per_request.is_empty() {
                "-".into()
            } else {
                per_request.join(", ")
            }
        );
    }
    for note in &hops.notes {
        let _ = writeln!(out, "{:<12} note: {note}", "");
    }
}

fn format_measured(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.4}")
    } else {
        "nothing (no successful request)".into()
    }
}

/// Limits that turn a load run into a CI gate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    /// Every non-login transaction's p99 latency must be at most this, in ms.
    pub max_p99_ms: Option<f64>,
    /// Every overhead ratio's throughput ratio (auth req/s ÷ baseline req/s) must be at least
    /// this.
    pub min_ratio: Option<f64>,
    /// Every transaction's error rate (errors ÷ attempts) must be at most this fraction.
    pub max_error_rate: Option<f64>,
}

impl Thresholds {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub threshold: String,
    pub subject: String,
    pub limit: f64,
    pub measured: f64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "threshold {} {} violated by {}: measured {}",
            self.threshold,
            self.limit,
            self.subject,
            format_measured(self.measured)
        )
    }
}
