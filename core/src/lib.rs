//! # specsim-core: one engine core for every backend
//!
//! The scheduler, KV block accounting and speculation controller of a vLLM-style serving replica,
//! written once and driven against a [`engine::Backend`]. Four backends drive the same
//! [`engine::Engine::step`]: the simulator's `SimBackend` (virtual clock, cost and acceptance
//! models, in `specsim-sim`), the runtime's live candle backend and its echo backend (`specsim-runtime`),
//! and calibrate's recording backends. So the simulator models exactly the runtime's scheduler: the gap
//! between prediction and measurement is the cost and acceptance models' error, nothing else.
//!
//! This crate has no heavy dependency (no candle, axum, clap, anyhow or polars): everything above it
//! builds on it, so its build is on every path.
//!
//! ## Reading guide
//!
//! 1. [`engine`] — `Engine::step`: admission, prefill, drafting one position at a time under a
//!    [`policy::SpeculationPolicy`], verification, KV reservation and release. [`engine::Backend`] is
//!    the seam (call order documented there).
//! 2. [`policy`] — the policy trait and one file per policy (none, static, batch table, threshold,
//!    SmartSpec, SpecServe, oracle), each with its tie-breaks written down.
//! 3. [`shape`] — the one home of a forward's shape ([`cost::BatchShape`]) and predicted cost: used by
//!    policies, the simulated backend, the draft-cache mirror and the live backend's predicted-vs-measured
//!    counters alike.
//! 4. [`cost`] (roofline, measured profile tables, linear fit, the model/hardware catalog) and
//!    [`acceptance`] (per-position draft acceptance and confidence).
//! 5. [`workload`] (requests), [`time`] (integer nanoseconds), [`rng`] (named, seeded streams) and
//!    [`CoreError`].
//!
//! ## Invariants (each has a test, here or in `specsim-sim`'s tests)
//!
//! - request conservation: every request finishes exactly once with exactly its output tokens;
//! - KV blocks allocated + free = total, and never more than total;
//! - tokens emitted = accepted + 1 per verified sequence (capped by the tokens it still owes);
//! - draft slots are always committed or released after verification.
//!
//! Time is integer nanoseconds ([`time::Nanos`]); the same inputs and seed give the same bytes.

pub mod acceptance;
pub mod cost;
pub mod engine;
mod error;
pub mod policy;
pub mod rng;
pub mod shape;
pub mod time;
pub mod workload;

pub use error::{excerpt, CoreError};
