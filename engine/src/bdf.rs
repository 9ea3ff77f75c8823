//! grokflow's BDF: the variable-order (1–6), variable-step numerical differentiation formulas
//! of Shampine and Reichelt (ode15s; the form of scipy's `BDF`), with the analytic Jacobian
//! J = −κ(∇²F + λI) and the Newton matrix I − cJ factorised by Cholesky (LU fallback).
//!
//! Why not diffsol's BDF, which this one resembles: in slow time at small λ the stiff
//! eigenvectors of J (the normal directions of the manifold M) rotate as the state drifts
//! along M. A Newton iteration whose Jacobian was taken a distance Δ from the solution mixes
//! normal residuals, of size μ/λ, into tangent corrections and contracts only while
//! (κΔ)²μ/λ < 1 (κ the curvature of M, μ the normal curvature of F). diffsol re-evaluates
//! its Jacobian at the current state and hard-codes its Newton loop, so its steps are capped
//! near √(λ/μ)/κ and its step count grows like λ^{-1/2}. Here, whenever Newton fails, the
//! Jacobian is re-evaluated at the *predicted* end of the step (as scipy does), where Δ is
//! only the predictor's error, and the step count stays nearly flat in λ. If that fails
//! too, the iteration goes on from its last iterate with the Jacobian taken there before
//! the step is halved, so that loose tolerances are not slower than tight ones.

use std::time::Instant;

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::krylov::{krylov_rtol, MatrixFree};
use crate::la::{all_finite, DMat};
use crate::linsolve::Factorisation;
use crate::loss::Residuals;
use crate::method::{LinearCapabilities, LinearSolver, Method, Options};
use crate::observe::{notify, Control, DenseOutput, Observer, RunInfo, StepView, StopReason};
use crate::run::{Outcome, SolverStats};
use crate::woodbury::{rank_one_groups, shared_block, valid_groups, Kind, Structured};

/// The highest order of the formulas. General-purpose codes (ode15s, scipy's `BDF`, CVODE,
/// LSODE) stop at 5 because BDF6 is A(α)-stable only for α ≈ 17.8°: unstable on eigenvalues
/// near the imaginary axis. A gradient flow has none: its Jacobian −κ(∇²F + λI) is
/// symmetric, its spectrum real, and BDF6 is stable on the whole negative real axis (and,
/// like every BDF, damps hμ → −∞). Measured over five systems × λ ∈ {1e-2, 1e-4, 1e-6,
/// 1e-8} at rtol 1e-8 against order 5: 10–20% fewer steps and gradients (matrix sensing at
/// λ = 1e-6 912 → 774 steps, 19.6 → 16.1 ms; linear regression 371 → 314; matrix
/// completion 906 → 758), with errors against the reference 0.5–1.2× as large. At rtol 1e-4
/// order 6 is rarely reached: steps within ±4%, errors 0.4–8× (the diagonal network at
/// λ = 1e-6: 2.3e-6 → 1.9e-5, within the tolerance either way). The argument is the one for
/// the linear test equation at constant step, as for ode15s at order 5; the step is held for
/// order + 1 steps between changes, here as there.
const MAX_ORDER: usize = crate::method::BDF_MAX_ORDER;
/// The highest order with the matrix-free solve of a loss without residuals, whose MINRES
/// runs unpreconditioned. BDF6's parasitic roots have modulus 0.86 (BDF5's 0.71), so an
/// error left in one corrector decays over about 7 steps instead of 3, and unpreconditioned
/// MINRES at its loose forcing term leaves errors that change from step to step: on a
/// five-parameter quadratic at λ = 1e-7, rtol 1e-9, order 6 took 597 steps with 24 failed
/// error tests where the dense solve took 481 with none (order 5: 623 and 603). With the
/// Gauss–Newton preconditioner order 6 pays as with the direct solves: matrix completion at
/// d = 800, λ ∈ {1e-4, 1e-6, 1e-8}, rtol 1e-6 and 1e-8, 6–16% fewer steps and 9–17% less
/// time with errors 0.3–1.1× as large (at rtol 1e-4, where MINRES needs 150–200 iterations
/// per solve, 2–10% more time); at d = 3200, λ = 1e-6, rtol 1e-8, 640 → 533 steps.
const UNPRECONDITIONED_MAX_ORDER: usize = 5;
const NEWTON_MAXITER: usize = 4;
/// After the chord iteration fails with a fresh Jacobian (taken at the predictor), this many
/// re-linearisations at its last iterate are tried before the step is halved. At loose
/// tolerances the error test asks for steps whose predictor lies outside the chord
/// iteration's reach (about √(λ/μ)/κ_M, whatever the tolerance) but within Newton's: at
/// λ = 1e-8, rtol 1e-4 matrix completion went from 1398 steps to 389, matrix sensing from
/// 1123 to 385, the diagonal network from 897 to 298 and the two-layer network from 3885 to
/// 753, each to within 1.2e-4 of the rtol 1e-8 run. Over the 45 runs of five systems ×
/// λ ∈ {1e-4, 1e-6, 1e-8} × rtol ∈ {1e-4, 1e-6, 1e-8} the time fell from 11.8 s to 7.3 s;
/// three re-linearisations gave 7.8 s. Only a finite iterate is re-linearised, and after a
/// step fails so the retry takes a Jacobian at its own predictor, not at the abandoned
/// iterate: that brought the two-layer network to 501 steps, matrix completion to 304,
/// matrix sensing to 294 and the diagonal network to 217.
const NEWTON_RELINEARISE: usize = 1;

