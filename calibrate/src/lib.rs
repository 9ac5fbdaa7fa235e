//! # specsim-calibrate: measure a real draft/target pair, fit the simulator's models
//!
//! The simulator predicts a real engine only as well as its cost and acceptance models describe that
//! engine. This crate measures them on the runtime (`specsim-runtime`) and writes a **profile**
//! (`docs/PROFILE.md`, read by `specsim_core::cost::profile`) that a scenario uses with
//! `[cost] kind = "profile"` and `[acceptance] kind = "profile"`.
//!
//! ## Reading guide
//!
//! 1. [`run`] — one calibration end to end: model and prompt checks, then the phases below, writing
//!    `<out>.partial` (`complete = false`) as it goes and renaming it to `<out>` at the end.
//! 2. [`latency`] — the timing grid: draft steps by batch × context, verification by batch × tokens per
//!    sequence × context, prefill by length; each point timed on the runtime's own forward, sampling
//!    and verification functions, with warm-up, repetitions and medians (timings on shared CPUs swing
//!    ±40%). The engine core's scheduling time per step is measured apart, with a backend that does
//!    nothing.
//! 3. [`fit`] — relative least squares of `a + b·tokens + c·kv_tokens + d·batch` per role (the
//!    profile's `[fit.*]`, which answers outside the grid), with R² and leave-one-out MAPE.
//! 4. [`acceptance`] — prompts through the engine core over the live backend, greedy and sampled: acceptance by draft
//!    position, the confidence distribution (Beta by moments), the calibration curve
//!    P(accept | confidence), overall and per category → `[acceptance] kind = "calibrated"`.
//! 5. [`prompt_set`], [`provenance`], [`stats`] — the prompt set, where the profile was measured, medians.
//!
//! Why the timed region includes sampling and verification: the simulator charges one draft step and
//! one target step per forward, and a backend call of the live engine costs the forward plus its
//! token choice; the sampling share is reported apart in [`run::CalibrationReport`].
//!
//! Errors are [`CalibrateError`], each a single line naming the file or setting at fault.

pub mod acceptance;
mod error;
pub mod fit;
pub mod latency;
pub mod ops;
pub mod prompt_set;
pub mod provenance;
pub mod run;
pub mod stats;
pub mod validate;

pub use error::{CalibrateError, Result};
pub use run::{calibrate, CalibrateOptions, CalibrationReport, ProgressUpdate};
