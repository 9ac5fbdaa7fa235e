//! # specsim-plots: paper-style figures from result tables
//!
//! A small, declarative layer over [plotters]: a [`Figure`] is a grid of [`Chart`] panels, a chart
//! holds [`Series`] (lines, markers, or both) plus labelled [`Marker`] points, and [`render`] writes
//! the figure twice — `NAME.svg` (vector, for papers) and `NAME.png` (bitmap, for a quick look) —
//! from one drawing function, so the two never disagree.
//!
//! Why this shape: the figures `specsim figures` draws are all x/y panels with a legend; describing
//! them as data keeps each figure's code about *what* to show (which runs, which columns) and keeps
//! styling — palette, fonts, sizes, legend placement — in one place.
//!
//! ## Fonts
//!
//! Bitmap text needs a font. The crate ships DejaVu Sans (`assets/DejaVuSans.ttf`, Bitstream Vera
//! licence, redistribution allowed; see `assets/DejaVuSans-LICENSE.txt`) and registers it with
//! plotters' `ab_glyph` renderer, so PNGs render identically on a fresh machine with no system fonts
//! installed. SVGs carry text as text (`font-family: sans-serif`) and use the viewer's fonts.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The embedded font (DejaVu Sans).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Why a figure could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The output directory could not be created.
    #[error("{path}: {error}")]
    Io {
        /// The directory or file.
        path: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The drawing backend failed (bad size, unwritable file, font problem).
    #[error("drawing {path}: {msg}")]
    Draw {
        /// The figure being drawn.
        path: String,
        /// The backend's message.
        msg: String,
    },
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// A polyline through the points.
    Line,
    /// Markers only.
    Points,
    /// A polyline with a marker on every point.
    LinePoints,
    /// A dashed polyline (for reference lines: SLOs, y = x).
    Dashed,
}

/// One named series of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry (empty: no legend entry).
    pub name: String,
    /// Points (non-finite points are skipped).
    pub points: Vec<(f64, f64)>,
    /// Line, markers or both.
    pub kind: SeriesKind,
    /// Palette index (None: the series' position in the chart).
    pub color: Option<usize>,
}

impl Series {
    /// A series with the default palette colour.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, kind: SeriesKind) -> Self {
        Series {
            name: name.into(),
            points,
            kind,
            color: None,
        }
    }

    /// The same series with a fixed palette index (so a policy keeps its colour across panels).
    pub fn color(mut self, c: usize) -> Self {
        self.color = Some(c);
        self
    }
}

/// A labelled point drawn over the series (e.g. an optimum).
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Position.
    pub x: f64,
    /// Position.
    pub y: f64,
    /// Text drawn beside the point.
    pub label: String,
    /// Palette index.
    pub color: usize,
}

/// One x/y panel.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chart {
    /// Title above the panel.
    pub title: String,
    /// X axis label, with unit.
    pub x_label: String,
    /// Y axis label, with unit.
    pub y_label: String,
    /// The data.
    pub series: Vec<Series>,
    /// Labelled points.
    pub markers: Vec<Marker>,
    /// Logarithmic x axis.
    pub x_log: bool,
    /// Logarithmic y axis.
    pub y_log: bool,
    /// Fixed x range (default: the data's, padded).
    pub x_range: Option<(f64, f64)>,
    /// Fixed y range (default: from 0, or the data's minimum on a log axis, to the padded maximum).
    pub y_range: Option<(f64, f64)>,
    /// Categorical x axis: point x = i is labelled `x_categories[i]`.
    pub x_categories: Option<Vec<String>>,
    /// Put the legend in the lower right corner instead of the upper left.
    pub legend_lower_right: bool,
}

/// A grid of panels written as one SVG and one PNG.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// File stem (`fig1_efficiency`).
    pub name: String,
    /// Title across the top (empty: none).
    pub title: String,
    /// Panels, row-major.
    pub panels: Vec<Chart>,
    /// Panels per row.
    pub cols: usize,
    /// Size of one panel in pixels.
    pub panel_size: (u32, u32),
}

/// Colour-blind-friendly palette (Okabe–Ito, then greys).
pub const PALETTE: [RGBColor; 9] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
    RGBColor(128, 128, 128),
];

fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in, so this fails only if the file is corrupt; drawing would then
        // report the missing font.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Writes `dir/NAME.svg` and `dir/NAME.png`; returns their paths.
