//! The ragged batched forward and KV rollback on tiny random-weight models written by the tests.
//!
//! Three independent facts are checked:
//! - the model computes the architecture: with f32 weights, its logits equal a naive loop-by-loop
//!   implementation written here from the architecture's definition (tolerance 1e-3 on logits of
//!   standard deviation ≈ 4, i.e. f32 summation-order noise);
//! - ragged batching changes nothing: a batch of sequences with different past lengths and different
//!   numbers of new tokens gives the logits of each sequence run alone (tolerance below);
//! - rollback is exact: truncating the cache after a verification leaves the keys and values of a cache
//!   that was only fed the kept tokens, and the next forward gives the same logits.

use std::io::Cursor;

use candle_core::quantized::gguf_file;
use candle_core::Device;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use specsim_runtime::model::tiny::{TinyArch, TinySpec};
use specsim_runtime::model::{ForwardItem, KvCache, LogitRows, Model};

/// Ragged batch vs alone, quantized weights. The quantized kernels quantize each activation row on its
/// own and compute each output from one row, so batching should change nothing but summation order
/// inside attention's packed keys; 1e-4 absolute on logits of standard deviation ≈ 4 allows that.
const RAGGED_TOL: f32 = 1e-4;

fn random_tokens(rng: &mut StdRng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| rng.random_range(0..vocab as u32)).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Feeds `tokens` to `cache` in one forward and returns every logit row.
fn feed_all(model: &Model, cache: &mut KvCache, tokens: &[u32]) -> Vec<Vec<f32>> {
    let logits = model
        .forward(&mut [ForwardItem {
            cache,
            tokens,
            logits: LogitRows::All,
        }])
        .unwrap();
    (0..logits.rows(0))
        .map(|j| logits.row(0, j).unwrap().to_vec())
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// A naive reference: plain loops over dequantized weights, one sequence, no cache.

struct Naive {
    w: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    arch: TinyArch,
    spec: TinySpec,
}

impl Naive {
    fn new(spec: &TinySpec) -> Self {
        let bytes = spec.gguf_bytes().unwrap();
        let mut r = Cursor::new(bytes);
        let content = gguf_file::Content::read(&mut r).unwrap();
        let mut w = std::collections::HashMap::new();
        for name in content.tensor_infos.keys() {
            let t = content
                .tensor(&mut r, name, &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap();
            w.insert(
                name.clone(),
                (
                    t.dims().to_vec(),
                    t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                ),
            );
        }
        Self {
            w,
            arch: spec.arch,
            spec: spec.clone(),
        }
    }

    fn get(&self, name: &str) -> &[f32] {
        &self.w[name].1
    }

    /// y = W x (+ b) with W stored as [out, in].
    fn linear(&self, name: &str, x: &[f32], bias: Option<&str>) -> Vec<f32> {
        let (dims, w) = &self.w[name];
        let (out, inp) = (dims[0], dims[1]);
        (0..out)
            .map(|o| {
                let s: f32 = (0..inp).map(|i| w[o * inp + i] * x[i]).sum();
                s + bias.map_or(0.0, |b| self.get(b)[o])
            })
            .collect()
    }

    fn rms_norm(&self, name: &str, x: &[f32]) -> Vec<f32> {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        let s = 1.0 / (ms + 1e-6).sqrt();
        x.iter()
            .zip(self.get(name))
            .map(|(v, g)| v * s * g)
            .collect()
    }

    /// Rotates one head vector in place at position `pos`.
    fn rope(&self, v: &mut [f32], pos: usize) {
        let d = v.len();
        for j in 0..d / 2 {
            let theta = pos as f32 * 10_000f32.powf(-((2 * j) as f32) / d as f32);
            let (a, b) = match self.arch {
                TinyArch::Qwen2 => (j, j + d / 2),
                TinyArch::Llama => (2 * j, 2 * j + 1),
            };
            let (x, y) = (v[a], v[b]);
            v[a] = x * theta.cos() - y * theta.sin();
            v[b] = x * theta.sin() + y * theta.cos();
        }
    }

    /// Logits at every position of `tokens`.
    fn forward(&self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let s = &self.spec;
        let (h, nh, nkv) = (s.hidden, s.n_head, s.n_kv_head);
        let d = h / nh;
        let embd = self.get("token_embd.weight");
        let mut xs: Vec<Vec<f32>> = tokens
            .iter()
            .map(|&t| embd[t as usize * h..(t as usize + 1) * h].to_vec())
            .collect();
        let bias = |l: usize, w: &str| {
            (self.arch == TinyArch::Qwen2).then(|| format!("blk.{l}.attn_{w}.bias"))
        };
        for l in 0..s.n_layer {
            let (mut qs, mut ks, mut vs) = (vec![], vec![], vec![]);
            for (pos, x) in xs.iter().enumerate() {
                let hn = self.rms_norm(&format!("blk.{l}.attn_norm.weight"), x);
                let mut q = self.linear(
                    &format!("blk.{l}.attn_q.weight"),
                    &hn,
                    bias(l, "q").as_deref(),
                );
                let mut k = self.linear(
                    &format!("blk.{l}.attn_k.weight"),
                    &hn,
                    bias(l, "k").as_deref(),
                );
                let v = self.linear(
                    &format!("blk.{l}.attn_v.weight"),
                    &hn,
                    bias(l, "v").as_deref(),
                );
                q.chunks_mut(d).for_each(|c| self.rope(c, pos));
                k.chunks_mut(d).for_each(|c| self.rope(c, pos));
                qs.push(q);
                ks.push(k);
                vs.push(v);
            }
            for i in 0..xs.len() {
                let mut att = vec![0f32; h];
                for head in 0..nh {
                    let kvh = head / (nh / nkv);
                    let q = &qs[i][head * d..(head + 1) * d];
                    let scores: Vec<f32> = (0..=i)
                        .map(|j| {
                            q.iter()
                                .zip(&ks[j][kvh * d..(kvh + 1) * d])
                                .map(|(a, b)| a * b)
                                .sum::<f32>()
                                / (d as f32).sqrt()
                        })
                        .collect();
                    let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                    let z: f32 = e.iter().sum();
                    for (j, ej) in e.iter().enumerate() {
                        for t in 0..d {
                            att[head * d + t] += ej / z * vs[j][kvh * d + t];
                        }
                    }
                }
                let o = self.linear(&format!("blk.{l}.attn_output.weight"), &att, None);
                xs[i].iter_mut().zip(o).for_each(|(x, o)| *x += o);
                let hn = self.rms_norm(&format!("blk.{l}.ffn_norm.weight"), &xs[i]);
                let g = self.linear(&format!("blk.{l}.ffn_gate.weight"), &hn, None);
                let u = self.linear(&format!("blk.{l}.ffn_up.weight"), &hn, None);
                let m: Vec<f32> = g
                    .iter()
                    .zip(&u)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                let down = self.linear(&format!("blk.{l}.ffn_down.weight"), &m, None);
                xs[i].iter_mut().zip(down).for_each(|(x, o)| *x += o);
            }
        }
        let out = if self.w.contains_key("output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        xs.iter()
            .map(|x| self.linear(out, &self.rms_norm("output_norm.weight", x), None))
            .collect()
    }
}

#[test]
fn forward_matches_naive_reference_for_both_architectures() {
    for arch in [TinyArch::Qwen2, TinyArch::Llama] {
        let spec = TinySpec {
            quantized: false,
            ..TinySpec::new(arch, 3)
        };
        let model = spec.build(&Device::Cpu).unwrap();
        let naive = Naive::new(&spec);
        let tokens = random_tokens(&mut StdRng::seed_from_u64(5), 12, spec.vocab);
        let want = naive.forward(&tokens);
        // Fed in two chunks (7 + 5) so that the second chunk attends to cached keys.
        let mut cache = model.new_cache();
        let mut got = feed_all(&model, &mut cache, &tokens[..7]);
        got.extend(feed_all(&model, &mut cache, &tokens[7..]));
        let spread =
            want.iter().flatten().map(|x| x * x).sum::<f32>() / (want.len() * spec.vocab) as f32;
        assert!(
            spread.sqrt() > 1.0,
            "{arch:?}: logits too flat for a meaningful comparison"
        );
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let d = max_abs_diff(g, w);
            assert!(d < 1e-3, "{arch:?} position {i}: max |Δlogit| = {d}");
        }
    }
}

#[test]
fn ragged_batch_matches_each_sequence_alone() {
    for arch in [TinyArch::Qwen2, TinyArch::Llama] {
        let spec = TinySpec::new(arch, 1);
        let model = spec.build(&Device::Cpu).unwrap();
        let mut rng = StdRng::seed_from_u64(9);
        // (past tokens, new tokens) per sequence: a fresh prefill, a decode step, a verification of 4
        // drafts, and a chunk continuing a prefill.
        let shapes = [(0usize, 6usize), (9, 1), (5, 5), (17, 3)];
        let seqs: Vec<(Vec<u32>, Vec<u32>)> = shapes
            .iter()
            .map(|&(p, n)| {
                (
                    random_tokens(&mut rng, p, spec.vocab),
                    random_tokens(&mut rng, n, spec.vocab),
                )
            })
            .collect();

        // Alone: each sequence's past, then its new tokens.
        let mut alone = Vec::new();
        for (past, new) in &seqs {
            let mut c = model.new_cache();
            if !past.is_empty() {
                feed_all(&model, &mut c, past);
            }
            alone.push(feed_all(&model, &mut c, new));
        }

        // Batched: pasts in one ragged prefill, then all new tokens in one ragged forward.
        let mut caches: Vec<KvCache> = seqs.iter().map(|_| model.new_cache()).collect();
        {
            let mut items: Vec<ForwardItem> = caches
                .iter_mut()
                .zip(&seqs)
                .filter(|(_, (past, _))| !past.is_empty())
                .map(|(cache, (past, _))| ForwardItem {
                    cache,
                    tokens: past,
                    logits: LogitRows::None,
                })
                .collect();
            model.forward(&mut items).unwrap();
        }
        let mut items: Vec<ForwardItem> = caches
            .iter_mut()
            .zip(&seqs)
            .map(|(cache, (_, new))| ForwardItem {
                cache,
                tokens: new,
                logits: LogitRows::All,
            })
            .collect();
        let logits = model.forward(&mut items).unwrap();
        let mut worst = 0f32;
        for (i, rows) in alone.iter().enumerate() {
            assert_eq!(logits.rows(i), rows.len());
            for (j, row) in rows.iter().enumerate() {
                worst = worst.max(max_abs_diff(logits.row(i, j).unwrap(), row));
            }
        }
        assert!(
            worst <= RAGGED_TOL,
            "{arch:?}: ragged vs alone max |Δlogit| = {worst}"
        );
        for (c, &(p, n)) in caches.iter().zip(&shapes) {
            assert_eq!(c.len(), p + n);
        }
    }
}

#[test]
fn one_forward_of_k_tokens_equals_k_single_token_forwards() {
    for arch in [TinyArch::Qwen2, TinyArch::Llama] {
        let spec = TinySpec::new(arch, 2);
        let model = spec.build(&Device::Cpu).unwrap();
        let tokens = random_tokens(&mut StdRng::seed_from_u64(4), 10, spec.vocab);
        let mut a = model.new_cache();
        let all = feed_all(&model, &mut a, &tokens);
        let mut b = model.new_cache();
        for (i, t) in tokens.iter().enumerate() {
            let one = feed_all(&model, &mut b, std::slice::from_ref(t));
            let d = max_abs_diff(&one[0], &all[i]);
            assert!(d <= RAGGED_TOL, "{arch:?} position {i}: {d}");
        }
    }
}

#[test]
fn kv_rollback_leaves_cache_as_if_rejected_tokens_were_never_fed() {
    for arch in [TinyArch::Qwen2, TinyArch::Llama] {
        let spec = TinySpec::new(arch, 6);
        let model = spec.build(&Device::Cpu).unwrap();
        let mut rng = StdRng::seed_from_u64(12);
        let prompt = random_tokens(&mut rng, 11, spec.vocab);
        let step = random_tokens(&mut rng, 5, spec.vocab); // last emitted token + 4 drafts
        let next = random_tokens(&mut rng, 1, spec.vocab);

        // Verified 4 drafts, accepted 2: keep the last token and 2 drafts, then decode the next token.
        let mut rolled = model.new_cache();
        feed_all(&model, &mut rolled, &prompt);
        feed_all(&model, &mut rolled, &step);
        rolled.truncate(prompt.len() + 3).unwrap();
        // A cache that only ever saw the kept tokens, fed in the same chunks.
        let mut fresh = model.new_cache();
        feed_all(&model, &mut fresh, &prompt);
        feed_all(&model, &mut fresh, &step[..3]);

        assert_eq!(rolled.len(), fresh.len());
        for l in 0..model.config().n_layer {
            for (a, b) in [
                (rolled.keys(l), fresh.keys(l)),
                (rolled.values(l), fresh.values(l)),
            ] {
                let a = a.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let b = b.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(
                    a, b,
                    "{arch:?} layer {l}: cached keys/values differ after rollback"
                );
            }
        }
        let after_rollback = feed_all(&model, &mut rolled, &next);
        let after_fresh = feed_all(&model, &mut fresh, &next);
        assert_eq!(
            after_rollback, after_fresh,
            "{arch:?}: next-token logits differ after rollback"
        );
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let spec = TinySpec::new(TinyArch::Qwen2, 1);
    let model = spec.build(&Device::Cpu).unwrap();
    let mut c = model.new_cache();
    let vocab = spec.vocab as u32;
    assert!(model.forward(&mut []).is_err());
    assert!(model
        .forward(&mut [ForwardItem {
            cache: &mut c,
            tokens: &[],
            logits: LogitRows::All
        }])
        .is_err());
    assert!(model
        .forward(&mut [ForwardItem {
            cache: &mut c,
            tokens: &[vocab],
            logits: LogitRows::All
        }])
        .is_err());
    let long = vec![0u32; spec.context + 1];
    assert!(model
        .forward(&mut [ForwardItem {
            cache: &mut c,
            tokens: &long,
            logits: LogitRows::Last
        }])
        .is_err());
    assert_eq!(c.len(), 0, "a failed forward must not change the cache");
    assert!(c.truncate(1).is_err());
    assert!(
        Model::from_reader(&mut Cursor::new(b"not a gguf".to_vec()), &Device::Cpu, None).is_err()
    );
}
