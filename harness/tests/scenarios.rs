//! The built-in catalog against the real local stack: every scenario is its own named test
//! (`cargo test -p meshauth --test scenarios -- browser_login` runs one). One stack serves all:
//! the selected scenarios run once, together, through the engine as `meshauth run` runs them
//! (grouped by profile, side by side where they may be), and each trial reports its own.

mod common;
mod redaction_audit;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Failed, Trial};
use meshauth::control::{Disruption, Part, StackControl};
use meshauth::engine::Engine;
use meshauth::env::existing::ExistingEnvironment;
use meshauth::env::ports::Component;
use meshauth::env::{DeploymentProfile, StackConfig};
use meshauth::events::{EventSink, RunEvent, Verdict};
use meshauth::redact::Redactor;
use meshauth::report::terminal::TerminalReporter;
use meshauth::report::{ReportFormat, Reporters, file_reporters};
use meshauth::scenario::{Catalog, Requirement, qualified_name};

const EXISTING_TRIAL: &str = "existing_environment::drives_the_catalog";
const EXISTING_MESH_TRIAL: &str =
    "existing_environment::judges_the_mesh_cells_of_its_declared_policy";
/// Last: it stops the stack to read its complete logs.
const REDACTION_TRIAL: &str = "redaction::no_secret_reaches_any_file_of_a_real_run";

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let catalog = Arc::new(Catalog::builtin());
    let names: Vec<(usize, usize, String)> = catalog
        .suites
        .iter()
        .enumerate()
        .flat_map(|(si, suite)| {
            suite
                .scenarios
                .iter()
                .enumerate()
                .map(move |(ci, scenario)| (si, ci, qualified_name(suite, scenario)))
        })
        .collect();
    let write_ups: Vec<String> = DeploymentProfile::ALL
        .into_iter()
        .filter(|profile| profile.seed().is_some())
        .map(write_up_trial_name)
        .collect();
    let selected = names
        .iter()
        .any(|(_, _, name)| common::selected_by(&args, name))
        || common::selected_by(&args, EXISTING_TRIAL)
        || common::selected_by(&args, EXISTING_MESH_TRIAL)
        || common::selected_by(&args, REDACTION_TRIAL)
        || write_ups
            .iter()
            .any(|name| common::selected_by(&args, name));
    if args.list || !selected {
        let trials = names
            .into_iter()
            .map(|(_, _, name)| name)
            .chain([EXISTING_TRIAL.to_string(), EXISTING_MESH_TRIAL.to_string()])
            .chain(write_ups)
            .chain([REDACTION_TRIAL.to_string()])
            .map(|name| Trial::test(name, || Ok(())))
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }

    let runtime = common::runtime();
    let redactor = Redactor::new();
    let stack = common::start_stack(&runtime, "scenarios", StackConfig::default(), &redactor);
    let engine = match &stack {
        Ok(stack) => Engine::new(stack.endpoints().clone(), redactor.clone())
            .map(Arc::new)
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.clone()),
    };
    let stack = Arc::new(Mutex::new(stack));
    let handle = runtime.handle().clone();
    // The selected catalog scenarios run once, together, as `meshauth run` runs them (grouped
    // by profile, side by side where they may be, every reporter writing into the run
    // directory): on the first of their trials. Each trial then reports its own scenario's
    // verdict and transcript. The redaction audit needs the whole catalog to have run.
    let audit_selected = common::selected_by(&args, REDACTION_TRIAL);
    let selected_names: Arc<Vec<String>> = Arc::new(
        names
            .iter()
            .map(|(_, _, name)| name.clone())
            .filter(|name| audit_selected || common::selected_by(&args, name))
            .collect(),
    );
    let recorded: Arc<Mutex<Option<Result<CatalogRun, String>>>> = Arc::new(Mutex::new(None));
    let trials: Vec<Trial> = names
        .into_iter()
        .map(|(_, _, name)| {
            let (catalog, engine, handle, stack, recorded, selected_names, redactor) = (
                Arc::clone(&catalog),
                engine.clone(),
                handle.clone(),
                Arc::clone(&stack),
                Arc::clone(&recorded),
                Arc::clone(&selected_names),
                redactor.clone(),
            );
            Trial::test(name.clone(), move || {
                let mut recorded = recorded.lock().unwrap_or_else(|p| p.into_inner());
                let run = recorded.get_or_insert_with(|| {
                    run_selected(
                        &catalog,
                        &selected_names,
                        &engine,
                        &stack,
                        &redactor,
                        &handle,
                    )
                });
                let run = run.as_ref().map_err(|e| Failed::from(e.clone()))?;
                match run.transcripts.outcome(&name) {
                    Some((Verdict::Pass, _)) => Ok(()),
                    Some((Verdict::Fail, transcript)) => Err(transcript.into()),
                    None => Err(format!("{name} did not run").into()),
                }
            })
        })
        .collect();
    let mut trials: Vec<Trial> = trials;
    trials.push(existing_environment_trial(
        &stack, &catalog, &redactor, &handle,
    ));
    trials.push(existing_mesh_cells_trial(
        &stack, &catalog, &redactor, &handle,
    ));
    trials.extend(
        DeploymentProfile::ALL
            .into_iter()
            .filter_map(|profile| write_up_trial(profile, &stack, &catalog, &redactor, &handle)),
    );
    trials.push(redaction_trial(&stack, &recorded, &redactor, &handle));
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop the stack before exiting: ExitCode lets destructors run, process::exit would not.
    drop(stack);
    conclusion.exit_code()
}

