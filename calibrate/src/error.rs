//! The calibration error type.

/// Everything that can stop a calibration. Each variant's message is one line that names the file or
/// the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// A model file does not exist or cannot be opened.
    #[error("{role} model {path}: {msg}")]
    ModelFile {
        /// `draft` or `target`.
        role: &'static str,
        /// The path given.
        path: String,
        /// What went wrong (not found, not a GGUF file, unsupported architecture ...).
        msg: String,
    },
    /// The two models cannot be paired: different vocabularies or tokenizers.
    #[error("draft {draft} and target {target} do not match: {msg}")]
    Mismatch {
        /// Draft path.
        draft: String,
        /// Target path.
        target: String,
        /// What differs.
        msg: String,
    },
    /// The prompt set cannot be read or holds no usable prompt.
    #[error("prompt set {path}: {msg}")]
    Prompts {
        /// The prompt file.
        path: String,
        /// What is wrong (with the line number for a malformed line).
        msg: String,
    },
    /// An option is out of range (empty grid axis, zero repetitions, contexts longer than the model).
    #[error("invalid calibration setting: {0}")]
    Config(String),
    /// Least squares had no unique solution (too few or degenerate points).
    #[error("fit {what}: {msg}")]
    Fit {
        /// Which fit (draft, verify, prefill, or a test's).
        what: String,
        /// Why.
        msg: String,
    },
    /// A forward, sampling or verification in the runtime failed.
    #[error("runtime: {}", first_line(&.0.to_string()))]
    Runtime(#[from] specsim_runtime::RuntimeError),
    /// The engine core refused a step (only when measuring the scheduling overhead).
    #[error("engine: {0}")]
    Engine(#[from] specsim_core::CoreError),
    /// A measured table (operator latencies, serving results, acceptance traces) is missing, malformed
    /// or does not cover what was asked.
    #[error("{file}: {field}: {msg}")]
    Table {
        /// The file (or the folder where it should be).
        file: String,
        /// The column, key or setting at fault.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// The profile or its report could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The first line of a message: candle appends a backtrace to its errors when `RUST_BACKTRACE` is set,
/// and errors here are one line.
pub(crate) fn first_line(msg: &str) -> String {
    msg.lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

impl CalibrateError {
    pub(crate) fn table(file: impl std::fmt::Display, field: &str, msg: impl Into<String>) -> Self {
        CalibrateError::Table {
            file: file.to_string(),
            field: field.to_string(),
            msg: first_line(&msg.into()),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        CalibrateError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = CalibrateError> = std::result::Result<T, E>;