/// After a stale Jacobian failed the Newton iteration, this many following steps take
/// their Jacobian at the predictor before their first iteration (the run's length when a
/// stale Jacobian served a step since the last failure; see [`REFRESH_AHEAD_MAX`]). In the
/// slow phase at small λ the stiff (normal) directions turn with θ, so a Jacobian from the
/// previous step fails at nearly every step, and its attempt costs Newton iterations for
/// nothing. Measured over the 60 runs of five systems × λ ∈ {1e-2, 1e-4, 1e-6, 1e-8} ×
/// rtol ∈ {1e-4, 1e-6, 1e-8}: 1 cut the two-layer network's time by 9%, the diagonal
/// network's and matrix sensing's by 4–5%, and matrix completion's at d = 3200 by 5–7%
/// (fewer gradients, same steps); 4 and 19 cost matrix completion 6% and 19% (Jacobians and
/// factorisations it did not need).
const REFRESH_AHEAD: usize = 1;
/// When the stale Jacobian tried after such a run fails again, before any stale Jacobian
/// has served a step, the next run is twice as long, up to this many steps; a stale
/// Jacobian that serves a step puts it back to [`REFRESH_AHEAD`]. In the slow phase at
/// small λ nearly every step needs its own Jacobian, and each stale attempt had cost its
/// Newton iterations for nothing. Over the 48 runs of four systems × λ ∈ {1e-2, 1e-4, 1e-6,
/// 1e-8} × rtol ∈ {1e-4, 1e-6, 1e-8}: the same steps and Jacobians, 5–20% fewer gradients at
/// λ ≤ 1e-4 (none fewer at 1e-2), errors within 0.6–1.4×; the two-layer network 5–12%
/// faster, matrix sensing, the diagonal network and matrix completion 2–6% at small λ.
/// Doubling up to 4 gained about two thirds of that; without a cap, no more than with 16.
const REFRESH_AHEAD_MAX: usize = 16;
/// A step whose chord iteration took this many iterations on a Jacobian from an earlier
/// step has shown that Jacobian aged: the next step takes its own at the predictor (one
/// refreshed step, as after a failure) rather than spend a third or fourth iteration again,
/// or fail. Over the 48 runs of four systems × λ ∈ {1e-2, 1e-4, 1e-6, 1e-8} × rtol ∈ {1e-4,
/// 1e-6, 1e-8}, the geometric mean of the time fell by 11% at λ = 1e-2 (matrix sensing and
/// the diagonal network 12–16%, with 10–16% fewer gradients and fewer Jacobians too) and by
/// 4–5% at smaller λ, errors 1.05–1.14× as large on average (0.6–1.7× each, one 6.4× at a
/// loose tolerance); the worst case took 10% longer (the two-layer network at λ = 1e-8,
/// rtol 1e-6: 680 → 733 steps). Four iterations gained 2–4%.
const AGED_JACOBIAN_ITERATIONS: usize = 3;
const MIN_FACTOR: f64 = 0.2;
/// The matrix-free preconditioner is kept while c/c' stays within this factor.
const MF_C_RATIO: f64 = 3.0;
const MAX_FACTOR: f64 = 10.0;
/// After a Newton failure the step size is capped at 0.9 of the step that failed, and the cap
/// relaxes by this factor per accepted step. The step size is held for order + 1 steps after
/// a failure, so in effect the cap limits the regrowth to 1.3–3.2× the failed step (order 1
/// to 6) instead of the usual 10×. Without it, at loose tolerances and small λ the
/// error estimate keeps asking for steps that Newton cannot converge on (its Jacobian must be
/// taken within about √(λ/μ)/κ_M of the solution, whatever the tolerance) and the step size
/// ping-pongs: at λ = 1e-8 and rtol 1e-4, matrix completion took over 8900 steps (20 s, a
/// Newton failure every other step; scipy's BDF behaves the same) and with the cap 1398
/// (1.4 s); the two-layer network went from over 11 700 steps to 3885 (both before
/// [`NEWTON_RELINEARISE`], which brought them to 389 and 753). A cap at half the failed step
/// collapsed the step size where failures are rounding noise (a state at rest on M at
/// rtol 1e-10); a relaxation only after easy Newton iterations never let it recover.
const NEWTON_CAP_RELAX: f64 = 1.2;
/// The Newton iteration's tolerance on its estimated remaining error, in the weighted RMS
/// norm of the error test (where 1 is the local error allowed): √rtol clamped to
/// [0.01, 0.03], and never below 10ε/rtol, under which rounding noise decides. scipy's BDF
/// takes min(0.03, √rtol), 1e-4 at rtol 1e-8: a corrector a hundred times more exact than
/// an error test that allows 1 needs, which costs a third Newton iteration on most steps.
/// Measured with the clamp, rtol ≤ 1e-6 (at rtol ≥ 1e-4 nothing changes): at λ = 1e-2,
/// rtol 1e-8 the diagonal network's gradients fell from 1364 to 1080 (8.9 → 6.9 ms),
/// matrix sensing's from 2243 to 1723 (13.1 → 9.8 ms), matrix completion's 2176 → 1552
/// (95 → 67 ms), the two-layer network's 2283 → 1776 (42 → 29 ms), each with its error
/// against the reference within 0.8–1.3× of before; at λ = 1e-8 the gains are 2–15%, errors
/// within 0.9–1.5× (2.3–2.8× at rtol 1e-6 on matrix completion and the two-layer network,
/// which the work–precision curves account for). A constant 0.03 (0.03 instead of 0.01 at
/// rtol 1e-4) made the diagonal network's error at λ = 1e-8 six times larger.
fn newton_tolerance(rtol: f64) -> f64 {
    (10.0 * f64::EPSILON / rtol).max(rtol.sqrt().clamp(0.01, 0.03))
}

