//! The user's own Istio YAML (`--istio DIR`), laid over the objects an environment renders:
//! an object of the same kind, namespace and name replaces the rendered one, others are added.
//! The local environment hands the files to Istio's generator as they are; the kind environment
//! applies the objects to its cluster.

use std::path::Path;

use super::EnvError;

/// The YAML files of a user's Istio directory (recursively), by path relative to it, sorted.
pub fn read_files(dir: &Path) -> Result<Vec<(String, String)>, EnvError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<(), EnvError> {
        let entries = std::fs::read_dir(dir).map_err(|source| EnvError::Io {
            what: "read the Istio directory",
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).map_err(|source| EnvError::Io {
                    what: "read Istio YAML",
                    path: path.clone(),
                    source,
                })?;
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                out.push((name, text));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    if files.is_empty() {
        return Err(EnvError::Config {
            file: dir.display().to_string(),
            message: "no *.yaml or *.yml files in the Istio directory".into(),
            hint: "point --istio at a directory holding your Istio objects".into(),
        });
    }
    files.sort();
    Ok(files)
}

/// Every object of the directory's files, in file order ([`objects_of`]).
pub fn read_objects(dir: &Path) -> Result<Vec<serde_json::Value>, EnvError> {
    objects_of(dir, &read_files(dir)?)
}

/// Every object of `files` (as [`read_files`] read them from `dir`), in file order. Each must
/// name its kind, name and namespace: a cluster would put an object without a namespace
/// wherever kubectl's context points, which is not what a harness can guess.
pub fn objects_of(
    dir: &Path,
    files: &[(String, String)],
) -> Result<Vec<serde_json::Value>, EnvError> {
    let mut objects = Vec::new();
    for (name, text) in files {
        let file = dir.join(name).display().to_string();
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(text).map_err(|e| EnvError::Config {
                file: file.clone(),
                message: format!("not valid YAML: {e}"),
                hint: "fix the file (one Kubernetes object per `---` document)".into(),
            })?;
        for object in documents.into_iter().filter(|o| !o.is_null()) {
            let (kind, namespace, object_name) = identity(&object);
            if object["apiVersion"].as_str().is_none() || kind.is_empty() || object_name.is_empty()
            {
                return Err(EnvError::Config {
                    file,
                    message: "an object without apiVersion, kind or metadata.name".into(),
                    hint: "give every object apiVersion, kind and metadata.name".into(),
                });
            }
            if namespace.is_empty() {
                return Err(EnvError::Config {
                    file,
                    message: format!("{kind} {object_name} has no metadata.namespace"),
                    hint: "name the namespace of every object (istio-system for the gateway's \
                           policies, foo for the apps')"
                        .into(),
                });
            }
            objects.push(object);
        }
    }
    Ok(objects)
}

/// An object's kind, namespace and name: what an overlay object replaces by.
pub fn identity(object: &serde_json::Value) -> (String, String, String) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    (
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

/// `objects` with each overlay object in place of the one of the same identity, or added.
pub fn lay_over(objects: &mut Vec<serde_json::Value>, overlay: Vec<serde_json::Value>) {
    for object in overlay {
        match objects
            .iter_mut()
            .find(|o| identity(o) == identity(&object))
        {
            Some(replaced) => *replaced = object,
            None => objects.push(object),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn overlay_objects_replace_by_identity_and_add_the_rest() {
        let dir = std::env::temp_dir().join(format!("meshauth-overlay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(
            &dir,
            "a/policy.yml",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: oidc, namespace: istio-system}\nspec: {action: CUSTOM}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: foo}\nspec: {mtls: {mode: PERMISSIVE}}\n",
        );
        write(&dir, "notes.txt", "not read");
        let overlay = read_objects(&dir).expect("read");
        let mut objects = vec![
            serde_json::json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "oidc", "namespace": "istio-system"}, "spec": {"action": "DENY"}}),
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}}),
        ];
        lay_over(&mut objects, overlay);
        assert_eq!(objects.len(), 3);
        assert_eq!(objects[0]["spec"]["action"], "CUSTOM");
        assert_eq!(objects[2]["kind"], "PeerAuthentication");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_object_without_a_namespace_is_refused_with_its_file() {
        let dir = std::env::temp_dir().join(format!("meshauth-overlay-ns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(
            &dir,
            "pa.yaml",
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\n",
        );
        let error = read_objects(&dir).expect_err("refused").to_string();
        assert!(error.contains("pa.yaml"), "{error}");
        assert!(
            error.contains("PeerAuthentication default has no metadata.namespace"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
