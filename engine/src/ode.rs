//! The diffsol glue: a [`GradientFlow`] as diffsol `OdeEquations` with its analytic dense
//! Jacobian, and the step loop that drives diffsol's solvers and feeds the observers.
//! This file and `linsolve.rs` are the only ones that name diffsol.

use std::cell::Cell;
use std::time::Instant;

use diffsol::{
    op::{unit::UnitCallable, ParameterisedOp},
    ConstantOp, FaerContext, FaerMat, FaerVec, Matrix, NonLinearOp, NonLinearOpJacobian,
    OdeBuilder, OdeEquations, OdeEquationsRef, OdeSolverMethod, OdeSolverStopReason, Op, Vector,
    VectorCommon,
};

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::la::norm;
use crate::linsolve::{factorisation_counts, SymmetricSolver};
use crate::method::{Method, Options};
use crate::observe::{notify, Control, DenseOutput, Observer, RunInfo, StepView, StopReason};
use crate::run::{Outcome, SolverStats};

type M = FaerMat<f64>;
type V = FaerVec<f64>;
type C = FaerContext;

fn host(v: &V) -> &[f64] {
    v.inner()
        .col(0)
        .try_as_col_major()
        .expect("diffsol vectors are contiguous")
        .as_slice()
}

#[derive(Default)]
struct Counters {
    rhs: Cell<usize>,
    jvp: Cell<usize>,
    jac: Cell<usize>,
}

fn bump(c: &Cell<usize>) {
    c.set(c.get() + 1);
}

/// dθ/ds = −κ(∇F(θ) + λθ) as diffsol equations.
struct FlowEqn<'a> {
    flow: GradientFlow<'a>,
    theta0: Vec<f64>,
    ctx: C,
    counters: Counters,
}

struct FlowRhs<'e, 'a>(&'e FlowEqn<'a>);
struct FlowInit<'e, 'a>(&'e FlowEqn<'a>);

macro_rules! flow_op {
    ($ty:ty) => {
        impl Op for $ty {
            type T = f64;
            type V = V;
            type M = M;
            type C = C;
            fn nstates(&self) -> usize {
                self.eqn().flow.dim()
            }
            fn nout(&self) -> usize {
                self.eqn().flow.dim()
            }
            fn nparams(&self) -> usize {
                0
            }
            fn context(&self) -> &C {
                &self.eqn().ctx
            }
        }
    };
}

trait HasEqn<'a> {
    fn eqn(&self) -> &FlowEqn<'a>;
}
impl<'a> HasEqn<'a> for FlowEqn<'a> {
    fn eqn(&self) -> &FlowEqn<'a> {
        self
    }
}
impl<'a> HasEqn<'a> for FlowRhs<'_, 'a> {
    fn eqn(&self) -> &FlowEqn<'a> {
        self.0
    }
}
impl<'a> HasEqn<'a> for FlowInit<'_, 'a> {
    fn eqn(&self) -> &FlowEqn<'a> {
        self.0
    }
}
flow_op!(FlowEqn<'_>);
flow_op!(FlowRhs<'_, '_>);
flow_op!(FlowInit<'_, '_>);

impl NonLinearOp for FlowRhs<'_, '_> {
    fn call_inplace(&self, x: &V, _t: f64, y: &mut V) {
        bump(&self.0.counters.rhs);
        let flow = &self.0.flow;
        y.for_each_batch_host([x], |y, [x], _| flow.rhs_into(x, y));
    }
}

impl NonLinearOpJacobian for FlowRhs<'_, '_> {
    fn jac_mul_inplace(&self, x: &V, _t: f64, v: &V, y: &mut V) {
        bump(&self.0.counters.jvp);
        let flow = &self.0.flow;
        y.for_each_batch_host([x, v], |y, [x, v], _| flow.jvp_into(x, v, y));
    }

    /// J = −κ(∇²F(θ) + λI), written straight into diffsol's matrix.
    fn jacobian_inplace(&self, x: &V, _t: f64, y: &mut M) {
        bump(&self.0.counters.jac);
        self.0.flow.jacobian_into(host(x), y.inner_mut().as_mut());
    }
}

impl ConstantOp for FlowInit<'_, '_> {
    fn call_inplace(&self, _t: f64, y: &mut V) {
        let theta0 = &self.0.theta0;
        y.for_each_batch_host([], |y, [], _| y.copy_from_slice(theta0));
    }
}

impl<'e, 'a> OdeEquationsRef<'e> for FlowEqn<'a> {
    type Mass = ParameterisedOp<'e, UnitCallable<M>>;
    type Rhs = FlowRhs<'e, 'a>;
    type Root = ParameterisedOp<'e, UnitCallable<M>>;
    type Init = FlowInit<'e, 'a>;
    type Out = ParameterisedOp<'e, UnitCallable<M>>;
    type Reset = ParameterisedOp<'e, UnitCallable<M>>;
}

impl<'a> OdeEquations for FlowEqn<'a> {
    fn rhs(&self) -> FlowRhs<'_, 'a> {
        FlowRhs(self)
    }
    fn mass(&self) -> Option<ParameterisedOp<'_, UnitCallable<M>>> {
        None
    }
    fn init(&self) -> FlowInit<'_, 'a> {
        FlowInit(self)
    }
    fn set_params(&mut self, _p: &V) {}
    fn get_params(&self, _p: &mut V) {}
}