/// scipy's Newton tolerance max(10ε/rtol, min(0.03, √rtol)), 1e-4 at rtol 1e-8: what the
/// BDF used before [`newton_tolerance`], and what the thresholds measured with it stay keyed
/// on (the rounding-noise exemption of the Newton iteration and the MINRES forcing term,
/// [`crate::krylov::krylov_rtol`]).
pub(crate) fn scipy_newton_tolerance(rtol: f64) -> f64 {
    (10.0 * f64::EPSILON / rtol).max(0.03f64.min(rtol.sqrt()))
}

/// The NDF modifications κ_k of the BDF formulas (Shampine–Reichelt); orders 5 and 6 are
/// the plain BDF.
const KAPPA: [f64; MAX_ORDER + 1] = [0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0, 0.0];

struct Coefficients {
    gamma: [f64; MAX_ORDER + 1],
    alpha: [f64; MAX_ORDER + 1],
    error_const: [f64; MAX_ORDER + 1],
}

impl Coefficients {
    fn new() -> Self {
        let mut gamma = [0.0; MAX_ORDER + 1];
        for k in 1..=MAX_ORDER {
            gamma[k] = gamma[k - 1] + 1.0 / k as f64;
        }
        let mut alpha = [0.0; MAX_ORDER + 1];
        let mut error_const = [0.0; MAX_ORDER + 1];
        for k in 0..=MAX_ORDER {
            alpha[k] = (1.0 - KAPPA[k]) * gamma[k];
            error_const[k] = KAPPA[k] * gamma[k] + 1.0 / (k + 1) as f64;
        }
        Self {
            gamma,
            alpha,
            error_const,
        }
    }
}

/// R(order, factor): the matrix that rescales backward differences to a new step size.
fn compute_r(order: usize, factor: f64) -> [[f64; MAX_ORDER + 1]; MAX_ORDER + 1] {
    let mut m = [[0.0; MAX_ORDER + 1]; MAX_ORDER + 1];
    for j in 0..=order {
        m[0][j] = 1.0;
    }
    for i in 1..=order {
        for j in 1..=order {
            m[i][j] = (i as f64 - 1.0 - factor * j as f64) / i as f64;
        }
    }
    for i in 1..=order {
        for j in 0..=order {
            m[i][j] *= m[i - 1][j];
        }
    }
    m
}

/// D[..=order] ← (R U)ᵀ D[..=order]: the differences for step h·factor (`tmp` holds
/// order + 1 rows of scratch).
fn change_d(d: &mut [Vec<f64>], order: usize, factor: f64, tmp: &mut [Vec<f64>]) {
    let r = compute_r(order, factor);
    let u = compute_r(order, 1.0);
    let mut ru = [[0.0; MAX_ORDER + 1]; MAX_ORDER + 1];
    for i in 0..=order {
        for j in 0..=order {
            ru[i][j] = (0..=order).map(|k| r[i][k] * u[k][j]).sum();
        }
    }
    for (i, row) in tmp.iter_mut().enumerate().take(order + 1) {
        row.fill(0.0);
        for j in 0..=order {
            let w = ru[j][i];
            if w != 0.0 {
                crate::la::axpy(w, &d[j], row);
            }
        }
    }
    for i in 0..=order {
        std::mem::swap(&mut d[i], &mut tmp[i]);
    }
}

/// weight ← 1/(atol + rtol|y|), the reciprocal error scales of the state y.
fn error_weights_into(weight: &mut [f64], y: &[f64], atol: f64, rtol: f64) {
    for (wi, yi) in weight.iter_mut().zip(y) {
        *wi = 1.0 / (atol + rtol * yi.abs());
    }
}

/// RMS norm of x⊙weight (weight = 1/scale, so that the norms of a step, several per
/// scale, multiply instead of divide).
fn weighted_norm(x: &[f64], weight: &[f64]) -> f64 {
    // Four interleaved partial sums: a single running sum is a chain of dependent additions,
    // and this norm is taken several times a step.
    let mut acc = [0.0; 4];
    let (xs, ws) = (x.chunks_exact(4), weight.chunks_exact(4));
    let tail: f64 = (xs.remainder().iter().zip(ws.remainder()))
        .map(|(a, w)| (a * w) * (a * w))
        .sum();
    for (a, w) in xs.zip(ws) {
        for l in 0..4 {
            acc[l] += (a[l] * w[l]) * (a[l] * w[l]);
        }
    }
    let s = (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail;
    (s / x.len().max(1) as f64).sqrt()
}

/// The interpolant of the last step: y(s) = D₀ + Σⱼ Dⱼ Πₘ₌₀^{j−1} (s − (sₙ − m h))/((m + 1) h).
struct Dense<'a> {
    s: f64,
    h: f64,
    order: usize,
    d: &'a [Vec<f64>],
}

impl DenseOutput for Dense<'_> {
    fn interpolate_into(&self, s: f64, out: &mut [f64]) -> Result<(), EngineError> {
        out.copy_from_slice(&self.d[0]);
        let mut p = 1.0;
        for j in 1..=self.order {
            let m = (j - 1) as f64;
            p *= (s - (self.s - self.h * m)) / (self.h * (m + 1.0));
            crate::la::axpy(p, &self.d[j], out);
        }
        Ok(())
    }
}

