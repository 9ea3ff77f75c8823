//! Gradient descent θ_{k+1} = θ_k − η(∇F(θ_k) + λθ_k): the discrete scheme the paper's
//! figures ran, as a stepper of the one loop. Iterate k sits at fast time t = kη; its dense
//! output is the straight line between iterates.

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::la::norm;
use crate::method::Method;
use crate::stepping::{DenseOutput, SolverStats, Stepper, StopReason};

/// Gradient descent with step `lr` on a flow's loss and weight decay.
pub(crate) struct GradientDescent<'f, 'a> {
    flow: &'f GradientFlow<'a>,
    lr: f64,
    /// The clock advance of one full step.
    ds: f64,
    s: f64,
    s_prev: f64,
    k: usize,
    theta: Vec<f64>,
    prev: Vec<f64>,
    grad: Vec<f64>,
}

impl<'f, 'a> GradientDescent<'f, 'a> {
    pub(crate) fn new(
        flow: &'f GradientFlow<'a>,
        theta0: &[f64],
        lr: f64,
    ) -> Result<Self, EngineError> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(EngineError::InvalidInput(format!(
                "the gradient-descent step must be a positive finite number, got {lr}"
            )));
        }
        Ok(Self {
            flow,
            lr,
            ds: flow.clock(lr),
            s: 0.0,
            s_prev: 0.0,
            k: 0,
            theta: theta0.to_vec(),
            prev: theta0.to_vec(),
            grad: vec![0.0; theta0.len()],
        })
    }
}

impl DenseOutput for GradientDescent<'_, '_> {
    fn interpolate_into(&self, s: f64, out: &mut [f64]) -> Result<(), EngineError> {
        let w = ((s - self.s_prev) / (self.s - self.s_prev)).clamp(0.0, 1.0);
        for ((o, a), b) in out.iter_mut().zip(&self.prev).zip(&self.theta) {
            *o = a + w * (b - a);
        }
        Ok(())
    }
}

impl Stepper for GradientDescent<'_, '_> {
    fn method(&self) -> &'static str {
        Method::GradientDescent { lr: self.lr }.name()
    }

    fn clock(&self) -> f64 {
        self.s
    }

    fn state(&self) -> &[f64] {
        &self.theta
    }

    /// One iteration; the last may be a partial step so that the run ends exactly at
    /// `s_stop`.
    fn step(&mut self, s_stop: f64) -> Result<(), StopReason> {
        let remaining = s_stop - self.s;
        let last = remaining <= self.ds * (1.0 + 1e-12);
        let eta = if last {
            self.lr * remaining / self.ds
        } else {
            self.lr
        };
        let lam = self.flow.lambda();
        self.prev.copy_from_slice(&self.theta);
        self.flow.loss().gradient_into(&self.theta, &mut self.grad);
        for ((th, g), p) in self.theta.iter_mut().zip(&self.grad).zip(&self.prev) {
            *th = p - eta * (g + lam * p);
        }
        self.k += 1;
        self.s_prev = self.s;
        self.s = if last {
            s_stop
        } else {
            self.k as f64 * self.ds
        };
        Ok(())
    }

    fn last_finite(&self) -> (f64, &[f64]) {
        if norm(&self.theta).is_finite() {
            (self.s, &self.theta)
        } else {
            (self.s - self.ds, &self.prev)
        }
    }

    fn stats(&self) -> SolverStats {
        SolverStats {
            method: self.method().to_string(),
            steps: self.k,
            rhs_evals: self.k,
            ..SolverStats::default()
        }
    }
}