struct SolverDense<'s, S>(&'s S);

impl<'p, 'a: 'p, S: OdeSolverMethod<'p, FlowEqn<'a>>> DenseOutput for SolverDense<'_, S> {
    fn interpolate_into(&self, s: f64, out: &mut [f64]) -> Result<(), EngineError> {
        let y = self
            .0
            .interpolate(s)
            .map_err(|e| EngineError::LinearAlgebra(format!("interpolation: {e}")))?;
        out.copy_from_slice(host(&y));
        Ok(())
    }
}

/// A lower bound on the step size, scaled to the flow: diffsol's default of 1e-13 is larger
/// than the first step of a slow-time flow at λ = 1e-8 (its fastest scale is λ/(L + λ)).
fn min_timestep(flow: &GradientFlow<'_>, theta0: &[f64]) -> f64 {
    let h = flow.loss().hessian(theta0);
    let lip = h.norm_l2().max(1e-300); // Frobenius norm ≥ the top eigenvalue
    let fastest = 1.0 / (flow.rate() * (lip + flow.lambda()));
    (1e-10 * fastest).min(1e-13)
}

/// Integrates `flow` from `theta0` with one of diffsol's methods.
pub(crate) fn integrate_diffsol(
    flow: &GradientFlow<'_>,
    theta0: &[f64],
    method: Method,
    opts: &Options,
    observers: &mut [&mut dyn Observer],
) -> Result<Outcome, EngineError> {
    let started = Instant::now();
    let eqn = FlowEqn {
        flow: *flow,
        theta0: theta0.to_vec(),
        ctx: C::default(),
        counters: Counters::default(),
    };
    let mut problem = OdeBuilder::<M>::new()
        .rtol(opts.rtol)
        .atol([opts.atol])
        .t0(0.0)
        .build_from_eqn(eqn)
        .map_err(|e| EngineError::SolverSetup(e.to_string()))?;
    problem.ode_options.min_timestep = min_timestep(flow, theta0);
    // diffsol's BDF counts Newton failures over the whole run, not per step, and aborts past
    // its budget of 50: a long slow-time run has many harmless ones (each cuts the step by
    // 0.3). The failures of one step stay bounded through the minimum step size.
    problem.ode_options.max_nonlinear_solver_failures = usize::MAX / 2;
    let before = factorisation_counts();
    let setup = |e: diffsol::error::DiffsolError| EngineError::SolverSetup(e.to_string());
    let (stop, s_final, theta_final, mut stats) = match method {
        Method::DiffsolBdf => drive(
            problem.bdf::<SymmetricSolver>().map_err(setup)?,
            method,
            opts,
            observers,
        ),
        Method::Esdirk34 => drive(
            problem.esdirk34::<SymmetricSolver>().map_err(setup)?,
            method,
            opts,
            observers,
        ),
        Method::TrBdf2 => drive(
            problem.tr_bdf2::<SymmetricSolver>().map_err(setup)?,
            method,
            opts,
            observers,
        ),
        Method::Tsit45 => drive(problem.tsit45().map_err(setup)?, method, opts, observers),
        Method::Bdf | Method::GradientDescent { .. } => {
            return Err(EngineError::InvalidInput(format!(
                "{} is not a diffsol method",
                method.name()
            )))
        }
    };
    let after = factorisation_counts();
    let c = &problem.eqn.counters;
    stats.rhs_evals = c.rhs.get();
    stats.jvp_evals = c.jvp.get();
    stats.jac_evals = c.jac.get();
    stats.cholesky_factorisations = after.cholesky - before.cholesky;
    stats.lu_factorisations = (after.cholesky + after.lu) - (before.cholesky + before.lu);
    stats.wall_s = started.elapsed().as_secs_f64();
    Ok(Outcome {
        stop,
        s_final,
        theta_final,
        stats,
    })
}

