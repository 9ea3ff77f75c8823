//! The checks of the theory's claims: fitted orders in bands fixed in advance, and Prop 3's
//! criterion.

use crate::config::ValidationConfig;
use crate::fit::fit_power;
use crate::report::{Check, Verdict};

/// The criterion of an order check: the error decreases as λ decreases over the window and
/// the fitted order lies in `band`.
pub(crate) fn order_check(
    name: &str,
    what: &str,
    points: Vec<(f64, f64)>,
    band: (f64, f64),
    min_points: usize,
    why_window: &str,
) -> Check {
    let criterion = format!(
        "{what} decreases as λ decreases over the window and its fitted order p (error ≈ C λ^p) lies in [{}, {}]; window: {why_window}; at least {min_points} points",
        band.0, band.1
    );
    let window: Vec<f64> = points.iter().map(|p| p.0).collect();
    let fit = fit_power(&points, min_points);
    let Some(f) = fit.clone() else {
        return Check {
            name: name.into(),
            criterion,
            window,
            fit,
            verdict: Verdict::NotAssessed,
            detail: format!("{} point(s) in the window: no verdict", points.len()),
        };
    };
    // Points are sorted by decreasing λ: the error must decrease along them.
    let monotone = points.windows(2).all(|w| w[1].1 < w[0].1);
    let in_band = f.order >= band.0 && f.order <= band.1;
    Check {
        name: name.into(),
        criterion,
        window,
        verdict: if monotone && in_band {
            Verdict::Passed
        } else {
            Verdict::Failed
        },
        detail: format!(
            "order {:.3} (C = {:.3e}, R² = {:.4}) on {} points{}",
            f.order,
            f.constant,
            f.r_squared,
            points.len(),
            if monotone {
                ""
            } else {
                "; the error does not decrease monotonically"
            }
        ),
        fit,
    }
}

/// The KKT residual below which θ_λ^∞ counts as a KKT point to numerical precision (the
/// stationarity rule of θ_λ^∞ is 10⁻⁹ relative).
const KKT_FLOOR: f64 = 1e-8;

/// Prop 3 gives no rate: the KKT residual of θ_λ^∞ must go to 0. Where it is above its
/// floor it must decrease with a positive order; a window where it sits at its floor
/// throughout passes.
pub(crate) fn prop3_check(
    window: Vec<(f64, f64, f64)>,
    w_end: f64,
    cfg: &ValidationConfig,
) -> Check {
    let criterion = format!(
        "the KKT residual ‖P(θ)θ‖/max(‖θ‖, 1) at θ_λ^∞ goes to 0: on the points above their floor (max({KKT_FLOOR:.0e}, {}× the floor of θ_λ^∞ over ‖θ‖)) it decreases as λ decreases with fitted order ≥ 0.5 (at least {} points), or every λ of the window is at its floor; window: λ ≤ μ_end/{} = {w_end:.2e} (min μ along the whole of θ_M) and θ_λ^∞ reached",
        cfg.floor_factor, cfg.min_points, cfg.mu_factor
    );
    let above: Vec<(f64, f64)> = window
        .iter()
        .filter(|p| p.1 > KKT_FLOOR.max(cfg.floor_factor * p.2))
        .map(|p| (p.0, p.1))
        .collect();
    let lambdas: Vec<f64> = window.iter().map(|p| p.0).collect();
    if above.len() >= cfg.min_points {
        let mut c = order_check(
            "prop3",
            "the KKT residual at θ_λ^∞",
            above,
            (0.5, f64::INFINITY),
            cfg.min_points,
            "",
        );
        c.criterion = criterion;
        c.window = lambdas;
        return c;
    }
    if window.len() >= cfg.min_points && above.is_empty() {
        return Check {
            name: "prop3".into(),
            criterion,
            window: lambdas,
            fit: None,
            verdict: Verdict::Passed,
            detail: format!(
                "at its floor throughout: largest residual {:.2e}",
                window.iter().map(|p| p.1).fold(0.0, f64::max)
            ),
        };
    }
    Check {
        name: "prop3".into(),
        criterion,
        window: lambdas,
        fit: None,
        verdict: Verdict::NotAssessed,
        detail: format!(
            "{} point(s) in the window, {} above the floor: no verdict",
            window.len(),
            above.len()
        ),
    }
}
