//! The work–precision section's tables and figures: speed-ups at equal accuracy, the
//! targets, and one figure per system.

use grokflow_plots::{Figure, Legend, Panel, Series, SeriesStyle, PALETTE};

use crate::workprec::{grokflow_methods, WpConfig, WpPoint};

fn time_at(points: &[&WpPoint], error: f64) -> Option<f64> {
    let mut pts: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.rel_error.map(|e| (e.max(1e-300), p.wall_s[1])))
        .collect();
    pts.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (loosest, tightest) = (pts.first()?, pts.last()?);
    if error >= loosest.0 {
        return Some(loosest.1);
    }
    if error < tightest.0 {
        return None;
    }
    pts.windows(2).find_map(|w| {
        let ((e1, t1), (e2, t2)) = (w[0], w[1]);
        (error <= e1 && error >= e2).then(|| {
            if e1 == e2 {
                t1.min(t2)
            } else {
                let x = (error.ln() - e1.ln()) / (e2.ln() - e1.ln());
                (t1.ln() + x * (t2.ln() - t1.ln())).exp()
            }
        })
    })
}

/// Speed-up of grokflow over one system and λ: for every successful scipy point, its median
/// time over the time grokflow's fastest method needs for the same error (`time_at`).
/// Returns (smallest speed-up, the scipy point it came from).
pub fn speedup_vs_scipy(points: &[WpPoint], system: &str, lambda: f64) -> Option<(f64, String)> {
    speedup_against(points, system, lambda, |m| m.starts_with("scipy"))
}

/// The same against the fastest of LSODA and CVODE: the smallest ratio over their points.
pub fn speedup_vs_peers(points: &[WpPoint], system: &str, lambda: f64) -> Option<(f64, String)> {
    speedup_against(points, system, lambda, |m| {
        m == "scipy LSODA" || m == "sundials CVODE"
    })
}