/// What the catalog's run gave: each scenario's verdict and transcript, and how many ran.
struct CatalogRun {
    transcripts: common::Transcripts,
    total: usize,
}

/// Runs the named catalog scenarios through the engine on the shared stack, the terminal
/// reporter (verbose) and every file reporter writing into the stack's run directory, then
/// brings the stack back to the reference for the trials after them.
fn run_selected(
    catalog: &Catalog,
    selected: &[String],
    engine: &Result<Arc<Engine>, String>,
    stack: &Mutex<Result<meshauth::env::LocalStack, String>>,
    redactor: &Redactor,
    handle: &tokio::runtime::Handle,
) -> Result<CatalogRun, String> {
    let engine = engine
        .as_ref()
        .map_err(|e| format!("the local stack did not start:\n{e}"))?;
    let mut guard = stack.lock().unwrap_or_else(|p| p.into_inner());
    let stack = guard
        .as_mut()
        .map_err(|e| format!("the local stack did not start:\n{e}"))?;
    let selection: Vec<_> = catalog
        .select(&[])
        .into_iter()
        .filter(|(suite, scenario)| selected.contains(&qualified_name(suite, scenario)))
        .collect();
    let plan = meshauth::engine::plan(selection, stack.endpoints(), &*stack);
    let mut transcripts = common::Transcripts::default();
    for left_out in &plan.left_out {
        transcripts.left_out.push((
            left_out.scenario.clone(),
            format!("left out on the local stack: {}", left_out.reason),
        ));
    }
    let mut reporters = Reporters::new();
    let terminal = std::fs::File::create(stack.run_dir().join("terminal.txt"))
        .map_err(|e| format!("creating terminal.txt in the run directory: {e}"))?;
    reporters.add(Box::new(TerminalReporter::new(terminal, true)));
    let (files, _) = file_reporters(&ReportFormat::ALL, stack.run_dir(), redactor)
        .map_err(|e| format!("the file reporters: {e}"))?;
    for file in files {
        reporters.add(Box::new(file));
    }
    let summary = handle.block_on(engine.run(
        "scenarios",
        stack.info(),
        &plan,
        &mut *stack,
        &mut |event: RunEvent| {
            transcripts.emit(event.clone());
            reporters.emit(event);
        },
    ));
    let errors = reporters.finish();
    if !errors.is_empty() {
        return Err(format!("the reporters failed: {errors:?}"));
    }
    handle
        .block_on(stack.apply(&Default::default()))
        .map_err(|e| format!("restoring the reference after the catalog failed: {e}"))?;
    Ok(CatalogRun {
        transcripts,
        total: summary.total,
    })
}

