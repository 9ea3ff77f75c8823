//! The numerical differentiation formulas of orders 1–6 (Shampine and Reichelt's NDFs, the
//! form of ode15s and scipy's `BDF`): coefficients, the rescaling of backward differences
//! to a new step size, and the error norm.

/// The highest order of the formulas: BDF6 is stable on the whole negative real axis, where
/// a gradient flow's spectrum lies (docs/design.md).
pub(super) const MAX_ORDER: usize = crate::method::BDF_MAX_ORDER;

/// The NDF modifications κ_k of the BDF formulas (Shampine–Reichelt); orders 5 and 6 are
/// the plain BDF.
const KAPPA: [f64; MAX_ORDER + 1] = [0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0, 0.0];

pub(super) struct Coefficients {
    pub(super) gamma: [f64; MAX_ORDER + 1],
    pub(super) alpha: [f64; MAX_ORDER + 1],
    pub(super) error_const: [f64; MAX_ORDER + 1],
}

impl Coefficients {
    pub(super) fn new() -> Self {
        let mut gamma = [0.0; MAX_ORDER + 1];
        for k in 1..=MAX_ORDER {
            gamma[k] = gamma[k - 1] + 1.0 / k as f64;
        }
        let mut alpha = [0.0; MAX_ORDER + 1];
        let mut error_const = [0.0; MAX_ORDER + 1];
        for k in 0..=MAX_ORDER {
            alpha[k] = (1.0 - KAPPA[k]) * gamma[k];
            error_const[k] = KAPPA[k] * gamma[k] + 1.0 / (k + 1) as f64;
        }
        Self {
            gamma,
            alpha,
            error_const,
        }
    }
}

/// R(order, factor): the matrix that rescales backward differences to a new step size.
fn compute_r(order: usize, factor: f64) -> [[f64; MAX_ORDER + 1]; MAX_ORDER + 1] {
    let mut m = [[0.0; MAX_ORDER + 1]; MAX_ORDER + 1];
    for j in 0..=order {
        m[0][j] = 1.0;
    }
    for i in 1..=order {
        for j in 1..=order {
            m[i][j] = (i as f64 - 1.0 - factor * j as f64) / i as f64;
        }
    }
    for i in 1..=order {
        for j in 0..=order {
            m[i][j] *= m[i - 1][j];
        }
    }
    m
}

/// D[..=order] ← (R U)ᵀ D[..=order]: the differences for step h·factor (`tmp` holds
/// order + 1 rows of scratch).
pub(super) fn change_d(d: &mut [Vec<f64>], order: usize, factor: f64, tmp: &mut [Vec<f64>]) {
    let r = compute_r(order, factor);
    let u = compute_r(order, 1.0);
    let mut ru = [[0.0; MAX_ORDER + 1]; MAX_ORDER + 1];
    for i in 0..=order {
        for j in 0..=order {
            ru[i][j] = (0..=order).map(|k| r[i][k] * u[k][j]).sum();
        }
    }
    for (i, row) in tmp.iter_mut().enumerate().take(order + 1) {
        row.fill(0.0);
        for j in 0..=order {
            let w = ru[j][i];
            if w != 0.0 {
                crate::la::axpy(w, &d[j], row);
            }
        }
    }
    for i in 0..=order {
        std::mem::swap(&mut d[i], &mut tmp[i]);
    }
}

/// weight ← 1/(atol + rtol|y|), the reciprocal error scales of the state y.
pub(super) fn error_weights_into(weight: &mut [f64], y: &[f64], atol: f64, rtol: f64) {
    for (wi, yi) in weight.iter_mut().zip(y) {
        *wi = 1.0 / (atol + rtol * yi.abs());
    }
}

