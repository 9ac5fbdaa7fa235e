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

/// Closed loop at concurrency 1: requests run one after another, each arriving the instant the one
/// before it finishes; with a fixed cost its TTFT is one prefill step and its TPOT one decode step, so
/// E2E = TTFT + (n − 1)·TPOT for every request, to the nanosecond.
#[test]
fn closed_loop_at_concurrency_one_runs_requests_back_to_back() {
    let sc = scenario(
        r#"
        seed = 3
        [trace]
        concurrency = 1
        [trace.synthetic]
        requests = 50
        rate = 0.001
        arrival = { kind = "uniform" }
        prompt = { kind = "uniform", min = 10, max = 200 }
        output = { kind = "uniform", min = 1, max = 40 }
        [engine]
        kv_blocks = 1000
        [cost]
        kind = "fixed"
        target_ms = 5.0
        target_per_token_ms = 0.01
        [acceptance]
        kind = "constant"
        alpha = 0.0
        [[policies]]
        kind = "none"
        "#,
    );
    let run = &run_all(&sc)[0];
    assert_eq!(run.records.len(), 50);
    let mut recs = run.records.clone();
    recs.sort_by_key(|r| r.id);
    // Open-loop arrivals at 0.001/s would put request 1 some 1000 s after request 0; closed, it
    // arrives when request 0 finishes.
    for w in recs.windows(2) {
        assert!(
            (w[1].arrival_s - w[0].finish_s).abs() < 1e-9,
            "request {} arrives at {} but {} finished at {}",
            w[1].id,
            w[1].arrival_s,
            w[0].id,
            w[0].finish_s
        );
    }
    for r in &recs {
        // Prefill of p tokens: 5 ms + p·0.01 ms; each later token one 1-token step: 5.01 ms.
        let ttft = 0.005 + r.prompt_tokens as f64 * 0.00001;
        let tpot = 0.00501;
        assert!(
            (r.ttft_s - ttft).abs() < 1e-9,
            "ttft {} vs {ttft}",
            r.ttft_s
        );
        if r.output_tokens > 1 {
            assert!((r.tpot_s - tpot).abs() < 1e-9, "tpot {}", r.tpot_s);
        }
        let want = r.ttft_s + (r.output_tokens - 1) as f64 * r.tpot_s;
        assert!((r.e2e_s - want).abs() < 1e-9, "e2e {} vs {want}", r.e2e_s);
        let by_hand = ttft + (r.output_tokens - 1) as f64 * tpot;
        assert!((r.e2e_s - by_hand).abs() < 1e-9);
    }
}

/// Closed loop at concurrency N: N requests are always in flight, so by Little's law throughput =
/// N / mean E2E (within 1 %: the ramp-up (the first N arrive at 1000/s) and the drain at the end are a
/// few of 4000).
#[test]
fn closed_loop_throughput_obeys_littles_law() {
    for (c, spec) in [(8u32, "none"), (24, "static")] {
        let policy = if spec == "none" {
            "kind = \"none\"".to_string()
        } else {
            "kind = \"static\"\nk = 3".to_string()
        };
        let sc = scenario(&format!(
            r#"
            seed = 9
            [trace]
            concurrency = {c}
            [trace.synthetic]
            requests = 4000
            rate = 1000.0
            prompt = {{ kind = "uniform", min = 20, max = 400 }}
            output = {{ kind = "uniform", min = 5, max = 120 }}
            [engine]
            kv_blocks = 100000
            chunked_prefill = true
            [cost]
            kind = "fixed"
            target_ms = 8.0
            target_per_token_ms = 0.02
            draft_ms = 1.0
            [acceptance]
            kind = "constant"
            alpha = 0.7
            [[policies]]
            {policy}
            "#
        ));
        let run = &run_all(&sc)[0];
        let n = run.records.len() as f64;
        assert_eq!(n, 4000.0);
        let mean_e2e = run.records.iter().map(|r| r.e2e_s).sum::<f64>() / n;
        let little = c as f64 / mean_e2e;
        let got = run.summary.throughput_rps;
        assert!(
            (got - little).abs() / little < 0.01,
            "concurrency {c}: throughput {got} vs N / mean E2E {little}"
        );
        // Never more than N in flight: at any arrival, at most N − 1 earlier requests are unfinished.
        let mut recs = run.records.clone();
        recs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
        for (i, r) in recs.iter().enumerate() {
            let open = recs[..i]
                .iter()
                .filter(|o| o.finish_s > r.arrival_s + 1e-12)
                .count();
            assert!(open < c as usize, "{open} in flight when {} arrived", r.id);
        }
    }
}
