//! What Istio's own config generator makes of the reference profiles' Istio objects, as golden
//! summaries: each listener's filter chains (match, TLS, filters in order, the security
//! filters' decisive settings), each cluster (TLS or not), each route. A change in the objects
//! or in the pinned generator shows here as a reviewable diff.

mod common;

use meshauth::components::{self, CacheDir, InstallEvent};
use meshauth::env::{DeploymentProfile, StackConfig};
use serde_json::Value;

fn toolchain() -> components::Toolchain {
    let cache = CacheDir::from_env().expect("component cache");
    let observe = |event: InstallEvent| {
        if let InstallEvent::Started { component, action } = event {
            eprintln!("{component}: {action}");
        }
    };
    components::ensure_installed(&cache, &observe).expect("components install")
}

fn dump(profile: &str, config: StackConfig) -> (Value, Value, Value) {
    let out = common::run_dir(&format!("istio-dump-{profile}"));
    let written = meshauth::env::local::dump_istio(&toolchain(), &config, &out)
        .unwrap_or_else(|e| panic!("{e}"));
    let read = |path: &std::path::Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    (read(&written[0]), read(&written[1]), read(&written[2]))
}

/// The security-relevant shape of one proxy's configuration, one line per fact.
fn summary(proxy: &Value) -> String {
    let mut lines = Vec::new();
    for listener in proxy["listeners"].as_array().unwrap() {
        let address = &listener["address"]["socketAddress"];
        lines.push(format!(
            "listener {} on {}:{}",
            listener["name"].as_str().unwrap(),
            address["address"].as_str().unwrap_or("?"),
            address["portValue"]
        ));
        for chain in listener["filterChains"].as_array().into_iter().flatten() {
            let tls = &chain["transportSocket"]["typedConfig"];
            let mut describe = format!("  chain match {}", chain["filterChainMatch"]);
            if !tls.is_null() {
                describe.push_str(&format!(
                    " tls(require_client_certificate={})",
                    tls["requireClientCertificate"].as_bool().unwrap_or(false)
                ));
            }
            lines.push(describe);
            for filter in chain["filters"].as_array().into_iter().flatten() {
                lines.push(format!("    {}", filter["name"].as_str().unwrap()));
                for http in filter["typedConfig"]["httpFilters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    lines.push(format!("      {}", http_filter(http)));
                }
            }
        }
    }
    let mut clusters: Vec<String> = proxy["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let tls = if !c["transportSocket"].is_null() {
                " mTLS always (a DestinationRule's ISTIO_MUTUAL)"
            } else if !c["transportSocketMatches"].is_null() {
                " auto mTLS (when the peer has a sidecar)"
            } else {
                ""
            };
            format!(
                "cluster {} {}{tls}",
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap_or("EDS/other"),
            )
        })
        .collect();
    clusters.sort();
    lines.extend(clusters);
    for route in proxy["routes"].as_array().unwrap() {
        lines.push(format!("route {}", route["name"].as_str().unwrap_or("?")));
        for host in route["virtualHosts"].as_array().into_iter().flatten() {
            for r in host["routes"].as_array().into_iter().flatten() {
                let target = r["route"]["cluster"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| "(not a forward)".into());
                lines.push(format!(
                    "  {} {} -> {}",
                    host["name"].as_str().unwrap_or("?"),
                    r["match"],
                    target
                ));
            }
        }
    }
    lines.join("\n")
}

fn http_filter(filter: &Value) -> String {
    let name = filter["name"].as_str().unwrap().to_string();
    let config = &filter["typedConfig"];
    match name.as_str() {
        "envoy.filters.http.ext_authz" => format!(
            "{name} failure_mode_allow={} path_prefix={} timeout={}",
            config["failureModeAllow"].as_bool().unwrap_or(false),
            config["httpService"]["pathPrefix"].as_str().unwrap_or("-"),
            config["httpService"]["serverUri"]["timeout"]
                .as_str()
                .unwrap_or("-"),
        ),
        "envoy.filters.http.jwt_authn" => {
            let providers: Vec<String> = config["providers"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, p)| {
                    format!(
                        "{} aud={}",
                        p["issuer"].as_str().unwrap_or("?"),
                        p["audiences"]
                    )
                })
                .collect();
            format!("{name} {}", providers.join("; "))
        }
        "envoy.filters.http.rbac" => {
            let rules = if config["rules"].is_null() {
                &config["shadowRules"]
            } else {
                &config["rules"]
            };
            let policies: Vec<&String> = rules["policies"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .collect();
            format!(
                "{name} {} action={} policies={policies:?}",
                if config["rules"].is_null() {
                    "shadow"
                } else {
                    "enforced"
                },
                rules["action"].as_str().unwrap_or("ALLOW")
            )
        }
        _ => name,
    }
}

