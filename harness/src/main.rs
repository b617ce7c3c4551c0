//! The `meshauth` command: parses arguments, calls the library, maps outcomes to exit codes
//! (0 all passed, 1 a scenario failed, 2 usage or environment error).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use meshauth::components::{self, CacheDir, InstallEvent, Toolchain};
use meshauth::control::{StackControl, Uncontrolled};
use meshauth::engine::Engine;
use meshauth::env::existing::ExistingEnvironment;
use meshauth::env::kind::{Images, KindEnvironment, KindOptions};
use meshauth::env::local::LoginTheme;
use meshauth::env::{LocalStack, StackConfig, StackEvent};
use meshauth::events::EnvironmentInfo;
use meshauth::redact::Redactor;
use meshauth::report::terminal::TerminalReporter;
use meshauth::report::{
    LoadReportFormat, ReportFormat, Reporters, file_reporters, write_load_reports,
};
use meshauth::scenario::{Catalog, qualified_name};

#[derive(Parser)]
#[command(
    name = "meshauth",
    version,
    about = "Conformance and load testing of SSO at a service-mesh gateway"
)]
#[command(
    after_help = "Exit codes: 0 every scenario passed (load: every threshold held), 1 a scenario failed (load: a threshold was violated or a transaction never succeeded), 2 usage or environment error.\n\
Colour is off when NO_COLOR is set or output is not a terminal."
)]
struct Cli {
    /// Show every step, hop and check, not only failures.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the scenario catalog.
    List(CatalogArgs),
    /// Install (or verify the cache of) every component of the local environment.
    Install,
    /// Start the local stack, print its URLs and test user, and keep it up until Ctrl-C.
    Up(StackArgs),
    /// Run the catalog (or the scenarios matching FILTER) and print a verdict per scenario.
    Run(RunArgs),
    /// Audit configuration files (oauth2-proxy config, flags or manifests; Istio objects and
    /// mesh config; Envoy bootstraps; Keycloak realm exports) for insecure settings. Exit 1
    /// when there is a finding.
    Audit {
        /// The files to audit.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Load-test the auth hot path with goose: baseline vs SSO cookie vs bearer, login storm,
    /// a mix; overhead ratios, the generator's CPU, and thresholds as a CI gate (exit 1).
    Load(Box<LoadArgs>),
}

#[derive(Clone, Copy, ValueEnum)]
enum PhaseArg {
    Baseline,
    Cookie,
    Bearer,
    LoginStorm,
    Mix,
}

#[derive(Clone, Copy, ValueEnum)]
enum LoadReportArg {
    Html,
    Json,
}

#[derive(clap::Args)]
struct LoadArgs {
    #[arg(long = "env", value_enum, default_value = "local")]
    env_kind: EnvKind,
    /// The YAML file describing an existing deployment (with --env existing).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// With --env existing: the same app through the gateway without SSO (the baseline).
    #[arg(long, value_name = "URL")]
    baseline_url: Option<url::Url>,
    /// With --env existing: allow hosts outside loopback (only for deployments you own).
    #[arg(long)]
    allow_remote: bool,
    /// Concurrent goose users (each holds one connection).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=meshauth::load::MAX_USERS as u64))]
    users: u64,
    /// Users started per second.
    #[arg(long, default_value_t = 4.0)]
    hatch_rate: f64,
    /// Measured time per transaction after all users started, e.g. 10s or 1m (at most 10m).
    /// Baseline, cookie and bearer share one interleaved phase: each gets this much, in slices.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Turn length of each path in the interleaved phase, e.g. 500ms or 1s; ratios are the
    /// median over rounds of one slice per path.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    slice: Duration,
    /// Stop the interleaved phase as soon as every overhead ratio is known to within this many
    /// percent (95% confidence interval of the median), e.g. 2.5; --duration is then the cap.
    #[arg(long, value_name = "PERCENT")]
    precision: Option<f64>,
    /// What to measure. Baseline, cookie and bearer run interleaved (one phase); then the
    /// login storm; then the mix.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "baseline,cookie,bearer,login-storm,mix"
    )]
    phases: Vec<PhaseArg>,
    /// Path requested behind SSO and on the baseline route.
    #[arg(long, default_value = "status/200")]
    path: String,
    /// Requests after which a phase stops early (a count bound on top of the time bound).
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Report files to write (comma-separated): html (load.html, with charts), json (load.json).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "html,json")]
    report: Vec<LoadReportArg>,
    /// Where to write the reports (default: the run directory).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Fail (exit 1) if any non-login transaction's p99 latency exceeds this many ms.
    #[arg(long, value_name = "MS")]
    max_p99: Option<f64>,
    /// Fail (exit 1) if an auth path keeps less than this share of the baseline's throughput
    /// (ratio = auth req/s ÷ baseline req/s, e.g. 0.5).
    #[arg(long, value_name = "RATIO")]
    min_ratio: Option<f64>,
    /// Fail (exit 1) if any transaction's error rate (errors ÷ attempts) exceeds this fraction.
    #[arg(long, value_name = "FRACTION")]
    max_error_rate: Option<f64>,
    #[command(flatten)]
    stack: StackArgs,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 2m or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("{text:?}: use ms, s or m, e.g. 500ms, 10s or 2m")),
    }
}

