//! The matrix-free Newton solve for large d: no d×d matrix is stored when the loss has fewer
//! residuals than parameters (m < d; otherwise the preconditioner is the d×d matrix αI + βJᵀJ).
//!
//! The Newton matrix of an implicit step is A = I − cJ = (1 + cκλ)I + cκ∇²F, applied through
//! Hessian-vector products at the linearisation point θ_J, and A·x = b is solved by
//! preconditioned MINRES (A is symmetric, and indefinite wherever ∇²F is far from M).
//!
//! The preconditioner is the Gauss–Newton model of A. For a least-squares loss
//! F = ‖r‖²/(2s) with m residuals, ∇²F = JᵀJ/s + Σᵢ rᵢ∇²rᵢ/s and the second term vanishes on
//! the manifold M, so P = αI + βJᵀJ with α = 1 + cκλ, β = cκ/s captures the stiff normal
//! directions exactly there and the preconditioned spectrum clusters near 1. P is inverted
//! through the m×m matrix S = (α/β)I + JJᵀ when m < d (Woodbury:
//! P⁻¹ = (I − Jᵀ S⁻¹ J)/α) and directly otherwise; both are SPD and Cholesky-factorised.
//! A loss without residual structure gets no preconditioner (plain MINRES), which converges
//! slowly when cκ‖∇²F‖ is large: bring residuals to use this path at small λ.
//!
//! S stays in double precision. Its Cholesky factor in single precision halves the time of a
//! factorisation and of an application (m = 3430: 0.07 s and 2.1 ms against 0.13 s and
//! 3.9 ms), but the shift α/β is about λ(1 + c)/c while ‖JJᵀ‖ is O(1), a condition number
//! near 1e7 at λ = 1e-6: on matrix completion at d = 9800 MINRES iterations went from 6064
//! to 57 705, BDF steps from 675 to 1535 and the run from 89 s to 275 s.

use crate::flow::GradientFlow;
use crate::la::{dot, matvec_into, DMat};
use crate::linsolve::Factorisation;

/// The relative residual ‖b − Ax‖_{P⁻¹}/‖b‖_{P⁻¹} at which MINRES stops, for a BDF run at
/// `rtol`: min(0.1, 1e-5/t) with t = [`crate::bdf::scipy_newton_tolerance`]`(rtol)`, the
/// Newton tolerance this forcing term was measured with. The BDF's own Newton tolerance is
/// looser at rtol < 1e-4; keyed on it, the forcing term tightened to 1e-3 at rtol 1e-8 and
/// cost matrix completion at d = 400 17% more time for the same error. An inexact Newton
/// iteration whose forcing term tightens as the tolerance loosens. Measured with Newton
/// stopping at t: at tight tolerances Newton iterates until its own corrections are small
/// and a forcing term of 0.1 is enough (matrix completion at λ = 1e-6, rtol 1e-8, against
/// 1e-4: the same steps and Newton iterations within 3%, end states 1e-9 from the dense
/// solve's, 2.5× fewer MINRES iterations; d = 800: 0.36 s → 0.22 s; d = 9800: 102 s → 77 s).
/// At loose tolerances Newton stops after a few corrections and the solves' error stays in
/// the step: at λ = 1e-8, rtol 1e-4 (t = 0.01) the end state was 2.1e-3 from the rtol 1e-8
/// run with 0.1, 1.1e-3 with 1e-2 and 8.9e-5 with 1e-3 (the dense solve: 1.5e-5).
pub(crate) fn krylov_rtol(rtol: f64) -> f64 {
    (1e-5 / crate::bdf::scipy_newton_tolerance(rtol)).min(0.1)
}
/// MINRES gives up after this many iterations (the Newton iteration then counts as failed).
pub(crate) const KRYLOV_MAX_ITER: usize = 300;

/// What one MINRES solve did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MinresOutcome {
    pub iterations: usize,
    pub converged: bool,
}

