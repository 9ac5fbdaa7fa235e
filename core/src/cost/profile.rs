//! Measured step-time tables (a *profile*), interpolated; a linear fit answers outside the grid.
//!
//! The profile file is TOML, written by `specsim calibrate` and documented in `docs/PROFILE.md`:
//!
//! ```toml
//! version = 1
//! [provenance]            # free-form strings: device, threads, build flags, date, model hashes
//! device = "AMD EPYC, 2 threads"
//! [draft]                 # one draft forward: ns[batch][context]
//! batch = [1, 2, 4]
//! context = [128, 512]
//! ns = [[1.0e6, 1.1e6], [1.2e6, 1.3e6], [1.5e6, 1.7e6]]
//! [verify]                # one target forward: ns[batch][tokens_per_seq][context]
//! batch = [1, 2]
//! tokens_per_seq = [1, 5]
//! context = [128, 512]
//! ns = [[[9e6, 9.5e6], [12e6, 13e6]], [[10e6, 11e6], [16e6, 18e6]]]
//! [prefill]               # one prompt prefill: ns[tokens]
//! tokens = [64, 512]
//! ns = [2e7, 9e7]
//! [overhead]
//! step_ns = 150000        # per engine iteration outside the forwards (scheduling, sampling)
//! [fit.draft]             # linear fallback outside the grid (a + b·tokens + c·kv_tokens + d·batch)
//! a = 9e5
//! b = 1e5
//! c = 10.0
//! d = 0.0
//! ```
//!
//! Inside each table's grid the time is multilinear in (batch, tokens per sequence, mean context);
//! outside it the `[fit.*]` model answers if present, else the nearest grid point. The optional
//! `[acceptance]` table holds an acceptance model measured on the same pair (any
//! [`crate::acceptance::AcceptanceConfig`]).

use super::linear::LinearCoefficients;
use super::{BatchShape, CostModel};
use crate::acceptance::AcceptanceConfig;
use crate::time::Nanos;
use crate::CoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The profile file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Format version (1).
    pub version: u32,
    /// Where and how it was measured.
    #[serde(default)]
    pub provenance: BTreeMap<String, String>,
    /// Draft forward table.
    pub draft: Table2,
    /// Target verification/decode table.
    pub verify: Table3,
    /// Target prefill table.
    pub prefill: Table1,
    /// Draft prefill table: one sequence's prompt from an empty draft cache. Its slope prices the
    /// draft's catch-up on tokens it has not seen (the prompt, at a sequence's first draft). Absent in
    /// profiles measured before it was; see [`ProfileCost`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_prefill: Option<Table1>,
    /// Per-iteration overhead outside the forwards.
    #[serde(default)]
    pub overhead: Overhead,
    /// Linear fits for points outside the grids.
    #[serde(default)]
    pub fit: Fits,
    /// Acceptance measured on the same model pair.
    #[serde(default)]
    pub acceptance: Option<AcceptanceConfig>,
    /// Whether the profile is complete (calibration writes `false` until every grid point is measured).
    #[serde(default = "yes")]
    pub complete: bool,
}

fn yes() -> bool {
    true
}

/// Per-iteration overhead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Overhead {
    /// Nanoseconds added to every target forward.
    pub step_ns: f64,
}

/// Linear fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Fits {
    /// Draft forward fit.
    pub draft: Option<LinearCoefficients>,
    /// Target verification fit.
    pub verify: Option<LinearCoefficients>,
    /// Prefill fit.
    pub prefill: Option<LinearCoefficients>,
}

/// `ns[tokens]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table1 {
    /// Prompt tokens, ascending.
    pub tokens: Vec<f64>,
    /// Nanoseconds.
    pub ns: Vec<f64>,
}

/// `ns[batch][context]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table2 {
    /// Batch sizes, ascending.
    pub batch: Vec<f64>,
    /// Mean context lengths, ascending.
    pub context: Vec<f64>,
    /// Nanoseconds.
    pub ns: Vec<Vec<f64>>,
}

