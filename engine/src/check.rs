//! Derivatives are tested, not trusted: one generic check of a [`Loss`]'s gradient, Hessian
//! and Hessian-vector product against central finite differences, run on every system.

use serde::{Deserialize, Serialize};

use crate::la::{distance, matvec_into, norm, symmetric_eigen, DMat};
use crate::loss::Loss;

/// Relative errors of a loss's derivatives at one point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DerivativeReport {
    /// ‖∇F − ∇_h F‖ / max(‖∇F‖, `scale`), with ∇_h F the central differences of F.
    pub gradient: f64,
    /// ‖H − H_h‖_F / max(‖H‖_F, `scale`), with H_h the central differences of ∇F.
    pub hessian: f64,
    /// ‖H − Hᵀ‖_F / max(‖H‖_F, `scale`).
    pub asymmetry: f64,
    /// ‖hvp(v) − H v‖ / max(‖H v‖, `scale`) for a fixed pseudo-random v.
    pub hvp: f64,
    /// For least-squares losses: the largest of the relative errors of F = ‖r‖²/(2c),
    /// ∇F = Jᵀr/c, and J against central differences of r.
    pub residuals: Option<f64>,
    /// For a loss that declares itself a convex quadratic ([`Loss::is_convex_quadratic`]):
    /// the larger of ‖H(θ) − H(θ + v)‖_F and the most negative eigenvalue of H(θ) (0 if
    /// none), over max(‖H‖_F, `scale`). A declaration that does not hold shows here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convex_quadratic: Option<f64>,
    /// The difference step used, relative to max(1, |θᵢ|).
    pub step: f64,
}

impl DerivativeReport {
    /// The largest of the four relative errors and of the convex-quadratic defect.
    pub fn worst(&self) -> f64 {
        self.gradient
            .max(self.hessian)
            .max(self.asymmetry)
            .max(self.hvp)
            .max(self.convex_quadratic.unwrap_or(0.0))
    }
}

/// A deterministic vector with entries in (−1, 1), so the check needs no RNG.
fn probe(d: usize) -> Vec<f64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..d)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// Checks `loss` at θ. Central differences with step h·max(1, |θᵢ|) have error O(h²) from
/// truncation and O(ε/h) from rounding: h = 10⁻⁵ balances them for values of order one.
/// `scale` guards the relative errors against derivatives that vanish at θ.
pub fn check_derivatives(loss: &dyn Loss, theta: &[f64], scale: f64) -> DerivativeReport {
    let d = loss.dim();
    assert_eq!(theta.len(), d, "θ has the wrong length for this loss");
    let h = 1e-5;
    let g = loss.gradient(theta);
    let hess = loss.hessian(theta);

    let mut x = theta.to_vec();
    let mut g_fd = vec![0.0; d];
    let mut h_fd = crate::la::DMat::zeros(d, d);
    let (mut gp, mut gm) = (vec![0.0; d], vec![0.0; d]);
    for i in 0..d {
        let hi = h * theta[i].abs().max(1.0);
        x[i] = theta[i] + hi;
        let fp = loss.value(&x);
        loss.gradient_into(&x, &mut gp);
        x[i] = theta[i] - hi;
        let fm = loss.value(&x);
        loss.gradient_into(&x, &mut gm);
        x[i] = theta[i];
        g_fd[i] = (fp - fm) / (2.0 * hi);
        for r in 0..d {
            h_fd[(r, i)] = (gp[r] - gm[r]) / (2.0 * hi);
        }
    }

    let hnorm = hess.norm_l2();
    let hess_err = (&hess - &h_fd).norm_l2();
    let asym = (&hess - hess.transpose()).norm_l2();
    let v = probe(d);
    let mut hv = vec![0.0; d];
    loss.hvp_into(theta, &v, &mut hv);
    let mut hv_dense = vec![0.0; d];
    matvec_into(hess.as_ref(), &v, &mut hv_dense);

    DerivativeReport {
        gradient: distance(&g, &g_fd) / norm(&g).max(scale),
        hessian: hess_err / hnorm.max(scale),
        asymmetry: asym / hnorm.max(scale),
        hvp: distance(&hv, &hv_dense) / norm(&hv_dense).max(scale),
        residuals: loss
            .residuals()
            .map(|res| check_residuals(loss, res, theta, h, &g, scale)),
        convex_quadratic: loss
            .is_convex_quadratic()
            .then(|| check_convex_quadratic(loss, theta, &hess, &v) / hnorm.max(scale)),
        step: h,
    }
}

