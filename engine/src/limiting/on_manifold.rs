//! The loss as the flow on M sees it: the branch followed (the rank ρ of the normal space,
//! and for the Gram projector the rows of J standing for it), the field −P(θ)θ, the
//! retraction, what the spectral split reads at a point, and the work counters, shared by
//! the stepper, its dense output and the recorded columns.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::loss::{Loss, Residuals};
use crate::manifold::{
    fresh_rows, rayleigh_sigma, retract, retraction_step, spectrum, GramFactor, GramSolver, Rows,
    RowsAt, TangentProjector, WarmStart,
};

/// How the limiting flow reaches the normal space of M.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Projector {
    /// Through rows of J and a Cholesky factor of their Gram matrix for a least-squares
    /// loss, a spectral decomposition otherwise.
    #[default]
    Auto,
    /// A spectral decomposition at every evaluation: the SVD of J for a least-squares loss,
    /// the symmetric eigendecomposition of ∇²F otherwise.
    Spectral,
    /// Rows of J and a Cholesky factor of J_R J_Rᵀ (DESIGN.md §4); least-squares losses only.
    Gram,
}

impl Projector {
    /// The name used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Projector::Auto => "auto",
            Projector::Spectral => "spectral",
            Projector::Gram => "gram",
        }
    }
}

/// A spectral decomposition costing up to this many flops' worth of min(m,d)²·max(m,d) is
/// affordable as a check near a singular point and for the split at the start.
const SPECTRAL_BUDGET: f64 = 2e9;

/// ... and at every evaluation up to this cost (about 10 ms; matrix completion's defaults,
/// 280×400, cost 3·10⁷). Above it the Gram projector carries on near singular points as long
/// as its factorisations succeed (at d = 1800 handing over cost 40 s of a 52 s flow).
const SPECTRAL_ROUTINE: f64 = 1e8;

/// Relative accuracy asked of each projection and retraction solve (the rounding floor
/// ε κ(J_R) ends them earlier when it is higher).
const SOLVE_RTOL: f64 = 1e-11;

/// The kept rows are chosen afresh where σ_min(J_R) falls below this fraction of σ_ρ(J):
/// the field off M (at the Runge–Kutta stages) tilts by ~1/σ_min(J_R).
const RESELECT_BELOW: f64 = 0.1;

/// Beyond this condition number σ₁/σ_min(J_R) of the kept rows (their Gram matrix's is its
/// square, 10¹² here) the flow hands over to the spectral projector where one is affordable:
/// the Cholesky factor has lost most of its digits and a singular point of M is near.
const KAPPA_SWITCH: f64 = 1e6;

/// With a shared factor and every row kept, the factor and the spectrum are refreshed at an
/// accepted step only every this many steps, or sooner when the solves slow down or the gap
/// nears the threshold of a singular point; between refreshes σ_ρ is tracked by the
/// Rayleigh quotient of the last refresh's eigenvector.
const REUSE_STEPS: usize = 4;

/// ... or when the field's solves have averaged more than this many iterations.
const REFRESH_CG: f64 = 6.0;

/// Between refreshes of a shared factor: where σ_ρ is tracked and how the solves have gone.
#[derive(Default)]
struct Tracking {
    /// The eigenvector of JJᵀ for its smallest eigenvalue at the last refresh.
    u: Option<Vec<f64>>,
    steps: usize,
    fields: usize,
    cg: usize,
}

/// What the spectral split reads at a point on M.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Inspection {
    /// The spectral gap of the split.
    pub(crate) gap: f64,
    /// The Morse–Bott constant μ: the smallest curvature along the normal space.
    pub(crate) mu: f64,
    /// dim ker ∇²F on the branch: d − ρ.
    pub(crate) kernel_dim: usize,
}

impl From<&TangentProjector> for Inspection {
    fn from(p: &TangentProjector) -> Self {
        Self {
            gap: p.gap,
            mu: p.mu(),
            kernel_dim: p.kernel_dim,
        }
    }
}

