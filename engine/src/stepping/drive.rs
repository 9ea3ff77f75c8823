//! The one step loop. A [`Stepper`] only advances its state by one accepted step; [`drive`]
//! owns the loop: it calls the observers, enforces the step budget, and says why the run
//! ended.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::la::{all_finite, norm};
use crate::stepping::observer::notify;
use crate::stepping::{Control, DenseOutput, Observer, RunInfo, StepView, StopReason};

/// A method that advances a state θ(s) one accepted step at a time; its dense output
/// interpolates the last step.
pub trait Stepper: DenseOutput {
    /// The method's short stable name.
    fn method(&self) -> &'static str;
    /// The clock value s of the current state.
    fn clock(&self) -> f64;
    /// The current state θ(s).
    fn state(&self) -> &[f64];
    /// One accepted step, never beyond `s_stop`. An error ends the run with that reason;
    /// the state is then the last accepted one.
    fn step(&mut self, s_stop: f64) -> Result<(), StopReason>;
    /// dθ/ds at the current state, when the stepper has it at no cost.
    fn rhs(&self) -> Option<&[f64]> {
        None
    }
    /// The last state with finite entries and its clock value: where a run that diverged
    /// ends.
    fn last_finite(&self) -> (f64, &[f64]) {
        (self.clock(), self.state())
    }
    /// The work done so far.
    fn stats(&self) -> SolverStats;
}

/// Work done by a run. Counts are stable across machines; `wall_s` is not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SolverStats {
    /// The method's name.
    pub method: String,
    /// Accepted steps (gradient-descent iterations for `gd`).
    pub steps: usize,
    /// Steps rejected by the local error test.
    pub error_test_failures: usize,
    /// Newton iterations.
    pub nonlinear_iterations: usize,
    /// Newton convergence failures.
    pub nonlinear_failures: usize,
    /// Right-hand-side evaluations (gradient evaluations).
    pub rhs_evals: usize,
    /// Jacobian-vector products (Hessian-vector products).
    pub jvp_evals: usize,
    /// Jacobian evaluations: Hessian assemblies (dense), evaluations of the residual
    /// Jacobian J and the blocks of R (structured), linearisation points (matrix-free).
    pub jac_evals: usize,
    /// Factorisations of the Newton matrix I − γJ ("LU setups"), of either kind; for the
    /// structured solve, of its m×m matrix K (or of I − γJ on a fallback), for the
    /// matrix-free one, of the preconditioner's Gram matrix.
    pub lu_factorisations: usize,
    /// How many of those were Cholesky factorisations (the rest fell back to a
    /// partial-pivot LU because the factorised matrix was not positive definite; K is when
    /// B = αI + γR is).
    pub cholesky_factorisations: usize,
    /// MINRES iterations of the matrix-free Newton solve (each one Hessian-vector product).
    #[serde(default)]
    pub krylov_iterations: usize,
    /// Factorisations of the structured solve with a block of B = αI + γR too
    /// ill-conditioned for Woodbury's identity: the assembled d×d matrix was factorised
    /// instead, or (one shared block) nothing was and the step was retried smaller.
    #[serde(default)]
    pub structured_fallbacks: usize,
    /// "dense", "matrix_free" or "structured" (what [`crate::LinearSolver::Auto`] chose);
    /// empty for the explicit methods.
    #[serde(default)]
    pub linear_solver: String,
    /// Transversal crossings of a switching surface handled by a piecewise-smooth flow (for
    /// the exact ReLU: a kink crossing a data point).
    #[serde(default)]
    pub kink_crossings: usize,
    /// Sliding modes entered: the flow held on a switching surface (Filippov).
    #[serde(default)]
    pub sliding_modes: usize,
    /// Clock time during which the flow slid on at least one surface.
    #[serde(default)]
    pub sliding_time: f64,
    /// Wall time in seconds.
    pub wall_s: f64,
}

