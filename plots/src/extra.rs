//! The system-specific figures: singular values over time for the matrix problems, and the
//! learned function at marked times for the 1-D problems.

use grokflow_engine::Trajectory;
use serde::{Deserialize, Serialize};

use crate::figure::{Figure, Legend, Panel, Series, SeriesStyle, VLine, PALETTE};

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
    let series = columns
        .iter()
        .enumerate()
        .map(|(k, (i, name))| Series {
            label: if k < 6 {
                name.replace("sv_", "σ")
            } else {
                String::new()
            },
            points: traj.samples.iter().map(|s| (s.t, s.extra[*i])).collect(),
            color: PALETTE[k % PALETTE.len()],
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
