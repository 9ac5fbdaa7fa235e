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
use router::{ReplicaLoad, Router};
use specsim_core::engine::{Backend, Engine};
use specsim_core::rng::stream;
use specsim_core::time::{ns_to_secs, Nanos};
use specsim_core::workload::Workload;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

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
    /// Closed loop: keep this many requests in flight. The first `concurrency` requests arrive at their
    /// own times (a ramp-up; all at 0 for a burst); after that each time a request finishes the next
    /// one (in workload order) arrives at that instant (its TTFT counts from then), whatever its own
    /// time. None: open loop, requests arrive at their own times.
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

/// Runs `workload` through `replicas` behind `router` until every request finishes.
pub fn simulate(
    mut replicas: Vec<Replica>,
    mut router: Box<dyn Router>,
    workload: &Workload,
    policy: &str,
    slo: &SloConfig,
    opts: &SimOptions,
) -> Result<SimOutput, SimError> {
    if replicas.is_empty() {
        return Err(SimError::Config("cluster has no replicas".into()));
    }
    if opts.concurrency == Some(0) {
        return Err(SimError::Config(
            "trace.concurrency must be at least 1".into(),
        ));
    }
    let n = replicas.len();
    let total = workload.len();
    let mut loads = vec![ReplicaLoad::default(); n];
    // Load to subtract from a replica when its in-flight step ends.
    let mut in_flight: Vec<Option<(u32, u64)>> = vec![None; n];
    let mut schedule_pending = vec![false; n];
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
    let mut records: Vec<Option<RequestRecord>> = vec![None; total];
    let mut out = SimOutput {
        records: Vec::new(),
        steps: Vec::new(),
        decode_steps: 0,
        preemptions: 0,
        events: 0,
        stopped_early: false,
        admission_peak: 0,
    };
    let mut misses = 0usize;
    let mut next_arrival = 0usize;
    let mut now: Nanos = 0;
    let mut done = 0usize;
    // Closed loop: requests released (by a finish) but not yet delivered, as (time, index).
    let mut released: BinaryHeap<Reverse<(Nanos, usize)>> = BinaryHeap::new();
    if let Some(c) = opts.concurrency {
        for (i, r) in workload.requests.iter().take(c as usize).enumerate() {
            released.push(Reverse((r.arrival_ns, i)));
        }
        next_arrival = (c as usize).min(total);
    }

    loop {
        // The next event is the earlier of the next arrival and the heap top, ordered by (time, class).
        let next: Option<(Nanos, usize)> = if opts.concurrency.is_some() {
            released.peek().map(|Reverse(x)| *x)
        } else {
            workload
                .requests
                .get(next_arrival)
                .map(|r| (r.arrival_ns, next_arrival))
        };
        let arrival_key = next.map(|(time, _)| Key {
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
            let Some((time, idx)) = next else { break };
            let mut req = workload.requests[idx].clone();
            if opts.concurrency.is_some() {
                released.pop();
                req.arrival_ns = time;
            } else {
                next_arrival += 1;
            }
            let req = &req;
            debug_assert!(req.arrival_ns >= now, "clock went backwards");
            now = req.arrival_ns;
            let r = router.route(req, &loads, &mut rng).replica.min(n - 1);
            loads[r].outstanding += 1;
            loads[r].outstanding_tokens += (req.prompt_tokens + req.output_tokens) as u64;
            replicas[r].engine.add_request(req.clone())?;
            if in_flight[r].is_none() && !schedule_pending[r] {
                schedule_pending[r] = true;
                push(&mut heap, now, EventClass::Schedule, r);
            }
            continue;
        }
        let Reverse((key, r)) = heap.pop().expect("peeked");
        debug_assert!(key.time >= now, "clock went backwards");
        now = key.time;
        match key.class {
            EventClass::StepEnd => {
                if let Some((reqs, tokens)) = in_flight[r].take() {
                    loads[r].outstanding -= reqs;
                    loads[r].outstanding_tokens -= tokens;
                }
                schedule_pending[r] = true;
                push(&mut heap, now, EventClass::Schedule, r);
            }
            EventClass::Schedule => {
                schedule_pending[r] = false;
                let rep = &mut replicas[r];
                let Some(report) = rep.engine.step(now, rep.backend.as_mut())? else {
                    continue;
                };
                out.preemptions += report.preempted as u64;
                let (mut reqs, mut tokens) = (0u32, 0u64);
                for f in rep.engine.drain_finished() {
                    reqs += 1;
                    tokens += (f.spec.prompt_tokens + f.spec.output_tokens) as u64;
                    out.decode_steps += f.verify_steps as u64;
                    let id = f.spec.id as usize;
                    let rec = RequestRecord::from_finished(&f, r as u32, policy, slo);
                    misses += usize::from(!rec.slo_met);
                    if opts.concurrency.is_some() && next_arrival < total {
                        released.push(Reverse((f.finish_ns, next_arrival)));
                        next_arrival += 1;
                    }
                    match records.get_mut(id) {
                        Some(slot @ None) => *slot = Some(rec),
                        _ => {
                            return Err(SimError::Backend(format!(
                                "request {id} finished twice or is unknown"
                            )))
                        }
                    }
                    done += 1;
                }
                if reqs > 0 {
                    if let Some(p) = opts.progress {
                        p(done, total);
                    }
                }
                in_flight[r] = Some((reqs, tokens));
                if opts.record_steps {
                    out.steps.push(StepRow {
                        replica: r as u32,
                        report: report.clone(),
                    });
                }
                push(&mut heap, report.end_ns, EventClass::StepEnd, r);
                if opts.stop_after_misses.is_some_and(|m| {
                    misses >= m || misses + late_waiting(&replicas, now, slo, m - misses) >= m
                }) {
                    out.stopped_early = true;
                    out.admission_peak = peak(&replicas);
                    out.records = records.into_iter().flatten().collect();
                    return Ok(out);
                }
            }
            EventClass::Arrival => unreachable!("arrivals are not queued"),
        }
    }
    if let Some(stuck) = replicas.iter().position(|r| r.engine.has_work()) {
        return Err(SimError::Config(format!(
            "simulation stalled: replica {stuck} still has requests it cannot schedule"
        )));
    }
    out.admission_peak = peak(&replicas);
    out.records = records.into_iter().flatten().collect();
    if out.records.len() != total {
        return Err(SimError::Backend(format!(
            "{} of {} requests finished",
            out.records.len(),
            total
        )));
    }
    Ok(out)
}
