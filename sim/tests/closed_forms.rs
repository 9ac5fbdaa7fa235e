//! The simulator against numbers derived independently of it: queueing theory, the geometric
//! acceptance formula, and a timeline worked by hand.

mod common;
use common::{run_all, scenario};
use specsim_core::acceptance::expected_emitted;

/// M/D/1: batch 1, no speculation, constant service D, Poisson arrivals at rate λ. Mean waiting time
/// (Pollaczek–Khinchine with zero service variance) is ρ / (2μ(1 − ρ)).
#[test]
fn md1_mean_waiting_time_matches_pollaczek_khinchine() {
    // One-token requests: service = one prefill step of a 1-token prompt = 10 ms exactly.
    let sc = scenario(
        r#"
        seed = 11
        [trace.synthetic]
        requests = 200000
        rate = 60.0
        prompt = { kind = "fixed", value = 1 }
        output = { kind = "fixed", value = 1 }
        [engine]
        kv_blocks = 100
        max_num_seqs = 1
        [cost]
        kind = "fixed"
        target_ms = 10.0
        [acceptance]
        kind = "constant"
        alpha = 0.0
        [[policies]]
        kind = "none"
        "#,
    );
    let run = &run_all(&sc)[0];
    // ρ = 0.6 keeps the estimator's autocorrelation short enough for 2% at 200k requests (at ρ = 0.8
    // seeds scatter by ±2% even at 400k).
    let (lambda, mu) = (60.0, 100.0);
    let rho: f64 = lambda / mu;
    let want = rho / (2.0 * mu * (1.0 - rho)); // 7.5 ms
    let wait = run.records.iter().map(|r| r.ttft_s - 0.010).sum::<f64>() / run.records.len() as f64;
    assert!(
        (wait - want).abs() / want < 0.02,
        "mean wait {wait} vs M/D/1 {want}"
    );
    assert!(run
        .records
        .iter()
        .all(|r| (r.e2e_s - r.ttft_s).abs() < 1e-12 && r.ttft_s >= 0.010 - 1e-12));
}

/// Static k with a constant acceptance rate α emits (1 − α^{k+1}) / (1 − α) tokens per step on average.
#[test]
fn static_k_mean_emitted_matches_geometric_closed_form() {
    for (alpha, k) in [(0.6, 3u32), (0.8, 5)] {
        let sc = scenario(&format!(
            r#"
            seed = 5
            [trace.synthetic]
            requests = 16
            rate = 1000.0
            prompt = {{ kind = "fixed", value = 16 }}
            output = {{ kind = "fixed", value = 6000 }}
            [engine]
            kv_blocks = 10000
            [cost]
            kind = "fixed"
            target_ms = 10.0
            draft_ms = 1.0
            [acceptance]
            kind = "constant"
            alpha = {alpha}
            [[policies]]
            kind = "static"
            k = {k}
            "#
        ));
        let run = &run_all(&sc)[0];
        let want = expected_emitted(alpha, k);
        let got = run.summary.mean_accepted_length;
        assert!(
            (got - want).abs() / want < 0.01,
            "alpha {alpha} k {k}: {got} vs {want}"
        );
    }
}

/// Three requests on one replica, worked by hand. Fixed cost: target 10 ms + 1 ms per token, draft
/// 2 ms per forward; static k = 2 with every draft accepted.
///
/// - t=0: R0 (prompt 4, output 4) prefills alone: 14 ms -> first token at 14.
/// - t=5: R1 (prompt 2, output 2) arrives while busy; t=14: it prefills: 12 ms -> first token at 26.
/// - t=26: decode R0 and R1. R1 owes 1 token so it drafts 0; R0 drafts 2 (2 × 2 ms). Verify 3 + 1
///   tokens: 14 ms. End 26 + 4 + 14 = 44: R0 emits 3 (done, 4 tokens), R1 emits 1 (done).
/// - t=100: R2 (prompt 3, output 1) prefills: 13 ms -> done at 113.
#[test]
fn hand_worked_three_request_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.csv");
    std::fs::write(
        &trace,
        "arrival_s,prompt_tokens,output_tokens\n0,4,4\n0.005,2,2\n0.1,3,1\n",
    )
    .unwrap();
    let sc = scenario(&format!(
        r#"
        [trace]
        path = "{}"
        [engine]
        kv_blocks = 100
        [cost]
        kind = "fixed"
        target_ms = 10.0
        target_per_token_ms = 1.0
        draft_ms = 2.0
        [acceptance]
        kind = "constant"
        alpha = 1.0
        [[policies]]
        kind = "static"
        k = 2
        "#,
        trace.display()
    ));
    let run = &run_all(&sc)[0];
    let r = &run.records;
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    // (first token, finish, ttft, tpot, e2e, drafted, accepted) per request, in seconds.
    let want = [
        (0.014, 0.044, 0.014, 0.010, 0.044, 2, 2),
        (0.026, 0.044, 0.021, 0.018, 0.039, 0, 0),
        (0.113, 0.113, 0.013, 0.0, 0.013, 0, 0),
    ];
    for (i, w) in want.iter().enumerate() {
        let got = &r[i];
        assert!(
            close(got.first_token_s, w.0) && close(got.finish_s, w.1),
            "request {i}: {got:?}"
        );
        assert!(
            close(got.ttft_s, w.2) && close(got.tpot_s, w.3) && close(got.e2e_s, w.4),
            "request {i}: {got:?}"
        );
        assert_eq!((got.drafted, got.accepted), (w.5, w.6), "request {i}");
    }
    assert_eq!(
        r.iter().map(|x| x.output_tokens).collect::<Vec<_>>(),
        vec![4, 2, 1]
    );
    // Steps: prefill R0, prefill R1, decode, prefill R2.
    let kinds: Vec<_> = run
        .steps
        .iter()
        .map(|s| (s.report.start_ns, s.report.end_ns, s.report.target_tokens))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0, 14_000_000, 4),
            (14_000_000, 26_000_000, 2),
            (26_000_000, 44_000_000, 4),
            (100_000_000, 113_000_000, 3)
        ]
    );
}
