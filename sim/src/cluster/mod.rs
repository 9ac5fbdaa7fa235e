//! The discrete-event loop: requests arrive, a router assigns them to replicas, and each replica's
//! engine steps on a shared virtual clock.
//!
//! Events are ordered by `(time, class, sequence)`: at equal times a step end is handled before an
//! arrival, and an arrival before a replica decides its next step — so a request arriving exactly when a
//! step ends joins the next step. The engine applies a step's state changes when the step starts (its
//! tokens are stamped with the step's end time); the router's load counters change at the step end.

pub mod router;

use crate::metrics::{RequestRecord, SloConfig, StepRow};
use crate::SimError;
use rayon::prelude::*;
use router::{ReplicaLoad, Router};
use specsim_core::engine::{Backend, Engine, FinishedRequest, StepReport};
use specsim_core::rng::stream;
use specsim_core::time::{ns_to_secs, Nanos};
use specsim_core::workload::{RequestSpec, Workload};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

/// Event classes, in the order they fire at equal times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventClass {
    /// A replica's step ended.
    StepEnd = 0,
    /// A request arrived.
    Arrival = 1,
    /// A replica may start its next step.
    Schedule = 2,
}

/// A replica: its engine and the backend that executes its forwards.
pub struct Replica {
    /// The engine core.
    pub engine: Engine,
    /// The backend (simulated here).
    pub backend: Box<dyn Backend + Send>,
}

/// Options of one simulation.
#[derive(Default)]
pub struct SimOptions<'a> {
    /// Keep one row per step for `steps.csv`.
    pub record_steps: bool,
    /// Called with (finished, total) as requests finish.
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
    /// Seed of the routing stream.
    pub seed: u64,
    /// Early stop: end the simulation as soon as this many requests are certain to miss an SLO
    /// ([`SimOutput::stopped_early`] is then set and the records are partial): finished requests that
    /// missed, plus requests still waiting for their first token when the TTFT (or end-to-end) SLO
    /// has already passed. Capacity planning uses it to abandon a run once its attainment target is
    /// out of reach; the verdict is the one the full run would give. None runs to completion.
    pub stop_after_misses: Option<usize>,
    /// Set from elsewhere (a signal handler) to stop the run where it is: [`simulate_into`] returns
    /// what finished so far with [`SimStats::interrupted`] set.
    pub cancel: Option<&'a AtomicBool>,
    /// Parallel mode: replicas advance in parallel between synchronisation points this far apart in
    /// simulated time (see `simulate_windows` in this module for what can differ from the sequential run). `None`:
    /// the exact sequential event loop. Ignored with `stop_after_misses`.
    pub sync_interval: Option<Nanos>,
    /// Closed loop: keep this many requests in flight. The first `concurrency` requests arrive at their
    /// own times (a ramp-up; all at 0 for a burst); after that each time a request finishes the next
    /// one (in workload order) arrives at that instant (its TTFT counts from then), whatever its own
    /// time. None: open loop, requests arrive at their own times. Runs sequentially (the parallel mode
    /// does not apply).
    pub concurrency: Option<u32>,
}

/// What a simulation produced.
pub struct SimOutput {
    /// One row per request, by id.
    pub records: Vec<RequestRecord>,
    /// One row per step, if recorded.
    pub steps: Vec<StepRow>,
    /// Σ over requests of decode iterations (for the mean accepted length).
    pub decode_steps: u64,
    /// Preemptions.
    pub preemptions: u64,
    /// Events processed (arrivals, step ends, schedule decisions).
    pub events: u64,
    /// Whether [`SimOptions::stop_after_misses`] ended the run before every request finished.
    pub stopped_early: bool,
    /// The largest [`Engine::admission_peak`] over the replicas. If it is below `max_num_seqs`, the
    /// batch limit never bound and any `max_num_seqs` above it gives the same run.
    pub admission_peak: u32,
}

