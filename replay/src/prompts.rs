//! Prompts for a replayed trace: real text matched to each request's category and prompt length.
//!
//! A trace says how long a prompt was, and sometimes what kind of request it was, but not its text.
//! The engine needs text (or token ids). Two ways to build it:
//!
//! - **Text (default).** Pick a prompt of the request's category from a prompt set (Spec-Bench by
//!   default: 480 prompts in 13 categories, `turns[0]` of each line), then pad it with further prompts of
//!   the same category, or trim it, to `prompt_tokens × chars_per_token` characters. Trimming stops at
//!   a whitespace boundary when one is near. Requests without a category, or whose category the set
//!   lacks, draw from the whole set. The choice is deterministic: request `id` picks prompt
//!   `id mod n` of its pool, so two replays of one scenario send the same text.
//!
//!   When the engine can tokenize (`POST /tokenize`, which `specsim serve` and vLLM offer), each
//!   request's length is fitted to its token count before the run starts ([`fit_chars`],
//!   [`PromptMode::Fitted`]): the text is exact up to a word boundary.
//!
//!   Otherwise it is an approximation: the engine's tokenizer decides the real length. `chars_per_token` is
//!   measured before the run by a probe request when the endpoint reports `usage` (see
//!   [`crate::driver::ReplayConfig::probe_chars_per_token`]), and the prompt tokens the engine reports
//!   are written to `requests.csv`, with the mismatch summarised in `replay.json`. Real text keeps
//!   draft acceptance realistic, which random tokens would not.
//! - **Token ids (`--token-prompts`).** Send `prompt` as a list of exactly `prompt_tokens` ids, for
//!   servers that accept them (ours and vLLM do). Lengths are exact, but the ids are a fixed
//!   pseudo-random sequence in a range that is valid for any tokenizer of a few thousand entries or
//!   more, so acceptance rates on them say little about acceptance on real text.

use crate::ReplayError;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;

/// Characters per token used when no probe measured it: typical of English text under BPE tokenizers
/// with 32k–150k entries.
pub const DEFAULT_CHARS_PER_TOKEN: f64 = 4.0;

/// Token ids of `--token-prompts` are drawn from `[TOKEN_ID_LO, TOKEN_ID_HI)`: above the special and
/// byte tokens of common vocabularies, below the size of the smallest ones in use.
pub const TOKEN_ID_LO: u32 = 1000;
/// Upper bound (exclusive) of `--token-prompts` ids.
pub const TOKEN_ID_HI: u32 = 9000;

/// A prompt to send: text, or token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Text, tokenized by the engine.
    Text(String),
    /// Token ids, sent as they are.
    Ids(Vec<u32>),
}

/// One prompt of a set.
#[derive(Debug, Clone, PartialEq)]
pub struct SetPrompt {
    /// Category (e.g. `writing`, `coding`).
    pub category: String,
    /// The text of the first turn.
    pub text: String,
}

/// A prompt set: prompts grouped by category.
#[derive(Debug, Clone, Default)]
pub struct PromptSet {
    prompts: Vec<SetPrompt>,
    /// Category names in first-seen order, each with the indices of its prompts.
    by_category: Vec<(String, Vec<usize>)>,
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    turns: Vec<String>,
    #[serde(default)]
    prompt: Option<String>,
}

