//! grokflow's BDF: the variable-order (1–6), variable-step numerical differentiation formulas
//! of Shampine and Reichelt (ode15s; the form of scipy's `BDF`), with the analytic Jacobian
//! J = −κ(∇²F + λI) and a [`NewtonSolve`] for the Newton systems.
//!
//! Unlike diffsol's BDF, whenever Newton fails the Jacobian is re-evaluated at the
//! *predicted* end of the step, where the stiff directions of the slow phase (the normals of
//! M, which turn as θ drifts along it) are those of the solution; the step count then stays
//! nearly flat in λ. If that fails too, the iteration goes on from its last iterate with the
//! Jacobian taken there before the step is halved. The design note (docs/design.md) has the
//! measurements behind every tuning constant below.

mod formulas;

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::la::{all_finite, axpy};
use crate::method::{Method, Options};
use crate::newton::{newton_solver, newton_tolerance, scipy_newton_tolerance, NewtonSolve};
use crate::stepping::{DenseOutput, SolverStats, Stepper, StopReason};
use formulas::{
    change_d, convex_quadratic_contraction, error_weights_into, next_up, weighted_norm,
    Coefficients, MAX_ORDER,
};

/// The highest order with the matrix-free solve of a loss without residuals (unpreconditioned
/// MINRES leaves errors that BDF6's slowly decaying parasitic roots amplify).
const UNPRECONDITIONED_MAX_ORDER: usize = 5;
/// Newton iterations per attempt.
const NEWTON_MAXITER: usize = 4;
/// Re-linearisations at the last iterate after the chord iteration failed with a fresh
/// Jacobian, before the step is halved.
const NEWTON_RELINEARISE: usize = 1;
/// Steps that take their Jacobian at the predictor after a stale Jacobian failed.
const REFRESH_AHEAD: usize = 1;
/// The longest such run: it doubles while stale Jacobians keep failing.
const REFRESH_AHEAD_MAX: usize = 16;
/// Chord iterations on a stale Jacobian from which it counts as aged (renewed next step).
const AGED_JACOBIAN_ITERATIONS: usize = 3;
/// Bounds of the step-size factor after an error-test failure and after a step.
const MIN_FACTOR: f64 = 0.2;
const MAX_FACTOR: f64 = 10.0;
/// After a Newton failure the step is capped at 0.9 of the failed one; the cap relaxes by
/// this factor per accepted step.
const NEWTON_CAP_RELAX: f64 = 1.2;

