//! Load runs against the real local stack, bounded to a few seconds of load each: every
//! transaction executes, errors are counted, ratios are computed, and thresholds fail when set
//! impossibly tight (in the library and as the CLI's exit code).

use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use meshauth::components::{self, CacheDir};
use meshauth::env::{LocalStack, StackConfig};
use meshauth::load::{
    self, LoadOptions, LoadReport, LoadTarget, Phase, RunPhase, Thresholds, TransactionKind,
};
use meshauth::redact::Redactor;

struct Shared {
    runtime: tokio::runtime::Runtime,
    stack: Mutex<Option<LocalStack>>,
    redactor: Redactor,
    full_run: OnceLock<Result<Arc<LoadReport>, String>>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
        stack: Mutex::new(None),
        redactor: Redactor::new(),
        full_run: OnceLock::new(),
    })
}

/// The stack, started on first use with the baseline route on.
fn target() -> Result<LoadTarget, Failed> {
    let shared = shared();
    let mut stack = shared.stack.lock().map_err(|e| e.to_string())?;
    if stack.is_none() {
        let toolchain = components::ensure_installed(
            &CacheDir::from_env().map_err(|e| e.to_string())?,
            &|_| {},
        )
        .map_err(|e| e.to_string())?;
        let run_dir =
            std::env::temp_dir().join(format!("meshauth-load-test-{}", std::process::id()));
        let config = StackConfig::default().for_load();
        let started = shared.runtime.block_on(LocalStack::start(
            toolchain,
            &run_dir,
            config,
            &shared.redactor,
            &|_| {},
        ));
        *stack = Some(started.map_err(|e| format!("starting the stack: {e}"))?);
    }
    let stack = stack.as_ref().expect("started above");
    let endpoints = stack.endpoints().clone();
    let baseline = endpoints.app.join("baseline/").ok();
    Ok(LoadTarget {
        endpoints,
        baseline,
        allow_remote: false,
        telemetry: stack.telemetry(),
    })
}

fn short_options(phases: Vec<Phase>) -> LoadOptions {
    LoadOptions {
        users: 4,
        hatch_rate: 8.0,
        duration: Duration::from_secs(2),
        phases,
        ..LoadOptions::default()
    }
}

fn run(options: &LoadOptions) -> Result<LoadReport, Failed> {
    let target = target()?;
    let shared = shared();
    Ok(shared
        .runtime
        .block_on(load::run(&target, options, &shared.redactor, &|_| {}))
        .map_err(|e| e.to_string())?)
}

/// One run of every phase, shared by the trials that judge it.
fn full_run() -> Result<Arc<LoadReport>, Failed> {
    shared()
        .full_run
        .get_or_init(|| {
            run(&short_options(Phase::ALL.to_vec()))
                .map(Arc::new)
                .map_err(|e| e.message().map(str::to_string).unwrap_or_default())
        })
        .clone()
        .map_err(Failed::from)
}

