//! Each command's body: list, install, up, run, load, audit.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::components::version_sets::VersionSet;
use crate::components::{self, CacheDir, InstallEvent, Toolchain};
use crate::control::{StackControl, Uncontrolled};
use crate::engine::Engine;
use crate::env::existing::ExistingEnvironment;
use crate::env::kind::{Images, KindEnvironment, KindOptions};
use crate::env::local::{LoginTheme, Runtime};
use crate::env::{LocalStack, StackConfig, StackEvent};
use crate::events::EnvironmentInfo;
use crate::redact::Redactor;
use crate::report::terminal::TerminalReporter;
use crate::report::{LoadReportFormat, Reporters, file_reporters, write_load_reports};
use crate::scenario::{Catalog, qualified_name};

use super::*;

pub(crate) fn load_catalog(args: &CatalogArgs) -> Result<Catalog> {
    match &args.catalog {
        Some(dir) => Ok(Catalog::load_dir(dir)?),
        None => Ok(Catalog::builtin()),
    }
}

pub(crate) fn list(args: &CatalogArgs) -> Result<ExitCode> {
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
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A line per stack start-up event worth showing.
    pub(crate) fn stack_event(&self, event: StackEvent) {
        match event {
            StackEvent::Starting(component) => self.say(format!("starting {component}")),
            StackEvent::Retrying { component, detail } => {
                self.done(format!("{component}: {detail}"))
            }
            StackEvent::Binding { .. } => {}
            StackEvent::Ready { component, after } => self.done(format!(
                "{component} ready after {:.1}s",
                after.as_secs_f64()
            )),
        }
    }

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

pub(crate) fn install() -> Result<Toolchain> {
    install_set(&VersionSet::pinned())
}

/// `meshauth images build [--kind]`: every component installed, then its image built (or
/// kept); with `--kind`, kind's toolchain, the node image and Istio's images too.
pub(crate) fn images_build(kind: bool) -> Result<ExitCode> {
    use crate::components::images::{ImageEngine, ImageEvent, build_images};
    use crate::components::kind_images::{build_kind_images, ensure_kind_toolchain};
    let engine = ImageEngine::find()?;
    let toolchain = install()?;
    let cache = CacheDir::from_env()?;
    let kind_toolchain = if kind {
        let progress = Progress::new();
        let observe = |event: InstallEvent| report_install(&progress, event);
        let built = ensure_kind_toolchain(&cache, &observe);
        progress.finish();
        Some(built.context("building kind's toolchain (kind, Kubernetes, Istio)")?)
    } else {
        None
    };
    let progress = Progress::new();
    let started = Instant::now();
    let observe = |event: ImageEvent| match event {
        ImageEvent::Building { reference } => progress.say(format!("building {reference}")),
        ImageEvent::Done(image) => progress.done(match image.built_seconds {
            Some(seconds) => format!("{} built in {seconds:.1}s", image.reference),
            None => format!("{} (unchanged)", image.reference),
        }),
    };
    let built = build_images(&cache, &toolchain, &engine, &observe).and_then(|mut images| {
        if let Some(kind_toolchain) = &kind_toolchain {
            images.extend(build_kind_images(
                &cache,
                &toolchain,
                kind_toolchain,
                &engine,
                &observe,
            )?);
        }
        Ok(images)
    });
    progress.finish();
    let built = built.with_context(|| {
        format!(
            "building the components' images with {}",
            engine.program.display()
        )
    })?;
    eprintln!(
        "{} images ready in {:.1}s ({}); `meshauth run --env containers` uses them{}",
        built.len(),
        started.elapsed().as_secs_f64(),
        engine.program.display(),
        if kind {
            ", and `meshauth run --env kind --images local`"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn report_install(progress: &Progress, event: InstallEvent) {
    match event {
        InstallEvent::Started { component, action } => {
            progress.say(format!("{component}: {action}"))
        }
        InstallEvent::Finished { component, detail } => {
            progress.done(format!("{component}: {detail}"))
        }
    }
}

pub(crate) fn install_set(set: &VersionSet) -> Result<Toolchain> {
    let progress = Progress::new();
    let started = Instant::now();
    let cache = CacheDir::from_env()?;
    progress.say(format!("checking components in {}", cache.path().display()));
    let observe = |event: InstallEvent| report_install(&progress, event);
    let toolchain = components::ensure_installed_set(&cache, set, &observe);
    progress.finish();
    let toolchain = toolchain.context("installing the local environment's components")?;
    eprintln!(
        "components ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(toolchain)
}

pub(crate) async fn load(args: &LoadArgs) -> Result<ExitCode> {
    use crate::load::{self, LoadOptions, LoadTarget, Phase, Thresholds};
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
    let moved = args.idp != IdpArg::Keycloak || args.plain_http;
    if moved && !matches!(args.env_kind, EnvKind::Local) {
        bail!("--idp and --plain-http configure the local stack\nhow to fix: run with --env local");
    }
    if args.idp == IdpArg::OidcProvider
        && options
            .phases
            .iter()
            .any(|p| matches!(p, Phase::Bearer | Phase::Mix))
    {
        bail!(
            "the bearer and mix phases take tokens by the password grant, which the second \
             OpenID Provider does not offer\nhow to fix: --phases baseline,cookie,login-storm"
        );
    }
    // The environments meshauth provisions add the opt-in `/baseline/` route for load runs.
    let sign_in = crate::policy::SignInProfile {
        idp: match args.idp {
            IdpArg::Keycloak => crate::policy::IdentityProvider::Keycloak,
            IdpArg::OidcProvider => crate::policy::IdentityProvider::OidcProvider,
        },
        app_listener: if args.plain_http {
            crate::policy::AppListener::PlainHttp
        } else {
            crate::policy::AppListener::Https
        },
        ext_authz_paths: if args.plain_http {
            crate::policy::ExtAuthzPaths::EveryPath
        } else {
            crate::policy::ExtAuthzPaths::ExceptAuthProxy
        },
        session_cookie_secure: args.plain_http.then_some(false),
        admission: crate::policy::Admission::AuthProxy,
        idp_address: None,
        realm: None,
    };
    let provisioned =
        stack_config(&args.stack)
            .for_load()
            .with_profile(&crate::policy::StackProfile {
                sign_in,
                ..Default::default()
            });
    let (run_dir, target) = match args.env_kind {
        EnvKind::Kind => {
            let (_, run_dir) = new_run_dir(&args.stack)?;
            let kind = start_kind(&args.stack, provisioned, &run_dir, &redactor).await?;
            let target = provisioned_target(kind.endpoints(), None);
            cluster = Some(kind);
            (run_dir, target)
        }
        EnvKind::Local | EnvKind::Containers => {
            let runtime = runtime_for(args.env_kind).await?;
            let (_, local) =
                start_local_toolchain(&args.stack, provisioned, runtime, install()?, &redactor)
                    .await?;
            let target = provisioned_target(local.endpoints(), local.telemetry());
            let run_dir = local.run_dir().to_path_buf();
            stack = Some(local);
            (run_dir, target)
        }
        EnvKind::Existing => {
            if args.stack.istio.is_some() {
                bail!(
                    "--istio configures a stack the harness provisions; an existing deployment is configured as it is\nhow to fix: drop --istio, or run with --env local"
                );
            }
            let Some(file) = &args.env_file else {
                bail!("--env existing needs --env-file FILE describing the deployment");
            };
            let existing = ExistingEnvironment::load(file)?;
            let (_, run_dir) = new_run_dir(&args.stack)?;
            (
                run_dir,
                LoadTarget {
                    endpoints: existing.endpoints().clone(),
                    baseline: args.baseline_url.clone(),
                    allow_remote: args.allow_remote,
                    telemetry: None,
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

pub(crate) fn stack_config(args: &StackArgs) -> StackConfig {
    deployment_profile(args).apply(StackConfig {
        skip_provider_button: args.skip_provider_button,
        login_theme: match args.login_theme {
            Theme::V2 => LoginTheme::KeycloakV2,
            Theme::Legacy => LoginTheme::Legacy,
        },
        istio_overlay: args.istio.clone(),
        ..StackConfig::default()
    })
}

pub(crate) fn istio_dump(args: &IstioDumpArgs) -> Result<ExitCode> {
    let toolchain = install()?;
    let profile = crate::env::DeploymentProfile::from_name(&args.profile)
        .expect("clap accepts only the profiles' names");
    let config = profile.apply(StackConfig {
        istio_overlay: args.istio.clone(),
        ..StackConfig::default()
    });
    let written = crate::env::local::dump_istio(&toolchain, &config, &args.out)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    println!(
        "inputs (the Istio objects and mesh config translated): {}",
        args.out.join("inputs").display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn deployment_profile(args: &StackArgs) -> crate::env::DeploymentProfile {
    crate::env::DeploymentProfile::from_name(&args.profile)
        .expect("clap accepts only the profiles' names")
}

/// A load target on an environment meshauth provisioned: loopback, with its `/baseline/` route.
pub(crate) fn provisioned_target(
    endpoints: &crate::env::Endpoints,
    telemetry: Option<crate::env::ComponentTelemetry>,
) -> crate::load::LoadTarget {
    crate::load::LoadTarget {
        endpoints: endpoints.clone(),
        baseline: endpoints.app.join("baseline/").ok(),
        allow_remote: false,
        telemetry,
    }
}

/// A fresh run directory under `--runs-dir`, with `latest` pointing at it, owned by this
/// process; the oldest runs beyond `--keep-runs` are removed first.
pub(crate) fn new_run_dir(args: &StackArgs) -> Result<(String, PathBuf)> {
    let runs_dir = &args.runs_dir;
    if args.keep_runs > 0 {
        // The new run is one of those kept.
        let removed = crate::files::prune_runs(runs_dir, args.keep_runs - 1)
            .with_context(|| format!("removing old runs from {}", runs_dir.display()))?;
        if !removed.is_empty() {
            eprintln!(
                "removed {} old run director{} from {} (--keep-runs {})",
                removed.len(),
                if removed.len() == 1 { "y" } else { "ies" },
                runs_dir.display(),
                args.keep_runs
            );
        }
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .unwrap_or_else(|_| "run".into());
    let run_id = format!("{stamp}-{:04x}", rand::random::<u16>());
    let dir = runs_dir.join(&run_id);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating run directory {}", dir.display()))?;
    std::fs::write(
        dir.join(crate::files::RUN_OWNER_FILE),
        std::process::id().to_string(),
    )
    .with_context(|| format!("writing {}", dir.display()))?;
    let latest = runs_dir.join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(&run_id, &latest);
    let dir = dir.canonicalize().unwrap_or(dir);
    Ok((run_id, dir))
}

/// How the local stack runs its components for `--env`: processes, or official images when a
/// Docker engine answers (and a usage error saying what is missing when none does).
pub(crate) async fn runtime_for(env_kind: EnvKind) -> Result<Runtime> {
    if !matches!(env_kind, EnvKind::Containers) {
        return Ok(Runtime::Processes);
    }
    let engine = crate::components::container::engine_available()
        .await
        .map_err(|missing| {
            anyhow::anyhow!(
                "--env containers runs the components from their images and needs a Docker \
                 engine: {missing}\nhow to fix: start Docker (or point DOCKER_HOST at an \
                 engine), or run with --env local, which needs no Docker"
            )
        })?;
    eprintln!("containers: {engine}; the components' images on the host's network");
    let images = crate::components::container::ContainerImages::pinned();
    crate::components::container::pull_all(&images, &|image| {
        eprintln!("containers: pulling {image}");
    })
    .await
    .map_err(anyhow::Error::msg)?;
    Ok(Runtime::Containers(images))
}

pub(crate) async fn start_local_toolchain(
    args: &StackArgs,
    config: StackConfig,
    runtime: Runtime,
    toolchain: Toolchain,
    redactor: &Redactor,
) -> Result<(String, LocalStack)> {
    let (run_id, run_dir) = new_run_dir(args)?;
    let progress = Progress::new();
    let started = Instant::now();
    let observe = |event: StackEvent| progress.stack_event(event);
    let stack =
        LocalStack::start_on(runtime, toolchain, &run_dir, config, redactor, &observe).await;
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

pub(crate) async fn start_kind(
    args: &StackArgs,
    config: StackConfig,
    run_dir: &Path,
    redactor: &Redactor,
) -> Result<KindEnvironment> {
    let mut images = Images::pinned_for(args.kind.image_source);
    if let Some(mirror) = &args.kind.image_registry {
        images = images.mirrored(mirror);
    }
    for assignment in &args.kind.images {
        images = images.with(assignment).map_err(anyhow::Error::msg)?;
    }
    let options = KindOptions {
        cluster_name: args.kind.kind_cluster.clone(),
        images,
        keep_cluster: args.kind.keep_cluster,
        http_host_port: args.kind.kind_http_port,
        https_host_port: args.kind.kind_https_port,
        image_source: args.kind.image_source,
        node_image: args.kind.node_image.clone(),
        istio_tag: None,
    };
    let progress = Progress::new();
    let started = Instant::now();
    let observe = |event: StackEvent| progress.stack_event(event);
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

pub(crate) async fn up(up: &UpArgs) -> Result<ExitCode> {
    if matches!(up.env_kind, EnvKind::Existing | EnvKind::Kind) {
        bail!(
            "meshauth up starts the stack on this machine: --env local or --env containers\n\
             how to fix: an existing deployment is already up (point `meshauth run --env \
             existing` at it); `meshauth run --env kind` creates the kind cluster"
        );
    }
    let args = &up.stack;
    let redactor = Redactor::new();
    let runtime = runtime_for(up.env_kind).await?;
    let (_, mut stack) =
        start_local_toolchain(args, stack_config(args), runtime, install()?, &redactor).await?;
    let endpoints = stack.endpoints();
    let run_dir = stack.run_dir().to_path_buf();
    // Passwords go to a file only the user can read, never to the terminal or a log.
    let credentials = run_dir.join("credentials.txt");
    crate::files::write_private(
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
    println!(
        "Istio objects:               {run_dir}/istio/ (what Istio made of them: `meshauth istio dump`)"
    );
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

pub(crate) fn audit(files: &[PathBuf]) -> Result<ExitCode> {
    let files = crate::audit::read_files(files).map_err(anyhow::Error::msg)?;
    let checks = crate::audit::audit_recognised(&files).map_err(anyhow::Error::msg)?;
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

/// The selection once per version set, each on a fresh local stack built from that set's
/// components; one page compares them.
pub(crate) async fn run_versions(args: &RunArgs, file: &Path, verbose: bool) -> Result<ExitCode> {
    use crate::report::versions::{SetRun, VersionMatrix};
    if !matches!(args.env_kind, EnvKind::Local) || args.env_file.is_some() {
        bail!(
            "--versions compares component versions the harness installs itself\nhow to fix: use it with --env local"
        );
    }
    let sets = crate::components::version_sets::load(file)?;
    let catalog = load_catalog(&args.catalog)?;
    let selection = selected(&catalog, args)?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => new_run_dir(&args.stack)?.1.join("versions"),
    };
    let mut runs = Vec::new();
    for set in &sets {
        eprintln!(
            "=== version set {}: {}",
            set.name,
            set.components()
                .iter()
                .map(|(c, v)| format!("{c} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let set_dir = out.join(&set.name);
        let mut set_run = SetRun {
            set: set.clone(),
            report_dir: set.name.clone(),
            passed: 0,
            failed: 0,
            error: None,
        };
        let outcome = run_set(args, set, &selection, &set_dir, verbose).await;
        match outcome {
            Ok(report) => {
                set_run.passed = report.summary.passed;
                set_run.failed = report.summary.failed;
                runs.push((set_run, Some(report)));
            }
            Err(error) => {
                eprintln!("version set {} did not run: {error:#}", set.name);
                set_run.error = Some(format!("{error:#}"));
                runs.push((set_run, None));
            }
        }
    }
    let matrix = VersionMatrix::new(runs);
    for set in &matrix.sets {
        match &set.error {
            Some(error) => eprintln!("version set {}: no result: {error}", set.set.name),
            None => eprintln!(
                "version set {}: {} passed, {} failed",
                set.set.name, set.passed, set.failed
            ),
        }
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let page = out.join("versions.html");
    std::fs::write(&page, crate::report::html::render_versions(&matrix)?)
        .with_context(|| format!("writing {}", page.display()))?;
    let json = out.join("versions.json");
    std::fs::write(&json, serde_json::to_string_pretty(&matrix)?)
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!(
        "{} scenario(s) change verdict between {} version sets",
        matrix.changed,
        matrix.sets.len()
    );
    eprintln!("report: {}", page.display());
    Ok(if matrix.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One version set: its components installed, a stack started from them, the selection run,
/// its reports written under `dir`.
async fn run_set(
    args: &RunArgs,
    set: &VersionSet,
    selection: &[(&crate::scenario::Suite, &crate::scenario::Scenario)],
    dir: &Path,
    verbose: bool,
) -> Result<crate::report::RunReport> {
    use crate::report::versions::CollectingReporter;
    let toolchain = install_set(set)?;
    let redactor = Redactor::new();
    let (run_id, mut stack) = start_local_toolchain(
        &args.stack,
        stack_config(&args.stack),
        Runtime::Processes,
        toolchain,
        &redactor,
    )
    .await?;
    let endpoints = stack.endpoints().clone();
    let info = stack.info();
    let collected = std::sync::Arc::new(std::sync::Mutex::new(crate::report::RunReport::new()));
    let mut reporters = Reporters::new();
    reporters.add(Box::new(TerminalReporter::new(std::io::stdout(), verbose)));
    reporters.add(Box::new(CollectingReporter(collected.clone())));
    let (files, _) = file_reporters(&args.report, dir, &redactor)?;
    for file in files {
        reporters.add(Box::new(file));
    }
    let plan = crate::engine::plan(selection.to_vec(), &endpoints, &stack);
    let engine = Engine::new(endpoints, redactor)?.with_jobs(args.jobs);
    engine
        .run(&run_id, info, &plan, &mut stack, &mut reporters)
        .await;
    for error in reporters.finish() {
        eprintln!("warning: {error}");
    }
    drop(stack);
    let report = collected
        .lock()
        .map(|r| r.clone())
        .map_err(|_| anyhow::anyhow!("the collected report is unreadable"))?;
    Ok(report)
}

/// The scenarios `args` select: the filter, narrowed to the profile's write-up.
fn selected<'a>(
    catalog: &'a Catalog,
    args: &RunArgs,
) -> Result<Vec<(&'a crate::scenario::Suite, &'a crate::scenario::Scenario)>> {
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
    Ok(selection)
}

pub(crate) async fn run(args: &RunArgs, verbose: bool) -> Result<ExitCode> {
    let catalog = load_catalog(&args.catalog)?;
    let selection = selected(&catalog, args)?;
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
            let (run_id, run_dir) = new_run_dir(&args.stack)?;
            let kind =
                start_kind(&args.stack, stack_config(&args.stack), &run_dir, &redactor).await?;
            let endpoints = kind.endpoints().clone();
            let info = kind.info();
            cluster = Some(kind);
            (run_id, run_dir, endpoints, info)
        }
        EnvKind::Local | EnvKind::Containers => {
            if args.env_file.is_some() {
                bail!("--env-file is only used with --env existing");
            }
            let runtime = runtime_for(args.env_kind).await?;
            let (run_id, local) = start_local_toolchain(
                &args.stack,
                stack_config(&args.stack),
                runtime,
                install()?,
                &redactor,
            )
            .await?;
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
            if deployment_profile(&args.stack).seed().is_some() {
                bail!(
                    "--profile configures a stack the harness provisions; an existing deployment is configured as it is\nhow to fix: drop --profile, or run the profile with --env local"
                );
            }
            let existing = ExistingEnvironment::load(file)?;
            let (run_id, run_dir) = new_run_dir(&args.stack)?;
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
    let target: &mut dyn StackControl = match (stack.as_mut(), commanded.as_mut(), cluster.as_mut())
    {
        (Some(local), _, _) => local,
        (None, Some(existing), _) => existing,
        (None, None, Some(kind)) => kind,
        (None, None, None) => &mut fixed,
    };
    let plan = crate::engine::plan(selection, &endpoints, target);
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
    let engine = Engine::new(endpoints, redactor)?.with_jobs(args.jobs);
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
    if let Some(cluster) = cluster.as_ref().filter(|_| !summary.all_passed()) {
        cluster.export_diagnostics();
    }
    // A kept cluster is left with the policy its environment file declares, not the last
    // scenario's.
    if let Some(kind) = cluster.as_mut().filter(|kind| kind.kept()) {
        kind.apply(&Default::default())
            .await
            .map_err(anyhow::Error::msg)
            .context("restoring the kept cluster's own mesh policy")?;
    }
    drop(stack);
    drop(cluster);
    Ok(if summary.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