impl PromptSet {
    /// Builds a set from prompts (empty texts are skipped).
    pub fn new(prompts: Vec<SetPrompt>) -> Result<Self, ReplayError> {
        let prompts: Vec<SetPrompt> = prompts
            .into_iter()
            .filter(|p| !p.text.trim().is_empty())
            .collect();
        if prompts.is_empty() {
            return Err(ReplayError::Config(
                "the prompt set has no non-empty prompt".into(),
            ));
        }
        let mut by_category: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            match by_category.iter_mut().find(|(c, _)| *c == p.category) {
                Some((_, v)) => v.push(i),
                None => by_category.push((p.category.clone(), vec![i])),
            }
        }
        Ok(PromptSet {
            prompts,
            by_category,
        })
    }

    /// Parses JSON Lines: each line an object with `turns` (the first is used) or `prompt`, and an
    /// optional `category` (Spec-Bench's format). Errors name the line.
    pub fn parse_jsonl(text: &str, origin: &str) -> Result<Self, ReplayError> {
        let mut prompts = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let err = |msg: String| ReplayError::Parse {
                origin: origin.into(),
                line: n + 1,
                msg,
            };
            let l: Line = serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
            let text = l
                .turns
                .into_iter()
                .next()
                .or(l.prompt)
                .ok_or_else(|| err("no `turns` or `prompt`".into()))?;
            prompts.push(SetPrompt {
                category: l.category.unwrap_or_default(),
                text,
            });
        }
        Self::new(prompts)
    }

    /// Reads a JSON Lines prompt set from a file.
    pub fn load(path: &Path) -> Result<Self, ReplayError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReplayError::io(path, e))?;
        Self::parse_jsonl(&text, &path.display().to_string())
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// True when the set is empty (never, for a constructed set).
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// Category names, in first-seen order.
    pub fn categories(&self) -> impl Iterator<Item = &str> {
        self.by_category.iter().map(|(c, _)| c.as_str())
    }

    /// Indices of the prompts a request of `category` draws from: its category (compared without
    /// regard to case), or every prompt.
    fn pool(&self, category: Option<&str>) -> Vec<usize> {
        category
            .and_then(|c| {
                self.by_category
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(c))
            })
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| (0..self.prompts.len()).collect())
    }

    /// Text of about `chars` characters for request `id` of `category` (see the module doc).
    pub fn text(&self, id: u64, category: Option<&str>, chars: usize) -> String {
        let pool = self.pool(category);
        let chars = chars.max(1);
        let start = (id % pool.len() as u64) as usize;
        let mut out = String::new();
        // Each prompt is non-empty, so every pass over the pool adds at least one character; the
        // bound is the number of passes needed in the worst case.
        for step in 0..=chars.saturating_mul(pool.len()) {
            if out.chars().count() >= chars {
                break;
            }
            if step > 0 {
                out.push_str("\n\n");
            }
            out.push_str(self.prompts[pool[(start + step) % pool.len()]].text.trim());
        }
        trim_to_chars(&out, chars)
    }
}

/// The first `chars` characters of `s`, cut back to the last whitespace when it lies within the last
/// fifth (so words stay whole), never to fewer than one character.
fn trim_to_chars(s: &str, chars: usize) -> String {
    let Some((cut, _)) = s.char_indices().nth(chars) else {
        return s.to_string();
    };
    let head = &s[..cut];
    let min_keep = chars - chars / 5;
    if let Some(ws) = head.rfind(char::is_whitespace) {
        if head[..ws].chars().count() >= min_keep.max(1) {
            return head[..ws].trim_end().to_string();
        }
    }
    head.to_string()
}

/// A text length fitted to a token count: see [`fit_chars`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FittedLength {
    /// Characters to ask [`PromptSet::text`] for.
    pub chars: usize,
    /// Tokens the engine's tokenizer makes of that text.
    pub tokens: u32,
}

