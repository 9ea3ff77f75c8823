//! Observers that end a run: a blow-up guard and a gradient stopping rule.

use crate::la::norm;
use crate::loss::Loss;
use crate::stepping::{Control, Observer, StepView, StopReason};

/// Stops a run whose θ becomes non-finite or whose norm exceeds a bound.
pub struct BlowUpGuard {
    bound: f64,
}

impl BlowUpGuard {
    /// Fires when ‖θ‖ > `bound` or θ has a non-finite entry.
    pub fn new(bound: f64) -> Self {
        Self { bound }
    }

    /// A generous default bound: 10⁶ (1 + ‖θ₀‖).
    pub fn for_start(theta0: &[f64]) -> Self {
        Self::new(1e6 * (1.0 + norm(theta0)))
    }
}

impl Observer for BlowUpGuard {
    fn step(&mut self, view: &StepView<'_>) -> Control {
        let n = norm(view.theta);
        if !n.is_finite() || n > self.bound {
            Control::Stop(StopReason::Diverged { theta_norm: n })
        } else {
            Control::Continue
        }
    }
}

/// Stops when ‖∇F(θ)‖ ≤ `tol`.
pub struct GradientBelow<'a> {
    loss: &'a dyn Loss,
    tol: f64,
    grad: Vec<f64>,
}

impl<'a> GradientBelow<'a> {
    /// The rule ‖∇F(θ)‖ ≤ `tol` on `loss`.
    pub fn new(loss: &'a dyn Loss, tol: f64) -> Self {
        Self {
            loss,
            tol,
            grad: vec![0.0; loss.dim()],
        }
    }
}

impl Observer for GradientBelow<'_> {
    fn step(&mut self, view: &StepView<'_>) -> Control {
        self.loss.gradient_into(view.theta, &mut self.grad);
        let g = norm(&self.grad);
        if g <= self.tol {
            Control::Stop(StopReason::Converged { grad_norm: g })
        } else {
            Control::Continue
        }
    }
}
