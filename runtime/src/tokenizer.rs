//! Tokenizer built from a GGUF file's metadata, plus streaming detokenization.
//!
//! The GGUF files this project runs (Qwen2.5-Coder, SmolLM2) ship no `tokenizer.json`; their tokenizer
//! lives in the metadata: `tokenizer.ggml.model` (`gpt2`: byte-level BPE), `tokenizer.ggml.tokens` (the
//! vocabulary, already in byte-level form such as `Ġworld`), `tokenizer.ggml.merges` (`"a b"` pairs in
//! rank order), `tokenizer.ggml.token_type` (3 = control, 4 = user-defined) and `tokenizer.ggml.pre`,
//! which names the pre-tokenizer. [`GgufTokenizer::from_metadata`] rebuilds the same pipeline the
//! original `tokenizer.json` describes with the `tokenizers` crate:
//!
//! | `tokenizer.ggml.pre` | normalizer | pre-tokenizer |
//! |---|---|---|
//! | `qwen2` | NFC | split on the Qwen2 regex (single digits, `\s+(?!\S)`), then byte-level without regex |
//! | `smollm` | none | individual digits, then byte-level with the GPT-2 regex |
//! | anything else (`gpt2`, `default`) | none | byte-level with the GPT-2 regex |
//!
//! Control and user-defined tokens become added tokens, so `<|im_end|>` in a prompt encodes to its id (the
//! chat template relies on that), and decoding for clients skips the control ones.
//!
//! [`IncrementalDecoder`] turns a growing list of ids into text deltas without splitting a multi-byte
//! character across two deltas (byte-level BPE tokens are bytes, not characters).

use crate::chat::ChatTemplate;
use candle_core::quantized::gguf_file::{self, Value};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// The Qwen2 pre-tokenizer split pattern, as in Qwen2's `tokenizer.json`.
pub const QWEN2_SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF `tokenizer.ggml.token_type` value of a control token (`<|im_end|>`).
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF `tokenizer.ggml.token_type` value of a user-defined added token.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Why a tokenizer could not be built or could not encode/decode.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The GGUF file could not be opened or parsed.
    #[error("reading GGUF {path}: {msg}")]
    Gguf {
        /// File that failed.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// A required metadata key is absent.
    #[error("GGUF metadata has no `{0}`")]
    MissingKey(&'static str),
    /// A metadata key has an unexpected type or content.
    #[error("GGUF metadata `{key}`: {msg}")]
    BadKey {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        msg: String,
    },
    /// The file's tokenizer model is not byte-level BPE (e.g. a SentencePiece `llama` vocabulary).
    #[error("unsupported tokenizer model `{0}` (only byte-level BPE `gpt2` is supported)")]
    UnsupportedModel(String),
    /// The `tokenizers` crate refused the pipeline or an input.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
}

impl TokenizerError {
    fn tk(e: impl std::fmt::Display) -> Self {
        TokenizerError::Tokenizers(e.to_string())
    }
}

/// A byte-level BPE tokenizer rebuilt from GGUF metadata, with the model's end-of-sequence ids and chat
/// template.
#[derive(Clone)]
pub struct GgufTokenizer {
    inner: Tokenizer,
    eos_ids: Vec<u32>,
    bos_id: Option<u32>,
    add_bos: bool,
    chat_template: ChatTemplate,
    vocab_size: usize,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("eos_ids", &self.eos_ids)
            .field("bos_id", &self.bos_id)
            .field("chat_template", &self.chat_template)
            .finish()
    }
}

fn get<'a>(md: &'a HashMap<String, Value>, key: &'static str) -> Result<&'a Value, TokenizerError> {
    md.get(key).ok_or(TokenizerError::MissingKey(key))
}

fn string_array(
    md: &HashMap<String, Value>,
    key: &'static str,
) -> Result<Vec<String>, TokenizerError> {
    let arr = get(md, key)?.to_vec().map_err(|e| TokenizerError::BadKey {
        key,
        msg: e.to_string(),
    })?;
    arr.iter()
        .map(|v| {
            v.to_string().cloned().map_err(|e| TokenizerError::BadKey {
                key,
                msg: e.to_string(),
            })
        })
        .collect()
}