/// `ns[batch][tokens_per_seq][context]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table3 {
    /// Batch sizes, ascending.
    pub batch: Vec<f64>,
    /// New tokens per sequence (1 = plain decode, k+1 = verifying k drafts), ascending.
    pub tokens_per_seq: Vec<f64>,
    /// Mean context lengths, ascending.
    pub context: Vec<f64>,
    /// Nanoseconds.
    pub ns: Vec<Vec<Vec<f64>>>,
}

/// Where `x` falls on an ascending axis: (lower index, weight of the upper point), or None outside.
fn locate(axis: &[f64], x: f64) -> Option<(usize, f64)> {
    let n = axis.len();
    if n == 0 || x < axis[0] - 1e-9 || x > axis[n - 1] + 1e-9 {
        return None;
    }
    if n == 1 {
        return Some((0, 0.0));
    }
    let i = axis.partition_point(|&a| a <= x).clamp(1, n - 1) - 1;
    let t = ((x - axis[i]) / (axis[i + 1] - axis[i])).clamp(0.0, 1.0);
    Some((i, t))
}

/// Nearest index on an axis (for clamped lookups).
fn nearest(axis: &[f64], x: f64) -> (usize, f64) {
    let n = axis.len();
    if x <= axis[0] {
        (0, 0.0)
    } else if x >= axis[n - 1] {
        (n.saturating_sub(2), if n > 1 { 1.0 } else { 0.0 })
    } else {
        locate(axis, x).unwrap_or((0, 0.0))
    }
}

fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

fn at<T: Copy>(v: &[T], i: usize) -> T {
    v[i.min(v.len() - 1)]
}

impl Table1 {
    fn eval(&self, x: f64, clamp: bool) -> Option<f64> {
        let (i, t) = if clamp {
            Some(nearest(&self.tokens, x))
        } else {
            locate(&self.tokens, x)
        }?;
        Some(lerp(at(&self.ns, i), at(&self.ns, i + 1), t))
    }
}

impl Table2 {
    fn eval(&self, b: f64, c: f64, clamp: bool) -> Option<f64> {
        let (bi, bt) = if clamp {
            Some(nearest(&self.batch, b))
        } else {
            locate(&self.batch, b)
        }?;
        let (ci, ct) = if clamp {
            Some(nearest(&self.context, c))
        } else {
            locate(&self.context, c)
        }?;
        let row = |i: usize| {
            lerp(
                at(&self.ns[i.min(self.ns.len() - 1)], ci),
                at(&self.ns[i.min(self.ns.len() - 1)], ci + 1),
                ct,
            )
        };
        Some(lerp(row(bi), row(bi + 1), bt))
    }
}

impl Table3 {
    fn eval(&self, b: f64, k: f64, c: f64, clamp: bool) -> Option<f64> {
        let pick = |axis: &[f64], x: f64| {
            if clamp {
                Some(nearest(axis, x))
            } else {
                locate(axis, x)
            }
        };
        let (bi, bt) = pick(&self.batch, b)?;
        let (ki, kt) = pick(&self.tokens_per_seq, k)?;
        let (ci, ct) = pick(&self.context, c)?;
        let cell = |b: usize, k: usize| {
            let plane = &self.ns[b.min(self.ns.len() - 1)];
            let row = &plane[k.min(plane.len() - 1)];
            lerp(at(row, ci), at(row, ci + 1), ct)
        };
        let by_k = |b: usize| lerp(cell(b, ki), cell(b, ki + 1), kt);
        Some(lerp(by_k(bi), by_k(bi + 1), bt))
    }
}

