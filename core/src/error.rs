//! The engine core's error type, shared by the simulator and the runtime (they re-export it).

use std::path::Path;

/// Everything that can go wrong building or running a simulation.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error (printed in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// A text input (CSV, profile) has a bad line.
    #[error("{origin}:{line}: {msg}")]
    Parse {
        /// File or other source name.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The scenario file is invalid: unknown key, wrong type, impossible value.
    #[error("{file}: {msg}")]
    Scenario {
        /// The scenario file.
        file: String,
        /// What is wrong, naming the key.
        msg: String,
    },
    /// A configuration value is impossible (e.g. a request longer than KV capacity).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The workload violates an invariant (unsorted, zero lengths).
    #[error("invalid workload: {0}")]
    Workload(String),
    /// A backend (simulated or live) failed during a step.
    #[error("backend: {0}")]
    Backend(String),
}

impl CoreError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CoreError::Io {
            path: path.display().to_string(),
            error: source,
        }
    }
}
