//! Where a hot-path request's milliseconds go, hop by hop, from the components' own clocks:
//! the gateway's and the app sidecar's access log lines (`istio::HOP_TIMING_LOG_FORMAT`:
//! Envoy's µs timers and ext_authz's round trip, tagged with the generator's path), set
//! against the generator's own latency of the same path; and each component's CPU over the
//! phase, from /proc, given to the path whose turn it was.
//!
//! The hops of a path's mean latency add up to it exactly (means add; medians do not):
//! `client` (the generator, its TLS and the kernel: all the generator waited for that the
//! gateway did not see) + the gateway's filters before the request goes upstream (`jwt_authn`,
//! routing…) + ext_authz's round trip to the auth proxy + the mesh hop (gateway → sidecar
//! mTLS, both ways) + the sidecar + the app + the gateway's response.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::TransactionKind;
use super::cpu;
use super::recorder::Recorder;
use super::report::PhaseReport;
use super::schedule::Schedule;
use crate::env::ComponentTelemetry;

/// How often the components' CPU counters are read (a slice's window is ≥ 200 ms).
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The proxies write access logs out once a second (`--file-flush-interval-msec 1000`, as
/// Istio's pilot-agent starts Envoy; `components::envoy_launch` does the same).
const ACCESS_LOG_FLUSH: Duration = Duration::from_millis(1200);

/// One request's line at one proxy, in µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HopLine {
    pub kind: TransactionKind,
    pub status: u16,
    pub total_us: f64,
    /// From the request's first byte to the first byte sent upstream: the filters.
    pub to_upstream_us: f64,
    /// From the first byte sent upstream to the upstream's last byte.
    pub upstream_us: f64,
    /// ext_authz's round trip, where the filter ran and keeps its timing.
    pub ext_authz_us: Option<f64>,
}

impl HopLine {
    /// A `meshauth-hop` line of a tagged request that went upstream; anything else in the
    /// proxy's log (its own messages, untagged or refused requests) is `None`.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim_end().strip_prefix("meshauth-hop ")?;
        let fields: BTreeMap<&str, &str> = rest
            .split(' ')
            .filter_map(|token| token.split_once('='))
            .collect();
        let micros = |key: &str| fields.get(key).and_then(|v| v.parse::<f64>().ok());
        Some(Self {
            kind: TransactionKind::from_name(fields.get("load")?)?,
            status: fields.get("status")?.parse().ok()?,
            total_us: micros("total_us")?,
            to_upstream_us: micros("to_upstream_us")?,
            upstream_us: micros("upstream_us")?,
            ext_authz_us: micros("ext_authz_us"),
        })
    }
}

/// The parts of a path's mean latency, in the order a request meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hop {
    Client,
    GatewayFilters,
    ExtAuthz,
    MeshHop,
    Sidecar,
    App,
    /// Gateway → app, where the app's sidecar's log is not available.
    Upstream,
    GatewayResponse,
}

