//! The retraction onto M: Gauss–Newton steps on the residuals, θ ← θ − J⁺r, or Newton steps
//! on the gradient in the normal space, θ ← θ − ∇²F⁺∇F, until ‖∇F‖ is at its tolerance.

use crate::error::EngineError;
use crate::la::norm;
use crate::loss::Loss;
use crate::manifold::TangentProjector;

/// Newton steps that stop reducing ‖∇F‖ by half end the retraction; at most this many.
const MAX_RETRACTION_STEPS: usize = 20;

/// step ← the retraction's step at θ (gradient g): over the ρ leading singular triplets
/// (wᵢ, sᵢ, vᵢ) of J, Σ (wᵢ·r/sᵢ) vᵢ; without residuals, over the normal eigenvectors uᵢ,
/// Σ (uᵢ·g/μᵢ) uᵢ.
pub(crate) fn retraction_step(
    p: &TangentProjector,
    loss: &dyn Loss,
    theta: &[f64],
    g: &[f64],
    step: &mut [f64],
) {
    step.fill(0.0);
    match (&p.left, loss.residuals()) {
        (Some((left, singular)), Some(res)) => {
            let mut r = vec![0.0; res.count()];
            res.residuals_into(theta, &mut r);
            for (c, s) in singular.iter().enumerate() {
                let wl = left.col(c);
                let w: f64 = (0..r.len()).map(|i| wl[i] * r[i]).sum::<f64>() / s;
                let v = p.normal.col(c);
                for (i, st) in step.iter_mut().enumerate() {
                    *st += w * v[i];
                }
            }
        }
        _ => {
            for (c, mu) in p.curvature.iter().enumerate() {
                let u = p.normal.col(c);
                let w: f64 = (0..g.len()).map(|r| u[r] * g[r]).sum::<f64>() / mu;
                for (r, s) in step.iter_mut().enumerate() {
                    *s += w * u[r];
                }
            }
        }
    }
}

/// Retracts θ in place until ‖∇F‖ ≤ `tol` or a step no longer halves it; a step that makes
/// it worse is undone. `step_at(θ, ∇F(θ), step)` writes the retraction's step at θ;
/// `iterations` counts the steps taken. Returns the ‖∇F‖ reached.
pub(crate) fn retract(
    loss: &dyn Loss,
    theta: &mut [f64],
    tol: f64,
    mut step_at: impl FnMut(&[f64], &[f64], &mut [f64]) -> Result<(), EngineError>,
    iterations: &mut usize,
) -> Result<f64, EngineError> {
    let mut g = loss.gradient(theta);
    let mut gn = norm(&g);
    let mut step = vec![0.0; theta.len()];
    for _ in 0..MAX_RETRACTION_STEPS {
        if gn <= tol {
            break;
        }
        step_at(theta, &g, &mut step)?;
        theta.iter_mut().zip(&step).for_each(|(x, s)| *x -= s);
        *iterations += 1;
        let mut g_new = loss.gradient(theta);
        let new = norm(&g_new);
        if new.is_nan() || new >= gn {
            theta.iter_mut().zip(&step).for_each(|(x, s)| *x += s);
            break;
        }
        std::mem::swap(&mut g, &mut g_new);
        let halved = new <= 0.5 * gn;
        gn = new;
        if !halved {
            break;
        }
    }
    Ok(gn)
}
