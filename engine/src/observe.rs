//! Observers of a run's step loop: the loop is owned by the engine, and recording, progress
//! reporting and guards hang on it (argmin's executor/observer pattern).

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::la::{all_finite, norm};
use crate::loss::Observables;

/// Why a run ended. A run that ends early keeps everything recorded up to its end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// The flow's clock reached the requested end.
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
    /// The ODE solver gave up (step size too small, Newton failures, …).
    SolverFailed {
        /// diffsol's message.
        message: String,
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
            StopReason::SolverFailed { message } => format!("the ODE solver failed: {message}"),
            StopReason::Stopped { reason } => format!("stopped: {reason}"),
        }
    }
}

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

/// One recorded sample of a trajectory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Fast time t.
    pub t: f64,
    /// Slow time τ = λt.
    pub tau: f64,
    /// Training loss F(θ).
    pub train_loss: f64,
    /// Test metric, if the system has one.
    pub test_loss: Option<f64>,
    /// ‖θ‖.
    pub theta_norm: f64,
    /// ‖∇F(θ)‖ (the unregularised gradient).
    pub grad_norm: f64,
    /// System-specific values, named by [`Trajectory::extra_columns`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<f64>,
}

/// The samples of a run, at the grid it was asked for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// Names of the per-sample extra values.
    pub extra_columns: Vec<String>,
    /// Samples in increasing time.
    pub samples: Vec<Sample>,
    /// θ at each sample, when the recorder was asked to keep states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<Vec<f64>>,
    /// θ at the marked times the recorder was given, as (t, θ).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marked: Vec<(f64, Vec<f64>)>,
}

/// A geometric grid of fast times: t = 0, then `per_decade` points per decade from `t_min`
/// to `t_end` (both included).
pub fn log_time_grid(t_min: f64, t_end: f64, per_decade: usize) -> Vec<f64> {
    let mut grid = vec![0.0];
    if !(t_min > 0.0 && t_end > 0.0) || per_decade == 0 {
        if t_end > 0.0 {
            grid.push(t_end);
        }
        return grid;
    }
    if t_min >= t_end {
        grid.push(t_end);
        return grid;
    }
    let decades = (t_end / t_min).log10();
    let n = ((decades * per_decade as f64).ceil() as usize).max(1);
    for k in 0..=n {
        let t = t_min * 10f64.powf(decades * k as f64 / n as f64);
        grid.push(t.min(t_end));
    }
    *grid.last_mut().expect("grid has points") = t_end;
    grid
}

/// Records [`Sample`]s at a grid of fast times from the method's dense output.
pub struct Recorder<'a> {
    flow: GradientFlow<'a>,
    observables: &'a dyn Observables,
    grid_s: Vec<f64>,
    marks_s: Vec<f64>,
    next: usize,
    keep_states: bool,
    trajectory: Trajectory,
    buf: Vec<f64>,
    grad: Vec<f64>,
}

impl<'a> Recorder<'a> {
    /// A recorder at the fast times `grid_t` (ascending; see [`log_time_grid`]).
    pub fn new(flow: GradientFlow<'a>, observables: &'a dyn Observables, grid_t: &[f64]) -> Self {
        let d = flow.dim();
        Self {
            flow,
            observables,
            grid_s: grid_t.iter().map(|&t| flow.clock(t)).collect(),
            marks_s: Vec::new(),
            next: 0,
            keep_states: false,
            trajectory: Trajectory {
                extra_columns: observables.extra_columns(),
                ..Trajectory::default()
            },
            buf: vec![0.0; d],
            grad: vec![0.0; d],
        }
    }

    /// Also sample at these fast times and keep θ there (e.g. t = 1/λ for a figure).
    pub fn with_marks(mut self, marks_t: &[f64]) -> Self {
        for &t in marks_t {
            let s = self.flow.clock(t);
            if s.is_finite() && s >= 0.0 {
                self.marks_s.push(s);
                self.grid_s.push(s);
            }
        }
        self.grid_s.sort_by(|a, b| a.total_cmp(b));
        self.grid_s.dedup();
        self
    }

    /// Also keep θ at every sample (needed to compare trajectories).
    pub fn keep_states(mut self, keep: bool) -> Self {
        self.keep_states = keep;
        self
    }

    /// The samples recorded so far.
    pub fn trajectory(&self) -> &Trajectory {
        &self.trajectory
    }

    /// The recorded trajectory.
    pub fn into_trajectory(self) -> Trajectory {
        self.trajectory
    }

    /// The sample of θ at clock value s.
    fn record(&mut self, s: f64, theta: &[f64]) {
        let loss = self.flow.loss();
        loss.gradient_into(theta, &mut self.grad);
        let t = self.flow.fast_time(s);
        let mut extra = Vec::new();
        self.observables.extra_values(theta, &mut extra);
        self.trajectory.samples.push(Sample {
            t,
            tau: self.flow.lambda() * t,
            train_loss: loss.value(theta),
            test_loss: self.observables.test_loss(theta),
            theta_norm: norm(theta),
            grad_norm: norm(&self.grad),
            extra,
        });
        if self.keep_states {
            self.trajectory.states.push(theta.to_vec());
        }
        if self.marks_s.contains(&s) {
            self.trajectory.marked.push((t, theta.to_vec()));
        }
    }
}

impl Observer for Recorder<'_> {
    fn start(&mut self, info: &RunInfo, theta0: &[f64]) -> Control {
        while self.next < self.grid_s.len() && self.grid_s[self.next] <= info.s0 {
            self.next += 1;
        }
        self.record(info.s0, theta0);
        Control::Continue
    }

    fn step(&mut self, view: &StepView<'_>) -> Control {
        while self.next < self.grid_s.len() && self.grid_s[self.next] <= view.s {
            let s = self.grid_s[self.next];
            let mut buf = std::mem::take(&mut self.buf);
            let ok = if s == view.s {
                buf.copy_from_slice(view.theta);
                Ok(())
            } else {
                view.dense.interpolate_into(s, &mut buf)
            };
            match ok {
                Ok(()) => self.record(s, &buf),
                Err(e) => {
                    self.buf = buf;
                    let reason = format!("dense output failed at s = {s:e}: {e}");
                    return Control::Stop(StopReason::Stopped { reason });
                }
            }
            self.buf = buf;
            self.next += 1;
        }
        Control::Continue
    }

    fn finish(&mut self, s: f64, theta: &[f64], _reason: &StopReason) {
        // A run that ended between grid points still leaves its last state in the record.
        let last = self.trajectory.samples.last().map(|x| x.t);
        let t = self.flow.fast_time(s);
        if last.is_none_or(|lt| lt < t) && all_finite(theta) {
            self.record(s, theta);
        }
    }
}

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