fn int_value(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(*x as i64),
        Value::I8(x) => Some(*x as i64),
        Value::U16(x) => Some(*x as i64),
        Value::I16(x) => Some(*x as i64),
        Value::U32(x) => Some(*x as i64),
        Value::I32(x) => Some(*x as i64),
        Value::U64(x) => i64::try_from(*x).ok(),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

fn optional_id(
    md: &HashMap<String, Value>,
    key: &'static str,
    vocab: usize,
) -> Result<Option<u32>, TokenizerError> {
    match md.get(key) {
        None => Ok(None),
        Some(v) => match int_value(v) {
            Some(id) if id >= 0 && (id as usize) < vocab => Ok(Some(id as u32)),
            _ => Err(TokenizerError::BadKey {
                key,
                msg: format!("{v:?} is not a token id below {vocab}"),
            }),
        },
    }
}

impl GgufTokenizer {
    /// Reads the tokenizer from a GGUF file's metadata (tensor data is not read).
    pub fn from_gguf_file(path: &Path) -> Result<Self, TokenizerError> {
        let err = |msg: String| TokenizerError::Gguf {
            path: path.display().to_string(),
            msg,
        };
        let mut file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| err(e.to_string()))?;
        Self::from_metadata(&content.metadata)
    }

    /// Reads the tokenizer from GGUF bytes held by any reader (tests write GGUF into memory).
    pub fn from_gguf_reader<R: std::io::Read + std::io::Seek>(
        reader: &mut R,
    ) -> Result<Self, TokenizerError> {
        let content = gguf_file::Content::read(reader).map_err(|e| TokenizerError::Gguf {
            path: "<reader>".into(),
            msg: e.to_string(),
        })?;
        Self::from_metadata(&content.metadata)
    }

    /// Builds the tokenizer from GGUF metadata; see the module docs for the keys used.
    pub fn from_metadata(md: &HashMap<String, Value>) -> Result<Self, TokenizerError> {
        let model =
            get(md, "tokenizer.ggml.model")?
                .to_string()
                .map_err(|e| TokenizerError::BadKey {
                    key: "tokenizer.ggml.model",
                    msg: e.to_string(),
                })?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.clone()));
        }
        let tokens = string_array(md, "tokenizer.ggml.tokens")?;
        let merges_raw = string_array(md, "tokenizer.ggml.merges")?;
        let types: Vec<i64> = match md.get("tokenizer.ggml.token_type") {
            Some(v) => {
                let arr = v.to_vec().map_err(|e| TokenizerError::BadKey {
                    key: "tokenizer.ggml.token_type",
                    msg: e.to_string(),
                })?;
                arr.iter().map(|t| int_value(t).unwrap_or(1)).collect()
            }
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::BadKey {
                key: "tokenizer.ggml.token_type",
                msg: format!("{} types for {} tokens", types.len(), tokens.len()),
            });
        }
        let pre = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("default");

        let mut vocab = Vocab::default();
        vocab.reserve(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            // Duplicate strings would make ids ambiguous; the first one wins, as in llama.cpp.
            vocab.entry(t.clone()).or_insert(i as u32);
        }
        let mut merges = Vec::with_capacity(merges_raw.len());
        for (i, m) in merges_raw.iter().enumerate() {
            let Some((a, b)) = m.split_once(' ') else {
                return Err(TokenizerError::BadKey {
                    key: "tokenizer.ggml.merges",
                    msg: format!("merge {i} `{m}` is not two tokens separated by a space"),
                });
            };
            merges.push((a.to_string(), b.to_string()));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(TokenizerError::tk)?;

        let mut tk = Tokenizer::new(bpe);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "qwen2" => {
                tk.with_normalizer(Some(NFC)).map_err(TokenizerError::tk)?;
                let split = Split::new(
                    SplitPattern::Regex(QWEN2_SPLIT_REGEX.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(TokenizerError::tk)?;
                Sequence::new(vec![
                    split.into(),
                    ByteLevel::new(false, false, false).into(),
                ])
                .into()
            }
            "smollm" => Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, false, true).into(),
            ])
            .into(),
            _ => ByteLevel::new(false, false, true).into(),
        };
        tk.with_pre_tokenizer(Some(pre_tokenizer));
        tk.with_decoder(Some(ByteLevelDecoder::default()));

        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .map(|(s, &t)| AddedToken::from(s.clone(), t == TOKEN_TYPE_CONTROL).normalized(false))
            .collect();
        tk.add_special_tokens(added).map_err(TokenizerError::tk)?;

        let n = tokens.len();
        let template_src = md
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok());
        let chat_template = ChatTemplate::from_gguf_template(template_src.map(String::as_str));
        let mut eos_ids = Vec::new();
        if let Some(id) = optional_id(md, "tokenizer.ggml.eos_token_id", n)? {
            eos_ids.push(id);
        }
        // Instruct models end a turn with `<|im_end|>` and a document with `<|endoftext|>`; both stop.
        for s in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Some(id) = tk.token_to_id(s) {
                if types.get(id as usize) == Some(&TOKEN_TYPE_CONTROL) && !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        let bos_id = optional_id(md, "tokenizer.ggml.bos_token_id", n)?;
        let add_bos = md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        Ok(GgufTokenizer {
            inner: tk,
            eos_ids,
            bos_id,
            add_bos,
            chat_template,
            vocab_size: n,
        })
    }

    /// Encodes text; special-token strings in it (`<|im_end|>`) become their ids. Prepends BOS when the
    /// file asks for it (`tokenizer.ggml.add_bos_token`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(TokenizerError::tk)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos {
            if let Some(b) = self.bos_id {
                ids.push(b);
            }
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Decodes ids to text; `skip_special` drops control tokens (what clients see). Ids outside the
    /// vocabulary are an error.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.vocab_size) {
            return Err(TokenizerError::Tokenizers(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.vocab_size
            )));
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(TokenizerError::tk)
    }

    /// Ids that end generation (unless a request sets `ignore_eos`).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Beginning-of-sequence id, if the file names one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The id of a token string (including added tokens), if present.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of tokens in the vocabulary (`tokenizer.ggml.tokens`).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The chat template derived from `tokenizer.chat_template`.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.chat_template
    }

    /// The underlying `tokenizers` pipeline.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