fn every_transaction_executes_and_ratios_are_computed() -> Result<(), Failed> {
    let report = full_run()?;
    let phases: Vec<RunPhase> = report.phases.iter().map(|p| p.phase).collect();
    assert_eq!(
        phases,
        [RunPhase::Interleaved, RunPhase::LoginStorm, RunPhase::Mix]
    );
    let interleaved = &report.phases[0];
    assert_eq!(interleaved.transactions.len(), 3);
    assert!(!interleaved.rounds.is_empty(), "no whole round");
    for round in &interleaved.rounds {
        assert_eq!(round.requests_per_second.len(), 3, "{round:?}");
        assert!(
            round.requests_per_second.values().all(|rps| *rps > 0.0),
            "a path measured nothing in {round:?}"
        );
    }
    for phase in &report.phases {
        for t in &phase.transactions {
            let name = format!("{} in phase {}", t.transaction.name(), phase.phase.name());
            assert!(t.ok > 0, "{name} completed no request: {t:?}");
            assert_eq!(t.requests, t.ok + t.errors, "{name}");
            let latency = t.latency_ms.ok_or(format!("{name} has no latency"))?;
            assert!(latency.p50 > 0.0 && latency.p50 <= latency.p99 && latency.p99 <= latency.max);
            assert!(t.requests_per_second > 0.0, "{name}");
            assert_eq!(
                t.ok,
                t.ok_per_second.iter().sum::<u64>(),
                "{name}: per-second series"
            );
        }
        assert!(phase.generator.cpu_seconds > 0.0, "{:?}", phase.generator);
        assert!(phase.generator.cpu_seconds_per_1000_requests.is_some());
    }
    let mix = report
        .phases
        .iter()
        .find(|p| p.phase == RunPhase::Mix)
        .expect("mix ran");
    assert_eq!(mix.transactions.len(), TransactionKind::ALL.len());
    let names: Vec<&str> = report.ratios.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["cookie/baseline", "bearer/baseline"]);
    for ratio in &report.ratios {
        assert!(
            ratio.throughput_ratio.is_finite() && ratio.throughput_ratio > 0.0,
            "{ratio:?}"
        );
        assert!(ratio.method.contains("÷"), "{ratio:?}");
        assert_eq!(ratio.rounds, interleaved.rounds.len(), "{ratio:?}");
        let spread = ratio.throughput_ratio_spread;
        assert!(spread.min <= ratio.throughput_ratio && ratio.throughput_ratio <= spread.max);
    }
    assert!(report.silent_transactions().is_empty());
    every_path_is_broken_down_hop_by_hop(interleaved);
    let json = serde_json::to_value(&*report).map_err(|e| e.to_string())?;
    assert_eq!(json["schema"], 3);
    assert!(json["phases"][0]["rounds"][0]["requests_per_second"]["cookie"].is_number());
    assert!(json["phases"][0]["transactions"][0]["ok_per_second"].is_array());
    assert!(json["ratios"][0]["throughput_ratio"].is_number());
    let text = serde_json::to_string(&*report).map_err(|e| e.to_string())?;
    let endpoints = target()?.endpoints;
    assert!(
        !text.contains(endpoints.user.password.expose()),
        "password leaked"
    );
    assert!(
        !text.contains(endpoints.client_secret.expose()),
        "client secret leaked"
    );
    Ok(())
}

/// The gateway's and the sidecar's own timing split each path's mean latency; ext_authz
/// shows on the authenticated paths only, and the components' CPU is given to the paths.
fn every_path_is_broken_down_hop_by_hop(interleaved: &load::PhaseReport) {
    use load::hops::Hop;
    let hops = interleaved
        .hops
        .as_ref()
        .expect("the local stack shows its timing");
    assert!(hops.notes.is_empty(), "{:?}", hops.notes);
    assert_eq!(hops.paths.len(), 3, "{hops:?}");
    for path in &hops.paths {
        assert!(path.gateway_lines > 0 && path.sidecar_lines > 0, "{path:?}");
        let sum: f64 = path.hops.iter().map(|h| h.mean_us).sum();
        assert!((sum - path.client_mean_us).abs() < 1.0, "{path:?}");
        let ext_authz = path.hops.iter().find(|h| h.hop == Hop::ExtAuthz);
        match path.transaction {
            TransactionKind::Baseline => assert!(ext_authz.is_none(), "{path:?}"),
            _ => {
                let ext_authz = ext_authz.expect("ext_authz timed on an authenticated path");
                assert!(ext_authz.mean_us > 0.0, "{path:?}");
                assert!(ext_authz.added_us.is_some_and(|a| a > 0.0), "{path:?}");
            }
        }
        for hop in [Hop::MeshHop, Hop::Sidecar, Hop::App] {
            assert!(
                path.hops.iter().any(|h| h.hop == hop),
                "{hop:?} in {path:?}"
            );
        }
    }
    let cpu_of = |component: &str| {
        hops.cpu
            .iter()
            .find(|c| c.component == component)
            .unwrap_or_else(|| panic!("{component} CPU in {:?}", hops.cpu))
    };
    let gateway = cpu_of("gateway");
    assert!(gateway.cpu_seconds > 0.0);
    for kind in [TransactionKind::Baseline, TransactionKind::Cookie] {
        assert!(gateway.per_request_us[&kind] > 0.0, "{gateway:?}");
    }
    let auth_proxy = cpu_of("oauth2-proxy");
    assert!(
        auth_proxy.per_request_us[&TransactionKind::Cookie] > 0.0,
        "{auth_proxy:?}"
    );
}

