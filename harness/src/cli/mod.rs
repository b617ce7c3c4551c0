//! The `meshauth` command line: its arguments (clap) and each command's body, over the
//! library. `main.rs` only parses, sets up the process (colour, logging, runtime) and
//! dispatches here; exit codes: 0 all passed, 1 a scenario failed or a threshold was violated,
//! 2 usage or environment error.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use crate::report::ReportFormat;

use commands::*;

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
pub struct Cli {
    /// Show every step, hop and check, not only failures.
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// List the scenario catalog.
    List(CatalogArgs),
    /// Install (or verify the cache of) every component of the local environment.
    Install,
    /// Start the local stack, print its URLs and test user, and keep it up until Ctrl-C.
    Up(UpArgs),
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
    /// What Istio makes of the deployment's Istio objects.
    #[command(subcommand)]
    Istio(IstioCommand),
    /// Container images of the components, built here for machines and clusters without
    /// registry access.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Runs one component's container for the containers environment (internal).
    #[command(hide = true)]
    ContainerShim {
        /// The container spec the stack wrote (read once, then deleted).
        spec: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum IstioCommand {
    /// Write what Istio's own config generator makes of the deployment's Istio objects (the
    /// profile's, with --istio laid over them) for the gateway and httpbin's sidecar:
    /// listeners, clusters and routes as Envoy receives them, one JSON file per proxy.
    Dump(IstioDumpArgs),
}

#[derive(Subcommand)]
pub(crate) enum ImagesCommand {
    /// Build the images `--env containers` runs from the components the local environment
    /// runs (installing them first), tagged with the references it names, so nothing is
    /// pulled. Uses podman, else docker (or $MESHAUTH_CONTAINER_ENGINE); an image whose
    /// inputs did not change is kept.
    Build {
        /// Also what `--env kind --images local` needs: kind and istioctl, Istio's pilot and
        /// proxyv2 images, and a kind node image of Kubernetes built from its Go modules with
        /// the control plane's images inside (about 15 minutes cold on 2 cores; needs root,
        /// mmdebstrap and apt's Debian sources for the node's root file system).
        #[arg(long)]
        kind: bool,
    },
}

#[derive(clap::Args)]
pub(crate) struct IstioDumpArgs {
    /// The deployment profile whose objects are translated.
    #[arg(long, value_name = "NAME", default_value = "reference",
          value_parser = ["reference", "seed000", "seed001", "seed002", "seed003"])]
    pub(crate) profile: String,
    /// A directory of your own Istio YAML laid over the profile's objects.
    #[arg(long, value_name = "DIR")]
    pub(crate) istio: Option<PathBuf>,
    /// Where to write gateway.json, httpbin.json and the inputs.
    #[arg(long, value_name = "DIR", default_value = "istio-dump")]
    pub(crate) out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PhaseArg {
    Baseline,
    Cookie,
    Bearer,
    LoginStorm,
    Mix,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LoadReportArg {
    Html,
    Json,
}

#[derive(clap::Args)]
pub(crate) struct LoadArgs {
    #[arg(long = "env", value_enum, default_value = "local")]
    pub(crate) env_kind: EnvKind,
    /// The YAML file describing an existing deployment (with --env existing).
    #[arg(long, value_name = "FILE")]
    pub(crate) env_file: Option<PathBuf>,
    /// With --env existing: the same app through the gateway without SSO (the baseline).
    #[arg(long, value_name = "URL")]
    pub(crate) baseline_url: Option<url::Url>,
    /// With --env existing: allow hosts outside loopback (only for deployments you own).
    #[arg(long)]
    pub(crate) allow_remote: bool,
    /// Concurrent goose users (each holds one connection).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=crate::load::MAX_USERS as u64))]
    pub(crate) users: u64,
    /// Users started per second.
    #[arg(long, default_value_t = 4.0)]
    pub(crate) hatch_rate: f64,
    /// Measured time per transaction after all users started, e.g. 10s or 1m (at most 10m).
    /// Baseline, cookie and bearer share one interleaved phase: each gets this much, in slices.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Turn length of each path in the interleaved phase, e.g. 500ms or 1s; ratios are the
    /// median over rounds of one slice per path.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub(crate) slice: Duration,
    /// Stop the interleaved phase as soon as every overhead ratio is known to within this many
    /// percent (95% confidence interval of the median), e.g. 2.5; --duration is then the cap.
    #[arg(long, value_name = "PERCENT")]
    pub(crate) precision: Option<f64>,
    /// What to measure. Baseline, cookie and bearer run interleaved (one phase); then the
    /// login storm; then the mix.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "baseline,cookie,bearer,login-storm,mix"
    )]
    pub(crate) phases: Vec<PhaseArg>,
    /// Path requested behind SSO and on the baseline route.
    #[arg(long, default_value = "status/200")]
    pub(crate) path: String,
    /// Requests after which a phase stops early (a count bound on top of the time bound).
    #[arg(long, default_value_t = 2_000_000)]
    pub(crate) max_requests: u64,
    /// Report files to write (comma-separated): html (load.html, with charts), json (load.json).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "html,json")]
    pub(crate) report: Vec<LoadReportArg>,
    /// Where to write the reports (default: the run directory).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Fail (exit 1) if any non-login transaction's p99 latency exceeds this many ms.
    #[arg(long, value_name = "MS")]
    max_p99: Option<f64>,
    /// Fail (exit 1) if an auth path keeps less than this share of the baseline's throughput
    /// (ratio = auth req/s ÷ baseline req/s, e.g. 0.5).
    #[arg(long, value_name = "RATIO")]
    pub(crate) min_ratio: Option<f64>,
    /// Fail (exit 1) if any transaction's error rate (errors ÷ attempts) exceeds this fraction.
    #[arg(long, value_name = "FRACTION")]
    pub(crate) max_error_rate: Option<f64>,
    /// With --env local: the IdP users sign in at (the login storm's capacity per IdP).
    #[arg(long, value_enum, default_value = "keycloak")]
    pub(crate) idp: IdpArg,
    /// With --env local: the app on the gateway's plain-HTTP listener with ext_authz on every
    /// path, as seed 001 serves it (session cookies without `Secure`, or nobody could sign in).
    #[arg(long)]
    pub(crate) plain_http: bool,
    #[command(flatten)]
    pub(crate) stack: StackArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum IdpArg {
    /// Keycloak (the realm of the local stack).
    Keycloak,
    /// The second, independent OpenID Provider (oidc-provider, oidc-idp/).
    OidcProvider,
}

pub(crate) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
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
pub(crate) struct CatalogArgs {
    /// A directory of scenario files instead of the built-in catalog.
    #[arg(long, value_name = "DIR")]
    pub(crate) catalog: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum EnvKind {
    /// Real components as processes on loopback (needs no Docker).
    Local,
    /// A deployment described by --env-file.
    Existing,
    /// A kind cluster with Istio and the same apps (needs Docker, kind and istioctl).
    Kind,
    /// The local stack's components from their official images, with testcontainers on the
    /// host's network (needs a Docker engine, no Kubernetes).
    Containers,
}

#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// Where the stack runs: local (processes) or containers (the components' official
    /// images; needs a Docker engine). An existing deployment is already up, and a kind
    /// cluster is brought up by `meshauth run --env kind`.
    #[arg(long = "env", value_enum, default_value = "local")]
    pub(crate) env_kind: EnvKind,
    #[command(flatten)]
    pub(crate) stack: StackArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Theme {
    V2,
    Legacy,
}

#[derive(clap::Args)]
pub(crate) struct StackArgs {
    /// Configure the local stack as a reference write-up configures its deployment
    /// (seed000..seed003; `run` then runs the suites tagged with that write-up), or as the
    /// hardened reference.
    #[arg(long, value_name = "NAME", default_value = "reference",
          value_parser = ["reference", "seed000", "seed001", "seed002", "seed003"])]
    pub(crate) profile: String,
    /// oauth2-proxy redirects straight to the IdP instead of showing its sign-in page.
    #[arg(long)]
    pub(crate) skip_provider_button: bool,
    /// Keycloak's login theme.
    #[arg(long, value_enum, default_value = "v2")]
    pub(crate) login_theme: Theme,
    /// A directory of your own Istio YAML (AuthorizationPolicy, RequestAuthentication,
    /// PeerAuthentication, Gateway, VirtualService, DestinationRule, …) laid over the
    /// profile's: an object of the same kind, namespace and name replaces it, others are added.
    /// The local environment's gateway and sidecars are then configured by Istio from it;
    /// the kind environment applies the objects to its cluster.
    #[arg(long, value_name = "DIR")]
    pub(crate) istio: Option<PathBuf>,
    /// Where run directories (logs, rendered configs) go.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "meshauth-runs",
        env = "MESHAUTH_RUNS_DIR"
    )]
    pub(crate) runs_dir: PathBuf,
    /// How many run directories to keep: each new run removes the oldest beyond this number
    /// (never one a running `meshauth up` still uses); 0 keeps them all.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 20,
        env = "MESHAUTH_KEEP_RUNS"
    )]
    pub(crate) keep_runs: usize,
    #[command(flatten)]
    pub(crate) kind: KindArgs,
}