/// Requests still waiting for their first token whose TTFT (or end-to-end) SLO has already passed at
/// `now`, counted up to `limit`: each is certain to miss, since its first token comes at the end of a
/// later step. Counts, in each replica's queue, the leading run of such requests (arrival order), so
/// it may undercount but never counts a request that could still meet its SLOs.
fn late_waiting(replicas: &[Replica], now: Nanos, slo: &SloConfig, limit: usize) -> usize {
    let first_token_slo = match (slo.ttft_s, slo.e2e_s) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return 0,
    };
    if replicas
        .iter()
        .map(|r| r.engine.waiting_len())
        .sum::<usize>()
        < limit
    {
        return 0;
    }
    let mut late = 0;
    for r in replicas {
        late += r
            .engine
            .waiting_unstarted_arrivals()
            .take_while(|&a| ns_to_secs(now.saturating_sub(a)) > first_token_slo)
            .take(limit - late)
            .count();
        if late >= limit {
            break;
        }
    }
    late
}

fn peak(replicas: &[Replica]) -> u32 {
    replicas
        .iter()
        .map(|r| r.engine.admission_peak())
        .max()
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    time: Nanos,
    class: EventClass,
    seq: u64,
}

/// Where a simulation's results go as they are produced (see [`crate::results::ResultWriter`] for the
/// one that streams them to disk).
pub trait SimSink {
    /// A request finished (rows arrive in finishing order, not id order).
    fn request(&mut self, rec: RequestRecord) -> Result<(), SimError>;
    /// A step ended (called only when [`SimOptions::record_steps`] is set).
    fn step(&mut self, row: StepRow) -> Result<(), SimError>;
}

/// Totals of a streamed simulation ([`simulate_into`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimStats {
    /// Requests that arrived (routed to a replica).
    pub arrived: usize,
    /// Requests that finished.
    pub finished: usize,
    /// Σ over requests of decode iterations (for the mean accepted length).
    pub decode_steps: u64,
    /// Preemptions.
    pub preemptions: u64,
    /// Events processed (arrivals, step ends, schedule decisions).
    pub events: u64,
    /// Whether [`SimOptions::stop_after_misses`] ended the run early.
    pub stopped_early: bool,
    /// Whether [`SimOptions::cancel`] ended the run early.
    pub interrupted: bool,
    /// The largest [`Engine::admission_peak`] over the replicas.
    pub admission_peak: u32,
    /// Synchronisation windows (parallel mode; 0 when sequential).
    pub windows: u64,
}

/// Replica-local sequence ids: a replica's engine and backend key their per-sequence state by
/// [`RequestSpec::id`](specsim_core::workload::RequestSpec), so the cluster hands each replica small
/// recycled ids (a slot freed when its request finishes) and maps them back. Per-replica state is
/// then sized by what the replica holds at once, never by the trace.
#[derive(Debug, Default)]
struct Slots {
    global: Vec<u64>,
    free: Vec<u64>,
}

impl Slots {
    fn take(&mut self, id: u64) -> u64 {
        match self.free.pop() {
            Some(s) => {
                self.global[s as usize] = id;
                s
            }
            None => {
                self.global.push(id);
                (self.global.len() - 1) as u64
            }
        }
    }

    fn give_back(&mut self, slot: u64) -> Result<u64, SimError> {
        let id = self
            .global
            .get(slot as usize)
            .copied()
            .ok_or_else(|| SimError::Backend(format!("unknown sequence slot {slot}")))?;
        self.free.push(slot);
        Ok(id)
    }
}

/// What both event loops (sequential and windowed) keep per replica besides its engine, and the three
/// things they do to it: add an arrival, end a step, run the next step. Sharing them is what keeps a
/// replica's trajectory the same in both modes.
#[derive(Debug, Default)]
struct ReplicaEvents {
    slots: Slots,
    /// Load to subtract from the replica when its in-flight step ends (requests, tokens).
    in_flight: Option<(u32, u64)>,
    /// A schedule event is queued.
    schedule_pending: bool,
}

/// What one replica step produced, for the loop to book.
struct StepDone {
    report: StepReport,
    /// Requests it finished and their tokens (the load they leave when the step ends).
    finished: (u32, u64),
    /// Σ of their decode iterations.
    decode_steps: u64,
}

