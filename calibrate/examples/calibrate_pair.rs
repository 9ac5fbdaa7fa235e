//! Calibrates a draft/target pair without the full CLI (no trace tooling to build): the same library
//! call as `specsim calibrate`, with progress printed as lines.
//!
//! ```text
//! cargo run --release -p specsim-calibrate --example calibrate_pair -- \
//!     DRAFT.gguf TARGET.gguf OUT.toml PROMPTS.jsonl [quick|full] [threads] [max_prompts] [max_new_tokens] [temperature] [max_prompt_tokens]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use specsim_calibrate::acceptance::AcceptanceOptions;
use specsim_calibrate::latency::Grid;
use specsim_calibrate::{calibrate, CalibrateOptions};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 4 {
        eprintln!("usage: calibrate_pair DRAFT TARGET OUT PROMPTS [quick|full] [threads] [max_prompts] [max_new_tokens] [temperature] [max_prompt_tokens]");
        std::process::exit(2);
    }
    let quick = a.get(4).is_none_or(|m| m != "full");
    let threads: usize = a.get(5).and_then(|t| t.parse().ok()).unwrap_or(2);
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let k_max = 4;
    let opts = CalibrateOptions {
        draft: PathBuf::from(&a[0]),
        target: PathBuf::from(&a[1]),
        out: PathBuf::from(&a[2]),
        prompts: PathBuf::from(&a[3]),
        grid: if quick {
            Grid::quick(k_max)
        } else {
            Grid::full(k_max)
        },
        threads,
        acceptance: AcceptanceOptions {
            k: k_max,
            max_new_tokens: a.get(7).and_then(|t| t.parse().ok()).unwrap_or(48),
            max_prompt_tokens: a.get(9).and_then(|t| t.parse().ok()).unwrap_or(384),
            batch: 4,
            temperature: None,
            seed: 1,
        },
        sampled_temperature: a
            .get(8)
            .and_then(|t| t.parse::<f32>().ok())
            .or(Some(1.0))
            .filter(|t| *t > 0.0),
        max_prompts: a.get(6).and_then(|t| t.parse().ok()).unwrap_or(26),
        held_out: 12,
    };
    let start = Instant::now();
    let mut last_phase = String::new();
    let r = calibrate(&opts, &mut |u| {
        let el = start.elapsed().as_secs_f64();
        let eta = if u.done > 0 {
            el / u.done as f64 * (u.total - u.done) as f64
        } else {
            0.0
        };
        if u.phase != last_phase || u.done % 5 == 0 || u.done == u.total {
            eprintln!(
                "[{:>6.0}s] {:<22} {}/{} eta {:.0}s",
                el, u.phase, u.done, u.total, eta
            );
            last_phase = u.phase.clone();
        }
    });
    match r {
        Ok(rep) => {
            println!(
                "held-out median abs error {:.1}% over {} points; greedy mean accepted length measured {:.3}, model {:.3}",
                100.0 * rep.held_out_median_abs_error,
                rep.held_out.len(),
                rep.acceptance_greedy.measured_mean_accepted_length,
                rep.acceptance_greedy.predicted_mean_accepted_length
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
