//! Fitting recovers known coefficients from synthetic timings, and a profile round-trips through TOML.

use specsim_calibrate::fit::{fit_linear, fit_with_report, FitPoint, Terms};
use specsim_calibrate::latency::{draft_shape, verify_shape};
use specsim_core::acceptance::AcceptanceConfig;
use specsim_core::cost::linear::LinearCoefficients;
use specsim_core::cost::profile::{Fits, Overhead, Profile, Table1, Table2, Table3};
use specsim_core::cost::BatchShape;
use std::collections::BTreeMap;

/// A deterministic multiplicative noise in [-amp, amp] (no RNG: a fixed sequence).
fn noise(i: usize, amp: f64) -> f64 {
    let x = ((i * 7919 + 13) % 1000) as f64 / 999.0;
    amp * (2.0 * x - 1.0)
}

#[test]
fn verify_fit_recovers_known_coefficients_within_one_percent() {
    let truth = LinearCoefficients {
        a: 2.0e6,
        b: 3.0e5,
        c: 40.0,
        d: 1.5e5,
    };
    let mut pts = Vec::new();
    let mut i = 0;
    for b in [1, 2, 4, 8] {
        for t in [1, 2, 3, 5, 9] {
            for c in [64, 256, 1024] {
                let s = verify_shape(b, t, c);
                // ±0.05% noise (timing jitter after medians): every coefficient within 1%.
                let ns = truth.eval(&s) * (1.0 + noise(i, 0.0005));
                pts.push(FitPoint::from_shape(&s, ns));
                i += 1;
            }
        }
    }
    let r = fit_with_report(&pts, Terms::VERIFY, "verify").unwrap();
    let f = r.coefficients;
    for (got, want) in [
        (f.a, truth.a),
        (f.b, truth.b),
        (f.c, truth.c),
        (f.d, truth.d),
    ] {
        assert!((got - want).abs() / want < 0.01, "{got} vs {want}");
    }
    assert!(r.r2 > 0.999);
    assert!(r.holdout_mape < 0.01);
}

#[test]
fn draft_and_prefill_fits_recover_exact_coefficients() {
    let d = LinearCoefficients {
        a: 9.0e5,
        b: 1.0e5,
        c: 10.0,
        d: 0.0,
    };
    let pts: Vec<FitPoint> = [1, 2, 4, 8]
        .iter()
        .flat_map(|&b| [64, 256, 1024].map(move |c| (b, c)))
        .map(|(b, c)| {
            let s = draft_shape(b, c);
            FitPoint::from_shape(&s, d.eval(&s))
        })
        .collect();
    let f = fit_linear(&pts, Terms::DRAFT, "draft").unwrap();
    assert!((f.a - d.a).abs() / d.a < 1e-9 && (f.b - d.b).abs() / d.b < 1e-9);
    assert!((f.c - d.c).abs() / d.c < 1e-9 && f.d == 0.0);

    let p = LinearCoefficients {
        a: 5.0e6,
        b: 4.0e5,
        c: 0.0,
        d: 0.0,
    };
    let pts: Vec<FitPoint> = [16, 64, 256, 1024]
        .iter()
        .map(|&n| {
            let s = BatchShape::prefill(n);
            FitPoint::from_shape(&s, p.eval(&s))
        })
        .collect();
    let f = fit_linear(&pts, Terms::PREFILL, "prefill").unwrap();
    assert!((f.a - p.a).abs() / p.a < 1e-9 && (f.b - p.b).abs() / p.b < 1e-9);
}

#[test]
fn a_profile_round_trips_through_toml() {
    let mut cats = BTreeMap::new();
    cats.insert(
        "coding".to_string(),
        specsim_core::acceptance::CategoryAcceptanceConfig {
            confidence_beta: [9.0, 1.0],
            curve: Some(vec![[0.2, 0.1], [0.9, 0.95]]),
            position_decay: 0.97,
        },
    );
    let mut prov = BTreeMap::new();
    prov.insert("device".to_string(), "test CPU, 2 threads".to_string());
    let p = Profile {
        version: 1,
        provenance: prov,
        draft: Table2 {
            batch: vec![1.0, 2.0],
            context: vec![64.0, 256.0],
            ns: vec![vec![1.0e6, 1.1e6], vec![1.5e6, 1.75e6]],
        },
        verify: Table3 {
            batch: vec![1.0, 2.0],
            tokens_per_seq: vec![1.0, 3.0],
            context: vec![64.0],
            ns: vec![
                vec![vec![9.0e6], vec![1.2e7]],
                vec![vec![1.0e7], vec![1.6e7]],
            ],
        },
        prefill: Table1 {
            tokens: vec![16.0, 256.0],
            ns: vec![2.0e7, 9.0e7],
        },
        draft_prefill: Some(Table1 {
            tokens: vec![16.0, 256.0],
            ns: vec![5.0e6, 2.5e7],
        }),
        overhead: Overhead { step_ns: 12345.5 },
        fit: Fits {
            draft: Some(LinearCoefficients {
                a: 9e5,
                b: 1e5,
                c: 10.0,
                d: 0.0,
            }),
            verify: None,
            prefill: None,
        },
        acceptance: Some(AcceptanceConfig::Calibrated {
            confidence_beta: [4.1, 1.3],
            curve: Some(vec![[0.0, 0.02], [0.5, 0.41], [1.0, 0.97]]),
            position_decay: 1.0,
            categories: cats,
            position_alphas: None,
        }),
        complete: true,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, p.to_toml()).unwrap();
    let back = Profile::load(&path).unwrap();
    assert_eq!(back, p);
}
