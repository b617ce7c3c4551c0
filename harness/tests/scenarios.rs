//! The built-in catalog against the real local stack: every scenario is its own named test
//! (`cargo test -p meshauth --test scenarios -- browser_login` runs one). One stack serves all.

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use meshauth::engine::Engine;
use meshauth::env::StackConfig;
use meshauth::events::Verdict;
use meshauth::redact::Redactor;
use meshauth::scenario::{Catalog, qualified_name};

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
    let selected = names.iter().any(|(_, _, name)| selected_by(&args, name));
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
    let trials = names
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
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop the stack before exiting: ExitCode lets destructors run, process::exit would not.
    drop(stack);
    conclusion.exit_code()
}

fn selected_by(args: &Arguments, name: &str) -> bool {
    let matches = |filter: &str| {
        if args.exact {
            name == filter
        } else {
            name.contains(filter)
        }
    };
    args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}