struct Bdf<'f, 'a> {
    flow: &'f GradientFlow<'a>,
    rtol: f64,
    atol: f64,
    newton_tol: f64,
    /// Corrections below this are rounding noise when they stop shrinking.
    noise_tol: f64,
    /// The relative residual at which MINRES stops ([`krylov_rtol`]).
    krylov_forcing: f64,
    s: f64,
    y: Vec<f64>,
    h: f64,
    order: usize,
    /// The options' maximum order; by default [`MAX_ORDER`], or
    /// [`UNPRECONDITIONED_MAX_ORDER`] with the matrix-free solve of a loss without residuals.
    max_order: usize,
    n_equal_steps: usize,
    /// The step-size cap set by the last Newton failure ([`NEWTON_CAP_RELAX`]).
    h_cap: f64,
    d: Vec<Vec<f64>>,
    linear: Linear,
    jac_current: bool,
    /// Steps that still take a Jacobian at their predictor before their first Newton
    /// iteration (after a stale Jacobian failed).
    refresh_ahead: usize,
    /// The length of the last run of steps that took their Jacobian at the predictor: the
    /// next stale-Jacobian failure starts a run of [`REFRESH_AHEAD`] steps, or of twice
    /// this (at most [`REFRESH_AHEAD_MAX`]) when no stale Jacobian has served a step since.
    refresh_run: usize,
    /// A stale Jacobian has served a step since the last one failed.
    stale_served: bool,
    /// The loss is a convex quadratic and the Newton systems are solved directly (not
    /// matrix-free): the Newton iteration's contraction rate is bounded by |1 − c/c′|.
    rate_bound_known: bool,
    /// A convex quadratic with the structured solve: its m×m factorisations are cheap, so
    /// every step gets the Newton matrix of its own c and one iteration (see `factorise`).
    refactorise_exactly: bool,
    stats: SolverStats,
    work: Work,
}

/// Buffers of one step, allocated once.
struct Work {
    y_predict: Vec<f64>,
    psi: Vec<f64>,
    /// 1/(atol + rtol|y|) at the predictor, then at the corrector.
    weight: Vec<f64>,
    y_new: Vec<f64>,
    d: Vec<f64>,
    dy: Vec<f64>,
    f: Vec<f64>,
    /// Scratch rows for rescaling the differences.
    rows: Vec<Vec<f64>>,
}

impl Work {
    fn new(n: usize) -> Self {
        let v = || vec![0.0; n];
        Self {
            y_predict: v(),
            psi: v(),
            weight: v(),
            y_new: v(),
            d: v(),
            dy: v(),
            f: v(),
            rows: vec![vec![0.0; n]; MAX_ORDER + 1],
        }
    }
}

/// The linear algebra of the Newton iteration: a dense Jacobian and the factorisation of
/// I − cJ, or the matrix-free solve of [`crate::krylov`] (a linearisation point and a
/// preconditioner). Either is kept across steps and refreshed by the same rules.
enum Linear {
    Dense {
        jac: DMat,
        factor: Option<(f64, Factorisation)>,
    },
    MatrixFree(Box<MatrixFree>),
    /// The Woodbury solve of [`crate::woodbury`].
    Structured(Box<Structured>),
}

impl Linear {
    /// The c of the current factorisation (preconditioner), if any.
    fn prepared_c(&self) -> Option<f64> {
        match self {
            Linear::Dense { factor, .. } => factor.as_ref().map(|(c, _)| *c),
            Linear::MatrixFree(mf) => mf.preconditioner.as_ref().map(|p| p.c()),
            Linear::Structured(st) => st.prepared_c(),
        }
    }
}

/// The residuals of a flow solved by the structured solve (chosen only for losses with them).
fn structured_residuals<'f>(flow: &'f GradientFlow<'_>) -> &'f dyn Residuals {
    flow.loss()
        .residuals()
        .expect("the structured solve is chosen only for losses with residuals")
}

enum StepResult {
    Accepted,
    Failed(String),
}

impl<'f, 'a> Bdf<'f, 'a> {
    fn new(
        flow: &'f GradientFlow<'a>,
        theta0: &[f64],
        opts: &Options,
    ) -> Result<Self, EngineError> {
        let n = theta0.len();
        let res = flow.loss().residuals().filter(|r| r.count() < n);
        let groups = res.and_then(|r| valid_groups(r, n));
        let shared = res
            .zip(groups.as_ref())
            .is_some_and(|(r, g)| shared_block(r, g));
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
        let chosen = opts.linear_solver.choose(caps)?;
        let linear = match (chosen, res, groups) {
            (LinearSolver::MatrixFree, _, _) => Linear::MatrixFree(Box::new(MatrixFree::new(n))),
            (LinearSolver::Structured, Some(r), Some(g)) => {
                let kind = if shared {
                    Kind::Shared
                } else if rank_one_groups(r, &g, theta0) {
                    Kind::RankOne
                } else {
                    Kind::Stored
                };
                Linear::Structured(Box::new(Structured::new(g, r.count(), n, kind)))
            }
            _ => Linear::Dense {
                jac: DMat::zeros(n, n),
                factor: None,
            },
        };
        // A convex quadratic's contraction bound needs exact solves (not Krylov ones).
        let convex = flow.loss().is_convex_quadratic();
        let rate_bound_known = convex && !matches!(linear, Linear::MatrixFree(_));
        if rate_bound_known {
            // Only a declaration that will be used is probed (a loss without its own
            // Hessian-vector product would assemble d×d Hessians for it).
            crate::check::probe_convex_quadratic(flow.loss(), theta0)
                .map_err(EngineError::InvalidInput)?;
        }
        let refactorise_exactly = convex && matches!(linear, Linear::Structured(_));
        let max_order = match (opts.max_order, &linear) {
            // Validated to 1..=MAX_ORDER with the options.
            (Some(q), _) => q,
            (None, Linear::MatrixFree(_)) if flow.loss().residuals().is_none() => {
                UNPRECONDITIONED_MAX_ORDER
            }
            (None, _) => MAX_ORDER,
        };
        let mut b = Self {
            flow,
            rtol: opts.rtol,
            atol: opts.atol,
            newton_tol: newton_tolerance(opts.rtol),
            noise_tol: 0.1 * scipy_newton_tolerance(opts.rtol),
            krylov_forcing: krylov_rtol(opts.rtol),
            s: 0.0,
            y: theta0.to_vec(),
            h: 0.0,
            order: 1,
            max_order,
            n_equal_steps: 0,
            d: vec![vec![0.0; n]; MAX_ORDER + 3],
            linear,
            jac_current: true,
            refresh_ahead: 0,
            refresh_run: REFRESH_AHEAD,
            stale_served: true,
            rate_bound_known,
            refactorise_exactly,
            h_cap: f64::INFINITY,
            stats: SolverStats {
                method: Method::Bdf.name().into(),
                linear_solver: chosen.name().into(),
                ..SolverStats::default()
            },
            work: Work::new(n),
        };
        let f0 = b.rhs(theta0);
        b.h = b.initial_step(theta0, &f0);
        b.d[0].copy_from_slice(theta0);
        b.d[1] = f0.iter().map(|v| v * b.h).collect();
        b.evaluate_jacobian(theta0);
        Ok(b)
    }

