//! Embeds the repository's `scenarios/`, `fixtures/` and `kind/` templates (and the sources of its
//! Go and Node components) into the binary, so that `meshauth`
//! runs from anywhere and adding a scenario file needs no registry line.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn files(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        // A local `npm install` of oidc-idp/ is not part of the sources.
        if path.ends_with("node_modules") {
            continue;
        }
        if path.is_dir() {
            files(&path, extensions, out);
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| extensions.iter().any(|e| n.ends_with(e)))
        {
            out.push(path);
        }
    }
}

fn table(name: &str, root: &Path, extensions: &[&str]) -> String {
    println!("cargo:rerun-if-changed={}", root.display());
    let mut found = Vec::new();
    files(root, extensions, &mut found);
    let mut code = format!("pub static {name}: &[(&str, &str)] = &[\n");
    for path in found {
        println!("cargo:rerun-if-changed={}", path.display());
        let relative = path
            .strip_prefix(root)
            .expect("under root")
            .display()
            .to_string();
        writeln!(
            code,
            "    ({relative:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    code
}

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let mut code = String::new();
    code.push_str(&table(
        "SCENARIOS",
        &workspace.join("scenarios"),
        &[".yaml", ".yml"],
    ));
    code.push_str(&table(
        "FIXTURES",
        &workspace.join("fixtures"),
        &[".j2", ".json", ".yaml", ".cfg"],
    ));
    code.push_str(&table("KIND", &workspace.join("kind"), &[".j2"]));
    code.push_str(&table(
        "KUBE",
        &workspace.join("kube"),
        &[".go", "go.mod", "go.sum"],
    ));
    code.push_str(&table(
        "ISTIO_XDS",
        &workspace.join("istio-xds"),
        &[".go", "go.mod", "go.sum"],
    ));
    code.push_str(&table(
        "OIDC_IDP",
        &workspace.join("oidc-idp"),
        &[".mjs", "package.json", "package-lock.json"],
    ));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("embedded.rs");
    std::fs::write(out, code).expect("write embedded.rs");
}
