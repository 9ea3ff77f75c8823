//! Observers of the step loop: the loop is owned by [`crate::stepping::drive`], and
//! recording, progress and guards hang on it (argmin's executor/observer pattern).

use crate::error::EngineError;
use crate::stepping::StopReason;

/// Whether the loop goes on after an observer has seen a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Keep stepping.
    Continue,
    /// End the run with this reason.
    Stop(StopReason),
}

/// The state between the last two accepted steps, as the method's own interpolant.
pub trait DenseOutput {
    /// out ← θ(s) for s in the last step [s_prev, s].
    fn interpolate_into(&self, s: f64, out: &mut [f64]) -> Result<(), EngineError>;
}

/// What the observers see of one accepted step.
pub struct StepView<'a> {
    /// The clock at the start of the step.
    pub s_prev: f64,
    /// The clock at its end.
    pub s: f64,
    /// θ(s).
    pub theta: &'a [f64],
    /// The right-hand side dθ/ds at θ(s), when the stepper has it at no cost.
    pub rhs: Option<&'a [f64]>,
    /// Accepted steps so far.
    pub steps: usize,
    /// The interpolant over [s_prev, s].
    pub dense: &'a dyn DenseOutput,
}

/// The facts about a run that observers may want before the first step.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Initial clock value.
    pub s0: f64,
    /// Requested final clock value.
    pub s_end: f64,
    /// The method's name.
    pub method: &'static str,
}

/// Hooks called by the step loop. Every hook has a default, so an observer implements only
/// what it needs.
pub trait Observer {
    /// Before the first step, at θ(s0).
    fn start(&mut self, _info: &RunInfo, _theta0: &[f64]) -> Control {
        Control::Continue
    }
    /// After every accepted step.
    fn step(&mut self, _view: &StepView<'_>) -> Control {
        Control::Continue
    }
    /// Once, when the run has ended for whatever reason.
    fn finish(&mut self, _s: f64, _theta: &[f64], _reason: &StopReason) {}
}

/// Runs each observer's hook in turn; the first `Stop` wins.
pub(crate) fn notify(
    observers: &mut [&mut dyn Observer],
    mut f: impl FnMut(&mut dyn Observer) -> Control,
) -> Control {
    for obs in observers.iter_mut() {
        if let Control::Stop(r) = f(&mut **obs) {
            return Control::Stop(r);
        }
    }
    Control::Continue
}