impl Profile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile, CoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        // The parser's own message quotes the offending line; a file that is not a profile at all
        // (`path = "/etc/passwd"`) must not be echoed, so give its line and a short excerpt only.
        let p: Profile = toml::from_str(&text).map_err(|e| {
            let (file, line) = match e.span() {
                Some(s) => {
                    let start = s.start.min(text.len());
                    let line_no = text[..start].bytes().filter(|&b| b == b'\n').count() + 1;
                    let line = text[..start].rfind('\n').map_or(0, |i| i + 1);
                    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
                    (
                        format!("{}:{line_no}", path.display()),
                        format!(
                            " (at `{}`)",
                            crate::excerpt(&text.as_bytes()[line..end], 40)
                        ),
                    )
                }
                None => (path.display().to_string(), String::new()),
            };
            CoreError::Scenario {
                file,
                msg: format!(
                    "not a profile written by specsim calibrate: {}{line}",
                    crate::excerpt(e.message().trim().as_bytes(), 120)
                ),
            }
        })?;
        p.validate().map_err(|msg| CoreError::Scenario {
            file: path.display().to_string(),
            msg,
        })?;
        Ok(p)
    }

    /// Writes the profile as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks axes are ascending and tables match their axes.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != 1 {
            return Err(format!(
                "version: unsupported profile version {}",
                self.version
            ));
        }
        if !self.complete {
            return Err("complete = false: this profile is partial (an interrupted calibration); re-run calibrate".into());
        }
        let asc = |name: &str, v: &[f64]| {
            if v.is_empty() || v.windows(2).any(|w| w[0] >= w[1]) {
                Err(format!(
                    "{name}: axis must be non-empty and strictly ascending"
                ))
            } else {
                Ok(())
            }
        };
        asc("draft.batch", &self.draft.batch)?;
        asc("draft.context", &self.draft.context)?;
        asc("verify.batch", &self.verify.batch)?;
        asc("verify.tokens_per_seq", &self.verify.tokens_per_seq)?;
        asc("verify.context", &self.verify.context)?;
        asc("prefill.tokens", &self.prefill.tokens)?;
        if self.draft.ns.len() != self.draft.batch.len()
            || self
                .draft
                .ns
                .iter()
                .any(|r| r.len() != self.draft.context.len())
        {
            return Err("draft.ns: shape must be [batch][context]".into());
        }
        if self.verify.ns.len() != self.verify.batch.len()
            || self.verify.ns.iter().any(|p| {
                p.len() != self.verify.tokens_per_seq.len()
                    || p.iter().any(|r| r.len() != self.verify.context.len())
            })
        {
            return Err("verify.ns: shape must be [batch][tokens_per_seq][context]".into());
        }
        if self.prefill.ns.len() != self.prefill.tokens.len() {
            return Err("prefill.ns: length must match prefill.tokens".into());
        }
        if let Some(dp) = &self.draft_prefill {
            asc("draft_prefill.tokens", &dp.tokens)?;
            if dp.ns.len() != dp.tokens.len() {
                return Err("draft_prefill.ns: length must match draft_prefill.tokens".into());
            }
        }
        Ok(())
    }
}

/// A cost model backed by a [`Profile`].
#[derive(Debug, Clone)]
pub struct ProfileCost {
    /// The profile.
    pub profile: Profile,
}

impl ProfileCost {
    fn verify_ns(&self, s: &BatchShape) -> f64 {
        let b = s.seqs.max(1) as f64;
        let k = s.new_tokens as f64 / b;
        let c = s.mean_context();
        self.profile
            .verify
            .eval(b, k, c, false)
            .or_else(|| self.profile.fit.verify.map(|f| f.eval(s)))
            .unwrap_or_else(|| self.profile.verify.eval(b, k, c, true).unwrap_or(0.0))
    }

    fn prefill_ns(&self, tokens: u32, s: &BatchShape) -> f64 {
        let x = tokens as f64;
        self.profile
            .prefill
            .eval(x, false)
            .or_else(|| {
                self.profile.fit.prefill.map(|f| {
                    f.eval(&BatchShape {
                        new_tokens: tokens,
                        ..*s
                    })
                })
            })
            .unwrap_or_else(|| self.profile.prefill.eval(x, true).unwrap_or(0.0))
    }
}

