//! The prediction at the live forwards' speed (`fidelity::speed`) is the plain prediction with every
//! forward's time scaled, and nothing else: at speed 1 it is `Scenario::run_policy`'s, row for row;
//! on an idle engine (requests far apart, so none waits for another) doubling every forward doubles
//! every request's TTFT and TPOT.

use specsim_replay::fidelity::speed::{predict_at_speed, Speed};
use specsim_replay::fidelity::steps::parse_step_log;
use specsim_sim::metrics::RequestRecord;
use specsim_sim::scenario::Scenario;
use std::path::Path;

fn quickstart(sets: &[&str]) -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/quickstart.toml");
    // Nearly constant gaps (Gamma, CV 0.01) instead of Poisson's, so no two requests ever meet.
    let text = std::fs::read_to_string(path).unwrap().replace(
        r#"arrival = { kind = "poisson" }"#,
        r#"arrival = { kind = "gamma", cv = 0.01 }"#,
    );
    assert!(text.contains("cv = 0.01"));
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Scenario::parse(&text, Path::new(path), Path::new("."), &sets).unwrap()
}

/// `none` on an idle engine (`requests` 50 s apart): the prediction at the model's speed and at `speed`.
fn idle_none(requests: u32, speed: Speed) -> (Vec<RequestRecord>, Vec<RequestRecord>) {
    let n = format!("trace.synthetic.requests={requests}");
    let sc = quickstart(&[&n, "trace.synthetic.rate=0.02"]);
    let w = sc.builtin_workload().unwrap();
    let none = sc
        .file
        .policies
        .iter()
        .find(|p| p.build().name() == "none")
        .unwrap();
    let plain = predict_at_speed(&sc, &w, none, Speed::MODEL).unwrap();
    (plain, predict_at_speed(&sc, &w, none, speed).unwrap())
}

#[test]
fn at_speed_one_it_is_the_plain_prediction() {
    let sc = quickstart(&["trace.synthetic.requests=300"]);
    let w = sc.builtin_workload().unwrap();
    for policy in &sc.file.policies {
        let plain = sc.run_policy(&w, policy, false, None).unwrap().records;
        let at_speed = predict_at_speed(&sc, &w, policy, Speed::MODEL).unwrap();
        assert_eq!(plain, at_speed, "{}", policy.build().name());
    }
}

#[test]
fn on_an_idle_engine_twice_slower_forwards_double_every_latency() {
    // 20 requests 50 s apart; the longest (1,024 output tokens at ~9 ms, twice that doubled) is done
    // in under 20 s.
    let sc = quickstart(&["trace.synthetic.requests=20", "trace.synthetic.rate=0.02"]);
    let w = sc.builtin_workload().unwrap();
    for policy in &sc.file.policies {
        let once = predict_at_speed(&sc, &w, policy, Speed::MODEL).unwrap();
        let doubled = Speed {
            draft: 2.0,
            prefill: 2.0,
            decode: 2.0,
            jitter_cv: 0.0,
        };
        let twice = predict_at_speed(&sc, &w, policy, doubled).unwrap();
        assert_eq!(once.len(), 20);
        for (a, b) in once.iter().zip(&twice) {
            assert_eq!(a.id, b.id);
            // Each forward's nanoseconds are doubled exactly; the records are in seconds.
            assert!((b.ttft_s - 2.0 * a.ttft_s).abs() < 1e-6, "{a:?} {b:?}");
            assert!((b.tpot_s - 2.0 * a.tpot_s).abs() < 1e-6, "{a:?} {b:?}");
        }
    }
}

#[test]
fn jitter_multiplies_each_forward_by_a_factor_of_mean_one_and_the_given_cv() {
    // 2,000 requests far apart under `none`: each TTFT is one prefill forward, so the ratio of a
    // request's TTFT with jitter to its TTFT without is one draw of the factor. Log-normal, mean 1,
    // CV 0.2: the sample mean is within 3 standard errors (3 × 0.2 / √2000 = 1.3 %) of 1 and the
    // sample CV within 0.02 of 0.2 (a sample SD's standard error is about σ / √(2n) = 0.2 / √4000
    // ≈ 0.003 for a near-normal sample, which a log-normal this narrow is; 0.02 is six of them).
    let jitter = Speed {
        jitter_cv: 0.2,
        ..Speed::MODEL
    };
    let (plain, jittered) = idle_none(2000, jitter);
    let factors: Vec<f64> = plain
        .iter()
        .zip(&jittered)
        .map(|(a, b)| b.ttft_s / a.ttft_s)
        .collect();
    let n = factors.len() as f64;
    let mean = factors.iter().sum::<f64>() / n;
    let sd = (factors.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!((mean - 1.0).abs() < 0.013, "mean {mean}");
    assert!((sd / mean - 0.2).abs() < 0.02, "CV {}", sd / mean);
    // Seeded: the same again.
    assert_eq!(jittered, idle_none(2000, jitter).1);
}

#[test]
fn speed_ratios_are_time_weighted_per_kind_of_forward() {
    // Decode: (10 + 30) ms measured for (10 + 10) ms predicted = 2.0; draft: 3 / 2 = 1.5; prefill
    // (a forward with prompt tokens): 12 / 8 = 1.5.
    let rows = parse_step_log(
        "time_s,model,seqs,new_tokens,prefill_tokens,context_tokens,measured_s,predicted_s\n\
         1.0,target,1,1,0,9,0.010,0.010\n1.1,draft,1,1,0,9,0.003,0.002\n\
         1.2,target,1,1,0,10,0.030,0.010\n1.3,target,2,9,8,18,0.012,0.008\n",
        "log",
    )
    .unwrap();
    let s = Speed::of(&rows);
    assert!((s.decode - 2.0).abs() < 1e-12, "{s:?}");
    assert!(
        (s.draft - 1.5).abs() < 1e-12 && (s.prefill - 1.5).abs() < 1e-12,
        "{s:?}"
    );
    assert_eq!(Speed::of(&rows[..1]).prefill, 1.0);
}

#[test]
fn prefill_and_decode_forwards_take_their_own_factors() {
    // On an idle engine under `none`, TTFT is the prefill forward alone and TPOT decode forwards
    // alone: a prefill factor of 3 and a decode factor of 1 triple TTFT and leave TPOT as it was.
    let slow_prefill = Speed {
        prefill: 3.0,
        ..Speed::MODEL
    };
    let (plain, at) = idle_none(20, slow_prefill);
    for (a, b) in plain.iter().zip(&at) {
        assert!((b.ttft_s - 3.0 * a.ttft_s).abs() < 1e-6, "{a:?} {b:?}");
        assert!((b.tpot_s - a.tpot_s).abs() < 1e-9, "{a:?} {b:?}");
    }
}
