//! The `meshauth` binary as a user meets it: help, listing, clear errors with exit code 2 for
//! bad input, and no processes left behind after Ctrl-C.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn meshauth() -> Command {
    common::meshauth("cli-runs")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = meshauth().args(args).output().expect("meshauth runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_and_list() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains(
        "Exit codes: 0 every scenario passed (load: every threshold held), 1 a scenario failed"
    ));
    let (code, stdout, _) = run(&["list"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("catalog_list", stdout);
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_2() {
    let dir = tempdir("bad-catalog");
    std::fs::write(
        dir.join("broken.yaml"),
        "suite: broken\ndescription: x\nscenarios:\n  - id: one\n    title: t\n    steps:\n      - op: opn\n        url: x\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["list", "--catalog", dir.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("broken.yaml: line 7 column 9: unknown variant `opn`"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["run", "no-such-scenario"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            "no scenario matches [\"no-such-scenario\"]; `meshauth list` shows the catalog"
        ),
        "{stderr}"
    );

    let (code, _, stderr) = run(&[
        "run",
        "--env",
        "existing",
        "--env-file",
        "deployment.yaml",
        "seed003_mesh_matrix",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("read the environment file deployment.yaml: No such file"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["run", "--env", "existing"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--env existing needs --env-file FILE"),
        "{stderr}"
    );

    let env_file = dir.join("deployment.yaml");
    std::fs::write(
        &env_file,
        "app_url: https://127.0.0.1:1/\nidp_url: http://127.0.0.1:2/\nissuer: http://127.0.0.1:2/realms/r\n\
         client_id: c\nclient_secret_env: MESHAUTH_TEST_UNSET_SECRET\nuser:\n  username: u\n  email: u@example.test\n  \
         password_env: MESHAUTH_TEST_UNSET_PASSWORD\nrole: r\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&[
        "run",
        "--env",
        "existing",
        "--env-file",
        env_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("$MESHAUTH_TEST_UNSET_SECRET, which is not set")
            && stderr.contains("export MESHAUTH_TEST_UNSET_SECRET="),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["run", "--login-theme", "purple"]);
    assert_eq!(code, 2, "{stderr}");

    // No Docker engine (none on this machine; an unreachable DOCKER_HOST anywhere): the
    // containers environment says what is missing, before installing anything.
    for command in ["run", "load", "up"] {
        let output = meshauth()
            .args([command, "--env", "containers"])
            .env("DOCKER_HOST", "tcp://127.0.0.1:1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--env containers runs the components from their images and needs a Docker engine: no Docker engine answers at tcp://127.0.0.1:1")
                && stderr.contains("or run with --env local, which needs no Docker"),
            "{stderr}"
        );
    }
    let (code, _, stderr) = run(&["up", "--env", "kind"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("meshauth up starts the stack on this machine")
            && stderr.contains("`meshauth run --env kind` creates the kind cluster"),
        "{stderr}"
    );
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn ctrl_c_on_up_leaves_no_processes_behind() {
    let runs = tempdir("up");
    let mut child = meshauth()
        .args(["up", "--runs-dir", runs.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut printed = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("press Ctrl-C to stop") {
            break;
        }
    }
    assert!(
        printed.contains("press Ctrl-C to stop"),
        "meshauth up did not come up:\n{printed}"
    );
    let credentials = printed
        .lines()
        .find_map(|l| l.split("(password in ").nth(1))
        .map(|rest| rest.trim_end_matches(')').to_string())
        .expect("up names the credentials file");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&credentials).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "{credentials} is readable by others");
    let components = common::descendants(child.id());
    assert!(
        components.len() >= 4,
        "expected the stack's processes, found {components:?}"
    );

    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "meshauth up did not exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        matches!(status.code(), Some(0 | 130)),
        "exit status {status:?}"
    );
    let survivors: Vec<u32> = components.into_iter().filter(|&pid| alive(pid)).collect();
    assert!(
        survivors.is_empty(),
        "processes left behind after Ctrl-C: {survivors:?}"
    );
}

#[test]
fn version_matrix_runs_each_set_on_its_own_components() {
    let dir = tempdir("version-matrix");
    let file = dir.join("versions.yaml");
    std::fs::write(
        &file,
        "sets:\n  - name: pinned\n  - name: oauth2-proxy-v7.8.1\n    oauth2_proxy: v7.8.1\n",
    )
    .unwrap();
    let out = dir.join("out");
    let (code, stdout, stderr) = run(&[
        "run",
        "--versions",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "seed000_browser_sso::browser_login",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let matrix: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("versions.json")).unwrap()).unwrap();
    let sets = matrix["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[1]["set"]["oauth2_proxy"], "v7.8.1");
    assert_eq!(matrix["differing"][0][0], "oauth2-proxy");
    assert_eq!(
        matrix["rows"][0]["verdicts"],
        serde_json::json!(["pass", "pass"])
    );
    // Each set ran on its own oauth2-proxy: the per-set reports name the version they used.
    for (set, version) in [("pinned", "v7.15.6"), ("oauth2-proxy-v7.8.1", "v7.8.1")] {
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(set).join("report.json")).unwrap(),
        )
        .unwrap();
        let components = report["environment"]["components"].as_array().unwrap();
        assert!(
            components
                .iter()
                .any(|c| c["component"] == "oauth2-proxy" && c["version"] == version),
            "{set}: {components:?}"
        );
    }
    assert!(
        std::fs::read_to_string(out.join("versions.html"))
            .unwrap()
            .contains("oauth2-proxy-v7.8.1")
    );

    let (code, _, stderr) = run(&[
        "run",
        "--versions",
        file.to_str().unwrap(),
        "--env",
        "existing",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--env local"), "{stderr}");
}
