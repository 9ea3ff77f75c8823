//! The step loop and what hangs on it: steppers advance a state, [`drive`] owns the loop,
//! observers record, report progress and stop runs.

mod drive;
mod guards;
mod observer;
mod recorder;
mod stop;

pub use drive::{drive, Limits, Outcome, SolverStats, Stepper};
pub use guards::{BlowUpGuard, GradientBelow, RisingObjective};
pub use observer::{Control, DenseOutput, Observer, RunInfo, StepView};
pub use recorder::{log_time_grid, Recorder, Sample, Trajectory};
pub use stop::StopReason;
