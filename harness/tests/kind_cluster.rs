//! The kind environment for real, with no registry: `meshauth images build --kind` builds kind,
//! istioctl, Istio's images and a node image of Kubernetes from its Go modules here, then
//! `meshauth run --env kind --images local --keep-cluster` creates the cluster (kind's podman
//! provider when the engine is podman), installs Istio with real sidecar injection, runs every
//! scenario a cluster can run (in-mesh callers by exec, each mesh policy applied in place);
//! then the kept cluster is judged again as a user's own deployment (`--env existing` with the
//! environment file the run wrote: control commands, config files, in-mesh callers), then
//! broken on purpose with the local fault table's Istio YAML, one mistake at a time applied in
//! place, each guarding scenario going red with the local row's text, and deleted.
//!
//! It runs when `MESHAUTH_TEST_KIND=1` is set: cold, it costs about 20 minutes of Go builds and
//! image builds on 2 cores before the cluster's 5 minutes, more than `.ci/run`'s budget on a
//! machine that starts with empty caches (README, "What runs where"). Asked for without a
//! container engine, root or mmdebstrap, it fails and says which; not asked for, it says loudly
//! that it skipped.

mod common;

use std::process::Command;

const CLUSTER: &str = "meshauth-test";

fn meshauth() -> Command {
    common::meshauth("kind-runs")
}

/// Why the cluster cannot be made here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    if let Err(missing) = runtime.block_on(meshauth::components::container::engine_available()) {
        return Some(format!("no container engine ({missing})"));
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("not root (mmdebstrap makes the node's root file system as root)".into());
    }
    let mmdebstrap = Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!mmdebstrap).then(|| "mmdebstrap is not installed".into())
}

/// `(passed, failed, total)` from the run's last line.
fn counts(stdout: &str) -> Option<(usize, usize, usize)> {
    let line = stdout.lines().rev().find(|l| l.contains(" passed, "))?;
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    Some((numbers[0], numbers[1], numbers[2]))
}

