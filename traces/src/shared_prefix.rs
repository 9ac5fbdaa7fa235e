//! inference-perf's `shared_prefix` workload under its staged load: the traffic behind the BLIS,
//! llm-d and Gateway API inference-extension benchmarks of vLLM.
//!
//! What inference-perf sends (its `SharedPrefixDataGenerator`, `LocalUserSession` and load timers,
//! kubernetes-sigs/inference-perf as of February 2026):
//!
//! - **Users.** `system_prompts × users_per_system_prompt` users. Each group draws one system prompt of
//!   `system_prompt_len` tokens; each user draws a question length and an output length once, from the
//!   group's draws. Request `i` of a stage goes to user `order[i mod users]` (a seeded permutation), so
//!   a stage cycles through the users and a user's turn comes round every `users` requests.
//! - **Single turn** (`multi_turn = false`): the prompt is the group's system prompt followed by the
//!   user's question, the same text every time — after the first round every prompt is a repeat, and
//!   a prefix cache serves all of it but the last token.
//! - **Multi-turn**: the prompt is the system prompt, the conversation so far (each earlier turn's
//!   question and answer) and the question again; with `max_model_len`, the oldest turns are dropped
//!   until the prompt fits in `max_model_len − output − 200`, as inference-perf trims history.
//! - **Stages** run one after another. `constant` load sends exactly `⌊rate × duration⌋` requests with
//!   exponential gaps rescaled to sum to the duration (the last request at the stage's end); `poisson`
//!   draws a Poisson count for each second and spreads it over that second the same way. The request
//!   index restarts at 0 in each stage (inference-perf asks its data generator anew per stage), while
//!   conversations carry on.
//!
//! **Not modelled:** inference-perf waits for a stage's requests to finish before the next stage
//! starts; here stage `k + 1` starts `stage_gap_s` after stage `k`'s scheduled end, which differs only
//! when a stage ends with a backlog (an overloaded server). Lengths are the configured token counts;
//! the real client builds text from random token ids, which re-tokenises a few percent longer.
//!
//! **Prefix identity.** Every request carries the ids of its prompt's whole blocks of `block_tokens`
//! tokens ([`specsim_core::workload::PromptPrefix`]): block `b`'s id chains block `b − 1`'s id with the
//! pieces of the prompt's segments (system prompt, question, answer of a turn) that block `b` covers, so
//! equal ids mean equal token prefixes.

use crate::synth::{Column, LengthSampler};
use crate::trace::{PrefixBlocks, Row};
use crate::TraceError;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Exp, Poisson};
use specsim_core::rng::{mix, stream, SimRng};
use specsim_core::time::{secs_to_ns, Nanos};
use specsim_core::workload::{PromptPrefix, Workload};
use specsim_sim::trace_config::{LoadStage, SharedPrefixConfig, StageLoad};
use std::path::Path;

/// Tokens inference-perf keeps free below `max_model_len` beside the output when trimming history.
const HISTORY_MARGIN_TOKENS: u32 = 200;

/// The requests of a shared-prefix workload, as rows plus their prefix-block ids (keyed by row `src`).
pub struct SharedPrefixRows {
    /// One row per request, by arrival.
    pub rows: Vec<Row>,
    /// Prefix-block ids of each row's prompt.
    pub prefix: PrefixBlocks,
    /// Which stage each row belongs to.
    pub stage: Vec<u16>,
}

/// The workload `cfg` describes, with `RequestSpec::prefix` filled.
pub fn shared_prefix_workload(
    cfg: &SharedPrefixConfig,
    base_dir: &Path,
    seed: u64,
) -> Result<Workload, TraceError> {
    let g = generate(cfg, base_dir, seed)?;
    let mut w = Workload::default();
    for (i, r) in g.rows.iter().enumerate() {
        w.push(r.t_ns, r.prompt, r.output, None);
        let ids = g.prefix.blocks(i);
        w.requests[i].prefix = (!ids.is_empty()).then(|| {
            Box::new(PromptPrefix {
                block_tokens: g.prefix.block_tokens,
                ids: ids.into(),
            })
        });
    }
    Ok(w)
}

