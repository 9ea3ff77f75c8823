//! The limiting slow flow on the critical manifold M (DESIGN.md §1, "The limiting flow on
//! M"): dθ/dτ = −P(θ)θ with θ(0) = Φ(θ_init), kept on M, where P(θ) is the orthogonal
//! projector onto T_θM = ker ∇²F(θ) (Morse–Bott). −P(θ)θ is the Riemannian gradient of
//! −½‖θ‖² on M, so ‖θ‖ decreases along the flow and its limits are KKT points of
//! min ½‖θ‖² on M (P(θ)θ = 0).
//!
//! Method: at θ on M, a symmetric eigendecomposition of ∇²F(θ) gives ker ∇²F as the
//! eigenvectors below the largest spectral gap. The flow is advanced by the embedded
//! Dormand–Prince 5(4) Runge–Kutta pair with local error control, and every accepted step
//! is retracted onto M by Newton steps in the normal space, θ ← θ − ∇²F(θ)⁺∇F(θ), until
//! ‖∇F‖ is at the retraction tolerance. Where the gap collapses or the kernel dimension
//! changes (a singular point of M, where the Morse–Bott assumption fails), the flow stops
//! and says so.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::la::{all_finite, norm, symmetric_eigen, DMat};
use crate::loss::{Loss, Observables};
use crate::observe::{Sample, Trajectory};

/// Options of the limiting flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitingOptions {
    /// Local error tolerance of the Runge–Kutta pair (relative; absolute is 1e-2 of it).
    pub rtol: f64,
    /// Retract until ‖∇F‖ ≤ `retraction_tol` · max(‖∇F(θ_init)‖, 1), or until Newton's
    /// steps stop reducing it (the rest of ∇F lies along directions of vanishing curvature).
    pub retraction_tol: f64,
    /// The flow fails if ‖∇F‖ stays above `drift_limit` · max(‖∇F(θ_init)‖, 1) after a
    /// retraction.
    pub drift_limit: f64,
    /// Integrate up to this slow time (the samples requested must lie below it).
    pub tau_end: f64,
    /// θ_M^∞ is declared once ‖P(θ)θ‖ ≤ `kkt_tol` · max(‖θ‖, 1); the flow goes on past
    /// `tau_end` up to `tau_limit_max` to find it.
    pub kkt_tol: f64,
    /// How far to go looking for θ_M^∞.
    pub tau_limit_max: f64,
    /// Warn when the spectral gap (μ_{k+1}/noise) falls below this.
    pub gap_warn: f64,
    /// Stop at a singular point when the gap falls below this.
    pub gap_stop: f64,
    /// Step budget.
    pub max_steps: usize,
}

impl Default for LimitingOptions {
    fn default() -> Self {
        Self {
            rtol: 1e-9,
            retraction_tol: 1e-12,
            drift_limit: 1e-8,
            tau_end: 10.0,
            kkt_tol: 1e-8,
            tau_limit_max: 200.0,
            gap_warn: 1e4,
            gap_stop: 1e2,
            max_steps: 100_000,
        }
    }
}

/// Why the limiting flow ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LimitingStop {
    /// It reached `tau_end` (and looked for θ_M^∞ beyond it).
    Finished,
    /// The spectral gap collapsed or the kernel dimension changed: a singular point of M.
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
    /// Newton's retraction onto M did not converge.
    RetractionFailed {
        /// Slow time of the stop.
        tau: f64,
        /// ‖∇F‖ reached.
        grad_norm: f64,
    },
    /// The step size collapsed or the budget ran out.
    StepFailed {
        /// Slow time of the stop.
        tau: f64,
        /// What happened.
        message: String,
    },
}

impl LimitingStop {
    /// A one-line description.
    pub fn describe(&self) -> String {
        match self {
            LimitingStop::Finished => "reached the end time".into(),
            LimitingStop::SingularPoint { tau, kernel_dim_before, kernel_dim_after, gap } => format!(
                "reached a singular point of M at τ = {tau:.4} (kernel dimension {kernel_dim_before} → {kernel_dim_after}, spectral gap {gap:.2e}): the Morse–Bott assumption fails there"
            ),
            LimitingStop::RetractionFailed { tau, grad_norm } => {
                format!("the retraction onto M failed at τ = {tau:.4} (‖∇F‖ = {grad_norm:.2e})")
            }
            LimitingStop::StepFailed { tau, message } => format!("stopped at τ = {tau:.4}: {message}"),
        }
    }
}

