//! The system-specific figures: singular values over time for the matrix problems, and the
//! learned function at marked times for the 1-D problems.

use grokflow_engine::Trajectory;
use serde::{Deserialize, Serialize};

use crate::figure::{Figure, Legend, Panel, Series, SeriesStyle, VLine, PALETTE};

/// Colour k of n: the palette while it lasts, else evenly spaced along a blue–orange–red
/// ramp, so that no two curves share a colour.
fn ramp(k: usize, n: usize) -> plotters::style::RGBColor {
    if n <= PALETTE.len() {
        return PALETTE[k];
    }
    let x = k as f64 / (n - 1).max(1) as f64;
    let stops = [
        (0.0, (0.0, 90.0, 180.0)),
        (0.5, (230.0, 159.0, 0.0)),
        (1.0, (150.0, 30.0, 40.0)),
    ];
    let (lo, hi) = if x <= 0.5 {
        (stops[0], stops[1])
    } else {
        (stops[1], stops[2])
    };
    let f = (x - lo.0) / (hi.0 - lo.0);
    let mix = |a: f64, b: f64| (a + f * (b - a)).round() as u8;
    plotters::style::RGBColor(
        mix(lo.1 .0, hi.1 .0),
        mix(lo.1 .1, hi.1 .1),
        mix(lo.1 .2, hi.1 .2),
    )
}

/// Every column of `traj` whose name starts with `sv_`, against t, on log–log axes, with
/// t = 1/λ marked.
pub fn singular_values_figure(title: &str, traj: &Trajectory, lambda: f64) -> Option<Figure> {
    let columns: Vec<(usize, &String)> = traj
        .extra_columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.starts_with("sv_"))
        .collect();
    if columns.is_empty() {
        return None;
    }
    let n = columns.len();
    let series = columns
        .iter()
        .enumerate()
        .map(|(k, (i, name))| Series {
            label: name.replace("sv_", "σ"),
            points: traj.samples.iter().map(|s| (s.t, s.extra[*i])).collect(),
            color: ramp(k, n),
            style: SeriesStyle::Line,
        })
        .collect();
    Some(Figure {
        title: title.to_string(),
        panels: vec![Panel {
            title: "singular values of the learned matrix".into(),
            x_label: "t".into(),
            y_label: "singular value".into(),
            log_x: true,
            log_y: true,
            series,
            vlines: vec![VLine {
                label: format!("1/λ = {:.0e}", 1.0 / lambda),
                x: 1.0 / lambda,
                color: PALETTE[7],
            }],
            legend: Legend::LowerLeft,
        }],
        panel_width: 760,
        height: 520,
    })
}

/// A learned 1-D function at several times, with the teacher and the training points.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionTable {
    /// The plotting grid.
    pub x: Vec<f64>,
    /// The teacher on the grid, if known.
    pub teacher: Option<Vec<f64>>,
    /// (label, values on the grid), in time order.
    pub curves: Vec<(String, Vec<f64>)>,
    /// Training inputs.
    pub train_x: Vec<f64>,
    /// Training targets.
    pub train_y: Vec<f64>,
}

/// Every curve of the table (the learned function at several times, or for several
/// settings), the teacher (dashed) and the data (crosses).
pub fn function_figure(title: &str, table: &FunctionTable) -> Figure {
    let mut series: Vec<Series> = table
        .curves
        .iter()
        .enumerate()
        .map(|(k, (label, values))| Series {
            label: label.clone(),
            points: table
                .x
                .iter()
                .cloned()
                .zip(values.iter().cloned())
                .collect(),
            color: PALETTE[k % 6],
            style: SeriesStyle::Line,
        })
        .collect();
    if let Some(t) = &table.teacher {
        series.push(Series {
            label: "teacher".into(),
            points: table.x.iter().cloned().zip(t.iter().cloned()).collect(),
            color: PALETTE[6],
            style: SeriesStyle::Dashed,
        });
    }
    series.push(Series {
        label: "training points".into(),
        points: table
            .train_x
            .iter()
            .cloned()
            .zip(table.train_y.iter().cloned())
            .collect(),
        color: PALETTE[6],
        style: SeriesStyle::Points,
    });
    Figure {
        title: title.to_string(),
        panels: vec![Panel {
            title: "learned function".into(),
            x_label: "x".into(),
            y_label: "f(x)".into(),
            log_x: false,
            log_y: false,
            series,
            vlines: vec![],
            legend: Legend::UpperRight,
        }],
        panel_width: 760,
        height: 520,
    }
}

/// The power of a learned embedding by frequency (one series per moment, e.g. Φ(θ_init) and
/// the end), on a log scale: a few dominant frequencies after the slow phase.
pub fn spectrum_figure(title: &str, series: &[(String, Vec<f64>)]) -> Option<Figure> {
    if series.iter().all(|(_, v)| v.is_empty()) {
        return None;
    }
    let series = series
        .iter()
        .enumerate()
        .map(|(k, (label, v))| Series {
            label: label.clone(),
            points: v
                .iter()
                .enumerate()
                .map(|(f, p)| (f as f64, p.max(1e-16)))
                .collect(),
            color: PALETTE[k % PALETTE.len()],
            style: SeriesStyle::Line,
        })
        .collect();
    Some(Figure {
        title: title.to_string(),
        panels: vec![Panel {
            title: "Fourier power of the embeddings by frequency of Z_p".into(),
            x_label: "frequency k".into(),
            y_label: "fraction of the power".into(),
            log_x: false,
            log_y: true,
            series,
            vlines: vec![],
            legend: Legend::UpperRight,
        }],
        panel_width: 760,
        height: 480,
    })
}

/// A λ sweep of one metric (test accuracy, say): against t, where the delay grows like 1/λ,
/// and against τ = λt, where the curves collapse. `curves` holds (λ, samples (t, value)).
pub fn collapse_figure(title: &str, metric: &str, curves: &[(f64, Vec<(f64, f64)>)]) -> Figure {
    let n = curves.len();
    let series = |slow: bool| -> Vec<Series> {
        curves
            .iter()
            .enumerate()
            .map(|(k, (lambda, pts))| Series {
                label: format!("λ = {lambda:.0e}"),
                points: pts
                    .iter()
                    .filter(|(t, _)| *t > 0.0)
                    .map(|(t, v)| (if slow { lambda * t } else { *t }, *v))
                    .collect(),
                color: ramp(k, n.max(PALETTE.len() + 1)),
                style: SeriesStyle::Line,
            })
            .collect()
    };
    let panel = |slow: bool| Panel {
        title: if slow {
            format!("{metric} against slow time: the curves collapse")
        } else {
            format!("{metric} against t: the delay grows like 1/λ")
        },
        x_label: if slow { "τ = λt".into() } else { "t".into() },
        y_label: metric.into(),
        log_x: true,
        log_y: false,
        series: series(slow),
        vlines: vec![],
        legend: Legend::UpperLeft,
    };
    Figure {
        title: title.to_string(),
        panels: vec![panel(false), panel(true)],
        panel_width: 640,
        height: 480,
    }
}