/// Generates the rows of a shared-prefix workload (arrivals from the first request, which is at 0).
pub fn generate(
    cfg: &SharedPrefixConfig,
    base_dir: &Path,
    seed: u64,
) -> Result<SharedPrefixRows, TraceError> {
    check(cfg)?;
    let users = Users::draw(cfg, base_dir, seed)?;
    let arrivals = staged_arrivals(&cfg.stages, cfg.load, cfg.stage_gap_s, seed);
    let mut conversations = vec![Vec::<Turn>::new(); users.len()];
    let mut turns_taken = vec![0u32; users.len()];
    let mut out = SharedPrefixRows {
        rows: Vec::with_capacity(arrivals.len()),
        prefix: PrefixBlocks::new(cfg.block_tokens),
        stage: Vec::with_capacity(arrivals.len()),
    };
    let t0 = arrivals.first().map_or(0, |a| a.t_ns);
    let mut segments = Vec::new();
    for a in &arrivals {
        let u = users.order[a.index_in_stage as usize % users.len()];
        let user = &users.list[u];
        let history = &mut conversations[u];
        if cfg.multi_turn {
            let max_len = cfg.max_model_len.unwrap_or(u32::MAX);
            trim_history(history, user, cfg.system_prompt_len, max_len);
        }
        segments.clear();
        segments.push(Segment::system(user.group, cfg.system_prompt_len));
        if cfg.multi_turn {
            for t in history.iter() {
                segments.push(Segment::question(u, user.question));
                segments.push(Segment::answer(u, t.round, t.answer));
            }
        }
        segments.push(Segment::question(u, user.question));
        let prompt: u32 = segments.iter().map(|s| s.len).sum();
        let src = out.rows.len() as u32;
        out.prefix.push(&block_ids(&segments, cfg.block_tokens));
        out.rows.push(Row {
            t_ns: a.t_ns - t0,
            prompt,
            output: user.output,
            category: None,
            src,
        });
        out.stage.push(a.stage);
        if cfg.multi_turn {
            history.push(Turn {
                round: turns_taken[u],
                answer: user.output,
            });
            turns_taken[u] += 1;
        }
    }
    Ok(out)
}

fn check(cfg: &SharedPrefixConfig) -> Result<(), TraceError> {
    let bad = |m: String| Err(TraceError::Config(format!("trace.shared_prefix: {m}")));
    if cfg.system_prompts == 0 || cfg.users_per_system_prompt == 0 {
        return bad("system_prompts and users_per_system_prompt must be at least 1".into());
    }
    if cfg.block_tokens == 0 {
        return bad("block_tokens must be at least 1".into());
    }
    if cfg.stages.is_empty() {
        return bad("`stages` is empty: give at least one { rate, duration_s }".into());
    }
    for (k, s) in cfg.stages.iter().enumerate() {
        if !(s.rate > 0.0 && s.rate.is_finite() && s.duration_s > 0.0 && s.duration_s.is_finite()) {
            return bad(format!(
                "stages[{k}]: rate and duration_s must be positive (got {} and {})",
                s.rate, s.duration_s
            ));
        }
    }
    if !(cfg.stage_gap_s >= 0.0 && cfg.stage_gap_s.is_finite()) {
        return bad(format!(
            "stage_gap_s must be at least 0 (got {})",
            cfg.stage_gap_s
        ));
    }
    if cfg.multi_turn && cfg.max_model_len.is_none() {
        return bad(
            "multi_turn needs max_model_len (vLLM's --max-model-len): conversations grow each turn, and \
             inference-perf drops the oldest turns to fit"
                .into(),
        );
    }
    Ok(())
}

/// One user: its group and the lengths it drew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct User {
    group: u32,
    question: u32,
    output: u32,
}

/// Every user, and the order in which a stage's requests take them.
struct Users {
    list: Vec<User>,
    order: Vec<usize>,
}