/// The branch of M followed.
enum Branch {
    Unset,
    Spectral { rho: usize },
    Gram { rows: Arc<Rows> },
}

/// Work counters.
#[derive(Default)]
struct Counters {
    decompositions: AtomicUsize,
    factorisations: AtomicUsize,
    cg_iterations: AtomicUsize,
    retraction_iterations: AtomicUsize,
    spectral_checks: AtomicUsize,
    reselections: AtomicUsize,
    switches: AtomicUsize,
}

/// The work done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Work {
    pub(crate) decompositions: usize,
    pub(crate) factorisations: usize,
    pub(crate) cg_iterations: usize,
    pub(crate) retraction_iterations: usize,
    pub(crate) spectral_checks: usize,
    pub(crate) reselections: usize,
    pub(crate) switches: usize,
}

pub(crate) struct OnManifold<'a> {
    pub(crate) loss: &'a dyn Loss,
    /// True while the Gram projector is used (the loss has residuals and the flow has not
    /// switched to the spectral one near a singular point).
    gram: AtomicBool,
    /// The projector the flow started with.
    chosen: Projector,
    branch: Mutex<Branch>,
    /// The factor shared between nearby points (large ρ).
    shared: Mutex<Option<Arc<GramFactor>>>,
    /// Where the spectrum's Lanczos iterations start, and the last inspection (large ρ: the
    /// samples between accepted steps take its gap and μ).
    warm: Mutex<(WarmStart, Option<Inspection>)>,
    /// The last projection's G_R⁻¹J_Rθ, where the next solve with a shared factor starts.
    last_y: Mutex<Option<Vec<f64>>>,
    tracking: Mutex<Tracking>,
    grad_tol: f64,
    grad_scale: f64,
    /// Below this gap the Gram estimate is checked by a spectral decomposition, where one is
    /// affordable.
    verify_below: f64,
    /// From this ρ on one factor serves several points (see `LimitingOptions`).
    share_from: usize,
    counters: Counters,
    /// The bits of the largest ‖∇F‖/‖∇F(θ_init)‖ after a retraction.
    max_drift: AtomicU64,
}

impl<'a> OnManifold<'a> {
    pub(crate) fn new(
        loss: &'a dyn Loss,
        projector: Projector,
        grad_tol: f64,
        grad_scale: f64,
        verify_below: f64,
        share_from: usize,
    ) -> Result<Self, EngineError> {
        let gram = match (projector, loss.residuals()) {
            (Projector::Spectral, _) => false,
            (_, Some(_)) => true,
            (Projector::Auto, None) => false,
            (Projector::Gram, None) => {
                return Err(EngineError::InvalidInput(
                    "the Gram projector needs a least-squares loss (residuals)".into(),
                ))
            }
        };
        Ok(Self {
            loss,
            gram: AtomicBool::new(gram),
            chosen: if gram {
                Projector::Gram
            } else {
                Projector::Spectral
            },
            branch: Mutex::new(Branch::Unset),
            shared: Mutex::new(None),
            warm: Mutex::new((WarmStart::default(), None)),
            last_y: Mutex::new(None),
            tracking: Mutex::new(Tracking::default()),
            grad_tol,
            grad_scale,
            verify_below,
            share_from,
            counters: Counters::default(),
            max_drift: AtomicU64::new(0f64.to_bits()),
        })
    }

    /// The projector the flow started with ("gram" or "spectral").
    pub(crate) fn projector(&self) -> Projector {
        self.chosen
    }