/// The BDF's state: the backward differences of the solution, the step, the order, the
/// Newton solver and the bookkeeping of its Jacobian.
pub(crate) struct Bdf<'f, 'a> {
    flow: &'f GradientFlow<'a>,
    co: Coefficients,
    rtol: f64,
    atol: f64,
    newton_tol: f64,
    /// Corrections below this are rounding noise when they stop shrinking.
    noise_tol: f64,
    s: f64,
    y: Vec<f64>,
    h: f64,
    order: usize,
    max_order: usize,
    n_equal_steps: usize,
    /// The step-size cap set by the last Newton failure ([`NEWTON_CAP_RELAX`]).
    h_cap: f64,
    d: Vec<Vec<f64>>,
    linear: Box<dyn NewtonSolve>,
    /// The Jacobian was taken during this step (at its predictor or an iterate).
    jac_current: bool,
    /// Steps that still take a Jacobian at their predictor before their first iteration.
    refresh_ahead: usize,
    /// The length of the last run of such steps ([`REFRESH_AHEAD_MAX`]).
    refresh_run: usize,
    /// A stale Jacobian has served a step since the last one failed.
    stale_served: bool,
    /// The loss is a convex quadratic with direct solves: the Newton iteration's contraction
    /// is bounded by |1 − c/c′|.
    rate_bound_known: bool,
    /// A convex quadratic with cheap factorisations gets the Newton matrix of its own c at
    /// every step, and one iteration.
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

impl<'f, 'a> Bdf<'f, 'a> {
    pub(crate) fn new(
        flow: &'f GradientFlow<'a>,
        theta0: &[f64],
        opts: &Options,
    ) -> Result<Self, EngineError> {
        let n = theta0.len();
        let linear = newton_solver(flow, theta0, opts.linear_solver, opts.rtol)?;
        // A convex quadratic's contraction bound needs exact solves (not Krylov ones).
        let convex = flow.loss().is_convex_quadratic();
        let rate_bound_known = convex && linear.exact();
        if rate_bound_known {
            // Only a declaration that will be used is probed (a loss without its own
            // Hessian-vector product would assemble d×d Hessians for it).
            crate::check::probe_convex_quadratic(flow.loss(), theta0)
                .map_err(EngineError::InvalidInput)?;
        }
        let max_order = match opts.max_order {
            // Validated to 1..=MAX_ORDER with the options.
            Some(q) => q,
            None if !linear.exact() && flow.loss().residuals().is_none() => {
                UNPRECONDITIONED_MAX_ORDER
            }
            None => MAX_ORDER,
        };
        let mut b = Self {
            flow,
            co: Coefficients::new(),
            rtol: opts.rtol,
            atol: opts.atol,
            newton_tol: newton_tolerance(opts.rtol),
            noise_tol: 0.1 * scipy_newton_tolerance(opts.rtol),
            s: 0.0,
            y: theta0.to_vec(),
            h: 0.0,
            order: 1,
            max_order,
            n_equal_steps: 0,
            d: vec![vec![0.0; n]; MAX_ORDER + 3],
            jac_current: true,
            refresh_ahead: 0,
            refresh_run: REFRESH_AHEAD,
            stale_served: true,
            rate_bound_known,
            refactorise_exactly: convex && linear.cheap_factorisations(),
            h_cap: f64::INFINITY,
            stats: SolverStats {
                method: Method::Bdf.name().into(),
                linear_solver: linear.name().into(),
                ..SolverStats::default()
            },
            linear,
            work: Work::new(n),
        };
        let f0 = b.eval_rhs(theta0);
        b.h = b.initial_step(theta0, &f0);
        b.d[0].copy_from_slice(theta0);
        b.d[1] = f0.iter().map(|v| v * b.h).collect();
        b.evaluate_jacobian(theta0);
        Ok(b)
    }

    /// The same BDF with its clock starting at s₀ (a restart after an event).
    pub(crate) fn starting_at(mut self, s0: f64) -> Self {
        self.s = s0;
        self
    }

    fn eval_rhs(&mut self, y: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; y.len()];
        self.stats.rhs_evals += 1;
        self.flow.rhs_into(y, &mut out);
        out
    }

