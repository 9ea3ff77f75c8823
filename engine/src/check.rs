//! Derivatives are tested, not trusted: one generic check of everything a [`Loss`]
//! declares (gradient, Hessian, Hessian-vector product, and for least-squares losses the
//! residual Jacobian, its products, the Gram matrix, the curvature groups and blocks, and
//! the structural declarations the structured solve relies on) against central finite
//! differences and against each other, with a verdict against a stated tolerance.

use serde::{Deserialize, Serialize};

use crate::la::{distance, dot, matvec_into, norm, symmetric_eigen, DMat, MatRef};
use crate::loss::{Loss, Residuals};

/// The relative error at which [`check_derivatives`] fails a comparison with finite
/// differences (their own error is about 1e-10 relative for a smooth loss of order one).
pub const DIFFERENCE_TOLERANCE: f64 = 1e-6;
/// The relative error at which it fails an identity between exact quantities (J·v against
/// J times v, symmetry, a Gram matrix against JJᵀ).
pub const EXACT_TOLERANCE: f64 = 1e-9;

/// One comparison of the derivative check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DerivativeCheck {
    /// What was compared.
    pub name: String,
    /// Its relative error.
    pub error: f64,
    /// The error at which it fails.
    pub tolerance: f64,
    /// error ≤ tolerance.
    pub passed: bool,
}

/// Relative errors of a loss's derivatives at one point, and the verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DerivativeReport {
    /// ‖∇F − ∇_h F‖ / max(‖∇F‖, `scale`), with ∇_h F the central differences of F.
    pub gradient: f64,
    /// ‖H − H_h‖_F / max(‖H‖_F, `scale`), with H_h the central differences of ∇F.
    pub hessian: f64,
    /// ‖H − Hᵀ‖_F / max(‖H‖_F, `scale`).
    pub asymmetry: f64,
    /// ‖hvp(v) − (∇F(θ + hv) − ∇F(θ − hv))/2h‖ / max(‖H v‖, `scale`) for a fixed
    /// pseudo-random v: the product against differences of the gradient, whether or not the
    /// loss writes its own.
    pub hvp: f64,
    /// For least-squares losses: the largest error of the residual checks.
    pub residuals: Option<f64>,
    /// For a loss that declares itself a convex quadratic ([`Loss::is_convex_quadratic`]):
    /// the larger of ‖H(θ) − H(θ + v)‖_F and the most negative eigenvalue of H(θ) (0 if
    /// none), over max(‖H‖_F, `scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convex_quadratic: Option<f64>,
    /// The difference step used, relative to max(1, |θᵢ|).
    pub step: f64,
    /// Every comparison made, each with its tolerance and verdict.
    pub checks: Vec<DerivativeCheck>,
    /// Every comparison passed.
    pub passed: bool,
}

impl DerivativeReport {
    /// The largest of the relative errors (gradient, Hessian, symmetry, product and the
    /// convex-quadratic defect).
    pub fn worst(&self) -> f64 {
        self.gradient
            .max(self.hessian)
            .max(self.asymmetry)
            .max(self.hvp)
            .max(self.convex_quadratic.unwrap_or(0.0))
    }

    /// The comparisons that failed, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: error {:.2e} > {:.0e}", c.name, c.error, c.tolerance))
            .collect()
    }
}

/// A deterministic vector with entries in (−1, 1), so the check needs no RNG.
fn probe(d: usize, seed: u64) -> Vec<f64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
    (0..d)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// Collects comparisons.
struct Checks {
    scale: f64,
    list: Vec<DerivativeCheck>,
}

impl Checks {
    /// Records ‖a − b‖/max(‖b‖, scale) against `tolerance`; returns the error.
    fn compare(&mut self, name: &str, a: &[f64], b: &[f64], tolerance: f64) -> f64 {
        let e = distance(a, b) / norm(b).max(self.scale);
        let e = if e.is_nan() { f64::INFINITY } else { e };
        self.list.push(DerivativeCheck {
            name: name.into(),
            error: e,
            tolerance,
            passed: e <= tolerance,
        });
        e
    }

