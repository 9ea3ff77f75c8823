//! The largest eigenvalue of a symmetric positive semi-definite operator by Lanczos with full
//! reorthogonalisation: what the limiting flow uses to read σ₁(J) and, through inverse
//! operators, the smallest curvature μ without a spectral decomposition.

use crate::la::{axpy, dot, norm, symmetric_eigen, DMat};

/// The largest eigenvalue of `apply` (a symmetric positive semi-definite operator on Rⁿ) and
/// its Ritz vector, after at most `steps` Lanczos steps from `start` (a fixed pseudo-random
/// vector when None or zero), stopping once the Ritz residual is below `rtol` times the
/// eigenvalue. Every Lanczos vector is reorthogonalised against all previous ones, so the
/// estimate never exceeds the true value and improves monotonically.
pub fn lanczos_max(
    n: usize,
    mut apply: impl FnMut(&[f64], &mut [f64]),
    start: Option<&[f64]>,
    steps: usize,
    rtol: f64,
) -> (f64, Vec<f64>) {
    if n == 0 {
        return (0.0, Vec::new());
    }
    let mut q = match start {
        Some(s) if norm(s) > 0.0 => s.to_vec(),
        _ => (0..n)
            .map(|i| ((i as f64 + 1.0) * 0.618_033_988_75).fract() - 0.5)
            .collect(),
    };
    let s = norm(&q);
    q.iter_mut().for_each(|x| *x /= s);
    let steps = steps.clamp(1, n);
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(steps);
    let (mut alpha, mut beta) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    let mut w = vec![0.0; n];
    let mut best = (0.0, q.clone());
    for k in 0..steps {
        apply(&q, &mut w);
        let a = dot(&q, &w);
        basis.push(std::mem::take(&mut q));
        alpha.push(a);
        // Full reorthogonalisation, twice (the second pass removes what rounding left).
        for _ in 0..2 {
            for v in &basis {
                let c = dot(v, &w);
                axpy(-c, v, &mut w);
            }
        }
        let b = norm(&w);
        let (value, coeffs) = ritz_max(&alpha, &beta);
        let residual = b * coeffs[k].abs();
        best = (value, combine(&basis, &coeffs));
        if residual <= rtol * value.abs() || b <= f64::EPSILON * value.abs().max(f64::MIN_POSITIVE)
        {
            break;
        }
        beta.push(b);
        q = w.iter().map(|x| x / b).collect();
    }
    best
}

/// The largest eigenvalue of the tridiagonal matrix (α on the diagonal, β beside it) and its
/// eigenvector.
fn ritz_max(alpha: &[f64], beta: &[f64]) -> (f64, Vec<f64>) {
    let k = alpha.len();
    let t = DMat::from_fn(k, k, |i, j| {
        if i == j {
            alpha[i]
        } else if i == j + 1 {
            beta[j]
        } else if j == i + 1 {
            beta[i]
        } else {
            0.0
        }
    });
    match symmetric_eigen(t.as_ref()) {
        Ok((values, vectors)) => (values[k - 1], (0..k).map(|i| vectors[(i, k - 1)]).collect()),
        // The tridiagonal eigensolver does not fail on finite input; on anything else the
        // diagonal is the best estimate there is.
        Err(_) => {
            let i = (0..k)
                .max_by(|&a, &b| alpha[a].total_cmp(&alpha[b]))
                .unwrap_or(0);
            let mut e = vec![0.0; k];
            e[i] = 1.0;
            (alpha[i], e)
        }
    }
}

fn combine(basis: &[Vec<f64>], coeffs: &[f64]) -> Vec<f64> {
    let mut x = vec![0.0; basis[0].len()];
    for (v, c) in basis.iter().zip(coeffs) {
        axpy(*c, v, &mut x);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_largest_eigenvalue_of_a_diagonal_operator() {
        let d: Vec<f64> = (0..200).map(|i| 1.0 + i as f64 * 0.01).collect();
        let (value, v) = lanczos_max(
            200,
            |x, y| {
                y.iter_mut()
                    .zip(x)
                    .zip(&d)
                    .for_each(|((y, x), d)| *y = d * x)
            },
            None,
            120,
            1e-12,
        );
        // From below (a Ritz value), and to 1e-10 in 120 steps on a relative gap of 0.5%.
        assert!(value <= d[199] * (1.0 + 1e-13), "{value}"); // a Ritz value, up to rounding
        assert!(d[199] - value < 1e-10 * d[199], "{value}");
        assert!(v[199].abs() > 1.0 - 1e-6, "{}", v[199]);
    }

    #[test]
    fn an_invariant_start_ends_at_once_and_zero_is_handled() {
        let d = [3.0, 2.0, 1.0];
        let mut calls = 0;
        let (value, _) = lanczos_max(
            3,
            |x, y| {
                calls += 1;
                y.iter_mut()
                    .zip(x)
                    .zip(&d)
                    .for_each(|((y, x), d)| *y = d * x)
            },
            Some(&[0.0, 1.0, 0.0]),
            3,
            1e-14,
        );
        assert_eq!((value, calls), (2.0, 1));
        assert_eq!(lanczos_max(0, |_, _| {}, None, 5, 1e-9).0, 0.0);
    }
}
