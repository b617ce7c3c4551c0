//! Redaction audit against the real stack: starts the local components, runs the whole built-in
//! catalog with the terminal reporter and every file reporter writing into the run directory,
//! then reads EVERY file under that directory (reports, component logs, rendered configs,
//! terminal output) and fails if any of the run's real secrets — client secret, user password,
//! cookie secret, admin password, every granted token and its signature — appears, or if a
//! report holds a complete JWT (three segments with a signature).

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use meshauth::components::{self, CacheDir, InstallEvent};
use meshauth::engine::Engine;
use meshauth::env::{LocalStack, StackConfig, StackEvent};
use meshauth::redact::Redactor;
use meshauth::report::terminal::TerminalReporter;
use meshauth::report::{ReportFormat, Reporters, file_reporters, json};
use meshauth::scenario::Catalog;
use regex::Regex;

static FULL_JWT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"eyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{8,}").unwrap()
});
/// An authorization code or `state` in a URL (a callback in a component's request log).
static URL_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"[?&](code|state)=([^&\s"'<>]+)"#).unwrap());

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every finding of a needle or a complete JWT in `files`, as "path holds what".
fn audit(files: &[PathBuf], needles: &[(String, &str)]) -> Vec<String> {
    let mut leaks = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for (needle, what) in needles {
            if text.contains(needle.as_str()) {
                leaks.push(format!("{} holds {what}", file.display()));
            }
        }
        if let Some(value) = URL_CODE
            .captures_iter(&text)
            .find(|c| !c[2].contains("redacted"))
        {
            leaks.push(format!(
                "{} holds an authorization code or state in a URL ({}=…)",
                file.display(),
                &value[1]
            ));
        }
        if let Some(jwt) = FULL_JWT.find(&text) {
            leaks.push(format!(
                "{} holds a complete JWT starting {}",
                file.display(),
                &jwt.as_str()[..20]
            ));
        }
    }
    leaks
}

#[test]
fn no_secret_reaches_any_file_of_a_real_run() {
    let run_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("redaction-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).unwrap();
    let redactor = Redactor::new();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (summary, secrets) = runtime.block_on(async {
        let cache = CacheDir::from_env().expect("component cache");
        let toolchain = components::ensure_installed(&cache, &|_: InstallEvent| {})
            .expect("components install (run `meshauth install` to see why not)");
        let mut stack = LocalStack::start(
            toolchain,
            &run_dir,
            StackConfig::default(),
            &redactor,
            &|_: StackEvent| {},
        )
        .await
        .unwrap_or_else(|e| panic!("the local stack did not start: {e}"));
        let catalog = Catalog::builtin();
        let selection = catalog.select(&[]);
        assert!(selection.len() >= 5, "the built-in catalog shrank");

        let mut reporters = Reporters::new();
        let terminal = std::fs::File::create(run_dir.join("terminal.txt")).unwrap();
        reporters.add(Box::new(TerminalReporter::new(terminal, true)));
        let (files, _) = file_reporters(&ReportFormat::ALL, &run_dir, &redactor).unwrap();
        for file in files {
            reporters.add(Box::new(file));
        }
        let engine = Engine::new(stack.endpoints().clone(), redactor.clone()).unwrap();
        let plan = meshauth::engine::plan(selection, stack.endpoints(), &stack);
        assert!(
            plan.left_out.is_empty(),
            "the local stack runs every scenario"
        );
        let summary = engine
            .run(
                "redaction-audit",
                stack.info(),
                &plan,
                &mut stack,
                &mut reporters,
            )
            .await;
        let errors = reporters.finish();
        assert!(errors.is_empty(), "report errors: {errors:?}");
        // Stop the components first so that their logs are complete.
        stack.stop();
        (summary, redactor.registered_secrets_for_audit())
    });

    // The run must have exercised the secrets: signed in and granted at least one token.
    assert!(summary.passed > 0, "no scenario passed: {summary:?}");
    let tokens: Vec<&str> = secrets
        .iter()
        .map(|s| s.expose())
        .filter(|s| s.starts_with("eyJ") && s.split('.').count() == 3)
        .collect();
    assert!(!tokens.is_empty(), "no granted token was registered");
    assert!(secrets.len() >= 5, "expected 4 stack secrets + tokens");
    // One needle per distinct string: attack tokens share their signature with the token they
    // were made from, and unsigned ones (`alg: none`, stripped) have none to look for.
    let mut needles: Vec<(String, &str)> = Vec::new();
    let mut push = |needle: &str, what| {
        if !needles.iter().any(|(n, _)| n == needle) {
            needles.push((needle.to_string(), what));
        }
    };
    for secret in &secrets {
        let value = secret.expose();
        push(value, "a registered secret");
        if let Some(signature) = value
            .rsplit('.')
            .next()
            .filter(|s| tokens.contains(&value) && s.len() >= 16)
        {
            push(signature, "a token signature");
        }
    }

    let mut files = Vec::new();
    files_under(&run_dir, &mut files);
    let reports: Vec<PathBuf> = ReportFormat::ALL
        .iter()
        .map(|f| run_dir.join(f.file_name()))
        .collect();
    for report in &reports {
        assert!(
            files.contains(report),
            "{} was not written",
            report.display()
        );
    }
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "log")),
        "no component log to audit in {}",
        run_dir.display()
    );

    // The audit must be able to fail: a planted copy of a real secret is found.
    let planted = run_dir.join("planted-leak.txt");
    std::fs::write(
        &planted,
        format!(
            "oops {} oops GET /oauth2/callback?code=0a1b2c3d-4e5f",
            tokens[0]
        ),
    )
    .unwrap();
    let found = audit(std::slice::from_ref(&planted), &needles);
    assert_eq!(
        found.len(),
        4,
        "token, its signature, a full JWT and a code: {found:?}"
    );
    std::fs::remove_file(&planted).unwrap();

    let leaks = audit(&files, &needles);
    assert!(
        leaks.is_empty(),
        "secrets leaked ({} files audited):\n{}",
        files.len(),
        leaks.join("\n")
    );

    // The real JSON report matches its published schema.
    let schema: serde_json::Value = serde_json::from_str(json::SCHEMA).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join(ReportFormat::Json.file_name())).unwrap(),
    )
    .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "report.json violates the schema: {errors:#?}"
    );
    assert_eq!(report["summary"]["total"], summary.total);
    eprintln!(
        "audited {} files in {} for {} secret strings: no leak",
        files.len(),
        run_dir.display(),
        needles.len()
    );
    std::fs::remove_dir_all(&run_dir).unwrap();
}
