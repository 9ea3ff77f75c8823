//! Preconditioned MINRES for symmetric, possibly indefinite systems.

use crate::la::dot;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::la::{matvec_into, DMat, Factorisation};

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
