//! The gradient flows of DESIGN.md §1 as values that borrow a loss.
//!
//! Every flow here has the form dθ/ds = −κ(∇F(θ) + λθ):
//! - the regularised flow in fast time s = t: κ = 1;
//! - the same flow in slow time s = τ = λt: κ = 1/λ;
//! - the unregularised flow θ₀(t): λ = 0, κ = 1.
//!
//! Its Jacobian is −κ(∇²F(θ) + λI), symmetric, which the linear solver exploits.

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::la::MatMut;
use crate::loss::Loss;

/// The clock a regularised flow is integrated in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeScale {
    /// Fast time t.
    Fast,
    /// Slow time τ = λt.
    Slow,
}

/// The smallest rtol worth asking of a λ-flow: 0.1·ε/λ. In slow time the right-hand side is
/// −(∇F + λθ)/λ, so the rounding error of ∇F reaches the drift along M multiplied by 1/λ
/// (docs/design.md).
pub fn rounding_floor(lambda: f64) -> f64 {
    0.1 * f64::EPSILON / lambda
}

/// The weight decays grokflow accepts: below 1e-12 the rounding of ∇F amplified by 1/λ in
/// slow time ([`rounding_floor`] > 2·10⁻⁵) exceeds any useful tolerance; above 1e6 weight
/// decay dominates every loss.
pub const LAMBDA_RANGE: (f64, f64) = (1e-12, 1e6);

/// A time on one of the two clocks, saying which.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Time {
    /// Fast time t.
    Fast(f64),
    /// Slow time τ = λt.
    Slow(f64),
}

/// How a clock s relates to fast time t and slow time τ = λt: s = t (fast) or s = τ (slow).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    lambda: f64,
    scale: TimeScale,
}

impl Clock {
    /// The clock of `scale` for weight decay λ (λ > 0 for a slow clock).
    pub fn new(lambda: f64, scale: TimeScale) -> Self {
        Self { lambda, scale }
    }

    /// λ.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Fast time t of clock value s.
    pub fn fast_time(&self, s: f64) -> f64 {
        match self.scale {
            TimeScale::Fast => s,
            TimeScale::Slow => s / self.lambda,
        }
    }

    /// Slow time τ of clock value s.
    pub fn slow_time(&self, s: f64) -> f64 {
        match self.scale {
            TimeScale::Fast => self.lambda * s,
            TimeScale::Slow => s,
        }
    }

    /// Clock value s of `time`.
    pub fn value_of(&self, time: Time) -> f64 {
        match (time, self.scale) {
            (Time::Fast(t), _) => self.at_fast_time(t),
            (Time::Slow(tau), TimeScale::Slow) => tau,
            (Time::Slow(tau), TimeScale::Fast) => tau / self.lambda,
        }
    }

    /// Clock value s of fast time t.
    pub fn at_fast_time(&self, t: f64) -> f64 {
        match self.scale {
            TimeScale::Fast => t,
            TimeScale::Slow => t * self.lambda,
        }
    }
}

/// dθ/ds = −κ(∇F(θ) + λθ): see the module documentation.
#[derive(Clone, Copy)]
pub struct GradientFlow<'a> {
    loss: &'a dyn Loss,
    lambda: f64,
    time: TimeScale,
}

impl<'a> GradientFlow<'a> {
    /// The regularised flow dθ/dt = −∇F(θ) − λθ, in fast or slow time.
    pub fn regularised(
        loss: &'a dyn Loss,
        lambda: f64,
        time: TimeScale,
    ) -> Result<Self, EngineError> {
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(EngineError::InvalidInput(format!(
                "the weight decay λ must be a positive finite number, got {lambda}"
            )));
        }
        Ok(Self { loss, lambda, time })
    }

    /// The unregularised flow dθ/dt = −∇F(θ) (fast time).
    pub fn unregularised(loss: &'a dyn Loss) -> Self {
        Self {
            loss,
            lambda: 0.0,
            time: TimeScale::Fast,
        }
    }

    /// The same flow (λ, clock) of another loss.
    pub(crate) fn with_loss<'b>(&self, loss: &'b dyn Loss) -> GradientFlow<'b> {
        GradientFlow {
            loss,
            lambda: self.lambda,
            time: self.time,
        }
    }

    /// The loss this flow descends.
    pub fn loss(&self) -> &'a dyn Loss {
        self.loss
    }

    /// The weight decay λ (0 for the unregularised flow).
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The clock s of the integration.
    pub fn time_scale(&self) -> TimeScale {
        self.time
    }

    /// The dimension of θ.
    pub fn dim(&self) -> usize {
        self.loss.dim()
    }

    /// κ = ds/dt inverted: 1 in fast time, 1/λ in slow time.
    pub fn rate(&self) -> f64 {
        match self.time {
            TimeScale::Fast => 1.0,
            TimeScale::Slow => 1.0 / self.lambda,
        }
    }

    /// The flow's clock.
    pub fn timing(&self) -> Clock {
        Clock::new(self.lambda, self.time)
    }

    /// Fast time t of the flow's clock value s.
    pub fn fast_time(&self, s: f64) -> f64 {
        self.timing().fast_time(s)
    }

    /// Clock value s of fast time t.
    pub fn clock(&self, t: f64) -> f64 {
        self.timing().at_fast_time(t)
    }

    /// out ← −κ(∇F(θ) + λθ).
    pub fn rhs_into(&self, theta: &[f64], out: &mut [f64]) {
        self.loss.gradient_into(theta, out);
        let (k, lam) = (self.rate(), self.lambda);
        for (o, th) in out.iter_mut().zip(theta) {
            *o = -k * (*o + lam * th);
        }
    }

    /// out ← −κ(∇²F(θ) + λI)·v.
    pub fn jvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        self.loss.hvp_into(theta, v, out);
        let (k, lam) = (self.rate(), self.lambda);
        for (o, vi) in out.iter_mut().zip(v) {
            *o = -k * (*o + lam * vi);
        }
    }

    /// jac ← −κ(∇²F(θ) + λI), assembled in place.
    pub fn jacobian_into(&self, theta: &[f64], mut jac: MatMut<'_, f64>) {
        self.loss.hessian_into(theta, jac.as_mut());
        let (k, lam) = (self.rate(), self.lambda);
        let d = jac.nrows();
        for j in 0..d {
            let mut col = jac.as_mut().col_mut(j);
            for i in 0..d {
                col[i] *= -k;
            }
            col[j] -= k * lam;
        }
    }
}
