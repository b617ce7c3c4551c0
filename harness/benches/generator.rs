//! Benchmark (not a test): how much CPU the load generator spends per request, against wrk,
//! on the same endpoint in one run. The endpoint is Envoy (from the component cache) with one
//! worker answering every request from `direct_response`, so the gateway does as little as
//! possible and the generators' own cost shows.
//!
//! Usage: `cargo bench --bench generator -- [--connections 32] [--seconds 8] [--rounds 3]
//! [--only NAME]` where NAME is `wrk`, `goose-stock` or `meshauth`. Needs `wrk` on PATH for
//! the wrk row. Generators run one after the other, never at once, in rounds (the order
//! rotating each round); each generator is compared with wrk's run of the same round, and the
//! summary gives the median and range of those per-round ratios, since a 2-core machine's
//! throughput drifts from one run to the next.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use goose::config::GooseConfiguration;
use goose::prelude::*;
use meshauth::components::{self, CacheDir, Supervised};
use meshauth::env::{Endpoints, TestUser};
use meshauth::load::cpu::CpuSample;
use meshauth::load::schedule::Spread;
use meshauth::load::{self, LoadOptions, LoadTarget, Phase};
use meshauth::redact::{Redactor, Secret};
use url::Url;

struct Settings {
    connections: usize,
    seconds: u64,
    rounds: usize,
    only: Option<String>,
}

fn settings() -> Settings {
    let mut settings = Settings {
        connections: 32,
        seconds: 8,
        rounds: 3,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--connections" => {
                settings.connections = args.next().and_then(|v| v.parse().ok()).unwrap_or(32)
            }
            "--seconds" => settings.seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(8),
            "--rounds" => {
                settings.rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(3).max(1)
            }
            "--only" => settings.only = args.next(),
            // cargo bench passes --bench; anything else is ignored.
            _ => {}
        }
    }
    settings
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn envoy_config(port: u16, admin: u16) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: bench
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                direct_response: {{ status: 200, body: {{ inline_string: "ok" }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

struct Row {
    generator: &'static str,
    requests: u64,
    seconds: f64,
    cpu_seconds: f64,
}

impl Row {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn requests_per_cpu_second(&self) -> f64 {
        self.requests as f64 / self.cpu_seconds
    }
}

/// CPU seconds of waited-for children (wrk), from getrusage.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn wrk(url: &Url, settings: &Settings) -> Option<Row> {
    let before = children_cpu_seconds();
    let output = Command::new("wrk")
        .args([
            "-t1",
            "-c",
            &settings.connections.to_string(),
            "-d",
            &format!("{}s", settings.seconds),
            url.as_str(),
        ])
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("wrk failed: {}", String::from_utf8_lossy(&o.stderr));
            return None;
        }
        Err(e) => {
            eprintln!("wrk not run ({e}); install it with: apt-get install -y wrk");
            return None;
        }
    };
    let cpu_seconds = children_cpu_seconds() - before;
    let text = String::from_utf8_lossy(&output.stdout);
    // "  267432 requests in 8.00s, 20.15MB read"
    let line = text.lines().find(|l| l.contains("requests in"))?;
    let mut words = line.split_whitespace();
    let requests: u64 = words.next()?.parse().ok()?;
    let seconds: f64 = words.nth(2)?.trim_end_matches(['s', ',']).parse().ok()?;
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    for line in errors {
        eprintln!("wrk: {}", line.trim());
    }
    Some(Row {
        generator: "wrk 1 thread",
        requests,
        seconds,
        cpu_seconds,
    })
}

async fn get_root(user: &mut GooseUser) -> TransactionResult {
    let _response = user.get("/").await?;
    Ok(())
}

/// goose as its examples use it: `user.get`, goose's metrics and per-user clients.
async fn goose_stock(url: &Url, settings: &Settings) -> Row {
    let mut config = GooseConfiguration::default();
    config.host = Some(url.as_str().trim_end_matches('/').to_string());
    config.users = Some(settings.connections);
    config.increase_rate = Some("1000".into());
    config.run_time = Some(format!("{}s", settings.seconds));
    config.no_telnet = true;
    config.quiet = 1;
    config.no_print_metrics = true;
    // Counted from the first request, as for the other generators (the work is the same).
    config.no_reset_metrics = true;
    let cpu = CpuSample::now();
    let started = Instant::now();
    let metrics = GooseAttack::initialize_with_config(config)
        .expect("goose configuration")
        .register_scenario(scenario!("stock").register_transaction(transaction!(get_root)))
        .execute()
        .await
        .expect("goose run");
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu.until(&CpuSample::now()).cpu_seconds;
    let requests = metrics
        .requests
        .values()
        .map(|r| (r.success_count + r.fail_count) as u64)
        .sum();
    Row {
        generator: "goose 0.19 stock",
        requests,
        seconds,
        cpu_seconds,
    }
}

