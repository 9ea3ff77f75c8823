//! What a caller sees of a validation while it runs: its progress, and a way to stop it
//! (Ctrl-C) that ends every run in flight at its next step.

use grokflow_engine::{Control, Observer, StepView, StopReason};

/// Progress and interruption of a validation.
pub trait Watch: Sync {
    /// True once the validation should stop: the runs in flight end at their next step and
    /// the report keeps the systems already done.
    fn stopped(&self) -> bool {
        false
    }
    /// One piece of `system`'s work is done: its references (`lambda` None) or one λ.
    fn finished(&self, _system: &str, _lambda: Option<f64>) {}
}

/// No progress shown, never stopped.
pub struct Unwatched;

impl Watch for Unwatched {}

/// Ends an engine run once the watch says stop.
pub(crate) struct StopWhen<'w>(pub(crate) &'w dyn Watch);

impl Observer for StopWhen<'_> {
    fn step(&mut self, _view: &StepView<'_>) -> Control {
        if self.0.stopped() {
            Control::Stop(StopReason::Stopped {
                reason: "interrupted".into(),
            })
        } else {
            Control::Continue
        }
    }
}