#[test]
fn the_catalog_passes_on_a_kind_cluster_built_here() {
    if std::env::var_os("MESHAUTH_TEST_KIND").is_none_or(|v| v != "1") {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the kind environment was NOT run (MESHAUTH_TEST_KIND=1 cargo test --test kind_cluster runs it)"
        );
        return;
    }
    if let Some(missing) = missing_prerequisite() {
        panic!(
            "{missing}: the kind environment cannot run here; it needs podman (or Docker) with \
             its API (.ci/podman-setup.sh sets podman up), root, and mmdebstrap"
        );
    }

    let build = meshauth()
        .args(["images", "build", "--kind"])
        .output()
        .expect("meshauth runs");
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(
        build.status.success(),
        "meshauth images build --kind failed:\n{stderr}"
    );

    // Kept, so that the same cluster is judged again as a user's own deployment; the guard
    // deletes it whatever happens below.
    let run = meshauth()
        .args([
            "run",
            "--env",
            "kind",
            "--images",
            "local",
            "--kind-cluster",
            CLUSTER,
            "--keep-cluster",
        ])
        .output()
        .expect("meshauth runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let kept = KeptCluster::from_stderr(&stderr);
    let shown = format!(
        "meshauth run --env kind --images local: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        run.status
    );
    let (passed, failed, total) = counts(&stdout).unwrap_or_else(|| panic!("{shown}"));
    assert!(
        run.status.success() && failed == 0 && passed == total,
        "{shown}"
    );
    // Every scenario kind can run: the in-mesh callers' by exec, each mesh policy of the
    // matrix applied in place (122 of 155 on 2026-12-07); a run that left most out proves
    // little.
    assert!(total >= 120, "only {total} scenarios ran on kind\n{shown}");
    for needed in [
        "against the kind environment",
        "PASS attack_around_the_gateway::mesh_workload_cannot_skip_the_gateway",
        "PASS attack_around_the_gateway::plaintext_caller_cannot_skip_the_gateway",
        "PASS seed003_mesh_matrix::disable_ra__sleep_without_jwt",
        "PASS seed003_mesh_matrix::strict_peer_principal__sleep_with_forged_jwt",
        "PASS attack_mesh_transport::plaintext_is_rejected",
        "PASS attack_configuration::deployment_configuration",
    ] {
        assert!(
            stdout.contains(needed),
            "no {needed:?} in the run:\n{shown}"
        );
    }

    // The kept cluster as `--env existing` sees a deployment: the environment file the run
    // wrote, its secrets from the environment, in-mesh callers by exec through the kubelet,
    // control commands that scale and freeze the apps, configuration files to audit.
    let kept = kept
        .unwrap_or_else(|| panic!("the run did not say where its environment file is:\n{shown}"));
    let existing = kept.judge(&[]);
    let stdout = String::from_utf8_lossy(&existing.stdout);
    let stderr = String::from_utf8_lossy(&existing.stderr);
    let shown = format!(
        "meshauth run --env existing (the kept kind cluster): {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        existing.status
    );
    let (passed, failed, total) = counts(&stdout).unwrap_or_else(|| panic!("{shown}"));
    assert!(
        existing.status.success() && failed == 0 && passed == total,
        "{shown}"
    );
    assert!(
        total >= 90,
        "only {total} scenarios ran against the kept cluster\n{shown}"
    );
    for needed in [
        "PASS attack_around_the_gateway::mesh_workload_cannot_skip_the_gateway",
        "PASS attack_around_the_gateway::plaintext_caller_cannot_skip_the_gateway",
        "PASS attack_fail_closed::auth_service_stopped",
        "PASS attack_fail_closed::auth_service_hung",
        "PASS attack_fail_closed::idp_hung",
        "PASS attack_fail_closed::session_store_stopped",
        "PASS attack_configuration::deployment_configuration",
    ] {
        assert!(
            stdout.contains(needed),
            "no {needed:?} in the run:\n{shown}"
        );
    }
    // The same cluster broken on purpose, one realistic mistake at a time in the Istio YAML a
    // user writes (the local fault table's overlays, tests/data/istio-faults/), applied in
    // place: each guarding scenario, green on the reference just above, must go red with the
    // local row's text.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut missed = Vec::new();
    for fault in KIND_FAULTS {
        for (scenario, _) in fault.red {
            assert!(
                stdout.contains(&format!("PASS {scenario} ")),
                "{scenario} did not pass on the kept cluster before {} was laid over it:\n{shown}",
                fault.overlay
            );
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/istio-faults")
            .join(fault.overlay);
        let laid = runtime
            .block_on(meshauth::env::kind::lay_over_cluster(
                &kept.kubeconfig,
                &dir,
            ))
            .unwrap_or_else(|e| panic!("could not lay {} over the cluster: {e}", fault.overlay));
        let mut scenarios: Vec<&str> = fault.red.iter().map(|(scenario, _)| *scenario).collect();
        scenarios.dedup();
        let broken = kept.judge(&scenarios);
        runtime
            .block_on(laid.take_back())
            .unwrap_or_else(|e| panic!("could not take {} back: {e}", fault.overlay));
        let said = String::from_utf8_lossy(&broken.stdout);
        for (scenario, says) in fault.red {
            if broken.status.code() != Some(1)
                || !said.contains(&format!("FAIL {scenario} "))
                || !said.contains(says)
            {
                missed.push(format!(
                    "{}: expected {scenario} red with {says:?}, got {}:\n{said}\n{}",
                    fault.overlay,
                    broken.status,
                    String::from_utf8_lossy(&broken.stderr)
                ));
            }
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n\n"));
    // Taken back: every row's scenarios green again on the cluster's own objects.
    let mut guarding: Vec<&str> = KIND_FAULTS
        .iter()
        .flat_map(|fault| fault.red.iter().map(|(scenario, _)| *scenario))
        .collect();
    guarding.sort_unstable();
    guarding.dedup();
    let restored = kept.judge(&guarding);
    let said = String::from_utf8_lossy(&restored.stdout);
    assert!(
        restored.status.success() && counts(&said) == Some((guarding.len(), 0, guarding.len())),
        "the cluster did not pass again once every overlay was taken back:\n{said}\n{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    drop(kept);

    // The node is a container of the engine kind used: its CLI must answer, or nothing is
    // shown about what was left.
    let engine = meshauth::components::images::ImageEngine::find().expect("the engine's CLI");
    let listed = Command::new(&engine.program)
        .args(["ps", "--all", "--format", "{{.Names}}"])
        .output()
        .expect("the engine's CLI runs");
    assert!(listed.status.success(), "{listed:?}");
    let clusters = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !clusters.lines().any(|name| name.starts_with(CLUSTER)),
        "the cluster's node was left after the run: {clusters}"
    );
}

/// A realistic mistake in the cluster's Istio objects (a directory of
/// tests/data/istio-faults/, the YAML the local fault table lays over the local environment)
/// and what the run against the broken cluster must say: the local rows' texts, where the
/// address in them is not the local environment's.
struct KindFault {
    overlay: &'static str,
    red: &'static [(&'static str, &'static str)],
}

const KIND_FAULTS: &[KindFault] = &[
    KindFault {
        overlay: "authorizationpolicy-exempts-health",
        red: &[(
            "attack_unauthenticated_reach::static_and_health_looking_paths",
            "[high finding] GET /health: expected not answered by the app without a session",
        )],
    },
    KindFault {
        overlay: "authorizationpolicy-checks-only-get",
        red: &[
            (
                "attack_unauthenticated_reach::method_variants",
                "[critical finding] POST /anything: expected not answered by the app",
            ),
            (
                "attack_unauthenticated_reach::method_variants",
                "[critical finding] HEAD /anything: expected not answered by the app",
            ),
        ],
    },
    KindFault {
        overlay: "authorizationpolicy-scoped-to-app-paths",
        red: &[(
            "attack_unauthenticated_reach::path_normalisation_variants",
            "GET //anything: expected not answered by the app without a session",
        )],
    },
    KindFault {
        overlay: "authorizationpolicy-one-host-spelling",
        red: &[(
            "attack_unauthenticated_reach::authority_variants",
            "GET /anything (Host: 127.0.0.1): expected not answered by the app without a session",
        )],
    },
    KindFault {
        overlay: "oauth2-exempt-without-slash",
        red: &[(
            "attack_unauthenticated_reach::exempt_prefix_near_misses",
            "GET /oauth2x/anything: expected not answered by the app without a session",
        )],
    },
    KindFault {
        overlay: "gateway-legacy-tls",
        red: &[
            (
                "attack_browser_hardening::legacy_tls_refused",
                "ServerHello: TLS 1.0 with ECDHE-ECDSA-AES128-SHA: the listener speaks TLS 1.0",
            ),
            (
                "attack_browser_hardening::legacy_tls_refused",
                "ServerHello: TLS 1.2 with ECDHE-ECDSA-AES128-SHA: the listener takes the CBC suite",
            ),
        ],
    },
    KindFault {
        overlay: "requestauthentication-wrong-issuer",
        red: &[(
            "seed003_origin_auth::direct_grant_bearer",
            "with \"Jwt issuer is not configured\"",
        )],
    },
    KindFault {
        overlay: "authorizationpolicy-httpbin-admits-the-whole-mesh",
        red: &[(
            "attack_around_the_gateway::mesh_workload_cannot_skip_the_gateway",
            "actual answered 200 at http://httpbin.foo.svc.cluster.local",
        )],
    },
    KindFault {
        overlay: "destinationrule-plaintext-to-httpbin",
        red: &[(
            "seed000_browser_sso::browser_login",
            "status: expected 200, actual 503 at https://127.0.0.1:",
        )],
    },
];

/// The cluster a run kept, deleted when dropped (by the command the run printed).
struct KeptCluster {
    kubeconfig: std::path::PathBuf,
    delete: String,
    environment_file: String,
    secrets_file: String,
}

impl KeptCluster {
    fn from_stderr(stderr: &str) -> Option<Self> {
        let delete = stderr
            .split("delete it with `")
            .nth(1)?
            .split('`')
            .next()?
            .to_string();
        let judge = stderr
            .lines()
            .find(|l| l.contains("--env existing --env-file"))?;
        let secrets_file = judge
            .split("set -a; . ")
            .nth(1)?
            .split(';')
            .next()?
            .to_string();
        let environment_file = judge.rsplit("--env-file ").next()?.trim().to_string();
        let kubeconfig = stderr
            .split("(kubeconfig ")
            .nth(1)?
            .split(';')
            .next()?
            .into();
        Some(Self {
            kubeconfig,
            delete,
            environment_file,
            secrets_file,
        })
    }

    /// `meshauth run --env existing` against the cluster as the run wrote it up (its environment
    /// file, the secrets beside it): the scenarios whose names contain one of `filters`, or all.
    fn judge(&self, filters: &[&str]) -> std::process::Output {
        meshauth()
            .args(["run", "--env", "existing", "--env-file"])
            .arg(&self.environment_file)
            .args(filters)
            .envs(self.secrets())
            .output()
            .expect("meshauth runs")
    }

    /// `NAME='value'` lines, as the run wrote them for `set -a; . FILE`.
    fn secrets(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.secrets_file)
            .expect("the secrets file the run wrote")
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once('=')?;
                Some((name.to_string(), value.trim_matches('\'').to_string()))
            })
            .collect()
    }
}