#[derive(clap::Args)]
pub(crate) struct KindArgs {
    /// With --env kind: the kind cluster's name.
    #[arg(long, value_name = "NAME", default_value = "meshauth")]
    pub(crate) kind_cluster: String,
    /// With --env kind: leave the cluster running afterwards.
    #[arg(long)]
    pub(crate) keep_cluster: bool,
    /// With --env kind: a mirror (host[/path]) every image is pulled through instead of its
    /// own registry (quay.io, docker.io); the repository path and tag are kept.
    #[arg(long, value_name = "REGISTRY", env = "MESHAUTH_IMAGE_REGISTRY")]
    pub(crate) image_registry: Option<String>,
    /// With --env kind: one image replaced by a complete reference, e.g.
    /// `--image keycloak=quay.io/keycloak/keycloak:26.8.0` (NAME: keycloak, oauth2-proxy,
    /// httpbin, redis, curl: the in-mesh callers' image, which needs curl, sh and sleep). Repeatable; applied after --image-registry.
    #[arg(long = "image", value_name = "NAME=REF")]
    pub(crate) images: Vec<String>,
    /// With --env kind: `pull` (the cluster pulls every image) or `local` (for clusters without
    /// registry access: every image already in the local engine — `meshauth images build`,
    /// Istio's images built here — is loaded into the node with `kind load`, never pulled; the
    /// node image brings its own CNI; CoreDNS answers only the cluster's names; Istio is told
    /// its proxy is upstream Envoy).
    #[arg(
        long = "images",
        value_enum,
        value_name = "SOURCE",
        default_value = "pull"
    )]
    pub(crate) image_source: crate::env::kind::ImageSource,
    /// With --env kind: the node image (`kind create cluster --image`). Default: kind's own
    /// pinned node image, or with `--images local` the one built here
    /// (`localhost/kind-node:v1.34.4-lab`).
    #[arg(long, value_name = "REF")]
    pub(crate) node_image: Option<String>,
    /// With --env kind: the loopback port kind maps to the gateway's plain-HTTP node port.
    #[arg(long, value_name = "PORT", default_value_t = 18080)]
    pub(crate) kind_http_port: u16,
    /// With --env kind: the loopback port kind maps to the gateway's HTTPS node port.
    #[arg(long, value_name = "PORT", default_value_t = 18443)]
    pub(crate) kind_https_port: u16,
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// Run only scenarios whose `suite::id` contains one of these.
    pub(crate) filter: Vec<String>,
    #[arg(long = "env", value_enum, default_value = "local")]
    pub(crate) env_kind: EnvKind,
    /// The YAML file describing an existing deployment (with --env existing).
    #[arg(long, value_name = "FILE")]
    pub(crate) env_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) catalog: CatalogArgs,
    #[command(flatten)]
    pub(crate) stack: StackArgs,
    /// Report files to write (comma-separated: html, junit, json).
    #[arg(long, value_delimiter = ',', default_value = "html,junit,json")]
    pub(crate) report: Vec<ReportFormat>,
    /// Where to write the reports (default: the run directory).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// How many scenarios run side by side: those of one stack profile that leave the stack as
    /// they found it (a scenario that stops, freezes or replaces a part always runs alone).
    /// 1 runs one at a time.
    #[arg(short = 'j', long, value_name = "N", default_value_t = crate::engine::DEFAULT_JOBS,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) jobs: u16,
    /// Run the selection once per set of component versions in FILE (YAML: `sets:` each with
    /// a `name` and any of `keycloak`, `oauth2_proxy`, `envoy`, `httpbin`), each installed side
    /// by side in the cache, and write versions.html: scenario × set, what changed first.
    /// Local environment only.
    #[arg(long, value_name = "FILE")]
    pub(crate) versions: Option<PathBuf>,
}

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List(args) => list(&args),
        Command::Install => {
            install()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(args) => up(&args).await,
        Command::Run(args) => match &args.versions {
            Some(file) => run_versions(&args, file, cli.verbose).await,
            None => run(&args, cli.verbose).await,
        },
        Command::Load(args) => load(&args).await,
        Command::Audit { files } => audit(&files),
        Command::Istio(IstioCommand::Dump(args)) => istio_dump(&args),
        Command::Images(ImagesCommand::Build { kind }) => images_build(kind),
        Command::ContainerShim { spec } => {
            let code = crate::components::container::run_shim(&spec)
                .await
                .map_err(anyhow::Error::msg)?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
    }
}