    fn evaluate_jacobian(&mut self, at: &[f64]) {
        self.stats.jac_evals += 1;
        self.linear.linearise(self.flow, at);
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
        let f1 = self.eval_rhs(&y1);
        let diff: Vec<f64> = f1.iter().zip(f0).map(|(a, b)| a - b).collect();
        let d2 = weighted_norm(&diff, &weight) / h0;
        let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
            (h0 * 1e-3).max(1e-6)
        } else {
            (0.01 / d1.max(d2)).powf(0.5)
        };
        (100.0 * h0).min(h1)
    }

    /// Factorises I − cJ (matrix-free: its preconditioner), unless the current factorisation
    /// is for this c, or for one the solver tolerates and `exact` does not ask for this very
    /// c (a convex quadratic with cheap factorisations always gets its own c).
    fn factorise(&mut self, c: f64, exact: bool) {
        if let Some(fc) = self.linear.prepared_c() {
            let tolerated = self.linear.tolerates(c, fc);
            if fc == c || (!exact && tolerated && !self.refactorise_exactly) {
                return;
            }
        }
        let f = self.linear.factorise(self.flow, c);
        self.stats.structured_fallbacks += usize::from(f.fallback);
        if f.factorised {
            self.stats.lu_factorisations += 1;
            if f.cholesky {
                self.stats.cholesky_factorisations += 1;
            }
        }
    }

    /// The corrector: Newton's iteration on y − c f(y) = ψ from `work.y_predict` (or, with
    /// `resume`, from the iterate left in `work.y_new`), into `work.y_new` and `work.d`
    /// (their difference). A factorisation for a c′ the solver tolerates converges more
    /// slowly, but converges. Returns (converged, iterations).
    fn newton(&mut self, c: f64, resume: bool) -> (bool, usize) {
        let Self {
            flow,
            linear,
            stats,
            work,
            newton_tol,
            noise_tol,
            rate_bound_known,
            ..
        } = self;
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
            let solved = linear.solve(flow, c, &mut work.dy);
            stats.krylov_iterations += solved.krylov_iterations;
            stats.jvp_evals += solved.krylov_iterations;
            if !solved.ok {
                break;
            }
            let dy_norm = weighted_norm(&work.dy, &work.weight);
            if !dy_norm.is_finite() {
                break;
            }
            let rate = dy_norm_old.map(|old| dy_norm / old);
            // Two successive corrections below a tenth of scipy's Newton tolerance that stop
            // shrinking are rounding noise, not divergence (a state at rest on M): the iterate
            // is converged, and the error test still judges the step.
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

    /// The predictor y_predict = Σⱼ Dⱼ and ψ, with the error weights at the predictor.
    fn predict(&mut self) {
        let order = self.order;
        let w = &mut self.work;
        w.y_predict.copy_from_slice(&self.d[0]);
        w.psi.fill(0.0);
        for j in 1..=order {
            let g = self.co.gamma[j] / self.co.alpha[order];
            let parts = w.y_predict.iter_mut().zip(w.psi.iter_mut());
            for ((yp, ps), dj) in parts.zip(&self.d[j]) {
                *yp += dj;
                *ps += g * dj;
            }
        }
        error_weights_into(&mut w.weight, &w.y_predict, self.atol, self.rtol);
    }

    /// The corrector with its retries: a stale Jacobian is renewed at the predictor, a fresh
    /// one first refactorised at this c, then re-linearised once at the last iterate.
    /// Returns (converged, iterations).
    fn correct(&mut self, c: f64) -> (bool, usize) {
        let (mut converged, mut iterations);
        let mut resume = false;
        let mut relinearised = 0;
        if self.refresh_ahead > 0 && !self.jac_current {
            self.jacobian_at_predictor();
        }
        loop {
            self.factorise(c, false);
            (converged, iterations) = self.newton(c, resume);
            if converged || self.linear.refused() {
                // A refused factorisation: only another step size can help.
                break;
            }
            if self.linear.exact()
                && self.jac_current
                && self.linear.prepared_c().is_some_and(|fc| fc != c)
            {
                // With a fresh Jacobian, first refactorise at this step's own c (a Krylov
                // solve applies it already: only its Jacobian point can be at fault).
                self.factorise(c, true);
                resume = false;
                continue;
            }
            if !self.jac_current {
                // Re-evaluate the Jacobian where the step will end; the next `refresh_run`
                // steps do so before iterating (this step's acceptance counts one off).
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
            // The iterate and the gradient there must be finite (a non-finite one ends the
            // iteration with y_new unchanged and f non-finite).
            let finite = all_finite(&self.work.y_new) && all_finite(&self.work.f);
            if relinearised < NEWTON_RELINEARISE && finite {
                // Newton's method proper: go on from the last iterate with the Jacobian there.
                relinearised += 1;
                let at = std::mem::take(&mut self.work.y_new);
                self.evaluate_jacobian(&at);
                self.work.y_new = at;
                resume = true;
                continue;
            }
            break;
        }
        if !converged && relinearised > 0 {
            // The Jacobian sits at an abandoned iterate: the retry takes one at its predictor.
            self.jac_current = false;
        }
        (converged, iterations)
    }

    /// Rescales the differences to the step h·factor.
    fn rescale(&mut self, factor: f64) {
        change_d(&mut self.d, self.order, factor, &mut self.work.rows);
        self.n_equal_steps = 0;
    }

    /// Takes the accepted corrector: θ, the differences, and the Jacobian's bookkeeping.
    fn accept(&mut self, s_new: f64, iterations: usize) {
        let order = self.order;
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
            axpy(1.0, &hi[0], &mut lo[j]);
        }
    }

    /// After order + 1 equal steps: the order and step size with the largest step, from the
    /// error estimates at orders q − 1, q and q + 1.
    fn choose_order_and_step(&mut self, error_norm: f64, safety: f64) {
        let order = self.order;
        let co = &self.co;
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
        self.rescale(factor);
    }
}