impl ReplicaEvents {
    /// Adds an arrival to `replica` under a replica-local id. Returns whether a schedule event must be
    /// queued at the arrival's time (the replica is idle and none is queued).
    fn arrive(&mut self, replica: &mut Replica, mut req: RequestSpec) -> Result<bool, SimError> {
        let id = req.id;
        let slot = self.slots.take(id);
        req.id = slot;
        replica
            .engine
            .add_request(req)
            .map_err(|e| relabel(e, slot, id))?;
        let idle = self.in_flight.is_none() && !self.schedule_pending;
        self.schedule_pending |= idle;
        Ok(idle)
    }

    /// The in-flight step ended: returns the load it leaves (if a step was in flight); a schedule
    /// event must be queued now.
    fn step_ended(&mut self) -> Option<(u32, u64)> {
        self.schedule_pending = true;
        self.in_flight.take()
    }

    /// Runs the replica's next step at `now`, handing each request it finished to `finished` (global
    /// id restored, in the engine's order). None when the replica had nothing to do; otherwise a step
    /// end event must be queued at `report.end_ns`.
    fn schedule(
        &mut self,
        replica: &mut Replica,
        now: Nanos,
        mut finished: impl FnMut(FinishedRequest) -> Result<(), SimError>,
    ) -> Result<Option<StepDone>, SimError> {
        self.schedule_pending = false;
        let Some(report) = replica.engine.step(now, replica.backend.as_mut())? else {
            return Ok(None);
        };
        let (mut reqs, mut tokens, mut decode_steps) = (0u32, 0u64, 0u64);
        for mut f in replica.engine.drain_finished() {
            reqs += 1;
            tokens += (f.spec.prompt_tokens + f.spec.output_tokens) as u64;
            decode_steps += f.verify_steps as u64;
            f.spec.id = self.slots.give_back(f.spec.id)?;
            finished(f)?;
        }
        self.in_flight = Some((reqs, tokens));
        Ok(Some(StepDone {
            report,
            finished: (reqs, tokens),
            decode_steps,
        }))
    }
}

/// The request stream's invariants, checked as requests arrive: ids `0..n` in order, arrivals sorted,
/// lengths of at least 1.
fn check_next(req: &RequestSpec, arrived: usize, last: Nanos) -> Result<(), SimError> {
    if req.id != arrived as u64 {
        return Err(SimError::Workload(format!(
            "request {arrived} has id {}",
            req.id
        )));
    }
    if req.arrival_ns < last {
        return Err(SimError::Workload(format!(
            "request {arrived} arrives before request {}",
            arrived.saturating_sub(1)
        )));
    }
    if req.prompt_tokens == 0 || req.output_tokens == 0 {
        return Err(SimError::Workload(format!(
            "request {arrived}: prompt and output lengths must be at least 1 (got {} and {})",
            req.prompt_tokens, req.output_tokens
        )));
    }
    Ok(())
}

/// Pulls the next request of the stream, checked.
fn pull(
    requests: &mut dyn Iterator<Item = Result<RequestSpec, SimError>>,
    pulled: &mut usize,
    last: &mut Nanos,
) -> Result<Option<RequestSpec>, SimError> {
    match requests.next() {
        None => Ok(None),
        Some(r) => {
            let r = r?;
            check_next(&r, *pulled, *last)?;
            *pulled += 1;
            *last = r.arrival_ns;
            Ok(Some(r))
        }
    }
}

/// Collects records in memory, by id (for [`simulate`]).
struct VecSink {
    records: Vec<Option<RequestRecord>>,
    steps: Vec<StepRow>,
}

impl SimSink for VecSink {
    fn request(&mut self, rec: RequestRecord) -> Result<(), SimError> {
        let id = rec.id as usize;
        match self.records.get_mut(id) {
            Some(slot @ None) => {
                *slot = Some(rec);
                Ok(())
            }
            _ => Err(SimError::Backend(format!(
                "request {id} finished twice or is unknown"
            ))),
        }
    }
    fn step(&mut self, row: StepRow) -> Result<(), SimError> {
        self.steps.push(row);
        Ok(())
    }
}