impl SolverStats {
    /// Adds the counts of `other` to these (for runs made of several integrations).
    pub fn accumulate(&mut self, other: &SolverStats) {
        self.steps += other.steps;
        self.error_test_failures += other.error_test_failures;
        self.nonlinear_iterations += other.nonlinear_iterations;
        self.nonlinear_failures += other.nonlinear_failures;
        self.rhs_evals += other.rhs_evals;
        self.jvp_evals += other.jvp_evals;
        self.jac_evals += other.jac_evals;
        self.cholesky_factorisations += other.cholesky_factorisations;
        self.lu_factorisations += other.lu_factorisations;
        self.krylov_iterations += other.krylov_iterations;
        self.structured_fallbacks += other.structured_fallbacks;
        self.kink_crossings += other.kink_crossings;
        self.sliding_modes += other.sliding_modes;
        self.sliding_time += other.sliding_time;
        if self.linear_solver.is_empty() {
            self.linear_solver.clone_from(&other.linear_solver);
        }
        self.wall_s += other.wall_s;
    }
}

/// How an integration ended and where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Why it ended.
    pub stop: StopReason,
    /// The flow's clock at the end.
    pub s_final: f64,
    /// θ at the end (the last finite state if the run diverged).
    pub theta_final: Vec<f64>,
    /// Work done.
    pub stats: SolverStats,
}

/// The loop's limits: its end, the clock values no step may cross, and its step budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// The run ends when the clock reaches this ([`StopReason::Finished`]).
    pub s_end: f64,
    /// Clock values below `s_end` that no step crosses (each step ends at or before the
    /// next one), ascending.
    pub stops: Vec<f64>,
    /// The run ends with [`StopReason::MaxSteps`] after this many steps.
    pub max_steps: usize,
}

/// Drives `stepper` from its current state until the clock reaches `limits.s_end`, an
/// observer or the stepper stops it, or the budget runs out, calling the observers at the
/// start, after every accepted step and at the end.
pub fn drive<S: Stepper>(
    stepper: &mut S,
    limits: &Limits,
    observers: &mut [&mut dyn Observer],
) -> Outcome {
    let started = Instant::now();
    let info = RunInfo {
        s0: stepper.clock(),
        s_end: limits.s_end,
        method: stepper.method(),
    };
    let mut stop = match notify(observers, |o| o.start(&info, stepper.state())) {
        Control::Stop(r) => Some(r),
        Control::Continue => None,
    };
    let mut steps = 0usize;
    while stop.is_none() {
        if steps >= limits.max_steps {
            stop = Some(StopReason::MaxSteps { steps });
            break;
        }
        let s_prev = stepper.clock();
        let s_stop = limits
            .stops
            .iter()
            .copied()
            .find(|&s| s > s_prev && s < limits.s_end)
            .unwrap_or(limits.s_end);
        if let Err(reason) = stepper.step(s_stop) {
            stop = Some(reason);
            break;
        }
        steps += 1;
        let (s, theta) = (stepper.clock(), stepper.state());
        let view = StepView {
            s_prev,
            s,
            theta,
            rhs: stepper.rhs(),
            steps,
            dense: &*stepper,
        };
        if let Control::Stop(r) = notify(observers, |o| o.step(&view)) {
            stop = Some(r);
        } else if !all_finite(theta) {
            stop = Some(StopReason::Diverged {
                theta_norm: norm(theta),
            });
        } else if s >= limits.s_end {
            stop = Some(StopReason::Finished);
        }
    }
    let stop = stop.expect("the loop ends with a reason");
    let (s_final, theta_final) = stepper.last_finite();
    for o in observers.iter_mut() {
        o.finish(s_final, theta_final, &stop);
    }
    let mut stats = stepper.stats();
    stats.wall_s = started.elapsed().as_secs_f64();
    Outcome {
        stop,
        s_final,
        theta_final: theta_final.to_vec(),
        stats,
    }
}