#[derive(clap::Args)]
struct CatalogArgs {
    /// A directory of scenario files instead of the built-in catalog.
    #[arg(long, value_name = "DIR")]
    catalog: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum EnvKind {
    /// Real components as processes on loopback (needs no Docker).
    Local,
    /// A deployment described by --env-file.
    Existing,
    /// A kind cluster with Istio and the same apps (needs Docker, kind and istioctl).
    Kind,
}

#[derive(Clone, Copy, ValueEnum)]
enum Theme {
    V2,
    Legacy,
}

#[derive(clap::Args)]
struct StackArgs {
    /// Configure the local stack as a reference write-up configures its deployment
    /// (seed000..seed003; `run` then runs the suites tagged with that write-up), or as the
    /// hardened reference.
    #[arg(long, value_name = "NAME", default_value = "reference",
          value_parser = ["reference", "seed000", "seed001", "seed002", "seed003"])]
    profile: String,
    /// oauth2-proxy redirects straight to the IdP instead of showing its sign-in page.
    #[arg(long)]
    skip_provider_button: bool,
    /// Keycloak's login theme.
    #[arg(long, value_enum, default_value = "v2")]
    login_theme: Theme,
    /// Where run directories (logs, rendered configs) go.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "meshauth-runs",
        env = "MESHAUTH_RUNS_DIR"
    )]
    runs_dir: PathBuf,
    #[command(flatten)]
    kind: KindArgs,
}

#[derive(clap::Args)]
struct KindArgs {
    /// With --env kind: the kind cluster's name.
    #[arg(long, value_name = "NAME", default_value = "meshauth")]
    kind_cluster: String,
    /// With --env kind: leave the cluster running afterwards.
    #[arg(long)]
    keep_cluster: bool,
    /// With --env kind: the registry (host[/path]) the container images are pulled from;
    /// without it the container runtime's default registry is used.
    #[arg(long, value_name = "REGISTRY", env = "MESHAUTH_IMAGE_REGISTRY")]
    image_registry: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Run only scenarios whose `suite::id` contains one of these.
    filter: Vec<String>,
    #[arg(long = "env", value_enum, default_value = "local")]
    env_kind: EnvKind,
    /// The YAML file describing an existing deployment (with --env existing).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    #[command(flatten)]
    catalog: CatalogArgs,
    #[command(flatten)]
    stack: StackArgs,
    /// Report files to write (comma-separated: html, junit, json).
    #[arg(long, value_delimiter = ',', default_value = "html,junit,json")]
    report: Vec<ReportFormat>,
    /// Where to write the reports (default: the run directory).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        owo_colors::set_override(false);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List(args) => list(&args),
        Command::Install => {
            install()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(args) => up(&args).await,
        Command::Run(args) => run(&args, cli.verbose).await,
        Command::Load(args) => load(&args).await,
        Command::Audit { files } => audit(&files),
    }
}

