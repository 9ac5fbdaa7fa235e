//! # specsim-runtime: speculative serving on candle
//!
//! A real speculative-decoding engine: a small draft model proposes tokens, the target verifies them in
//! one batched forward, and rejection sampling keeps the output distribution exactly the target's. The
//! scheduler, KV accounting and speculation policies are not here: they are `specsim-core`'s engine,
//! which this crate drives through a live [`specsim_core::engine::Backend`].
//!
//! ## Reading guide
//!
//! 1. [`model`] — quantized Qwen2 and Llama with a *ragged* batched forward (each sequence its own past
//!    length and number of new tokens), logits at every verified position, and a KV cache per sequence
//!    that rolls back by truncation. [`model::tiny`] writes random-weight GGUF models for tests.
//! 2. [`sampling`] — temperature, top-k, top-p and greedy as a probability vector, sampled with a
//!    per-request seeded generator.
//! 3. [`verify`] — greedy acceptance and exact rejection sampling.
//! 4. [`drafter`] — what proposes draft tokens: a draft model, or n-gram lookup in the sequence itself.
//! 5. [`live`] — the engine core's `Backend` on real models: token histories, draft catch-up, one
//!    ragged verification forward per step, KV rollback of rejected drafts, end-of-sequence, wall clock.
//!    [`offline`] runs a fixed set of requests through engine and backend (tests, benchmark, calibration).
//! 6. [`driver`] — the engine thread: owns the engine core and a backend (`Backend` + [`driver::TokenStreams`]),
//!    takes requests over a channel, streams each sequence's new token ids back, and turns a client's
//!    disconnect into `stop` on the sequence's next outcome so its KV is freed.
//! 7. [`generate`] — the seam between HTTP and the engine thread, [`generate::Generator`]: request in,
//!    token-id stream out, dropping the stream cancels; [`metrics`] — what both sides record.
//! 8. [`server`] — the OpenAI-compatible HTTP server behind that seam; [`serve`] wires tokenizer,
//!    engine thread and server together from a typed [`serve::ServeConfig`] (`specsim serve`).
//!    [`tokenizer`] and [`chat`] rebuild the tokenizer and chat template from GGUF metadata.
//!    [`requantize`] converts the shipped draft's Q5_0 tensors to Q8_0 (`scripts/fetch-models.sh`).
//!
//! Errors are [`RuntimeError`]; nothing panics on bad input.

pub mod chat;
pub mod drafter;
pub mod driver;
mod error;
pub mod generate;
pub mod live;
pub mod metrics;
pub mod model;
pub mod offline;
pub mod requantize;
pub mod sampling;
pub mod serve;
pub mod server;
pub mod tokenizer;
pub mod verify;

pub use error::{Result, RuntimeError};