/// Streams text out of a growing id sequence: each [`IncrementalDecoder::push`] returns the new text, and
/// holds text back while the last tokens end inside a multi-byte character (the decoder then shows U+FFFD).
///
/// Decoding a window rather than a single id keeps leading-space and merge effects right: the delta is
/// `decode(ids[prefix..]) − decode(ids[prefix..read])`, as in text-generation-inference.
#[derive(Debug, Clone, Default)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special: bool,
}

impl IncrementalDecoder {
    /// A decoder that skips control tokens when `skip_special` is true.
    pub fn new(skip_special: bool) -> Self {
        IncrementalDecoder {
            skip_special,
            ..Default::default()
        }
    }

    /// Feeds one id; returns the text it completes, if any.
    pub fn push(&mut self, tok: &GgufTokenizer, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let prefix = tok.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special,
        )?;
        let full = tok.decode(&self.ids[self.prefix_offset..], self.skip_special)?;
        if full.len() > prefix.len()
            && !full.ends_with('\u{FFFD}')
            && full.is_char_boundary(prefix.len())
        {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            // Keep the window short: ids before prefix_offset never matter again.
            if self.prefix_offset > 64 {
                self.ids.drain(..self.prefix_offset);
                self.read_offset -= self.prefix_offset;
                self.prefix_offset = 0;
            }
            Ok(Some(delta))
        } else {
            Ok(None)
        }
    }

    /// Text still held back at the end of generation (an incomplete character decodes to U+FFFD).
    pub fn flush(&mut self, tok: &GgufTokenizer) -> Result<String, TokenizerError> {
        let prefix = tok.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special,
        )?;
        let full = tok.decode(&self.ids[self.prefix_offset..], self.skip_special)?;
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(
            if full.len() > prefix.len() && full.is_char_boundary(prefix.len()) {
                full[prefix.len()..].to_string()
            } else {
                String::new()
            },
        )
    }
}