/// Runs `workload` through `replicas` behind `router` until every request finishes, keeping every
/// record in memory (see [`simulate_into`] for the streaming form).
pub fn simulate(
    replicas: Vec<Replica>,
    router: Box<dyn Router>,
    workload: &Workload,
    policy: &str,
    slo: &SloConfig,
    opts: &SimOptions,
) -> Result<SimOutput, SimError> {
    let total = workload.len();
    let mut sink = VecSink {
        records: vec![None; total],
        steps: Vec::new(),
    };
    let mut requests = workload.requests.iter().cloned().map(Ok);
    let stats = simulate_into(
        replicas,
        router,
        &mut requests,
        total,
        policy,
        slo,
        opts,
        &mut sink,
    )?;
    let records: Vec<RequestRecord> = sink.records.into_iter().flatten().collect();
    if !stats.stopped_early && !stats.interrupted && records.len() != total {
        return Err(SimError::Backend(format!(
            "{} of {} requests finished",
            records.len(),
            total
        )));
    }
    Ok(SimOutput {
        records,
        steps: sink.steps,
        decode_steps: stats.decode_steps,
        preemptions: stats.preemptions,
        events: stats.events,
        stopped_early: stats.stopped_early || stats.interrupted,
        admission_peak: stats.admission_peak,
    })
}

/// Runs the request stream through `replicas` behind `router`, handing each finished request (and
/// each step, with [`SimOptions::record_steps`]) to `sink` as it happens. Holds only what is in flight:
/// the next arrival, each replica's queue and batch. `total` is the stream's length when known (for
/// progress; 0 otherwise). With [`SimOptions::sync_interval`] the replicas advance in parallel
/// between synchronisation points (`simulate_windows`); otherwise one exact event loop runs.
#[allow(clippy::too_many_arguments)]
pub fn simulate_into(
    replicas: Vec<Replica>,
    router: Box<dyn Router>,
    requests: &mut dyn Iterator<Item = Result<RequestSpec, SimError>>,
    total: usize,
    policy: &str,
    slo: &SloConfig,
    opts: &SimOptions,
    sink: &mut (dyn SimSink + Send),
) -> Result<SimStats, SimError> {
    if replicas.is_empty() {
        return Err(SimError::Config("cluster has no replicas".into()));
    }
    if opts.concurrency == Some(0) {
        return Err(SimError::Config(
            "trace.concurrency must be at least 1".into(),
        ));
    }
    if let (Some(dt), None, None) = (opts.sync_interval, opts.stop_after_misses, opts.concurrency) {
        return simulate_windows(
            replicas, router, requests, total, policy, slo, opts, sink, dt,
        );
    }
    simulate_sequential(replicas, router, requests, total, policy, slo, opts, sink)
}