impl Drop for KeptCluster {
    fn drop(&mut self) {
        let status = Command::new("sh").arg("-c").arg(&self.delete).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("could not delete the kept cluster: {}", self.delete);
        }
    }
}

#[test]
fn counts_are_read_from_the_last_line() {
    assert_eq!(
        counts("PASS a::b (0.1s)\n\n82 passed, 0 failed, 82 total in 23.0s\n"),
        Some((82, 0, 82))
    );
    assert_eq!(counts("nothing ran"), None);
}

#[test]
fn the_kept_cluster_is_read_from_what_the_run_printed() {
    let stderr = "keeping kind cluster t (kubeconfig /r/kind/kubeconfig; delete it with `/c/kind delete cluster --name t --kubeconfig /r/kind/kubeconfig`)\n\
        to judge it again as a deployment of your own: set -a; . /r/kind/existing.env; meshauth run --env existing --env-file /r/kind/existing.yaml\n";
    let kept = KeptCluster::from_stderr(stderr).expect("parsed");
    assert_eq!(
        kept.delete,
        "/c/kind delete cluster --name t --kubeconfig /r/kind/kubeconfig"
    );
    assert_eq!(kept.environment_file, "/r/kind/existing.yaml");
    assert_eq!(kept.secrets_file, "/r/kind/existing.env");
    // Nothing to delete in this test.
    std::mem::forget(kept);
}