impl Users {
    fn draw(cfg: &SharedPrefixConfig, base_dir: &Path, seed: u64) -> Result<Users, TraceError> {
        let question = LengthSampler::new(&cfg.question_len, Column::Prompt, base_dir)?;
        let output = LengthSampler::new(&cfg.output_len, Column::Output, base_dir)?;
        let mut q_rng = stream(seed, "shared_prefix_questions", 0);
        let mut o_rng = stream(seed, "shared_prefix_outputs", 0);
        let mut list = Vec::new();
        for group in 0..cfg.system_prompts {
            for _ in 0..cfg.users_per_system_prompt {
                list.push(User {
                    group,
                    question: question.sample(&mut q_rng),
                    output: output.sample(&mut o_rng),
                });
            }
        }
        let mut order: Vec<usize> = (0..list.len()).collect();
        order.shuffle(&mut stream(seed, "shared_prefix_users", 0));
        Ok(Users { list, order })
    }

    fn len(&self) -> usize {
        self.list.len()
    }
}

/// A finished turn of a conversation: its answer's length (its question is the user's question) and
/// the user's count of turns when it was taken, which names the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Turn {
    round: u32,
    answer: u32,
}

/// Drops the oldest turns until system prompt + history + question + output + margin fit `max_len`.
fn trim_history(history: &mut Vec<Turn>, user: &User, system_len: u32, max_len: u32) {
    let budget = max_len.saturating_sub(user.output + HISTORY_MARGIN_TOKENS) as u64;
    let turn_len = |t: &Turn| (user.question + t.answer) as u64;
    let mut len: u64 =
        history.iter().map(turn_len).sum::<u64>() + (system_len + user.question) as u64;
    let mut drop = 0;
    while drop < history.len() && len > budget {
        len -= turn_len(&history[drop]);
        drop += 1;
    }
    history.drain(..drop);
}

/// A run of tokens with one identity: a system prompt, a user's question, or one turn's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    id: u64,
    len: u32,
}

impl Segment {
    fn system(group: u32, len: u32) -> Segment {
        Segment {
            id: mix(1 << 62 | group as u64),
            len,
        }
    }
    fn question(user: usize, len: u32) -> Segment {
        Segment {
            id: mix(2 << 60 | user as u64),
            len,
        }
    }
    fn answer(user: usize, round: u32, len: u32) -> Segment {
        Segment {
            id: mix(3 << 60 | (user as u64) << 32 | round as u64),
            len,
        }
    }
}

/// Ids of the whole blocks of the prompt made of `segments`: block `b`'s id chains block `b − 1`'s
/// with every (segment, start, end) piece the block covers.
fn block_ids(segments: &[Segment], block_tokens: u32) -> Vec<u64> {
    let total: u64 = segments.iter().map(|s| s.len as u64).sum();
    let blocks = total / block_tokens as u64;
    let mut ids = Vec::with_capacity(blocks as usize);
    let mut chain = 0u64;
    let (mut seg, mut offset) = (0usize, 0u32);
    for _ in 0..blocks {
        let mut need = block_tokens;
        let mut h = chain;
        while need > 0 {
            let s = segments[seg];
            let take = need.min(s.len - offset);
            h = mix(h ^ s.id);
            h = mix(h ^ ((offset as u64) << 32 | (offset + take) as u64));
            need -= take;
            offset += take;
            if offset == s.len {
                seg += 1;
                offset = 0;
            }
        }
        chain = h;
        ids.push(chain);
    }
    ids
}

/// One scheduled arrival of a staged load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedArrival {
    /// Time from the start of the first stage.
    pub t_ns: Nanos,
    /// Stage index.
    pub stage: u16,
    /// Position within its stage (inference-perf's data index, which restarts each stage).
    pub index_in_stage: u64,
}

/// When each stage starts, seconds from the start of the first.
pub fn stage_starts_s(stages: &[LoadStage], gap_s: f64) -> Vec<f64> {
    let mut t = 0.0;
    stages
        .iter()
        .map(|s| {
            let start = t;
            t += s.duration_s + gap_s;
            start
        })
        .collect()
}

