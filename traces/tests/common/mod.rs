//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// The shared `traces/` folder (`$SPECSIM_SHARED/traces`, or `shared/traces` beside the repository),
/// or `None` after printing why the calling test is skipped.
pub fn shared_traces() -> Option<PathBuf> {
    let dir = specsim_traces::paths::shared_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .map(|d| d.join("traces"));
    match dir {
        Some(d) if d.is_dir() => Some(d),
        _ => {
            eprintln!(
                "SKIPPED: the shared traces folder was not found (set SPECSIM_SHARED to the folder that holds \
                 traces/, or place shared/ beside the repository)"
            );
            None
        }
    }
}
