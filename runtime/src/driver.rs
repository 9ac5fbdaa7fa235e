//! The engine thread: owns the engine core and the live backend, takes requests from the server over a
//! channel and streams each sequence's new token ids back. (Being wired; see the module's issue notes.)

use crate::server::{Generator, Metrics, ServeArgs};
use crate::tokenizer::GgufTokenizer;
use std::sync::Arc;

/// Why the live engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The live backend is not available in this build yet.
    #[error("the live engine is not wired into `serve` yet; use --fake to serve the scripted generator")]
    NotWired,
}

/// Starts the engine thread for `serve`.
pub fn start_live(_args: &ServeArgs, _tokenizer: Arc<GgufTokenizer>, _metrics: Arc<Metrics>) -> Result<Arc<dyn Generator>, DriverError> {
    Err(DriverError::NotWired)
}
