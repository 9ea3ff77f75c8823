//! One integration of a flow: the method's stepper, driven by the one loop.

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::method::{Method, Options};
use crate::steppers::{diffsol, Bdf, GradientDescent, RegionLoss, Switched};
use crate::stepping::{drive, Limits, Observer, Outcome};

/// Integrates `flow` from `theta0` until `opts.end` with `method`,
/// calling the observers at the start, after every accepted step and at the end.
///
/// Errors are returned only when the run cannot start (bad options, wrong length of θ₀);
/// a failure during the run ends it with a [`crate::StopReason`] and keeps what was observed.
pub fn integrate(
    flow: &GradientFlow<'_>,
    theta0: &[f64],
    method: Method,
    opts: &Options,
    observers: &mut [&mut dyn Observer],
) -> Result<Outcome, EngineError> {
    opts.validate(&method)?;
    if theta0.len() != flow.dim() {
        return Err(EngineError::InvalidInput(format!(
            "θ₀ has length {} but the loss has dimension {}",
            theta0.len(),
            flow.dim()
        )));
    }
    if !crate::la::all_finite(theta0) {
        return Err(EngineError::InvalidInput(
            "θ₀ has a non-finite entry".into(),
        ));
    }
    let s_end = flow.timing().value_of(opts.end);
    if !(s_end.is_finite() && s_end > 0.0) {
        return Err(EngineError::InvalidInput(format!(
            "the end {:?} is not a positive finite time of this flow's clock",
            opts.end
        )));
    }
    let limits = Limits {
        s_end,
        stops: Vec::new(),
        max_steps: opts.max_steps,
    };
    Ok(match method {
        Method::GradientDescent { lr } => drive(
            &mut GradientDescent::new(flow, theta0, lr)?,
            &limits,
            observers,
        ),
        Method::Bdf => match flow.loss().switching() {
            // A piecewise-smooth loss: region by region, event-driven.
            Some(sw) => {
                let region = RegionLoss::new(flow.loss(), sw, Switched::sides_at(sw, theta0));
                let in_region = flow.with_loss(&region);
                let mut stepper = Switched::new(sw, &region, &in_region, theta0, opts)?;
                drive(&mut stepper, &limits, observers)
            }
            None => drive(&mut Bdf::new(flow, theta0, opts)?, &limits, observers),
        },
        _ => return diffsol::integrate(flow, theta0, method, opts, s_end, observers),
    })
}