impl DenseOutput for Bdf<'_, '_> {
    /// y(s) = D₀ + Σⱼ Dⱼ Πₘ₌₀^{j−1} (s − (sₙ − m h))/((m + 1) h), with the step size and order
    /// after the step (the differences are rescaled exactly).
    fn interpolate_into(&self, s: f64, out: &mut [f64]) -> Result<(), EngineError> {
        out.copy_from_slice(&self.d[0]);
        let mut p = 1.0;
        for j in 1..=self.order {
            let m = (j - 1) as f64;
            p *= (s - (self.s - self.h * m)) / (self.h * (m + 1.0));
            axpy(p, &self.d[j], out);
        }
        Ok(())
    }
}

impl Stepper for Bdf<'_, '_> {
    fn method(&self) -> &'static str {
        Method::Bdf.name()
    }

    fn clock(&self) -> f64 {
        self.s
    }

    fn state(&self) -> &[f64] {
        &self.y
    }

    /// One accepted step towards `s_stop` (never beyond it).
    fn step(&mut self, s_stop: f64) -> Result<(), StopReason> {
        loop {
            let min_step = 10.0 * (next_up(self.s) - self.s);
            if self.h < min_step {
                return Err(StopReason::SolverFailed {
                    message: format!(
                        "the step size fell below {min_step:.3e} at s = {:.6e}",
                        self.s
                    ),
                });
            }
            let mut s_new = self.s + self.h;
            if s_new > s_stop {
                s_new = s_stop;
                let factor = (s_new - self.s) / self.h;
                self.rescale(factor);
            }
            let h = s_new - self.s;
            self.h = h;
            let order = self.order;
            self.predict();
            let c = h / self.co.alpha[order];
            let (converged, iterations) = self.correct(c);
            if !converged {
                self.stats.nonlinear_failures += 1;
                self.h_cap = 0.9 * self.h;
                self.h *= 0.5;
                self.rescale(0.5);
                continue;
            }
            let safety = 0.9 * (2.0 * NEWTON_MAXITER as f64 + 1.0)
                / (2.0 * NEWTON_MAXITER as f64 + iterations as f64);
            let error_norm = {
                let w = &mut self.work;
                error_weights_into(&mut w.weight, &w.y_new, self.atol, self.rtol);
                self.co.error_const[order] * weighted_norm(&w.d, &w.weight)
            };
            if error_norm.is_nan() || error_norm > 1.0 {
                self.stats.error_test_failures += 1;
                let factor = if error_norm.is_finite() {
                    MIN_FACTOR.max(safety * error_norm.powf(-1.0 / (order as f64 + 1.0)))
                } else {
                    MIN_FACTOR
                };
                self.h *= factor;
                self.rescale(factor);
                continue;
            }
            self.accept(s_new, iterations);
            if self.n_equal_steps > order {
                self.choose_order_and_step(error_norm, safety);
            }
            return Ok(());
        }
    }

    fn stats(&self) -> SolverStats {
        self.stats.clone()
    }
}