    /// Records a boolean declaration check.
    fn holds(&mut self, name: &str, holds: bool) {
        self.list.push(DerivativeCheck {
            name: name.into(),
            error: if holds { 0.0 } else { f64::INFINITY },
            tolerance: 0.0,
            passed: holds,
        });
    }
}

fn flat(m: &DMat) -> Vec<f64> {
    (0..m.ncols())
        .flat_map(|j| (0..m.nrows()).map(move |i| (i, j)))
        .map(|(i, j)| m[(i, j)])
        .collect()
}

/// Checks `loss` at θ with the default tolerances ([`DIFFERENCE_TOLERANCE`],
/// [`EXACT_TOLERANCE`]). Central differences with step h·max(1, |θᵢ|), h = 10⁻⁵, have error
/// O(h²) from truncation and O(ε/h) from rounding. `scale` guards the relative errors
/// against derivatives that vanish at θ. A θ of the wrong length fails the check.
pub fn check_derivatives(loss: &dyn Loss, theta: &[f64], scale: f64) -> DerivativeReport {
    check_derivatives_with(loss, theta, scale, DIFFERENCE_TOLERANCE)
}

/// [`check_derivatives`] with the finite-difference tolerance `tolerance`.
pub fn check_derivatives_with(
    loss: &dyn Loss,
    theta: &[f64],
    scale: f64,
    tolerance: f64,
) -> DerivativeReport {
    let d = loss.dim();
    if theta.len() != d {
        let wrong = DerivativeCheck {
            name: format!("θ has {} entries for a loss of dimension {d}", theta.len()),
            error: f64::INFINITY,
            tolerance: 0.0,
            passed: false,
        };
        return DerivativeReport {
            gradient: f64::INFINITY,
            hessian: f64::INFINITY,
            asymmetry: f64::INFINITY,
            hvp: f64::INFINITY,
            residuals: None,
            convex_quadratic: None,
            step: 0.0,
            checks: vec![wrong],
            passed: false,
        };
    }
    let h = 1e-5;
    let mut c = Checks {
        scale,
        list: Vec::new(),
    };
    let g = loss.gradient(theta);
    let hess = loss.hessian(theta);
    let mut x = theta.to_vec();
    let mut g_fd = vec![0.0; d];
    let mut h_fd = DMat::zeros(d, d);
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
    let gradient = c.compare("gradient against differences of F", &g, &g_fd, tolerance);
    let hessian = c.compare(
        "Hessian against differences of the gradient",
        &flat(&hess),
        &flat(&h_fd),
        tolerance,
    );
    let asymmetry = c.compare(
        "Hessian symmetry",
        &flat(&hess),
        &flat(&hess.transpose().to_owned()),
        EXACT_TOLERANCE,
    );
    // The product against differences of the gradient along v (step relative to ‖θ‖).
    let v = probe(d, 1);
    let hv_step = h * norm(theta).max(1.0) / norm(&v).max(f64::MIN_POSITIVE);
    let plus: Vec<f64> = theta
        .iter()
        .zip(&v)
        .map(|(t, vi)| t + hv_step * vi)
        .collect();
    let minus: Vec<f64> = theta
        .iter()
        .zip(&v)
        .map(|(t, vi)| t - hv_step * vi)
        .collect();
    loss.gradient_into(&plus, &mut gp);
    loss.gradient_into(&minus, &mut gm);
    let hv_fd: Vec<f64> = gp
        .iter()
        .zip(&gm)
        .map(|(a, b)| (a - b) / (2.0 * hv_step))
        .collect();
    let mut hv = vec![0.0; d];
    loss.hvp_into(theta, &v, &mut hv);
    let hvp = c.compare(
        "Hessian-vector product against differences of the gradient",
        &hv,
        &hv_fd,
        tolerance,
    );
    let residuals = loss
        .residuals()
        .map(|res| check_residuals(&mut c, loss, res, theta, h, &g, &hess, tolerance));
    let convex_quadratic = loss.is_convex_quadratic().then(|| {
        let e = check_convex_quadratic(loss, theta, &hess, &v) / norm(&flat(&hess)).max(scale);
        c.list.push(DerivativeCheck {
            name: "convex-quadratic declaration".into(),
            error: e,
            tolerance,
            passed: e <= tolerance,
        });
        e
    });
    let passed = c.list.iter().all(|x| x.passed);
    DerivativeReport {
        gradient,
        hessian,
        asymmetry,
        hvp,
        residuals,
        convex_quadratic,
        step: h,
        checks: c.list,
        passed,
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

/// The residual checks: F = ‖r‖²/(2c), ∇F = Jᵀr/c, J against differences of r, J·v, Jᵀu
/// and JJᵀ against J, the curvature groups (a partition, and ∇²F − JᵀJ/c zero outside their
/// blocks) and blocks (equal to ∇²F − JᵀJ/c on them), and the rank-one and shared-block
/// declarations. Returns the largest error.
#[allow(clippy::too_many_arguments)]
fn check_residuals(
    c: &mut Checks,
    loss: &dyn Loss,
    res: &dyn Residuals,
    theta: &[f64],
    h: f64,
    g: &[f64],
    hess: &DMat,
    tolerance: f64,
) -> f64 {
    let (m, d, sc) = (res.count(), theta.len(), res.scale());
    let first = c.list.len();
    let mut r = vec![0.0; m];
    res.residuals_into(theta, &mut r);
    let mut jac = DMat::zeros(m, d);
    res.jacobian_into(theta, jac.as_mut());
    let f = loss.value(theta);
    c.compare(
        "F = ‖r‖²/(2c)",
        &[f],
        &[dot(&r, &r) / (2.0 * sc)],
        EXACT_TOLERANCE,
    );
    let mut jtr = vec![0.0; d];
    matvec_into(jac.transpose(), &r, &mut jtr);
    jtr.iter_mut().for_each(|x| *x /= sc);
    c.compare("gradient = Jᵀr/c", g, &jtr, EXACT_TOLERANCE);
    let mut x = theta.to_vec();
    let (mut rp, mut rm) = (vec![0.0; m], vec![0.0; m]);
    let mut j_fd = DMat::zeros(m, d);
    for j in 0..d {
        let hj = h * theta[j].abs().max(1.0);
        x[j] = theta[j] + hj;
        res.residuals_into(&x, &mut rp);
        x[j] = theta[j] - hj;
        res.residuals_into(&x, &mut rm);
        x[j] = theta[j];
        for i in 0..m {
            j_fd[(i, j)] = (rp[i] - rm[i]) / (2.0 * hj);
        }
    }
    c.compare(
        "residual Jacobian against differences of r",
        &flat(&jac),
        &flat(&j_fd),
        tolerance,
    );
    let mut jt = DMat::zeros(d, m);
    res.jacobian_transpose_into(theta, jt.as_mut());
    c.compare(
        "jacobian_transpose_into = Jᵀ",
        &flat(&jt),
        &flat(&jac.transpose().to_owned()),
        EXACT_TOLERANCE,
    );
    let (v, u) = (probe(d, 2), probe(m, 3));
    let (mut jv, mut jv_ref) = (vec![0.0; m], vec![0.0; m]);
    res.jvp_into(theta, &v, &mut jv);
    matvec_into(jac.as_ref(), &v, &mut jv_ref);
    c.compare("J·v = J times v", &jv, &jv_ref, EXACT_TOLERANCE);
    let (mut jtu, mut jtu_ref) = (vec![0.0; d], vec![0.0; d]);
    res.vjp_into(theta, &u, &mut jtu);
    matvec_into(jac.transpose(), &u, &mut jtu_ref);
    c.compare("Jᵀ·u = Jᵀ times u", &jtu, &jtu_ref, EXACT_TOLERANCE);
    let mut gram = DMat::zeros(m, m);
    res.gram_into(theta, gram.as_mut());
    c.compare(
        "gram_into = JJᵀ",
        &flat(&gram),
        &flat(&(&jac * jac.transpose())),
        EXACT_TOLERANCE,
    );
    if let Some(groups) = res.curvature_groups() {
        check_groups(c, res, theta, &jac, hess, &groups, tolerance);
    }
    c.list[first..].iter().map(|x| x.error).fold(0.0, f64::max)
}

/// The curvature groups and what rests on them.
fn check_groups(
    c: &mut Checks,
    res: &dyn Residuals,
    theta: &[f64],
    jac: &DMat,
    hess: &DMat,
    groups: &[Vec<usize>],
    tolerance: f64,
) {
    let (m, d, sc) = (res.count(), theta.len(), res.scale());
    let mut seen = vec![0usize; d];
    for &i in groups.iter().flatten() {
        if i < d {
            seen[i] += 1;
        }
    }
    let partition = groups.iter().flatten().all(|&i| i < d) && seen.iter().all(|&s| s == 1);
    c.holds("curvature groups partition the parameters", partition);
    if !partition {
        return;
    }
    // R = ∇²F − JᵀJ/c (the Hessian is checked against differences above).
    let mut rmat = hess.clone();
    faer::linalg::matmul::matmul(
        rmat.as_mut(),
        faer::Accum::Add,
        jac.transpose(),
        jac.as_ref(),
        -1.0 / sc,
        faer::Par::Seq,
    );
    let mut group_of = vec![0usize; d];
    for (k, gr) in groups.iter().enumerate() {
        for &i in gr {
            group_of[i] = k;
        }
    }
    let outside: Vec<f64> = (0..d)
        .flat_map(|j| (0..d).map(move |i| (i, j)))
        .filter(|&(i, j)| group_of[i] != group_of[j])
        .map(|(i, j)| rmat[(i, j)])
        .collect();
    let hnorm = norm(&flat(hess)).max(c.scale);
    let off = norm(&outside) / hnorm;
    c.list.push(DerivativeCheck {
        name: "∇²F − JᵀJ/c vanishes outside the curvature groups".into(),
        error: off,
        tolerance,
        passed: off <= tolerance,
    });
    let size: usize = groups.iter().map(|g| g.len() * g.len()).sum();
    let mut blocks = vec![0.0; size];
    res.curvature_blocks_into(theta, &mut blocks);
    let mut expected = Vec::with_capacity(size);
    for gr in groups {
        for &a in gr {
            for &b in gr {
                expected.push(rmat[(a, b)]);
            }
        }
    }
    let e = distance(&blocks, &expected) / hnorm;
    c.list.push(DerivativeCheck {
        name: "curvature blocks = ∇²F − JᵀJ/c on the groups".into(),
        error: e,
        tolerance,
        passed: e <= tolerance,
    });
    if let Some(a) = res.group_features() {
        let mut grads = vec![0.0; d];
        if res.coefficient_gradients_into(theta, &mut grads) && a.nrows() == m {
            let mut built = DMat::zeros(m, d);
            let mut q = 0;
            for (k, gr) in groups.iter().enumerate() {
                for &p in gr {
                    for i in 0..m {
                        built[(i, p)] = a[(i, k)] * grads[q];
                    }
                    q += 1;
                }
            }
            c.compare(
                "rank-one groups: A·diag(∇β) = J",
                &flat(&built),
                &flat(jac),
                EXACT_TOLERANCE,
            );
        } else {
            c.holds("rank-one groups: A is m×G and ∇β is given", false);
        }
    }
    if res.has_shared_block_gram() {
        let k = groups[0].len();
        if groups.iter().any(|g| g.len() != k) {
            c.holds("shared block: every group has one size", false);
            return;
        }
        let cmat = probe(k * k, 4);
        let sym = DMat::from_fn(k, k, |i, j| cmat[i * k + j] + cmat[j * k + i]);
        let row_major: Vec<f64> = (0..k * k).map(|q| sym[(q / k, q % k)]).collect();
        let mut got = DMat::zeros(m, m);
        res.shared_block_gram_into(theta, &row_major, got.as_mut());
        let mut want = DMat::zeros(m, m);
        for gr in groups {
            let jg = DMat::from_fn(m, gr.len(), |q, b| jac[(q, gr[b])]);
            want += &jg * MatRef::from_row_major_slice(&row_major, k, k) * jg.transpose();
        }
        c.compare(
            "shared-block Gram matrix = Σ J_g C J_gᵀ",
            &flat(&got),
            &flat(&want),
            EXACT_TOLERANCE,
        );
    }
}