/// A tiny byte-level BPE tokenizer in GGUF form, for tests and examples that must not download anything.
///
/// Vocabulary: ids 0..=255 are the 256 bytes (id = byte value) in GPT-2's byte-to-character form, then
/// the merges below (ids 256..=264 and 268), then `<|endoftext|>` = 265, `<|im_start|>` = 266,
/// `<|im_end|>` = 267, all control tokens. So `"hello world"` encodes to `[259, 264]` and, with the Qwen2
/// pre-tokenizer, `"123"` to `[49, 50, 51]` although a `1 2` merge exists (digits are split singly).
pub mod fixture {
    use super::Value;

    /// GPT-2's reversible byte → character map: printable Latin-1 bytes map to themselves, the rest to
    /// U+0100 upwards in byte order.
    pub fn byte_to_char(b: u8) -> char {
        let printable = |c: u32| {
            (0x21..=0x7e).contains(&c) || (0xa1..=0xac).contains(&c) || (0xae..=0xff).contains(&c)
        };
        if printable(b as u32) {
            return char::from(b);
        }
        let rank = (0..b as u32).filter(|&c| !printable(c)).count() as u32;
        char::from_u32(256 + rank).unwrap_or('?')
    }

    /// Merge rules of the fixture, in rank order, and the id each merged token gets.
    pub const MERGES: [(&str, &str, u32); 10] = [
        ("h", "e", 256),
        ("l", "l", 257),
        ("he", "ll", 258),
        ("hell", "o", 259),
        ("Ġ", "w", 260),
        ("o", "r", 261),
        ("Ġw", "or", 262),
        ("l", "d", 263),
        ("Ġwor", "ld", 264),
        ("1", "2", 268),
    ];

    /// The metadata entries of the fixture tokenizer for a given `tokenizer.ggml.pre` and chat template.
    pub fn metadata(pre: &str, chat_template: Option<&str>) -> Vec<(String, Value)> {
        let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
        let mut types: Vec<Value> = vec![Value::I32(1); 256];
        let mut merged: Vec<(u32, String)> = MERGES
            .iter()
            .map(|(a, b, id)| (*id, format!("{a}{b}")))
            .collect();
        merged.extend([
            (265, "<|endoftext|>".to_string()),
            (266, "<|im_start|>".into()),
            (267, "<|im_end|>".into()),
        ]);
        merged.sort_by_key(|(id, _)| *id);
        for (id, s) in merged {
            debug_assert_eq!(id as usize, tokens.len());
            let control = s.starts_with("<|");
            tokens.push(s);
            types.push(Value::I32(if control { 3 } else { 1 }));
        }
        let merges = MERGES
            .iter()
            .map(|(a, b, _)| Value::String(format!("{a} {b}")))
            .collect();
        let mut md = vec![
            (
                "tokenizer.ggml.model".to_string(),
                Value::String("gpt2".into()),
            ),
            ("tokenizer.ggml.pre".to_string(), Value::String(pre.into())),
            (
                "tokenizer.ggml.tokens".to_string(),
                Value::Array(tokens.into_iter().map(Value::String).collect()),
            ),
            ("tokenizer.ggml.token_type".to_string(), Value::Array(types)),
            ("tokenizer.ggml.merges".to_string(), Value::Array(merges)),
            ("tokenizer.ggml.eos_token_id".to_string(), Value::U32(265)),
            ("tokenizer.ggml.bos_token_id".to_string(), Value::U32(265)),
            (
                "tokenizer.ggml.add_bos_token".to_string(),
                Value::Bool(false),
            ),
        ];
        if let Some(t) = chat_template {
            md.push((
                "tokenizer.chat_template".to_string(),
                Value::String(t.into()),
            ));
        }
        md
    }

    /// Vocabulary size of the fixture.
    pub const VOCAB: usize = 269;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn gguf_bytes(md: &[(String, Value)]) -> Vec<u8> {
        let refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut cur = Cursor::new(Vec::new());
        gguf_file::write(&mut cur, &refs, &[]).expect("write gguf");
        cur.into_inner()
    }

    fn tiny(pre: &str) -> GgufTokenizer {
        let bytes = gguf_bytes(&fixture::metadata(pre, None));
        GgufTokenizer::from_gguf_reader(&mut Cursor::new(bytes)).expect("tokenizer from gguf")
    }

