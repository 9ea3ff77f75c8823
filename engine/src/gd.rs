//! Gradient descent θ_{k+1} = θ_k − η(∇F(θ_k) + λθ_k): the discrete scheme the paper's
//! figures ran, driven by the same loop and observers as the ODE methods. Iterate k sits at
//! fast time t = kη; its dense output is the straight line between iterates.

use std::time::Instant;

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::la::norm;
use crate::method::{Method, Options};
use crate::observe::{notify, Control, DenseOutput, Observer, RunInfo, StepView, StopReason};
use crate::run::{Outcome, SolverStats};

struct Segment<'a> {
    s_prev: f64,
    s: f64,
    prev: &'a [f64],
    next: &'a [f64],
}

impl DenseOutput for Segment<'_> {
    fn interpolate_into(&self, s: f64, out: &mut [f64]) -> Result<(), EngineError> {
        let w = ((s - self.s_prev) / (self.s - self.s_prev)).clamp(0.0, 1.0);
        for ((o, a), b) in out.iter_mut().zip(self.prev).zip(self.next) {
            *o = a + w * (b - a);
        }
        Ok(())
    }
}

/// Gradient descent with step `lr` on the flow's loss and weight decay, until the flow's
/// clock reaches `opts.s_end` (the last step is shortened to land on it).
pub(crate) fn gradient_descent(
    flow: &GradientFlow<'_>,
    theta0: &[f64],
    lr: f64,
    opts: &Options,
    observers: &mut [&mut dyn Observer],
) -> Result<Outcome, EngineError> {
    if !(lr.is_finite() && lr > 0.0) {
        return Err(EngineError::InvalidInput(format!(
            "the gradient-descent step must be a positive finite number, got {lr}"
        )));
    }
    let started = Instant::now();
    let method = Method::GradientDescent { lr };
    let ds = flow.clock(lr);
    let (lam, d) = (flow.lambda(), flow.dim());
    let info = RunInfo {
        s0: 0.0,
        s_end: opts.s_end,
        method: method.name(),
    };
    let mut theta = theta0.to_vec();
    let mut prev = theta0.to_vec();
    let mut grad = vec![0.0; d];
    let mut stop = match notify(observers, |o| o.start(&info, &theta)) {
        Control::Stop(r) => Some(r),
        Control::Continue => None,
    };
    let (mut s, mut k) = (0.0f64, 0usize);
    while stop.is_none() {
        if k >= opts.max_steps {
            stop = Some(StopReason::MaxSteps { steps: k });
            break;
        }
        // The last iteration may be a partial step so that the run ends exactly at s_end.
        let remaining = opts.s_end - s;
        let last = remaining <= ds * (1.0 + 1e-12);
        let eta = if last { lr * remaining / ds } else { lr };
        prev.copy_from_slice(&theta);
        flow.loss().gradient_into(&theta, &mut grad);
        for ((th, g), p) in theta.iter_mut().zip(&grad).zip(&prev) {
            *th = p - eta * (g + lam * p);
        }
        k += 1;
        let s_prev = s;
        s = if last { opts.s_end } else { k as f64 * ds };
        let view = StepView {
            s_prev,
            s,
            theta: &theta,
            steps: k,
            dense: &Segment {
                s_prev,
                s,
                prev: &prev,
                next: &theta,
            },
        };
        if let Control::Stop(r) = notify(observers, |o| o.step(&view)) {
            stop = Some(r);
        } else if !crate::la::all_finite(&theta) {
            stop = Some(StopReason::Diverged {
                theta_norm: norm(&theta),
            });
        } else if s >= opts.s_end {
            stop = Some(StopReason::Finished);
        }
    }
    let stop = stop.expect("the loop ends with a reason");
    let (s_final, theta_final) = if norm(&theta).is_finite() {
        (s, theta)
    } else {
        (s - ds, prev)
    };
    for o in observers.iter_mut() {
        o.finish(s_final, &theta_final, &stop);
    }
    Ok(Outcome {
        stop,
        s_final,
        theta_final,
        stats: SolverStats {
            method: method.name().to_string(),
            steps: k,
            rhs_evals: k,
            wall_s: started.elapsed().as_secs_f64(),
            ..SolverStats::default()
        },
    })
}