/// The arrivals of `stages` run one after another, seeded.
pub fn staged_arrivals(
    stages: &[LoadStage],
    load: StageLoad,
    gap_s: f64,
    seed: u64,
) -> Vec<StagedArrival> {
    let mut out = Vec::new();
    for (k, (s, start)) in stages.iter().zip(stage_starts_s(stages, gap_s)).enumerate() {
        let mut rng = stream(seed, "stage_arrivals", k as u64);
        let times = match load {
            StageLoad::Constant => spread(
                (s.rate * s.duration_s) as u64,
                s.rate,
                s.duration_s,
                &mut rng,
            ),
            StageLoad::Poisson => poisson_seconds(s.rate, s.duration_s, &mut rng),
        };
        out.extend(times.into_iter().enumerate().map(|(i, t)| StagedArrival {
            t_ns: secs_to_ns(start + t),
            stage: k as u16,
            index_in_stage: i as u64,
        }));
    }
    out
}

/// `n` arrival offsets over `duration_s`: exponential gaps of mean `1/rate` rescaled so they sum to
/// the duration (inference-perf's `ConstantLoadTimer`); the first is one gap after 0, the last at the end.
fn spread(n: u64, rate: f64, duration_s: f64, rng: &mut SimRng) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    let exp = Exp::new(rate).expect("rate checked positive");
    let gaps: Vec<f64> = (0..n).map(|_| exp.sample(rng)).collect();
    let scale = duration_s / gaps.iter().sum::<f64>();
    let mut t = 0.0;
    gaps.iter()
        .map(|g| {
            t += g * scale;
            t
        })
        .collect()
}

