//! The engine core: continuous batching with speculative decoding, written once and run against a
//! [`Backend`] (simulated or live).
//!
//! One call to [`Engine::step`] is one iteration of a vLLM-style scheduler:
//!
//! 1. **Admission** (FCFS): waiting requests enter while `max_num_seqs`, the token budget
//!    `max_batched_tokens` and free KV blocks allow; KV for the whole prefill is allocated on admission.
//! 2. Without chunked prefill an iteration either **prefills** newly admitted requests (no
//!    speculation) or **decodes** the running batch. With chunked prefill, decodes go first and
//!    prefill chunks fill the rest of the token budget in the same target forward.
//! 3. **Decode** reserves one KV slot per sequence, preempting the newest request (recompute) when KV
//!    runs out; then drafts one position at a time, asking the [`SpeculationPolicy`] before each position
//!    and reserving a KV slot per draft token (a sequence that cannot get one stops drafting); lets the
//!    policy trim tails; verifies Σ(k_i + 1) tokens in one target forward; each sequence emits
//!    accepted + 1 tokens and the KV slots of rejected drafts are released.
//!
//! **Prefix caching** (`prefix_caching`, vLLM V1's automatic prefix caching): a request whose prompt
//! carries prefix identity ([`crate::workload::PromptPrefix`]) looks its leading blocks up on admission;
//! the blocks found are shared (their prefill is skipped: the prefill starts after them, and at least
//! the last prompt token is always computed, as vLLM does), and the blocks its prefill fills are cached
//! as each chunk is scheduled. A finished or preempted sequence's cached blocks stay cached until an
//! allocation needs the space (see [`kv`]). The backend is told of each hit before the forward that
//! relies on it ([`Backend::reuse_prefix`]) and may refuse. Requests without prefix identity never touch
//! the cache.

mod backend;
pub mod kv;

pub use backend::{
    Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetOutcome, TargetResult, TargetWork,
};

use crate::cost::CostModel;
use crate::policy::{DraftView, SeqOutcome, SeqView, SpeculationPolicy, StepOutcome};
use crate::shape::Scorer;
use crate::time::Nanos;
use crate::workload::RequestSpec;
use crate::CoreError;
use kv::{BlockManager, PrefixKeys, NO_SLOT};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// Scheduler limits of one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Tokens per KV block (default 16).
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    /// KV blocks available; when absent in a scenario it is derived from GPU memory (roofline models).
    #[serde(default)]
    pub kv_blocks: Option<u32>,
    /// Most sequences in the running batch (default 256).
    #[serde(default = "default_max_num_seqs")]
    pub max_num_seqs: u32,
    /// Token budget of one target forward (default 8192). Without chunked prefill a single prefill longer
    /// than the budget is still admitted when it is alone.
    #[serde(default = "default_max_batched_tokens")]
    pub max_batched_tokens: u32,
    /// Mix prefill chunks into decode iterations (default false, like vLLM 0.6 in the paper).
    #[serde(default)]
    pub chunked_prefill: bool,
    /// Fraction of GPU memory for weights + KV when deriving `kv_blocks` (default 0.9).
    #[serde(default = "default_gpu_util")]
    pub gpu_memory_utilization: f64,
    /// How verification scores drafts: `multi_query` (default; vLLM V1 and the runtime) or
    /// `batch_expansion` (vLLM 0.6 under CUDA graphs, as the SpecServe/AdaSpec fork ran).
    #[serde(default)]
    pub verify_scorer: Scorer,
    /// Automatic prefix caching of prompt blocks the workload names (default true, as in vLLM V1). A
    /// workload without prefix identity runs exactly as with caching off.
    #[serde(default = "default_prefix_caching")]
    pub prefix_caching: bool,
}

fn default_prefix_caching() -> bool {
    true
}

fn default_block_size() -> u32 {
    16
}
fn default_max_num_seqs() -> u32 {
    256
}
fn default_max_batched_tokens() -> u32 {
    8192
}
fn default_gpu_util() -> f64 {
    0.9
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            block_size: default_block_size(),
            kv_blocks: None,
            max_num_seqs: default_max_num_seqs(),
            max_batched_tokens: default_max_batched_tokens(),
            chunked_prefill: false,
            gpu_memory_utilization: default_gpu_util(),
            verify_scorer: Scorer::default(),
            prefix_caching: default_prefix_caching(),
        }
    }
}

/// A request that left the engine, with everything `requests.csv` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedRequest {
    /// The request as it arrived.
    pub spec: RequestSpec,
    /// When its first output token was emitted.
    pub first_token_ns: Nanos,
    /// When its last output token was emitted.
    pub finish_ns: Nanos,
    /// Output tokens emitted (equals `spec.output_tokens` unless the backend stopped it early).
    pub output_tokens: u32,
    /// Draft tokens proposed for it — each cost a draft-forward position — whether verified or
    /// eliminated by the policy before verification.
    pub drafted: u64,
    /// Of those, accepted.
    pub accepted: u64,
    /// Engine iterations it took part in.
    pub steps: u32,
    /// Of those, decode (verification) iterations.
    pub verify_steps: u32,
    /// Times it was preempted and recomputed.
    pub preemptions: u32,
    /// Prompt tokens found in the prefix cache at its first admission (vLLM's `num_cached_tokens`);
    /// `None` when the engine does not cache prefixes or the request carries no prefix identity.
    pub cached_tokens: Option<u32>,
}

