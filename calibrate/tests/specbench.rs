//! Acceptance replayed from SpecDecode-Bench's measured H100 traces (shared/gpu/specdecode-bench),
//! and the per-position model fitted to them: the fitted model (what the simulator draws) reproduces
//! each trace's mean tokens per step within 1 % over 100k steps; the replay does so exactly over whole
//! passes. Skipped with a message when the folder is absent.

use specsim_calibrate::ops::specbench::{mean_over_positions, read_dataset, DATASETS};
use specsim_core::acceptance::trace::{expected_tokens_per_step, StepTrace};
use specsim_core::acceptance::{AcceptanceModel, PerPositionAcceptance};
use specsim_core::rng::stream;
use std::path::PathBuf;

mod common;

fn bench_dir() -> Option<PathBuf> {
    common::shared_gpu("specdecode-bench")
}

#[test]
fn replay_and_fitted_model_reproduce_each_traces_mean_accepted_length() {
    let Some(dir) = bench_dir() else {
        eprintln!("skipped: shared/gpu/specdecode-bench not found (set SPECSIM_SHARED)");
        return;
    };
    for name in DATASETS {
        let d = read_dataset(&dir, name).unwrap();
        for (method, acc) in [("eagle", &d.eagle), ("ngram", &d.ngram)] {
            let t = StepTrace::from_positions(name, acc, None).unwrap();
            // The trace's mean tokens per step, counted directly from the walked steps.
            let (tok, steps) = t
                .requests
                .iter()
                .flatten()
                .fold((0u64, 0u64), |(a, b), &l| (a + l as u64, b + 1));
            let mean = tok as f64 / steps as f64;
            assert!((t.mean_tokens_per_step() - mean).abs() < 1e-12);
            // Replay: whole requests in seeded shuffled passes. Over whole passes it is the trace
            // exactly; over 100k steps the part-pass at the end is a random subset of requests, so
            // its error is the request-sampling error (a few requests hold up to 15 % of a trace's
            // steps): checked against 4 standard errors of that, computed from the data.
            let steps = t.steps();
            let passes = 100_000usize.div_ceil(steps);
            let mut r = t.replay(stream(7, name, 0));
            let whole: Vec<u32> = (0..passes * steps).map(|_| r.next().unwrap()).collect();
            let exact = whole.iter().map(|&l| l as f64).sum::<f64>() / whole.len() as f64;
            assert!(
                (exact - mean).abs() < 1e-9,
                "{name}/{method}: {exact} vs {mean}"
            );
            let n = 100_000;
            let got = whole[..n].iter().map(|&l| l as f64).sum::<f64>() / n as f64;
            let part = n - (passes - 1) * steps;
            let var_req = t
                .requests
                .iter()
                .map(|q| {
                    let d = q.iter().map(|&l| l as f64 - mean).sum::<f64>();
                    d * d
                })
                .sum::<f64>()
                / t.requests.len() as f64;
            let frac = part as f64 / steps as f64;
            let k = frac * t.requests.len() as f64;
            let se = (var_req * k * (1.0 - frac)).sqrt() / n as f64;
            assert!(
                (got - mean).abs() < 4.0 * se + 1e-9,
                "{name}/{method}: replay {got} vs trace {mean} (se {se})"
            );
            // The fitted per-position model (conditional convention), drawn position by position as
            // the simulator draws: 100k steps with as many drafts as the runs had (20).
            let c = t.fit_conditional();
            assert!((expected_tokens_per_step(&c, c.len() as u32) - mean).abs() < 1e-9);
            let n = 100_000;
            let m = PerPositionAcceptance { alphas: c.clone() };
            let mut rng = stream(8, name, 1);
            let k = c.len() as u32;
            let mut total = 0u64;
            for _ in 0..n {
                let mut a = 0;
                while a < k && m.draw(a, None, &mut rng).accepted {
                    a += 1;
                }
                total += a as u64 + 1;
            }
            let fitted = total as f64 / n as f64;
            assert!(
                (fitted - mean).abs() / mean < 0.01,
                "{name}/{method}: fitted model {fitted} vs trace {mean}"
            );
            eprintln!(
                "{name:>13} {method}: acc_len mean over positions {:.2}, per walked step {mean:.3}, replay over 100k steps {got:.3} (se {:.3}), fitted {fitted:.3}",
                mean_over_positions(acc),
                se
            );
        }
    }
}