/// The vectors of MINRES, allocated once.
pub(crate) struct MinresWork {
    v_prev: Vec<f64>,
    v: Vec<f64>,
    v_next: Vec<f64>,
    z: Vec<f64>,
    w_prev: Vec<f64>,
    w: Vec<f64>,
    w_next: Vec<f64>,
}

impl MinresWork {
    pub(crate) fn new(n: usize) -> Self {
        let v = || vec![0.0; n];
        Self {
            v_prev: v(),
            v: v(),
            v_next: v(),
            z: v(),
            w_prev: v(),
            w: v(),
            w_next: v(),
        }
    }
}

/// Preconditioned MINRES for a symmetric A and an SPD preconditioner P: x ← the iterate that
/// minimises ‖b − Ax‖_{P⁻¹} over the Krylov space, from x = 0, stopped when that norm falls
/// below `rtol`·‖b‖_{P⁻¹}. `apply_a(v, out)`: out ← Av; `apply_p_inv(v, out)`: out ← P⁻¹v.
///
/// The Lanczos vectors zⱼ are P-orthonormal (vⱼ = Pzⱼ); the tridiagonal matrix they build is
/// reduced by Givens rotations, whose accumulated sines give the residual norm for free.
pub(crate) fn minres(
    apply_a: &mut dyn FnMut(&[f64], &mut [f64]),
    apply_p_inv: &mut dyn FnMut(&[f64], &mut [f64]),
    b: &[f64],
    x: &mut [f64],
    rtol: f64,
    max_iter: usize,
    work: &mut MinresWork,
) -> MinresOutcome {
    let MinresWork {
        v_prev,
        v,
        v_next,
        z,
        w_prev,
        w,
        w_next,
    } = work;
    x.fill(0.0);
    v_prev.fill(0.0);
    w_prev.fill(0.0);
    w.fill(0.0);
    v.copy_from_slice(b);
    apply_p_inv(v, z);
    let beta1_sq = dot(z, v);
    if beta1_sq <= 0.0 || !beta1_sq.is_finite() {
        // b = 0 (x = 0 solves it), or the preconditioner is not positive definite.
        return MinresOutcome {
            iterations: 0,
            converged: beta1_sq == 0.0,
        };
    }
    let beta1 = beta1_sq.sqrt();
    v.iter_mut().for_each(|e| *e /= beta1);
    z.iter_mut().for_each(|e| *e /= beta1);
    // γⱼ: the off-diagonal entry coupling the current Lanczos vector to the previous one.
    let mut gamma = 0.0;
    let (mut c_old, mut s_old, mut c, mut s) = (1.0, 0.0, 1.0, 0.0);
    let mut eta = beta1;
    for iteration in 1..=max_iter {
        apply_a(z, v_next);
        let delta = dot(v_next, z);
        for i in 0..v_next.len() {
            v_next[i] -= delta * v[i] + gamma * v_prev[i];
        }
        // z becomes P⁻¹ v_next below; keep the current zⱼ in w_next meanwhile.
        w_next.copy_from_slice(z);
        apply_p_inv(v_next, z);
        let mut gamma_next_sq = dot(z, v_next);
        if gamma_next_sq < 0.0 && gamma_next_sq.abs() <= 1e3 * f64::EPSILON * beta1_sq {
            // The Krylov space is exhausted and rounding made γ² slightly negative.
            gamma_next_sq = 0.0;
        }
        if gamma_next_sq < 0.0 || !gamma_next_sq.is_finite() {
            return MinresOutcome {
                iterations: iteration,
                converged: false,
            };
        }
        let gamma_next = gamma_next_sq.sqrt();
        // Apply the two previous rotations to the new column (γⱼ, δⱼ, γⱼ₊₁) of the
        // tridiagonal matrix, then choose a new one that annihilates γⱼ₊₁.
        let a0 = c * delta - c_old * s * gamma;
        let a1 = (a0 * a0 + gamma_next * gamma_next).sqrt();
        let a2 = s * delta + c_old * c * gamma;
        let a3 = s_old * gamma;
        if a1 == 0.0 {
            return MinresOutcome {
                iterations: iteration,
                converged: false,
            };
        }
        let (c_new, s_new) = (a0 / a1, gamma_next / a1);
        for i in 0..x.len() {
            w_next[i] = (w_next[i] - a3 * w_prev[i] - a2 * w[i]) / a1;
            x[i] += c_new * eta * w_next[i];
        }
        eta *= -s_new;
        if eta.abs() <= rtol * beta1 || gamma_next == 0.0 {
            return MinresOutcome {
                iterations: iteration,
                converged: true,
            };
        }
        // Shift: (wⱼ₋₁, wⱼ) ← (wⱼ, wⱼ₊₁), (vⱼ₋₁, vⱼ) ← (vⱼ, vⱼ₊₁/γⱼ₊₁), zⱼ₊₁ /= γⱼ₊₁.
        std::mem::swap(w_prev, w);
        std::mem::swap(w, w_next);
        std::mem::swap(v_prev, v);
        std::mem::swap(v, v_next);
        v.iter_mut().for_each(|e| *e /= gamma_next);
        z.iter_mut().for_each(|e| *e /= gamma_next);
        (c_old, s_old, c, s) = (c, s, c_new, s_new);
        gamma = gamma_next;
    }
    MinresOutcome {
        iterations: max_iter,
        converged: false,
    }
}