/// The redaction audit (`redaction_audit`): after the catalog, the existing environment and
/// the write-ups ran on the shared stack, a sign-in of the test's own, then the stack stopped
/// and every file of its run directory read.
fn redaction_trial(
    stack: &Arc<Mutex<Result<meshauth::env::LocalStack, String>>>,
    recorded: &Arc<Mutex<Option<Result<CatalogRun, String>>>>,
    redactor: &Redactor,
    handle: &tokio::runtime::Handle,
) -> Trial {
    let (stack, recorded, redactor, handle) = (
        Arc::clone(stack),
        Arc::clone(recorded),
        redactor.clone(),
        handle.clone(),
    );
    Trial::test(REDACTION_TRIAL, move || {
        let total = match &*recorded.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(run)) => run.total,
            Some(Err(error)) => return Err(format!("the catalog did not run: {error}").into()),
            None => return Err("the catalog did not run before the audit".into()),
        };
        if total == 0 {
            return Err("the catalog ran no scenario: nothing to audit".into());
        }
        let mut guard = stack.lock().unwrap_or_else(|p| p.into_inner());
        let stack = guard
            .as_mut()
            .map_err(|e| Failed::from(format!("the local stack did not start:\n{e}")))?;
        // The write-ups before it leave the stack configured as theirs.
        handle
            .block_on(stack.reconfigure(StackConfig::default()))
            .map_err(|e| Failed::from(format!("restoring the reference failed: {e}")))?;
        let signed_in = handle.block_on(redaction_audit::sign_in_secrets(stack.endpoints()));
        // Stopped first so that the components' logs are complete.
        stack.stop();
        let secrets = redactor.registered_secrets_for_audit();
        redaction_audit::audit_run(stack.run_dir(), total, &secrets, &signed_in);
        Ok(())
    })
}

/// Brings the shared stack to `profile` (only what changes restarts).
fn apply_profile(
    stack: &Mutex<Result<meshauth::env::LocalStack, String>>,
    handle: &tokio::runtime::Handle,
    profile: &meshauth::policy::StackProfile,
) -> Result<(), Failed> {
    let mut guard = stack.lock().unwrap_or_else(|p| p.into_inner());
    let stack = guard
        .as_mut()
        .map_err(|e| Failed::from(format!("the local stack did not start:\n{e}")))?;
    handle.block_on(stack.apply(profile)).map_err(Failed::from)
}

/// The `existing` environment, pointed at the running local stack through a written
/// environment file, must drive the same scenarios to the same verdicts: with the stack's
/// configuration files to audit, control commands that freeze and thaw its auth service
/// and IdP (procps `kill -s STOP`/`CONT` on their process groups), as a user's `kubectl`
/// commands would, and in-mesh callers given as commands (this machine's curl, connected to
/// sleep's sidecar for the in-mesh caller and straight to httpbin's for the one outside the
/// mesh), as a mesh outside Kubernetes would name them. Only the scenarios that present
/// workload certificates the harness mints, need another stack profile or a disruption no
/// command is given for are left out.
fn existing_environment_trial(
    stack: &Arc<Mutex<Result<meshauth::env::LocalStack, String>>>,
    catalog: &Arc<Catalog>,
    redactor: &Redactor,
    handle: &tokio::runtime::Handle,
) -> Trial {
    let shared = Arc::clone(stack);
    let (catalog, redactor, handle) = (Arc::clone(catalog), redactor.clone(), handle.clone());
    Trial::test(EXISTING_TRIAL, move || {
        let (existing, engine) = existing_over_stack(
            &shared,
            &handle,
            &Default::default(),
            &meshauth::policy::SidecarPolicy::reference(),
            &redactor,
        )?;
        let mut control = existing.control();
        // A user's deployment is what it is: the planner leaves out what needs a stack
        // profile, the mesh or a disruption no command is given for, and says so.
        let plan = meshauth::engine::plan(catalog.select(&[]), existing.endpoints(), &control);
        let controlled = |part: Part, disruption: Disruption| {
            matches!(part, Part::AuthService | Part::Idp) && disruption == Disruption::Pause
        };
        let (mut expected_run, mut expected_left_out) = (Vec::new(), 0);
        for (suite, scenario) in catalog.select(&[]) {
            let requirements = scenario.requirements(suite);
            let uses_mesh = requirements.contains(&Requirement::Mesh);
            let left_out = requirements.iter().any(|need| match need {
                Requirement::StackProfile => {
                    !control.accepts_profile(&scenario.profile(suite), uses_mesh)
                }
                Requirement::MeshCertificates => true,
                Requirement::Disrupt(part, disruption) => !controlled(*part, *disruption),
                _ => false,
            });
            if left_out {
                expected_left_out += 1;
            } else {
                expected_run.push(qualified_name(suite, scenario));
            }
        }
        if plan.left_out.len() != expected_left_out {
            return Err(format!(
                "the existing environment left out {} scenarios, expected {expected_left_out}: {:?}",
                plan.left_out.len(),
                plan.left_out
            )
            .into());
        }
        // The commands, the files and the callers are used, not only accepted.
        for needed in [
            "attack_fail_closed::auth_service_hung",
            "attack_fail_closed::idp_hung",
            "attack_configuration::deployment_configuration",
            "attack_around_the_gateway::mesh_workload_cannot_skip_the_gateway",
            "attack_around_the_gateway::plaintext_caller_cannot_skip_the_gateway",
        ] {
            if !expected_run.iter().any(|name| name == needed) {
                return Err(format!("{needed} is not run against the existing environment").into());
            }
        }
        let mut transcript = common::Transcript::new();
        let summary = handle.block_on(engine.run(
            "existing",
            existing.info(),
            &plan,
            &mut control,
            &mut transcript,
        ));
        if summary.all_passed() && summary.total == plan.run.len() {
            Ok(())
        } else {
            Err(transcript.text().into())
        }
    })
}

