//! The validation figures: errors against λ with the fitted lines, and the slow-time
//! collapse. They map report fields to series and compute nothing new.

use grokflow_plots::{Figure, Legend, Panel, Series, SeriesStyle, PALETTE};
use grokflow_validation::SystemValidation;

/// Errors of Props 1–4 against λ (log–log), each with its fitted power law on its window.
pub fn errors_figure(s: &SystemValidation) -> Figure {
    let mut series = Vec::new();
    let mut add = |label: &str, pts: Vec<(f64, f64)>, color: usize, check: &str| {
        series.push(Series {
            label: label.into(),
            points: pts,
            color: PALETTE[color],
            style: SeriesStyle::Points,
        });
        if let Some(f) = s
            .checks
            .iter()
            .find(|c| c.name == check)
            .and_then(|c| c.fit.as_ref())
        {
            let line = f
                .lambdas
                .iter()
                .map(|&l| (l, f.constant * l.powf(f.order)))
                .collect();
            series.push(Series {
                label: format!("fit, order {:.2}", f.order),
                points: line,
                color: PALETTE[color],
                style: SeriesStyle::Line,
            });
        }
    };
    add(
        "E₁ (Prop 1)",
        s.rows.iter().map(|r| (r.lambda, r.prop1_error)).collect(),
        0,
        "prop1",
    );
    add(
        "E₂ on [τ₀, T₂] (Prop 2)",
        s.rows.iter().map(|r| (r.lambda, r.prop2_error)).collect(),
        1,
        "prop2",
    );
    add(
        "KKT(θ_λ^∞) (Prop 3)",
        s.rows
            .iter()
            .filter_map(|r| r.kkt_residual.map(|k| (r.lambda, k)))
            .collect(),
        2,
        "prop3",
    );
    add(
        "‖θ_λ^∞ − θ_M^∞‖ (Prop 4)",
        s.rows
            .iter()
            .filter_map(|r| r.limit_distance.map(|k| (r.lambda, k)))
            .collect(),
        3,
        "prop4",
    );
    Figure {
        title: format!("{}: errors as λ → 0 (μ_min = {:.1e})", s.system, s.mu_min),
        panels: vec![
            Panel {
                title: "errors against λ".into(),
                x_label: "λ".into(),
                y_label: "error".into(),
                log_x: true,
                log_y: true,
                series,
                vlines: vec![],
                legend: Legend::UpperLeft,
            },
            Panel {
                title: "Morse–Bott constant μ along θ_M".into(),
                x_label: "τ".into(),
                y_label: "μ".into(),
                log_x: false,
                log_y: true,
                series: vec![Series {
                    label: "μ(τ)".into(),
                    points: s.mu_curve.clone(),
                    color: PALETTE[0],
                    style: SeriesStyle::Line,
                }],
                vlines: vec![],
                legend: Legend::UpperRight,
            },
        ],
        panel_width: 640,
        height: 520,
    }
}

/// The test metric against slow time τ = λt for every λ, and the limiting flow's (dashed).
pub fn collapse_figure(s: &SystemValidation) -> Figure {
    let mut series: Vec<Series> = s
        .rows
        .iter()
        .enumerate()
        .map(|(k, r)| Series {
            label: format!("λ = {:.0e}", r.lambda),
            points: r.collapse.iter().cloned().filter(|p| p.0 > 0.0).collect(),
            color: PALETTE[k % 6],
            style: SeriesStyle::Line,
        })
        .collect();
    series.push(Series {
        label: "limiting flow θ_M".into(),
        points: s
            .limiting_curve
            .iter()
            .cloned()
            .filter(|p| p.0 > 0.0)
            .collect(),
        color: PALETTE[6],
        style: SeriesStyle::Dashed,
    });
    Figure {
        title: format!("{}: the slow-time collapse", s.system),
        panels: vec![Panel {
            title: "test metric against τ = λt".into(),
            x_label: "τ".into(),
            y_label: "test metric".into(),
            log_x: true,
            log_y: true,
            series,
            vlines: vec![],
            legend: Legend::LowerLeft,
        }],
        panel_width: 760,
        height: 560,
    }
}
