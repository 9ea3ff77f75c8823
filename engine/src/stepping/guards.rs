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
    /// Read −∇F from the stepper's field where it gives one.
    on_field: bool,
}

impl<'a> GradientBelow<'a> {
    /// The rule ‖∇F(θ)‖ ≤ `tol` on `loss`.
    pub fn new(loss: &'a dyn Loss, tol: f64) -> Self {
        Self {
            loss,
            tol,
            grad: vec![0.0; loss.dim()],
            on_field: false,
        }
    }

    /// The rule on the unregularised flow's field in fast time, −∇F, as the stepper gives
    /// it: for a piecewise-smooth loss, Filippov's field (on a sliding surface the projected
    /// gradient, which vanishes at a minimum where ∇F of either side does not).
    pub fn on_field(loss: &'a dyn Loss, tol: f64) -> Self {
        Self {
            on_field: true,
            ..Self::new(loss, tol)
        }
    }
}

impl Observer for GradientBelow<'_> {
    fn step(&mut self, view: &StepView<'_>) -> Control {
        let g = match view.rhs {
            Some(f) if self.on_field => norm(f),
            _ => {
                self.loss.gradient_into(view.theta, &mut self.grad);
                norm(&self.grad)
            }
        };
        if g <= self.tol {
            Control::Stop(StopReason::Converged { grad_norm: g })
        } else {
            Control::Continue
        }
    }
}

/// Stops a run whose objective F(θ) + λ‖θ‖²/2 rises above `factor` times its value at the
/// start: the gradient flow never raises it, so a method that does has left the flow (a
/// gradient-descent step past 2/L, say) even while ‖θ‖ stays below [`BlowUpGuard`]'s bound.
pub struct RisingObjective<'a> {
    loss: &'a dyn Loss,
    lambda: f64,
    factor: f64,
    start: Option<f64>,
}

impl<'a> RisingObjective<'a> {
    /// The rule on `loss` with weight decay `lambda`, firing above `factor` × the start.
    pub fn new(loss: &'a dyn Loss, lambda: f64, factor: f64) -> Self {
        Self {
            loss,
            lambda,
            factor,
            start: None,
        }
    }

    fn objective(&self, theta: &[f64]) -> f64 {
        self.loss.value(theta) + 0.5 * self.lambda * theta.iter().map(|x| x * x).sum::<f64>()
    }
}

impl Observer for RisingObjective<'_> {
    fn start(&mut self, _info: &crate::stepping::RunInfo, theta: &[f64]) -> Control {
        self.start = Some(self.objective(theta));
        Control::Continue
    }

    fn step(&mut self, view: &StepView<'_>) -> Control {
        let Some(start) = self.start else {
            return Control::Continue;
        };
        let now = self.objective(view.theta);
        if !now.is_finite() || now > self.factor * start.max(f64::MIN_POSITIVE) {
            Control::Stop(StopReason::Diverged {
                theta_norm: norm(view.theta),
            })
        } else {
            Control::Continue
        }
    }
}