#[cfg(test)]
mod workflow_tests {
    //! Every `meshauth` invocation in the repository's GitHub workflows and actions parses with
    //! this CLI: a renamed or misspelt flag breaks the build, not a user's pipeline.

    use super::*;
    use std::path::Path;

    /// `(file, command line)` for each `cargo run … -- ARGS` or `meshauth ARGS` in a `run:`.
    fn invocations(file: &str, yaml: &str) -> Vec<(String, Vec<String>)> {
        let document: serde_json::Value =
            serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut runs = Vec::new();
        collect_runs(&document, &mut runs);
        runs.iter()
            .flat_map(|run| run.lines().map(str::trim))
            .filter_map(|line| {
                let args = line
                    .split_once(" -- ")
                    .filter(|(before, _)| before.starts_with("cargo run"))
                    .map(|(_, after)| after)
                    .or_else(|| line.strip_prefix("meshauth "))?;
                Some((file.to_string(), words(args)))
            })
            .collect()
    }

    fn collect_runs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("run", serde_json::Value::String(run)) => out.push(run.clone()),
                        _ => collect_runs(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_runs(v, out)),
            _ => {}
        }
    }

    /// Shell words: quotes removed, `${{ … }}` expressions as one placeholder value, and an
    /// unquoted `$VAR` (a word list that may be empty) left out.
    fn words(line: &str) -> Vec<String> {
        let line = without_expressions(line);
        let mut words = Vec::new();
        let mut current = String::new();
        let mut quote: Option<char> = None;
        let mut quoted = false;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => current.push(c),
                (None, '"' | '\'') => {
                    quote = Some(c);
                    quoted = true;
                }
                (None, c) if c.is_whitespace() => {
                    if !current.is_empty() && (quoted || !current.starts_with('$')) {
                        words.push(std::mem::take(&mut current));
                    }
                    current.clear();
                    quoted = false;
                }
                (None, c) => current.push(c),
            }
        }
        if !current.is_empty() && (quoted || !current.starts_with('$')) {
            words.push(current);
        }
        words
    }

    fn without_expressions(line: &str) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            match rest[start..].find("}}") {
                Some(end) => {
                    out.push_str("EXPR");
                    rest = &rest[start + end + 2..];
                }
                None => {
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn parse(args: &[String]) -> Result<(), String> {
        Cli::try_parse_from(std::iter::once("meshauth".to_string()).chain(args.iter().cloned()))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Where a command line was found (`file` or `file:line`), and its words.
    type Invocation = (String, Vec<String>);

    /// Parses every invocation `find` finds in `files`, panicking at the first that does not
    /// parse (with where it is); how many there were.
    fn parse_all(files: &[std::path::PathBuf], find: fn(&str, &str) -> Vec<Invocation>) -> usize {
        let mut found = 0;
        for path in files {
            let text = std::fs::read_to_string(path).unwrap();
            for (place, args) in find(&path.display().to_string(), &text) {
                found += 1;
                if let Err(error) = parse(&args) {
                    panic!(
                        "{place}: `meshauth {}` does not parse:\n{error}",
                        args.join(" ")
                    );
                }
            }
        }
        found
    }

    #[test]
    fn every_meshauth_invocation_in_the_workflows_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.github");
        let mut files = Vec::new();
        for dir in ["workflows", "actions/toolchain", "actions/kind-tools"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                    files.push(path);
                }
            }
        }
        let found = parse_all(&files, invocations);
        assert!(
            found >= 7,
            "only {found} meshauth invocations found in .github/"
        );
    }

    /// `(file:line, command line)` for each `meshauth ARGS` or `cargo run … -- ARGS` line of a
    /// shell code block in Markdown (a trailing `# comment` is not part of it).
    fn documented_invocations(file: &str, markdown: &str) -> Vec<(String, Vec<String>)> {
        let mut in_shell = false;
        let mut found = Vec::new();
        for (number, line) in markdown.lines().enumerate() {
            let trimmed = line.trim();
            if let Some(fence) = trimmed.strip_prefix("```") {
                in_shell = !in_shell && matches!(fence, "sh" | "bash" | "shell" | "console");
                continue;
            }
            if !in_shell {
                continue;
            }
            let command = trimmed.split(" #").next().unwrap_or_default().trim();
            let args = command
                .split_once(" -- ")
                .filter(|(before, _)| before.starts_with("cargo run"))
                .map(|(_, after)| after)
                .or_else(|| command.strip_prefix("meshauth "));
            if let Some(args) = args {
                found.push((format!("{file}:{}", number + 1), words(args)));
            }
        }
        found
    }

    #[test]
    fn every_meshauth_command_in_the_readme_and_docs_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = vec![root.join("README.md")];
        for entry in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "md") {
                files.push(entry.path());
            }
        }
        let found = parse_all(&files, documented_invocations);
        assert!(
            found >= 20,
            "only {found} meshauth commands found in README.md and docs/"
        );
    }

    #[test]
    fn a_misspelt_flag_in_the_docs_is_caught() {
        let markdown = "Run:\n\n```sh\nmeshauth run --profle seed000   # a typo\ncargo run -- list\n```\n\n```yaml\nmeshauth: not a command\n```\n";
        let found = documented_invocations("README.md", markdown);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "README.md:4");
        assert!(parse(&found[0].1).unwrap_err().contains("--profle"));
        assert!(parse(&found[1].1).is_ok());
    }

    #[test]
    fn a_misspelt_flag_in_a_workflow_is_caught() {
        let workflow = "jobs:\n  a:\n    steps:\n      - run: >-\n          cargo run --locked -- run --enf kind\n          --out reports\n";
        let found = invocations("broken.yml", workflow);
        assert_eq!(found.len(), 1);
        let error = parse(&found[0].1).unwrap_err();
        assert!(error.contains("--enf"), "{error}");
        let fine = "jobs:\n  a:\n    steps:\n      - run: |\n          cargo run --locked -- run --env existing --env-file \"$ENV_FILE\" $FILTER\n";
        let found = invocations("fine.yml", fine);
        assert_eq!(
            found[0].1,
            ["run", "--env", "existing", "--env-file", "$ENV_FILE"]
        );
        assert!(parse(&found[0].1).is_ok());
    }
}