#[allow(clippy::too_many_arguments)]
fn simulate_sequential(
    mut replicas: Vec<Replica>,
    mut router: Box<dyn Router>,
    requests: &mut dyn Iterator<Item = Result<RequestSpec, SimError>>,
    total: usize,
    policy: &str,
    slo: &SloConfig,
    opts: &SimOptions,
    sink: &mut (dyn SimSink + Send),
) -> Result<SimStats, SimError> {
    let n = replicas.len();
    let mut loads = vec![ReplicaLoad::default(); n];
    let mut events: Vec<ReplicaEvents> = (0..n).map(|_| ReplicaEvents::default()).collect();
    let mut heap: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<Reverse<(Key, usize)>>,
                    time: Nanos,
                    class: EventClass,
                    replica: usize| {
        seq += 1;
        heap.push(Reverse((Key { time, class, seq }, replica)));
    };
    let mut rng = stream(opts.seed, "routing", 0);
    let mut out = SimStats::default();
    let mut misses = 0usize;
    let (mut pulled, mut last) = (0usize, 0);
    let mut next = pull(requests, &mut pulled, &mut last)?;
    // Closed loop: after the first `concurrency` requests (a ramp-up at their own times), each finish
    // releases a slot, and the next request arrives at the earliest released slot (not before `now`:
    // a slot released during the ramp-up waits for it).
    let ramp_up = opts.concurrency.unwrap_or(0) as u64;
    let mut released: BinaryHeap<Reverse<Nanos>> = BinaryHeap::new();
    let mut now: Nanos = 0;

    loop {
        if opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            out.interrupted = true;
            break;
        }
        // The next event is the earlier of the next arrival and the heap top, ordered by (time, class).
        let arrival_time = match (&next, opts.concurrency) {
            (None, _) => None,
            (Some(r), None) => Some(r.arrival_ns),
            (Some(r), Some(_)) if (out.arrived as u64) < ramp_up => Some(r.arrival_ns),
            (Some(_), Some(_)) => released.peek().map(|Reverse(t)| (*t).max(now)),
        };
        let arrival_key = arrival_time.map(|time| Key {
            time,
            class: EventClass::Arrival,
            seq: 0,
        });
        let heap_key = heap.peek().map(|Reverse((k, _))| *k);
        let take_arrival = match (arrival_key, heap_key) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(h)) => (a.time, a.class) < (h.time, h.class),
        };
        out.events += 1;
        if take_arrival {
            let Some(mut req) = next.take() else {
                break;
            };
            next = pull(requests, &mut pulled, &mut last)?;
            if opts.concurrency.is_some() && (out.arrived as u64) >= ramp_up {
                // Closed loop: it arrives when a slot was released, whatever its trace time.
                req.arrival_ns = released.pop().map_or(now, |Reverse(t)| t.max(now));
            }
            out.arrived += 1;
            debug_assert!(req.arrival_ns >= now, "clock went backwards");
            now = req.arrival_ns;
            let r = router.route(&req, &loads, &mut rng).replica.min(n - 1);
            loads[r].outstanding += 1;
            loads[r].outstanding_tokens += (req.prompt_tokens + req.output_tokens) as u64;
            if events[r].arrive(&mut replicas[r], req)? {
                push(&mut heap, now, EventClass::Schedule, r);
            }
            continue;
        }
        let Some(Reverse((key, r))) = heap.pop() else {
            break;
        };
        debug_assert!(key.time >= now, "clock went backwards");
        now = key.time;
        match key.class {
            EventClass::StepEnd => {
                if let Some((reqs, tokens)) = events[r].step_ended() {
                    loads[r].outstanding -= reqs;
                    loads[r].outstanding_tokens -= tokens;
                }
                push(&mut heap, now, EventClass::Schedule, r);
            }
            EventClass::Schedule => {
                let done = events[r].schedule(&mut replicas[r], now, |f| {
                    if opts.concurrency.is_some() {
                        released.push(Reverse(f.finish_ns));
                    }
                    let rec = RequestRecord::from_finished(&f, r as u32, policy, slo);
                    misses += usize::from(!rec.slo_met);
                    out.finished += 1;
                    sink.request(rec)
                })?;
                let Some(done) = done else {
                    continue;
                };
                out.preemptions += done.report.preempted as u64;
                out.decode_steps += done.decode_steps;
                if done.finished.0 > 0 {
                    if let Some(p) = opts.progress {
                        p(out.finished, total);
                    }
                }
                let end_ns = done.report.end_ns;
                if opts.record_steps {
                    sink.step(StepRow {
                        replica: r as u32,
                        report: done.report,
                    })?;
                }
                push(&mut heap, end_ns, EventClass::StepEnd, r);
                if opts.stop_after_misses.is_some_and(|m| {
                    misses >= m || misses + late_waiting(&replicas, now, slo, m - misses) >= m
                }) {
                    out.stopped_early = true;
                    out.admission_peak = peak(&replicas);
                    return Ok(out);
                }
            }
            EventClass::Arrival => unreachable!("arrivals are not queued"),
        }
    }
    out.admission_peak = peak(&replicas);
    if out.interrupted {
        return Ok(out);
    }
    if let Some(stuck) = replicas.iter().position(|r| r.engine.has_work()) {
        return Err(SimError::Config(format!(
            "simulation stalled: replica {stuck} still has requests it cannot schedule"
        )));
    }
    Ok(out)
}

/// An engine error about a replica-local sequence id `slot`, relabelled with the request's id.
fn relabel(e: SimError, slot: u64, id: u64) -> SimError {
    let fix = |m: String| match m.strip_prefix(&format!("request {slot}")) {
        Some(rest) => format!("request {id}{rest}"),
        None => m,
    };
    match e {
        SimError::Config(m) => SimError::Config(fix(m)),
        SimError::Workload(m) => SimError::Workload(fix(m)),
        other => other,
    }
}

