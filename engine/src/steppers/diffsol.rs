//! The diffsol glue: a [`GradientFlow`] as diffsol `OdeEquations` with its analytic dense
//! Jacobian, diffsol's solvers as steppers of the one loop, and the symmetric factorisation
//! as diffsol's linear solver. This is the only file that names diffsol.

use std::cell::Cell;

use diffsol::{
    op::{unit::UnitCallable, ParameterisedOp},
    ConstantOp, FaerContext, FaerMat, FaerVec, Matrix, NonLinearOp, NonLinearOpJacobian,
    OdeBuilder, OdeEquations, OdeEquationsRef, OdeSolverMethod, OdeSolverStopReason, Op, Vector,
    VectorCommon,
};
use diffsol_la::{LaError, LinearOp, MatrixCommon};

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::la::{norm, Factorisation};
use crate::method::{Method, Options};
use crate::stepping::{
    drive, DenseOutput, Limits, Observer, Outcome, SolverStats, Stepper, StopReason,
};

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

/// A diffsol solver as a stepper of the one loop.
struct DiffsolStepper<S> {
    solver: S,
    method: Method,
    /// The stop time handed to the solver, once set.
    stop_time: Option<f64>,
    /// The last state with a finite norm.
    last_good: (f64, Vec<f64>),
}

impl<'p, 'a: 'p, S: OdeSolverMethod<'p, FlowEqn<'a>>> DenseOutput for DiffsolStepper<S> {
    fn interpolate_into(&self, s: f64, out: &mut [f64]) -> Result<(), EngineError> {
        let y = self
            .solver
            .interpolate(s)
            .map_err(|e| EngineError::LinearAlgebra(format!("interpolation: {e}")))?;
        out.copy_from_slice(host(&y));
        Ok(())
    }
}

impl<'p, 'a: 'p, S: OdeSolverMethod<'p, FlowEqn<'a>>> Stepper for DiffsolStepper<S> {
    fn method(&self) -> &'static str {
        self.method.name()
    }

    fn clock(&self) -> f64 {
        self.solver.state().t
    }

    fn state(&self) -> &[f64] {
        host(self.solver.state().y)
    }

    fn step(&mut self, s_stop: f64) -> Result<(), StopReason> {
        let failed = |e: diffsol::error::DiffsolError| StopReason::SolverFailed {
            message: e.to_string(),
        };
        if self.stop_time != Some(s_stop) {
            self.solver.set_stop_time(s_stop).map_err(failed)?;
            self.stop_time = Some(s_stop);
        }
        match self.solver.step() {
            Ok(OdeSolverStopReason::TstopReached) => self.stop_time = None,
            Ok(OdeSolverStopReason::InternalTimestep | OdeSolverStopReason::RootFound(..)) => {}
            Err(e) => return Err(failed(e)),
        }
        let theta = host(self.solver.state().y);
        if norm(theta).is_finite() {
            self.last_good = (self.solver.state().t, theta.to_vec());
        }
        Ok(())
    }

    fn last_finite(&self) -> (f64, &[f64]) {
        (self.last_good.0, &self.last_good.1)
    }

    fn stats(&self) -> SolverStats {
        let st = self.solver.get_statistics();
        SolverStats {
            method: self.method.name().to_string(),
            steps: st.number_of_steps,
            error_test_failures: st.number_of_error_test_failures,
            nonlinear_iterations: st.number_of_nonlinear_solver_iterations,
            nonlinear_failures: st.number_of_nonlinear_solver_fails,
            ..SolverStats::default()
        }
    }
}

/// A lower bound on the step size, scaled to the flow: diffsol's default of 1e-13 is larger
/// than the first step of a slow-time flow at small λ (its fastest scale is λ/(L + λ)).
fn min_timestep(flow: &GradientFlow<'_>, theta0: &[f64]) -> f64 {
    let h = flow.loss().hessian(theta0);
    let lip = h.norm_l2().max(1e-300); // Frobenius norm ≥ the top eigenvalue
    let fastest = 1.0 / (flow.rate() * (lip + flow.lambda()));
    (1e-10 * fastest).min(1e-13)
}

