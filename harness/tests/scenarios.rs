//! The built-in catalog against the real local stack: every scenario is its own named test
//! (`cargo test -p meshauth --test scenarios -- browser_login` runs one). One stack serves all.

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use meshauth::engine::Engine;
use meshauth::env::StackConfig;
use meshauth::env::existing::ExistingEnvironment;
use meshauth::events::Verdict;
use meshauth::redact::Redactor;
use meshauth::scenario::{Catalog, qualified_name};

const EXISTING_TRIAL: &str = "existing_environment::drives_the_catalog";

fn main() -> ExitCode {
    let args = Arguments::from_args();
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
    let selected = names
        .iter()
        .any(|(_, _, name)| common::selected_by(&args, name))
        || common::selected_by(&args, EXISTING_TRIAL);
    if args.list || !selected {
        let trials = names
            .into_iter()
            .map(|(_, _, name)| Trial::test(name, || Ok(())))
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
    let handle = runtime.handle().clone();
    let trials: Vec<Trial> = names
        .into_iter()
        .map(|(si, ci, name)| {
            let (catalog, engine, handle) = (Arc::clone(&catalog), engine.clone(), handle.clone());
            Trial::test(name, move || {
                let engine = engine
                    .map_err(|e| Failed::from(format!("the local stack did not start:\n{e}")))?;
                let suite = &catalog.suites[si];
                let scenario = &suite.scenarios[ci];
                let mut transcript = common::Transcript::new();
                let outcome =
                    handle.block_on(engine.run_scenario(suite, scenario, &mut transcript));
                match outcome.verdict {
                    Verdict::Pass => Ok(()),
                    Verdict::Fail => Err(transcript.text().into()),
                }
            })
        })
        .collect();
    let mut trials: Vec<Trial> = trials;
    trials.push(existing_environment_trial(
        &stack, &catalog, &redactor, &handle,
    ));
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop the stack before exiting: ExitCode lets destructors run, process::exit would not.
    drop(stack);
    conclusion.exit_code()
}

/// The `existing` environment, pointed at the running local stack through a written
/// environment file, must drive the same scenarios to the same verdicts.
fn existing_environment_trial(
    stack: &Result<meshauth::env::LocalStack, String>,
    catalog: &Arc<Catalog>,
    redactor: &Redactor,
    handle: &tokio::runtime::Handle,
) -> Trial {
    let prepared = stack.as_ref().map_err(Clone::clone).map(|stack| {
        let endpoints = stack.endpoints();
        let dir = stack.run_dir().join("existing");
        std::fs::create_dir_all(&dir).expect("existing-env directory");
        std::fs::write(dir.join("ca.pem"), endpoints.ca_pem.as_deref().unwrap_or_default()).expect("write CA");
        let file = format!(
            "app_url: {}\nidp_url: {}\nissuer: {}\nclient_id: {}\nclient_secret_env: CLIENT_SECRET\n\
             user:\n  username: {}\n  email: {}\n  password_env: USER_PASSWORD\nrole: {}\nroles_claim: {}\nca_file: ca.pem\n",
            endpoints.app,
            endpoints.idp,
            endpoints.issuer,
            endpoints.client_id,
            endpoints.user.username,
            endpoints.user.email,
            endpoints.role,
            endpoints.roles_claim
        );
        let secrets = [
            ("CLIENT_SECRET", endpoints.client_secret.expose().to_string()),
            ("USER_PASSWORD", endpoints.user.password.expose().to_string()),
        ];
        (dir, file, secrets)
    });
    let (catalog, redactor, handle) = (Arc::clone(catalog), redactor.clone(), handle.clone());
    Trial::test(EXISTING_TRIAL, move || {
        let (dir, file, secrets) =
            prepared.map_err(|e| Failed::from(format!("the local stack did not start:\n{e}")))?;
        let lookup = |name: &str| {
            secrets
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        let existing = ExistingEnvironment::parse("existing.yaml", &file, &dir, &lookup)
            .map_err(|e| e.to_string())?;
        let engine =
            Engine::new(existing.endpoints().clone(), redactor).map_err(|e| e.to_string())?;
        let selection = catalog.select(&[]);
        let mut transcript = common::Transcript::new();
        let summary =
            handle.block_on(engine.run("existing", existing.info(), &selection, &mut transcript));
        if summary.all_passed() && summary.total == selection.len() {
            Ok(())
        } else {
            Err(transcript.text().into())
        }
    })
}