/// The `meshauth load` baseline phase, exactly as the CLI runs it.
async fn meshauth_load(url: &Url, settings: &Settings) -> Row {
    let endpoints = Endpoints {
        app: url.clone(),
        idp: url.clone(),
        issuer: url.to_string(),
        client_id: "unused".into(),
        client_secret: Secret::new("unused-client-secret"),
        user: TestUser {
            username: "unused".into(),
            password: Secret::new("unused-password"),
            email: "unused@example.test".into(),
        },
        second_user: None,
        upstream_user: None,
        upstream_second_user: None,
        other_client: None,
        signing_key: None,
        role: "unused".into(),
        roles_claim: "unused".into(),
        session_cookie: meshauth::endpoints::DEFAULT_SESSION_COOKIE.into(),
        session_refresh: None,
        sign_in_hosts: Vec::new(),
        ca_pem: None,
        mesh: None,
        mesh_callers: None,
    };
    let target = LoadTarget {
        endpoints,
        baseline: Some(url.clone()),
        allow_remote: false,
        telemetry: None,
    };
    let options = LoadOptions {
        users: settings.connections,
        hatch_rate: load::MAX_HATCH_RATE,
        duration: Duration::from_secs(settings.seconds),
        phases: vec![Phase::Baseline],
        path: String::new(),
        ..LoadOptions::default()
    };
    let report = load::run(&target, &options, &Redactor::new(), &|_| {})
        .await
        .expect("meshauth load run");
    let phase = &report.phases[0];
    let baseline = &phase.transactions[0];
    if baseline.errors > 0 {
        eprintln!("meshauth: errors {:?}", baseline.errors_by_kind);
    }
    // Throughput as the report gives it (the measured slices); CPU of the whole phase, ramp
    // and idle tail included, over the measured requests only: an overestimate, if anything.
    let seconds = baseline.requests as f64 / baseline.requests_per_second;
    let cpu_seconds = phase.generator.cpu_seconds;
    Row {
        generator: "meshauth load",
        requests: baseline.requests,
        seconds,
        cpu_seconds,
    }
}

fn main() {
    let settings = settings();
    let toolchain =
        components::ensure_installed(&CacheDir::from_env().expect("cache dir"), &|_| {})
            .expect("components installed (run `meshauth install`)");
    let dir = std::env::temp_dir().join(format!("meshauth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench directory");
    let (port, admin) = (free_port(), free_port());
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, envoy_config(port, admin)).expect("write envoy config");
    let launch = components::envoy_launch(&toolchain.envoy, &config, dir.join("envoy.log"));
    let mut envoy = Supervised::spawn(&launch).expect("start envoy");
    let url = Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ready = format!("http://127.0.0.1:{admin}/ready");
        for _ in 0..100 {
            if reqwest::get(&ready)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let wanted = |name: &str| settings.only.as_deref().is_none_or(|only| only == name);
    let generators: Vec<&str> = ["wrk", "goose-stock", "meshauth"]
        .into_iter()
        .filter(|g| wanted(g))
        .collect();
    let machine = load::cpu::MachineInfo::detect();
    println!(
        "endpoint: Envoy direct_response, 1 worker; {} connections, {} s per run, {} round(s); {} CPU(s), {}",
        settings.connections, settings.seconds, settings.rounds, machine.cpus, machine.cpu_model
    );
    println!(
        "{:<6} {:<18} {:>10} {:>8} {:>10} {:>8} {:>12}",
        "round", "generator", "requests", "seconds", "req/s", "CPU s", "req/CPU-s"
    );
    let mut rounds: Vec<Vec<Row>> = Vec::new();
    for round in 0..settings.rounds {
        let mut rows = Vec::new();
        for offset in 0..generators.len() {
            let row = match generators[(round + offset) % generators.len()] {
                "wrk" => wrk(&url, &settings),
                "goose-stock" => Some(runtime.block_on(goose_stock(&url, &settings))),
                _ => Some(runtime.block_on(meshauth_load(&url, &settings))),
            };
            if let Some(row) = row {
                println!(
                    "{:<6} {:<18} {:>10} {:>8.2} {:>10.0} {:>8.2} {:>12.0}",
                    round + 1,
                    row.generator,
                    row.requests,
                    row.seconds,
                    row.rps(),
                    row.cpu_seconds,
                    row.requests_per_cpu_second()
                );
                rows.push(row);
            }
        }
        rounds.push(rows);
    }
    envoy.stop(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);

    for name in ["goose 0.19 stock", "meshauth load"] {
        let mut throughput = Vec::new();
        let mut cpu = Vec::new();
        for rows in &rounds {
            let wrk = rows.iter().find(|r| r.generator.starts_with("wrk"));
            let row = rows.iter().find(|r| r.generator == name);
            if let (Some(wrk), Some(row)) = (wrk, row) {
                throughput.push(row.rps() / wrk.rps());
                cpu.push(
                    (row.cpu_seconds / row.requests as f64)
                        / (wrk.cpu_seconds / wrk.requests as f64),
                );
            }
        }
        let (Some(throughput), Some(cpu)) = (Spread::of(&throughput), Spread::of(&cpu)) else {
            continue;
        };
        println!(
            "{name}: throughput {:.2}x wrk's (range {:.2}–{:.2}; target >= 0.95), CPU per request {:.2}x wrk's (range {:.2}–{:.2}; target <= 1.5x), medians of {} round(s)",
            throughput.median,
            throughput.min,
            throughput.max,
            cpu.median,
            cpu.min,
            cpu.max,
            rounds.len()
        );
    }
}