/// Integrates `flow` from `theta0` with one of diffsol's methods, driven by the one loop.
pub(crate) fn integrate(
    flow: &GradientFlow<'_>,
    theta0: &[f64],
    method: Method,
    opts: &Options,
    s_end: f64,
    observers: &mut [&mut dyn Observer],
) -> Result<Outcome, EngineError> {
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
    // its budget of 50; a long slow-time run has many harmless ones. The failures of one
    // step stay bounded through the minimum step size.
    problem.ode_options.max_nonlinear_solver_failures = usize::MAX / 2;
    let before = FACTORISATIONS.with(|c| c.get());
    let setup = |e: diffsol::error::DiffsolError| EngineError::SolverSetup(e.to_string());
    let limits = Limits {
        s_end,
        stops: Vec::new(),
        max_steps: opts.max_steps,
    };
    let start = (0.0, theta0.to_vec());
    let mut outcome = match method {
        Method::DiffsolBdf => drive(
            &mut stepper(
                problem.bdf::<SymmetricSolver>().map_err(setup)?,
                method,
                start,
            ),
            &limits,
            observers,
        ),
        Method::Esdirk34 => drive(
            &mut stepper(
                problem.esdirk34::<SymmetricSolver>().map_err(setup)?,
                method,
                start,
            ),
            &limits,
            observers,
        ),
        Method::TrBdf2 => drive(
            &mut stepper(
                problem.tr_bdf2::<SymmetricSolver>().map_err(setup)?,
                method,
                start,
            ),
            &limits,
            observers,
        ),
        Method::Tsit45 => drive(
            &mut stepper(problem.tsit45().map_err(setup)?, method, start),
            &limits,
            observers,
        ),
        Method::Bdf | Method::GradientDescent { .. } => {
            return Err(EngineError::InvalidInput(format!(
                "{} is not a diffsol method",
                method.name()
            )))
        }
    };
    let after = FACTORISATIONS.with(|c| c.get());
    let c = &problem.eqn.counters;
    let stats = &mut outcome.stats;
    stats.rhs_evals = c.rhs.get();
    stats.jvp_evals = c.jvp.get();
    stats.jac_evals = c.jac.get();
    stats.cholesky_factorisations = after.0 - before.0;
    stats.lu_factorisations = (after.0 + after.1) - (before.0 + before.1);
    Ok(outcome)
}

fn stepper<S>(solver: S, method: Method, start: (f64, Vec<f64>)) -> DiffsolStepper<S> {
    DiffsolStepper {
        solver,
        method,
        stop_time: None,
        last_good: start,
    }
}

thread_local! {
    /// (Cholesky, LU) factorisations made by [`SymmetricSolver`] on this thread: diffsol
    /// builds its linear solver through `Default`, so the count cannot live beside it.
    static FACTORISATIONS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// diffsol's linear solver over [`Factorisation`] (Cholesky, LU fallback).
#[derive(Default)]
struct SymmetricSolver {
    matrix: Option<M>,
    factors: Option<Factorisation>,
}

impl diffsol_la::LinearSolver<M> for SymmetricSolver {
    fn set_sparsity<Op: LinearOp<V = V, T = f64, M = M, C = C>>(&mut self, op: &Op) {
        self.matrix = Some(<M as Matrix>::new_from_sparsity(
            op.nrows(),
            op.ncols(),
            op.sparsity(),
            *op.context(),
        ));
        self.factors = None;
    }

    fn set_linearisation<Op: LinearOp<V = V, T = f64, M = M, C = C>>(&mut self, op: &Op) {
        let matrix = self
            .matrix
            .as_mut()
            .expect("set_sparsity is called before set_linearisation");
        op.matrix_inplace(matrix);
        let f = Factorisation::new(matrix.inner());
        let chol = f.is_cholesky();
        FACTORISATIONS.with(|c| {
            let (ch, lu) = c.get();
            c.set(if chol { (ch + 1, lu) } else { (ch, lu + 1) });
        });
        self.factors = Some(f);
    }

    fn solve_in_place(&self, x: &mut V) -> Result<(), LaError> {
        let f = self
            .factors
            .as_ref()
            .ok_or(diffsol_la::error::LinearSolverError::LinearSolverNotSetup)?;
        f.solve_in_place(x.inner_mut().as_mut(), false);
        Ok(())
    }

    fn solve_transpose_in_place(&self, x: &mut V) -> Result<(), LaError> {
        let f = self
            .factors
            .as_ref()
            .ok_or(diffsol_la::error::LinearSolverError::LinearSolverNotSetup)?;
        f.solve_in_place(x.inner_mut().as_mut(), true);
        Ok(())
    }
}
