//! # specsim-sim: the discrete-event simulator of a serving cluster
//!
//! Built on `specsim-core`'s engine: each replica is a core [`specsim_core::engine::Engine`] driven by
//! the simulated backend ([`simulated::SimBackend`]), which advances a virtual clock by a
//! [`specsim_core::cost::CostModel`] and samples draft acceptance from an
//! [`specsim_core::acceptance::AcceptanceModel`]. The runtime crate drives the same engine with real
//! forwards, so the simulator models exactly the runtime's scheduler.
//!
//! ## Reading guide
//!
//! 1. [`cluster`] — the event loop: arrivals, routers, replicas stepping on a shared virtual clock.
//! 2. [`simulated`] — the simulated backend (forward shapes and the draft-cache mirror live in
//!    `specsim_core::shape`, shared with the runtime).
//! 3. [`scenario`] — the TOML front door, with [`trace_config`] and [`synth`] (built-in synthetic
//!    workloads).
//! 4. [`metrics`] — the result directory (`requests.csv`, `summary.json`, `steps.csv`), with the
//!    streaming summary ([`metrics::SummaryAcc`]: exact percentiles up to a limit, a DDSketch beyond);
//!    [`results`] writes a directory while the simulation runs, so memory is bounded by what is in
//!    flight ([`cluster::simulate_into`] takes a request stream and a sink; its parallel mode advances
//!    replicas between synchronisation points).
//! 5. [`sweep`] (grids, shards, merge) and [`plan`] (capacity search).
//!
//! ## Invariants (each has a test)
//!
//! - the clock never goes backwards; equal-time events fire in class order (step end, arrival, schedule);
//! - every request routed to a replica finishes there exactly once (the engine's own invariants are
//!   listed in `specsim_core`).
//!
//! Time is integer nanoseconds; the same scenario and seed give the same bytes.

pub mod cluster;
pub mod limits;
pub mod metrics;
pub mod plan;
pub mod results;
pub mod scenario;
pub mod simulated;
pub mod sweep;
pub mod synth;
pub mod trace_config;

/// The simulator's errors are the engine core's: one error type from scenario file to backend step.
pub use specsim_core::CoreError as SimError;
