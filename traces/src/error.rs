//! The crate's error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong reading, shaping or synthesising a workload.
///
/// Every variant that concerns a file names it, and every variant about a row names its 1-based line,
/// so that a message alone is enough to find and fix the input.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A file could not be opened, read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, not chained, so it prints once).
        error: std::io::Error,
    },
    /// A row is malformed: a bad timestamp, a negative or non-numeric length, a missing field, bad JSON.
    #[error("{}:{line}: {msg}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the row.
        line: u64,
        /// What is wrong, naming the column and quoting the value.
        msg: String,
    },
    /// A Parquet trace cannot be read: not Parquet, truncated, a column missing or of the wrong type,
    /// a null where a value is needed. The message names the row group, column or row.
    #[error("{}: parquet: {msg}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (row group, column, 1-based row).
        msg: String,
    },
    /// The header lacks a column the (detected or configured) format needs.
    #[error("{}:1: missing column `{column}` for format `{format}` (header: `{header}`)", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The format being read.
        format: &'static str,
        /// The column that is missing.
        column: &'static str,
        /// The header as found.
        header: String,
    },
    /// The header matches none of the known formats and no `format` was given.
    #[error(
        "{}:1: cannot tell the trace format from the header `{header}`; set `format` to one of {}",
        path.display(),
        crate::Format::NAMES.join(", ")
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// The first line of the file.
        header: String,
    },
    /// A file has a header but no usable rows, or a transformation left no request.
    #[error("{what}: no requests")]
    Empty {
        /// The file or the step that emptied the workload.
        what: String,
    },
    /// A `shared:` path could not be resolved: `SPECSIM_SHARED` is unset and no `shared` folder was found.
    #[error(
        "`{spec}`: the shared data folder was not found (set SPECSIM_SHARED, or place `shared/` beside the \
         repository; looked above {})",
        looked_from.display()
    )]
    SharedNotFound {
        /// The path as written, e.g. `shared:traces/AzureLLMInferenceTrace_conv.csv`.
        spec: String,
        /// The folder whose ancestors were searched.
        looked_from: PathBuf,
    },
    /// A `[trace]` setting or a synthesis parameter is impossible (negative rate, CV of 0, weights that
    /// do not sum to a positive number, conflicting options).
    #[error("[trace]: {0}")]
    Config(String),
    /// A length notation (`fixed:N`, `uniform:MIN,MAX`, ...) does not parse; the message quotes it.
    #[error("{0}")]
    LengthSpec(String),
    /// The simulator rejected the resulting workload (an invariant the readers should already ensure).
    #[error(transparent)]
    Sim(#[from] specsim_sim::SimError),
}

impl TraceError {
    /// An I/O error about `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TraceError::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }

    /// A malformed row of `path` at 1-based `line`.
    pub fn parse(path: &Path, line: u64, msg: impl Into<String>) -> Self {
        TraceError::Parse {
            path: path.to_path_buf(),
            line,
            msg: msg.into(),
        }
    }
}
