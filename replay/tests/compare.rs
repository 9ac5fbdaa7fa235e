//! `compare` on hand-made predicted and measured directories: every number checked here was worked
//! out by hand from the rows below (the working is in the comments).

use specsim_replay::compare::{compare_dirs, pearson, write_comparison};
use std::path::Path;

const HEADER: &str = "id,arrival_s,prompt_tokens,output_tokens,first_token_s,finish_s,ttft_s,tpot_s,e2e_s,drafted,accepted,steps,slo_met,replica,policy";

fn write(dir: &Path, rows: &[&str], error_col: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut s = String::from(HEADER);
    if error_col {
        s.push_str(",error");
    }
    s.push('\n');
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    std::fs::write(dir.join("requests.csv"), s).unwrap();
}

/// Predicted: TTFT 1, 2, 3, 4 s; TPOT 0.1, 0.2, 0.3, 0.4 s; E2E 2, 4, 6, 8 s; request 1 misses its SLO.
/// Measured: TTFT 0.5, 2.5, 2.0 s; TPOT 0.1, 0.25, 0.2 s; E2E 1, 5, 4 s; request 1 misses; request
/// 3 failed. Prompt tokens measured 110 vs 100 predicted.
fn fixture(root: &Path) {
    write(
        &root.join("pred/specserve"),
        &[
            "0,0.0,100,11,1.0,2.0,1.0,0.1,2.0,10,5,5,true,0,specserve",
            "1,0.5,100,11,2.5,4.5,2.0,0.2,4.0,10,5,5,false,0,specserve",
            "2,1.0,100,11,4.0,7.0,3.0,0.3,6.0,10,5,5,true,0,specserve",
            "3,1.5,100,11,5.5,9.5,4.0,0.4,8.0,10,5,5,true,0,specserve",
        ],
        false,
    );
    write(
        &root.join("pred/none"),
        &["0,0.0,100,11,1.0,2.0,1.0,0.1,2.0,0,0,10,true,0,none"],
        false,
    );
    std::fs::write(
        root.join("pred/specserve/summary.json"),
        r#"{"policy": "specserve", "slo": {"ttft_s": 2.0, "tpot_s": 0.2, "e2e_s": null}}"#,
    )
    .unwrap();
    write(
        &root.join("meas/specserve"),
        &[
            "0,0.0,110,11,0.5,1.5,0.5,0.1,1.0,0,0,0,true,0,specserve,",
            "1,0.5,110,11,3.0,5.5,2.5,0.25,5.0,0,0,0,false,0,specserve,",
            "2,1.0,110,11,3.0,5.0,2.0,0.2,4.0,0,0,0,true,0,specserve,",
            "3,1.5,110,0,NaN,NaN,NaN,NaN,NaN,0,0,0,false,0,specserve,connect: refused",
        ],
        true,
    );
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn hand_made_directories_give_hand_computed_errors() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let c = compare_dirs(&dir.path().join("pred"), &dir.path().join("meas")).unwrap();
    assert_eq!(c.policies.len(), 1);
    assert_eq!(c.unmatched_predicted, vec!["none".to_string()]);
    let p = &c.policies[0];
    assert_eq!(p.policy, "specserve");
    assert_eq!((p.compared, p.measured_failed), (3, 1));
    // SLO attainment: predicted 3/4, measured 2/4 (the failed request counts as missing): +25 pp.
    assert!(close(p.slo_attainment.predicted, 0.75));
    assert!(close(p.slo_attainment.measured, 0.5));
    assert!(close(p.slo_attainment.diff_pp, 25.0));
    // TTFT SLO 2 s: predicted ids 0, 1 → 2/4; measured ids 0, 2 → 2/4: 0 pp.
    let t = p.ttft_attainment.unwrap();
    assert!(close(t.predicted, 0.5) && close(t.measured, 0.5));
    // TPOT SLO 0.2 s: predicted ids 0, 1 → 2/4; measured ids 0, 2 → 2/4.
    assert!(close(p.tpot_attainment.unwrap().diff_pp, 0.0));

    // TTFT over ids 0–2: predicted 1, 2, 3; measured 0.5, 2.5, 2.0.
    let ttft = &p.metrics[0];
    assert_eq!((ttft.metric.as_str(), ttft.n), ("ttft", 3));
    // Means 2 and 5/3: (2 − 5/3) / (5/3) = 0.2.
    assert!(close(ttft.mean_rel_error.unwrap(), 0.2));
    // p50: 2 vs 2 → 0. p90: 2 + 0.8 × 1 = 2.8 vs 2 + 0.8 × 0.5 = 2.4 → 0.4 / 2.4 = 1/6.
    // p99: 2.98 vs 2.49 → 0.49 / 2.49.
    assert!(close(ttft.p_rel_error[0].unwrap(), 0.0));
    assert!(close(ttft.p_rel_error[1].unwrap(), 1.0 / 6.0));
    assert!(close(ttft.p_rel_error[2].unwrap(), 0.49 / 2.49));
    // MAPE: (0.5/0.5 + 0.5/2.5 + 1/2) / 3 = (1 + 0.2 + 0.5) / 3 = 1.7 / 3.
    assert!(close(ttft.mape.unwrap(), 1.7 / 3.0));
    // Pearson: deviations (−1, 0, 1) and (−7/6, 5/6, 1/3): Σxy = 1.5, Σx² = 2, Σy² = 13/6.
    assert!(close(
        ttft.pearson.unwrap(),
        1.5 / (2.0f64 * 13.0 / 6.0).sqrt()
    ));

    // TPOT: predicted 0.1, 0.2, 0.3; measured 0.1, 0.25, 0.2. Means 0.2 vs 0.55/3: 0.2/(0.55/3) − 1 = 1/11.
    let tpot = &p.metrics[1];
    assert!(close(tpot.mean_rel_error.unwrap(), 1.0 / 11.0));
    // p50 0.2 vs 0.2 → 0; MAPE (0 + 0.05/0.25 + 0.1/0.2) / 3 = 0.7 / 3.
    assert!(close(tpot.p_rel_error[0].unwrap(), 0.0));
    assert!(close(tpot.mape.unwrap(), 0.7 / 3.0));

    // E2E: predicted 2, 4, 6; measured 1, 5, 4. Means 4 vs 10/3 → 0.2; MAPE (1 + 0.2 + 0.5) / 3.
    let e2e = &p.metrics[2];
    assert!(close(e2e.mean_rel_error.unwrap(), 0.2));
    assert!(close(e2e.mape.unwrap(), 1.7 / 3.0));

    // Prompt tokens: 110 measured against 100 predicted on every shared id → +10%.
    assert!(close(p.prompt_tokens_mean_rel_diff, 0.1));
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("1 measured requests failed")));

    // Files: markdown, JSON, parity data (3 TTFT + 3 TPOT + 3 E2E points).
    let out = dir.path().join("cmp");
    write_comparison(&out, &c).unwrap();
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(
        md.contains("| specserve | 3/4 | 75.0% | 50.0% | +25.0 |"),
        "{md}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["policies"][0]["slo_attainment"]["diff_pp"], 25.0);
    let parity = std::fs::read_to_string(out.join("parity.csv")).unwrap();
    assert_eq!(parity.lines().count(), 1 + 9);
    assert!(parity.contains("specserve,2,ttft,3.000000000,2.000000000"));
}