    /// The residuals, while the Gram projector is used.
    fn gram(&self) -> Option<&'a dyn Residuals> {
        if self.gram.load(Relaxed) {
            self.loss.residuals()
        } else {
            None
        }
    }

    /// From here on the spectral projector, on the same branch: where J's kept rows are too
    /// ill-conditioned for their Gram matrix (near a singular point), when a spectral
    /// decomposition is affordable.
    fn switch_to_spectral(&self) {
        if self.gram.swap(false, Relaxed) {
            let rho = self.spectral_rho().unwrap_or(0);
            *self.branch.lock().expect("branch lock") = Branch::Spectral { rho };
            self.counters.switches.fetch_add(1, Relaxed);
        }
    }

    /// `gram(res)` while the Gram projector is used, `spectral()` otherwise. Where the Gram
    /// projector fails (its rows lost rank), the spectral one answers: from then on where it
    /// is affordable at every evaluation, for this point only where it is affordable now and
    /// then.
    fn either<T>(
        &self,
        gram: impl FnOnce(&'a dyn Residuals) -> Result<T, EngineError>,
        spectral: impl FnOnce() -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        match self.gram() {
            None => spectral(),
            Some(res) => match gram(res) {
                Err(EngineError::LinearAlgebra(_)) if self.spectral_routine() => {
                    self.switch_to_spectral();
                    spectral()
                }
                Err(EngineError::LinearAlgebra(_)) if self.spectral_affordable() => spectral(),
                other => other,
            },
        }
    }

    /// The cost of one spectral decomposition (flops, up to a constant).
    fn spectral_cost(&self) -> f64 {
        let d = self.loss.dim() as f64;
        let m = self.loss.residuals().map_or(d, |r| r.count() as f64);
        m.min(d).powi(2) * m.max(d)
    }

    /// True when a spectral decomposition costs at most [`SPECTRAL_BUDGET`]: affordable now
    /// and then (the split at the start, the checks near a singular point, the stop).
    fn spectral_affordable(&self) -> bool {
        self.spectral_cost() <= SPECTRAL_BUDGET
    }

    /// True when one costs at most [`SPECTRAL_ROUTINE`]: affordable at every evaluation, so
    /// that the flow may hand over to the spectral projector near a singular point.
    fn spectral_routine(&self) -> bool {
        self.spectral_cost() <= SPECTRAL_ROUTINE
    }

    fn spectral(&self, theta: &[f64], rho: Option<usize>) -> Result<TangentProjector, EngineError> {
        self.counters.decompositions.fetch_add(1, Relaxed);
        TangentProjector::at(self.loss, theta, rho)
    }

    fn spectral_rho(&self) -> Option<usize> {
        match &*self.branch.lock().expect("branch lock") {
            Branch::Spectral { rho } => Some(*rho),
            Branch::Gram { rows } => Some(rows.rank()),
            Branch::Unset => None,
        }
    }

    fn rows(&self) -> Result<Arc<Rows>, EngineError> {
        match &*self.branch.lock().expect("branch lock") {
            Branch::Gram { rows } => Ok(rows.clone()),
            _ => Err(EngineError::InvalidInput(
                "the branch of M is not fixed yet".into(),
            )),
        }
    }

    fn shares(&self, rows: &Arc<Rows>) -> bool {
        rows.rank() >= self.share_from
    }

    /// J's rows at θ and a factor for its solves: taken there unless `reuse` and a shared
    /// one exists. When the kept rows have lost rank they are chosen afresh (same ρ) once.
    fn gram_at(
        &self,
        res: &'a dyn Residuals,
        theta: &[f64],
        reuse: bool,
    ) -> Result<(RowsAt<'a>, Arc<GramFactor>), EngineError> {
        let rows = self.rows()?;
        let share = self.shares(&rows);
        if reuse && share {
            if let Some(f) = self.shared.lock().expect("factor lock").clone() {
                return Ok((RowsAt::new(res, theta, rows), f));
            }
        }
        let at = RowsAt::new(res, theta, rows.clone());
        self.counters.factorisations.fetch_add(1, Relaxed);
        let (at, factor) = match GramFactor::new(&at) {
            Ok(f) => (at, f),
            Err(_) => {
                let (fresh, _) = fresh_rows(res, theta, Some(rows.rank()));
                let fresh = Arc::new(fresh);
                *self.branch.lock().expect("branch lock") = Branch::Gram {
                    rows: fresh.clone(),
                };
                let at = RowsAt::new(res, theta, fresh);
                self.counters.factorisations.fetch_add(1, Relaxed);
                let f = GramFactor::new(&at)?;
                (at, f)
            }
        };
        let factor = Arc::new(factor);
        if share {
            *self.shared.lock().expect("factor lock") = Some(factor.clone());
        }
        Ok((at, factor))
    }

    /// Fixes the branch at θ (near M) from a fresh split at the spectrum's largest gap.
    pub(crate) fn start(&self, theta: &[f64]) -> Result<(), EngineError> {
        let branch = match self.gram() {
            None => Branch::Spectral {
                rho: self.spectral(theta, None)?.normal.ncols(),
            },
            Some(res) => {
                let rho = if self.spectral_affordable() {
                    Some(self.spectral(theta, None)?.normal.ncols())
                } else {
                    None
                };
                let (rows, _) = fresh_rows(res, theta, rho);
                Branch::Gram {
                    rows: Arc::new(rows),
                }
            }
        };
        *self.branch.lock().expect("branch lock") = branch;
        Ok(())
    }

    /// −P(θ)θ.
    pub(crate) fn field(&self, theta: &[f64]) -> Result<Vec<f64>, EngineError> {
        self.either(
            |res| self.gram_field(res, theta),
            || {
                let mut f = vec![0.0; theta.len()];
                self.spectral(theta, self.spectral_rho())?
                    .project(theta, &mut f);
                f.iter_mut().for_each(|x| *x = -*x);
                Ok(f)
            },
        )
    }

    fn gram_field(&self, res: &'a dyn Residuals, theta: &[f64]) -> Result<Vec<f64>, EngineError> {
        let mut f = vec![0.0; theta.len()];
        let (at, factor) = self.gram_at(res, theta, true)?;
        let solver = GramSolver {
            rows: &at,
            factor: &factor,
        };
        let shared = self.shares(&self.rows()?);
        let mut last = self.last_y.lock().expect("y lock");
        let y0 = last.as_deref().filter(|_| shared);
        let (it, y) = solver.project(theta, &mut f, SOLVE_RTOL, y0);
        if shared {
            *last = Some(y);
            let mut tr = self.tracking.lock().expect("tracking lock");
            tr.fields += 1;
            tr.cg += it;
        }
        self.counters.cg_iterations.fetch_add(it, Relaxed);
        f.iter_mut().for_each(|x| *x = -*x);
        Ok(f)
    }

    /// −P(θ)θ and what the split reads at θ on the branch followed. Where the Gram projector
    /// fails and no spectral decomposition is affordable, the split reads a zero gap: the
    /// flow is at a singular point as far as it can tell.
    pub(crate) fn inspect(&self, theta: &[f64]) -> Result<(Vec<f64>, Inspection), EngineError> {
        let spectral = || {
            let p = self.spectral(theta, self.spectral_rho())?;
            let mut f = vec![0.0; theta.len()];
            p.project(theta, &mut f);
            f.iter_mut().for_each(|x| *x = -*x);
            Ok(Some((f, Inspection::from(&p))))
        };
        match self.either(|res| self.gram_inspect(res, theta), spectral) {
            Ok(Some(found)) => Ok(found),
            // Switched to the spectral projector.
            Ok(None) => self.inspect(theta),
            Err(EngineError::LinearAlgebra(_)) if self.gram().is_some() => {
                let lost = Inspection {
                    gap: 0.0,
                    mu: 0.0,
                    kernel_dim: theta.len() - self.spectral_rho().unwrap_or(0),
                };
                Ok((
                    self.field(theta)
                        .unwrap_or_else(|_| vec![f64::NAN; theta.len()]),
                    lost,
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// The Gram projector's inspection; None when it hands over to the spectral one.
    fn gram_inspect(
        &self,
        res: &'a dyn Residuals,
        theta: &[f64],
    ) -> Result<Option<(Vec<f64>, Inspection)>, EngineError> {
        let rows = self.rows()?;
        let rho = rows.rank();
        let tracked = self.shares(&rows) && rows.rest.is_empty();
        if tracked {
            if let Some(found) = self.tracked(res, theta, &rows)? {
                return Ok(Some(found));
            }
        }
        let (mut at, mut factor) = self.gram_at(res, theta, false)?;
        let mut warm = self.warm.lock().expect("warm lock");
        let mut spec = spectrum(&at, &factor, &mut warm.0)?;
        if spec.sigma_kept < RESELECT_BELOW * spec.sigma_rho {
            // The kept rows have become much worse conditioned than J: choose them afresh.
            let (fresh, _) = fresh_rows(res, theta, Some(rho));
            *self.branch.lock().expect("branch lock") = Branch::Gram {
                rows: Arc::new(fresh),
            };
            self.counters.reselections.fetch_add(1, Relaxed);
            *self.last_y.lock().expect("y lock") = None;
            (at, factor) = self.gram_at(res, theta, false)?;
            warm.0 = WarmStart::default();
            spec = spectrum(&at, &factor, &mut warm.0)?;
        }
        if spec.sigma_max > KAPPA_SWITCH * spec.sigma_kept && self.spectral_routine() {
            drop(warm);
            self.switch_to_spectral();
            return Ok(None);
        }
        let solver = GramSolver {
            rows: &at,
            factor: &factor,
        };
        let mut f = vec![0.0; theta.len()];
        let (it, y) = solver.project(theta, &mut f, SOLVE_RTOL, None);
        *self.last_y.lock().expect("y lock") = Some(y);
        self.counters.cg_iterations.fetch_add(it, Relaxed);
        f.iter_mut().for_each(|x| *x = -*x);
        let mut info = Inspection {
            gap: spec.gap(),
            mu: spec.sigma_rho.powi(2) / res.scale(),
            kernel_dim: theta.len() - rho,
        };
        if info.gap < self.verify_below && self.spectral_affordable() {
            self.counters.spectral_checks.fetch_add(1, Relaxed);
            info = Inspection::from(&self.spectral(theta, Some(rho))?);
        }
        warm.1 = Some(info);
        if tracked {
            *self.tracking.lock().expect("tracking lock") = Tracking {
                u: warm.0.low_row_vector(&factor),
                ..Tracking::default()
            };
        }
        Ok(Some((f, info)))
    }

    /// The inspection without a new factor, while the shared one still serves (see
    /// `REUSE_STEPS`); None when it is time to refresh.
    fn tracked(
        &self,
        res: &'a dyn Residuals,
        theta: &[f64],
        rows: &Arc<Rows>,
    ) -> Result<Option<(Vec<f64>, Inspection)>, EngineError> {
        let u = {
            let tr = self.tracking.lock().expect("tracking lock");
            let last = self.warm.lock().expect("warm lock").1;
            let calm = tr.steps + 1 < REUSE_STEPS
                && tr.cg as f64 <= REFRESH_CG * tr.fields as f64
                && last.is_some_and(|i| i.gap >= self.verify_below);
            match (&tr.u, calm) {
                (Some(u), true) => u.clone(),
                _ => return Ok(None),
            }
        };
        let f = self.field(theta)?;
        let at = RowsAt::new(res, theta, rows.clone());
        let sigma_rho = rayleigh_sigma(&at, &u);
        let mut warm = self.warm.lock().expect("warm lock");
        let sigma_max = warm.0.sigma_max(&at);
        let (m, d) = (res.count(), theta.len());
        let noise = (sigma_max * f64::EPSILON * m.max(d) as f64).max(f64::MIN_POSITIVE);
        let info = Inspection {
            gap: sigma_rho / noise,
            mu: sigma_rho.powi(2) / res.scale(),
            kernel_dim: d - rows.rank(),
        };
        warm.1 = Some(info);
        self.tracking.lock().expect("tracking lock").steps += 1;
        Ok(Some((f, info)))
    }

    /// What a recorded sample shows: ‖P(θ)θ‖ and the split. With a shared factor (large ρ)
    /// the split is that of the last accepted step rather than read afresh (a factorisation
    /// per sample would cost more than the steps).
    pub(crate) fn sample(&self, theta: &[f64]) -> Result<(Vec<f64>, Inspection), EngineError> {
        let shared = match &*self.branch.lock().expect("branch lock") {
            Branch::Gram { rows } => self.shares(rows),
            _ => false,
        };
        let last = self.warm.lock().expect("warm lock").1;
        match (shared, last) {
            (true, Some(info)) => Ok((self.field(theta)?, info)),
            _ => self.inspect(theta),
        }
    }

    /// The kernel dimension of a fresh split at θ (at its largest gap).
    pub(crate) fn fresh_kernel_dim(&self, theta: &[f64]) -> Result<usize, EngineError> {
        match self.gram() {
            Some(res) if !self.spectral_affordable() => {
                Ok(theta.len() - fresh_rows(res, theta, None).0.rank())
            }
            _ => Ok(self.spectral(theta, None)?.kernel_dim),
        }
    }

    /// Retracts θ onto M; returns ‖∇F‖ reached (and tracks the largest drift).
    pub(crate) fn retract(&self, theta: &mut [f64]) -> Result<f64, EngineError> {
        let mut iterations = 0;
        let gn = retract(
            self.loss,
            theta,
            self.grad_tol,
            |x, g, step| match self.gram() {
                None => self.spectral_retraction_step(x, g, step),
                Some(res) => match self.gram_retraction_step(res, x, g, step) {
                    Err(EngineError::LinearAlgebra(_)) if self.spectral_routine() => {
                        self.switch_to_spectral();
                        self.spectral_retraction_step(x, g, step)
                    }
                    other => other,
                },
            },
            &mut iterations,
        )?;
        self.counters
            .retraction_iterations
            .fetch_add(iterations, Relaxed);
        let drift = self.max_drift().max(gn / self.grad_scale);
        self.max_drift.store(drift.to_bits(), Relaxed);
        Ok(gn)
    }

    fn spectral_retraction_step(
        &self,
        x: &[f64],
        g: &[f64],
        step: &mut [f64],
    ) -> Result<(), EngineError> {
        let p = self.spectral(x, self.spectral_rho())?;
        retraction_step(&p, self.loss, x, g, step);
        Ok(())
    }

    /// The Gram projector's retraction step at x (gradient g): Gauss–Newton on the gradient
    /// in the normal space with the factor taken at x, or on the kept rows' residuals with a
    /// shared factor.
    fn gram_retraction_step(
        &self,
        res: &'a dyn Residuals,
        x: &[f64],
        g: &[f64],
        step: &mut [f64],
    ) -> Result<(), EngineError> {
        let rows = self.rows()?;
        let shared = self.shares(&rows);
        let (at, factor) = self.gram_at(res, x, !shared)?;
        let solver = GramSolver {
            rows: &at,
            factor: &factor,
        };
        if shared {
            let mut r = vec![0.0; res.count()];
            res.residuals_into(x, &mut r);
            let it = solver.min_norm_step(&r, step, SOLVE_RTOL);
            self.counters.cg_iterations.fetch_add(it, Relaxed);
        } else {
            let c_grad: Vec<f64> = g.iter().map(|v| v * res.scale()).collect();
            solver.newton_step(&c_grad, step);
        }
        Ok(())
    }

    /// The largest ‖∇F‖/‖∇F(θ_init)‖ after a retraction so far.
    pub(crate) fn max_drift(&self) -> f64 {
        f64::from_bits(self.max_drift.load(Relaxed))
    }

    /// The work so far.
    pub(crate) fn work(&self) -> Work {
        let c = &self.counters;
        Work {
            decompositions: c.decompositions.load(Relaxed),
            factorisations: c.factorisations.load(Relaxed),
            cg_iterations: c.cg_iterations.load(Relaxed),
            retraction_iterations: c.retraction_iterations.load(Relaxed),
            spectral_checks: c.spectral_checks.load(Relaxed),
            reselections: c.reselections.load(Relaxed),
            switches: c.switches.load(Relaxed),
        }
    }
}