/// The command callers' evidence both ways: with the stack under seed 003's STRICT +
/// RequestAuthentication + `requestPrincipals: ["*"]` and the file declaring it, the five cells
/// of that policy run through the callers, and the mesh workload with a valid JWT gets the app's
/// 200 (so its curl did go through sleep's sidecar with the mesh's mTLS: a plaintext request
/// would have been reset) while the same caller without a JWT gets RBAC's 403 and the caller
/// outside the mesh is rejected at the handshake.
fn existing_mesh_cells_trial(
    stack: &Arc<Mutex<Result<meshauth::env::LocalStack, String>>>,
    catalog: &Arc<Catalog>,
    redactor: &Redactor,
    handle: &tokio::runtime::Handle,
) -> Trial {
    const CELLS: &str = "seed003_mesh_matrix::strict_ra_rp__";
    let shared = Arc::clone(stack);
    let (catalog, redactor, handle) = (Arc::clone(catalog), redactor.clone(), handle.clone());
    Trial::test(EXISTING_MESH_TRIAL, move || {
        let cells = catalog.select(&[CELLS.to_string()]);
        let (suite, scenario) = cells
            .first()
            .ok_or("no strict_ra_rp cells in the catalog")?;
        let profile = scenario.profile(suite);
        let policy = profile
            .sidecar
            .clone()
            .ok_or("the cell has no sidecar profile")?;
        let (existing, engine) =
            existing_over_stack(&shared, &handle, &profile, &policy, &redactor)?;
        let mut control = existing.control();
        let plan = meshauth::engine::plan(cells.clone(), existing.endpoints(), &control);
        if plan.run.len() != 5 || !plan.left_out.is_empty() {
            return Err(format!(
                "expected the five {CELLS}* cells to run, ran {} and left out {:?}",
                plan.run.len(),
                plan.left_out
            )
            .into());
        }
        let mut transcript = common::Transcript::new();
        let summary = handle.block_on(engine.run(
            "existing",
            existing.info(),
            &plan,
            &mut control,
            &mut transcript,
        ));
        if summary.all_passed() && summary.total == 5 {
            Ok(())
        } else {
            Err(transcript.text().into())
        }
    })
}