/// inference-perf's `PoissonLoadTimer`: for each whole second, a Poisson(`rate`) count spread over that
/// second by [`spread`]; a second with no request is skipped. Only seconds that start inside the stage.
fn poisson_seconds(rate: f64, duration_s: f64, rng: &mut SimRng) -> Vec<f64> {
    let count = Poisson::new(rate).expect("rate checked positive");
    let mut out = Vec::new();
    let mut second = 0.0;
    while second < duration_s {
        let k = count.sample(rng) as u64;
        out.extend(spread(k, rate, 1.0, rng).into_iter().map(|t| second + t));
        second += 1.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use specsim_sim::trace_config::LengthConfig;

    fn fixed(value: u32) -> LengthConfig {
        LengthConfig::Fixed { value }
    }

    /// BLIS's `codegen` profile: 11 × 4 users, 100 / 466 / 247 tokens, 5 rps × 600 s then 10 × 600.
    fn codegen() -> SharedPrefixConfig {
        SharedPrefixConfig {
            system_prompts: 11,
            users_per_system_prompt: 4,
            system_prompt_len: 100,
            question_len: fixed(466),
            output_len: fixed(247),
            multi_turn: false,
            max_model_len: None,
            block_tokens: 16,
            load: StageLoad::Constant,
            stages: vec![
                LoadStage {
                    rate: 5.0,
                    duration_s: 600.0,
                },
                LoadStage {
                    rate: 10.0,
                    duration_s: 600.0,
                },
            ],
            stage_gap_s: 0.0,
        }
    }

    #[test]
    fn constant_stages_send_exactly_rate_times_duration() {
        let g = generate(&codegen(), Path::new("."), 7).unwrap();
        // 5 × 600 + 10 × 600 = 9,000: the request count of every BLIS codegen run's replay data.
        assert_eq!(g.rows.len(), 9_000);
        assert_eq!(g.stage.iter().filter(|&&s| s == 0).count(), 3_000);
        // The last request of stage 0 is at its end (600 s from its start, less the first gap the
        // re-basing removed); stage 1 ends at 1,200 s.
        let first = secs_to_ns(0.0);
        assert_eq!(g.rows[0].t_ns, first);
        let last = g.rows.last().unwrap().t_ns as f64 / 1e9;
        assert!((1199.0..=1200.0).contains(&last), "{last}");
        assert!(g.rows.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    }

    #[test]
    fn single_turn_prompts_repeat_with_the_spec_lengths() {
        let g = generate(&codegen(), Path::new("."), 7).unwrap();
        // Every prompt is system prompt + question, every output the profile's.
        assert!(g.rows.iter().all(|r| r.prompt == 566 && r.output == 247));
        // 44 users: request i and i + 44 of a stage are the same user's same prompt.
        assert_eq!(g.prefix.blocks(0), g.prefix.blocks(44));
        assert_eq!(g.prefix.blocks(0).len(), 566 / 16);
        // Exactly 44 distinct prompts, in 11 groups whose users share the 6 whole system-prompt
        // blocks (100 / 16) and nothing after: block 6 mixes system prompt and question.
        let firsts: std::collections::BTreeSet<&[u64]> =
            (0..9000).map(|i| g.prefix.blocks(i)).collect();
        assert_eq!(firsts.len(), 44);
        let heads: std::collections::BTreeSet<&[u64]> = firsts.iter().map(|b| &b[..6]).collect();
        assert_eq!(heads.len(), 11);
        let sevens: std::collections::BTreeSet<&[u64]> = firsts.iter().map(|b| &b[..7]).collect();
        assert_eq!(sevens.len(), 44);
    }

    #[test]
    fn multi_turn_carries_the_conversation_and_trims_the_oldest_turn() {
        let mut cfg = codegen();
        cfg.system_prompts = 1;
        cfg.users_per_system_prompt = 2;
        cfg.multi_turn = true;
        cfg.max_model_len = Some(4096);
        cfg.stages = vec![LoadStage {
            rate: 1.0,
            duration_s: 20.0,
        }];
        let g = generate(&cfg, Path::new("."), 3).unwrap();
        // A user's round r prompt: 100 + r × (466 + 247) + 466, while it fits in
        // 4096 − 247 − 200 = 3649 tokens of prompt: rounds 0..=4 (3418); round 5 (4131) drops a turn.
        let user_of = |i: usize| i % 2;
        let rounds: Vec<u32> = (0..20)
            .filter(|&i| user_of(i) == 0)
            .map(|i| g.rows[i].prompt)
            .collect();
        assert_eq!(&rounds[..6], &[566, 1279, 1992, 2705, 3418, 3418]);
        // Round 1 extends round 0: its first 35 blocks (566 / 16) are round 0's blocks.
        assert_eq!(&g.prefix.blocks(2)[..35], g.prefix.blocks(0));
        // Round 5 dropped round 0's answer: it shares system prompt + question (35 whole blocks) with
        // round 4, and block 35 differs (round 0's answer there, round 1's here).
        let (r4, r5) = (g.prefix.blocks(8), g.prefix.blocks(10));
        let common = r4.iter().zip(r5).take_while(|(a, b)| a == b).count();
        assert_eq!(common, 35);
    }

    #[test]
    fn poisson_stage_counts_are_within_three_sigma() {
        let stages = [
            LoadStage {
                rate: 8.0,
                duration_s: 600.0,
            },
            LoadStage {
                rate: 20.0,
                duration_s: 300.0,
            },
        ];
        for seed in 0..5 {
            let a = staged_arrivals(&stages, StageLoad::Poisson, 0.0, seed);
            for (k, s) in stages.iter().enumerate() {
                let n = a.iter().filter(|x| x.stage == k as u16).count() as f64;
                let mean = s.rate * s.duration_s;
                assert!(
                    (n - mean).abs() <= 3.0 * mean.sqrt(),
                    "stage {k}: {n} vs {mean}"
                );
            }
            // Stage 1 starts at 600 s.
            let first1 = a.iter().find(|x| x.stage == 1).unwrap().t_ns;
            assert!(first1 >= secs_to_ns(600.0) && first1 < secs_to_ns(601.0));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_workload_and_another_seed_another_order() {
        let a = shared_prefix_workload(&codegen(), Path::new("."), 11).unwrap();
        let b = shared_prefix_workload(&codegen(), Path::new("."), 11).unwrap();
        let c = shared_prefix_workload(&codegen(), Path::new("."), 12).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.requests[..44], c.requests[..44]);
        assert_eq!(a.requests[5].prefix.as_ref().unwrap().ids.len(), 35);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let mut cfg = codegen();
        cfg.stages.clear();
        let e = generate(&cfg, Path::new("."), 1).err().unwrap().to_string();
        assert!(e.contains("stages"), "{e}");
        let mut cfg = codegen();
        cfg.multi_turn = true;
        let e = generate(&cfg, Path::new("."), 1).err().unwrap().to_string();
        assert!(e.contains("max_model_len"), "{e}");
    }
}