#[test]
fn policy_directories_pair_with_any_name_and_with_run_directories() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    // A renamed measured policy directory still pairs with a single predicted one.
    let renamed = dir.path().join("live/specserve-measured");
    std::fs::create_dir_all(renamed.parent().unwrap()).unwrap();
    std::fs::rename(dir.path().join("meas/specserve"), &renamed).unwrap();
    let c = compare_dirs(&dir.path().join("pred/specserve"), &renamed).unwrap();
    assert_eq!(c.policies[0].compared, 3);
    // A policy directory against a run directory picks the same name.
    let c = compare_dirs(&renamed, &dir.path().join("pred")).unwrap_err();
    assert!(c.to_string().contains("no policy to pair"), "{c}");
    let c = compare_dirs(&dir.path().join("pred"), &dir.path().join("pred/none")).unwrap();
    assert_eq!(c.policies[0].policy, "none");
    assert!(close(c.policies[0].metrics[0].mean_rel_error.unwrap(), 0.0));
    // Neither layout: a clear error.
    let e = compare_dirs(dir.path(), &dir.path().join("nowhere")).unwrap_err();
    assert!(e.to_string().contains("no requests.csv"), "{e}");
}

#[test]
fn pearson_of_hand_made_series() {
    assert!(close(
        pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap(),
        1.0
    ));
    assert!(close(
        pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(),
        -1.0
    ));
    assert_eq!(pearson(&[1.0, 1.0], &[1.0, 2.0]), None);
    assert_eq!(pearson(&[1.0], &[1.0]), None);
}
