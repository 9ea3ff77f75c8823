//! A small figure model (panels of line series on linear or log axes, vertical markers) and
//! its rendering with plotters.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::PlotError;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn ensure_font() {
    REGISTER.call_once(|| {
        // The shipped font is valid; if registration failed, text would be missing, not wrong.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Colours for series, in order (colour-blind-safe, Okabe–Ito, then a dark red).
pub const PALETTE: [RGBColor; 9] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(120, 120, 120),
    RGBColor(150, 30, 40),
];

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeriesStyle {
    /// A solid line.
    Line,
    /// A dashed line.
    Dashed,
    /// Markers only (data points).
    Points,
}

/// One curve of a panel.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label (empty: no legend entry).
    pub label: String,
    /// (x, y) points; points that a log axis cannot show are skipped.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: RGBColor,
    /// Line or points.
    pub style: SeriesStyle,
}

/// A vertical marker at x.
#[derive(Clone, Debug)]
pub struct VLine {
    /// Legend label.
    pub label: String,
    /// Position.
    pub x: f64,
    /// Colour.
    pub color: RGBColor,
}

/// Where a panel's legend sits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Legend {
    /// Upper right corner.
    #[default]
    UpperRight,
    /// Upper left corner.
    UpperLeft,
    /// Lower left corner.
    LowerLeft,
    /// Lower right corner.
    LowerRight,
}

/// One set of axes.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    /// Caption above the axes.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// Curves.
    pub series: Vec<Series>,
    /// Vertical markers.
    pub vlines: Vec<VLine>,
    /// Legend position.
    pub legend: Legend,
}

/// Panels side by side under a common title.
#[derive(Clone, Debug, Default)]
pub struct Figure {
    /// Title over all panels.
    pub title: String,
    /// The panels, left to right.
    pub panels: Vec<Panel>,
    /// Width of one panel in pixels.
    pub panel_width: u32,
    /// Height in pixels.
    pub height: u32,
}

fn usable(v: f64, log: bool) -> bool {
    v.is_finite() && (!log || v > 0.0)
}

/// The data range of a panel on one axis, padded (log axes pad by a factor).
fn range(values: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| usable(*v, log)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    if log {
        // Keep at most 30 decades so that machine-precision zeros do not squash the plot.
        lo = lo.max(hi * 1e-30);
        if hi / lo < 10.0 {
            let mid = (hi * lo).sqrt();
            return Some((mid / 10f64.sqrt() / 1.5, mid * 10f64.sqrt() * 1.5));
        }
        Some((lo / 2.0, hi * 2.0))
    } else {
        let pad = if hi > lo {
            0.05 * (hi - lo)
        } else {
            0.5 * hi.abs().max(1.0)
        };
        Some((lo - pad, hi + pad))
    }
}

fn draw_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Renders a figure to a PNG file.
pub fn render(fig: &Figure, path: &Path) -> Result<(), PlotError> {
    ensure_font();
    if fig.panels.is_empty() {
        return Err(PlotError::Empty(path.display().to_string()));
    }
    let width = fig.panel_width.max(200) * fig.panels.len() as u32;
    let height = fig.height.max(200);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
    let body = root
        .titled(&fig.title, ("sans-serif", 22))
        .map_err(|e| draw_err(path, e))?;
    let areas = body.split_evenly((1, fig.panels.len()));
    for (panel, area) in fig.panels.iter().zip(areas.iter()) {
        draw_panel(panel, area, path)?;
    }
    root.present().map_err(|e| draw_err(path, e))?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw_panel(panel: &Panel, area: &Area<'_>, path: &Path) -> Result<(), PlotError> {
    let xs = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(panel.vlines.iter().map(|v| v.x));
    let ys = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1));
    let (Some(xr), Some(yr)) = (range(xs, panel.log_x), range(ys, panel.log_y)) else {
        return Ok(());
    };
    // Four coordinate types: plotters' log and linear ranges are distinct types.
    match (panel.log_x, panel.log_y) {
        (true, true) => draw_with(
            panel,
            area,
            path,
            (xr.0..xr.1).log_scale(),
            (yr.0..yr.1).log_scale(),
            yr,
            xr,
        ),
        (true, false) => draw_with(
            panel,
            area,
            path,
            (xr.0..xr.1).log_scale(),
            yr.0..yr.1,
            yr,
            xr,
        ),
        (false, true) => draw_with(
            panel,
            area,
            path,
            xr.0..xr.1,
            (yr.0..yr.1).log_scale(),
            yr,
            xr,
        ),
        (false, false) => draw_with(panel, area, path, xr.0..xr.1, yr.0..yr.1, yr, xr),
    }
}