/// Nanoseconds per token along a table's axis: the slope between its first and last points (a single
/// point: through the origin).
fn slope(t: &Table1) -> Option<f64> {
    let n = t.tokens.len();
    match n {
        0 => None,
        1 => Some(t.ns[0] / t.tokens[0].max(1.0)),
        _ => Some((t.ns[n - 1] - t.ns[0]) / (t.tokens[n - 1] - t.tokens[0])),
    }
    .filter(|x| x.is_finite() && *x >= 0.0)
}

impl ProfileCost {
    /// Draft time per token beyond one per sequence (a catch-up forward): the draft prefill table's
    /// slope; for profiles without one, the target's prefill slope scaled by the draft's share of a
    /// batch-1 decode step at this context (both models are compute-bound on prompt tokens alike).
    fn draft_token_ns(&self, context: f64) -> f64 {
        if let Some(x) = self.profile.draft_prefill.as_ref().and_then(slope) {
            return x;
        }
        let target = slope(&self.profile.prefill).unwrap_or(0.0);
        let one = BatchShape::one(context.round() as u32, 1, false, 1);
        let (d, v) = (self.draft_base_ns(1.0, context, &one), self.verify_ns(&one));
        if v > 0.0 {
            target * d / v
        } else {
            0.0
        }
    }

    /// The draft table (or its fit) at `b` sequences feeding one token each at mean context `c`.
    fn draft_base_ns(&self, b: f64, c: f64, s: &BatchShape) -> f64 {
        self.profile
            .draft
            .eval(b, c, false)
            .or_else(|| {
                self.profile.fit.draft.map(|f| {
                    f.eval(&BatchShape {
                        new_tokens: s.seqs,
                        ..*s
                    })
                })
            })
            .unwrap_or_else(|| self.profile.draft.eval(b, c, true).unwrap_or(0.0))
    }
}

impl CostModel for ProfileCost {
    /// The draft table at the batch's sequences and mean context, plus [`Self::draft_token_ns`] for
    /// each token beyond one per sequence.
    fn draft_step(&self, s: &BatchShape) -> Nanos {
        if s.seqs == 0 {
            return 0;
        }
        let (b, c) = (s.seqs as f64, s.mean_context());
        let extra = s.new_tokens.saturating_sub(s.seqs) as f64;
        let mut t = self.draft_base_ns(b, c, s);
        if extra > 0.0 {
            t += extra * self.draft_token_ns(c);
        }
        t.max(0.0).round() as Nanos
    }

    fn target_step(&self, s: &BatchShape) -> Nanos {
        let decode_tokens = s.new_tokens - s.prefill_tokens;
        let mut t = 0.0;
        if decode_tokens > 0 {
            // Sequences that decode: every sequence with non-prefill tokens; prefill sequences are counted
            // in the prefill term. Approximate their share of the context by token share.
            let prefill_seqs = if s.prefill_tokens > 0 {
                1.max(s.seqs.saturating_sub(decode_tokens.min(s.seqs)))
            } else {
                0
            };
            let seqs = (s.seqs - prefill_seqs.min(s.seqs)).max(1);
            let ctx = s.context_tokens.saturating_sub(s.prefill_tokens as u64);
            t += self.verify_ns(&BatchShape {
                seqs,
                new_tokens: decode_tokens,
                prefill_tokens: 0,
                context_tokens: ctx,
                logit_positions: decode_tokens,
                attended: 0,
            });
        }
        if s.prefill_tokens > 0 {
            t += self.prefill_ns(s.prefill_tokens, s);
        }
        (t + self.profile.overhead.step_ns).max(0.0).round() as Nanos
    }

