//! Least-squares fits of the simulator's linear step-time model `t = a + b·tokens + c·kv_tokens + d·batch`.
//!
//! The profile's tables answer inside the measured grid; the `[fit.*]` models answer outside it (a
//! batch of 32 when the grid stops at 8). Each role is fitted on its own grid points:
//!
//! - **draft**: `a + b·tokens + c·kv_tokens` — a draft forward has one new token per sequence, so tokens
//!   and batch are the same column and only one of them can be fitted (`d = 0`);
//! - **verify**: all four terms;
//! - **prefill**: `a + b·tokens` (one sequence, and its KV is its tokens: the other columns are copies).
//!
//! The fit minimises *relative* squared error (weights `1/t²`): the grid spans two orders of magnitude
//! and an unweighted fit would sacrifice the small, frequent decode steps to the large ones. The normal
//! equations are solved directly (at most 4×4) after scaling each column to a maximum of 1, with partial
//! pivoting. Fit quality is the R² on the grid and the mean absolute percentage error (MAPE) of
//! leave-one-out predictions, i.e. of each grid point predicted by a fit that never saw it.

use serde::Serialize;
use specsim_core::cost::linear::LinearCoefficients;
use specsim_core::cost::BatchShape;

use crate::error::{CalibrateError, Result};

/// One timed forward, as the linear model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FitPoint {
    /// New tokens in the forward (Σ over sequences).
    pub tokens: f64,
    /// KV tokens attended after the step (Σ over sequences).
    pub kv_tokens: f64,
    /// Sequences.
    pub batch: f64,
    /// Measured time (nanoseconds).
    pub ns: f64,
}

impl FitPoint {
    /// A point from a batch shape (the same columns [`LinearCoefficients::eval`] reads).
    pub fn from_shape(s: &BatchShape, ns: f64) -> Self {
        FitPoint {
            tokens: s.new_tokens as f64,
            kv_tokens: s.context_tokens as f64,
            batch: s.seqs as f64,
            ns,
        }
    }

    fn features(&self) -> [f64; 4] {
        [1.0, self.tokens, self.kv_tokens, self.batch]
    }
}

/// Which of `b` (tokens), `c` (kv_tokens) and `d` (batch) are fitted; `a` always is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Terms {
    /// Fit `b`.
    pub tokens: bool,
    /// Fit `c`.
    pub kv_tokens: bool,
    /// Fit `d`.
    pub batch: bool,
}

impl Terms {
    /// Draft forwards: `a + b·tokens + c·kv_tokens`.
    pub const DRAFT: Terms = Terms {
        tokens: true,
        kv_tokens: true,
        batch: false,
    };
    /// Verification forwards: all four terms.
    pub const VERIFY: Terms = Terms {
        tokens: true,
        kv_tokens: true,
        batch: true,
    };
    /// Prefill: `a + b·tokens`.
    pub const PREFILL: Terms = Terms {
        tokens: true,
        kv_tokens: false,
        batch: false,
    };

    fn mask(&self) -> [bool; 4] {
        [true, self.tokens, self.kv_tokens, self.batch]
    }
}

/// A fit and how good it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FitReport {
    /// The coefficients, fitted on every point.
    pub coefficients: LinearCoefficients,
    /// Coefficient of determination on the fitted points.
    pub r2: f64,
    /// Mean absolute percentage error of leave-one-out predictions (a fraction: 0.05 = 5%); NaN when
    /// there are too few points to leave one out.
    pub holdout_mape: f64,
    /// Points fitted.
    pub points: usize,
}

/// Evaluates coefficients at a point's columns (not clamped at zero, unlike the simulator's eval).
pub fn predict(c: &LinearCoefficients, p: &FitPoint) -> f64 {
    c.a + c.b * p.tokens + c.c * p.kv_tokens + c.d * p.batch
}

