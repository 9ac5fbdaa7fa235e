//! End to end on tiny generated models: a calibration runs, writes a complete profile (and no partial
//! file), and a scenario that uses the profile for cost and acceptance loads and simulates.

use std::path::Path;

use specsim_calibrate::acceptance::AcceptanceOptions;
use specsim_calibrate::latency::Grid;
use specsim_calibrate::run::{partial_path, report_path};
use specsim_calibrate::{calibrate, CalibrateError, CalibrateOptions};
use specsim_core::acceptance::AcceptanceConfig;
use specsim_core::cost::profile::Profile;
use specsim_runtime::model::tiny::{TinyArch, TinySpec};
use specsim_sim::scenario::Scenario;

fn tiny_grid() -> Grid {
    Grid {
        draft_batch: vec![1, 2],
        draft_context: vec![16, 48],
        verify_batch: vec![1, 2],
        tokens_per_seq: vec![1, 2, 3],
        verify_context: vec![16, 48],
        prefill_tokens: vec![8, 32],
        warmup: 1,
        reps: 2,
    }
}

fn options(dir: &Path) -> CalibrateOptions {
    let target = TinySpec::new(TinyArch::Qwen2, 11);
    let draft = target.perturbed(12, 0.3);
    target.write(&dir.join("target.gguf")).unwrap();
    draft.write(&dir.join("draft.gguf")).unwrap();
    let prompts = dir.join("prompts.jsonl");
    let mut lines = String::new();
    for i in 0..6 {
        let cat = if i % 2 == 0 { "coding" } else { "writing" };
        lines.push_str(&format!(
            "{{\"category\": \"{cat}\", \"turns\": [\"prompt number {i}: write a small function\"]}}\n"
        ));
    }
    std::fs::write(&prompts, lines).unwrap();
    CalibrateOptions {
        draft: dir.join("draft.gguf"),
        target: dir.join("target.gguf"),
        out: dir.join("tiny.toml"),
        prompts,
        grid: tiny_grid(),
        threads: 1,
        acceptance: AcceptanceOptions {
            k: 2,
            max_new_tokens: 16,
            max_prompt_tokens: 64,
            batch: 2,
            temperature: None,
            seed: 1,
        },
        sampled_temperature: Some(1.0),
        max_prompts: 6,
        held_out: 4,
    }
}

#[test]
fn tiny_calibration_writes_a_profile_that_a_scenario_simulates() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let mut updates = 0u64;
    let mut last = (0, 0);
    let report = calibrate(&opts, &mut |u| {
        updates += 1;
        last = (u.done, u.total);
    })
    .unwrap();
    // Progress counts every unit once: 4 draft + 12 verify + 2 target and 2 draft prefill points,
    // the overhead, the held-out points, and 6 prompts twice (greedy and sampled).
    let held = report.held_out.len() as u64;
    assert_eq!(
        last,
        (4 + 12 + 4 + 1 + held + 12, 4 + 12 + 4 + 1 + held + 12)
    );
    // The draft's prefill is timed on the same prompt lengths as the target's.
    let dp = Profile::load(&opts.out).unwrap().draft_prefill.unwrap();
    assert_eq!(dp.tokens.len(), 2);
    assert!(dp.ns.iter().all(|&t| t.is_finite() && t > 0.0));
    assert_eq!(updates, last.1);
    assert!(held > 0);

    // The profile is complete, validates, and the partial file is gone.
    assert!(!partial_path(&opts.out).exists());
    assert!(report_path(&opts.out).exists());
    let p = Profile::load(&opts.out).unwrap();
    assert!(p.complete);
    assert!(p
        .draft
        .ns
        .iter()
        .flatten()
        .all(|x| x.is_finite() && *x > 0.0));
    assert!(p
        .verify
        .ns
        .iter()
        .flatten()
        .flatten()
        .all(|x| x.is_finite() && *x > 0.0));
    assert!(p.fit.verify.is_some() && p.fit.draft.is_some() && p.fit.prefill.is_some());
    assert!(p.provenance["target"].contains("sha256:"));
    match &p.acceptance {
        Some(AcceptanceConfig::Calibrated { curve, .. }) => assert!(curve.is_some()),
        other => panic!("expected calibrated acceptance, got {other:?}"),
    }
    // Greedy acceptance: tokens per step lie in [1, k + 1], and the steps' accepted counts agree with
    // the per-position records (every accepted record is one accepted token).
    let g = &report.acceptance_greedy;
    assert!((1.0..=3.0).contains(&g.measured_mean_accepted_length));
    assert!(report.acceptance_sampled.is_some());

    // A scenario that takes cost and acceptance from the profile loads and simulates.
    let scenario = r#"
