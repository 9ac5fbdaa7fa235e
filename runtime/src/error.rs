//! The runtime's error type.

/// Everything that can go wrong loading models or running forwards, sampling and verification.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A tensor operation failed inside candle (shape mismatch, unsupported dtype, I/O while reading
    /// tensor data).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A model file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A GGUF file lacks a metadata key or tensor that the architecture needs, or has one of the wrong
    /// type or shape. The message names the key.
    #[error("model file: {0}")]
    Gguf(String),
    /// The GGUF `general.architecture` is not one this runtime implements.
    #[error("unsupported architecture {0:?} (supported: qwen2, llama)")]
    UnsupportedArchitecture(String),
    /// A caller passed something impossible: a token id outside the vocabulary, an empty batch item, a
    /// sampling parameter out of range, a sequence the backend does not know. The message says which.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