fn impossibly_tight_thresholds_fail() -> Result<(), Failed> {
    let mut report = (*full_run()?).clone();
    let relaxed = Thresholds {
        max_p99_ms: Some(60_000.0),
        min_ratio: Some(0.000_001),
        max_error_rate: Some(1.0),
    };
    let violations = report.judge(&relaxed);
    assert!(
        violations.is_empty(),
        "relaxed thresholds failed: {violations:?}"
    );
    let tight = Thresholds {
        max_p99_ms: Some(0.001),
        min_ratio: Some(1000.0),
        max_error_rate: None,
    };
    let violations = report.judge(&tight);
    let p99: Vec<_> = violations
        .iter()
        .filter(|v| v.threshold == "--max-p99")
        .collect();
    let ratio: Vec<_> = violations
        .iter()
        .filter(|v| v.threshold == "--min-ratio")
        .collect();
    // Every non-login transaction of every phase, and both ratios.
    assert_eq!(p99.len(), 1 + 1 + 1 + 3, "{violations:#?}");
    assert_eq!(ratio.len(), 2, "{violations:#?}");
    let message = p99[0].to_string();
    assert!(
        message.contains("--max-p99 0.001") && message.contains("measured"),
        "{message}"
    );
    assert!(report.render_text().contains("VIOLATED"));
    Ok(())
}

/// A route that answers 503 on purpose: every request is an error, counted by kind, and the
/// error-rate gate fails.
fn errors_are_counted_and_fail_the_error_rate_gate() -> Result<(), Failed> {
    let options = LoadOptions {
        path: "status/503".into(),
        ..short_options(vec![Phase::Baseline])
    };
    let mut report = run(&options)?;
    let baseline = &report.phases[0].transactions[0];
    assert_eq!(baseline.ok, 0, "{baseline:?}");
    assert!(baseline.errors > 0);
    assert_eq!(
        baseline.errors_by_kind.keys().collect::<Vec<_>>(),
        ["HTTP 503 (server error)"]
    );
    assert_eq!(baseline.error_rate, 1.0);
    assert_eq!(
        report.silent_transactions(),
        ["baseline in phase interleaved"]
    );
    let violations = report.judge(&Thresholds {
        max_error_rate: Some(0.01),
        ..Thresholds::default()
    });
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].to_string().contains("--max-error-rate 0.01"));
    Ok(())
}

/// `--precision` ends the interleaved phase at the first judged round boundary when the
/// requested precision is loose, long before `--duration`; an unreachable one runs it out.
fn precision_stops_the_interleaved_phase_early() -> Result<(), Failed> {
    let loose = LoadOptions {
        duration: Duration::from_secs(20),
        slice: Duration::from_millis(250),
        precision: Some(0.5),
        ..short_options(vec![Phase::Baseline, Phase::Cookie])
    };
    let report = run(&loose)?;
    let phase = &report.phases[0];
    // Which round first meets the precision depends on the machine's noise (a busy machine
    // takes a round or two more): what is fixed is that the phase ends at that round.
    assert_eq!(
        phase.precise_after_rounds,
        Some(phase.rounds.len()),
        "{:?}",
        report.ratios
    );
    assert!(phase.rounds.len() >= load::schedule::MIN_ROUNDS_FOR_PRECISION);
    assert!(report.ratios[0].precision <= 0.5, "{:?}", report.ratios[0]);
    assert!(
        phase.seconds < 15.0,
        "stopped at round 10 (~5 s of rounds), not after the 20 s cap: {} s",
        phase.seconds
    );

    let unreachable = LoadOptions {
        duration: Duration::from_secs(3),
        slice: Duration::from_millis(250),
        precision: Some(0.001),
        ..short_options(vec![Phase::Baseline, Phase::Cookie])
    };
    let report = run(&unreachable)?;
    let phase = &report.phases[0];
    assert_eq!(phase.precise_after_rounds, None);
    assert_eq!(phase.rounds.len(), 12, "every round of the cap ran");
    assert!(
        report
            .render_text()
            .contains("the requested precision (±0.1%) was not reached"),
        "{}",
        report.render_text()
    );
    Ok(())
}