impl Hop {
    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::GatewayFilters => "gateway_filters",
            Self::ExtAuthz => "ext_authz",
            Self::MeshHop => "mesh_hop",
            Self::Sidecar => "sidecar",
            Self::App => "app",
            Self::Upstream => "upstream",
            Self::GatewayResponse => "gateway_response",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Client => {
                "the generator's wait the gateway did not see: its TLS, the kernel, the loopback"
            }
            Self::GatewayFilters => {
                "the gateway's filters before the request goes upstream, ext_authz aside: jwt_authn, RBAC, routing, an upstream connection"
            }
            Self::ExtAuthz => "ext_authz's round trip to the auth proxy (its session check)",
            Self::MeshHop => "gateway → app sidecar and back: the mesh's mTLS hop",
            Self::Sidecar => "the app's sidecar: its filters and its response",
            Self::App => "the app itself, as its sidecar timed it",
            Self::Upstream => "gateway → app and back (no sidecar log to split it)",
            Self::GatewayResponse => "the gateway, from the upstream's last byte to the client's",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HopTime {
    pub hop: Hop,
    /// Mean over the path's requests, µs; the hops of a path add up to its mean latency.
    pub mean_us: f64,
    /// Median, where one proxy's line holds the hop whole.
    pub p50_us: Option<f64>,
    /// This hop's mean minus the baseline path's, µs (authenticated paths).
    pub added_us: Option<f64>,
    /// `added_us` over the path's whole added mean latency.
    pub share_of_added: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathHops {
    pub transaction: TransactionKind,
    /// The generator's mean latency of this path's successful requests, µs.
    pub client_mean_us: f64,
    /// Successful requests of this path in the gateway's and the sidecar's logs.
    pub gateway_lines: u64,
    pub sidecar_lines: u64,
    pub hops: Vec<HopTime>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComponentCpu {
    pub component: String,
    /// CPU-seconds over the phase, every process of the component.
    pub cpu_seconds: f64,
    /// Of all the machine's CPU time in the phase.
    pub share_of_machine: f64,
    /// CPU µs per successful request of each path, from the windows that were its turn
    /// (interleaved phase) or the whole phase (a phase of one path).
    pub per_request_us: BTreeMap<TransactionKind, f64>,
}

/// A phase's per-hop breakdown.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct HopBreakdown {
    pub paths: Vec<PathHops>,
    pub cpu: Vec<ComponentCpu>,
    /// What could not be measured, and why.
    pub notes: Vec<String>,
}

impl HopBreakdown {
    /// Every hop some path has, in the order a request meets them.
    pub fn hops(&self) -> Vec<Hop> {
        let mut hops: Vec<Hop> = self
            .paths
            .iter()
            .flat_map(|p| p.hops.iter().map(|h| h.hop))
            .collect();
        hops.sort();
        hops.dedup();
        hops
    }
}

/// One phase's collection: log positions at its start, a CPU sampler while it runs.
pub struct PhaseTelemetry {
    sources: ComponentTelemetry,
    gateway_from: u64,
    sidecar_from: u64,
    sampler: Option<CpuSampler>,
}

impl PhaseTelemetry {
    pub fn start(sources: &ComponentTelemetry) -> Self {
        let length = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        Self {
            gateway_from: length(&sources.gateway_log),
            sidecar_from: sources.sidecar_log.as_deref().map_or(0, length),
            sampler: (!sources.processes.is_empty()).then(|| CpuSampler::start(sources)),
            sources: sources.clone(),
        }
    }

    /// Stops sampling, waits for the proxies' logs to be written out, and breaks the phase's
    /// paths down.
    pub fn finish(self, recorder: &Recorder, report: &PhaseReport) -> HopBreakdown {
        let samples = self.sampler.map(CpuSampler::stop).unwrap_or_default();
        std::thread::sleep(ACCESS_LOG_FLUSH);
        let mut notes = Vec::new();
        let gateway = read_lines(&self.sources.gateway_log, self.gateway_from, &mut notes);
        let sidecar = match &self.sources.sidecar_log {
            Some(path) => read_lines(path, self.sidecar_from, &mut notes),
            None => Vec::new(),
        };
        let means: Vec<(TransactionKind, f64)> = report
            .transactions
            .iter()
            .filter_map(|t| Some((t.transaction, t.latency_ms?.mean)))
            .collect();
        let rates: Vec<(TransactionKind, f64)> = report
            .transactions
            .iter()
            .map(|t| (t.transaction, t.requests_per_second))
            .collect();
        let mut breakdown = breakdown(&means, &gateway, &sidecar, &mut notes);
        if let Some(samples) = samples {
            let turns = recorder.schedule().zip(recorder.steady_since());
            breakdown.cpu = attribute_cpu(&samples, turns, recorder.steady_since(), &rates);
        }
        breakdown.notes.extend(notes);
        breakdown
    }
}

/// The per-hop lines a proxy wrote since `from`, read a line at a time (a long phase's log is
/// hundreds of megabytes).
fn read_lines(path: &Path, from: u64, notes: &mut Vec<String>) -> Vec<HopLine> {
    let opened = std::fs::File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(from))?;
        Ok(file)
    });
    match opened {
        Ok(file) => BufReader::new(file)
            .split(b'\n')
            .map_while(Result::ok)
            .filter_map(|line| HopLine::parse(&String::from_utf8_lossy(&line)))
            .collect(),
        Err(e) => {
            notes.push(format!("could not read {}: {e}", path.display()));
            Vec::new()
        }
    }
}

