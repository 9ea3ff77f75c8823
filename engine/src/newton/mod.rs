//! The linear solves of an implicit step's Newton iteration: (I − cJ)x = b for the flow's
//! Jacobian J = −κ(∇²F + λI). [`NewtonMatrix`] writes that matrix once; [`NewtonSolve`] is
//! what the BDF asks of a solver, and its three implementations are siblings: [`dense`],
//! [`matrix_free`] and [`structured`].

mod dense;
mod matrix_free;
mod structured;

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::la::{DMat, Factorisation};
use crate::method::{LinearCapabilities, LinearSolver};

/// The Newton matrix of an implicit step with coefficient c: A = I − cJ, that is
/// A = αI + γ∇²F with γ = cκ and α = 1 + γλ; for a least-squares loss F = ‖r‖²/(2s),
/// A = αI + βJ_rᵀJ_r + γR with β = γ/s and R the residual curvature.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewtonMatrix {
    /// c.
    pub c: f64,
    /// α = 1 + cκλ.
    pub alpha: f64,
    /// γ = cκ.
    pub gamma: f64,
}

impl NewtonMatrix {
    pub(crate) fn new(flow: &GradientFlow<'_>, c: f64) -> Self {
        let gamma = c * flow.rate();
        Self {
            c,
            alpha: 1.0 + gamma * flow.lambda(),
            gamma,
        }
    }

    /// β = γ/s, the weight of J_rᵀJ_r for residuals of scale s.
    pub(crate) fn beta(&self, scale: f64) -> f64 {
        self.gamma / scale
    }

    /// out ← A v = v − cJv, with J the flow's Jacobian at `at`.
    pub(crate) fn apply(&self, flow: &GradientFlow<'_>, at: &[f64], v: &[f64], out: &mut [f64]) {
        flow.jvp_into(at, v, out);
        for (o, vi) in out.iter_mut().zip(v) {
            *o = vi - self.c * *o;
        }
    }

    /// A = I − cJ factorised from the flow's Jacobian `jac`, in the storage of `recycled`.
    pub(crate) fn factorise(&self, jac: &DMat, recycled: Option<Factorisation>) -> Factorisation {
        Factorisation::shifted(jac.as_ref(), -self.c, 1.0, recycled)
    }
}

/// What a factorisation did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Factorised {
    /// A matrix was factorised (false: nothing to factorise, or refused).
    pub factorised: bool,
    /// It was positive definite (Cholesky; otherwise a partial-pivot LU).
    pub cholesky: bool,
    /// The structured solve fell back to the assembled matrix, or refused.
    pub fallback: bool,
}

/// What a solve did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Solved {
    /// The solution is usable.
    pub ok: bool,
    /// Krylov iterations (each one Hessian-vector product).
    pub krylov_iterations: usize,
}

/// A solver of the Newton systems (I − cJ)x = b, kept across steps: a linearisation point
/// (where J was taken) and a factorisation for one c.
pub(crate) trait NewtonSolve {
    /// "dense", "matrix_free" or "structured".
    fn name(&self) -> &'static str;
    /// Takes the Jacobian at `at`; the factorisation is dropped.
    fn linearise(&mut self, flow: &GradientFlow<'_>, at: &[f64]);
    /// The c of the current factorisation, if any.
    fn prepared_c(&self) -> Option<f64>;
    /// True when a factorisation for `c_factorised` may serve a step at `c`.
    fn tolerates(&self, c: f64, c_factorised: f64) -> bool;
    /// Factorises A = I − cJ (or, matrix-free, its preconditioner).
    fn factorise(&mut self, flow: &GradientFlow<'_>, c: f64) -> Factorised;
    /// rhs ← A⁻¹ rhs.
    fn solve(&mut self, flow: &GradientFlow<'_>, c: f64, rhs: &mut [f64]) -> Solved;
    /// True for direct solves (exact up to rounding), false for Krylov ones.
    fn exact(&self) -> bool {
        true
    }
    /// True when the current factorisation was refused: only another c can help.
    fn refused(&self) -> bool {
        false
    }
    /// True when a factorisation costs little against a Newton iteration (an m×m matrix).
    fn cheap_factorisations(&self) -> bool {
        false
    }
}

/// Whether a direct factorisation for `c_factorised` serves a step at `c`: within 30%, as
/// CVODE does (the iteration tolerates a slightly wrong c).
fn direct_tolerates(c: f64, c_factorised: f64) -> bool {
    (c / c_factorised - 1.0).abs() <= 0.3
}

/// The Newton iteration's tolerance on its estimated remaining error, in the weighted RMS
/// norm of the error test: √rtol clamped to [0.01, 0.03], never below 10ε/rtol, under which
/// rounding decides (docs/design.md).
pub(crate) fn newton_tolerance(rtol: f64) -> f64 {
    (10.0 * f64::EPSILON / rtol).max(rtol.sqrt().clamp(0.01, 0.03))
}

/// scipy's Newton tolerance max(10ε/rtol, min(0.03, √rtol)): what the rounding-noise test
/// and the Krylov forcing term stay keyed on.
pub(crate) fn scipy_newton_tolerance(rtol: f64) -> f64 {
    (10.0 * f64::EPSILON / rtol).max(0.03f64.min(rtol.sqrt()))
}

/// The Newton solver for `flow` from θ₀ as `choice` asks ([`LinearSolver::Auto`]: what the
/// loss's structure makes cheapest), for a run at tolerance `rtol`.
pub(crate) fn newton_solver(
    flow: &GradientFlow<'_>,
    theta0: &[f64],
    choice: LinearSolver,
    rtol: f64,
) -> Result<Box<dyn NewtonSolve>, EngineError> {
    let n = theta0.len();
    let res = flow.loss().residuals().filter(|r| r.count() < n);
    let groups = res.and_then(|r| structured::valid_groups(r, n));
    let shared = res
        .zip(groups.as_ref())
        .is_some_and(|(r, g)| structured::shared_block(r, g));
    // The groups whose blocks a structured factorisation inverts.
    let inverted = match &groups {
        Some(g) if shared => &g[..1],
        Some(g) => &g[..],
        None => &[],
    };
    let caps = LinearCapabilities {
        dim: n,
        structured_products: res.is_some_and(|r| r.has_structured_products()),
        curvature_blocks: groups.is_some(),
        shared_block: shared,
        residuals: res.map_or(0, |r| r.count()),
        block_entries: inverted.iter().map(|g| g.len().pow(2)).sum(),
        block_cubes: inverted.iter().map(|g| g.len().pow(3)).sum(),
    };
    Ok(match (choice.choose(caps)?, res, groups) {
        (LinearSolver::MatrixFree, _, _) => Box::new(matrix_free::MatrixFree::new(n, rtol)),
        (LinearSolver::Structured, Some(r), Some(g)) => {
            Box::new(structured::Structured::for_residuals(r, g, theta0, shared))
        }
        _ => Box::new(dense::Dense::new(n)),
    })
}