    #[test]
    fn byte_map_matches_gpt2_landmarks() {
        // GPT-2: space → Ġ (U+0120), newline → Ċ (U+010A), NUL → Ā (U+0100), '!' stays.
        assert_eq!(fixture::byte_to_char(b' '), 'Ġ');
        assert_eq!(fixture::byte_to_char(b'\n'), 'Ċ');
        assert_eq!(fixture::byte_to_char(0), 'Ā');
        assert_eq!(fixture::byte_to_char(b'!'), '!');
        let all: std::collections::HashSet<char> = (0..=255u8).map(fixture::byte_to_char).collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn merges_apply_within_pretokenized_words() {
        let t = tiny("qwen2");
        assert_eq!(t.vocab_size(), fixture::VOCAB);
        assert_eq!(t.encode("hello world").unwrap(), vec![259, 264]);
        // Two spaces: `\s+(?!\S)` isolates the first, the second starts " world".
        assert_eq!(t.encode("hello  world!").unwrap(), vec![259, 32, 264, 33]);
    }

    #[test]
    fn qwen2_splits_digits_singly_gpt2_does_not() {
        assert_eq!(tiny("qwen2").encode("123").unwrap(), vec![49, 50, 51]);
        assert_eq!(tiny("gpt2").encode("123").unwrap(), vec![268, 51]);
        // SmolLM's pre-tokenizer splits digits individually too.
        assert_eq!(tiny("smollm").encode("123").unwrap(), vec![49, 50, 51]);
    }

    #[test]
    fn round_trips_arbitrary_utf8() {
        let t = tiny("qwen2");
        for s in [
            "hello world",
            "  tabs\tand\nnewlines\r\n",
            "café ünïcödé 🦀 日本語",
            "x = [1, 22, 333];",
            "",
        ] {
            let ids = t.encode(s).unwrap();
            assert_eq!(
                t.decode(&ids, false).unwrap(),
                s,
                "round trip of {s:?} via {ids:?}"
            );
        }
        // 'é' is two bytes → two byte tokens.
        assert_eq!(t.encode("é").unwrap(), vec![0xc3, 0xa9]);
    }

    #[test]
    fn special_tokens_encode_to_their_ids_and_can_be_skipped() {
        let t = tiny("qwen2");
        let ids = t.encode("<|im_start|>hello<|im_end|>").unwrap();
        assert_eq!(ids, vec![266, 259, 267]);
        assert_eq!(
            t.decode(&ids, false).unwrap(),
            "<|im_start|>hello<|im_end|>"
        );
        assert_eq!(t.decode(&ids, true).unwrap(), "hello");
        assert_eq!(t.eos_ids(), &[265, 267]);
        assert_eq!(t.token_id("<|im_end|>"), Some(267));
        assert!(t.decode(&[9999], false).is_err());
    }

    #[test]
    fn incremental_decoding_holds_back_partial_characters() {
        let t = tiny("qwen2");
        let mut d = IncrementalDecoder::new(true);
        // "é" = c3 a9, then " world".
        assert_eq!(d.push(&t, 0xc3).unwrap(), None);
        assert_eq!(d.push(&t, 0xa9).unwrap().as_deref(), Some("é"));
        assert_eq!(d.push(&t, 264).unwrap().as_deref(), Some(" world"));
        assert_eq!(d.push(&t, 267).unwrap(), None); // skipped control token adds no text
        assert_eq!(d.push(&t, 0xf0).unwrap(), None); // first byte of a 4-byte character
        assert_eq!(d.flush(&t).unwrap(), "\u{FFFD}");
    }

    #[test]
    fn incremental_concatenation_equals_full_decode() {
        let t = tiny("qwen2");
        let text = "hello wörld 🦀 hello  world 12345 ".repeat(20);
        let ids = t.encode(&text).unwrap();
        let mut d = IncrementalDecoder::new(false);
        let mut out = String::new();
        for &id in &ids {
            if let Some(s) = d.push(&t, id).unwrap() {
                out.push_str(&s);
            }
        }
        out.push_str(&d.flush(&t).unwrap());
        assert_eq!(out, text);
    }

    #[test]
    fn bad_metadata_is_an_error_not_a_panic() {
        let mut md = fixture::metadata("qwen2", None);
        md.retain(|(k, _)| k != "tokenizer.ggml.merges");
        let e = GgufTokenizer::from_gguf_reader(&mut Cursor::new(gguf_bytes(&md))).unwrap_err();
        assert!(
            matches!(e, TokenizerError::MissingKey("tokenizer.ggml.merges")),
            "{e}"
        );

        let mut md = fixture::metadata("qwen2", None);
        for (k, v) in md.iter_mut() {
            if k == "tokenizer.ggml.model" {
                *v = Value::String("llama".into());
            }
        }
        let e = GgufTokenizer::from_gguf_reader(&mut Cursor::new(gguf_bytes(&md))).unwrap_err();
        assert!(matches!(e, TokenizerError::UnsupportedModel(_)), "{e}");

        let e =
            GgufTokenizer::from_gguf_reader(&mut Cursor::new(b"not a gguf".to_vec())).unwrap_err();
        assert!(matches!(e, TokenizerError::Gguf { .. }), "{e}");
    }

    /// Where real model files live: `$SPECSIM_MODELS`, else `models/` at the workspace root.
    fn models_dir() -> std::path::PathBuf {
        std::env::var_os("SPECSIM_MODELS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"))
    }