#[test]
fn reference_translation() {
    let (gateway, httpbin, sleep) = dump("reference", StackConfig::default());
    insta::assert_snapshot!("reference_gateway", summary(&gateway));
    insta::assert_snapshot!("reference_httpbin_sidecar", summary(&httpbin));
    insta::assert_snapshot!("reference_sleep_sidecar", summary(&sleep));
}

#[test]
fn seed000_translation() {
    let config = DeploymentProfile::from_name("seed000")
        .unwrap()
        .apply(StackConfig::default());
    let (gateway, _, _) = dump("seed000", config);
    insta::assert_snapshot!("seed000_gateway", summary(&gateway));
}

#[test]
fn seed003_strict_request_principals_translation() {
    let config = StackConfig {
        sidecar: meshauth::policy::SidecarPolicy {
            peer_authentication: meshauth::policy::PeerAuthenticationMode::Strict,
            request_authentication: true,
            authorization: meshauth::policy::AuthorizationRequirement::RequestPrincipal,
        },
        ..StackConfig::default()
    };
    let (_, httpbin, _) = dump("seed003", config);
    insta::assert_snapshot!("seed003_strict_ra_rp_httpbin_sidecar", summary(&httpbin));
}

/// Seed 003's own v1alpha1 `MeshPolicy` + `Policy` (removed in Istio 1.6) are accepted as input,
/// translated to PeerAuthentication + RequestAuthentication + AuthorizationPolicy
/// (requestPrincipals, since a v1alpha1 origin was required), and Istio then generates for
/// httpbin's sidecar exactly what the modern STRICT + RA + requestPrincipals profile gives.
#[test]
fn seed003_v1alpha1_policies_translate_like_their_modern_form() {
    // The write-up's own policies only: no sidecar policy of the reference beside them.
    let legacy = StackConfig {
        sidecar: meshauth::policy::SidecarPolicy::default(),
        istio_overlay: Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/istio-legacy"),
        ),
        ..StackConfig::default()
    };
    let modern = StackConfig {
        sidecar: meshauth::policy::SidecarPolicy {
            peer_authentication: meshauth::policy::PeerAuthenticationMode::Strict,
            request_authentication: true,
            authorization: meshauth::policy::AuthorizationRequirement::RequestPrincipal,
        },
        ..StackConfig::default()
    };
    let (_, from_legacy, _) = dump("seed003-v1alpha1", legacy);
    let (_, from_modern, _) = dump("seed003-modern", modern);
    // Only the objects' names differ (they name the RBAC policy).
    let normalise = |summary: String| {
        summary
            .replace("policy[jwt-keycloak-require-jwt]", "policy[*]")
            .replace("policy[httpbin]", "policy[*]")
    };
    let legacy_summary = normalise(summary(&from_legacy));
    assert_eq!(legacy_summary, normalise(summary(&from_modern)));
    assert!(legacy_summary.contains("rbac enforced action=ALLOW"));
    assert!(legacy_summary.contains("require_client_certificate=true"));
}

/// Bad Istio input is refused by name (file, document, object, field), never ignored.
#[test]
fn bad_istio_input_is_refused_with_file_object_and_field() {
    let cases = [
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: oidc, namespace: istio-system}\nspec:\n  action: CUSTOM\n  provider: {name: oauth2-proxy}\n  rules:\n  - to: [{operation: {notPath: [\"/oauth2/*\"]}}]\n",
            "(AuthorizationPolicy istio-system/oidc): spec: proto: (line 1:85): unknown field \"notPath\"",
        ),
        (
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: istio-system}\nspec: {}\n",
            "Telemetry is not supported; supported kinds: AuthorizationPolicy, DestinationRule",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: httpbin, namespace: foo}\nspec: {}\n",
            "apps/v1/Deployment is not an Istio object",
        ),
        (
            "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: p, namespace: foo}\nspec:\n  principalBinding: USE_PEER\n",
            "principalBinding USE_PEER has no modern equivalent",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: foo}\nspec:\n  mtls: {mode: STRICTER}\n",
            "(PeerAuthentication foo/default)",
        ),
    ];
    for (index, (yaml, expected)) in cases.iter().enumerate() {
        let dir = common::run_dir(&format!("istio-bad-{index}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mine.yaml");
        std::fs::write(&file, yaml).unwrap();
        let config = StackConfig {
            istio_overlay: Some(dir.clone()),
            ..StackConfig::default()
        };
        let out = common::run_dir(&format!("istio-bad-out-{index}"));
        let error = meshauth::env::local::dump_istio(&toolchain(), &config, &out)
            .expect_err(expected)
            .to_string();
        assert!(
            error.contains(expected) && error.contains(&file.display().to_string()),
            "case {index}: {error}"
        );
    }
}