/// One replica in the parallel mode: its engine, its own events, and what it produced since the last
/// synchronisation.
struct Lane {
    replica: Replica,
    index: u32,
    /// Arrivals routed to it, not yet added (arrival order).
    queue: VecDeque<RequestSpec>,
    heap: BinaryHeap<Reverse<Key>>,
    seq: u64,
    state: ReplicaEvents,
    /// Load that finished since the last synchronisation (requests, tokens).
    finished_load: (u32, u64),
    done: Vec<RequestRecord>,
    steps: Vec<StepRow>,
    decode_steps: u64,
    preemptions: u64,
    events: u64,
}

impl Lane {
    fn push(&mut self, time: Nanos, class: EventClass) {
        self.seq += 1;
        self.heap.push(Reverse(Key {
            time,
            class,
            seq: self.seq,
        }));
    }

    /// Time of its next event, if any.
    fn next_time(&self) -> Option<Nanos> {
        let a = self.queue.front().map(|r| r.arrival_ns);
        let h = self.heap.peek().map(|Reverse(k)| k.time);
        match (a, h) {
            (Some(a), Some(h)) => Some(a.min(h)),
            (x, None) | (None, x) => x,
        }
    }

    /// Processes its events before `end`, in the sequential loop's order for one replica.
    fn advance(
        &mut self,
        end: Nanos,
        policy: &str,
        slo: &SloConfig,
        record_steps: bool,
    ) -> Result<(), SimError> {
        loop {
            let a = self
                .queue
                .front()
                .map(|r| (r.arrival_ns, EventClass::Arrival));
            let h = self.heap.peek().map(|Reverse(k)| (k.time, k.class));
            let take_arrival = match (a, h) {
                (None, None) => return Ok(()),
                (Some(a), None) => {
                    if a.0 >= end {
                        return Ok(());
                    }
                    true
                }
                (None, Some(h)) => {
                    if h.0 >= end {
                        return Ok(());
                    }
                    false
                }
                (Some(a), Some(h)) => {
                    if a.0.min(h.0) >= end {
                        return Ok(());
                    }
                    a < h
                }
            };
            self.events += 1;
            if take_arrival {
                let Some(req) = self.queue.pop_front() else {
                    return Ok(());
                };
                let now = req.arrival_ns;
                if self.state.arrive(&mut self.replica, req)? {
                    self.push(now, EventClass::Schedule);
                }
                continue;
            }
            let Some(Reverse(key)) = self.heap.pop() else {
                return Ok(());
            };
            let now = key.time;
            match key.class {
                EventClass::StepEnd => {
                    if let Some((reqs, tokens)) = self.state.step_ended() {
                        self.finished_load.0 += reqs;
                        self.finished_load.1 += tokens;
                    }
                    self.push(now, EventClass::Schedule);
                }
                EventClass::Schedule => {
                    let (index, done) = (self.index, &mut self.done);
                    let step = self.state.schedule(&mut self.replica, now, |f| {
                        done.push(RequestRecord::from_finished(&f, index, policy, slo));
                        Ok(())
                    })?;
                    let Some(step) = step else {
                        continue;
                    };
                    self.preemptions += step.report.preempted as u64;
                    self.decode_steps += step.decode_steps;
                    let end_ns = step.report.end_ns;
                    if record_steps {
                        self.steps.push(StepRow {
                            replica: self.index,
                            report: step.report,
                        });
                    }
                    self.push(end_ns, EventClass::StepEnd);
                }
                EventClass::Arrival => unreachable!("arrivals are not queued"),
            }
        }
    }
}

