//! Where a path in a scenario points.
//!
//! One rule, so scenarios that use the project's shared data work from any checkout:
//!
//! - `shared:REL` resolves to `$SPECSIM_SHARED/REL` when the environment variable is set, otherwise to
//!   `A/shared/REL` for the nearest ancestor `A` of the scenario's directory that has a `shared`
//!   folder (for a checkout at `work/main`, that is `work/shared`, the data "beside the repository");
//! - an absolute path is used as is;
//! - any other path is relative to the scenario's directory.

use crate::TraceError;
use std::path::{Path, PathBuf};

/// The prefix that marks a path in the shared data folder.
pub const SHARED_PREFIX: &str = "shared:";

/// The environment variable that names the shared data folder.
pub const SHARED_ENV: &str = "SPECSIM_SHARED";

/// Resolves a path written in a scenario whose directory is `base_dir` (see the module doc).
pub fn resolve(path: &Path, base_dir: &Path) -> Result<PathBuf, TraceError> {
    let text = path.to_string_lossy();
    if let Some(rel) = text.strip_prefix(SHARED_PREFIX) {
        let rel = Path::new(rel.trim_start_matches('/'));
        if rel.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        }) {
            return Err(TraceError::Config(format!(
                "`{text}`: a shared: path must stay inside the shared folder (no `..` or root)"
            )));
        }
        let root = shared_dir(base_dir).ok_or_else(|| TraceError::SharedNotFound {
            spec: text.to_string(),
            looked_from: base_dir.to_path_buf(),
        })?;
        return Ok(root.join(rel));
    }
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(base_dir.join(path))
    }
}

/// The shared data folder: `$SPECSIM_SHARED`, or the `shared` folder of the nearest ancestor of
/// `start` that has one.
pub fn shared_dir(start: &Path) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(SHARED_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let start = std::fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
    start
        .ancestors()
        .map(|a| a.join("shared"))
        .find(|d| d.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_paths() {
        let base = Path::new("/scen/dir");
        assert_eq!(
            resolve(Path::new("t.csv"), base).unwrap(),
            Path::new("/scen/dir/t.csv")
        );
        assert_eq!(
            resolve(Path::new("/abs/t.csv"), base).unwrap(),
            Path::new("/abs/t.csv")
        );
    }

    #[test]
    fn shared_prefix_finds_the_nearest_shared_folder() {
        if std::env::var_os(SHARED_ENV).is_some() {
            return; // the variable takes precedence; covered by the integration tests
        }
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("repo/scenarios/traces");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(root.path().join("shared/traces")).unwrap();
        let got = resolve(Path::new("shared:traces/x.csv"), &deep).unwrap();
        let want = std::fs::canonicalize(root.path())
            .unwrap()
            .join("shared/traces/x.csv");
        assert_eq!(got, want);
    }

    #[test]
    fn shared_paths_cannot_climb_out_of_the_shared_folder() {
        for bad in [
            "shared:../etc/passwd",
            "shared:traces/../../x",
            "shared://..//x",
        ] {
            let e = resolve(Path::new(bad), Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("inside the shared folder"), "{bad}: {e}");
        }
    }
}