/// Mean and median of a series.
fn mean_and_median(values: &mut [f64]) -> (f64, Option<f64>) {
    if values.is_empty() {
        return (0.0, None);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.sort_by(f64::total_cmp);
    (mean, Some(values[values.len() / 2]))
}

fn successful(lines: &[HopLine], kind: TransactionKind) -> Vec<&HopLine> {
    lines
        .iter()
        .filter(|l| l.kind == kind && (200..300).contains(&l.status))
        .collect()
}

/// Every hop of every path the phase ran, from the generator's mean latency per path (ms) and
/// the two proxies' lines.
pub fn breakdown(
    client_means_ms: &[(TransactionKind, f64)],
    gateway: &[HopLine],
    sidecar: &[HopLine],
    notes: &mut Vec<String>,
) -> HopBreakdown {
    let mut paths = Vec::new();
    for &(kind, mean_ms) in client_means_ms {
        if kind == TransactionKind::LoginStorm {
            continue;
        }
        let at_gateway = successful(gateway, kind);
        let at_sidecar = successful(sidecar, kind);
        if at_gateway.is_empty() {
            notes.push(format!(
                "{}: no line of the gateway's access log carries this path's tag; is the gateway's access log format the per-hop one?",
                kind.name()
            ));
            continue;
        }
        let series = |lines: &[&HopLine], f: &dyn Fn(&HopLine) -> f64| -> Vec<f64> {
            lines.iter().map(|l| f(l)).collect()
        };
        let authz_seen = at_gateway.iter().any(|l| l.ext_authz_us.is_some());
        if !authz_seen && kind != TransactionKind::Baseline {
            notes.push(format!(
                "{}: the gateway's log has no ext_authz timing (ext_authz's emit_filter_state_stats is off), so its round trip is counted in gateway_filters",
                kind.name()
            ));
        }
        let ext_authz = |l: &HopLine| l.ext_authz_us.unwrap_or(0.0);
        let (gateway_total, _) = mean_and_median(&mut series(&at_gateway, &|l| l.total_us));
        let (gateway_upstream, _) = mean_and_median(&mut series(&at_gateway, &|l| l.upstream_us));
        let client_mean_us = mean_ms * 1000.0;
        let mut hops = vec![(Hop::Client, client_mean_us - gateway_total, None)];
        let per_line = |hop: Hop, f: &dyn Fn(&HopLine) -> f64, lines: &[&HopLine]| {
            let (mean, p50) = mean_and_median(&mut series(lines, f));
            (hop, mean, p50)
        };
        hops.push(per_line(
            Hop::GatewayFilters,
            &|l| l.to_upstream_us - ext_authz(l),
            &at_gateway,
        ));
        if authz_seen {
            hops.push(per_line(Hop::ExtAuthz, &ext_authz, &at_gateway));
        }
        if at_sidecar.is_empty() {
            hops.push(per_line(Hop::Upstream, &|l| l.upstream_us, &at_gateway));
        } else {
            let (sidecar_total, _) = mean_and_median(&mut series(&at_sidecar, &|l| l.total_us));
            hops.push((Hop::MeshHop, gateway_upstream - sidecar_total, None));
            hops.push(per_line(
                Hop::Sidecar,
                &|l| l.total_us - l.upstream_us,
                &at_sidecar,
            ));
            hops.push(per_line(Hop::App, &|l| l.upstream_us, &at_sidecar));
        }
        hops.push(per_line(
            Hop::GatewayResponse,
            &|l| l.total_us - l.to_upstream_us - l.upstream_us,
            &at_gateway,
        ));
        paths.push(PathHops {
            transaction: kind,
            client_mean_us,
            gateway_lines: at_gateway.len() as u64,
            sidecar_lines: at_sidecar.len() as u64,
            hops: hops
                .into_iter()
                .map(|(hop, mean_us, p50_us)| HopTime {
                    hop,
                    mean_us,
                    p50_us,
                    added_us: None,
                    share_of_added: None,
                })
                .collect(),
        });
    }
    compare_with_baseline(&mut paths);
    HopBreakdown {
        paths,
        cpu: Vec::new(),
        notes: Vec::new(),
    }
}

/// What each hop adds over the same hop of the baseline path, and its share of all that is
/// added.
fn compare_with_baseline(paths: &mut [PathHops]) {
    let Some(baseline) = paths
        .iter()
        .find(|p| p.transaction == TransactionKind::Baseline)
        .cloned()
    else {
        return;
    };
    let baseline_mean = |hop: Hop| {
        baseline
            .hops
            .iter()
            .find(|h| h.hop == hop)
            .map_or(0.0, |h| h.mean_us)
    };
    for path in paths
        .iter_mut()
        .filter(|p| p.transaction != TransactionKind::Baseline)
    {
        let added_total = path.client_mean_us - baseline.client_mean_us;
        for hop in &mut path.hops {
            let added = hop.mean_us - baseline_mean(hop.hop);
            hop.added_us = Some(added);
            hop.share_of_added = (added_total > 0.0).then(|| added / added_total);
        }
    }
}

/// The components' CPU counters at one moment.
#[derive(Debug, Clone)]
pub struct CpuPoint {
    pub at: Instant,
    pub machine_seconds: f64,
    /// CPU-seconds per component, in `components`' order.
    pub seconds: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct CpuSamples {
    pub components: Vec<&'static str>,
    pub points: Vec<CpuPoint>,
}

struct CpuSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<CpuSamples>,
}

impl CpuSampler {
    fn start(sources: &ComponentTelemetry) -> Self {
        // A component's processes are those of its group when the phase starts (Keycloak's
        // kc.sh and its JVM): reading all of /proc at every sample would cost more than it
        // measures.
        let groups: Vec<(&'static str, Vec<u32>)> = sources
            .processes
            .iter()
            .map(|p| (p.component, cpu::process_group_members(p.process_group)))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut samples = CpuSamples {
                components: groups.iter().map(|(name, _)| *name).collect(),
                points: Vec::new(),
            };
            loop {
                samples.points.push(CpuPoint {
                    at: Instant::now(),
                    machine_seconds: cpu::machine_cpu_seconds(),
                    seconds: groups
                        .iter()
                        .map(|(_, pids)| cpu::cpu_seconds_of(pids))
                        .collect(),
                });
                if stopping.load(Ordering::Relaxed) {
                    return samples;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Self { stop, thread }
    }

    fn stop(self) -> Option<CpuSamples> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok()
    }
}

/// Each component's CPU over the phase, and per request of each path (`rates`: successful
/// requests per second): in the interleaved phase (`turns`: its schedule and epoch) from the
/// sample intervals that lie inside one of the path's windows, else from the steady part of
/// the phase when it ran one path.
pub fn attribute_cpu(
    samples: &CpuSamples,
    turns: Option<(&Schedule, Instant)>,
    steady_since: Option<Instant>,
    rates: &[(TransactionKind, f64)],
) -> Vec<ComponentCpu> {
    let (Some(first), Some(last)) = (samples.points.first(), samples.points.last()) else {
        return Vec::new();
    };
    let machine = last.machine_seconds - first.machine_seconds;
    // Per path: CPU-seconds per component and the seconds of windows they cover.
    let mut spent_in: BTreeMap<TransactionKind, (Vec<f64>, f64)> = BTreeMap::new();
    if let Some((schedule, epoch)) = turns {
        for pair in samples.points.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let (Some(start), Some(end)) = (
                schedule.window_at(epoch, a.at),
                schedule.window_at(epoch, b.at),
            ) else {
                continue;
            };
            if start != end {
                continue;
            }
            let (cpu, covered) = spent_in
                .entry(start.1)
                .or_insert_with(|| (vec![0.0; samples.components.len()], 0.0));
            for (sum, (before, after)) in cpu.iter_mut().zip(a.seconds.iter().zip(&b.seconds)) {
                *sum += after - before;
            }
            *covered += b.at.duration_since(a.at).as_secs_f64();
        }
    } else if let [(only, _)] = rates {
        // The rate is the steady window's: so is the CPU it is divided by.
        let steady = steady_since.unwrap_or(first.at);
        let from = samples
            .points
            .iter()
            .find(|p| p.at >= steady)
            .unwrap_or(first);
        let spent = from
            .seconds
            .iter()
            .zip(&last.seconds)
            .map(|(before, after)| after - before)
            .collect();
        spent_in.insert(
            *only,
            (spent, last.at.duration_since(from.at).as_secs_f64()),
        );
    }
    samples
        .components
        .iter()
        .enumerate()
        .filter(|(i, _)| last.seconds[*i] > first.seconds[*i])
        .map(|(i, component)| {
            let cpu_seconds = last.seconds[i] - first.seconds[i];
            let per_request_us = spent_in
                .iter()
                .filter_map(|(kind, (cpu, covered))| {
                    let rate = rates.iter().find(|(k, _)| k == kind)?.1;
                    (rate > 0.0 && *covered > 0.0).then(|| (*kind, cpu[i] / covered / rate * 1e6))
                })
                .collect();
            ComponentCpu {
                component: component.to_string(),
                cpu_seconds,
                share_of_machine: if machine > 0.0 {
                    cpu_seconds / machine
                } else {
                    0.0
                },
                per_request_us,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = include_str!("../../tests/data/recorded/gateway-hop-timing.log");
    const SIDECAR: &str = include_str!("../../tests/data/recorded/sidecar-hop-timing.log");

    fn lines(text: &str) -> Vec<HopLine> {
        text.lines().filter_map(HopLine::parse).collect()
    }

    #[test]
    fn only_tagged_lines_of_the_per_hop_format_are_read() {
        let gateway = lines(GATEWAY);
        // 12 tagged lines; the credential flow's untagged lines and Envoy's own message are not.
        assert_eq!(gateway.len(), 12, "{gateway:?}");
        assert_eq!(
            gateway[4],
            HopLine {
                kind: TransactionKind::Cookie,
                status: 200,
                total_us: 11519.0,
                to_upstream_us: 6113.0,
                upstream_us: 5197.0,
                ext_authz_us: Some(5677.0),
            }
        );
        assert_eq!(
            gateway[0].ext_authz_us, None,
            "the baseline route skips ext_authz"
        );
        assert!(HopLine::parse("meshauth-hop load=cookie status=200 total_us=-").is_none());
    }

    #[test]
    fn a_paths_hops_add_up_to_the_generators_mean() {
        let mut notes = Vec::new();
        let means = [
            (TransactionKind::Baseline, 1.5),
            (TransactionKind::Cookie, 14.0),
            (TransactionKind::Bearer, 7.0),
        ];
        let breakdown = breakdown(&means, &lines(GATEWAY), &lines(SIDECAR), &mut notes);
        assert!(notes.is_empty(), "{notes:?}");
        for (path, (_, mean_ms)) in breakdown.paths.iter().zip(means) {
            let sum: f64 = path.hops.iter().map(|h| h.mean_us).sum();
            assert!((sum - mean_ms * 1000.0).abs() < 1e-6, "{path:?}");
        }
        let cookie = &breakdown.paths[1];
        let hop = |h: Hop| cookie.hops.iter().find(|t| t.hop == h).expect("hop");
        // (5677 + 6382 + 7072 + 7810) / 4
        assert_eq!(hop(Hop::ExtAuthz).mean_us, 6735.25);
        assert!(hop(Hop::ExtAuthz).share_of_added.unwrap() > 0.4);
        let shares: f64 = cookie.hops.iter().filter_map(|h| h.share_of_added).sum();
        assert!(
            (shares - 1.0).abs() < 1e-9,
            "shares of the added latency sum to 1"
        );
        let baseline = &breakdown.paths[0];
        assert!(baseline.hops.iter().all(|h| h.hop != Hop::ExtAuthz));
        assert!(baseline.hops.iter().all(|h| h.added_us.is_none()));
    }

    #[test]
    fn without_ext_authz_timing_or_a_sidecar_log_the_breakdown_says_so() {
        let gateway: Vec<HopLine> = lines(GATEWAY)
            .into_iter()
            .map(|l| HopLine {
                ext_authz_us: None,
                ..l
            })
            .collect();
        let mut notes = Vec::new();
        let without = breakdown(
            &[(TransactionKind::Cookie, 14.0)],
            &gateway,
            &[],
            &mut notes,
        );
        let hops: Vec<Hop> = without.paths[0].hops.iter().map(|h| h.hop).collect();
        assert_eq!(
            hops,
            [
                Hop::Client,
                Hop::GatewayFilters,
                Hop::Upstream,
                Hop::GatewayResponse
            ]
        );
        assert!(notes[0].contains("emit_filter_state_stats"), "{notes:?}");
        let mut notes = Vec::new();
        let empty = breakdown(&[(TransactionKind::Bearer, 3.0)], &[], &[], &mut notes);
        assert!(empty.paths.is_empty());
        assert!(
            notes[0].contains("no line of the gateway's access log"),
            "{notes:?}"
        );
    }

    #[test]
    fn cpu_goes_to_the_path_whose_window_it_was_spent_in() {
        let schedule = Schedule::new(
            vec![TransactionKind::Baseline, TransactionKind::Cookie],
            Duration::from_millis(500),
            2,
        );
        let epoch = Instant::now();
        let at = |ms: u64| epoch + Duration::from_millis(ms);
        // Gateway CPU: 10 ms per 50 ms in baseline windows, 30 ms in cookie windows.
        let mut points = Vec::new();
        let mut spent = 0.0;
        for step in 0..=40u64 {
            let t = step * 50;
            points.push(CpuPoint {
                at: at(t),
                machine_seconds: t as f64 / 1000.0 * 2.0,
                seconds: vec![spent],
            });
            let in_cookie = (t / 500) % 2 == 1;
            spent += if in_cookie { 0.030 } else { 0.010 };
        }
        let samples = CpuSamples {
            components: vec!["gateway"],
            points,
        };
        let rates = [
            (TransactionKind::Baseline, 100.0),
            (TransactionKind::Cookie, 50.0),
        ];
        let cpu = attribute_cpu(&samples, Some((&schedule, epoch)), Some(epoch), &rates);
        let per_request = &cpu[0].per_request_us;
        // 0.2 CPU-s per s at 100 req/s = 2000 µs; 0.6 CPU-s per s at 50 req/s = 12000 µs.
        assert!(
            (per_request[&TransactionKind::Baseline] - 2000.0).abs() < 1.0,
            "{cpu:?}"
        );
        assert!(
            (per_request[&TransactionKind::Cookie] - 12000.0).abs() < 1.0,
            "{cpu:?}"
        );
        assert!((cpu[0].share_of_machine - 0.2).abs() < 0.01, "{cpu:?}");
    }
}