/// Work done by the limiting flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitingStats {
    /// Accepted steps.
    pub steps: usize,
    /// Rejected steps.
    pub rejected: usize,
    /// Spectral decompositions: SVDs of the residual Jacobian, or symmetric
    /// eigendecompositions of the Hessian for losses without residuals.
    pub decompositions: usize,
    /// Newton iterations of the retractions.
    pub retraction_iterations: usize,
    /// Wall time, seconds.
    pub wall_s: f64,
}

/// The limiting flow and what it found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitingResult {
    /// Samples at the requested slow times: the observables' columns, then
    /// `kkt_residual, spectral_gap, mu, kernel_dim`.
    pub trajectory: Trajectory,
    /// Why it ended.
    pub stop: LimitingStop,
    /// θ where it ended.
    pub theta_end: Vec<f64>,
    /// Slow time where it ended.
    pub tau_end: f64,
    /// θ_M^∞, if the KKT residual fell below its tolerance.
    pub theta_limit: Option<Vec<f64>>,
    /// The slow time at which it did.
    pub tau_limit: Option<f64>,
    /// max over the flow of ‖∇F(θ_M)‖ / ‖∇F(θ_init)‖: the drift off M.
    pub max_drift: f64,
    /// ‖P(θ)θ‖ where the flow ended.
    pub kkt_residual: f64,
    /// The smallest Morse–Bott constant μ (smallest non-zero Hessian eigenvalue) seen.
    pub min_mu: f64,
    /// The smallest spectral gap seen.
    pub min_gap: f64,
    /// Things a reader should know (small gaps…).
    pub warnings: Vec<String>,
    /// Work done.
    pub stats: LimitingStats,
}

/// The tangent-space structure at a point near M: an orthonormal basis of the normal
/// space, the curvature of F along each normal direction, and what the retraction needs.
struct Tangent {
    /// Orthonormal basis of the normal space N_θM (columns), d×ρ.
    normal: DMat,
    /// The curvature of F along each normal direction (Hessian eigenvalues, or s²/c).
    curvature: Vec<f64>,
    /// dim ker: d − ρ.
    k: usize,
    /// The separation of the normal space from the kernel: μ-side over kernel-side, both
    /// floored at the noise of the decomposition.
    gap: f64,
    /// How the retraction steps: Newton on ∇F, or Gauss–Newton on the residuals.
    retraction: Retraction,
}

enum Retraction {
    /// θ ← θ − Σ (uᵢ·∇F/μᵢ) uᵢ over the normal eigenvectors uᵢ (the columns of `normal`).
    Newton,
    /// θ ← θ − Σ (wᵢ·r/sᵢ) vᵢ over the ρ leading singular triplets (wᵢ left, vᵢ right).
    GaussNewton { left: DMat, singular: Vec<f64> },
}

/// The split of a decreasing sequence of magnitudes `mag` (already floored at the noise)
/// into ρ leading values and the rest: at `rho` if given, else at the largest ratio.
/// Returns (ρ, the ratio there).
fn split(mag: &[f64], rho: Option<usize>, noise: f64) -> (usize, f64) {
    let at = |r: usize| -> f64 {
        let hi = if r == 0 { f64::INFINITY } else { mag[r - 1] };
        let lo = mag.get(r).copied().unwrap_or(noise);
        hi / lo
    };
    if let Some(r) = rho {
        let r = r.min(mag.len());
        return (r, at(r));
    }
    let mut best = (0usize, 1.0f64);
    for r in 1..=mag.len() {
        let ratio = at(r);
        if ratio > best.1 {
            best = (r, ratio);
        }
    }
    best
}

impl Tangent {
    /// The structure at θ, from the residual Jacobian when the loss has residuals and from
    /// the Hessian otherwise. With `rho` the normal space keeps that dimension (the flow
    /// follows one branch of M and the gap is measured there); without, it is split at the
    /// largest relative jump of the spectrum.
    fn at(
        loss: &dyn Loss,
        theta: &[f64],
        rho: Option<usize>,
        stats: &mut LimitingStats,
    ) -> Result<Self, EngineError> {
        stats.decompositions += 1;
        match loss.residuals() {
            Some(res) => Self::from_residuals(res, theta, rho),
            None => Self::from_hessian(loss, theta, rho),
        }
    }

