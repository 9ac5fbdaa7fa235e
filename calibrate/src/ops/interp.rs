//! Interpolation in shape space: piecewise linear between measured points, exact on them, linear
//! extrapolation from the two nearest points outside the range (with a note saying how far).

/// A measured curve `y(x)` over ascending, distinct `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    xs: Vec<f64>,
    ys: Vec<f64>,
}

/// Where a lookup fell relative to the measured range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reach {
    /// On a measured point or between two.
    Inside,
    /// Below the smallest measured `x` (the value given is that smallest x).
    Below(f64),
    /// Above the largest measured `x` (the value given is that largest x).
    Above(f64),
}

impl Curve {
    /// A curve from points in any order; duplicates of an `x` keep the smallest `y` (the fastest
    /// measured kernel). None when empty.
    pub fn new(mut pts: Vec<(f64, f64)>) -> Option<Curve> {
        pts.retain(|(x, y)| x.is_finite() && y.is_finite());
        if pts.is_empty() {
            return None;
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        pts.dedup_by(|b, a| a.0 == b.0);
        let (xs, ys) = pts.into_iter().unzip();
        Some(Curve { xs, ys })
    }

    /// The measured x values.
    pub fn xs(&self) -> &[f64] {
        &self.xs
    }

    /// `y(x)`: exact at a measured `x`, linear between neighbours, linear through the two nearest points
    /// outside (never below zero, and never below the edge value when extrapolating upwards, where a
    /// kernel only gets slower).
    pub fn eval(&self, x: f64) -> (f64, Reach) {
        let (xs, ys) = (&self.xs, &self.ys);
        let n = xs.len();
        if n == 1 {
            let reach = if x < xs[0] {
                Reach::Below(xs[0])
            } else if x > xs[0] {
                Reach::Above(xs[0])
            } else {
                Reach::Inside
            };
            return (ys[0], reach);
        }
        if x < xs[0] {
            let y = lerp(xs[0], ys[0], xs[1], ys[1], x).max(0.0);
            return (y, Reach::Below(xs[0]));
        }
        if x > xs[n - 1] {
            let y = lerp(xs[n - 2], ys[n - 2], xs[n - 1], ys[n - 1], x).max(ys[n - 1]);
            return (y, Reach::Above(xs[n - 1]));
        }
        let i = xs.partition_point(|&a| a < x);
        if xs[i] == x {
            return (ys[i], Reach::Inside);
        }
        (lerp(xs[i - 1], ys[i - 1], xs[i], ys[i], x), Reach::Inside)
    }
}

fn lerp(x0: f64, y0: f64, x1: f64, y1: f64, x: f64) -> f64 {
    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
}

/// The pair of axis values around `x` and the weight of the upper one (exact hit: weight 0 on itself;
/// outside: the two nearest, weight below 0 or above 1 for linear extrapolation).
pub fn bracket(axis: &[f64], x: f64) -> Option<(f64, f64, f64)> {
    let n = axis.len();
    match n {
        0 => None,
        1 => Some((axis[0], axis[0], 0.0)),
        _ => {
            let i = axis.partition_point(|&a| a < x);
            if i < n && axis[i] == x {
                return Some((x, x, 0.0));
            }
            let i = i.clamp(1, n - 1);
            let (a, b) = (axis[i - 1], axis[i]);
            Some((a, b, (x - a) / (b - a)))
        }
    }
}

/// A note for a lookup outside the measured range, saying by how far; None inside.
pub fn reach_note(what: &str, x: f64, reach: Reach) -> Option<String> {
    match reach {
        Reach::Inside => None,
        Reach::Below(lo) => Some(format!(
            "{what} = {x} is below the smallest measured ({lo}, {:.2}× of it): extrapolated",
            x / lo
        )),
        Reach::Above(hi) => Some(format!(
            "{what} = {x} is above the largest measured ({hi}, {:.2}× of it): extrapolated",
            x / hi
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_between_and_outside() {
        let c = Curve::new(vec![(4.0, 40.0), (1.0, 10.0), (2.0, 30.0), (2.0, 20.0)]).unwrap();
        assert_eq!(c.xs(), &[1.0, 2.0, 4.0]);
        assert_eq!(c.eval(2.0), (20.0, Reach::Inside));
        assert_eq!(c.eval(3.0), (30.0, Reach::Inside));
        // Above: the line through (2, 20) and (4, 40) at 8 is 80.
        assert_eq!(c.eval(8.0), (80.0, Reach::Above(4.0)));
        // Below: the line through (1, 10) and (2, 20) at 0.5 is 5.
        assert_eq!(c.eval(0.5), (5.0, Reach::Below(1.0)));
        let note = reach_note("m", 8.0, Reach::Above(4.0)).unwrap();
        assert!(note.contains("2.00×"), "{note}");
        assert_eq!(bracket(&[1.0, 2.0, 4.0], 2.0), Some((2.0, 2.0, 0.0)));
        assert_eq!(bracket(&[1.0, 2.0, 4.0], 3.0), Some((2.0, 4.0, 0.5)));
        assert_eq!(bracket(&[1.0, 2.0, 4.0], 8.0), Some((2.0, 4.0, 3.0)));
    }
}