/// The parallel mode: simulated time is cut into windows of `dt`; at the start of each window the
/// router places every arrival of the window (seeing replica loads as of the window's start, plus the
/// requests it has itself placed since), then every replica advances through the window on its own,
/// in parallel (rayon), in exactly the order the sequential loop would process its events.
///
/// What can differ from [`simulate_sequential`]: only routing. A replica's trajectory depends on
/// nothing but the requests routed to it, so with a router that ignores load
/// ([`Router::stateless`]: round robin, hash) every request's record is identical. A load-aware
/// router sees, for each replica, `outstanding` too high by at most the requests that replica
/// finished since the window's start (and `outstanding_tokens` by their tokens): completions are
/// applied at the next synchronisation instead of at their step end. Steps of one replica keep their
/// order in `steps.csv`; rows of different replicas are grouped by window.
#[allow(clippy::too_many_arguments)]
fn simulate_windows(
    replicas: Vec<Replica>,
    mut router: Box<dyn Router>,
    requests: &mut dyn Iterator<Item = Result<RequestSpec, SimError>>,
    total: usize,
    policy: &str,
    slo: &SloConfig,
    opts: &SimOptions,
    sink: &mut (dyn SimSink + Send),
    dt: Nanos,
) -> Result<SimStats, SimError> {
    let dt = dt.max(1);
    let n = replicas.len();
    let mut lanes: Vec<Lane> = replicas
        .into_iter()
        .enumerate()
        .map(|(i, replica)| Lane {
            replica,
            index: i as u32,
            queue: VecDeque::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            state: ReplicaEvents::default(),
            finished_load: (0, 0),
            done: Vec::new(),
            steps: Vec::new(),
            decode_steps: 0,
            preemptions: 0,
            events: 0,
        })
        .collect();
    let mut loads = vec![ReplicaLoad::default(); n];
    let mut rng = stream(opts.seed, "routing", 0);
    let mut out = SimStats::default();
    let (mut pulled, mut last) = (0usize, 0);
    let mut next = pull(requests, &mut pulled, &mut last)?;
    // Rows of the last window, not yet handed to the sink.
    let mut ready: Vec<RequestRecord> = Vec::new();
    let mut ready_steps: Vec<StepRow> = Vec::new();
    fn drain(
        sink: &mut (dyn SimSink + Send),
        done: &mut Vec<RequestRecord>,
        steps: &mut Vec<StepRow>,
    ) -> Result<usize, SimError> {
        let n = done.len();
        for rec in done.drain(..) {
            sink.request(rec)?;
        }
        for row in steps.drain(..) {
            sink.step(row)?;
        }
        Ok(n)
    }
    let report = |out: &mut SimStats, n: usize| {
        out.finished += n;
        if n > 0 {
            if let Some(p) = opts.progress {
                p(out.finished, total);
            }
        }
    };
    loop {
        if opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            out.interrupted = true;
            break;
        }
        // The window starts at the earliest pending event.
        let start = lanes
            .iter()
            .filter_map(Lane::next_time)
            .chain(next.as_ref().map(|r| r.arrival_ns))
            .min();
        let Some(start) = start else {
            break;
        };
        let end = start.saturating_add(dt);
        out.windows += 1;
        while let Some(req) = next.take_if(|r| r.arrival_ns < end) {
            next = pull(requests, &mut pulled, &mut last)?;
            out.arrived += 1;
            let r = router.route(&req, &loads, &mut rng).replica.min(n - 1);
            loads[r].outstanding += 1;
            loads[r].outstanding_tokens += (req.prompt_tokens + req.output_tokens) as u64;
            lanes[r].queue.push_back(req);
        }
        // The replicas advance through this window while the sink takes the previous one's rows.
        let (advanced, drained) = rayon::join(
            || {
                lanes
                    .par_iter_mut()
                    .try_for_each(|l| l.advance(end, policy, slo, opts.record_steps))
            },
            || drain(sink, &mut ready, &mut ready_steps),
        );
        advanced?;
        report(&mut out, drained?);
        for (l, load) in lanes.iter_mut().zip(loads.iter_mut()) {
            let (reqs, tokens) = std::mem::take(&mut l.finished_load);
            load.outstanding -= reqs;
            load.outstanding_tokens -= tokens;
            ready.append(&mut l.done);
            ready_steps.append(&mut l.steps);
        }
    }
    let drained = drain(sink, &mut ready, &mut ready_steps)?;
    report(&mut out, drained);
    for l in &lanes {
        out.decode_steps += l.decode_steps;
        out.preemptions += l.preemptions;
        out.events += l.events;
    }
    out.admission_peak = lanes
        .iter()
        .map(|l| l.replica.engine.admission_peak())
        .max()
        .unwrap_or(0);
    if out.interrupted {
        return Ok(out);
    }
    if let Some(stuck) = lanes.iter().position(|l| l.replica.engine.has_work()) {
        return Err(SimError::Config(format!(
            "simulation stalled: replica {stuck} still has requests it cannot schedule"
        )));
    }
    Ok(out)
}