/// What kind of iteration a step was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Prompt prefill only.
    Prefill,
    /// Decode (with or without speculation) only.
    Decode,
    /// Decode and prefill chunks in one forward (chunked prefill).
    Mixed,
}

/// Summary of one engine iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Start of the step.
    pub start_ns: Nanos,
    /// End of the step (when its tokens are emitted).
    pub end_ns: Nanos,
    /// Iteration kind.
    pub kind: StepKind,
    /// Sequences in the target forward.
    pub batch: u32,
    /// New tokens in the target forward.
    pub target_tokens: u32,
    /// Largest draft length verified this step.
    pub k_max: u32,
    /// Draft tokens proposed (verified or eliminated before verification).
    pub drafted: u32,
    /// Draft tokens accepted.
    pub accepted: u32,
    /// Time spent in draft forwards.
    pub draft_ns: Nanos,
    /// Requests preempted this step.
    pub preempted: u32,
    /// Requests that finished this step.
    pub finished: u32,
    /// KV blocks in use after the step.
    pub kv_used: u32,
}

/// New tokens a target forward processes: prefill chunk lengths plus k + 1 per verification.
fn forward_tokens(items: &[TargetItem]) -> u32 {
    items
        .iter()
        .map(|t| match t.work {
            TargetWork::Prefill { len, .. } => len,
            TargetWork::Verify { drafted } => drafted + 1,
        })
        .sum()
}

/// A request inside the engine.
#[derive(Debug, Clone)]
struct Seq {
    spec: RequestSpec,
    /// Tokens in the target KV cache.
    kv_tokens: u32,
    /// KV blocks held.
    blocks: u32,
    /// Output tokens emitted.
    generated: u32,
    /// Tokens to prefill on (re-)admission: prompt plus tokens generated before a preemption.
    prefill_target: u32,
    /// Of `prefill_target`, processed so far.
    prefilled: u32,
    first_token_ns: Option<Nanos>,
    drafted: u64,
    accepted: u64,
    steps: u32,
    verify_steps: u32,
    preemptions: u32,
    /// The backend ended the sequence early (end of sequence).
    stopped: bool,
    /// Its named prompt blocks, when the engine caches prefixes and the request names some.
    prefix: Option<Box<SeqPrefix>>,
}

/// A sequence's share of the prefix cache.
#[derive(Debug, Clone)]
struct SeqPrefix {
    keys: PrefixKeys,
    /// Per leading block found in the cache or scheduled for prefill so far, its cache slot
    /// ([`NO_SLOT`] for a block left plain because its content was cached already).
    slots: Vec<u32>,
    /// Of `slots`, those that are not [`NO_SLOT`].
    cached: u32,
    /// Prompt tokens found cached at the first admission.
    first_hit: Option<u32>,
}

impl Seq {
    fn new(spec: RequestSpec) -> Self {
        let prefill_target = spec.prompt_tokens;
        Seq {
            spec,
            kv_tokens: 0,
            blocks: 0,
            generated: 0,
            prefill_target,
            prefilled: 0,
            first_token_ns: None,
            drafted: 0,
            accepted: 0,
            steps: 0,
            verify_steps: 0,
            preemptions: 0,
            stopped: false,
            prefix: None,
        }
    }

    fn remaining(&self) -> u32 {
        if self.stopped {
            return 0;
        }
        self.spec.output_tokens - self.generated
    }

    fn prefill_done(&self) -> bool {
        self.prefilled >= self.prefill_target
    }
}

/// Reused per-step buffers (the hot loop allocates nothing after warm-up).
#[derive(Default)]
struct Scratch {
    decode: Vec<usize>,
    views: Vec<SeqView>,
    confidences: Vec<Vec<f32>>,
    active: Vec<bool>,
    keep: Vec<bool>,
    k: Vec<u32>,
    /// Per decoding sequence, its draft item but for the position, and its KV room.
    drafters: Vec<Drafter>,
    /// This draft position's items: the active sequences', in batch order.
    draft_items: Vec<DraftItem>,
    target_items: Vec<TargetItem>,
    target_owner: Vec<usize>,
    outcomes: Vec<SeqOutcome>,
    /// Prefix-cache hits of this step's admissions, (sequence, tokens), for the backend.
    hits: Vec<(SeqId, u32)>,
    draft_result: DraftResult,
    target_result: TargetResult,
}

/// A decoding sequence as drafting sees it: its draft item (all but the position, fixed for the
/// step) and how many draft positions the KV blocks it holds have room for.
#[derive(Debug, Clone, Copy)]
struct Drafter {
    item: DraftItem,
    /// Draft position `p` fits in the blocks held while `p < room` ([`draft_room`]).
    room: u32,
}

/// How many draft positions fit in `blocks` blocks beside a context of `kv_tokens` and its next
/// token: position `p` needs `kv_tokens + 2 + p` tokens.
fn draft_room(kv: &BlockManager, blocks: u32, kv_tokens: u32) -> u32 {
    kv.tokens_in(blocks)
        .saturating_sub(kv_tokens as u64 + 1)
        .min(u32::MAX as u64) as u32
}