fn speedup_against(
    points: &[WpPoint],
    system: &str,
    lambda: f64,
    peer: impl Fn(&str) -> bool,
) -> Option<(f64, String)> {
    let ours = |error: f64| {
        grokflow_methods()
            .iter()
            .filter_map(|(label, ..)| {
                let pts: Vec<&WpPoint> = points
                    .iter()
                    .filter(|p| p.system == system && p.lambda == lambda && p.method == *label)
                    .collect();
                time_at(&pts, error)
            })
            .min_by(|a, b| a.total_cmp(b))
    };
    points
        .iter()
        .filter(|p| {
            p.system == system && p.lambda == lambda && peer(&p.method) && p.rel_error.is_some()
        })
        .filter_map(|p| {
            ours(p.rel_error.expect("filtered")).map(|t| {
                (
                    p.wall_s[1] / t,
                    format!("{} at rtol {:.0e}", p.method, p.rtol),
                )
            })
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

fn cell(x: Option<f64>) -> String {
    match x {
        Some(v) if v >= 1e6 => format!("{v:.2e}"),
        Some(v) => format!("{}", v.round() as u64),
        None => "—".into(),
    }
}

fn wall_cell(w: &[f64; 3]) -> String {
    if !w[1].is_finite() || w[1] == 0.0 {
        "—".into()
    } else if w[0] == w[2] {
        format!("{:.4}", w[1])
    } else {
        format!("{:.4} ({:.4}–{:.4})", w[1], w[0], w[2])
    }
}

/// How many runs a point gets before the repeats for time: "3 runs (grokflow) and 3 (scipy),
/// one if over 2 s".
fn runs_rule(cfg: &WpConfig) -> String {
    let sides = if cfg.repeats == cfg.scipy_repeats {
        format!("{} run(s)", cfg.repeats)
    } else {
        format!(
            "{} run(s) (grokflow) and {} (scipy)",
            cfg.repeats, cfg.scipy_repeats
        )
    };
    if cfg.repeats.max(cfg.scipy_repeats) > 1 {
        format!("{sides}, one if over {} s", cfg.repeat_below_s)
    } else {
        sides
    }
}

/// The work–precision section of BENCHMARKS.md.
pub fn markdown(points: &[WpPoint], cfg: &WpConfig, figures: &[String]) -> String {
    let mut s = String::from(
        "\n## Work–precision: grokflow, gradient descent and scipy on every system\n\n",
    );
    s += &format!(
        "Default instance of each system, slow time τ ∈ [0, {}], tolerances rtol ∈ {{{}}} (atol = rtol/100); \
         grokflow's default BDF also at rtol a hundredth (else a tenth) of the tightest where the reference is ten times tighter still, so \
         that its curve spans scipy's accuracies. \
         Error: ‖θ(τ_end) − θ_ref‖/‖θ_ref‖ against grokflow's BDF at rtol max(1e-11, 0.1·ε/λ), the references of the section above. Wall time: median (min–max) of {}{}. \
         scipy's `solve_ivp` (BDF, Radau, LSODA) and SUNDIALS' CVODE (BDF, Newton with the dense analytic Jacobian, through \
         scikit-sundae), all through bench/scipy_bench.py on the very instance file, are abandoned after {} s. Every system also \
         runs on a second instance (another seed and size: the rows labelled with it) with grokflow's default BDF, LSODA and \
         CVODE only. Gradient descent: η = 1/L (L = ‖∇²F(θ_init)‖₂), run up to {:.0e} iterations, extrapolated beyond \
         from the measured cost of an iteration.\n\n",
        cfg.tau_end,
        cfg.tolerances.iter().map(|t| format!("{t:.0e}")).collect::<Vec<_>>().join(", "),
        runs_rule(cfg),
        if cfg.repeat_for_s > 0.0 {
            format!(
                ", a shorter run repeated, on both sides, until its runs add up to {} s (at most {} runs)",
                cfg.repeat_for_s, cfg.max_repeats
            )
        } else {
            String::new()
        },
        cfg.scipy_timeout_s,
        cfg.gd_max_iterations
    );
    for f in figures {
        s += &format!("![{f}]({f})\n");
    }
    s += "\n| system | d | λ | method | rtol (η) | status | steps | rhs | Jacobians | factorisations | wall s, median (min–max) | runs | rel. error |\n";
    s += "|---|---:|---|---|---|---|---:|---:|---:|---:|---|---:|---:|\n";
    for p in points {
        s += &format!(
            "| {} | {} | {:.0e} | {} | {:.0e} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.system,
            p.dim,
            p.lambda,
            p.method,
            p.rtol,
            if p.note.is_empty() {
                p.status.clone()
            } else {
                format!("{} ({})", p.status, p.note)
            },
            cell(p.steps),
            cell(p.rhs_evals),
            cell(p.jac_evals),
            cell(p.factorisations),
            wall_cell(&p.wall_s),
            p.runs,
            p.rel_error
                .map(|e| format!("{e:.1e}"))
                .unwrap_or_else(|| "—".into())
        );
    }
    s
}

/// Speed-up tables and the targets.
pub fn targets_markdown(points: &[WpPoint], cfg: &WpConfig, scipy: bool) -> String {
    let mut systems: Vec<(String, usize)> =
        points.iter().map(|p| (p.system.clone(), p.dim)).collect();
    systems.dedup();
    let mut s = String::from("\n## Speed-ups and targets\n\n");
    s += "Speed-up over scipy at equal accuracy: for every successful scipy run, its median time over the time grokflow's \
          fastest method needs for the same error, read off that method's work–precision curve (log time interpolated linearly \
          in log error between its two bracketing tolerances; its loosest point's time where scipy is less accurate than every \
          grokflow point; no ratio where scipy is more accurate than all of them). The table gives the smallest ratio over scipy's \
          methods and tolerances (the hardest case for grokflow). The same against the faster of LSODA and SUNDIALS' CVODE \
          (the smallest ratio over their points). Speed-up over gradient descent: its (measured or extrapolated) \
          time over grokflow BDF's at rtol 1e-8.\n\n";
    s += "| system | d | λ | vs scipy, smallest ratio (against) | vs the faster of LSODA and CVODE (against) | vs gradient descent |\n|---|---:|---|---|---|---|\n";
    let mut worst_scipy = f64::INFINITY;
    let mut gd_at_1e6: Vec<(String, f64)> = Vec::new();
    for (system, dim) in &systems {
        for &lambda in &cfg.lambdas {
            let sp = speedup_vs_scipy(points, system, lambda);
            let peers = speedup_vs_peers(points, system, lambda);
            let bdf = points.iter().find(|p| {
                &p.system == system
                    && p.lambda == lambda
                    && p.method == "grokflow bdf"
                    && p.rtol == 1e-8
            });
            let gd = points
                .iter()
                .find(|p| &p.system == system && p.lambda == lambda && p.method == "gd");
            let done = |p: &&WpPoint| matches!(p.status.as_str(), "success" | "extrapolated");
            let gd_ratio = match (bdf.filter(done), gd.filter(done)) {
                (Some(b), Some(g)) => Some(g.wall_s[1] / b.wall_s[1]),
                _ => None,
            };
            if let (Some((r, _)), true) = (&sp, *dim <= 1000) {
                worst_scipy = worst_scipy.min(*r);
            }
            if lambda == 1e-6 {
                if let Some(r) = gd_ratio {
                    gd_at_1e6.push((system.clone(), r));
                }
            }
            let ratio = |x: Option<(f64, String)>| {
                x.map(|(r, w)| format!("{r:.1}× ({w})"))
                    .unwrap_or_else(|| "— (not run or never as accurate)".into())
            };
            s += &format!(
                "| {} | {} | {:.0e} | {} | {} | {} |\n",
                system,
                dim,
                lambda,
                ratio(sp),
                ratio(peers),
                gd_ratio
                    .map(|r| format!("{r:.2e}×"))
                    .unwrap_or_else(|| "—".into())
            );
        }
    }
    s += "\nTargets:\n\n";
    s += &format!(
        "- at equal accuracy, ≥ 10× faster than scipy's fastest method on every system with d ≤ 1000: {}\n",
        if worst_scipy.is_finite() {
            if worst_scipy >= 10.0 {
                format!("**met** (smallest ratio {worst_scipy:.1}×)")
            } else {
                format!("**missed**: the smallest ratio is {worst_scipy:.2}× ({:.1}× short)", 10.0 / worst_scipy)
            }
        } else {
            if scipy {
                "not measured (scipy never reached grokflow's accuracy)".into()
            } else {
                "not measured (python3 with numpy and scipy was not available)".into()
            }
        }
    );
    let gd_min = gd_at_1e6.iter().map(|g| g.1).fold(f64::INFINITY, f64::min);
    s += &format!(
        "- at λ = 1e-6, ≥ 1000× faster than gradient descent reaching the same τ: {}\n",
        if gd_min.is_finite() {
            if gd_min >= 1000.0 {
                format!("**met** on every system (smallest {gd_min:.2e}×)")
            } else {
                format!("**missed** (smallest {gd_min:.2e}×)")
            }
        } else {
            "not measured".into()
        }
    );
    s
}

/// One figure per system: error against wall time (log–log), one panel per λ, one curve per
/// method through its tolerances.
pub fn figures(points: &[WpPoint], cfg: &WpConfig) -> Vec<(String, Figure)> {
    let mut systems: Vec<String> = points.iter().map(|p| p.system.clone()).collect();
    systems.dedup();
    let methods = [
        "grokflow bdf",
        "grokflow bdf dense",
        "grokflow bdf matrix-free",
        "grokflow esdirk34",
        "grokflow tr_bdf2",
        "scipy BDF",
        "scipy Radau",
        "scipy LSODA",
        "sundials CVODE",
        "gd",
    ];
    systems
        .into_iter()
        .map(|system| {
            let panels = cfg
                .lambdas
                .iter()
                .map(|&lambda| {
                    let series = methods
                        .iter()
                        .enumerate()
                        .filter_map(|(k, m)| {
                            let pts: Vec<(f64, f64)> = points
                                .iter()
                                .filter(|p| {
                                    p.system == system && p.lambda == lambda && p.method == *m
                                })
                                .filter_map(|p| p.rel_error.map(|e| (p.wall_s[1], e.max(1e-16))))
                                .collect();
                            (!pts.is_empty()).then(|| Series {
                                label: m.to_string(),
                                points: pts,
                                color: PALETTE[k % PALETTE.len()],
                                style: if m.starts_with("scipy") || m.starts_with("sundials") {
                                    SeriesStyle::Dashed
                                } else {
                                    SeriesStyle::Line
                                },
                            })
                        })
                        .collect();
                    Panel {
                        title: format!("λ = {lambda:.0e}"),
                        x_label: "wall time, s".into(),
                        y_label: "relative error".into(),
                        log_x: true,
                        log_y: true,
                        series,
                        vlines: vec![],
                        legend: Legend::UpperRight,
                    }
                })
                .collect();
            (
                format!("workprecision-{system}.png"),
                Figure {
                    title: format!("{system}: error against wall time"),
                    panels,
                    panel_width: 420,
                    height: 420,
                },
            )
        })
        .collect()
}
