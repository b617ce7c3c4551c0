//! File helpers shared by the library and the CLI.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Writes `contents` to a file only the user can read or write (mode 0600), creating its
/// parent directories: the file may hold secrets.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

/// The file in a run directory naming the process that uses it: pruning leaves it alone while
/// that process lives (a `meshauth up` started long ago is still running its stack there).
pub const RUN_OWNER_FILE: &str = "meshauth.pid";

/// Whether `name` is a run directory's name as meshauth makes them:
/// `YYYYMMDD-HHMMSS-xxxx` (time, then four hex digits).
pub fn is_run_id(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    matches!(parts.as_slice(), [date, time, tag]
        if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())
            && time.len() == 6 && time.bytes().all(|b| b.is_ascii_digit())
            && tag.len() == 4 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes the oldest run directories under `runs_dir` until at most `keep` remain, never
/// one a live process still uses, nor anything that is not a run directory. Returns what it
/// removed.
pub fn prune_runs(runs_dir: &Path, keep: usize) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut runs: Vec<std::path::PathBuf> = match std::fs::read_dir(runs_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| e.file_name().to_str().is_some_and(is_run_id))
            .map(|e| e.path())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // Run ids start with their UTC time: name order is age order.
    runs.sort();
    let excess = runs.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for run in runs.into_iter().take(excess) {
        if in_use(&run) {
            continue;
        }
        std::fs::remove_dir_all(&run)?;
        removed.push(run);
    }
    Ok(removed)
}

/// Whether the process a run directory names is alive.
fn in_use(run: &Path) -> bool {
    std::fs::read_to_string(run.join(RUN_OWNER_FILE))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_runs_those_in_use_and_everything_else() {
        let root = std::env::temp_dir().join(format!("meshauth-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let dir = Dir(root);
        let runs = [
            "20261101-080000-00aa",
            "20261102-080000-00bb",
            "20261103-080000-00cc",
            "20261104-080000-00dd",
        ];
        for run in runs {
            std::fs::create_dir(dir.path().join(run)).unwrap();
        }
        // The oldest is still used by this very process; a dead owner protects nothing.
        std::fs::write(
            dir.path().join(runs[0]).join(RUN_OWNER_FILE),
            std::process::id().to_string(),
        )
        .unwrap();
        std::fs::write(dir.path().join(runs[1]).join(RUN_OWNER_FILE), "4294967").unwrap();
        std::fs::create_dir(dir.path().join("my-notes")).unwrap();
        std::fs::write(dir.path().join("20261101-070000-0000"), "a file").unwrap();

        let removed = prune_runs(dir.path(), 1).unwrap();
        let names: Vec<_> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, [runs[1], runs[2]]);
        for kept in [runs[0], runs[3], "my-notes", "20261101-070000-0000"] {
            assert!(dir.path().join(kept).exists(), "{kept}");
        }
        assert!(
            prune_runs(&dir.path().join("absent"), 1)
                .unwrap()
                .is_empty()
        );
        assert!(!is_run_id("latest") && !is_run_id("2026110-080000-00aa"));
    }

    /// A scratch directory removed when the test ends, pass or fail.
    struct Dir(std::path::PathBuf);

    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