fn load_catalog(args: &CatalogArgs) -> Result<Catalog> {
    match &args.catalog {
        Some(dir) => Ok(Catalog::load_dir(dir)?),
        None => Ok(Catalog::builtin()),
    }
}

fn list(args: &CatalogArgs) -> Result<ExitCode> {
    let catalog = load_catalog(args)?;
    for suite in &catalog.suites {
        let seeds = if suite.seeds.is_empty() {
            String::new()
        } else {
            format!(" [seeds: {}]", suite.seeds.join(", "))
        };
        println!("{} — {}{seeds}", suite.suite, suite.description.trim());
        for scenario in &suite.scenarios {
            println!(
                "  {:<52} {}",
                qualified_name(suite, scenario),
                scenario.title
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A spinner on a terminal, plain lines otherwise (CI logs).
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    fn say(&self, message: String) {
        match &self.bar {
            Some(bar) => bar.set_message(message),
            None => eprintln!("{message}"),
        }
    }

    fn done(&self, message: String) {
        match &self.bar {
            Some(bar) => bar.println(format!("✓ {message}")),
            None => eprintln!("✓ {message}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn install() -> Result<Toolchain> {
    let progress = Progress::new();
    let started = Instant::now();
    let cache = CacheDir::from_env()?;
    progress.say(format!("checking components in {}", cache.path().display()));
    let observe = |event: InstallEvent| match event {
        InstallEvent::Started { component, action } => {
            progress.say(format!("{component}: {action}"))
        }
        InstallEvent::Finished { component, detail } => {
            progress.done(format!("{component}: {detail}"))
        }
    };
    let toolchain = components::ensure_installed(&cache, &observe);
    progress.finish();
    let toolchain = toolchain.context("installing the local environment's components")?;
    eprintln!(
        "components ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(toolchain)
}

async fn load(args: &LoadArgs) -> Result<ExitCode> {
    use meshauth::load::{self, LoadOptions, LoadTarget, Phase, Thresholds};
    let thresholds = Thresholds {
        max_p99_ms: args.max_p99,
        min_ratio: args.min_ratio,
        max_error_rate: args.max_error_rate,
    };
    for (name, value) in [
        ("--max-p99", args.max_p99),
        ("--min-ratio", args.min_ratio),
        ("--max-error-rate", args.max_error_rate),
    ] {
        if value.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            bail!("{name} must be a non-negative number");
        }
    }
    let options = LoadOptions {
        users: args.users as usize,
        hatch_rate: args.hatch_rate,
        duration: args.duration,
        slice: args.slice,
        precision: args.precision.map(|percent| percent / 100.0),
        phases: args
            .phases
            .iter()
            .map(|p| match p {
                PhaseArg::Baseline => Phase::Baseline,
                PhaseArg::Cookie => Phase::Cookie,
                PhaseArg::Bearer => Phase::Bearer,
                PhaseArg::LoginStorm => Phase::LoginStorm,
                PhaseArg::Mix => Phase::Mix,
            })
            .collect(),
        path: args.path.clone(),
        max_requests_per_phase: args.max_requests,
        ..LoadOptions::default()
    };
    // Usage errors surface before a stack is started.
    options.validate()?;
    if args.min_ratio.is_some()
        && !(options.phases.contains(&Phase::Baseline)
            && (options.phases.contains(&Phase::Cookie) || options.phases.contains(&Phase::Bearer)))
    {
        bail!("--min-ratio needs the baseline phase and the cookie or bearer phase in --phases");
    }
    let redactor = Redactor::new();
    let mut stack = None;
    let mut cluster = None;
    if !matches!(args.env_kind, EnvKind::Existing)
        && (args.env_file.is_some() || args.baseline_url.is_some() || args.allow_remote)
    {
        bail!("--env-file, --baseline-url and --allow-remote are only used with --env existing");
    }
    // The environments meshauth provisions add the opt-in `/baseline/` route for load runs.
    let provisioned = StackConfig {
        baseline_route: true,
        ..stack_config(&args.stack)
    };
    let (run_dir, target) = match args.env_kind {
        EnvKind::Kind => {
            let (_, run_dir) = new_run_dir(&args.stack.runs_dir)?;
            let kind = start_kind(&args.stack, provisioned, &run_dir, &redactor).await?;
            let target = provisioned_target(kind.endpoints());
            cluster = Some(kind);
            (run_dir, target)
        }
        EnvKind::Local => {
            let (_, local) = start_local_with(&args.stack, provisioned, &redactor).await?;
            let target = provisioned_target(local.endpoints());
            let run_dir = local.run_dir().to_path_buf();
            stack = Some(local);
            (run_dir, target)
        }
        EnvKind::Existing => {
            let Some(file) = &args.env_file else {
                bail!("--env existing needs --env-file FILE describing the deployment");
            };
            let existing = ExistingEnvironment::load(file)?;
            let (_, run_dir) = new_run_dir(&args.stack.runs_dir)?;
            (
                run_dir,
                LoadTarget {
                    endpoints: existing.endpoints().clone(),
                    baseline: args.baseline_url.clone(),
                    allow_remote: args.allow_remote,
                },
            )
        }
    };
    let progress = |line: String| eprintln!("{line}");
    let mut report = load::run(&target, &options, &redactor, &progress).await?;
    let violations = report.judge(&thresholds);
    drop(stack);
    drop(cluster);
    print!("{}", report.render_text());
    let formats: Vec<LoadReportFormat> = args
        .report
        .iter()
        .map(|f| match f {
            LoadReportArg::Html => LoadReportFormat::Html,
            LoadReportArg::Json => LoadReportFormat::Json,
        })
        .collect();
    let out = args.out.clone().unwrap_or(run_dir);
    for path in write_load_reports(&report, &formats, &out, &redactor)? {
        eprintln!("report: {}", path.display());
    }
    let silent = report.silent_transactions();
    for transaction in &silent {
        eprintln!("FAILED: {transaction} completed no successful request");
    }
    for violation in &violations {
        eprintln!("FAILED: {violation}");
    }
    Ok(if silent.is_empty() && violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn stack_config(args: &StackArgs) -> StackConfig {
    deployment_profile(args).apply(StackConfig {
        skip_provider_button: args.skip_provider_button,
        login_theme: match args.login_theme {
            Theme::V2 => LoginTheme::KeycloakV2,
            Theme::Legacy => LoginTheme::Legacy,
        },
        ..StackConfig::default()
    })
}

fn deployment_profile(args: &StackArgs) -> meshauth::env::DeploymentProfile {
    meshauth::env::DeploymentProfile::from_name(&args.profile)
        .expect("clap accepts only the profiles' names")
}

/// A fresh run directory under `runs_dir`, with `latest` pointing at it.
/// A load target on an environment meshauth provisioned: loopback, with its `/baseline/` route.
fn provisioned_target(endpoints: &meshauth::env::Endpoints) -> meshauth::load::LoadTarget {
    meshauth::load::LoadTarget {
        endpoints: endpoints.clone(),
        baseline: endpoints.app.join("baseline/").ok(),
        allow_remote: false,
    }
}

fn new_run_dir(runs_dir: &Path) -> Result<(String, PathBuf)> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .unwrap_or_else(|_| "run".into());
    let run_id = format!("{stamp}-{:04x}", rand::random::<u16>());
    let dir = runs_dir.join(&run_id);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating run directory {}", dir.display()))?;
    let latest = runs_dir.join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(&run_id, &latest);
    let dir = dir.canonicalize().unwrap_or(dir);
    Ok((run_id, dir))
}

async fn start_local(args: &StackArgs, redactor: &Redactor) -> Result<(String, LocalStack)> {
    start_local_with(args, stack_config(args), redactor).await
}

async fn start_local_with(
    args: &StackArgs,
    config: StackConfig,
    redactor: &Redactor,
) -> Result<(String, LocalStack)> {
    let toolchain = install()?;
    let (run_id, run_dir) = new_run_dir(&args.runs_dir)?;
    let progress = Progress::new();
    let started = Instant::now();
    let observe = |event: StackEvent| match event {
        StackEvent::Starting(component) => progress.say(format!("starting {component}")),
        StackEvent::Retrying { component, detail } => {
            progress.done(format!("{component}: {detail}"))
        }
        StackEvent::Binding { .. } => {}
        StackEvent::Ready { component, after } => progress.done(format!(
            "{component} ready after {:.1}s",
            after.as_secs_f64()
        )),
    };
    let stack = LocalStack::start(toolchain, &run_dir, config, redactor, &observe).await;
    progress.finish();
    let stack = stack
        .with_context(|| format!("starting the local stack (logs in {})", run_dir.display()))?;
    eprintln!(
        "stack ready in {:.1}s (run directory {})",
        started.elapsed().as_secs_f64(),
        run_dir.display()
    );
    Ok((run_id, stack))
}

async fn start_kind(
    args: &StackArgs,
    config: StackConfig,
    run_dir: &Path,
    redactor: &Redactor,
) -> Result<KindEnvironment> {
    let options = KindOptions {
        cluster_name: args.kind.kind_cluster.clone(),
        images: Images::pinned(args.kind.image_registry.as_deref()),
        keep_cluster: args.kind.keep_cluster,
        ..KindOptions::default()
    };
    let progress = Progress::new();
    let started = Instant::now();
    let observe = |event: StackEvent| match event {
        StackEvent::Starting(component) => progress.say(format!("starting {component}")),
        StackEvent::Retrying { component, detail } => {
            progress.done(format!("{component}: {detail}"))
        }
        StackEvent::Binding { .. } => {}
        StackEvent::Ready { component, after } => progress.done(format!(
            "{component} ready after {:.1}s",
            after.as_secs_f64()
        )),
    };
    let environment = KindEnvironment::start(run_dir, config, options, redactor, &observe).await;
    progress.finish();
    let environment = environment.with_context(|| {
        format!(
            "starting the kind environment (run directory {})",
            run_dir.display()
        )
    })?;
    eprintln!(
        "kind environment ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(environment)
}

async fn up(args: &StackArgs) -> Result<ExitCode> {
    let redactor = Redactor::new();
    let (_, mut stack) = start_local(args, &redactor).await?;
    let endpoints = stack.endpoints();
    let run_dir = stack.run_dir().to_path_buf();
    // Passwords go to a file only the user can read, never to the terminal or a log.
    let credentials = run_dir.join("credentials.txt");
    meshauth::files::write_private(
        &credentials,
        &format!(
            "test user: {} / {}\nKeycloak admin (master realm): admin / {}\n",
            endpoints.user.username,
            endpoints.user.password.expose(),
            stack.admin_password().expose()
        ),
    )
    .with_context(|| format!("writing {}", credentials.display()))?;
    let run_dir = run_dir.display();
    println!("app (HTTPS, SSO required):   {}headers", endpoints.app);
    println!("Keycloak (plain HTTP, open): {}", endpoints.idp);
    println!("issuer:                      {}", endpoints.issuer);
    println!("CA certificate:              {run_dir}/tls/ca.pem");
    println!(
        "test user:                   {} (password in {})",
        endpoints.user.username,
        credentials.display()
    );
    println!("logs:                        {run_dir}/*.log");
    println!("press Ctrl-C to stop");
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut watch = tokio::time::interval(Duration::from_millis(500));
    let death = loop {
        tokio::select! {
            signal = &mut ctrl_c => {
                signal.context("waiting for Ctrl-C")?;
                break None;
            }
            _ = watch.tick() => {
                if let Some(death) = stack.died() {
                    break Some(death);
                }
            }
        }
    };
    eprintln!("stopping the stack");
    stack.stop();
    match death {
        None => Ok(ExitCode::SUCCESS),
        Some(death) => {
            Err(anyhow::Error::new(death).context("a component of the local stack died"))
        }
    }
}

fn audit(files: &[PathBuf]) -> Result<ExitCode> {
    let files = meshauth::audit::read_files(files).map_err(anyhow::Error::msg)?;
    let checks = meshauth::audit::audit(&files);
    if checks.is_empty() {
        bail!(
            "none of the files is a configuration meshauth recognises (oauth2-proxy, Istio or Envoy, Keycloak realm export)"
        );
    }
    let findings: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    for finding in &findings {
        println!("✗ {finding}");
    }
    println!(
        "{} finding(s) in {} check(s) of {} file(s)",
        findings.len(),
        checks.len(),
        files.len()
    );
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run(args: &RunArgs, verbose: bool) -> Result<ExitCode> {
    let catalog = load_catalog(&args.catalog)?;
    let mut selection = catalog.select(&args.filter);
    if let Some(seed) = deployment_profile(&args.stack).seed() {
        selection.retain(|(suite, _)| suite.seeds.iter().any(|s| s == seed));
    }
    if selection.is_empty() {
        bail!(
            "no scenario matches {:?}; `meshauth list` shows the catalog",
            args.filter
        );
    }
    let redactor = Redactor::new();
    let mut existing_control = None;
    let mut stack = None;
    let mut cluster = None;
    let (run_id, run_dir, endpoints, info): (String, PathBuf, _, EnvironmentInfo) = match args
        .env_kind
    {
        EnvKind::Kind => {
            if args.env_file.is_some() {
                bail!("--env-file is only used with --env existing");
            }
            let (run_id, run_dir) = new_run_dir(&args.stack.runs_dir)?;
            let kind =
                start_kind(&args.stack, stack_config(&args.stack), &run_dir, &redactor).await?;
            let endpoints = kind.endpoints().clone();
            let info = kind.info();
            cluster = Some(kind);
            (run_id, run_dir, endpoints, info)
        }
        EnvKind::Local => {
            if args.env_file.is_some() {
                bail!("--env-file is only used with --env existing");
            }
            let (run_id, local) = start_local(&args.stack, &redactor).await?;
            let endpoints = local.endpoints().clone();
            let info = local.info();
            let run_dir = local.run_dir().to_path_buf();
            stack = Some(local);
            (run_id, run_dir, endpoints, info)
        }
        EnvKind::Existing => {
            let Some(file) = &args.env_file else {
                bail!(
                    "--env existing needs --env-file FILE describing the deployment (see docs/existing-environment.md)"
                );
            };
            let existing = ExistingEnvironment::load(file)?;
            let (run_id, run_dir) = new_run_dir(&args.stack.runs_dir)?;
            existing_control = Some(existing.control());
            (
                run_id,
                run_dir,
                existing.endpoints().clone(),
                existing.info(),
            )
        }
    };
    let mut reporters = Reporters::new();
    reporters.add(Box::new(TerminalReporter::new(std::io::stdout(), verbose)));
    let report_dir = args.out.clone().unwrap_or(run_dir);
    let (files, report_paths) = file_reporters(&args.report, &report_dir, &redactor)?;
    for file in files {
        reporters.add(Box::new(file));
    }
    let mut fixed = Uncontrolled;
    let mut commanded = existing_control;
    let target: &mut dyn StackControl = match (stack.as_mut(), commanded.as_mut()) {
        (Some(local), _) => local,
        (None, Some(existing)) => existing,
        (None, None) => &mut fixed,
    };
    let plan = meshauth::engine::plan(selection, &endpoints, target);
    for left_out in &plan.left_out {
        eprintln!(
            "note: not running {} here: {}",
            left_out.scenario, left_out.reason
        );
    }
    if plan.run.is_empty() {
        bail!(
            "none of the selected scenarios can run in this environment (reasons above)\nhow to fix: run them with --env local, or describe more of the deployment in the environment file"
        );
    }
    let engine = Engine::new(endpoints, redactor)?;
    let summary = engine
        .run(&run_id, info, &plan, target, &mut reporters)
        .await;
    let errors = reporters.finish();
    for error in &errors {
        eprintln!("warning: {error}");
    }
    for path in report_paths.iter().filter(|p| p.exists()) {
        eprintln!("report: {}", path.display());
    }
    if let Some(stack) = &stack {
        eprintln!(
            "stack peak memory: {} MiB",
            stack.peak_resident_kib() / 1024
        );
    }
    drop(stack);
    drop(cluster);
    Ok(if summary.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