    fn from_hessian(
        loss: &dyn Loss,
        theta: &[f64],
        rho: Option<usize>,
    ) -> Result<Self, EngineError> {
        let h = loss.hessian(theta);
        let (values, vectors) = symmetric_eigen(h.as_ref()).map_err(EngineError::LinearAlgebra)?;
        let d = values.len();
        let top = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // Eigenvalues below the noise of a dense eigensolver count as zero.
        let noise = (top * f64::EPSILON * d as f64).max(f64::MIN_POSITIVE);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].abs().total_cmp(&values[a].abs()));
        let mag: Vec<f64> = order.iter().map(|&i| values[i].abs().max(noise)).collect();
        let (rho, gap) = split(&mag, rho, noise);
        let normal = DMat::from_fn(d, rho, |r, c| vectors[(r, order[c])]);
        let curvature = order[..rho].iter().map(|&i| values[i]).collect();
        Ok(Self {
            normal,
            curvature,
            k: d - rho,
            gap,
            retraction: Retraction::Newton,
        })
    }

    fn from_residuals(
        res: &dyn crate::loss::Residuals,
        theta: &[f64],
        rho: Option<usize>,
    ) -> Result<Self, EngineError> {
        let (m, d) = (res.count(), theta.len());
        let mut jac = DMat::zeros(m, d);
        res.jacobian_into(theta, jac.as_mut());
        let svd = jac.thin_svd().map_err(|e| {
            EngineError::LinearAlgebra(format!("SVD of the residual Jacobian: {e:?}"))
        })?;
        let q = m.min(d);
        let sv: Vec<f64> = (0..q).map(|i| svd.S().column_vector()[i]).collect();
        let mut order: Vec<usize> = (0..q).collect();
        order.sort_by(|&a, &b| sv[b].total_cmp(&sv[a]));
        let top = sv.iter().cloned().fold(0.0, f64::max);
        let noise = (top * f64::EPSILON * m.max(d) as f64).max(f64::MIN_POSITIVE);
        let mag: Vec<f64> = order.iter().map(|&i| sv[i].max(noise)).collect();
        let (rho, gap) = split(&mag, rho, noise);
        let (u, v) = (svd.U(), svd.V());
        let normal = DMat::from_fn(d, rho, |r, c| v[(r, order[c])]);
        let left = DMat::from_fn(m, rho, |r, c| u[(r, order[c])]);
        let singular: Vec<f64> = order[..rho].iter().map(|&i| sv[i]).collect();
        let c = res.scale();
        let curvature = singular.iter().map(|s| s * s / c).collect();
        Ok(Self {
            normal,
            curvature,
            k: d - rho,
            gap,
            retraction: Retraction::GaussNewton { left, singular },
        })
    }

    /// out ← P θ = θ − N Nᵀ θ.
    fn project(&self, theta: &[f64], out: &mut [f64]) {
        out.copy_from_slice(theta);
        for c in 0..self.normal.ncols() {
            let u = self.normal.col(c);
            let w: f64 = (0..theta.len()).map(|r| u[r] * theta[r]).sum();
            for (r, o) in out.iter_mut().enumerate() {
                *o -= w * u[r];
            }
        }
    }

    /// The smallest curvature μ along the normal space (the Morse–Bott constant here).
    fn mu(&self) -> f64 {
        self.curvature
            .iter()
            .fold(f64::INFINITY, |m, v| m.min(v.abs()))
    }

    /// step ← the retraction's step at θ (Newton on ∇F, or Gauss–Newton on r).
    fn retraction_step(&self, loss: &dyn Loss, theta: &[f64], g: &[f64], step: &mut [f64]) {
        step.fill(0.0);
        match &self.retraction {
            Retraction::Newton => {
                for (c, mu) in self.curvature.iter().enumerate() {
                    let u = self.normal.col(c);
                    let w: f64 = (0..g.len()).map(|r| u[r] * g[r]).sum::<f64>() / mu;
                    for (r, s) in step.iter_mut().enumerate() {
                        *s += w * u[r];
                    }
                }
            }
            Retraction::GaussNewton { left, singular } => {
                let res = loss
                    .residuals()
                    .expect("a Gauss–Newton tangent comes from residuals");
                let mut r = vec![0.0; res.count()];
                res.residuals_into(theta, &mut r);
                for (c, s) in singular.iter().enumerate() {
                    let wl = left.col(c);
                    let w: f64 = (0..r.len()).map(|i| wl[i] * r[i]).sum::<f64>() / s;
                    let v = self.normal.col(c);
                    for (i, st) in step.iter_mut().enumerate() {
                        *st += w * v[i];
                    }
                }
            }
        }
    }
}