/// max(‖H(θ) − H(θ + v)‖_F, −λ_min(H(θ))) for the Hessian `hess` at θ.
fn check_convex_quadratic(loss: &dyn Loss, theta: &[f64], hess: &DMat, v: &[f64]) -> f64 {
    let moved: Vec<f64> = theta.iter().zip(v).map(|(t, vi)| t + vi).collect();
    let change = (hess - loss.hessian(&moved)).norm_l2();
    let lowest = match symmetric_eigen(hess.as_ref()) {
        Ok((values, _)) => values.first().map_or(0.0, |&l| (-l).max(0.0)),
        Err(_) => f64::INFINITY,
    };
    change.max(lowest)
}

/// A cheap runtime check of a loss's convex-quadratic declaration ([`Loss::is_convex_quadratic`]),
/// made by the BDF before it relies on it: two gradients and three Hessian-vector products
/// along two fixed pseudo-random directions v and w, with θ′ = θ + s·w (s·‖w‖ = max(1, ‖θ‖),
/// capped at 1e100). It checks that
/// - the product along v is the same at θ and at θ′ (to 1e-6, relative to the size of the
///   products; an absolute zero passes),
/// - the gradient changes by exactly the product along the displacement,
///   ∇F(θ′) − ∇F(θ) = ∇²F·(θ′ − θ), to 1e-6 relative to the largest of the three (so the
///   gradient the flow integrates is the quadratic's),
/// - the curvatures vᵀ∇²F v and wᵀ∇²F w are not negative beyond rounding.
///
/// A probe, not a proof (an indefinite quadratic passes when both directions see positive
/// curvature, and in one dimension v and w are parallel): [`check_derivatives`] checks the
/// declaration in full. Returns what failed, in words a user can act on.
pub(crate) fn probe_convex_quadratic(loss: &dyn Loss, theta: &[f64]) -> Result<(), String> {
    let d = theta.len();
    // Fractional parts of the multiples of 1/φ and 1/ρ (φ the golden ratio, ρ the plastic
    // number): spread out, reproducible and, from d = 2 on, not parallel to each other or to
    // a coordinate axis.
    let v: Vec<f64> = (0..d)
        .map(|i| ((i + 1) as f64 * 0.618_033_988_749_895).fract() - 0.5)
        .collect();
    let w: Vec<f64> = (0..d)
        .map(|i| ((i + 1) as f64 * 0.754_877_666_246_693).fract() - 0.5)
        .collect();
    let w_norm = norm(&w).max(f64::MIN_POSITIVE);
    let step = norm(theta).clamp(1.0, 1e100) / w_norm;
    let moved: Vec<f64> = theta.iter().zip(&w).map(|(t, wi)| t + step * wi).collect();
    let (mut hv, mut hv_moved, mut hw) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let (mut g, mut g_moved) = (vec![0.0; d], vec![0.0; d]);
    loss.hvp_into(theta, &v, &mut hv);
    loss.hvp_into(&moved, &v, &mut hv_moved);
    loss.hvp_into(theta, &w, &mut hw);
    loss.gradient_into(theta, &mut g);
    loss.gradient_into(&moved, &mut g_moved);
    let fix = "return false from is_convex_quadratic (the default) unless ∇²F is the same \
               positive semidefinite matrix at every θ, and run grokflow_engine::check_derivatives \
               to find the fault";
    let away = w_norm * step;
    if ![&hv, &hv_moved, &hw, &g, &g_moved]
        .iter()
        .all(|x| crate::la::all_finite(x))
    {
        return Err(format!(
            "the loss declares itself a convex quadratic, but its gradient or Hessian-vector \
             product is not finite at θ or at a point {away:.1e} away: {fix}"
        ));
    }
    // Relative to the Hessian's size along both directions, 0 when nothing differs.
    let diff = distance(&hv, &hv_moved);
    let size = norm(&hv)
        .max(norm(&hv_moved))
        .max(norm(&hw) * norm(&v) / w_norm);
    let change = if diff == 0.0 { 0.0 } else { diff / size };
    if change > 1e-6 {
        return Err(format!(
            "the loss declares itself a convex quadratic, but its Hessian changes with θ: the \
             product with a fixed vector differs by {change:.1e} (relative) between θ and a \
             point {away:.1e} away: {fix}"
        ));
    }
    // ∇F(θ′) − ∇F(θ) against step·∇²F w, relative to the largest of the three terms (the
    // gradients' own rounding must not count as a defect).
    let dg: Vec<f64> = g_moved.iter().zip(&g).map(|(a, b)| a - b).collect();
    let hw_step: Vec<f64> = hw.iter().map(|x| x * step).collect();
    let size = norm(&g).max(norm(&g_moved)).max(norm(&hw_step));
    let mismatch = distance(&dg, &hw_step);
    if mismatch > 1e-6 * size {
        return Err(format!(
            "the loss declares itself a convex quadratic, but its gradient does not change by \
             its Hessian times the displacement between θ and a point {away:.1e} away (off by \
             {:.1e} relative): {fix}",
            mismatch / size
        ));
    }
    for (dir, h) in [(&v, &hv), (&w, &hw)] {
        let curvature = crate::la::dot(dir, h);
        if curvature < -1e-8 * norm(dir) * norm(h) {
            return Err(format!(
                "the loss declares itself a convex quadratic, but its Hessian has negative \
                 curvature (uᵀ∇²F u/‖u‖² = {:.3e} along a probe direction u): {fix}",
                curvature / crate::la::dot(dir, dir)
            ));
        }
    }
    Ok(())
}

