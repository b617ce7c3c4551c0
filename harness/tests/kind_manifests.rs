//! Validates every object the `kind` environment renders against the REAL API schemas: the
//! Kubernetes OpenAPI v3 documents of k8s.io/kubernetes and the CRD schemas of istio.io/api,
//! at the versions pinned in versions.rs, fetched through Go modules into the component cache.
//!
//! Unknown fields are rejected (`additionalProperties: false` wherever a schema lists its
//! properties and does not preserve unknown fields), as the API server does with strict field
//! validation, kubectl's default. The `x-kubernetes-*` extensions are otherwise ignored.

use std::collections::HashMap;

use meshauth::components::{ApiSchemas, CacheDir, ensure_api_schemas};
use meshauth::env::StackConfig;
use meshauth::env::kind::{KindOptions, KindSecrets, Manifests, render};
use serde_json::{Value, json};

/// apiVersion + kind, as written in an object.
type TypeKey = (String, String);

struct Schemas {
    validators: HashMap<TypeKey, jsonschema::Validator>,
    /// MeshConfig message name → its fields' JSON names (from the real config.proto).
    mesh_config_fields: HashMap<String, Vec<String>>,
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Adds `additionalProperties: false` to every object schema that lists its properties and
/// neither allows extra ones nor preserves unknown fields.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !preserves
            {
                map.insert("additionalProperties".into(), json!(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

fn build(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .expect("the API schema compiles")
}

fn load(schemas: &ApiSchemas) -> Schemas {
    let mut validators = HashMap::new();
    let mut object_meta_components = None;
    let mut documents: Vec<_> = std::fs::read_dir(&schemas.kubernetes_openapi_v3)
        .expect("the cached Kubernetes OpenAPI v3 directory")
        .flatten()
        .map(|e| e.path())
        .collect();
    documents.sort();
    for path in documents {
        let mut document: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let Some(components) = document.pointer_mut("/components/schemas") else {
            continue;
        };
        strict(components);
        let components = components.clone();
        if path.file_name().unwrap() == "api__v1_openapi.json" {
            object_meta_components = Some(components.clone());
        }
        for (name, schema) in components.as_object().unwrap() {
            let Some(types) = schema["x-kubernetes-group-version-kind"].as_array() else {
                continue;
            };
            for gvk in types {
                let key = (
                    api_version(
                        gvk["group"].as_str().unwrap(),
                        gvk["version"].as_str().unwrap(),
                    ),
                    gvk["kind"].as_str().unwrap().to_string(),
                );
                // Each group version's own document comes first for its kinds.
                validators.entry(key).or_insert_with(|| {
                    build(&json!({
                        "$ref": format!("#/components/schemas/{name}"),
                        "components": { "schemas": components },
                    }))
                });
            }
        }
    }
    let object_meta_components =
        object_meta_components.expect("api__v1_openapi.json holds ObjectMeta");

    let crds: Vec<Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(&schemas.istio_crds).unwrap())
            .expect("Istio's CRD file parses");
    for crd in crds
        .iter()
        .filter(|c| c["kind"] == "CustomResourceDefinition")
    {
        let group = crd["spec"]["group"].as_str().unwrap();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            if version["served"] != json!(true) {
                continue;
            }
            let mut schema = version["schema"]["openAPIV3Schema"].clone();
            strict(&mut schema);
            let properties = schema["properties"].as_object_mut().unwrap();
            properties.insert("apiVersion".into(), json!({ "type": "string" }));
            properties.insert("kind".into(), json!({ "type": "string" }));
            properties.insert(
                "metadata".into(),
                json!({ "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" }),
            );
            schema["components"] = json!({ "schemas": object_meta_components });
            let key = (
                api_version(group, version["name"].as_str().unwrap()),
                kind.to_string(),
            );
            validators.insert(key, build(&schema));
        }
    }
    let proto = std::fs::read_to_string(&schemas.istio_mesh_config_proto).unwrap();
    Schemas {
        validators,
        mesh_config_fields: proto_fields(&proto),
    }
}

/// Every message's fields as JSON (lowerCamelCase) names. A field line is
/// `[repeated] TYPE name = N...;` inside its message's braces or a `oneof` block of it.
fn proto_fields(proto: &str) -> HashMap<String, Vec<String>> {
    enum Block {
        Message(String),
        Oneof,
        Other,
    }
    let field = regex::Regex::new(
        r"^\s*(?:repeated\s+|optional\s+)?(?:map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*\d+",
    )
    .unwrap();
    let opener = regex::Regex::new(r"^\s*(message|oneof|enum)\s+(\w+)\s*\{").unwrap();
    let mut blocks: Vec<Block> = Vec::new();
    let mut fields: HashMap<String, Vec<String>> = HashMap::new();
    for line in proto.lines() {
        let code = line.split("//").next().unwrap_or("");
        if let Some(open) = opener.captures(code) {
            blocks.push(match &open[1] {
                "message" => Block::Message(open[2].to_string()),
                "oneof" => Block::Oneof,
                _ => Block::Other,
            });
        } else if let Some(f) = field.captures(code) {
            let owner = blocks.iter().rev().find(|b| !matches!(b, Block::Oneof));
            if let Some(Block::Message(name)) = owner {
                fields.entry(name.clone()).or_default().push(camel(&f[1]));
            }
        } else if code.contains('{') {
            blocks.push(Block::Other);
        }
        for _ in 0..code.matches('}').count() {
            blocks.pop();
        }
    }
    fields
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn label(object: &Value) -> String {
    format!(
        "{} {}/{} ({})",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["namespace"].as_str().unwrap_or("-"),
        object["metadata"]["name"].as_str().unwrap_or("?"),
        object["apiVersion"].as_str().unwrap_or("?"),
    )
}

impl Schemas {
    /// Every schema violation of `object`, each naming the object and the path.
    fn violations(&self, object: &Value) -> Vec<String> {
        let key = (
            object["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            object["kind"].as_str().unwrap_or_default().to_string(),
        );
        let Some(validator) = self.validators.get(&key) else {
            return vec![format!(
                "{}: no schema serves this apiVersion and kind",
                label(object)
            )];
        };
        validator
            .iter_errors(object)
            .map(|e| format!("{}: at {}: {e}", label(object), e.instance_path()))
            .collect()
    }

    /// The install config's `meshConfig` against MeshConfig's real fields: every key of
    /// `meshConfig`, of each extension provider and of its `envoyExtAuthzHttp` must exist.
    fn mesh_config_violations(&self, operator: &Value) -> Vec<String> {
        let mut found = Vec::new();
        let mut check = |value: &Value, message: &str, path: &str| {
            let known = &self.mesh_config_fields[message];
            for key in value.as_object().into_iter().flat_map(|m| m.keys()) {
                if !known.contains(key) {
                    found.push(format!(
                        "IstioOperator {}: at {path}/{key}: not a field of {message}",
                        operator["metadata"]["name"].as_str().unwrap_or("?")
                    ));
                }
            }
        };
        let mesh = &operator["spec"]["meshConfig"];
        check(mesh, "MeshConfig", "/spec/meshConfig");
        for (i, provider) in mesh["extensionProviders"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let path = format!("/spec/meshConfig/extensionProviders/{i}");
            check(provider, "ExtensionProvider", &path);
            check(
                &provider["envoyExtAuthzHttp"],
                "EnvoyExternalAuthorizationHttpProvider",
                &format!("{path}/envoyExtAuthzHttp"),
            );
        }
        found
    }
}

/// Loaded once for every test of this file: compiling the validators is most of its time.
fn schemas() -> &'static Schemas {
    static SCHEMAS: std::sync::OnceLock<Schemas> = std::sync::OnceLock::new();
    SCHEMAS.get_or_init(load_schemas)
}

fn load_schemas() -> Schemas {
    let cache = CacheDir::from_env().expect("a cache directory");
    let started = std::time::Instant::now();
    let paths = ensure_api_schemas(&cache, &|event| eprintln!("{event:?}"))
        .expect("the pinned API schemas (go mod download)");
    let schemas = load(&paths);
    eprintln!(
        "{} schemas loaded in {:.1}s",
        schemas.validators.len(),
        started.elapsed().as_secs_f64()
    );
    schemas
}

fn secrets() -> KindSecrets {
    KindSecrets::generate().expect("secrets").0
}

fn rendered(config: &StackConfig) -> Manifests {
    render(config, &KindOptions::default(), &secrets()).expect("the manifests render")
}

fn variants() -> Vec<(&'static str, StackConfig)> {
    vec![
        ("default", StackConfig::default()),
        (
            "ext_authz off",
            StackConfig {
                ext_authz: false,
                ..StackConfig::default()
            },
        ),
        (
            "request_authentication off",
            StackConfig {
                request_authentication: false,
                ..StackConfig::default()
            },
        ),
        (
            "load baseline, every switch flipped",
            StackConfig {
                baseline_route: true,
                forward_authorization: false,
                skip_provider_button: true,
                role_mapper: false,
                audience_mapper: false,
                wrong_client_secret: true,
                secure_session_cookie: false,
                ..StackConfig::default()
            },
        ),
    ]
}

fn istio_operator(manifests: &Manifests) -> Value {
    serde_saphyr::from_str(&manifests.istio_install).expect("the Istio install config is YAML")
}

#[test]
fn every_rendered_object_matches_the_real_api_schemas() {
    let schemas = schemas();
    let mut checked = 0;
    for (variant, config) in variants() {
        let manifests = rendered(&config);
        let mut violations: Vec<String> = manifests
            .objects
            .iter()
            .flat_map(|o| schemas.violations(o))
            .collect();
        violations.extend(schemas.mesh_config_violations(&istio_operator(&manifests)));
        assert!(
            violations.is_empty(),
            "variant {variant}:\n{}",
            violations.join("\n")
        );
        checked += manifests.objects.len();
        eprintln!("{variant}: {} objects valid", manifests.objects.len());
    }
    assert!(checked >= 4 * 14, "only {checked} objects checked");
}

/// Finds the object of `kind` and hands it to `break_it`, then validates it.
fn broken(kind: &str, break_it: impl FnOnce(&mut Value)) -> (&'static Schemas, Vec<String>) {
    let schemas = schemas();
    let mut object = rendered(&StackConfig::default())
        .objects
        .into_iter()
        .find(|o| o["kind"] == kind)
        .unwrap();
    break_it(&mut object);
    let violations = schemas.violations(&object);
    (schemas, violations)
}

#[test]
fn an_unknown_authorization_policy_action_is_rejected() {
    let (_, violations) = broken("AuthorizationPolicy", |o| {
        o["spec"]["action"] = json!("CUSTOMM")
    });
    let all = violations.join("\n");
    assert!(
        all.contains(
            "AuthorizationPolicy istio-system/oidc (security.istio.io/v1): at /spec/action:"
        ) && all.contains("CUSTOMM"),
        "{all}"
    );
}

#[test]
fn a_string_replica_count_is_rejected() {
    let (_, violations) = broken("Deployment", |o| o["spec"]["replicas"] = json!("one"));
    let all = violations.join("\n");
    assert!(
        all.contains("Deployment foo/keycloak (apps/v1): at /spec/replicas:")
            && all.contains("\"one\""),
        "{all}"
    );
}

#[test]
fn a_misspelt_field_is_rejected_as_strict_field_validation_would() {
    let (_, violations) = broken("Service", |o| {
        let ports = o["spec"]["ports"][0].as_object_mut().unwrap();
        let port = ports.remove("targetPort").unwrap();
        ports.insert("targetport".into(), port);
    });
    let all = violations.join("\n");
    assert!(
        all.contains("Service foo/keycloak (v1): at /spec/ports/0:") && all.contains("targetport"),
        "{all}"
    );
    let (_, violations) = broken("RequestAuthentication", |o| {
        o["spec"]["jwtRules"][0]["forwardOriginalTokens"] = json!(true)
    });
    assert!(
        violations.join("\n").contains("at /spec/jwtRules/0:"),
        "{violations:?}"
    );
}

#[test]
fn an_unserved_api_version_is_rejected() {
    let (_, violations) = broken("Gateway", |o| {
        o["apiVersion"] = json!("networking.istio.io/v2")
    });
    assert_eq!(
        violations,
        [
            "Gateway istio-system/ingressgateway (networking.istio.io/v2): no schema serves this apiVersion and kind"
        ]
    );
}

#[test]
fn an_unknown_ext_authz_provider_field_is_rejected() {
    let schemas = schemas();
    let mut operator = istio_operator(&rendered(&StackConfig::default()));
    operator["spec"]["meshConfig"]["extensionProviders"][0]["envoyExtAuthzHttp"]["headersToUpstreamOnAllowed"] =
        json!(["authorization"]);
    let violations = schemas.mesh_config_violations(&operator);
    assert_eq!(
        violations,
        [
            "IstioOperator meshauth: at /spec/meshConfig/extensionProviders/0/envoyExtAuthzHttp/headersToUpstreamOnAllowed: not a field of EnvoyExternalAuthorizationHttpProvider"
        ]
    );
}

#[test]
fn the_proto_reader_sees_the_fields_it_checks_against() {
    let schemas = schemas();
    let fields = &schemas.mesh_config_fields["EnvoyExternalAuthorizationHttpProvider"];
    for expected in [
        "service",
        "port",
        "headersToUpstreamOnAllow",
        "includeRequestHeadersInCheck",
    ] {
        assert!(fields.iter().any(|f| f == expected), "{fields:?}");
    }
    assert!(
        schemas.mesh_config_fields["MeshConfig"]
            .iter()
            .any(|f| f == "extensionProviders")
    );
    assert!(
        schemas.mesh_config_fields["ExtensionProvider"]
            .iter()
            .any(|f| f == "envoyExtAuthzHttp")
    );
}