    #[test]
    fn real_qwen_tokenizer_known_ids() {
        let path = models_dir().join("target.gguf");
        if !path.exists() {
            eprintln!(
                "SKIP real_qwen_tokenizer_known_ids: {} not found (run scripts/fetch-models.sh)",
                path.display()
            );
            return;
        }
        let t = GgufTokenizer::from_gguf_file(&path).expect("Qwen tokenizer");
        assert_eq!(t.vocab_size(), 151_936);
        assert_eq!(t.token_id("<|endoftext|>"), Some(151_643));
        assert_eq!(t.token_id("<|im_start|>"), Some(151_644));
        assert_eq!(t.token_id("<|im_end|>"), Some(151_645));
        assert!(t.eos_ids().contains(&151_645) && t.eos_ids().contains(&151_643));
        // Byte-level base tokens come first in GPT-2 order: '!' = 0, ',' = 11; "Hello" and " world" are
        // single tokens in Qwen2's vocabulary.
        assert_eq!(t.encode("Hello, world!").unwrap(), vec![9707, 11, 1879, 0]);
        assert_eq!(t.encode("2024").unwrap().len(), 4);
        let chat = t
            .chat_template()
            .render(&[crate::chat::ChatMessage::user("hi")], true)
            .unwrap();
        assert!(
            chat.starts_with("<|im_start|>system\nYou are Qwen"),
            "{chat}"
        );
    }

    #[test]
    fn real_smollm2_tokenizer_known_ids() {
        let path = models_dir().join("smollm2.gguf");
        if !path.exists() {
            eprintln!(
                "SKIP real_smollm2_tokenizer_known_ids: {} not found (scripts/fetch-models.sh --smollm)",
                path.display()
            );
            return;
        }
        let t = GgufTokenizer::from_gguf_file(&path).expect("SmolLM2 tokenizer");
        // SmolLM2's vocabulary: 49,152 tokens, the ChatML specials first.
        assert_eq!(t.vocab_size(), 49_152);
        assert_eq!(t.token_id("<|endoftext|>"), Some(0));
        assert_eq!(t.token_id("<|im_start|>"), Some(1));
        assert_eq!(t.token_id("<|im_end|>"), Some(2));
        assert!(t.eos_ids().contains(&2), "{:?}", t.eos_ids());
        // Its pre-tokenizer splits digits individually.
        assert_eq!(t.encode("2024").unwrap().len(), 4);
        let code = "fn main() {\n    println!(\"héllo {}\", 42);\n}\n";
        assert_eq!(t.decode(&t.encode(code).unwrap(), false).unwrap(), code);
        let chat = t
            .chat_template()
            .render(&[crate::chat::ChatMessage::user("hi")], true)
            .unwrap();
        assert!(
            chat.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
            "{chat}"
        );
    }
}