/// One replica's scheduler and speculation controller.
pub struct Engine {
    config: EngineConfig,
    kv: BlockManager,
    policy: Box<dyn SpeculationPolicy>,
    predictor: Arc<dyn CostModel>,
    tpot_slo_ns: Option<Nanos>,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    finished: Vec<FinishedRequest>,
    scratch: Scratch,
    /// Largest running batch an admission check has seen with a request waiting.
    admission_peak: u32,
}

impl Engine {
    /// An engine with `config` limits (its `kv_blocks` must be set), a speculation policy, and the cost
    /// model policies use to predict step times.
    pub fn new(
        config: EngineConfig,
        policy: Box<dyn SpeculationPolicy>,
        predictor: Arc<dyn CostModel>,
    ) -> Result<Self, CoreError> {
        let blocks = config
            .kv_blocks
            .ok_or_else(|| CoreError::Config("engine.kv_blocks is not set".into()))?;
        if config.block_size == 0
            || blocks == 0
            || config.max_num_seqs == 0
            || config.max_batched_tokens == 0
        {
            return Err(CoreError::Config(
                "block_size, kv_blocks, max_num_seqs and max_batched_tokens must be positive"
                    .into(),
            ));
        }
        Ok(Engine {
            kv: BlockManager::new(config.block_size, blocks),
            config,
            policy,
            predictor,
            tpot_slo_ns: None,
            waiting: VecDeque::new(),
            running: Vec::new(),
            finished: Vec::new(),
            scratch: Scratch::default(),
            admission_peak: 0,
        })
    }

    /// Sets the TPOT SLO that SLO-aware policies see for every request.
    pub fn set_tpot_slo(&mut self, slo: Option<Nanos>) {
        self.tpot_slo_ns = slo;
    }

    /// Whether a request of this size can ever run on this engine (its whole context fits in KV).
    pub fn fits(&self, prompt_tokens: u32, output_tokens: u32) -> bool {
        kv::context_fits(
            prompt_tokens as u64 + output_tokens as u64,
            self.kv.total(),
            self.kv.block_size(),
        )
    }

    /// Queues a request. Fails if it can never fit in KV.
    pub fn add_request(&mut self, spec: RequestSpec) -> Result<(), CoreError> {
        if spec.prompt_tokens == 0 || spec.output_tokens == 0 {
            return Err(CoreError::Workload(format!(
                "request {}: prompt and output lengths must be at least 1",
                spec.id
            )));
        }
        if !self.fits(spec.prompt_tokens, spec.output_tokens) {
            return Err(CoreError::Config(format!(
                "request {} needs {} tokens of KV but a replica holds {} ({} blocks of {})",
                spec.id,
                spec.prompt_tokens as u64 + spec.output_tokens as u64,
                self.kv.tokens_in(self.kv.total()),
                self.kv.total(),
                self.kv.block_size()
            )));
        }
        let mut seq = Seq::new(spec);
        if self.config.prefix_caching {
            if let Some(p) = seq.spec.prefix.as_deref() {
                if p.block_tokens == 0 {
                    return Err(CoreError::Workload(format!(
                        "request {}: prefix block_tokens must be at least 1",
                        seq.spec.id
                    )));
                }
                let keys = PrefixKeys::new(
                    p.block_tokens,
                    &p.ids,
                    seq.spec.prompt_tokens,
                    self.config.block_size,
                );
                seq.prefix = Some(Box::new(SeqPrefix {
                    keys,
                    slots: Vec::new(),
                    cached: 0,
                    first_hit: None,
                }));
            }
        }
        self.waiting.push_back(seq);
        Ok(())
    }

    /// Drops a request wherever it is (waiting, or running between steps), releasing its KV blocks and
    /// its backend state. It is not reported as finished. Returns whether the request was found. Used by
    /// live serving when a client disconnects, so a cancelled request is never prefilled.
    pub fn abort<B: Backend + ?Sized>(&mut self, id: SeqId, backend: &mut B) -> bool {
        if let Some(i) = self.waiting.iter().position(|s| s.spec.id == id) {
            let mut seq = self.waiting.remove(i).expect("index is valid");
            release_kv(&mut self.kv, &mut seq);
            return true;
        }
        if let Some(i) = self.running.iter().position(|s| s.spec.id == id) {
            let mut seq = self.running.remove(i);
            release_kv(&mut self.kv, &mut seq);
            backend.release(id);
            return true;
        }
        false
    }

    /// Whether any request is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Requests waiting for admission.
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// Requests in the running batch.
    pub fn running_len(&self) -> usize {
        self.running.len()
    }

    /// KV blocks in use.
    pub fn kv_used(&self) -> u32 {
        self.kv.used()
    }

    /// KV blocks in total.
    pub fn kv_total(&self) -> u32 {
        self.kv.total()
    }

    /// KV blocks free but kept for their cached prefix content (evicted when space is needed).
    pub fn kv_cached_free(&self) -> u32 {
        self.kv.cached_free()
    }

    /// The largest running batch that an admission check has seen while a request was waiting (0 if
    /// no request ever waited for one). `max_num_seqs` has bound admission iff it is at most this.
    /// When it has not, an engine with any `max_num_seqs` above this peak would have made exactly the
    /// same decisions: capacity planning reuses one run for several batch limits that way.
    pub fn admission_peak(&self) -> u32 {
        self.admission_peak
    }

