//! What proposes draft tokens: a small draft model ([`model::ModelDrafter`]) or n-gram lookup in the
//! sequence itself ([`ngram::NgramDrafter`], no model).
//!
//! The engine drafts one position at a time for every sequence still drafting, and after each position
//! its speculation policy decides who continues. So a drafter proposes one token per sequence per call,
//! and reports with it a **confidence**: the draft's probability of the token it proposed. Policies turn
//! confidences into expected accepted lengths (SpecServe's cumulative confidence `Π p`), so the number
//! must mean the same thing for every drafter:
//!
//! - a draft model reports the probability of its token under the distribution it drew it from — under
//!   the request's warped distribution when sampling, under the plain softmax (temperature 1) when greedy
//!   (the greedy "distribution" is one-hot and would always say 1);
//! - n-gram lookup reports the fraction of earlier occurrences of the matched n-gram that were followed by
//!   the proposed token.
//!
//! Verification needs to know the distribution `q` a draft token was drawn from ([`DraftToken::dist`]):
//! a vector for a sampling draft model, one-hot for greedy drafts and n-gram proposals.

pub mod model;
pub mod ngram;

use crate::verify::DraftDist;

/// One proposed token.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftToken {
    /// The token.
    pub token: u32,
    /// The draft's probability of it (see the module docs).
    pub confidence: f32,
    /// The distribution it was drawn from; None when chosen deterministically (one-hot).
    pub dist: Option<Vec<f32>>,
}

impl DraftToken {
    /// The proposal distribution, as verification takes it.
    pub fn draft_dist(&self) -> DraftDist<'_> {
        match &self.dist {
            Some(q) => DraftDist::Probs(q),
            None => DraftDist::OneHot,
        }
    }
}