/// How P = αI + βJᵀJ is inverted.
enum Inverse {
    /// No residual structure: P = I.
    Identity,
    /// m < d: S = (α/β)I + JJᵀ factorised.
    Woodbury { s: Factorisation },
    /// m ≥ d: P itself factorised.
    Direct { p: Factorisation },
}

/// The Gauss–Newton preconditioner at one linearisation point and one c.
pub(crate) struct Preconditioner {
    c: f64,
    alpha: f64,
    inverse: Inverse,
}

impl Preconditioner {
    /// The c it was built for.
    pub(crate) fn c(&self) -> f64 {
        self.c
    }
}

/// The linearisation point θ_J and what the preconditioner needs there, kept across steps
/// like a Jacobian: the Gram matrix JJᵀ (or JᵀJ when m ≥ d) and, for residuals without
/// structured products, J itself.
pub(crate) struct MatrixFree {
    theta_j: Vec<f64>,
    /// The storage of the last factorisation, reused by the next.
    spare: Option<Factorisation>,
    /// JJᵀ (m < d) or JᵀJ (m ≥ d) at θ_J; None without residual structure.
    gram: Option<DMat>,
    /// J at θ_J when the residuals have no structured products and m < d.
    jac: Option<DMat>,
    pub(crate) preconditioner: Option<Preconditioner>,
    work: MinresWork,
    /// Scratch: m entries (J·v) and d entries.
    u: Vec<f64>,
    tmp: Vec<f64>,
}

