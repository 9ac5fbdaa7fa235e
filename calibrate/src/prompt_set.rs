//! The prompt set for acceptance measurement: JSON lines with a category and a prompt.
//!
//! Spec-Bench's format is the reference (`{"category": "coding", "turns": ["first user turn", ...]}`);
//! a line may instead carry `"prompt"` or `"text"`. Only the first turn is used. The category is
//! optional (`"uncategorised"` when absent). A subset of at most `max` prompts is taken **round-robin
//! over categories** in file order, so a small subset still covers every category.
//!
//! Prompts become token ids through the target's own tokenizer with its chat template (a user turn
//! followed by the opening of the assistant turn), as a chat client's request would. Models without a
//! tokenizer in their GGUF (the tiny generated models of tests) get the prompt's UTF-8 bytes modulo
//! the vocabulary instead.

use std::collections::BTreeMap;
use std::path::Path;

use specsim_runtime::chat::ChatMessage;
use specsim_runtime::tokenizer::GgufTokenizer;

use crate::error::{CalibrateError, Result};

/// Category name given to prompts without one.
pub const UNCATEGORISED: &str = "uncategorised";

/// One prompt of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Category (Spec-Bench: coding, math_reasoning, translation, ...).
    pub category: String,
    /// The user's message.
    pub text: String,
}

/// Reads a JSON-lines prompt file; see the module docs.
pub fn read_prompts(path: &Path) -> Result<Vec<Prompt>> {
    let err = |msg: String| CalibrateError::Prompts {
        path: path.display().to_string(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(format!("line {}: {e}", i + 1)))?;
        let prompt = v
            .get("turns")
            .and_then(|t| t.get(0))
            .or_else(|| v.get("prompt"))
            .or_else(|| v.get("text"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                err(format!(
                    "line {}: no prompt (expected a non-empty \"turns\"[0], \"prompt\" or \"text\")",
                    i + 1
                ))
            })?;
        let category = v
            .get("category")
            .and_then(|c| c.as_str())
            .unwrap_or(UNCATEGORISED)
            .to_string();
        out.push(Prompt {
            category,
            text: prompt.to_string(),
        });
    }
    if out.is_empty() {
        return Err(err("no prompts".into()));
    }
    Ok(out)
}

/// At most `max` prompts, round-robin over categories (categories in order of first appearance).
pub fn stratified(prompts: &[Prompt], max: usize) -> Vec<Prompt> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_cat: BTreeMap<&str, Vec<&Prompt>> = BTreeMap::new();
    for p in prompts {
        if !by_cat.contains_key(p.category.as_str()) {
            order.push(&p.category);
        }
        by_cat.entry(&p.category).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut round = 0;
    while out.len() < max.min(prompts.len()) {
        for c in &order {
            if let Some(p) = by_cat.get(c).and_then(|v| v.get(round)) {
                if out.len() < max {
                    out.push((*p).clone());
                }
            }
        }
        round += 1;
    }
    out
}

/// Turns prompt text into token ids.
#[derive(Debug)]
pub enum Encoder {
    /// The models' own tokenizer and chat template.
    Gguf(Box<GgufTokenizer>),
    /// UTF-8 bytes modulo the vocabulary (models without a tokenizer).
    Bytes {
        /// Vocabulary size.
        vocab: usize,
    },
}

impl Encoder {
    /// Encodes one user message as a chat request, keeping at most `max_tokens` (the end is kept: it
    /// holds the question and the assistant turn's opening).
    pub fn encode(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        let ids = match self {
            Encoder::Gguf(t) => {
                let chat = t
                    .chat_template()
                    .render(&[ChatMessage::user(text)], true)
                    .map_err(|e| CalibrateError::Config(format!("chat template: {e}")))?;
                t.encode(&chat)
                    .map_err(|e| CalibrateError::Config(format!("tokenizer: {e}")))?
            }
            Encoder::Bytes { vocab } => text
                .bytes()
                .map(|b| (b as usize % (*vocab).max(1)) as u32)
                .collect(),
        };
        let skip = ids.len().saturating_sub(max_tokens.max(1));
        Ok(ids[skip..].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(c: &str, t: &str) -> Prompt {
        Prompt {
            category: c.into(),
            text: t.into(),
        }
    }

    #[test]
    fn reads_spec_bench_and_plain_lines_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.jsonl");
        std::fs::write(
            &f,
            "{\"category\":\"coding\",\"turns\":[\"write a loop\",\"again\"]}\n\n{\"prompt\":\"hi\"}\n",
        )
        .unwrap();
        let ps = read_prompts(&f).unwrap();
        assert_eq!(
            ps,
            vec![p("coding", "write a loop"), p(UNCATEGORISED, "hi")]
        );
        std::fs::write(&f, "{\"category\":\"x\"}\n").unwrap();
        let e = read_prompts(&f).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("no prompt"), "{e}");
        std::fs::write(&f, "not json\n").unwrap();
        assert!(read_prompts(&f).unwrap_err().to_string().contains("line 1"));
        let e = read_prompts(&dir.path().join("missing.jsonl")).unwrap_err();
        assert!(e.to_string().starts_with("prompt set "), "{e}");
    }

    #[test]
    fn subsets_cover_every_category_first() {
        let ps = vec![
            p("a", "1"),
            p("a", "2"),
            p("a", "3"),
            p("b", "4"),
            p("c", "5"),
        ];
        let s = stratified(&ps, 4);
        let texts: Vec<&str> = s.iter().map(|x| x.text.as_str()).collect();
        assert_eq!(texts, vec!["1", "4", "5", "2"]);
        assert_eq!(stratified(&ps, 100).len(), 5);
    }

    #[test]
    fn byte_encoding_keeps_the_end() {
        let e = Encoder::Bytes { vocab: 96 };
        // 'a' = 97 → 1, 'b' = 98 → 2, 'c' = 99 → 3.
        assert_eq!(e.encode("abc", 2).unwrap(), vec![2, 3]);
    }
}