struct Flow<'a> {
    loss: &'a dyn Loss,
    drift_limit: f64,
    /// dim of the normal space on the branch of M being followed (fixed after the start).
    rho: Option<usize>,
    grad_tol: f64,
    grad_scale: f64,
    stats: LimitingStats,
    max_drift: f64,
}

impl Flow<'_> {
    /// −P(θ)θ at θ (any point near M), with the tangent structure there.
    fn field(&mut self, theta: &[f64]) -> Result<(Vec<f64>, Tangent), EngineError> {
        let t = Tangent::at(self.loss, theta, self.rho, &mut self.stats)?;
        let mut f = vec![0.0; theta.len()];
        t.project(theta, &mut f);
        f.iter_mut().for_each(|x| *x = -*x);
        Ok((f, t))
    }

    /// Newton steps in the normal space, θ ← θ − ∇²F⁺∇F, until ‖∇F‖ ≤ grad_tol or a step
    /// no longer halves it; a step that makes it worse is undone. Returns ‖∇F‖ reached.
    fn retract(&mut self, theta: &mut [f64]) -> Result<f64, EngineError> {
        let mut g = self.loss.gradient(theta);
        let mut gn = norm(&g);
        let mut step = vec![0.0; theta.len()];
        for _ in 0..20 {
            if gn <= self.grad_tol {
                break;
            }
            let t = Tangent::at(self.loss, theta, self.rho, &mut self.stats)?;
            t.retraction_step(self.loss, theta, &g, &mut step);
            theta.iter_mut().zip(&step).for_each(|(x, s)| *x -= s);
            self.stats.retraction_iterations += 1;
            let mut g_new = self.loss.gradient(theta);
            let new = norm(&g_new);
            if new.is_nan() || new >= gn {
                theta.iter_mut().zip(&step).for_each(|(x, s)| *x += s);
                break;
            }
            std::mem::swap(&mut g, &mut g_new);
            let halved = new <= 0.5 * gn;
            gn = new;
            if !halved {
                break;
            }
        }
        self.max_drift = self.max_drift.max(gn / self.grad_scale);
        Ok(gn)
    }
}