impl MatrixFree {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            theta_j: vec![0.0; n],
            spare: None,
            gram: None,
            jac: None,
            preconditioner: None,
            work: MinresWork::new(n),
            u: Vec::new(),
            tmp: vec![0.0; n],
        }
    }

    /// Moves the linearisation point to `at` and recomputes the Gram matrix there.
    pub(crate) fn linearise(&mut self, flow: &GradientFlow<'_>, at: &[f64]) {
        self.theta_j.copy_from_slice(at);
        if let Some(p) = self.preconditioner.take() {
            self.spare = match p.inverse {
                Inverse::Woodbury { s: f } | Inverse::Direct { p: f } => Some(f),
                Inverse::Identity => None,
            };
        }
        let Some(res) = flow.loss().residuals() else {
            return;
        };
        let (m, d) = (res.count(), at.len());
        self.u.resize(m, 0.0);
        if m < d {
            let gram = self.gram.get_or_insert_with(|| DMat::zeros(m, m));
            if res.has_structured_products() {
                res.gram_into(at, gram.as_mut());
            } else {
                let jac = self.jac.get_or_insert_with(|| DMat::zeros(m, d));
                res.jacobian_into(at, jac.as_mut());
                gram.copy_from(&*jac * jac.transpose());
            }
        } else {
            let mut jac = DMat::zeros(m, d);
            res.jacobian_into(at, jac.as_mut());
            self.gram = Some(jac.transpose() * &jac);
        }
    }

    /// Builds the preconditioner for this c: α = 1 + cκλ, β = cκ/s. Returns whether a
    /// matrix was factorised by Cholesky (None: nothing was factorised).
    pub(crate) fn precondition(&mut self, flow: &GradientFlow<'_>, c: f64) -> Option<bool> {
        let alpha = 1.0 + c * flow.rate() * flow.lambda();
        let recycled = match self.preconditioner.take().map(|p| p.inverse) {
            Some(Inverse::Woodbury { s: f }) | Some(Inverse::Direct { p: f }) => Some(f),
            _ => self.spare.take(),
        };
        let (inverse, cholesky) = match (flow.loss().residuals(), &self.gram) {
            (Some(res), Some(gram)) => {
                let beta = c * flow.rate() / res.scale();
                // Woodbury: S = (α/β)I + JJᵀ; directly: P = αI + βJᵀJ.
                let (scale, shift) = if res.count() < self.theta_j.len() {
                    (1.0, alpha / beta)
                } else {
                    (beta, alpha)
                };
                let f = Factorisation::shifted(gram.as_ref(), scale, shift, recycled);
                let chol = f.is_cholesky();
                let inverse = if res.count() < self.theta_j.len() {
                    Inverse::Woodbury { s: f }
                } else {
                    Inverse::Direct { p: f }
                };
                (inverse, Some(chol))
            }
            _ => (Inverse::Identity, None),
        };
        self.preconditioner = Some(Preconditioner { c, alpha, inverse });
        cholesky
    }

    /// rhs ← A⁻¹ rhs approximately, A = I − cJ(θ_J), by preconditioned MINRES. Counts
    /// Hessian-vector products into `hvps`.
    ///
    /// The operator is taken at θ_J, the preconditioner's point, as the dense path's
    /// Jacobian is (a chord iteration), not at the current Newton iterate: the
    /// preconditioner then differs from the operator only by the residual curvature
    /// Σ rᵢ∇²rᵢ and MINRES needs a few iterations. Measured on matrix completion
    /// (d = 3200, λ = 1e-6): Hessian-vector products at the iterate cut Newton iterations by
    /// a third but multiplied MINRES iterations by 5–10, the preconditioner's Gauss–Newton
    /// blocks rotating with θ at rate cκ; moving the operator's point without refactorising
    /// the preconditioner cost more steps and twice the time. Re-measured with MINRES at a
    /// relative residual of 0.1, refreshing the preconditioner only after a solve of more
    /// than 4 iterations: d = 3200, 226 → 203 factorisations but Newton iterations
    /// 2212 → 3555, MINRES 2374 → 8758, 5.0 s → 10.9 s.
    pub(crate) fn solve(
        &mut self,
        flow: &GradientFlow<'_>,
        c: f64,
        rhs: &mut [f64],
        forcing: f64,
        hvps: &mut usize,
    ) -> MinresOutcome {
        let Self {
            theta_j,
            jac,
            preconditioner,
            work,
            u,
            tmp,
            ..
        } = self;
        let p = preconditioner
            .as_ref()
            .expect("preconditioned before solving");
        let res = flow.loss().residuals();
        let theta_j: &[f64] = theta_j;
        let mut apply_a = |v: &[f64], out: &mut [f64]| {
            *hvps += 1;
            flow.jvp_into(theta_j, v, out);
            for (o, vi) in out.iter_mut().zip(v) {
                *o = vi - c * *o;
            }
        };
        let mut apply_p_inv = |v: &[f64], out: &mut [f64]| match &p.inverse {
            Inverse::Identity => out.copy_from_slice(v),
            Inverse::Direct { p } => {
                out.copy_from_slice(v);
                p.solve_vec(out);
            }
            Inverse::Woodbury { s } => {
                let res = res.expect("Woodbury needs residuals");
                // out = (v − Jᵀ S⁻¹ J v)/α.
                match jac {
                    Some(j) => matvec_into(j.as_ref(), v, u),
                    None => res.jvp_into(theta_j, v, u),
                }
                s.solve_vec(u);
                match jac {
                    Some(j) => matvec_into(j.transpose(), u, out),
                    None => res.vjp_into(theta_j, u, out),
                }
                for (o, vi) in out.iter_mut().zip(v) {
                    *o = (vi - *o) / p.alpha;
                }
            }
        };
        tmp.copy_from_slice(rhs);
        minres(
            &mut apply_a,
            &mut apply_p_inv,
            tmp,
            rhs,
            forcing,
            KRYLOV_MAX_ITER,
            work,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed symmetric matrix with a wide, partly negative spectrum.
    fn test_matrix(n: usize, indefinite: bool) -> DMat {
        let q = DMat::from_fn(n, n, |i, j| ((i * 7 + j * 13) % 11) as f64 / 11.0 - 0.45);
        let mut a = &q * q.transpose();
        for i in 0..n {
            let shift = if indefinite && i % 3 == 0 { -3.0 } else { 1.0 };
            a[(i, i)] += shift * (1.0 + i as f64);
        }
        a
    }

    fn residual(a: &DMat, x: &[f64], b: &[f64]) -> f64 {
        let mut ax = vec![0.0; b.len()];
        matvec_into(a.as_ref(), x, &mut ax);
        ax.iter()
            .zip(b)
            .map(|(p, q)| (p - q) * (p - q))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn minres_solves_definite_and_indefinite_systems() {
        let n = 40;
        let b: Vec<f64> = (0..n).map(|i| ((i * 5) % 7) as f64 - 3.0).collect();
        let bnorm = dot(&b, &b).sqrt();
        for indefinite in [false, true] {
            let a = test_matrix(n, indefinite);
            let mut x = vec![0.0; n];
            let mut work = MinresWork::new(n);
            let out = minres(
                &mut |v, o| matvec_into(a.as_ref(), v, o),
                &mut |v, o| o.copy_from_slice(v),
                &b,
                &mut x,
                1e-12,
                200,
                &mut work,
            );
            assert!(out.converged, "indefinite = {indefinite}: {out:?}");
            // n iterations in exact arithmetic; Lanczos without reorthogonalisation loses
            // orthogonality in floating point and needs somewhat more at 1e-12.
            assert!(out.iterations <= 2 * n, "{out:?}");
            let r = residual(&a, &x, &b);
            assert!(
                r <= 1e-9 * bnorm,
                "indefinite = {indefinite}: residual {r:e}"
            );
        }
    }

    #[test]
    fn an_exact_preconditioner_converges_in_one_iteration() {
        let n = 30;
        let a = test_matrix(n, false);
        let fa = Factorisation::new(&a);
        let b: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
        let mut x = vec![0.0; n];
        let mut work = MinresWork::new(n);
        let out = minres(
            &mut |v, o| matvec_into(a.as_ref(), v, o),
            &mut |v, o| {
                o.copy_from_slice(v);
                fa.solve_vec(o);
            },
            &b,
            &mut x,
            1e-10,
            50,
            &mut work,
        );
        assert!(out.converged && out.iterations == 1, "{out:?}");
        assert!(residual(&a, &x, &b) <= 1e-10 * dot(&b, &b).sqrt());
    }

    #[test]
    fn minres_reports_failure_within_its_budget() {
        let n = 60;
        let a = DMat::from_fn(n, n, |i, j| {
            if i == j {
                10f64.powf(i as f64 / 6.0)
            } else {
                0.0
            }
        });
        let b = vec![1.0; n];
        let mut x = vec![0.0; n];
        let mut work = MinresWork::new(n);
        let out = minres(
            &mut |v, o| matvec_into(a.as_ref(), v, o),
            &mut |v, o| o.copy_from_slice(v),
            &b,
            &mut x,
            1e-14,
            5,
            &mut work,
        );
        assert!(!out.converged && out.iterations == 5, "{out:?}");
    }
}