    fn rhs(&mut self, y: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; y.len()];
        self.stats.rhs_evals += 1;
        self.flow.rhs_into(y, &mut out);
        out
    }

    fn evaluate_jacobian(&mut self, at: &[f64]) {
        self.stats.jac_evals += 1;
        match &mut self.linear {
            Linear::Dense { jac, factor } => {
                self.flow.jacobian_into(at, jac.as_mut());
                *factor = None;
            }
            Linear::MatrixFree(mf) => mf.linearise(self.flow, at),
            Linear::Structured(st) => st.linearise(structured_residuals(self.flow), at),
        }
    }

    /// The Jacobian at the step's predictor `work.y_predict`, where the step will end.
    fn jacobian_at_predictor(&mut self) {
        let at = std::mem::take(&mut self.work.y_predict);
        self.evaluate_jacobian(&at);
        self.work.y_predict = at;
        self.jac_current = true;
    }

    /// Hairer–Nørsett–Wanner's initial step for a first-order method.
    fn initial_step(&mut self, y0: &[f64], f0: &[f64]) -> f64 {
        let mut weight = vec![0.0; y0.len()];
        error_weights_into(&mut weight, y0, self.atol, self.rtol);
        let d0 = weighted_norm(y0, &weight);
        let d1 = weighted_norm(f0, &weight);
        let h0 = if d0 < 1e-5 || d1 < 1e-5 {
            1e-6
        } else {
            0.01 * d0 / d1
        };
        let y1: Vec<f64> = y0.iter().zip(f0).map(|(y, f)| y + h0 * f).collect();
        let f1 = self.rhs(&y1);
        let diff: Vec<f64> = f1.iter().zip(f0).map(|(a, b)| a - b).collect();
        let d2 = weighted_norm(&diff, &weight) / h0;
        let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
            (h0 * 1e-3).max(1e-6)
        } else {
            (0.01 / d1.max(d2)).powf(0.5)
        };
        (100.0 * h0).min(h1)
    }

    /// Factorises I − cJ (matrix-free: its preconditioner), unless the current one's c is
    /// within 30% of c (as CVODE does: the Newton iteration tolerates a slightly wrong c, and
    /// a step-size change then costs no factorisation) or `exact` asks for this very c.
    /// A convex quadratic with the structured solve always gets its own c: its corrector
    /// then converges in one iteration (`rate_bound_known`), which saves more than the m×m
    /// factorisation costs (linear regression, rtol 1e-8, λ = 1e-4: n = 20, d = 200 28 → 84
    /// factorisations, 810 → 357 gradients, 4.4 → 2.2 ms; with the 30% rule and the bound
    /// 710 gradients and 4.0 ms; n = 100, d = 1000 85 → 64 ms; n = 200, d = 1000 237 → 201
    /// ms). A dense d×d factorisation is not cheap: with the bound alone linear regression
    /// takes 11.9 → 10.6 ms at d = 200, 70 → 66 ms at d = 500 and 493 → 437 ms at d = 1000,
    /// refactorising at every c 11.2, 91 and 619 ms.
    fn factorise(&mut self, c: f64, exact: bool) {
        if let Some(fc) = self.linear.prepared_c() {
            // The matrix-free solve applies I − cJ exactly and only preconditions with c':
            // a preconditioner several steps old in c still clusters the spectrum.
            let tolerated = match self.linear {
                Linear::Dense { .. } | Linear::Structured(..) => (c / fc - 1.0).abs() <= 0.3,
                Linear::MatrixFree(_) => (c / fc).max(fc / c) <= MF_C_RATIO,
            };
            if fc == c || (!exact && tolerated && !self.refactorise_exactly) {
                return;
            }
        }
        let cholesky = match &mut self.linear {
            Linear::Dense { jac, factor } => {
                let f =
                    Factorisation::shifted(jac.as_ref(), -c, 1.0, factor.take().map(|(_, f)| f));
                let chol = f.is_cholesky();
                *factor = Some((c, f));
                Some(chol)
            }
            Linear::MatrixFree(mf) => mf.precondition(self.flow, c),
            Linear::Structured(st) => {
                let f = st.factorise(self.flow, structured_residuals(self.flow), c);
                self.stats.structured_fallbacks += usize::from(f.fallback);
                f.factorised.then_some(f.cholesky)
            }
        };
        if let Some(chol) = cholesky {
            self.stats.lu_factorisations += 1;
            if chol {
                self.stats.cholesky_factorisations += 1;
            }
        }
    }

    /// The corrector: Newton's iteration on y − c f(y) = ψ from `work.y_predict` (or, with
    /// `resume`, from the iterate left in `work.y_new`), into `work.y_new` and `work.d`
    /// (their difference). Returns (converged, iterations).
    fn newton(&mut self, c: f64, resume: bool) -> (bool, usize) {
        let Self {
            flow,
            linear,
            stats,
            work,
            newton_tol,
            noise_tol,
            krylov_forcing,
            rate_bound_known,
            ..
        } = self;
        // A dense factorisation may be of I − c'J with c' within 30% of c: the iteration then
        // converges more slowly, but converges (scaling the correction by 2/(1 + c/c'), as
        // CVODE does, cost more iterations here). The matrix-free solve applies I − cJ
        // itself; only its preconditioner lags.
        let n = work.y_predict.len();
        if resume {
            for i in 0..n {
                work.d[i] = work.y_new[i] - work.y_predict[i];
            }
        } else {
            work.y_new.copy_from_slice(&work.y_predict);
            work.d.fill(0.0);
        }
        // The bound is in the Euclidean norm: after a correction dy the remaining error is at
        // most b/(1 − b)‖dy‖₂, whose weighted RMS norm is at most w_max/√n times that.
        let bound = if *rate_bound_known {
            linear
                .prepared_c()
                .map(|fc| convex_quadratic_contraction(c, fc))
                .filter(|&b| b < 1.0)
        } else {
            None
        };
        let to_weighted = match bound {
            Some(b) if b > 0.0 => {
                work.weight.iter().fold(0.0f64, |m, &w| m.max(w)) / (n.max(1) as f64).sqrt()
            }
            _ => 0.0,
        };
        let mut dy_norm_old: Option<f64> = None;
        let mut iterations = 0;
        let mut converged = false;
        for k in 0..NEWTON_MAXITER {
            iterations = k + 1;
            stats.rhs_evals += 1;
            flow.rhs_into(&work.y_new, &mut work.f);
            if !all_finite(&work.f) {
                break;
            }
            for (((dy, f), psi), d) in work.dy.iter_mut().zip(&work.f).zip(&work.psi).zip(&work.d) {
                *dy = c * f - psi - d;
            }
            let solved = match linear {
                Linear::Dense { factor, .. } => {
                    let (_, f) = factor.as_ref().expect("factorised before the corrector");
                    f.solve_vec(&mut work.dy);
                    true
                }
                Linear::MatrixFree(mf) => {
                    let out =
                        mf.solve(flow, c, &mut work.dy, *krylov_forcing, &mut stats.jvp_evals);
                    stats.krylov_iterations += out.iterations;
                    out.converged
                }
                Linear::Structured(st) => st.solve(structured_residuals(flow), &mut work.dy),
            };
            if !solved {
                break;
            }
            let dy_norm = weighted_norm(&work.dy, &work.weight);
            if !dy_norm.is_finite() {
                break;
            }
            let rate = dy_norm_old.map(|old| dy_norm / old);
            // Two successive corrections below a tenth of scipy's Newton tolerance (1e-5 of
            // the allowed error at rtol 1e-8; not of the looser `newton_tol`, under which a
            // stagnating iteration is not yet noise) that stop shrinking are rounding noise,
            // not divergence (a state at rest on M, where the slow-time right-hand side is
            // rounding error over λ): the iterate is converged, and the error test still
            // judges the step.
            let noise = dy_norm <= *noise_tol && dy_norm_old.is_some_and(|o| o <= *noise_tol);
            if let Some(r) = rate {
                if !noise
                    && (r >= 1.0
                        || r.powi((NEWTON_MAXITER - k) as i32) / (1.0 - r) * dy_norm > *newton_tol)
                {
                    break;
                }
            }
            for ((y, d), dy) in work.y_new.iter_mut().zip(work.d.iter_mut()).zip(&work.dy) {
                *y += dy;
                *d += dy;
            }
            // The known bound may accept the first iterate; divergence is judged on measured
            // rates only.
            let bounded = bound.is_some_and(|b| {
                b == 0.0 || b / (1.0 - b) * to_weighted * crate::la::norm(&work.dy) < *newton_tol
            });
            if noise
                || dy_norm == 0.0
                || bounded
                || rate.is_some_and(|r| r / (1.0 - r) * dy_norm < *newton_tol)
            {
                converged = true;
                break;
            }
            dy_norm_old = Some(dy_norm);
        }
        stats.nonlinear_iterations += iterations;
        (converged, iterations)
    }

    /// One accepted step towards `s_end` (never beyond it). The dense output of the step
    /// is the polynomial held in `d` with the *new* step size and order (the differences are
    /// rescaled exactly, as in scipy).
    fn step(&mut self, s_end: f64) -> StepResult {
        let co = Coefficients::new();
        loop {
            let min_step = 10.0 * (next_up(self.s) - self.s);
            if self.h < min_step {
                return StepResult::Failed(format!(
                    "the step size fell below {min_step:.3e} at s = {:.6e}",
                    self.s
                ));
            }
            let mut s_new = self.s + self.h;
            if s_new > s_end {
                s_new = s_end;
                let factor = (s_new - self.s) / self.h;
                change_d(&mut self.d, self.order, factor, &mut self.work.rows);
                self.n_equal_steps = 0;
            }
            let h = s_new - self.s;
            self.h = h;
            let order = self.order;
            {
                let w = &mut self.work;
                w.y_predict.copy_from_slice(&self.d[0]);
                w.psi.fill(0.0);
                for j in 1..=order {
                    let g = co.gamma[j] / co.alpha[order];
                    let parts = w.y_predict.iter_mut().zip(w.psi.iter_mut());
                    for ((yp, ps), dj) in parts.zip(&self.d[j]) {
                        *yp += dj;
                        *ps += g * dj;
                    }
                }
                error_weights_into(&mut w.weight, &w.y_predict, self.atol, self.rtol);
            }
            let c = h / co.alpha[order];
            let (mut converged, mut iterations);
            let mut resume = false;
            let mut relinearised = 0;
            if self.refresh_ahead > 0 && !self.jac_current {
                self.jacobian_at_predictor();
            }
            loop {
                self.factorise(c, false);
                (converged, iterations) = self.newton(c, resume);
                if converged {
                    break;
                }
                if matches!(&self.linear, Linear::Structured(st) if st.refused()) {
                    // Only another step size can make the shared block invertible.
                    break;
                }
                let dense = !matches!(self.linear, Linear::MatrixFree(_));
                if dense && self.jac_current && self.linear.prepared_c().is_some_and(|fc| fc != c) {
                    // With a fresh Jacobian, first refactorise at this step's own c (the
                    // matrix-free operator has it already: only its Jacobian point can be at
                    // fault). With a stale one the new Jacobian below is factorised at c
                    // anyway: refactorising the old one first was wasted in most cases (on
                    // matrix completion at d = 800, λ = 1e-6, 43 of 298 factorisations).
                    self.factorise(c, true);
                    resume = false;
                    continue;
                }
                if !self.jac_current {
                    // Re-evaluate the Jacobian where the step will end, not where it starts;
                    // the next `refresh_run` steps do so before iterating (this step's
                    // acceptance counts one off).
                    self.refresh_run = if self.stale_served {
                        REFRESH_AHEAD
                    } else {
                        (2 * self.refresh_run).min(REFRESH_AHEAD_MAX)
                    };
                    self.stale_served = false;
                    self.refresh_ahead = self.refresh_run + 1;
                    self.jacobian_at_predictor();
                    resume = false;
                    continue;
                }
                // The iterate and the gradient there must be finite (a non-finite one ends
                // the iteration with y_new unchanged and f non-finite).
                let finite = all_finite(&self.work.y_new) && all_finite(&self.work.f);
                if relinearised < NEWTON_RELINEARISE && finite {
                    // The chord iteration failed with a fresh Jacobian: go on from its last
                    // iterate with the Jacobian taken there (Newton's method proper) before
                    // giving up the step.
                    relinearised += 1;
                    let at = std::mem::take(&mut self.work.y_new);
                    self.evaluate_jacobian(&at);
                    self.work.y_new = at;
                    resume = true;
                    continue;
                }
                break;
            }
            if !converged {
                if relinearised > 0 {
                    // The Jacobian sits at an abandoned iterate: the retry takes one at its
                    // own predictor.
                    self.jac_current = false;
                }
                self.stats.nonlinear_failures += 1;
                self.h_cap = 0.9 * self.h;
                self.h *= 0.5;
                change_d(&mut self.d, self.order, 0.5, &mut self.work.rows);
                self.n_equal_steps = 0;
                continue;
            }
            let safety = 0.9 * (2.0 * NEWTON_MAXITER as f64 + 1.0)
                / (2.0 * NEWTON_MAXITER as f64 + iterations as f64);
            let error_norm = {
                let w = &mut self.work;
                error_weights_into(&mut w.weight, &w.y_new, self.atol, self.rtol);
                co.error_const[order] * weighted_norm(&w.d, &w.weight)
            };
            if error_norm.is_nan() || error_norm > 1.0 {
                self.stats.error_test_failures += 1;
                let factor = if error_norm.is_finite() {
                    MIN_FACTOR.max(safety * error_norm.powf(-1.0 / (order as f64 + 1.0)))
                } else {
                    MIN_FACTOR
                };
                self.h *= factor;
                change_d(&mut self.d, self.order, factor, &mut self.work.rows);
                self.n_equal_steps = 0;
                continue;
            }
            // Accepted.
            self.h_cap *= NEWTON_CAP_RELAX;
            self.stats.steps += 1;
            // A Jacobian from an earlier step served this one; if slowly, it has aged.
            let stale = !self.jac_current;
            self.stale_served |= stale;
            let aged = stale && iterations >= AGED_JACOBIAN_ITERATIONS;
            self.jac_current = false;
            self.refresh_ahead = self.refresh_ahead.saturating_sub(1);
            if aged {
                self.refresh_ahead = self.refresh_ahead.max(1);
            }
            self.n_equal_steps += 1;
            self.s = s_new;
            self.y.copy_from_slice(&self.work.y_new);
            let d = &self.work.d;
            let (lo, hi) = self.d.split_at_mut(order + 2);
            for ((e, dn), dp) in hi[0].iter_mut().zip(d).zip(&lo[order + 1]) {
                *e = dn - dp;
            }
            lo[order + 1].copy_from_slice(d);
            for j in (0..=order).rev() {
                let (lo, hi) = self.d.split_at_mut(j + 1);
                crate::la::axpy(1.0, &hi[0], &mut lo[j]);
            }
            if self.n_equal_steps < order + 1 {
                return StepResult::Accepted;
            }
            let weight = &self.work.weight;
            let error_m_norm = if order > 1 {
                co.error_const[order - 1] * weighted_norm(&self.d[order], weight)
            } else {
                f64::INFINITY
            };
            let error_p_norm = if order < self.max_order {
                co.error_const[order + 1] * weighted_norm(&self.d[order + 2], weight)
            } else {
                f64::INFINITY
            };
            let norms = [error_m_norm, error_norm, error_p_norm];
            let factors: Vec<f64> = norms
                .iter()
                .enumerate()
                .map(|(i, e)| e.powf(-1.0 / (order + i) as f64))
                .map(|f| if f.is_nan() { 0.0 } else { f })
                .collect();
            let (best, max_factor) =
                factors
                    .iter()
                    .cloned()
                    .enumerate()
                    .fold(
                        (1, f64::NEG_INFINITY),
                        |acc, (i, f)| if f > acc.1 { (i, f) } else { acc },
                    );
            self.order = (order + best).saturating_sub(1).clamp(1, self.max_order);
            let factor = MAX_FACTOR
                .min(safety * max_factor)
                .min((self.h_cap / self.h).max(1.0));
            self.h *= factor;
            change_d(&mut self.d, self.order, factor, &mut self.work.rows);
            self.n_equal_steps = 0;
            return StepResult::Accepted;
        }
    }
}

