//! The live backend: the engine core's [`Backend`] on real models and the wall clock.
//!
//! The engine (`specsim_core::engine::Engine`) decides what runs — admission, prefill chunks, how many
//! tokens each sequence drafts, KV block accounting — and knows tokens only as counts. This backend keeps
//! the token ids: each request is [`LiveBackend::register`]ed with its prompt and sampling settings under
//! its request id before it is added to the engine, and its output is read back with
//! [`LiveBackend::take_new_tokens`] (streaming) or [`LiveBackend::remove`] (at the end).
//!
//! Per sequence the backend holds the token history (prompt, then output), a target KV cache, a draft KV
//! cache, the request's [`Sampler`], and the draft tokens of the current step. The engine's calls map to
//! model work as follows:
//!
//! - [`Backend::draft`] at position 0 feeds the draft model every token it has not seen (the whole prompt
//!   the first time, then the one or two tokens emitted by the last verification) and proposes one token;
//!   at later positions it feeds the previous draft token. One ragged forward for all drafting sequences.
//!   With an n-gram drafter there is no forward: each sequence looks up its own history.
//! - [`Backend::target`] runs one ragged target forward over prefill chunks (logits of a chunk's last
//!   token when it completes the prefill) and verifications (the last emitted token plus the first
//!   `drafted` draft tokens, logits at every position). Verification is greedy for greedy requests and
//!   rejection sampling otherwise ([`crate::verify`]). Then both KV caches are truncated to what was
//!   accepted — rollback — and the emitted tokens are appended to the history. An end-of-sequence token
//!   (unless the request ignores it) or a [`LiveBackend::cancel`] reports `stop`.
//! - [`Backend::release`] drops the KV caches (the sequence finished or was preempted for recompute; a
//!   recompute prefills the history again) but keeps the history until [`LiveBackend::remove`].
//!
//! Times are measured with a monotonic clock ([`std::time::Instant`]) around the whole call, sampling and
//! verification included.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use specsim_core::engine::{
    Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetOutcome, TargetResult, TargetWork,
};
use specsim_core::time::Nanos;
use specsim_core::CoreError;

use crate::drafter::model::{DraftInput, ModelDrafter};
use crate::drafter::ngram::NgramDrafter;
use crate::drafter::DraftToken;
use crate::error::{Result, RuntimeError};
use crate::model::{ForwardItem, KvCache, LogitRows, Logits, Model};
use crate::sampling::{Sampler, SamplingParams};
use crate::verify::{verify_greedy, verify_rejection, DraftDist, Verdict};

/// Where draft tokens come from.
#[derive(Debug, Clone)]
pub enum DraftSource {
    /// No drafter: only the `none` policy can run.
    None,
    /// A draft model.
    Model(ModelDrafter),
    /// N-gram lookup in the sequence's own history.
    Ngram(NgramDrafter),
}

/// Everything the backend keeps about one sequence.
#[derive(Debug)]
struct SeqState {
    /// Prompt, then output tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    sampler: Sampler,
    ignore_eos: bool,
    target_kv: Option<KvCache>,
    draft_kv: Option<KvCache>,
    /// Draft tokens proposed this step.
    drafts: Vec<DraftToken>,
    /// Of those, how many were fed into the draft KV cache (all but the last, for a draft model).
    drafts_fed: usize,
    /// Output tokens already handed out by `take_new_tokens`.
    streamed: usize,
    cancelled: bool,
}

/// The live backend. See the module docs.
pub struct LiveBackend {
    target: Arc<Model>,
    draft: DraftSource,
    eos: Option<u32>,
    seqs: HashMap<SeqId, SeqState>,
}

fn backend_err(e: RuntimeError) -> CoreError {
    CoreError::Backend(e.to_string())
}

fn elapsed_ns(start: Instant) -> Nanos {
    start.elapsed().as_nanos() as Nanos
}

impl LiveBackend {
    /// A backend over a target model and a drafter. The end-of-sequence token is the target's
    /// `tokenizer.ggml.eos_token_id` (change it with [`LiveBackend::set_eos`]).
    pub fn new(target: Arc<Model>, draft: DraftSource) -> Result<Self> {
        if let DraftSource::Model(d) = &draft {
            if d.model().config().vocab != target.config().vocab {
                return Err(RuntimeError::InvalidInput(format!(
                    "draft vocabulary {} differs from target vocabulary {}",
                    d.model().config().vocab,
                    target.config().vocab
                )));
            }
        }
        let eos = target.config().eos_token_id;
        Ok(Self {
            target,
            draft,
            eos,
            seqs: HashMap::new(),
        })
    }