/// Fits request `id`'s text (see [`PromptSet::text`]) to `tokens` tokens as `count` (the engine's
/// tokenizer) counts them: the longest text of at most `tokens` tokens, or the next longer one when
/// that is nearer. `guess` (characters) starts the search; the search doubles it until the text is
/// too long, then bisects, so it costs about `log2(guess)` + a few calls of `count`.
///
/// Texts grow by whole words (see [`PromptSet::text`]), so an exact count is not always reachable; a
/// tokenizer's count of a prefix only grows with the prefix, which the bisection relies on.
pub async fn fit_chars<F, Fut>(
    set: &PromptSet,
    id: u64,
    category: Option<&str>,
    tokens: u32,
    guess: usize,
    mut count: F,
) -> Result<FittedLength, String>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<u32, String>>,
{
    const MAX_CHARS: usize = 64 * 1024 * 1024;
    let want = tokens.max(1);
    let mut memo: BTreeMap<usize, u32> = BTreeMap::new();
    let mut measure = |chars: usize| {
        let text = set.text(id, category, chars);
        let fut = count(text);
        async move { fut.await.map(|n| (chars, n)) }
    };
    // Bracket: count(lo) <= want < count(hi), or hi at the cap.
    let mut lo = 1usize;
    let mut hi = guess.clamp(2, MAX_CHARS);
    loop {
        let (c, n) = measure(hi).await?;
        memo.insert(c, n);
        if n > want || hi >= MAX_CHARS {
            break;
        }
        if n == want {
            return Ok(FittedLength {
                chars: hi,
                tokens: n,
            });
        }
        lo = hi;
        hi = hi.saturating_mul(2).min(MAX_CHARS);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let (c, n) = measure(mid).await?;
        memo.insert(c, n);
        if n <= want {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let n_lo = match memo.get(&lo) {
        Some(&n) => n,
        None => {
            let (c, n) = measure(lo).await?;
            memo.insert(c, n);
            n
        }
    };
    let n_hi = memo.get(&hi).copied().unwrap_or(u32::MAX);
    Ok(
        if n_hi != u32::MAX && n_hi - want < want.saturating_sub(n_lo) {
            FittedLength {
                chars: hi,
                tokens: n_hi,
            }
        } else {
            FittedLength {
                chars: lo,
                tokens: n_lo,
            }
        },
    )
}

/// `n` token ids for request `id`: a fixed pseudo-random sequence (SplitMix64) in
/// `[TOKEN_ID_LO, TOKEN_ID_HI)`, different per request so engines with prefix caching do not share
/// prompts that the trace did not share.
pub fn token_ids(id: u64, n: u32) -> Vec<u32> {
    let mut state = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let span = (TOKEN_ID_HI - TOKEN_ID_LO) as u64;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            TOKEN_ID_LO + (z % span) as u32
        })
        .collect()
}

/// How prompts are built for a replay.
#[derive(Debug, Clone)]
pub enum PromptMode {
    /// Text from a prompt set at a characters-per-token estimate.
    Text {
        /// The prompt set.
        set: PromptSet,
        /// Characters per token (see [`DEFAULT_CHARS_PER_TOKEN`]).
        chars_per_token: f64,
    },
    /// Exactly `prompt_tokens` token ids (see [`token_ids`]).
    TokenIds,
    /// Text from a prompt set, each request's length fitted before the run to its token count by the
    /// engine's own tokenizer ([`fit_chars`]); requests not in `chars` fall back to
    /// `chars_per_token`.
    Fitted {
        /// The prompt set.
        set: PromptSet,
        /// Characters of each request's text, by request id.
        chars: HashMap<u64, usize>,
        /// Characters per token for requests without a fitted length.
        chars_per_token: f64,
    },
}