/// The contraction of the chord iteration on (I − cJ)y = b with the matrix I − c′J, for a
/// constant symmetric J with eigenvalues μ ≤ 0 (a convex quadratic's flow): the error is
/// multiplied by (c − c′)μ/(1 − c′μ) in each eigenvector, at most |1 − c/c′| in magnitude
/// (0 when c′ = c: one iteration solves the linear corrector up to rounding).
fn convex_quadratic_contraction(c: f64, c_factorised: f64) -> f64 {
    (1.0 - c / c_factorised).abs()
}

fn next_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let bits = x.to_bits();
    f64::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

/// Integrates `flow` with grokflow's BDF (see the module documentation).
pub(crate) fn integrate_bdf(
    flow: &GradientFlow<'_>,
    theta0: &[f64],
    opts: &Options,
    observers: &mut [&mut dyn Observer],
) -> Result<Outcome, EngineError> {
    let started = Instant::now();
    let info = RunInfo {
        s0: 0.0,
        s_end: opts.s_end,
        method: Method::Bdf.name(),
    };
    let mut stop = match notify(observers, |o| o.start(&info, theta0)) {
        Control::Stop(r) => Some(r),
        Control::Continue => None,
    };
    let mut bdf = Bdf::new(flow, theta0, opts)?;
    while stop.is_none() {
        if bdf.stats.steps >= opts.max_steps {
            stop = Some(StopReason::MaxSteps {
                steps: bdf.stats.steps,
            });
            break;
        }
        let s_prev = bdf.s;
        match bdf.step(opts.s_end) {
            StepResult::Failed(message) => {
                stop = Some(StopReason::SolverFailed { message });
                break;
            }
            StepResult::Accepted => {}
        }
        let view = StepView {
            s_prev,
            s: bdf.s,
            theta: &bdf.y,
            steps: bdf.stats.steps,
            dense: &Dense {
                s: bdf.s,
                h: bdf.h,
                order: bdf.order,
                d: &bdf.d,
            },
        };
        if let Control::Stop(r) = notify(observers, |o| o.step(&view)) {
            stop = Some(r);
        } else if bdf.s >= opts.s_end {
            stop = Some(StopReason::Finished);
        }
    }
    let stop = stop.expect("the loop ends with a reason");
    let theta_final = bdf.y.clone();
    for o in observers.iter_mut() {
        o.finish(bdf.s, &theta_final, &stop);
    }
    let mut stats = bdf.stats;
    stats.wall_s = started.elapsed().as_secs_f64();
    Ok(Outcome {
        stop,
        s_final: bdf.s,
        theta_final,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::la::{matvec_into, norm};

    /// The chord iteration's measured contraction on a convex quadratic never exceeds the
    /// bound, and comes within 1% of it from an error along the stiff direction (where
    /// cκμ is largest and (c − c′)μ/(1 − c′μ) nearest its supremum).
    #[test]
    fn the_convex_quadratic_contraction_bound_holds_and_is_tight() {
        let n = 12;
        // H = GᵀG with one stiff direction; J = −κ(H + λI).
        let g = DMat::from_fn(n, n, |i, j| ((i * 5 + j * 3) % 7) as f64 / 7.0 - 0.4);
        let mut h = g.transpose() * &g;
        h[(0, 0)] += 1e4;
        let (kappa, lambda) = (1e3, 1e-3);
        let jac = DMat::from_fn(n, n, |i, j| {
            -kappa * (h[(i, j)] + if i == j { lambda } else { 0.0 })
        });
        for (c, c_f) in [
            (0.1, 0.1),
            (0.1, 0.08),
            (0.1, 0.13),
            (2.0, 2.5),
            (1e-3, 7e-4),
        ] {
            let shifted = |cc: f64| {
                DMat::from_fn(n, n, |i, j| {
                    let identity = if i == j { 1.0 } else { 0.0 };
                    identity - cc * jac[(i, j)]
                })
            };
            let (a, f) = (shifted(c), Factorisation::new(&shifted(c_f)));
            let bound = convex_quadratic_contraction(c, c_f);
            // e ← e − A′⁻¹A e, the error of one chord iteration, from a few starting errors.
            let mut worst = 0.0f64;
            for start in 0..4 {
                // Start 0 is the stiff direction e₀; the others mix every direction.
                let mut e: Vec<f64> = (0..n)
                    .map(|i| match start {
                        0 => f64::from(u8::from(i == 0)),
                        _ => ((i + start) as f64 * 0.9).cos(),
                    })
                    .collect();
                for _ in 0..6 {
                    let before = norm(&e);
                    let mut ae = vec![0.0; n];
                    matvec_into(a.as_ref(), &e, &mut ae);
                    f.solve_vec(&mut ae);
                    for (ei, d) in e.iter_mut().zip(&ae) {
                        *ei -= d;
                    }
                    worst = worst.max(norm(&e) / before);
                }
            }
            assert!(
                worst <= bound + 1e-12,
                "c = {c}, c′ = {c_f}: {worst} > {bound}"
            );
            assert!(
                worst >= 0.99 * bound,
                "c = {c}, c′ = {c_f}: {worst} ≪ {bound}"
            );
        }
    }
}