/// Weighted least squares (weights `1/ns²`) of `terms` on `points`.
pub fn fit_linear(points: &[FitPoint], terms: Terms, what: &str) -> Result<LinearCoefficients> {
    let err = |msg: String| CalibrateError::Fit {
        what: what.to_string(),
        msg,
    };
    let mask = terms.mask();
    let cols: Vec<usize> = (0..4).filter(|&i| mask[i]).collect();
    let n = cols.len();
    if points.len() < n {
        return Err(err(format!("{} points for {n} coefficients", points.len())));
    }
    if let Some(p) = points.iter().find(|p| !(p.ns.is_finite() && p.ns > 0.0)) {
        return Err(err(format!("non-positive or non-finite time {}", p.ns)));
    }
    // Scale each column to a maximum of 1 so the normal equations are well conditioned.
    let mut scale = [1.0f64; 4];
    for &c in &cols {
        let m = points
            .iter()
            .map(|p| p.features()[c].abs())
            .fold(0.0, f64::max);
        scale[c] = if m > 0.0 { m } else { 1.0 };
    }
    let mut ata = vec![vec![0.0f64; n]; n];
    let mut atb = vec![0.0f64; n];
    for p in points {
        let f = p.features();
        let w = 1.0 / (p.ns * p.ns);
        let x: Vec<f64> = cols.iter().map(|&c| f[c] / scale[c]).collect();
        for i in 0..n {
            atb[i] += w * x[i] * p.ns;
            for j in 0..n {
                ata[i][j] += w * x[i] * x[j];
            }
        }
    }
    let sol = solve(ata, atb).ok_or_else(|| {
        err("the grid does not determine the coefficients (degenerate points)".into())
    })?;
    let mut coef = [0.0f64; 4];
    for (k, &c) in cols.iter().enumerate() {
        coef[c] = sol[k] / scale[c];
    }
    Ok(LinearCoefficients {
        a: coef[0],
        b: coef[1],
        c: coef[2],
        d: coef[3],
    })
}

/// Fits on every point and reports R² and the leave-one-out MAPE.
pub fn fit_with_report(points: &[FitPoint], terms: Terms, what: &str) -> Result<FitReport> {
    let coefficients = fit_linear(points, terms, what)?;
    let mean = points.iter().map(|p| p.ns).sum::<f64>() / points.len() as f64;
    let ss_tot: f64 = points.iter().map(|p| (p.ns - mean).powi(2)).sum();
    let ss_res: f64 = points
        .iter()
        .map(|p| (p.ns - predict(&coefficients, p)).powi(2))
        .sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    };
    let mut apes = Vec::new();
    for i in 0..points.len() {
        let rest: Vec<FitPoint> = points
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, p)| *p)
            .collect();
        if let Ok(c) = fit_linear(&rest, terms, what) {
            let p = &points[i];
            apes.push((predict(&c, p) - p.ns).abs() / p.ns);
        }
    }
    let holdout_mape = if apes.is_empty() {
        f64::NAN
    } else {
        apes.iter().sum::<f64>() / apes.len() as f64
    };
    Ok(FitReport {
        coefficients,
        r2,
        holdout_mape,
        points: points.len(),
    })
}

/// Solves `a·x = b` by Gaussian elimination with partial pivoting; None when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    let norm = a
        .iter()
        .flat_map(|r| r.iter())
        .fold(0.0f64, |m, x| m.max(x.abs()));
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() <= 1e-12 * norm.max(f64::MIN_POSITIVE) {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (r, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[col + 1 + r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_hand_worked_system() {
        // 2x + y = 5, x + 3y = 10 → x = 1, y = 3.
        let x = solve(vec![vec![2.0, 1.0], vec![1.0, 3.0]], vec![5.0, 10.0]).unwrap();
        assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] - 3.0).abs() < 1e-12);
        assert!(solve(vec![vec![1.0, 2.0], vec![2.0, 4.0]], vec![1.0, 2.0]).is_none());
    }

    #[test]
    fn degenerate_columns_are_refused_not_guessed() {
        // Every point has batch 1 and kv = tokens: c and d cannot be told apart from a and b.
        let pts: Vec<FitPoint> = [16.0, 64.0, 256.0]
            .iter()
            .map(|&t| FitPoint {
                tokens: t,
                kv_tokens: t,
                batch: 1.0,
                ns: 1e6 + 1e4 * t,
            })
            .collect();
        assert!(fit_linear(&pts, Terms::VERIFY, "prefill").is_err());
        let c = fit_linear(&pts, Terms::PREFILL, "prefill").unwrap();
        assert!((c.a - 1e6).abs() < 1e-3 && (c.b - 1e4).abs() < 1e-6);
    }
}