fn draw_with<X, Y>(
    panel: &Panel,
    area: &Area<'_>,
    path: &Path,
    x: X,
    y: Y,
    yr: (f64, f64),
    xr: (f64, f64),
) -> Result<(), PlotError>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(|e| draw_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .x_label_formatter(&|v| format_tick(snap(*v, panel.log_x, xr)))
        .y_label_formatter(&|v| format_tick(snap(*v, panel.log_y, yr)))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| draw_err(path, e))?;
    let (lx, ly) = (panel.log_x, panel.log_y);
    let mut any_label = false;
    for s in &panel.series {
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .cloned()
            .filter(|(a, b)| usable(*a, lx) && usable(*b, ly))
            .map(|(a, b)| (a, if ly { b.max(yr.0) } else { b }))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let color = s.color;
        let style = ShapeStyle::from(&color).stroke_width(2);
        let anno = match s.style {
            SeriesStyle::Line => chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(|e| draw_err(path, e))?,
            SeriesStyle::Dashed => chart
                .draw_series(DashedLineSeries::new(pts, 8, 5, style))
                .map_err(|e| draw_err(path, e))?,
            SeriesStyle::Points => chart
                .draw_series(
                    pts.into_iter()
                        .map(|p| Cross::new(p, 5, ShapeStyle::from(&color).stroke_width(2))),
                )
                .map_err(|e| draw_err(path, e))?,
        };
        if !s.label.is_empty() {
            any_label = true;
            let points = s.style == SeriesStyle::Points;
            anno.label(s.label.clone()).legend(move |(x, y)| {
                // A cross for data points, a short line otherwise (one element type for both).
                let style = ShapeStyle::from(&color).stroke_width(2);
                let (cross, line) = if points { (5, 0) } else { (0, 18) };
                EmptyElement::at((x, y))
                    + Cross::new((9, 0), cross, style)
                    + PathElement::new(vec![(0, 0), (line, 0)], style)
            });
        }
    }
    for v in &panel.vlines {
        if !usable(v.x, lx) {
            continue;
        }
        let color = v.color;
        let style = ShapeStyle::from(&color).stroke_width(1);
        let anno = chart
            .draw_series(DashedLineSeries::new(
                vec![(v.x, yr.0), (v.x, yr.1)],
                4,
                4,
                style,
            ))
            .map_err(|e| draw_err(path, e))?;
        if !v.label.is_empty() {
            any_label = true;
            anno.label(v.label.clone()).legend(move |(x, y)| {
                PathElement::new(
                    vec![(x + 9, y - 6), (x + 9, y + 6)],
                    ShapeStyle::from(&color).stroke_width(1),
                )
            });
        }
    }
    if any_label {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .position(match panel.legend {
                Legend::UpperRight => SeriesLabelPosition::UpperRight,
                Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
                Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
                Legend::LowerRight => SeriesLabelPosition::LowerRight,
            })
            .draw()
            .map_err(|e| draw_err(path, e))?;
    }
    Ok(())
}

/// A linear axis's tick that is zero up to rounding (−2e-16 between −1 and 1) as 0.
fn snap(v: f64, log: bool, range: (f64, f64)) -> f64 {
    if !log && v.abs() <= 1e-9 * (range.1 - range.0).abs() {
        0.0
    } else {
        v
    }
}

/// Tick labels: plain for moderate magnitudes, 1e-5 style otherwise.
fn format_tick(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if (1e-2..1e4).contains(&a) {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.0e}")
    }
}