pub fn render(fig: &Figure, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    register_font();
    std::fs::create_dir_all(dir).map_err(|e| PlotError::Io {
        path: dir.display().to_string(),
        error: e,
    })?;
    let cols = fig.cols.max(1);
    let rows = fig.panels.len().div_ceil(cols).max(1);
    let title_h = if fig.title.is_empty() { 0 } else { 40 };
    let size = (
        fig.panel_size.0 * cols as u32,
        fig.panel_size.1 * rows as u32 + title_h,
    );
    let svg = dir.join(format!("{}.svg", fig.name));
    let png = dir.join(format!("{}.png", fig.name));
    let derr = |p: &Path, e: String| PlotError::Draw {
        path: p.display().to_string(),
        msg: e,
    };
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw_figure(&root, fig, rows, cols, title_h).map_err(|e| derr(&svg, e))?;
        root.present().map_err(|e| derr(&svg, e.to_string()))?;
    }
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_figure(&root, fig, rows, cols, title_h).map_err(|e| derr(&png, e))?;
        root.present().map_err(|e| derr(&png, e.to_string()))?;
    }
    Ok(vec![svg, png])
}

fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &Figure,
    rows: usize,
    cols: usize,
    title_h: u32,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let body = if title_h > 0 {
        let (top, body) = root.split_vertically(title_h);
        top.titled(&fig.title, ("sans-serif", 26))
            .map_err(|e| e.to_string())?;
        body
    } else {
        root.clone()
    };
    let areas = body.split_evenly((rows, cols));
    for (chart, area) in fig.panels.iter().zip(areas.iter()) {
        draw_chart(area, chart)?;
    }
    Ok(())
}

/// The data range of a chart, padded, honouring fixed ranges and log axes.
fn ranges(c: &Chart) -> ((f64, f64), (f64, f64)) {
    let pts = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .chain(c.markers.iter().map(|m| (m.x, m.y)))
        .filter(|(x, y)| {
            x.is_finite() && y.is_finite() && (!c.x_log || *x > 0.0) && (!c.y_log || *y > 0.0)
        });
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = |lo: f64, hi: f64, log: bool, from_zero: bool| -> (f64, f64) {
        if log {
            let (lo, hi) = if lo >= hi {
                (lo / 2.0, hi * 2.0)
            } else {
                (lo, hi)
            };
            (lo / 1.3, hi * 1.3)
        } else {
            let lo = if from_zero && lo >= 0.0 { 0.0 } else { lo };
            let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
            (
                if from_zero && lo == 0.0 {
                    0.0
                } else {
                    lo - 0.05 * span
                },
                hi + 0.08 * span,
            )
        }
    };
    let xr = c.x_range.unwrap_or_else(|| {
        if c.x_categories.is_some() {
            (-0.5, x1 + 0.5)
        } else {
            pad(x0, x1, c.x_log, false)
        }
    });
    let yr = c.y_range.unwrap_or_else(|| pad(y0, y1, c.y_log, true));
    (xr, yr)
}