name = "tiny-profile"
seed = 3
[trace.synthetic]
requests = 20
rate = 5.0
arrival = { kind = "poisson" }
prompt = { kind = "fixed", value = 24 }
output = { kind = "fixed", value = 16 }
[engine]
kv_blocks = 64
[cost]
kind = "profile"
path = "tiny.toml"
[acceptance]
kind = "profile"
path = "tiny.toml"
[[policies]]
kind = "static"
k = 2
"#;
    let sp = dir.path().join("s.toml");
    std::fs::write(&sp, scenario).unwrap();
    let sc = Scenario::load(&sp, &[]).unwrap();
    let w = sc.builtin_workload().unwrap();
    let run = sc
        .run_policy(&w, &sc.file.policies[0], false, None)
        .unwrap();
    assert_eq!(run.records.len(), 20);
    assert!(run.summary.mean_accepted_length >= 1.0 && run.summary.mean_accepted_length <= 3.0);
}

#[test]
fn missing_and_mismatched_models_and_bad_prompts_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.draft = dir.path().join("nope.gguf");
    let e = calibrate(&opts, &mut |_| {}).unwrap_err();
    assert!(
        matches!(e, CalibrateError::ModelFile { role: "draft", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("nope.gguf") && !e.to_string().contains('\n'));

    // A draft with a different vocabulary.
    let mut other = TinySpec::new(TinyArch::Qwen2, 5);
    other.vocab = 128;
    other.write(&dir.path().join("other.gguf")).unwrap();
    opts.draft = dir.path().join("other.gguf");
    let e = calibrate(&opts, &mut |_| {}).unwrap_err();
    assert!(matches!(e, CalibrateError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("vocabulary"), "{e}");

    // An unreadable prompt set.
    let mut opts = options(dir.path());
    opts.prompts = dir.path().join("missing.jsonl");
    let e = calibrate(&opts, &mut |_| {}).unwrap_err();
    assert!(matches!(e, CalibrateError::Prompts { .. }), "{e}");
    // Nothing was written as if complete.
    assert!(!opts.out.exists());
}

#[test]
fn an_interrupted_calibration_leaves_only_a_partial_profile_that_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    // Interrupt from the progress callback (as a failure half-way would): the error propagates... the
    // callback cannot fail, so simulate the interruption by a panic caught here.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        calibrate(&opts, &mut |u| {
            if u.done == 5 {
                panic!("interrupted");
            }
        })
    }));
    assert!(r.is_err());
    assert!(!opts.out.exists());
    let partial = partial_path(&opts.out);
    let text = std::fs::read_to_string(&partial).unwrap();
    assert!(text.contains("complete = false"));
    let e = Profile::load(&partial).unwrap_err().to_string();
    assert!(e.contains("partial"), "{e}");
}

/// The acceptance pass runs through the engine core. With the target as its own draft every greedy
/// draft is accepted, so each step's length is set by the engine's cap alone: k, or one fewer than the
/// tokens the sequence still owes. Hand-worked for 9 new tokens and k = 3: prefill emits 1 (8 owed);
/// steps draft 3 (emit 4, 4 owed), 3 (emit 4, 0 owed): 2 steps, 6 accepted, accepted length 4.0.
/// For 8 new tokens: 3 (emit 4, 3 owed), then 2 (emit 3): 2 steps, 5 accepted, length 3.5.
#[test]
fn acceptance_through_the_engine_caps_drafts_as_serving_does() {
    use specsim_calibrate::acceptance::{measure_acceptance, EncodedPrompt};
    use std::sync::Arc;
    let spec = TinySpec::new(TinyArch::Qwen2, 21);
    let device = candle_core::Device::Cpu;
    let model = Arc::new(spec.build(&device).unwrap());
    for (new_tokens, steps, accepted) in [(9u32, 2u64, 6u64), (8, 2, 5)] {
        let prompts: Vec<EncodedPrompt> = (0..3)
            .map(|i| EncodedPrompt {
                category: if i == 1 { "b" } else { "a" }.into(),
                tokens: (1..=10 + i).collect(),
            })
            .collect();
        let opts = AcceptanceOptions {
            k: 3,
            max_new_tokens: new_tokens,
            max_prompt_tokens: 64,
            batch: 2,
            temperature: None,
            seed: 0,
        };
        let mut ticks = 0;
        let m = measure_acceptance(model.clone(), model.clone(), &prompts, &opts, &mut || {
            ticks += 1
        })
        .unwrap();
        assert_eq!(ticks, 3, "one tick per finished prompt");
        assert_eq!(m.categories, ["a", "b"]);
        // Per prompt: `steps` steps and `accepted` accepted; category a holds two prompts.
        assert_eq!(m.steps, [2 * steps, steps]);
        assert_eq!(m.accepted, [2 * accepted, accepted]);
        // Every accepted token is one accepted record; nothing is rejected.
        let recorded = m.records.iter().filter(|r| r.accepted).count() as u64;
        assert_eq!(recorded, 3 * accepted);
        assert_eq!(recorded, m.records.len() as u64);
        let expected_length = (accepted + steps) as f64 / steps as f64;
        assert!((m.mean_accepted_length(None) - expected_length).abs() < 1e-12);
    }
}