    /// Sets (or clears) the end-of-sequence token.
    pub fn set_eos(&mut self, eos: Option<u32>) {
        self.eos = eos;
    }

    /// The target model.
    pub fn target(&self) -> &Model {
        &self.target
    }

    /// Registers a request before it is added to the engine under the same id.
    pub fn register(
        &mut self,
        seq: SeqId,
        prompt: Vec<u32>,
        sampling: SamplingParams,
        ignore_eos: bool,
    ) -> Result<()> {
        if prompt.is_empty() {
            return Err(RuntimeError::InvalidInput("empty prompt".into()));
        }
        let vocab = self.target.config().vocab;
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(RuntimeError::InvalidInput(format!(
                "prompt token {bad} outside the vocabulary of {vocab}"
            )));
        }
        if self.seqs.contains_key(&seq) {
            return Err(RuntimeError::InvalidInput(format!(
                "sequence {seq} is already registered"
            )));
        }
        let state = SeqState {
            prompt_len: prompt.len(),
            tokens: prompt,
            sampler: Sampler::new(sampling)?,
            ignore_eos,
            target_kv: None,
            draft_kv: None,
            drafts: Vec::new(),
            drafts_fed: 0,
            streamed: 0,
            cancelled: false,
        };
        self.seqs.insert(seq, state);
        Ok(())
    }

    /// Output tokens emitted so far.
    pub fn output(&self, seq: SeqId) -> Option<&[u32]> {
        self.seqs.get(&seq).map(|s| &s.tokens[s.prompt_len..])
    }

    /// Output tokens emitted since the last call (for streaming).
    pub fn take_new_tokens(&mut self, seq: SeqId) -> Vec<u32> {
        match self.seqs.get_mut(&seq) {
            Some(s) => {
                let out = s.tokens[s.prompt_len + s.streamed..].to_vec();
                s.streamed += out.len();
                out
            }
            None => Vec::new(),
        }
    }

    /// Asks for the sequence to end: its next target outcome reports `stop`, so the engine retires it and
    /// frees its KV blocks.
    pub fn cancel(&mut self, seq: SeqId) {
        if let Some(s) = self.seqs.get_mut(&seq) {
            s.cancelled = true;
        }
    }

    /// Forgets a sequence entirely and returns its output tokens.
    pub fn remove(&mut self, seq: SeqId) -> Option<Vec<u32>> {
        self.seqs
            .remove(&seq)
            .map(|s| s.tokens[s.prompt_len..].to_vec())
    }

    /// Sequences registered and not removed.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether no sequence is registered.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Tokens held in target KV caches, over all sequences.
    pub fn target_kv_tokens(&self) -> usize {
        self.seqs
            .values()
            .filter_map(|s| s.target_kv.as_ref())
            .map(KvCache::len)
            .sum()
    }

    /// Bytes allocated by all KV caches, target and draft.
    pub fn kv_allocated_bytes(&self) -> usize {
        self.seqs
            .values()
            .flat_map(|s| [s.target_kv.as_ref(), s.draft_kv.as_ref()])
            .flatten()
            .map(KvCache::allocated_bytes)
            .sum()
    }

    /// Takes the states of `ids` out of the map (in order), so that several can be borrowed mutably.
    fn take(&mut self, ids: impl Iterator<Item = SeqId>) -> Result<Vec<(SeqId, SeqState)>> {
        let mut out: Vec<(SeqId, SeqState)> = Vec::new();
        for id in ids {
            match self.seqs.remove(&id) {
                Some(s) => out.push((id, s)),
                None => {
                    self.put_back(out);
                    return Err(RuntimeError::InvalidInput(format!(
                        "sequence {id} is not registered (or appears twice)"
                    )));
                }
            }
        }
        Ok(out)
    }

    fn put_back(&mut self, states: Vec<(SeqId, SeqState)>) {
        self.seqs.extend(states);
    }

    fn draft_impl(
        &self,
        items: &[DraftItem],
        states: &mut [(SeqId, SeqState)],
    ) -> Result<Vec<f32>> {
        for (item, (_, st)) in items.iter().zip(states.iter_mut()) {
            if item.position == 0 {
                st.drafts.clear();
                st.drafts_fed = 0;
            }
            if st.drafts.len() != item.position as usize {
                return Err(RuntimeError::InvalidInput(format!(
                    "draft position {} but {} drafts so far",
                    item.position,
                    st.drafts.len()
                )));
            }
            if st.tokens.len() != item.context_tokens as usize + 1 {
                return Err(RuntimeError::InvalidInput(format!(
                    "engine says {} tokens in KV, backend history has {}",
                    item.context_tokens,
                    st.tokens.len()
                )));
            }
        }
        let proposals: Vec<DraftToken> = match &self.draft {
            DraftSource::None => {
                return Err(RuntimeError::InvalidInput("no drafter configured".into()))
            }
            DraftSource::Ngram(d) => states
                .iter()
                .map(|(_, st)| {
                    let mut ctx = st.tokens.clone();
                    ctx.extend(st.drafts.iter().map(|d| d.token));
                    let last = ctx.last().copied().unwrap_or(0);
                    // No earlier occurrence: propose repeating the last token with confidence 0, which
                    // every confidence-aware policy reads as "stop drafting".
                    let (token, confidence) = d.propose(&ctx).unwrap_or((last, 0.0));
                    DraftToken {
                        token,
                        confidence,
                        dist: None,
                    }
                })
                .collect(),
            DraftSource::Model(d) => {
                let model = d.model();
                let mut feeds: Vec<Vec<u32>> = Vec::with_capacity(states.len());
                for (_, st) in states.iter_mut() {
                    let kv = st.draft_kv.get_or_insert_with(|| model.new_cache());
                    match st.drafts.last() {
                        None => {
                            // Catch up on everything emitted since the draft last ran; keep at least the
                            // last token to feed, to get a row to propose from.
                            let seen = kv.len().min(st.tokens.len() - 1);
                            kv.truncate(seen)?;
                            feeds.push(st.tokens[seen..].to_vec());
                        }
                        Some(prev) => {
                            feeds.push(vec![prev.token]);
                            st.drafts_fed += 1;
                        }
                    }
                }
                let mut inputs: Vec<DraftInput> = states
                    .iter_mut()
                    .zip(&feeds)
                    .filter_map(|((_, st), feed)| {
                        let SeqState {
                            draft_kv, sampler, ..
                        } = st;
                        draft_kv.as_mut().map(|cache| DraftInput {
                            cache,
                            feed,
                            sampler,
                        })
                    })
                    .collect();
                d.propose(&mut inputs)?
            }
        };
        let mut confidences = Vec::with_capacity(proposals.len());
        for ((_, st), p) in states.iter_mut().zip(proposals) {
            confidences.push(p.confidence);
            st.drafts.push(p);
        }
        Ok(confidences)
    }

    fn target_impl(
        &self,
        items: &[TargetItem],
        states: &mut [(SeqId, SeqState)],
    ) -> Result<Vec<TargetOutcome>> {
        // What each item feeds.
        let mut feeds: Vec<Vec<u32>> = Vec::with_capacity(items.len());
        let mut wants: Vec<LogitRows> = Vec::with_capacity(items.len());
        for (item, (id, st)) in items.iter().zip(states.iter_mut()) {
            let kv = st.target_kv.get_or_insert_with(|| self.target.new_cache());
            match item.work {
                TargetWork::Prefill { start, len, last } => {
                    let (start, len) = (start as usize, len as usize);
                    if start == 0 {
                        kv.clear();
                    }
                    if kv.len() != start || start + len > st.tokens.len() || len == 0 {
                        return Err(RuntimeError::InvalidInput(format!(
                            "sequence {id}: prefill {start}..{} with {} cached of {} tokens",
                            start + len,
                            kv.len(),
                            st.tokens.len()
                        )));
                    }
                    feeds.push(st.tokens[start..start + len].to_vec());
                    wants.push(if last {
                        LogitRows::Last
                    } else {
                        LogitRows::None
                    });
                }
                TargetWork::Verify { drafted } => {
                    let ctx = item.context_tokens as usize;
                    let k = drafted as usize;
                    if kv.len() != ctx || st.tokens.len() != ctx + 1 || k > st.drafts.len() {
                        return Err(RuntimeError::InvalidInput(format!(
                            "sequence {id}: verify {k} drafts of {} with {} cached, engine says {ctx}, history {}",
                            st.drafts.len(),
                            kv.len(),
                            st.tokens.len()
                        )));
                    }
                    let mut feed = vec![st.tokens[ctx]];
                    feed.extend(st.drafts[..k].iter().map(|d| d.token));
                    feeds.push(feed);
                    wants.push(LogitRows::All);
                }
            }
        }
        let logits = {
            let mut fwd: Vec<ForwardItem> = states
                .iter_mut()
                .zip(feeds.iter().zip(&wants))
                .filter_map(|((_, st), (feed, &logits))| {
                    st.target_kv.as_mut().map(|cache| ForwardItem {
                        cache,
                        tokens: feed,
                        logits,
                    })
                })
                .collect();
            self.target.forward(&mut fwd)?
        };
        let mut outcomes = Vec::with_capacity(items.len());
        for (i, (item, (_, st))) in items.iter().zip(states.iter_mut()).enumerate() {
            let outcome = match item.work {
                TargetWork::Prefill { last: false, .. } => TargetOutcome::default(),
                TargetWork::Prefill { last: true, .. } => {
                    let row = logits
                        .last(i)
                        .ok_or_else(|| RuntimeError::InvalidInput("no prefill row".into()))?;
                    let next = st.sampler.next(row)?;
                    self.emit(st, &[next], 0)
                }
                TargetWork::Verify { drafted } => {
                    let ctx = item.context_tokens as usize;
                    let k = drafted as usize;
                    let verdict = verify(st, &logits, i, k)?;
                    let a = verdict.accepted;
                    if let Some(kv) = st.target_kv.as_mut() {
                        kv.truncate(ctx + 1 + a)?;
                    }
                    if let Some(kv) = st.draft_kv.as_mut() {
                        let valid = kv.len().min(ctx + 1 + a.min(st.drafts_fed));
                        kv.truncate(valid)?;
                    }
                    let mut emitted: Vec<u32> = st.drafts[..a].iter().map(|d| d.token).collect();
                    emitted.push(verdict.next);
                    st.drafts.clear();
                    st.drafts_fed = 0;
                    self.emit(st, &emitted, a)
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Appends emitted tokens to the history, cutting at an end-of-sequence token.
    fn emit(&self, st: &mut SeqState, emitted: &[u32], accepted: usize) -> TargetOutcome {
        let eos_at = match self.eos {
            Some(eos) if !st.ignore_eos => emitted.iter().position(|&t| t == eos),
            _ => None,
        };
        let n = eos_at.map_or(emitted.len(), |e| e + 1);
        st.tokens.extend_from_slice(&emitted[..n]);
        // An end-of-sequence token among the accepted drafts counts as the step's "+1" token.
        let accepted = accepted.min(n - 1);
        TargetOutcome {
            accepted: accepted as u32,
            emitted: n as u32,
            stop: eos_at.is_some() || st.cancelled,
        }
    }
}

/// Verifies a sequence's first `k` drafts against its rows of `logits` (item `i`).
fn verify(st: &mut SeqState, logits: &Logits, i: usize, k: usize) -> Result<Verdict> {
    let rows: Vec<&[f32]> = (0..=k).filter_map(|j| logits.row(i, j)).collect();
    if rows.len() != k + 1 {
        return Err(RuntimeError::InvalidInput(format!(
            "verification of {k} drafts got {} rows",
            rows.len()
        )));
    }
    let drafts: Vec<u32> = st.drafts[..k].iter().map(|d| d.token).collect();
    if st.sampler.params().is_greedy() {
        return verify_greedy(&drafts, &rows);
    }
    let p: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| st.sampler.distribution(r))
        .collect::<Result<_>>()?;
    let p_refs: Vec<&[f32]> = p.iter().map(Vec::as_slice).collect();
    let q: Vec<DraftDist> = st.drafts[..k].iter().map(DraftToken::draft_dist).collect();
    verify_rejection(&drafts, &q, &p_refs, st.sampler.rng())
}

impl Backend for LiveBackend {
    fn draft(&mut self, items: &[DraftItem]) -> std::result::Result<DraftResult, CoreError> {
        let start = Instant::now();
        let mut states = self
            .take(items.iter().map(|i| i.seq))
            .map_err(backend_err)?;
        let res = self.draft_impl(items, &mut states);
        self.put_back(states);
        Ok(DraftResult {
            confidences: res.map_err(backend_err)?,
            elapsed_ns: elapsed_ns(start),
        })
    }

    fn target(&mut self, items: &[TargetItem]) -> std::result::Result<TargetResult, CoreError> {
        let start = Instant::now();
        let mut states = self
            .take(items.iter().map(|i| i.seq))
            .map_err(backend_err)?;
        let res = self.target_impl(items, &mut states);
        self.put_back(states);
        Ok(TargetResult {
            outcomes: res.map_err(backend_err)?,
            elapsed_ns: elapsed_ns(start),
        })
    }

    fn release(&mut self, seq: SeqId) {
        if let Some(st) = self.seqs.get_mut(&seq) {
            st.target_kv = None;
            st.draft_kv = None;
            st.drafts.clear();
            st.drafts_fed = 0;
        }
    }
}