fn check_residuals(
    loss: &dyn Loss,
    res: &dyn crate::loss::Residuals,
    theta: &[f64],
    h: f64,
    g: &[f64],
    scale: f64,
) -> f64 {
    let (m, d, c) = (res.count(), theta.len(), res.scale());
    let mut r = vec![0.0; m];
    res.residuals_into(theta, &mut r);
    let mut jac = crate::la::DMat::zeros(m, d);
    res.jacobian_into(theta, jac.as_mut());
    let f = loss.value(theta);
    let value_err = (f - crate::la::dot(&r, &r) / (2.0 * c)).abs() / f.abs().max(scale);
    let jtr: Vec<f64> = (0..d)
        .map(|j| (0..m).map(|i| jac[(i, j)] * r[i]).sum::<f64>() / c)
        .collect();
    let grad_err = distance(&jtr, g) / norm(g).max(scale);
    let mut x = theta.to_vec();
    let (mut rp, mut rm) = (vec![0.0; m], vec![0.0; m]);
    let mut jac_err = 0.0;
    for j in 0..d {
        let hj = h * theta[j].abs().max(1.0);
        x[j] = theta[j] + hj;
        res.residuals_into(&x, &mut rp);
        x[j] = theta[j] - hj;
        res.residuals_into(&x, &mut rm);
        x[j] = theta[j];
        for i in 0..m {
            jac_err += ((rp[i] - rm[i]) / (2.0 * hj) - jac[(i, j)]).powi(2);
        }
    }
    let jac_err = jac_err.sqrt() / jac.norm_l2().max(scale);
    value_err.max(grad_err).max(jac_err)
}
