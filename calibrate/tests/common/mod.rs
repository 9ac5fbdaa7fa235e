//! Where the shared GPU measurements live for these tests: `$SPECSIM_SHARED/gpu/...`, else the
//! `shared/gpu/...` folder of the nearest ancestor of the crate that has one.

use std::path::{Path, PathBuf};

/// `shared/gpu/<rel>` if that folder exists.
pub fn shared_gpu(rel: &str) -> Option<PathBuf> {
    let shared = std::env::var_os("SPECSIM_SHARED")
        .map(PathBuf::from)
        .or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared"))
                .find(|d| d.join("gpu").is_dir())
        })?;
    Some(shared.join("gpu").join(rel)).filter(|d| d.is_dir())
}
