//! The paper-style figure of one run: losses and ‖θ‖ against fast time t on a log axis,
//! with the fitting time, t = 1/λ and the grokking time marked.

use grokflow_engine::Trajectory;

use crate::figure::{Figure, Legend, Panel, Series, SeriesStyle, VLine, PALETTE};

/// What the trajectory figure shows. Every field is read, none is computed.
pub struct TrajectoryFigure<'a> {
    /// Title (system, λ, method).
    pub title: String,
    /// The λ-flow's samples.
    pub trajectory: &'a Trajectory,
    /// λ (t = 1/λ is marked).
    pub lambda: f64,
    /// Fitting time, if reached.
    pub t_fit: Option<f64>,
    /// Grokking time, if detected.
    pub t_grok: Option<f64>,
    /// A second trajectory drawn dashed over the first (the limiting flow, in fast time).
    pub overlay: Option<(&'a str, &'a Trajectory)>,
}

fn points(
    traj: &Trajectory,
    f: impl Fn(&grokflow_engine::Sample) -> Option<f64>,
) -> Vec<(f64, f64)> {
    traj.samples
        .iter()
        .filter_map(|s| f(s).map(|v| (s.t, v)))
        .collect()
}

/// The samples of the extra column `name`, if the trajectory has it.
fn column(traj: &Trajectory, name: &str) -> Option<Vec<(f64, f64)>> {
    let i = traj.extra_columns.iter().position(|c| c == name)?;
    Some(points(traj, |s| s.extra.get(i).copied()))
}

/// The figure: panel 1, train and test loss (log–log); panel 2, ‖θ‖ (log t); panel 3, for
/// classification systems, train and test accuracy (log t).
pub fn trajectory_figure(spec: &TrajectoryFigure<'_>) -> Figure {
    let traj = spec.trajectory;
    let mut vlines = Vec::new();
    if let Some(t) = spec.t_fit {
        vlines.push(VLine {
            label: format!("t_fit = {t:.2e}"),
            x: t,
            color: PALETTE[2],
        });
    }
    vlines.push(VLine {
        label: format!("1/λ = {:.0e}", 1.0 / spec.lambda),
        x: 1.0 / spec.lambda,
        color: PALETTE[7],
    });
    if let Some(t) = spec.t_grok {
        vlines.push(VLine {
            label: format!("t_grok = {t:.2e}"),
            x: t,
            color: PALETTE[3],
        });
    }
    let mut losses = vec![
        Series {
            label: "train loss".into(),
            points: points(traj, |s| Some(s.train_loss)),
            color: PALETTE[0],
            style: SeriesStyle::Line,
        },
        Series {
            label: "test loss".into(),
            points: points(traj, |s| s.test_loss),
            color: PALETTE[1],
            style: SeriesStyle::Line,
        },
    ];
    let mut norms = vec![Series {
        label: "‖θ‖".into(),
        points: points(traj, |s| Some(s.theta_norm)),
        color: PALETTE[0],
        style: SeriesStyle::Line,
    }];
    if let Some((name, over)) = spec.overlay {
        losses.push(Series {
            label: format!("test loss, {name}"),
            points: points(over, |s| s.test_loss),
            color: PALETTE[6],
            style: SeriesStyle::Dashed,
        });
        norms.push(Series {
            label: format!("‖θ‖, {name}"),
            points: points(over, |s| Some(s.theta_norm)),
            color: PALETTE[6],
            style: SeriesStyle::Dashed,
        });
    }
    let accuracy: Vec<Series> = [
        ("train accuracy", "train_accuracy", 0),
        ("test accuracy", "test_accuracy", 1),
    ]
    .into_iter()
    .filter_map(|(label, name, color)| {
        column(traj, name).map(|points| Series {
            label: label.into(),
            points,
            color: PALETTE[color],
            style: SeriesStyle::Line,
        })
    })
    .collect();
    let mut panels = vec![
        Panel {
            title: "losses".into(),
            x_label: "t".into(),
            y_label: "loss".into(),
            log_x: true,
            log_y: true,
            series: losses,
            vlines: vlines.clone(),
            legend: Legend::LowerLeft,
        },
        Panel {
            title: "weight norm".into(),
            x_label: "t".into(),
            y_label: "‖θ‖".into(),
            log_x: true,
            log_y: false,
            series: norms,
            vlines: vlines.clone(),
            legend: Legend::LowerLeft,
        },
    ];
    if !accuracy.is_empty() {
        panels.push(Panel {
            title: "accuracy".into(),
            x_label: "t".into(),
            y_label: "accuracy".into(),
            log_x: true,
            log_y: false,
            series: accuracy,
            vlines,
            legend: Legend::UpperLeft,
        });
    }
    Figure {
        title: spec.title.clone(),
        panels,
        panel_width: 640,
        height: 480,
    }
}
