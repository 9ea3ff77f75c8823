//! Why a run ended.

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// Why a run ended. A run that ends early keeps everything recorded up to its end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// The clock reached the requested end.
    Finished,
    /// The stopping rule of a convergence run held (‖∇F‖ below its tolerance).
    Converged {
        /// ‖∇F(θ)‖ when the rule held.
        grad_norm: f64,
    },
    /// The step budget ran out before the end time.
    MaxSteps {
        /// Steps taken.
        steps: usize,
    },
    /// θ became non-finite or grew past the blow-up bound.
    Diverged {
        /// ‖θ‖ when the guard fired (may be NaN or infinite).
        theta_norm: f64,
    },
    /// The stepper gave up (step size too small, Newton failures, …).
    SolverFailed {
        /// What happened.
        message: String,
    },
    /// A flow on M met a point where the spectral gap collapsed or the kernel dimension
    /// changed: a singular point of M, where the Morse–Bott assumption fails.
    SingularPoint {
        /// Slow time of the stop.
        tau: f64,
        /// dim ker ∇²F before.
        kernel_dim_before: usize,
        /// dim ker ∇²F at the stop.
        kernel_dim_after: usize,
        /// The gap at the stop.
        gap: f64,
    },
    /// A flow on M where J keeps full rank met a point where its Morse–Bott constant μ had
    /// fallen far below its value at the start: J is about to lose rank there (a singular
    /// point of M), and the flow's projections lose their digits as μ → 0.
    MuCollapsed {
        /// Slow time of the stop.
        tau: f64,
        /// μ at the stop.
        mu: f64,
        /// μ where the flow started.
        mu_start: f64,
    },
    /// A piecewise-smooth flow met a case its event handling does not cover: several
    /// switching surfaces at one point, or sliding on surfaces that meet degenerately.
    SwitchingUnhandled {
        /// The clock value of the event.
        s: f64,
        /// What was met.
        what: String,
    },
    /// The retraction onto M did not bring ‖∇F‖ down to its tolerance.
    RetractionFailed {
        /// Slow time of the stop.
        tau: f64,
        /// ‖∇F‖ reached.
        grad_norm: f64,
    },
    /// An observer asked the run to stop.
    Stopped {
        /// Which observer, and why.
        reason: String,
    },
}

impl StopReason {
    /// True when the run reached what it was asked for (its end time, or convergence).
    pub fn is_success(&self) -> bool {
        matches!(self, StopReason::Finished | StopReason::Converged { .. })
    }

    /// A one-line description for humans.
    pub fn describe(&self) -> String {
        match self {
            StopReason::Finished => "reached the end time".into(),
            StopReason::Converged { grad_norm } => format!("converged (‖∇F‖ = {grad_norm:.3e})"),
            StopReason::MaxSteps { steps } => {
                format!("stopped after the maximum of {steps} steps before the end time")
            }
            StopReason::Diverged { theta_norm } => {
                format!("diverged (‖θ‖ = {theta_norm:.3e})")
            }
            StopReason::SolverFailed { message } => format!("the solver failed: {message}"),
            StopReason::SingularPoint {
                tau,
                kernel_dim_before,
                kernel_dim_after,
                gap,
            } => format!(
                "reached a singular point of M at τ = {tau:.4} (kernel dimension \
                 {kernel_dim_before} → {kernel_dim_after}, spectral gap {gap:.2e}): the \
                 Morse–Bott assumption fails there"
            ),
            StopReason::MuCollapsed { tau, mu, mu_start } => format!(
                "the Morse–Bott constant μ fell from {mu_start:.2e} to {mu:.2e} by τ = {tau:.4}: \
                 ∇²F is about to lose rank on M (a singular point), where the Morse–Bott \
                 assumption fails"
            ),
            StopReason::SwitchingUnhandled { s, what } => format!(
                "the piecewise-smooth flow met {what} at s = {s:.6e}, which its event handling \
                 does not cover (one surface at a time; sliding on independent surfaces)"
            ),
            StopReason::RetractionFailed { tau, grad_norm } => {
                format!("the retraction onto M failed at τ = {tau:.4} (‖∇F‖ = {grad_norm:.2e})")
            }
            StopReason::Stopped { reason } => format!("stopped: {reason}"),
        }
    }
}

/// An engine error during a run ends it: the solver failed, with the error's message.
impl From<EngineError> for StopReason {
    fn from(e: EngineError) -> Self {
        StopReason::SolverFailed {
            message: e.to_string(),
        }
    }
}