    /// Arrival times of the waiting requests that have not emitted a token yet, in queue order (FCFS:
    /// ascending arrival, except that a request preempted during a chunked prefill returns to the
    /// front).
    pub fn waiting_unstarted_arrivals(&self) -> impl Iterator<Item = Nanos> + '_ {
        self.waiting
            .iter()
            .filter(|s| s.first_token_ns.is_none())
            .map(|s| s.spec.arrival_ns)
    }

    /// The policy's name.
    pub fn policy_name(&self) -> String {
        self.policy.name()
    }

    /// Takes the requests finished since the last call.
    pub fn drain_finished(&mut self) -> Vec<FinishedRequest> {
        std::mem::take(&mut self.finished)
    }

    /// Checks the KV invariant: blocks held by sequences (a shared cached block once) plus cached free
    /// blocks plus free blocks equal the total, and every cached block has as many references as
    /// sequences hold it.
    pub fn check_kv_invariant(&self) -> Result<(), String> {
        let mut holders: std::collections::BTreeMap<u32, u32> = Default::default();
        let mut held: u64 = 0;
        for s in self.running.iter().chain(self.waiting.iter()) {
            let cached = s.prefix.as_deref().map_or(0, |p| p.cached);
            held += (s.blocks - cached) as u64;
            for &slot in s.prefix.iter().flat_map(|p| &p.slots) {
                if slot != NO_SLOT {
                    *holders.entry(slot).or_default() += 1;
                }
            }
        }
        if let Some((slot, n)) = holders.iter().find(|&(&s, &n)| self.kv.refs(s) != n) {
            return Err(format!(
                "cached block {slot} has {} references but {n} holders",
                self.kv.refs(*slot)
            ));
        }
        if holders.len() as u32 != self.kv.cached_held() {
            return Err(format!(
                "{} cached blocks held, the cache counts {}",
                holders.len(),
                self.kv.cached_held()
            ));
        }
        held += holders.len() as u64;
        let (cached_free, free) = (self.kv.cached_free(), self.kv.free());
        if held + cached_free as u64 + free as u64 != self.kv.total() as u64 {
            return Err(format!(
                "held {held} + cached free {cached_free} + free {free} != total {}",
                self.kv.total()
            ));
        }
        Ok(())
    }

    /// Runs one iteration starting at `now`. Returns `None` when there is nothing to do.
    pub fn step<B: Backend + ?Sized>(
        &mut self,
        now: Nanos,
        backend: &mut B,
    ) -> Result<Option<StepReport>, CoreError> {
        if self.config.chunked_prefill {
            return self.step_chunked(now, backend);
        }
        let admitted = self.admit(self.config.max_batched_tokens, true);
        if admitted > 0 {
            return self.prefill_step(now, backend, admitted).map(Some);
        }
        if self.running.is_empty() {
            return Ok(None);
        }
        let mut report = self.decode_step(now, backend, None)?;
        report.kind = StepKind::Decode;
        Ok(Some(report))
    }

    /// Moves waiting requests into the running batch (FCFS) while limits allow; allocates their prefill
    /// KV. With `whole`, each admitted request is prefilled in full this step (non-chunked), counting
    /// against `budget`; otherwise the budget is applied to chunks later. Returns how many were admitted.
    fn admit(&mut self, budget: u32, whole: bool) -> usize {
        let mut used = 0u32;
        let mut n = 0;
        while let Some(seq) = self.waiting.front() {
            self.admission_peak = self.admission_peak.max(self.running.len() as u32);
            if self.running.len() as u32 >= self.config.max_num_seqs {
                break;
            }
            let target = seq.prefill_target;
            let (hit, idle) = self.prefix_hit(seq);
            let need = target - hit * self.kv.block_size();
            if whole && n > 0 && used + need > budget {
                break;
            }
            // Room for the prefill plus the first decode token, so an admitted request can always step.
            let mut blocks = 0;
            if hit == 0 {
                if !self.kv.grow_to(&mut blocks, target + 1) {
                    break;
                }
            } else if !self
                .kv
                .can_allocate(self.kv.blocks_for(target + 1) - hit, idle)
            {
                break;
            }
            let mut seq = self.waiting.pop_front().expect("front exists");
            if let Some(p) = seq.prefix.as_deref_mut() {
                let tokens = hit * self.kv.block_size();
                p.first_hit.get_or_insert(tokens);
                if hit > 0 {
                    // Take the hits before allocating the rest, so that allocation cannot evict them.
                    for j in 0..hit {
                        p.slots.push(self.kv.acquire(p.keys.key(j)));
                    }
                    p.cached = hit;
                    blocks = hit;
                    let grown = self.kv.grow_to(&mut blocks, target + 1);
                    debug_assert!(grown, "can_allocate said the rest fits");
                    seq.prefilled = tokens;
                    seq.kv_tokens = tokens;
                    self.scratch.hits.push((seq.spec.id, tokens));
                }
            }
            seq.blocks = blocks;
            used += need;
            n += 1;
            self.running.push(seq);
            if !whole {
                break;
            }
            // Its whole prefill is scheduled now: later admissions of this step may share its blocks
            // (vLLM V1 caches blocks as it schedules them; their KV is written before any attention
            // of the same forward reads it).
            self.register_prefilled(self.running.len() - 1, target);
        }
        n
    }

    /// A prefill-only iteration over the last `admitted` running sequences.
    fn prefill_step<B: Backend + ?Sized>(
        &mut self,
        now: Nanos,
        backend: &mut B,
        admitted: usize,
    ) -> Result<StepReport, CoreError> {
        let first = self.running.len() - admitted;
        let s = &mut self.scratch;
        s.target_items.clear();
        s.target_owner.clear();
        for (i, seq) in self.running.iter().enumerate().skip(first) {
            s.target_items.push(TargetItem {
                seq: seq.spec.id,
                context_tokens: seq.prefilled,
                work: TargetWork::Prefill {
                    start: seq.prefilled,
                    len: seq.prefill_target - seq.prefilled,
                    last: true,
                },
                category: seq.spec.category,
            });
            s.target_owner.push(i);
        }
        self.announce_hits(backend)?;
        let s = &mut self.scratch;
        let mut res = std::mem::take(&mut s.target_result);
        backend.target_into(&s.target_items, &mut res)?;
        let end = now + res.elapsed_ns;
        let tokens = forward_tokens(&s.target_items);
        let batch = s.target_items.len() as u32;
        let applied = self.apply_target(&res, end, backend);
        self.scratch.target_result = res;
        applied?;
        let finished = self.retire(end, backend);
        Ok(StepReport {
            start_ns: now,
            end_ns: end,
            kind: StepKind::Prefill,
            batch,
            target_tokens: tokens,
            k_max: 0,
            drafted: 0,
            accepted: 0,
            draft_ns: 0,
            preempted: 0,
            finished,
            kv_used: self.kv.used(),
        })
    }

    /// Chunked-prefill iteration: decodes (with speculation) first, prefill chunks fill the budget.
    fn step_chunked<B: Backend + ?Sized>(
        &mut self,
        now: Nanos,
        backend: &mut B,
    ) -> Result<Option<StepReport>, CoreError> {
        if self.running.is_empty() && self.admit(self.config.max_batched_tokens, false) == 0 {
            return Ok(None);
        }
        let report = self.decode_step(now, backend, Some(self.config.max_batched_tokens))?;
        Ok(Some(report))
    }

    /// Makes sure every decoding sequence has a KV slot for its next token, preempting the newest running
    /// sequences (recompute) as needed. Returns how many were preempted.
    fn reserve_decode_slots<B: Backend + ?Sized>(&mut self, backend: &mut B) -> u32 {
        let mut preempted = 0;
        let mut i = 0;
        while i < self.running.len() {
            if !self.running[i].prefill_done() {
                i += 1;
                continue;
            }
            let want = self.running[i].kv_tokens + 1;
            let mut blocks = self.running[i].blocks;
            if self.kv.grow_to(&mut blocks, want) {
                self.running[i].blocks = blocks;
                i += 1;
                continue;
            }
            // Preempt the newest request; if that is this one, it leaves and the loop ends at it.
            let mut victim = self.running.pop().expect("running is non-empty");
            release_kv(&mut self.kv, &mut victim);
            backend.release(victim.spec.id);
            victim.kv_tokens = 0;
            victim.prefilled = 0;
            victim.prefill_target = victim.spec.prompt_tokens + victim.generated;
            victim.preemptions += 1;
            self.waiting.push_front(victim);
            preempted += 1;
        }
        preempted
    }

    /// A decode iteration; with `budget` (chunked prefill) prefill chunks join the target forward.
    ///
    /// Phases, each its own function: reserve a KV slot per decoding sequence (preempting if needed),
    /// see the batch as the policy will, draft position by position, let the policy trim, form the
    /// target batch (verifications, then prefill chunks in what is left of the budget), run it, book
    /// the outcomes, tell the policy, retire finished requests.
    fn decode_step<B: Backend + ?Sized>(
        &mut self,
        now: Nanos,
        backend: &mut B,
        budget: Option<u32>,
    ) -> Result<StepReport, CoreError> {
        let preempted = self.reserve_decode_slots(backend);
        let n = self.view_decode_batch(now);
        let lookahead = self.lookahead(backend, n);
        let (draft_ns, position) =
            self.draft_positions(now, backend, budget, lookahead.as_deref())?;
        self.finalize_drafts(now, position, lookahead.as_deref());
        self.form_verify_batch();
        let kind = match budget {
            Some(b) => self.fill_prefill_chunks(b, n),
            None => StepKind::Decode,
        };
        self.announce_hits(backend)?;
        let s = &mut self.scratch;
        if s.target_items.is_empty() {
            return Err(CoreError::Backend("internal: empty iteration".into()));
        }
        let mut res = std::mem::take(&mut s.target_result);
        backend.target_into(&s.target_items, &mut res)?;
        let end = now + draft_ns + res.elapsed_ns;
        let target_tokens = forward_tokens(&s.target_items);
        let batch = s.target_items.len() as u32;
        let applied = self.apply_target(&res, end, backend);
        if applied.is_ok() {
            self.observe(n, &res, end - now);
        }
        self.scratch.target_result = res;
        let (drafted, accepted) = applied?;
        let k_step = self.scratch.k.iter().copied().max().unwrap_or(0);
        let finished = self.retire(end, backend);
        Ok(StepReport {
            start_ns: now,
            end_ns: end,
            kind,
            batch,
            target_tokens,
            k_max: k_step,
            drafted,
            accepted,
            draft_ns,
            preempted,
            finished,
            kv_used: self.kv.used(),
        })
    }

    /// Fills the scratch views of the decoding sequences (those whose prefill is done): what the policy
    /// sees of each, its draft cap, empty confidences, and whether it may draft at all. Returns how many
    /// sequences decode.
    fn view_decode_batch(&mut self, now: Nanos) -> usize {
        let k_max = self.policy.k_max();
        let s = &mut self.scratch;
        s.decode.clear();
        s.views.clear();
        s.active.clear();
        s.drafters.clear();
        for (i, seq) in self.running.iter().enumerate() {
            if !seq.prefill_done() {
                continue;
            }
            let cap = k_max.min(seq.remaining().saturating_sub(1));
            s.decode.push(i);
            s.active.push(cap > 0);
            s.views.push(SeqView {
                context_tokens: seq.kv_tokens,
                max_draft: cap,
                tokens_out: seq.generated,
                decode_elapsed_ns: seq.first_token_ns.map_or(0, |t| now.saturating_sub(t)),
                tpot_slo_ns: self.tpot_slo_ns,
            });
            if k_max > 0 {
                // (A policy that never drafts needs no drafters.)
                s.drafters.push(Drafter {
                    item: DraftItem {
                        seq: seq.spec.id,
                        context_tokens: seq.kv_tokens,
                        position: 0,
                        category: seq.spec.category,
                    },
                    room: draft_room(&self.kv, seq.blocks, seq.kv_tokens),
                });
            }
        }
        let n = s.decode.len();
        s.confidences.resize_with(n, Vec::new);
        s.confidences.truncate(n);
        s.confidences.iter_mut().for_each(Vec::clear);
        n
    }

    /// The oracle's look at the outcomes: per decoding sequence, how many of its next `k_max` drafts
    /// the target would accept (None unless the policy asks and the backend can tell).
    fn lookahead<B: Backend + ?Sized>(&mut self, backend: &mut B, n: usize) -> Option<Vec<u32>> {
        if !self.policy.needs_lookahead() || n == 0 {
            return None;
        }
        let s = &mut self.scratch;
        s.draft_items.clear();
        s.draft_items.extend(s.drafters.iter().map(|d| d.item));
        backend.lookahead(&s.draft_items, self.policy.k_max())
    }

    /// Drafts one position at a time while any sequence is active: the policy says who continues, each
    /// continuing sequence gets a KV slot and a share of the token budget or stops, and one draft forward
    /// runs over the rest. Returns the drafting time and the number of positions drafted.
    fn draft_positions<B: Backend + ?Sized>(
        &mut self,
        now: Nanos,
        backend: &mut B,
        budget: Option<u32>,
        lookahead: Option<&[u32]>,
    ) -> Result<(Nanos, u32), CoreError> {
        let n = self.scratch.decode.len();
        // Draft-token budget: the target forward must fit decodes (1 token each) plus drafts.
        let mut draft_budget = budget.map(|b| b.saturating_sub(n as u32));
        let mut draft_ns = 0;
        let mut position = 0u32;
        let s = &mut self.scratch;
        let mut drafting = s.active.contains(&true);
        if drafting {
            // On entry to each position the policy's `keep` is the sequences still active.
            s.keep.clone_from(&s.active);
        }
        while drafting {
            let s = &mut self.scratch;
            let view = DraftView {
                now,
                position,
                seqs: &s.views,
                confidences: &s.confidences,
                active: &s.active,
                cost: self.predictor.as_ref(),
                scorer: self.config.verify_scorer,
                lookahead,
            };
            self.policy.draft_next(&view, &mut s.keep);
            self.take_draft_slots(position, &mut draft_budget);
            let s = &mut self.scratch;
            if s.draft_items.is_empty() {
                break;
            }
            backend.draft_into(&s.draft_items, &mut s.draft_result)?;
            let res = &s.draft_result;
            if res.confidences.len() != s.draft_items.len() {
                return Err(CoreError::Backend(format!(
                    "draft returned {} confidences for {} items",
                    res.confidences.len(),
                    s.draft_items.len()
                )));
            }
            draft_ns += res.elapsed_ns;
            // The sequences still active are this forward's items, in order: taking the slots
            // stopped every other one. One pass books their confidences, stops those at their cap
            // (the view's `max_draft`) and sets `keep` for the next position.
            let mut confidences = res.confidences.iter();
            drafting = false;
            let per_seq = s.active.iter_mut().zip(&mut s.keep);
            for ((active, keep), (drafted, view)) in
                per_seq.zip(s.confidences.iter_mut().zip(&s.views))
            {
                if *active {
                    let Some(&p) = confidences.next() else { break };
                    drafted.push(p);
                    if drafted.len() as u32 >= view.max_draft {
                        *active = false;
                    }
                }
                *keep = *active;
                drafting |= *active;
            }
            position += 1;
        }
        Ok((draft_ns, position))
    }

    /// Turns the policy's `keep` into this position's draft items: a sequence drafts if the policy
    /// keeps it, the token budget has room and a KV slot can be had; otherwise it stops for the step.
    fn take_draft_slots(&mut self, position: u32, draft_budget: &mut Option<u32>) {
        let s = &mut self.scratch;
        s.draft_items.clear();
        let per_seq = s.decode.iter().zip(&mut s.drafters);
        for ((&i, drafter), (active, &keep)) in per_seq.zip(s.active.iter_mut().zip(&s.keep)) {
            if !*active {
                continue;
            }
            if !keep || *draft_budget == Some(0) {
                *active = false;
                continue;
            }
            // KV slot for this draft token: context + last token + drafts so far + this one; the
            // blocks are looked at only when those held are full.
            if position >= drafter.room {
                let seq = &mut self.running[i];
                if !self
                    .kv
                    .grow_to(&mut seq.blocks, seq.kv_tokens + 2 + position)
                {
                    *active = false;
                    continue;
                }
                drafter.room = draft_room(&self.kv, seq.blocks, seq.kv_tokens);
            }
            if let Some(b) = draft_budget.as_mut() {
                *b -= 1;
            }
            s.draft_items.push(DraftItem {
                position,
                ..drafter.item
            });
        }
    }

    /// Sets `scratch.k` to each sequence's drafted count, then lets the policy trim tails (the
    /// confidence-prior verifier); a policy can only shorten, never lengthen.
    fn finalize_drafts(&mut self, now: Nanos, position: u32, lookahead: Option<&[u32]>) {
        let s = &mut self.scratch;
        s.k.clear();
        s.k.extend(s.confidences.iter().map(|c| c.len() as u32));
        if s.decode.is_empty() || s.k.iter().all(|&k| k == 0) {
            return;
        }
        let view = DraftView {
            now,
            position,
            seqs: &s.views,
            confidences: &s.confidences,
            active: &s.active,
            cost: self.predictor.as_ref(),
            scorer: self.config.verify_scorer,
            lookahead,
        };
        let mut k = std::mem::take(&mut s.k);
        self.policy.finalize(&view, &mut k);
        for (j, kj) in k.iter_mut().enumerate() {
            *kj = (*kj).min(s.confidences[j].len() as u32);
        }
        s.k = k;
    }

    /// Batch formation, part one: one verification per decoding sequence (k = 0 is a plain decode).
    fn form_verify_batch(&mut self) {
        let s = &mut self.scratch;
        s.target_items.clear();
        s.target_owner.clear();
        for (j, &i) in s.decode.iter().enumerate() {
            let seq = &self.running[i];
            s.target_items.push(TargetItem {
                seq: seq.spec.id,
                context_tokens: seq.kv_tokens,
                work: TargetWork::Verify { drafted: s.k[j] },
                category: seq.spec.category,
            });
            s.target_owner.push(i);
        }
    }

    /// Batch formation, part two (chunked prefill): what the `budget` leaves after `n` verifications
    /// and their drafts goes to prefill chunks — partial prefills first, then new admissions one at a
    /// time. Returns the step's kind.
    fn fill_prefill_chunks(&mut self, budget: u32, n: usize) -> StepKind {
        let used: u32 = n as u32 + self.scratch.k.iter().sum::<u32>();
        let mut left = budget.saturating_sub(used);
        let mut kind = StepKind::Decode;
        let mut i = 0;
        while left > 0 {
            if i >= self.running.len() {
                let before = self.running.len();
                if self.admit(left, false) == 0 {
                    break;
                }
                debug_assert_eq!(self.running.len(), before + 1);
            }
            let seq = &self.running[i];
            if !seq.prefill_done() {
                let len = (seq.prefill_target - seq.prefilled).min(left);
                let last = seq.prefilled + len == seq.prefill_target;
                let upto = seq.prefilled + len;
                self.scratch.target_items.push(TargetItem {
                    seq: seq.spec.id,
                    context_tokens: seq.prefilled,
                    work: TargetWork::Prefill {
                        start: seq.prefilled,
                        len,
                        last,
                    },
                    category: seq.spec.category,
                });
                self.scratch.target_owner.push(i);
                self.register_prefilled(i, upto);
                left -= len;
                kind = if n > 0 {
                    StepKind::Mixed
                } else {
                    StepKind::Prefill
                };
            }
            i += 1;
        }
        kind
    }

    /// Tells the policy what the `n` verifications of a step of `step_ns` accepted.
    fn observe(&mut self, n: usize, res: &TargetResult, step_ns: Nanos) {
        if n == 0 || !self.policy.observes() {
            return;
        }
        let s = &mut self.scratch;
        s.outcomes.clear();
        for (j, o) in res.outcomes.iter().take(n).enumerate() {
            s.outcomes.push(SeqOutcome {
                drafted: s.k[j],
                accepted: o.accepted.min(s.k[j]),
            });
        }
        self.policy.observe(&StepOutcome {
            seqs: &s.outcomes,
            step_ns,
        });
    }

    /// Applies a target forward's outcomes to the sequences in `scratch.target_items`; returns
    /// (drafted, accepted) totals.
    fn apply_target<B: Backend + ?Sized>(
        &mut self,
        res: &TargetResult,
        end: Nanos,
        _backend: &mut B,
    ) -> Result<(u32, u32), CoreError> {
        let s = &self.scratch;
        if res.outcomes.len() != s.target_items.len() {
            return Err(CoreError::Backend(format!(
                "target returned {} outcomes for {} items",
                res.outcomes.len(),
                s.target_items.len()
            )));
        }
        let (mut drafted, mut accepted) = (0, 0);
        for (idx, ((item, &i), o)) in s
            .target_items
            .iter()
            .zip(&s.target_owner)
            .zip(&res.outcomes)
            .enumerate()
        {
            let seq = &mut self.running[i];
            seq.steps += 1;
            match item.work {
                TargetWork::Prefill { len, last, .. } => {
                    seq.prefilled += len;
                    seq.kv_tokens = seq.prefilled;
                    if last {
                        let emit = 1.min(seq.remaining());
                        seq.generated += emit;
                        seq.first_token_ns.get_or_insert(end);
                    }
                }
                TargetWork::Verify { drafted: k } => {
                    let a = o.accepted.min(k);
                    let emit = o.emitted.clamp(1, a + 1).min(seq.remaining());
                    // Verifications come first in the batch, in decode order: item `idx` is decode
                    // sequence `idx`, whose confidences count every draft it proposed — the policy may
                    // have eliminated some before verification, but their draft forwards were paid.
                    let proposed = s.confidences.get(idx).map_or(k, |c| c.len() as u32).max(k);
                    seq.kv_tokens += 1 + a;
                    seq.generated += emit;
                    seq.drafted += proposed as u64;
                    seq.accepted += a as u64;
                    seq.verify_steps += 1;
                    drafted += proposed;
                    accepted += a;
                    // Release the slots of rejected drafts (and of drafts trimmed before verification).
                    self.kv.shrink_to(&mut seq.blocks, seq.kv_tokens + 1);
                }
            }
            if o.stop {
                // The backend ended the sequence (end of sequence): it owes no more tokens.
                seq.stopped = true;
            }
        }
        Ok((drafted, accepted))
    }

    /// Removes finished sequences, releasing their KV; returns how many finished.
    fn retire<B: Backend + ?Sized>(&mut self, end: Nanos, backend: &mut B) -> u32 {
        let mut n = 0;
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].prefill_done() && self.running[i].remaining() == 0 {
                let mut seq = self.running.remove(i);
                let cached_tokens = seq.prefix.as_deref().map(|p| p.first_hit.unwrap_or(0));
                release_kv(&mut self.kv, &mut seq);
                backend.release(seq.spec.id);
                self.finished.push(FinishedRequest {
                    first_token_ns: seq.first_token_ns.unwrap_or(end),
                    finish_ns: end,
                    output_tokens: seq.generated,
                    drafted: seq.drafted,
                    accepted: seq.accepted,
                    steps: seq.steps,
                    verify_steps: seq.verify_steps,
                    preemptions: seq.preemptions,
                    cached_tokens,
                    spec: seq.spec,
                });
                n += 1;
            } else {
                i += 1;
            }
        }
        n
    }

    /// How many leading blocks of a waiting sequence's prefill are cached, short of its last token
    /// (always computed, as in vLLM), and how many of those are free. (0, 0) without prefix identity,
    /// and when even a hit on every cacheable block would leave too little KV to admit it: that spares
    /// the lookup while the queue's head waits for space.
    fn prefix_hit(&self, seq: &Seq) -> (u32, u32) {
        let Some(p) = seq.prefix.as_deref() else {
            return (0, 0);
        };
        let max = ((seq.prefill_target - 1) / self.kv.block_size()).min(p.keys.cacheable());
        let rest = self.kv.blocks_for(seq.prefill_target + 1) - max;
        if max == 0 || rest as u64 > self.kv.free() as u64 + self.kv.cached_free() as u64 {
            return (0, 0);
        }
        self.kv.lookup(p.keys.keys(0), max)
    }

    /// Caches the named blocks of running sequence `i` that its prefill fills up to `upto` tokens, as
    /// vLLM V1 does when it schedules them (a request admitted later may then share them).
    fn register_prefilled(&mut self, i: usize, upto: u32) {
        let Some(p) = self.running[i].prefix.as_deref_mut() else {
            return;
        };
        let full = (upto / self.kv.block_size()).min(p.keys.cacheable());
        for j in p.slots.len() as u32..full {
            let slot = self.kv.register(p.keys.key(j));
            p.cached += u32::from(slot != NO_SLOT);
            p.slots.push(slot);
        }
    }

    /// Tells the backend of this step's prefix-cache hits before the forward that relies on them; a
    /// backend that cannot reuse KV refuses, and the step fails rather than book a hit not taken.
    #[inline]
    fn announce_hits<B: Backend + ?Sized>(&mut self, backend: &mut B) -> Result<(), CoreError> {
        if self.scratch.hits.is_empty() {
            return Ok(());
        }
        for (seq, tokens) in self.scratch.hits.drain(..) {
            backend.reuse_prefix(seq, tokens)?;
        }
        Ok(())
    }
}

/// Returns a sequence's KV blocks: its cached blocks stay cached (the last block first into the LRU
/// order, so a prefix's tail is evicted before its head, as vLLM frees them), the rest go back to the
/// pool.
fn release_kv(kv: &mut BlockManager, seq: &mut Seq) {
    if let Some(p) = seq.prefix.as_deref_mut() {
        for &slot in p.slots.iter().rev() {
            if slot != NO_SLOT {
                kv.release_cached(slot);
            }
        }
        seq.blocks -= p.cached;
        p.slots.clear();
        p.cached = 0;
    }
    kv.release(&mut seq.blocks);
}