fn drive<'p, 'a: 'p, S: OdeSolverMethod<'p, FlowEqn<'a>>>(
    mut solver: S,
    method: Method,
    opts: &Options,
    observers: &mut [&mut dyn Observer],
) -> (StopReason, f64, Vec<f64>, SolverStats) {
    let s0 = solver.state().t;
    let theta0 = host(solver.state().y).to_vec();
    let info = RunInfo {
        s0,
        s_end: opts.s_end,
        method: method.name(),
    };
    let mut stop = match notify(observers, |o| o.start(&info, &theta0)) {
        Control::Stop(r) => Some(r),
        Control::Continue => None,
    };
    if stop.is_none() {
        if let Err(e) = solver.set_stop_time(opts.s_end) {
            stop = Some(StopReason::SolverFailed {
                message: e.to_string(),
            });
        }
    }
    let mut s_prev = s0;
    let mut steps = 0usize;
    let mut last_good = (s0, theta0);
    while stop.is_none() {
        if steps >= opts.max_steps {
            stop = Some(StopReason::MaxSteps { steps });
            break;
        }
        let reached_end = match solver.step() {
            Ok(OdeSolverStopReason::InternalTimestep) => false,
            Ok(OdeSolverStopReason::TstopReached) => true,
            Ok(OdeSolverStopReason::RootFound(..)) => false,
            Err(e) => {
                stop = Some(StopReason::SolverFailed {
                    message: e.to_string(),
                });
                break;
            }
        };
        steps += 1;
        let s = solver.state().t;
        let theta = host(solver.state().y);
        let view = StepView {
            s_prev,
            s,
            theta,
            steps,
            dense: &SolverDense(&solver),
        };
        if let Control::Stop(r) = notify(observers, |o| o.step(&view)) {
            stop = Some(r);
        }
        if norm(theta).is_finite() {
            last_good = (s, theta.to_vec());
        }
        s_prev = s;
        if reached_end && stop.is_none() {
            stop = Some(StopReason::Finished);
        }
    }
    let stop = stop.expect("the loop ends with a reason");
    let (s_final, theta_final) = last_good;
    for o in observers.iter_mut() {
        o.finish(s_final, &theta_final, &stop);
    }
    let st = solver.get_statistics();
    let stats = SolverStats {
        method: method.name().to_string(),
        steps: st.number_of_steps,
        error_test_failures: st.number_of_error_test_failures,
        nonlinear_iterations: st.number_of_nonlinear_solver_iterations,
        nonlinear_failures: st.number_of_nonlinear_solver_fails,
        ..SolverStats::default()
    };
    (stop, s_final, theta_final, stats)
}