    fn describe(&self) -> String {
        let dev = self
            .profile
            .provenance
            .get("device")
            .map_or("unknown device", String::as_str);
        format!("profile({dev})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            version: 1,
            provenance: BTreeMap::new(),
            draft: Table2 {
                batch: vec![1.0, 4.0],
                context: vec![100.0, 300.0],
                ns: vec![vec![1000.0, 2000.0], vec![3000.0, 4000.0]],
            },
            verify: Table3 {
                batch: vec![1.0, 2.0],
                tokens_per_seq: vec![1.0, 3.0],
                context: vec![100.0],
                ns: vec![
                    vec![vec![10_000.0], vec![14_000.0]],
                    vec![vec![12_000.0], vec![20_000.0]],
                ],
            },
            prefill: Table1 {
                tokens: vec![10.0, 110.0],
                ns: vec![5000.0, 15_000.0],
            },
            draft_prefill: None,
            overhead: Overhead { step_ns: 100.0 },
            fit: Fits {
                draft: Some(LinearCoefficients {
                    a: 7.0,
                    b: 0.0,
                    c: 0.0,
                    d: 0.0,
                }),
                verify: None,
                prefill: None,
            },
            acceptance: None,
            complete: true,
        }
    }

    #[test]
    fn interpolates_inside_the_grid() {
        let c = ProfileCost { profile: profile() };
        let s = BatchShape {
            seqs: 2,
            new_tokens: 2,
            prefill_tokens: 0,
            context_tokens: 400,
            logit_positions: 2,
            attended: 0,
        };
        // batch 2 is 1/3 of the way from 1 to 4: 1500 + (3500 - 1500)/3 = 2166.67.
        assert_eq!(c.draft_step(&s), 2167);
        // Verify: batch 2, 2 tokens per seq (halfway 1..3), context 100 -> (12000 + 20000)/2 + 100.
        assert_eq!(c.target_step(&BatchShape::uniform(2, 2, 100)), 16_100);
        // Prefill of 60 tokens: halfway -> 10000 + 100 overhead.
        assert_eq!(c.target_step(&BatchShape::prefill(60)), 10_100);
    }

    #[test]
    fn outside_the_grid_uses_the_fit_or_clamps() {
        let c = ProfileCost { profile: profile() };
        // Draft batch 8 is outside: the fit (7 ns) answers.
        assert_eq!(c.draft_step(&BatchShape::uniform(8, 1, 100)), 7);
        // Verify has no fit: clamped to batch 2, tokens 3 -> 20000 + 100.
        assert_eq!(c.target_step(&BatchShape::uniform(4, 5, 100)), 20_100);
    }

    #[test]
    fn a_draft_catch_up_costs_the_draft_prefill_slope_per_extra_token() {
        let mut p = profile();
        // 100 ns per prompt token.
        p.draft_prefill = Some(Table1 {
            tokens: vec![16.0, 256.0],
            ns: vec![4000.0, 28_000.0],
        });
        let c = ProfileCost { profile: p };
        // One sequence feeding its 10-token prompt and first token from an empty draft cache: batch 1
        // at context 11 is outside the draft table, so the fit's 7 ns, plus 10 extra tokens × 100 ns.
        assert_eq!(c.draft_step(&BatchShape::one(0, 11, false, 1)), 1007);
        // Two sequences, one catching up 2 tokens, one 1: one extra token.
        let s = BatchShape::one(150, 2, false, 1).merge(BatchShape::one(250, 1, false, 1));
        // Mean context (152 + 251) / 2 = 201.5 at batch 2: context 1/2 of 100..300 is 201.5 -> the
        // batch-1 row 1000 + 1000 × 0.5075 and batch-4 row 3000 + 1000 × 0.5075, a third of the way.
        let base = 1507.5 + (3507.5 - 1507.5) / 3.0;
        assert_eq!(c.draft_step(&s), (base + 100.0_f64).round() as Nanos);
        let mut bad = profile();
        bad.draft_prefill = Some(Table1 {
            tokens: vec![16.0],
            ns: vec![],
        });
        assert!(bad.validate().unwrap_err().contains("draft_prefill.ns"));
    }

    #[test]
    fn round_trips_through_toml_and_rejects_bad_shapes() {
        let p = profile();
        let back: Profile = toml::from_str(&p.to_toml()).unwrap();
        assert_eq!(back, p);
        let mut bad = profile();
        bad.verify.ns.pop();
        assert!(bad.validate().unwrap_err().contains("verify.ns"));
        let mut partial = profile();
        partial.complete = false;
        assert!(partial.validate().unwrap_err().contains("partial"));
    }
}