fn draw_chart<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &Chart) -> Result<(), String> {
    let ((x0, x1), (y0, y1)) = ranges(c);
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut b = ChartBuilder::on(area);
    b.caption(&c.title, ("sans-serif", 19))
        .margin(12)
        .x_label_area_size(if c.x_categories.is_some() { 62 } else { 46 })
        .y_label_area_size(72);
    // One generic body for the four axis-scale combinations.
    macro_rules! body {
        ($xs:expr, $ys:expr) => {{
            let mut ch = b.build_cartesian_2d($xs, $ys).map_err(e)?;
            let cats = c.x_categories.clone();
            let xfmt = move |x: &f64| -> String {
                match &cats {
                    Some(cs) => {
                        let i = x.round();
                        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cs.len() {
                            cs[i as usize].clone()
                        } else {
                            String::new()
                        }
                    }
                    None => short(*x),
                }
            };
            let mut mesh = ch.configure_mesh();
            mesh.x_desc(c.x_label.as_str())
                .y_desc(c.y_label.as_str())
                .axis_desc_style(("sans-serif", 16))
                .label_style(("sans-serif", 13))
                .light_line_style(RGBColor(235, 235, 235))
                .bold_line_style(RGBColor(215, 215, 215))
                .x_label_formatter(&xfmt)
                .y_label_formatter(&|y: &f64| short(*y));
            if let Some(cs) = &c.x_categories {
                mesh.x_labels(cs.len() * 2 + 1);
            }
            mesh.draw().map_err(e)?;
            let mut any_legend = false;
            for (i, s) in c.series.iter().enumerate() {
                let col = palette(s.color.unwrap_or(i));
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| {
                        x.is_finite()
                            && y.is_finite()
                            && (!c.x_log || *x > 0.0)
                            && (!c.y_log || *y > 0.0)
                    })
                    .collect();
                let line_style = col.stroke_width(2);
                let anno = match s.kind {
                    SeriesKind::Line | SeriesKind::LinePoints => Some(
                        ch.draw_series(LineSeries::new(pts.clone(), line_style))
                            .map_err(e)?,
                    ),
                    SeriesKind::Dashed => Some(
                        ch.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, line_style))
                            .map_err(e)?,
                    ),
                    SeriesKind::Points => None,
                };
                if let Some(a) = anno {
                    if !s.name.is_empty() {
                        any_legend = true;
                        a.label(s.name.as_str()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                        });
                    }
                }
                if matches!(s.kind, SeriesKind::Points | SeriesKind::LinePoints) {
                    let a = ch
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))
                        .map_err(e)?;
                    if s.kind == SeriesKind::Points && !s.name.is_empty() {
                        any_legend = true;
                        a.label(s.name.as_str())
                            .legend(move |(x, y)| Circle::new((x + 9, y), 4, col.filled()));
                    }
                }
            }
            for m in &c.markers {
                let col = palette(m.color);
                ch.draw_series(std::iter::once(TriangleMarker::new(
                    (m.x, m.y),
                    9,
                    col.filled(),
                )))
                .map_err(e)?;
                ch.draw_series(std::iter::once(Text::new(
                    m.label.clone(),
                    (m.x, m.y),
                    ("sans-serif", 13).into_font().color(&BLACK),
                )))
                .map_err(e)?;
            }
            if any_legend {
                ch.configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(180, 180, 180))
                    .label_font(("sans-serif", 13))
                    .position(if c.legend_lower_right {
                        SeriesLabelPosition::LowerRight
                    } else {
                        SeriesLabelPosition::UpperLeft
                    })
                    .draw()
                    .map_err(e)?;
            }
        }};
    }
    match (c.x_log, c.y_log) {
        (false, false) => body!(x0..x1, y0..y1),
        (true, false) => body!((x0..x1).log_scale(), y0..y1),
        (false, true) => body!(x0..x1, (y0..y1).log_scale()),
        (true, true) => body!((x0..x1).log_scale(), (y0..y1).log_scale()),
    }
    Ok(())
}

/// Compact tick labels: 3 significant digits, no trailing zeros.
fn short(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let s = if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Empirical CDF points of `values` (sorted copy; at most `max_points` points, evenly thinned).
pub fn cdf_points(values: &[f64], max_points: usize) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(max_points.max(2)).max(1);
    let mut out: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (v[i], (i + 1) as f64 / n as f64))
        .collect();
    if out.last().map(|p| p.1) != Some(1.0) {
        out.push((v[n - 1], 1.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_svg_and_png_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let fig = Figure {
            name: "t".into(),
            title: "Test".into(),
            panels: vec![Chart {
                title: "panel".into(),
                x_label: "rate (req/s)".into(),
                y_label: "TPOT (ms)".into(),
                series: vec![
                    Series::new("a", vec![(1.0, 2.0), (2.0, 3.0)], SeriesKind::LinePoints),
                    Series::new("b", vec![(1.0, 1.0), (2.0, 4.0)], SeriesKind::Points),
                ],
                markers: vec![Marker {
                    x: 1.5,
                    y: 2.5,
                    label: "opt".into(),
                    color: 2,
                }],
                ..Chart::default()
            }],
            cols: 1,
            panel_size: (400, 300),
        };
        let files = render(&fig, dir.path()).unwrap();
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.contains("TPOT (ms)") && svg.contains("panel"));
        let png = std::fs::read(&files[1]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn cdf_ends_at_one_and_is_monotone() {
        let pts = cdf_points(&[3.0, 1.0, 2.0, 4.0], 100);
        assert_eq!(pts, vec![(1.0, 0.25), (2.0, 0.5), (3.0, 0.75), (4.0, 1.0)]);
        let many: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let p = cdf_points(&many, 50);
        assert!(p.len() <= 51 && p.last() == Some(&(999.0, 1.0)));
        assert_eq!(short(0.0500), "0.05");
        assert_eq!(short(1234.0), "1234");
    }
}
