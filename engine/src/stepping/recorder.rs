//! Recording a run: [`Sample`]s of the training loss, the test metric and the norms at a
//! grid of times, read from the stepper's dense output.

use serde::{Deserialize, Serialize};

use crate::flow::{Clock, GradientFlow};
use crate::la::{all_finite, norm};
use crate::loss::{Loss, Observables};
use crate::stepping::{Control, Observer, RunInfo, StepView, StopReason};

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

/// Records [`Sample`]s at a grid of fast times from the stepper's dense output.
pub struct Recorder<'a> {
    loss: &'a dyn Loss,
    clock: Clock,
    observables: &'a dyn Observables,
    grid_s: Vec<f64>,
    marks_s: Vec<f64>,
    next: usize,
    keep_states: bool,
    final_sample: bool,
    trajectory: Trajectory,
    buf: Vec<f64>,
    grad: Vec<f64>,
}

impl<'a> Recorder<'a> {
    /// A recorder of `flow` at the fast times `grid_t` (ascending; see [`log_time_grid`]).
    pub fn new(flow: GradientFlow<'a>, observables: &'a dyn Observables, grid_t: &[f64]) -> Self {
        Self::with_clock(flow.loss(), flow.timing(), observables, grid_t)
    }

    /// A recorder of any run of `loss` whose clock is `clock`, at the fast times `grid_t`.
    pub fn with_clock(
        loss: &'a dyn Loss,
        clock: Clock,
        observables: &'a dyn Observables,
        grid_t: &[f64],
    ) -> Self {
        let d = loss.dim();
        Self {
            loss,
            clock,
            observables,
            grid_s: grid_t.iter().map(|&t| clock.at_fast_time(t)).collect(),
            marks_s: Vec::new(),
            next: 0,
            keep_states: false,
            final_sample: true,
            trajectory: Trajectory {
                extra_columns: observables.extra_columns(),
                ..Trajectory::default()
            },
            buf: vec![0.0; d],
            grad: vec![0.0; d],
        }
    }

    /// Samples at these clock values instead of the grid given at construction.
    pub fn at_clock_values(mut self, grid_s: Vec<f64>) -> Self {
        self.grid_s = grid_s;
        self
    }

    /// Also sample at these fast times and keep θ there (e.g. t = 1/λ for a figure).
    pub fn with_marks(mut self, marks_t: &[f64]) -> Self {
        for &t in marks_t {
            let s = self.clock.at_fast_time(t);
            if s.is_finite() && s >= 0.0 {
                self.marks_s.push(s);
                self.grid_s.push(s);
            }
        }
        self.grid_s.sort_by(|a, b| a.total_cmp(b));
        // A mark that is a grid time up to rounding (1/λ = 10⁴ on a log grid computed as
        // 10^(120/20)·10⁻²) is the same sample, not a second row.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
        self.grid_s.dedup_by(|a, b| close(*a, *b));
        for m in &mut self.marks_s {
            if let Some(g) = self.grid_s.iter().find(|g| close(**g, *m)) {
                *m = *g;
            }
        }
        self
    }

    /// Also keep θ at every sample (needed to compare trajectories).
    pub fn keep_states(mut self, keep: bool) -> Self {
        self.keep_states = keep;
        self
    }

    /// Records nothing at the end of the run beyond the grid (by default a run that ends
    /// between grid points leaves its last state in the record).
    pub fn without_final_sample(mut self) -> Self {
        self.final_sample = false;
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
        self.loss.gradient_into(theta, &mut self.grad);
        let mut extra = Vec::new();
        self.observables.extra_values(theta, &mut extra);
        self.trajectory.samples.push(Sample {
            t: self.clock.fast_time(s),
            tau: self.clock.slow_time(s),
            train_loss: self.loss.value(theta),
            test_loss: self.observables.test_loss(theta),
            theta_norm: norm(theta),
            grad_norm: norm(&self.grad),
            extra,
        });
        if self.keep_states {
            self.trajectory.states.push(theta.to_vec());
        }
        if self.marks_s.contains(&s) {
            let t = self.clock.fast_time(s);
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
        if !self.final_sample {
            return;
        }
        let last = self.trajectory.samples.last().map(|x| x.t);
        let t = self.clock.fast_time(s);
        if last.is_none_or(|lt| lt < t) && all_finite(theta) {
            self.record(s, theta);
        }
    }
}