impl PromptMode {
    /// The prompt for request `id` of `category` with `prompt_tokens` tokens.
    pub fn build(&self, id: u64, category: Option<&str>, prompt_tokens: u32) -> Prompt {
        match self {
            PromptMode::Text {
                set,
                chars_per_token,
            } => {
                let chars = (prompt_tokens as f64 * chars_per_token).round().max(1.0);
                // Bounded: a prompt of more than 64M characters is not a prompt.
                let chars = chars.min(64.0 * 1024.0 * 1024.0) as usize;
                Prompt::Text(set.text(id, category, chars))
            }
            PromptMode::TokenIds => Prompt::Ids(token_ids(id, prompt_tokens)),
            PromptMode::Fitted {
                set,
                chars,
                chars_per_token,
            } => match chars.get(&id) {
                Some(&c) => Prompt::Text(set.text(id, category, c)),
                None => PromptMode::Text {
                    set: set.clone(),
                    chars_per_token: *chars_per_token,
                }
                .build(id, category, prompt_tokens),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> PromptSet {
        PromptSet::parse_jsonl(
            r#"{"category": "writing", "turns": ["Write a poem about the sea.", "again"]}
{"category": "coding", "turns": ["Sort a list in Rust."]}

{"category": "coding", "turns": ["Reverse a string."]}
"#,
            "t.jsonl",
        )
        .unwrap()
    }

    #[test]
    fn picks_by_category_deterministically() {
        let s = set();
        assert_eq!(s.len(), 3);
        assert_eq!(s.text(0, Some("coding"), 20), "Sort a list in Rust.");
        assert_eq!(s.text(1, Some("CODING"), 17), "Reverse a string.");
        assert_eq!(s.text(2, Some("coding"), 20), "Sort a list in Rust.");
        // Unknown category: the whole set, id mod 3.
        assert_eq!(s.text(4, Some("math"), 20), "Sort a list in Rust.");
        assert_eq!(s.text(3, None, 27), "Write a poem about the sea.");
    }

    #[test]
    fn pads_with_the_same_category_and_trims_at_words() {
        let s = set();
        // "Sort a list in Rust." (20) + "\n\n" + "Reverse a string." (17) = 39 characters.
        assert_eq!(
            s.text(0, Some("coding"), 39),
            "Sort a list in Rust.\n\nReverse a string."
        );
        // 30 characters end with the space after "Reverse"; the trailing space is dropped.
        assert_eq!(
            s.text(0, Some("coding"), 30),
            "Sort a list in Rust.\n\nReverse"
        );
        // Long targets cycle through the category and land within a fifth below the target.
        let t = s.text(0, Some("coding"), 1000);
        let n = t.chars().count();
        assert!((800..=1000).contains(&n), "{n}");
        assert!(!t.contains("poem"));
        assert_eq!(s.text(0, Some("coding"), 0), "S");
    }

    #[test]
    fn token_prompts_have_exact_length_and_differ_per_request() {
        let a = token_ids(1, 500);
        assert_eq!(a.len(), 500);
        assert!(a.iter().all(|&t| (TOKEN_ID_LO..TOKEN_ID_HI).contains(&t)));
        assert_eq!(a, token_ids(1, 500));
        assert_ne!(a[..10], token_ids(2, 10)[..]);
        match PromptMode::TokenIds.build(7, None, 3) {
            Prompt::Ids(v) => assert_eq!(v.len(), 3),
            Prompt::Text(_) => panic!("expected ids"),
        }
    }

    /// A tokenizer stand-in: one token per whitespace-separated word.
    async fn words(text: String) -> Result<u32, String> {
        Ok(text.split_whitespace().count() as u32)
    }

    #[test]
    fn fitting_finds_the_text_with_the_asked_token_count() {
        let s = set();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Coding pool, request 0: "Sort a list in Rust." (5 words), then "Reverse a string." (3), ...
        // Every word count is reachable, whatever the first guess.
        for (tokens, guess) in [(1, 1), (5, 4), (7, 1000), (8, 30), (23, 7)] {
            let f = rt
                .block_on(fit_chars(&s, 0, Some("coding"), tokens, guess, words))
                .unwrap();
            let text = s.text(0, Some("coding"), f.chars);
            assert_eq!(f.tokens, tokens, "{tokens} from {guess}: {text:?}");
            assert_eq!(text.split_whitespace().count() as u32, tokens);
        }
        // Errors of the tokenizer come back as they are.
        let e = rt.block_on(fit_chars(&s, 0, None, 3, 10, |_| async {
            Err::<u32, String>("HTTP 500".into())
        }));
        assert_eq!(e.unwrap_err(), "HTTP 500");
    }

    #[test]
    fn fitted_prompts_use_their_fitted_length_and_fall_back_to_the_estimate() {
        let s = set();
        let mode = PromptMode::Fitted {
            set: s.clone(),
            chars: HashMap::from([(0, 30)]),
            chars_per_token: 4.0,
        };
        assert_eq!(
            mode.build(0, Some("coding"), 99),
            Prompt::Text("Sort a list in Rust.\n\nReverse".into())
        );
        // Request 1 has no fitted length: 5 tokens × 4 characters.
        assert_eq!(
            mode.build(1, Some("coding"), 5),
            Prompt::Text(s.text(1, Some("coding"), 20))
        );
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = PromptSet::parse_jsonl("{\"turns\": [\"a\"]}\n{\"category\": 3}\n", "p.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.jsonl:2:"), "{e}");
        assert!(PromptSet::parse_jsonl("", "e").is_err());
    }
}
