//! Benchmark (not a test): how much CPU the load generator spends per request, against wrk,
//! on the same endpoint in one run. The endpoint is Envoy (from the component cache) with one
//! worker answering every request from `direct_response`, so the gateway does as little as
//! possible and the generators' own cost shows.
//!
//! Usage: `cargo bench --bench generator -- [--connections 32] [--seconds 8] [--only NAME]`
//! where NAME is `wrk`, `goose-stock` or `meshauth`. Needs `wrk` on PATH for the wrk row.
//! Generators run one after the other, never at once.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use goose::config::GooseConfiguration;
use goose::prelude::*;
use meshauth::components::{self, CacheDir, Supervised};
use meshauth::env::{Endpoints, TestUser};
use meshauth::load::cpu::CpuSample;
use meshauth::load::{self, LoadOptions, LoadTarget, Phase};
use meshauth::redact::{Redactor, Secret};
use url::Url;

struct Settings {
    connections: usize,
    seconds: u64,
    only: Option<String>,
}

fn settings() -> Settings {
    let mut settings = Settings {
        connections: 32,
        seconds: 8,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--connections" => {
                settings.connections = args.next().and_then(|v| v.parse().ok()).unwrap_or(32)
            }
            "--seconds" => settings.seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(8),
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
        role: "unused".into(),
        roles_claim: "unused".into(),
        ca_pem: None,
    };
    let target = LoadTarget {
        endpoints,
        baseline: Some(url.clone()),
        allow_remote: false,
    };
    let options = LoadOptions {
        users: settings.connections,
        hatch_rate: load::MAX_HATCH_RATE,
        duration: Duration::from_secs(settings.seconds),
        phases: vec![Phase::Baseline],
        path: String::new(),
        ..LoadOptions::default()
    };
    let cpu = CpuSample::now();
    let started = Instant::now();
    let report = load::run(&target, &options, &Redactor::new(), &|_| {})
        .await
        .expect("meshauth load run");
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu.until(&CpuSample::now()).cpu_seconds;
    let baseline = &report.phases[0].transactions[0];
    if baseline.errors > 0 {
        eprintln!("meshauth: errors {:?}", baseline.errors_by_kind);
    }
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
    let mut rows = Vec::new();
    if wanted("wrk") {
        rows.extend(wrk(&url, &settings));
    }
    if wanted("goose-stock") {
        rows.push(runtime.block_on(goose_stock(&url, &settings)));
    }
    if wanted("meshauth") {
        rows.push(runtime.block_on(meshauth_load(&url, &settings)));
    }
    envoy.stop(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);

    let machine = load::cpu::MachineInfo::detect();
    println!(
        "endpoint: Envoy direct_response, 1 worker; {} connections, {} s; {} CPU(s), {}",
        settings.connections, settings.seconds, machine.cpus, machine.cpu_model
    );
    println!(
        "{:<18} {:>10} {:>8} {:>10} {:>8} {:>14} {:>12}",
        "generator", "requests", "seconds", "req/s", "CPU s", "req/CPU-s", "CPU vs wrk"
    );
    let wrk_cost = rows
        .iter()
        .find(|r| r.generator.starts_with("wrk"))
        .map(|r| r.cpu_seconds / r.requests as f64);
    let wrk_rps = rows
        .iter()
        .find(|r| r.generator.starts_with("wrk"))
        .map(Row::rps);
    for row in &rows {
        let versus = wrk_cost.map_or("-".to_string(), |w| {
            format!("{:.2}x", row.cpu_seconds / row.requests as f64 / w)
        });
        println!(
            "{:<18} {:>10} {:>8.2} {:>10.0} {:>8.2} {:>14.0} {:>12}",
            row.generator,
            row.requests,
            row.seconds,
            row.rps(),
            row.cpu_seconds,
            row.requests_per_cpu_second(),
            versus
        );
    }
    if let Some(wrk_rps) = wrk_rps {
        for row in rows.iter().filter(|r| !r.generator.starts_with("wrk")) {
            println!(
                "{}: throughput {:.2}x wrk's (target >= 0.95), CPU per request {} (target <= 1.5x)",
                row.generator,
                row.rps() / wrk_rps,
                wrk_cost.map_or("-".into(), |w| format!(
                    "{:.2}x wrk's",
                    row.cpu_seconds / row.requests as f64 / w
                ))
            );
        }
    }
}
