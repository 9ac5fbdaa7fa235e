//! # specsim-sim: the engine core and the discrete-event simulator
//!
//! One engine core — scheduler, KV block accounting, speculation controller — runs against a
//! [`engine::Backend`]: the simulated backend ([`simulated::SimBackend`]) advances a virtual clock by a
//! [`cost::CostModel`] and samples draft acceptance from an [`acceptance::AcceptanceModel`]; the runtime
//! crate's live backend runs real forwards. So the simulator models exactly the runtime's scheduler.
//!
//! ## Reading guide
//!
//! 1. [`engine`] — `Engine::step`: admission, prefill, drafting one position at a time under a
//!    [`policy::SpeculationPolicy`], verification, KV reservation and release.
//! 2. [`policy`] — the policy trait and one file per policy (none, static, batch table, threshold,
//!    SmartSpec, SpecServe, oracle).
//! 3. [`cluster`] — the event loop: arrivals, routers, replicas stepping on a shared virtual clock.
//!
//! Then [`cost`] (roofline, profile table, linear fit), [`acceptance`], [`metrics`] (result
//! directory), [`scenario`] (the TOML front door) and [`synth`] (built-in synthetic workloads).
//!
//! ## Invariants (each has a test)
//!
//! - request conservation: every request finishes exactly once with exactly its output tokens;
//! - KV blocks allocated + free = total, and never more than total;
//! - the clock never goes backwards; equal-time events fire in class order (step end, arrival, schedule);
//! - tokens emitted = accepted + 1 per verified sequence (capped by the tokens it still owes);
//! - draft slots are always committed or released after verification.
//!
//! Time is integer nanoseconds ([`time::Nanos`]); the same scenario and seed give the same bytes.

pub mod acceptance;
pub mod cluster;
pub mod cost;
pub mod engine;
mod error;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod rng;
pub mod scenario;
pub mod simulated;
pub mod sweep;
pub mod synth;
pub mod time;
pub mod trace_config;
pub mod workload;

pub use error::SimError;
