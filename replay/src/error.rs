//! The crate's error type.
//!
//! These are errors that stop a replay or a comparison before it produces results (bad input, an
//! unreachable shared folder, a result directory that cannot be written). Failures of individual
//! requests during a replay are not errors: they are results ([`crate::Failure`]), recorded per request.

use std::path::{Path, PathBuf};

/// Why a replay or comparison could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (printed in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// A text input (prompt set, result file) has a bad line.
    #[error("{origin}:{line}: {msg}")]
    Parse {
        /// File or other source name.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// An option value is impossible (empty prompt set, zero timeout, bad endpoint URL).
    #[error("{0}")]
    Config(String),
    /// A result directory has neither `requests.csv` nor policy subdirectories, or the two sides of a
    /// comparison share no policy.
    #[error("{0}")]
    Layout(String),
    /// The simulator crate rejected an input (a result file, the workload).
    #[error(transparent)]
    Sim(#[from] specsim_sim::SimError),
    /// The traces crate rejected an input (a `shared:` path).
    #[error(transparent)]
    Trace(#[from] specsim_traces::TraceError),
}

impl ReplayError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        ReplayError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}