/// RMS norm of x⊙weight (weight = 1/scale, so that the norms of a step, several per
/// scale, multiply instead of divide).
pub(super) fn weighted_norm(x: &[f64], weight: &[f64]) -> f64 {
    // Four interleaved partial sums: a single running sum is a chain of dependent additions,
    // and this norm is taken several times a step.
    let mut acc = [0.0; 4];
    let (xs, ws) = (x.chunks_exact(4), weight.chunks_exact(4));
    let tail: f64 = (xs.remainder().iter().zip(ws.remainder()))
        .map(|(a, w)| (a * w) * (a * w))
        .sum();
    for (a, w) in xs.zip(ws) {
        for l in 0..4 {
            acc[l] += (a[l] * w[l]) * (a[l] * w[l]);
        }
    }
    let s = (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail;
    (s / x.len().max(1) as f64).sqrt()
}

/// The contraction of the chord iteration on (I − cJ)y = b with the matrix I − c′J, for a
/// constant symmetric J with eigenvalues μ ≤ 0 (a convex quadratic's flow): the error is
/// multiplied by (c − c′)μ/(1 − c′μ) in each eigenvector, at most |1 − c/c′| in magnitude
/// (0 when c′ = c: one iteration solves the linear corrector up to rounding).
pub(super) fn convex_quadratic_contraction(c: f64, c_factorised: f64) -> f64 {
    (1.0 - c / c_factorised).abs()
}

pub(super) fn next_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let bits = x.to_bits();
    f64::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::la::{matvec_into, norm, DMat, Factorisation};

    /// The chord iteration's measured contraction on a convex quadratic never exceeds the
    /// bound, and comes within 1% of it from an error along the stiff direction (where
    /// cκμ is largest and (c − c′)μ/(1 − c′μ) nearest its supremum).
    #[test]
    fn the_convex_quadratic_contraction_bound_holds_and_is_tight() {
        let n = 12;
        // H = GᵀG with one stiff direction; J = −κ(H + λI).
        let g = DMat::from_fn(n, n, |i, j| ((i * 5 + j * 3) % 7) as f64 / 7.0 - 0.4);
        let mut h = g.transpose() * &g;
        h[(0, 0)] += 1e4;
        let (kappa, lambda) = (1e3, 1e-3);
        let jac = DMat::from_fn(n, n, |i, j| {
            -kappa * (h[(i, j)] + if i == j { lambda } else { 0.0 })
        });
        for (c, c_f) in [
            (0.1, 0.1),
            (0.1, 0.08),
            (0.1, 0.13),
            (2.0, 2.5),
            (1e-3, 7e-4),
        ] {
            let shifted = |cc: f64| {
                DMat::from_fn(n, n, |i, j| {
                    let identity = if i == j { 1.0 } else { 0.0 };
                    identity - cc * jac[(i, j)]
                })
            };
            let (a, f) = (shifted(c), Factorisation::new(&shifted(c_f)));
            let bound = convex_quadratic_contraction(c, c_f);
            // e ← e − A′⁻¹A e, the error of one chord iteration, from a few starting errors.
            let mut worst = 0.0f64;
            for start in 0..4 {
                // Start 0 is the stiff direction e₀; the others mix every direction.
                let mut e: Vec<f64> = (0..n)
                    .map(|i| match start {
                        0 => f64::from(u8::from(i == 0)),
                        _ => ((i + start) as f64 * 0.9).cos(),
                    })
                    .collect();
                for _ in 0..6 {
                    let before = norm(&e);
                    let mut ae = vec![0.0; n];
                    matvec_into(a.as_ref(), &e, &mut ae);
                    f.solve_vec(&mut ae);
                    for (ei, d) in e.iter_mut().zip(&ae) {
                        *ei -= d;
                    }
                    worst = worst.max(norm(&e) / before);
                }
            }
            assert!(
                worst <= bound + 1e-12,
                "c = {c}, c′ = {c_f}: {worst} > {bound}"
            );
            assert!(
                worst >= 0.99 * bound,
                "c = {c}, c′ = {c_f}: {worst} ≪ {bound}"
            );
        }
    }
}