/// Dormand–Prince 5(4): rows 2..7 of A (row 7 is the fifth-order weights, FSAL).
const DP_A: [[f64; 6]; 6] = [
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// Fifth-order minus fourth-order weights: the local error estimate.
const DP_E: [f64; 7] = [
    35.0 / 384.0 - 5179.0 / 57600.0,
    0.0,
    500.0 / 1113.0 - 7571.0 / 16695.0,
    125.0 / 192.0 - 393.0 / 640.0,
    -2187.0 / 6784.0 + 92097.0 / 339200.0,
    11.0 / 84.0 - 187.0 / 2100.0,
    -1.0 / 40.0,
];

fn scaled_err(err: &[f64], y: &[f64], rtol: f64) -> f64 {
    let atol = 1e-2 * rtol;
    let s: f64 = err
        .iter()
        .zip(y)
        .map(|(e, v)| (e / (atol + rtol * v.abs())).powi(2))
        .sum();
    (s / err.len().max(1) as f64).sqrt()
}

/// Integrates the limiting flow from `theta_start` (a point on or near M, usually
/// Φ(θ_init)) and records it at the slow times `taus` (ascending, within `tau_end`).
/// `grad_scale` is ‖∇F(θ_init)‖, the scale of the drift and retraction tolerances.
pub fn limiting_flow(
    loss: &dyn Loss,
    observables: &dyn Observables,
    theta_start: &[f64],
    grad_scale: f64,
    taus: &[f64],
    lambda_for_t: f64,
    opts: &LimitingOptions,
) -> Result<LimitingResult, EngineError> {
    if !all_finite(theta_start) || theta_start.len() != loss.dim() {
        return Err(EngineError::InvalidInput(
            "the limiting flow needs a finite start of the loss's dimension".into(),
        ));
    }
    let started = Instant::now();
    let scale = grad_scale.max(1.0);
    let mut flow = Flow {
        loss,
        drift_limit: opts.drift_limit * scale,
        rho: None,
        grad_tol: opts.retraction_tol * scale,
        grad_scale: grad_scale.max(f64::MIN_POSITIVE),
        stats: LimitingStats::default(),
        max_drift: 0.0,
    };
    let mut theta = theta_start.to_vec();
    let mut warnings = Vec::new();
    let g0 = flow.retract(&mut theta)?;
    if g0 > flow.drift_limit {
        let stop = LimitingStop::RetractionFailed {
            tau: 0.0,
            grad_norm: g0,
        };
        return Ok(finish(
            flow,
            Trajectory::default(),
            stop,
            theta,
            0.0,
            None,
            f64::NAN,
            f64::NAN,
            f64::INFINITY,
            warnings,
            started,
        ));
    }
    let mut columns = observables.extra_columns();
    columns.extend(["kkt_residual", "spectral_gap", "mu", "kernel_dim"].map(String::from));
    let mut traj = Trajectory {
        extra_columns: columns,
        ..Trajectory::default()
    };
    let (mut f, mut tan) = flow.field(&theta)?;
    flow.rho = Some(tan.normal.ncols());
    let (mut min_mu, mut min_gap) = (tan.mu(), tan.gap);
    let record = |traj: &mut Trajectory,
                  flow: &Flow<'_>,
                  tau: f64,
                  theta: &[f64],
                  f: &[f64],
                  tan: &Tangent| {
        let g = flow.loss.gradient(theta);
        let mut extra = Vec::new();
        observables.extra_values(theta, &mut extra);
        extra.extend([norm(f), tan.gap, tan.mu(), tan.k as f64]);
        traj.samples.push(Sample {
            t: if lambda_for_t > 0.0 {
                tau / lambda_for_t
            } else {
                tau
            },
            tau,
            train_loss: flow.loss.value(theta),
            test_loss: observables.test_loss(theta),
            theta_norm: norm(theta),
            grad_norm: norm(&g),
            extra,
        });
        traj.states.push(theta.to_vec());
    };
    let mut next = 0;
    while next < taus.len() && taus[next] <= 0.0 {
        record(&mut traj, &flow, taus[next], &theta, &f, &tan);
        next += 1;
    }
    let mut tau = 0.0f64;
    let mut h = (0.01f64).min(opts.tau_end);
    let mut theta_limit = None;
    let mut tau_limit = None;
    let mut gap_warned = false;
    let kkt = |theta: &[f64], f: &[f64]| norm(f) / norm(theta).max(1.0);
    let stop = loop {
        if kkt(&theta, &f) <= opts.kkt_tol && theta_limit.is_none() {
            theta_limit = Some(theta.clone());
            tau_limit = Some(tau);
        }
        if tau >= opts.tau_end && (theta_limit.is_some() || tau >= opts.tau_limit_max) {
            break LimitingStop::Finished;
        }
        if flow.stats.steps >= opts.max_steps {
            break LimitingStop::StepFailed {
                tau,
                message: format!("the step budget of {} ran out", opts.max_steps),
            };
        }
        // Do not step over the end of the record; beyond it, only look for θ_M^∞.
        let target = if tau < opts.tau_end {
            opts.tau_end
        } else {
            opts.tau_limit_max
        };
        let hh = h.min(target - tau);
        // Dormand–Prince 5(4): seven stages, the last at the fifth-order solution.
        let n = theta.len();
        let mut ks: Vec<Vec<f64>> = Vec::with_capacity(7);
        ks.push(f.clone());
        let mut y5 = theta.clone();
        for (i, row) in DP_A.iter().enumerate() {
            let mut y = theta.clone();
            for (j, a) in row.iter().enumerate().take(i + 1) {
                if *a != 0.0 {
                    crate::la::axpy(hh * a, &ks[j], &mut y);
                }
            }
            let (k, _) = flow.field(&y)?;
            ks.push(k);
            if i == DP_A.len() - 1 {
                y5 = y;
            }
        }
        let err: Vec<f64> = (0..n)
            .map(|r| hh * (0..7).map(|j| DP_E[j] * ks[j][r]).sum::<f64>())
            .collect();
        let e = scaled_err(&err, &y5, opts.rtol);
        let y3 = y5;
        if e.is_nan() || e > 1.0 {
            flow.stats.rejected += 1;
            h = hh * (0.9 * e.powf(-0.2)).clamp(0.2, 0.9);
            if h < 1e-14 * (1.0 + tau) {
                break LimitingStop::StepFailed {
                    tau,
                    message: format!("the step size collapsed to {h:.2e}"),
                };
            }
            continue;
        }
        // Accept, retract onto M, and look at the tangent structure there.
        let mut y_new = y3;
        let gn = flow.retract(&mut y_new)?;
        if gn > flow.drift_limit {
            break LimitingStop::RetractionFailed {
                tau: tau + hh,
                grad_norm: gn,
            };
        }
        let (f_new, tan_new) = flow.field(&y_new)?;
        if tan_new.gap < opts.gap_stop {
            // What the spectrum looks like there, split afresh at its largest gap.
            let fresh = Tangent::at(loss, &y_new, None, &mut flow.stats)?;
            break LimitingStop::SingularPoint {
                tau: tau + hh,
                kernel_dim_before: tan.k,
                kernel_dim_after: fresh.k,
                gap: tan_new.gap,
            };
        }
        // Samples inside the step: cubic Hermite between the two points on M, retracted.
        while next < taus.len() && taus[next] <= tau + hh {
            let s = (taus[next] - tau) / hh;
            let (h00, h10, h01, h11) = (
                2.0 * s.powi(3) - 3.0 * s * s + 1.0,
                s.powi(3) - 2.0 * s * s + s,
                -2.0 * s.powi(3) + 3.0 * s * s,
                s.powi(3) - s * s,
            );
            let mut y: Vec<f64> = (0..n)
                .map(|i| h00 * theta[i] + h10 * hh * f[i] + h01 * y_new[i] + h11 * hh * f_new[i])
                .collect();
            flow.retract(&mut y)?;
            let (fy, ty) = flow.field(&y)?;
            record(&mut traj, &flow, taus[next], &y, &fy, &ty);
            next += 1;
        }
        flow.stats.steps += 1;
        tau += hh;
        theta = y_new;
        f = f_new;
        tan = tan_new;
        min_mu = min_mu.min(tan.mu());
        min_gap = min_gap.min(tan.gap);
        if tan.gap < opts.gap_warn && !gap_warned {
            gap_warned = true;
            warnings.push(format!(
                "the spectral gap of ∇²F fell to {:.2e} at τ = {tau:.4} (μ = {:.2e}): the flow approaches a singular point of M, where the Morse–Bott assumption fails",
                tan.gap,
                tan.mu()
            ));
        }
        h = hh * (0.9 * e.max(1e-10).powf(-0.2)).clamp(0.2, 5.0);
    };
    let kkt_final = kkt(&theta, &f);
    Ok(finish(
        flow,
        traj,
        stop,
        theta,
        tau,
        theta_limit.zip(tau_limit),
        kkt_final,
        min_mu,
        min_gap,
        warnings,
        started,
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    flow: Flow<'_>,
    trajectory: Trajectory,
    stop: LimitingStop,
    theta_end: Vec<f64>,
    tau_end: f64,
    limit: Option<(Vec<f64>, f64)>,
    kkt_residual: f64,
    min_mu: f64,
    min_gap: f64,
    warnings: Vec<String>,
    started: Instant,
) -> LimitingResult {
    let mut stats = flow.stats;
    stats.wall_s = started.elapsed().as_secs_f64();
    let (theta_limit, tau_limit) = match limit {
        Some((t, tau)) => (Some(t), Some(tau)),
        None => (None, None),
    };
    LimitingResult {
        trajectory,
        stop,
        theta_end,
        tau_end,
        theta_limit,
        tau_limit,
        max_drift: flow.max_drift,
        kkt_residual,
        min_mu,
        min_gap,
        warnings,
        stats,
    }
}

/// The KKT structure of a point near M (Prop. 3): ‖P(θ)θ‖/max(‖θ‖, 1) with P the projector
/// onto the kernel of ∇²F (split at the spectrum's largest gap), and the Morse–Bott
/// constant μ and gap there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KktInfo {
    /// ‖P(θ)θ‖/max(‖θ‖, 1).
    pub residual: f64,
    /// The smallest non-zero curvature μ.
    pub mu: f64,
    /// The spectral gap of the split.
    pub gap: f64,
    /// dim ker ∇²F.
    pub kernel_dim: usize,
}

/// See [`KktInfo`].
pub fn kkt_info(loss: &dyn Loss, theta: &[f64]) -> Result<KktInfo, EngineError> {
    let mut stats = LimitingStats::default();
    let t = Tangent::at(loss, theta, None, &mut stats)?;
    let mut p = vec![0.0; theta.len()];
    t.project(theta, &mut p);
    Ok(KktInfo {
        residual: norm(&p) / norm(theta).max(1.0),
        mu: t.mu(),
        gap: t.gap,
        kernel_dim: t.k,
    })
}