/// The running stack under `profile`, described by the environment file a user would write
/// for it (declaring `policy` as its mesh policy), read back as `--env existing` reads it, and
/// an engine for it.
fn existing_over_stack(
    stack: &Arc<Mutex<Result<meshauth::env::LocalStack, String>>>,
    handle: &tokio::runtime::Handle,
    profile: &meshauth::policy::StackProfile,
    policy: &meshauth::policy::SidecarPolicy,
    redactor: &Redactor,
) -> Result<(ExistingEnvironment, Engine), Failed> {
    apply_profile(stack, handle, profile)?;
    let (dir, file, secrets) = {
        let guard = stack.lock().unwrap_or_else(|p| p.into_inner());
        let stack = guard
            .as_ref()
            .map_err(|e| Failed::from(format!("the local stack did not start:\n{e}")))?;
        environment_file(stack, policy)?
    };
    let lookup = |name: &str| {
        secrets
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    let existing = ExistingEnvironment::parse("existing.yaml", &file, &dir, &lookup)
        .map_err(|e| e.to_string())?;
    let engine =
        Engine::new(existing.endpoints().clone(), redactor.clone()).map_err(|e| e.to_string())?;
    Ok((existing, engine))
}

type Secrets = Vec<(&'static str, String)>;

/// The environment file a user would write for the running stack, beside its CA, test key
/// and configuration files, and the secrets it names.
fn environment_file(
    stack: &meshauth::env::LocalStack,
    policy: &meshauth::policy::SidecarPolicy,
) -> Result<(std::path::PathBuf, String, Secrets), Failed> {
    let endpoints = stack.endpoints();
    // Beside the stack's run directory, not in it: these are the user's own inputs (secrets
    // and all), which the redaction audit of the run directory would rightly find.
    let dir = common::run_dir("existing-environment");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("ca.pem"),
        endpoints.ca_pem.as_deref().unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    let second = endpoints
        .second_user
        .as_ref()
        .ok_or("the local stack has no second user")?;
    let other = endpoints
        .other_client
        .as_ref()
        .ok_or("the local stack has no other client")?;
    let key = endpoints
        .signing_key
        .as_ref()
        .ok_or("the local stack has no test key")?;
    write_private(&dir.join("test-key.pem"), key.private_key_pem.expose());
    let mut config_files = Vec::new();
    for config in stack.config_files().map_err(Failed::from)? {
        let name = config.name.replace(" + ", "+").replace('/', "_");
        write_private(&dir.join(&name), &config.text);
        config_files.push(name);
    }
    let group = |component: Component| {
        stack
            .pid(component)
            .ok_or_else(|| Failed::from(format!("{component:?} is not running")))
    };
    let (auth_service, idp) = (group(Component::OAuth2Proxy)?, group(Component::Keycloak)?);
    // The in-mesh callers as commands: this machine's curl, connected to sleep's sidecar
    // (which originates the mesh's mTLS as Istio configured it) or, outside the mesh, straight
    // to httpbin's, for the service's in-mesh name.
    let mesh = endpoints
        .mesh
        .as_ref()
        .ok_or("the local stack has no mesh")?;
    let through_sleep = mesh
        .workload_proxy
        .ok_or("the local stack has no sidecar for sleep")?;
    let port = mesh.sidecar.port().ok_or("httpbin's sidecar has no port")?;
    let service = format!("{}:{port}", mesh.service_host);
    let httpbin_sidecar = format!(
        "{}:{port}",
        mesh.sidecar
            .host_str()
            .ok_or("httpbin's sidecar has no host")?
    );
    let policy = serde_json::to_string(policy).map_err(|e| e.to_string())?;
    let file = format!(
        "app_url: {}\nidp_url: {}\nissuer: {}\nclient_id: {}\nclient_secret_env: CLIENT_SECRET\n\
         user:\n  username: {}\n  email: {}\n  password_env: USER_PASSWORD\nrole: {}\nroles_claim: {}\nca_file: ca.pem\n\
         second_user:\n  username: {}\n  email: {}\n  password_env: SECOND_PASSWORD\n\
         other_client:\n  client_id: {}\n  client_secret_env: OTHER_SECRET\n\
         test_signing_key_file: test-key.pem\nsession_refresh_seconds: {}\n\
         config_files: {:?}\n\
         control:\n\
         \x20 auth_service:\n    pause: \"/bin/kill -s STOP -- -{auth_service}\"\n    resume: \"/bin/kill -s CONT -- -{auth_service}\"\n\
         \x20 idp:\n    pause: \"/bin/kill -s STOP -- -{idp}\"\n    resume: \"/bin/kill -s CONT -- -{idp}\"\n\
         mesh:\n  service_url: http://{service}\n\
         \x20 caller: {{ command: [curl, --connect-to, \"{service}:{through_sleep}\"] }}\n\
         \x20 outside_caller: {{ command: [curl, --connect-to, \"{service}:{httpbin_sidecar}\"] }}\n\
         \x20 policy: {policy}\n",
        endpoints.app,
        endpoints.idp,
        endpoints.issuer,
        endpoints.client_id,
        endpoints.user.username,
        endpoints.user.email,
        endpoints.role,
        endpoints.roles_claim,
        second.username,
        second.email,
        other.id,
        endpoints
            .session_refresh
            .ok_or("the local stack does not refresh sessions")?
            .as_secs(),
        config_files,
    );
    let secrets = vec![
        (
            "CLIENT_SECRET",
            endpoints.client_secret.expose().to_string(),
        ),
        (
            "USER_PASSWORD",
            endpoints.user.password.expose().to_string(),
        ),
        ("SECOND_PASSWORD", second.password.expose().to_string()),
        ("OTHER_SECRET", other.secret.expose().to_string()),
    ];
    Ok((dir, file, secrets))
}

fn write_private(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("write the test key");
    file.write_all(text.as_bytes()).expect("write the test key");
}

fn write_up_trial_name(profile: DeploymentProfile) -> String {
    format!("write_ups::{}_verdicts", profile.name())
}

/// The local stack configured as a write-up configures its deployment, and the suites tagged
/// with it run as `meshauth run --profile seedNNN` runs them: which scenarios go red is
/// snapshotted (`snapshots/scenarios__write_up_<profile>.snap`), and the README's table must
/// quote the same count, so the findings the README reports are the ones this test sees.
fn write_up_trial(
    profile: DeploymentProfile,
    stack: &Arc<Mutex<Result<meshauth::env::LocalStack, String>>>,
    catalog: &Arc<Catalog>,
    redactor: &Redactor,
    handle: &tokio::runtime::Handle,
) -> Option<Trial> {
    let seed = profile.seed()?;
    let shared = Arc::clone(stack);
    let (catalog, redactor, handle) = (Arc::clone(catalog), redactor.clone(), handle.clone());
    Some(Trial::test(write_up_trial_name(profile), move || {
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        let stack = guard
            .as_mut()
            .map_err(|e| Failed::from(format!("the local stack did not start:\n{e}")))?;
        handle
            .block_on(stack.reconfigure(profile.apply(StackConfig::default())))
            .map_err(|e| Failed::from(e.to_string()))?;
        let mut selection = catalog.select(&[]);
        selection.retain(|(suite, _)| suite.seeds.iter().any(|s| s == seed));
        let engine =
            Engine::new(stack.endpoints().clone(), redactor.clone()).map_err(|e| e.to_string())?;
        let plan = meshauth::engine::plan(selection, stack.endpoints(), &*stack);
        let mut verdicts = Verdicts::default();
        let summary = handle.block_on(engine.run(
            profile.name(),
            Default::default(),
            &plan,
            &mut *stack,
            &mut verdicts,
        ));
        // Left as the write-up configures it: the next write-up reconfigures anyway (a realm
        // change costs seconds each way), and the trial after them restores the reference.
        // In plan order, whatever order they finished in (scenarios run side by side).
        let position = |name: &str| {
            plan.run
                .iter()
                .position(|(suite, scenario)| qualified_name(suite, scenario) == name)
        };
        verdicts
            .finished
            .sort_by_cached_key(|(name, _, _)| position(name));
        let red: Vec<&str> = verdicts
            .finished
            .iter()
            .filter(|(_, verdict, _)| *verdict == Verdict::Fail)
            .map(|(name, _, _)| name.as_str())
            .collect();
        let listing = verdicts
            .finished
            .iter()
            .filter(|(_, verdict, _)| *verdict == Verdict::Fail)
            .map(|(name, _, failures)| format!("{name}\n    {}", failures.join("\n    ")))
            .collect::<Vec<_>>()
            .join("\n");
        let count = format!("{} of {}", red.len(), summary.total);
        insta::with_settings!({
            snapshot_suffix => profile.name(),
            description => format!("scenarios red on `meshauth run --profile {}`", profile.name()),
            omit_expression => true,
        }, {
            let left_out: Vec<String> = plan
                .left_out
                .iter()
                .map(|l| format!("left out: {} ({})", l.scenario, l.reason))
                .collect();
            insta::assert_snapshot!(
                "write_up",
                format!("{count}\n{}\n{}", red.join("\n"), left_out.join("\n"))
            );
        });
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .map_err(|e| e.to_string())?;
        let quoted = format!("| `{}` | {count} |", profile.name());
        if !readme.lines().any(|line| line.contains(&quoted)) {
            return Err(format!(
                "README's write-up table does not quote this run: expected a row with {quoted:?}\n\
                 red here:\n{listing}"
            )
            .into());
        }
        Ok(())
    }))
}

/// Each finished scenario's name, verdict and failure lines.
#[derive(Default)]
struct Verdicts {
    finished: Vec<(String, Verdict, Vec<String>)>,
}

impl EventSink for Verdicts {
    fn emit(&mut self, event: RunEvent) {
        if let RunEvent::ScenarioFinished {
            suite,
            scenario,
            verdict,
            failures,
            ..
        } = event
        {
            self.finished
                .push((format!("{suite}::{scenario}"), verdict, failures));
        }
    }
}