fn refuses_targets_off_loopback() -> Result<(), Failed> {
    let mut target = target()?;
    target.endpoints.app = url::Url::parse("https://192.0.2.10/").map_err(|e| e.to_string())?;
    let shared = shared();
    let error = shared
        .runtime
        .block_on(load::run(
            &target,
            &short_options(vec![Phase::Cookie]),
            &shared.redactor,
            &|_| {},
        ))
        .expect_err("a non-loopback app must be refused");
    assert!(error.to_string().contains("not on loopback"), "{error}");
    Ok(())
}

fn meshauth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshauth"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run meshauth")
}

fn cli_exits_1_on_a_violated_threshold_and_2_on_bad_usage() -> Result<(), Failed> {
    let usage = meshauth(&["load", "--users", "0"]);
    assert_eq!(usage.status.code(), Some(2));
    let usage = meshauth(&["load", "--phases", "cookie", "--min-ratio", "0.5"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--min-ratio needs the baseline"));

    let runs = std::env::temp_dir().join(format!("meshauth-load-cli-{}", std::process::id()));
    let out = runs.join("reports");
    let output = meshauth(&[
        "load",
        "--phases",
        "baseline,cookie",
        "--users",
        "2",
        "--duration",
        "1s",
        "--max-p99",
        "0.001",
        "--runs-dir",
        runs.to_str().ok_or("temp dir is not UTF-8")?,
        "--out",
        out.to_str().ok_or("temp dir is not UTF-8")?,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "FAILED: threshold --max-p99 0.001 violated by cookie (phase interleaved): measured"
        ),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("load.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    assert_eq!(json["thresholds"][0]["passed"], false);
    let html = std::fs::read_to_string(out.join("load.html")).map_err(|e| e.to_string())?;
    assert!(html.contains("FAIL — a threshold was violated"));
    assert!(html.contains("Throughput per round") && html.contains("<polyline"));
    let _ = std::fs::remove_dir_all(&runs);
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "load::every_transaction_executes_and_ratios_are_computed",
            every_transaction_executes_and_ratios_are_computed,
        ),
        Trial::test(
            "load::impossibly_tight_thresholds_fail",
            impossibly_tight_thresholds_fail,
        ),
        Trial::test(
            "load::errors_are_counted_and_fail_the_error_rate_gate",
            errors_are_counted_and_fail_the_error_rate_gate,
        ),
        Trial::test(
            "load::precision_stops_the_interleaved_phase_early",
            precision_stops_the_interleaved_phase_early,
        ),
        Trial::test(
            "load::refuses_targets_off_loopback",
            refuses_targets_off_loopback,
        ),
        Trial::test(
            "load::cli_exits_1_on_a_violated_threshold_and_2_on_bad_usage",
            cli_exits_1_on_a_violated_threshold_and_2_on_bad_usage,
        ),
    ];
    // One at a time: the trials share one stack and a 2-core machine.
    let args = Arguments {
        test_threads: Some(1),
        ..args
    };
    let conclusion = libtest_mimic::run(&args, trials);
    if let Ok(mut stack) = shared().stack.lock()
        && let Some(mut stack) = stack.take()
    {
        stack.stop();
        let _ = std::fs::remove_dir_all(stack.run_dir());
    }
    conclusion.exit();
}
