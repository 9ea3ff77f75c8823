//! The normal space of M through rows of the residual Jacobian (DESIGN.md §4). On a branch of
//! M where J has rank ρ, ρ of its rows, R, span its row space, and
//! P(θ)v = v − J_Rᵀ(J_R J_Rᵀ)⁻¹J_R v: a ρ×ρ Cholesky factorisation of G_R = J_R J_Rᵀ instead
//! of an SVD of J. Every solve with G_R runs by conjugate gradients preconditioned with a
//! factor of G_R, the residual recomputed through J_R before it is trusted: with the factor
//! taken at the same point that converges in a couple of iterations to the accuracy of the
//! corrected semi-normal equations (error ~ ε κ(J_R) rather than ε κ(J_R)²); a factor taken
//! at a nearby point (large ρ, where a factorisation costs as much as many solves) serves as
//! a preconditioner.
//!
//! What the spectral split read off the SVD is estimated from the same factor: σ_ρ (so
//! μ = σ_ρ²/c) by Lanczos on the inverse of J's Gram matrix on the normal space, σ_{ρ+1} (the
//! largest singular value J gains off the branch) from the other rows projected onto the
//! tangent space, σ₁ by Lanczos on JᵀJ.

use std::sync::{Arc, OnceLock};

use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::{Accum, Par};

use crate::error::EngineError;
use crate::la::{dot, lanczos_max, matvec_into, norm, symmetric_eigen, DMat, Factorisation};
use crate::loss::Residuals;
use crate::manifold::morse_bott::split;

/// Conjugate-gradient iterations at most in one solve.
const MAX_CG: usize = 60;

/// Lanczos steps at most of an estimate.
const LANCZOS_STEPS: usize = 40;

/// Above this many discarded rows σ_{ρ+1} is estimated by Lanczos instead of from all of them.
const DENSE_REST: usize = 400;

/// The rows of J standing for its row space on the branch followed: `kept` (ρ of them) and
/// the `rest`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rows {
    pub(crate) kept: Vec<usize>,
    pub(crate) rest: Vec<usize>,
}

impl Rows {
    /// Rows chosen by Cholesky with diagonal pivoting on G = JJᵀ: each the row with the
    /// largest component orthogonal to those already chosen. With `rho` that many; without,
    /// as many as the split of the pivots' square roots (a rank-revealing estimate of J's
    /// singular values, floored at `noise`) at their largest ratio keeps. Returns the rows and
    /// those square roots.
    pub(crate) fn pivoted(g: &DMat, rho: Option<usize>, noise: f64) -> (Self, Vec<f64>) {
        let m = g.nrows();
        let limit = rho.unwrap_or(m).min(m);
        let mut diag: Vec<f64> = (0..m).map(|i| g[(i, i)]).collect();
        let mut chosen: Vec<usize> = Vec::with_capacity(limit);
        let mut taken = vec![false; m];
        let mut columns: Vec<Vec<f64>> = Vec::with_capacity(limit);
        let mut pivots = Vec::with_capacity(limit);
        for _ in 0..limit {
            let Some(p) = (0..m)
                .filter(|&i| !taken[i])
                .max_by(|&a, &b| diag[a].total_cmp(&diag[b]))
            else {
                break;
            };
            let piv = diag[p];
            if piv.is_nan() || piv <= 0.0 {
                break;
            }
            let root = piv.sqrt();
            let mut col: Vec<f64> = (0..m).map(|i| g[(i, p)]).collect();
            for prev in &columns {
                let c = prev[p];
                col.iter_mut().zip(prev).for_each(|(x, l)| *x -= c * l);
            }
            col.iter_mut().for_each(|x| *x /= root);
            for (dd, l) in diag.iter_mut().zip(&col) {
                *dd -= l * l;
            }
            taken[p] = true;
            chosen.push(p);
            pivots.push(root);
            columns.push(col);
        }
        let rho = match rho {
            Some(r) => r.min(chosen.len()),
            None => {
                let mag: Vec<f64> = pivots.iter().map(|p| p.max(noise)).collect();
                split(&mag, None, noise).0
            }
        };
        chosen.truncate(rho);
        let mut kept = chosen;
        kept.sort_unstable();
        let rest = (0..m).filter(|i| kept.binary_search(i).is_err()).collect();
        (Self { kept, rest }, pivots)
    }

    /// ρ.
    pub(crate) fn rank(&self) -> usize {
        self.kept.len()
    }
}

/// J's rows at one point: dense (transposed: d×ρ for the kept rows, d×(m−ρ) for the rest)
/// unless the loss's J·v, Jᵀu and JJᵀ exploit structure, in which case through them.
pub(crate) struct RowsAt<'a> {
    res: &'a dyn Residuals,
    theta: Vec<f64>,
    rows: Arc<Rows>,
    dense: Option<(DMat, DMat)>,
}

impl<'a> RowsAt<'a> {
    pub(crate) fn new(res: &'a dyn Residuals, theta: &[f64], rows: Arc<Rows>) -> Self {
        let dense = (!res.has_structured_products()).then(|| {
            let (m, d) = (res.count(), theta.len());
            let mut jt = DMat::zeros(d, m);
            res.jacobian_transpose_into(theta, jt.as_mut());
            let pick = |idx: &[usize]| DMat::from_fn(d, idx.len(), |i, c| jt[(i, idx[c])]);
            (pick(&rows.kept), pick(&rows.rest))
        });
        Self {
            res,
            theta: theta.to_vec(),
            rows,
            dense,
        }
    }

    fn rho(&self) -> usize {
        self.rows.kept.len()
    }

    /// out ← J_R v (ρ entries).
    pub(crate) fn jr(&self, v: &[f64], out: &mut [f64]) {
        match &self.dense {
            Some((jt, _)) => matvec_into(jt.transpose(), v, out),
            None => {
                let mut full = vec![0.0; self.res.count()];
                self.res.jvp_into(&self.theta, v, &mut full);
                for (o, &q) in out.iter_mut().zip(&self.rows.kept) {
                    *o = full[q];
                }
            }
        }
    }

    /// out ← J_Rᵀ u (d entries).
    pub(crate) fn jrt(&self, u: &[f64], out: &mut [f64]) {
        match &self.dense {
            Some((jt, _)) => matvec_into(jt.as_ref(), u, out),
            None => {
                let mut full = vec![0.0; self.res.count()];
                for (&q, x) in self.rows.kept.iter().zip(u) {
                    full[q] = *x;
                }
                self.res.vjp_into(&self.theta, &full, out);
            }
        }
    }

    /// out ← Jᵀ(J v) over all rows (d entries).
    fn jtj(&self, v: &[f64], out: &mut [f64]) {
        match &self.dense {
            Some((jt, jt_rest)) => {
                let (mut a, mut b) = (vec![0.0; jt.ncols()], vec![0.0; jt_rest.ncols()]);
                matvec_into(jt.transpose(), v, &mut a);
                matvec_into(jt_rest.transpose(), v, &mut b);
                matvec_into(jt.as_ref(), &a, out);
                let mut extra = vec![0.0; out.len()];
                matvec_into(jt_rest.as_ref(), &b, &mut extra);
                out.iter_mut().zip(&extra).for_each(|(o, e)| *o += e);
            }
            None => {
                let mut full = vec![0.0; self.res.count()];
                self.res.jvp_into(&self.theta, v, &mut full);
                self.res.vjp_into(&self.theta, &full, out);
            }
        }
    }

    /// G_R = J_R J_Rᵀ (ρ×ρ) and J_R J_R̄ᵀ (ρ×(m−ρ)).
    fn gram_blocks(&self) -> (DMat, DMat) {
        let (kept, rest) = (&self.rows.kept, &self.rows.rest);
        match &self.dense {
            Some((jt, jt_rest)) => (jt.transpose() * jt, jt.transpose() * jt_rest),
            None => {
                let m = self.res.count();
                let mut g = DMat::zeros(m, m);
                self.res.gram_into(&self.theta, g.as_mut());
                if rest.is_empty() {
                    // Every row kept, in order (`Rows::pivoted` sorts them).
                    return (g, DMat::zeros(m, 0));
                }
                (
                    DMat::from_fn(kept.len(), kept.len(), |i, j| g[(kept[i], kept[j])]),
                    DMat::from_fn(kept.len(), rest.len(), |i, j| g[(kept[i], rest[j])]),
                )
            }
        }
    }

    /// The transposed rest rows, J_R̄ᵀ (d×(m−ρ)).
    fn rest_t(&self) -> DMat {
        match &self.dense {
            Some((_, jt_rest)) => jt_rest.clone(),
            None => {
                let (m, d) = (self.res.count(), self.theta.len());
                let mut out = DMat::zeros(d, self.rows.rest.len());
                let (mut unit, mut col) = (vec![0.0; m], vec![0.0; d]);
                for (c, &q) in self.rows.rest.iter().enumerate() {
                    unit[q] = 1.0;
                    self.res.vjp_into(&self.theta, &unit, &mut col);
                    unit[q] = 0.0;
                    for (i, x) in col.iter().enumerate() {
                        out[(i, c)] = *x;
                    }
                }
                out
            }
        }
    }
}

/// A Cholesky factor L of G_R = J_R J_Rᵀ at a point.
pub(crate) struct GramFactor {
    chol: Factorisation,
    /// J_R J_R̄ᵀ there.
    cross: DMat,
    /// X = G_R⁻¹ J_R J_R̄ᵀ (ρ×(m−ρ), so that J_R̄ ≈ Xᵀ J_R on the branch) and the Cholesky
    /// factor of I + XᵀX, once asked for.
    rest: OnceLock<Option<(DMat, Factorisation)>>,
}

impl GramFactor {
    /// Factorises G_R at the point of `rows`; an error when G_R is not numerically positive
    /// definite (the kept rows lost rank).
    pub(crate) fn new(rows: &RowsAt<'_>) -> Result<Self, EngineError> {
        let (g, cross) = rows.gram_blocks();
        let lost = || {
            EngineError::LinearAlgebra(
                "J_R J_Rᵀ is not positive definite: the rows kept lost rank".into(),
            )
        };
        if !g.diagonal().column_vector().iter().all(|x| x.is_finite()) {
            return Err(lost());
        }
        let chol = Factorisation::cholesky_owned(g).map_err(|_| lost())?;
        Ok(Self {
            chol,
            cross,
            rest: OnceLock::new(),
        })
    }

    /// X and the factor of I + XᵀX (None when ρ = m).
    fn rest(&self) -> Option<&(DMat, Factorisation)> {
        self.rest
            .get_or_init(|| {
                let k = self.cross.ncols();
                (k > 0).then(|| {
                    let mut x = self.cross.clone();
                    self.chol.solve_in_place(x.as_mut(), false);
                    let mut w = x.transpose() * &x;
                    for i in 0..k {
                        w[(i, i)] += 1.0;
                    }
                    (x, Factorisation::new(&w))
                })
            })
            .as_ref()
    }

    /// v ← K⁻¹v, K = Lᵀ(I + DᵀD)L (D = Xᵀ) the Gram matrix of J on the normal space in the
    /// orthonormal basis Q = J_Rᵀ L⁻ᵀ: K⁻¹ = L⁻¹(I − Dᵀ(I + DDᵀ)⁻¹D)L⁻ᵀ.
    fn inverse_k(&self, v: &mut [f64]) {
        self.upper_solve(v);
        if let Some((x, w)) = self.rest() {
            let mut dv = vec![0.0; x.ncols()];
            matvec_into(x.transpose(), v, &mut dv);
            w.solve_vec(&mut dv);
            let mut back = vec![0.0; v.len()];
            matvec_into(x.as_ref(), &dv, &mut back);
            v.iter_mut().zip(&back).for_each(|(o, b)| *o -= b);
        }
        self.lower_solve(v);
    }

    fn lower(&self) -> &DMat {
        match &self.chol {
            Factorisation::Cholesky(l) => l,
            Factorisation::Lu { .. } => unreachable!("GramFactor::new keeps Cholesky only"),
        }
    }

    /// x ← L⁻¹x.
    fn lower_solve(&self, x: &mut [f64]) {
        let n = x.len();
        solve_lower_triangular_in_place(
            self.lower().as_ref(),
            faer::MatMut::from_column_major_slice_mut(x, n, 1),
            Par::Seq,
        );
    }

    /// x ← L⁻ᵀx.
    fn upper_solve(&self, x: &mut [f64]) {
        let n = x.len();
        solve_upper_triangular_in_place(
            self.lower().transpose(),
            faer::MatMut::from_column_major_slice_mut(x, n, 1),
            Par::Seq,
        );
    }
}

/// Solves with G_R at `rows`' point, preconditioned by `factor`.
pub(crate) struct GramSolver<'p, 'a> {
    pub(crate) rows: &'p RowsAt<'a>,
    pub(crate) factor: &'p GramFactor,
}

impl GramSolver<'_, '_> {
    /// y with G_R y = b, and the conjugate-gradient iterations taken, from `y0` (zero if
    /// None). Ends once the energy norm of the remaining correction,
    /// ‖J_Rᵀ(y* − y)‖ ≈ √(sᵀF⁻¹s) with s the residual recomputed through J_R, is at most
    /// `tol`, or once recomputing it shows no progress (the rounding floor); returns the best
    /// iterate so checked.
    pub(crate) fn solve(&self, b: &[f64], tol: f64, y0: Option<&[f64]>) -> (Vec<f64>, usize) {
        const RESTARTS: usize = 4;
        let (rho, d) = (b.len(), self.rows.theta.len());
        let mut y = y0.map_or_else(|| vec![0.0; rho], <[f64]>::to_vec);
        let mut s = b.to_vec();
        let (mut z, mut q, mut gq) = (vec![0.0; rho], vec![0.0; d], vec![0.0; rho]);
        let mut iterations = 0;
        let mut last_true = f64::INFINITY;
        let mut best: Option<(f64, Vec<f64>)> = None;
        for restart in 0..=RESTARTS {
            if restart > 0 || y0.is_some() {
                // The residual recomputed from y through J_R.
                self.rows.jrt(&y, &mut q);
                self.rows.jr(&q, &mut s);
                s.iter_mut().zip(b).for_each(|(s, b)| *s = b - *s);
            }
            z.copy_from_slice(&s);
            self.factor.chol.solve_vec(&mut z);
            let mut rz = dot(&s, &z);
            let energy = rz.max(0.0).sqrt();
            if best.as_ref().is_none_or(|(e, _)| energy < *e) {
                best = Some((energy, y.clone()));
            }
            let stalled = energy.is_nan() || energy >= 0.5 * last_true;
            if energy <= tol || stalled || restart == RESTARTS {
                break;
            }
            last_true = energy;
            let mut dir = z.clone();
            while iterations < MAX_CG {
                iterations += 1;
                self.rows.jrt(&dir, &mut q);
                let qq = dot(&q, &q);
                if qq.is_nan() || qq <= 0.0 {
                    break;
                }
                let alpha = rz / qq;
                y.iter_mut().zip(&dir).for_each(|(y, p)| *y += alpha * p);
                self.rows.jr(&q, &mut gq);
                s.iter_mut().zip(&gq).for_each(|(s, g)| *s -= alpha * g);
                z.copy_from_slice(&s);
                self.factor.chol.solve_vec(&mut z);
                let rz_new = dot(&s, &z);
                if rz_new.max(0.0).sqrt() <= 0.5 * tol && iterations > 1 {
                    // Converged by the recursive residual: after more than one iteration
                    // from a recomputed residual it has drifted from the true one by no more
                    // than rounding, so the iterate is taken as it is.
                    return (y, iterations);
                }
                if rz_new.max(0.0).sqrt() <= 0.5 * tol {
                    break;
                }
                let beta = rz_new / rz;
                dir.iter_mut().zip(&z).for_each(|(p, z)| *p = z + beta * *p);
                rz = rz_new;
            }
        }
        (best.map_or(y, |(_, y)| y), iterations)
    }

    /// out ← P v = v − J_Rᵀ G_R⁻¹ J_R v, to `rtol` of ‖v‖ (or the rounding floor), the solve
    /// started from `y0`; returns the iterations and y = G_R⁻¹ J_R v.
    pub(crate) fn project(
        &self,
        v: &[f64],
        out: &mut [f64],
        rtol: f64,
        y0: Option<&[f64]>,
    ) -> (usize, Vec<f64>) {
        let mut b = vec![0.0; self.rows.rho()];
        self.rows.jr(v, &mut b);
        let (y, it) = self.solve(&b, rtol * norm(v), y0);
        self.rows.jrt(&y, out);
        out.iter_mut().zip(v).for_each(|(o, v)| *o = v - *o);
        (it, y)
    }

    /// out ← the Gauss–Newton step on the gradient restricted to the normal space,
    /// (JᵀJ)⁺ Jᵀr = Q K⁻¹ Qᵀ (c∇F) with Q = J_Rᵀ L⁻ᵀ: what the SVD's truncated
    /// pseudo-inverse gives, Σᵢ≤ρ (uᵢ·r/sᵢ) vᵢ, from all m residuals through ∇F. The factor
    /// must have been taken at this point.
    pub(crate) fn newton_step(&self, c_grad: &[f64], out: &mut [f64]) {
        let mut z = vec![0.0; self.rows.rho()];
        self.rows.jr(c_grad, &mut z);
        self.factor.lower_solve(&mut z);
        self.factor.inverse_k(&mut z);
        self.factor.upper_solve(&mut z);
        self.rows.jrt(&z, out);
    }

    /// out ← J_Rᵀ G_R⁻¹ r_R, the minimum-norm δ with J_R δ = r_R (the Gauss–Newton step on
    /// the kept residuals), `r` holding all m residuals.
    pub(crate) fn min_norm_step(&self, r: &[f64], out: &mut [f64], rtol: f64) -> usize {
        let b: Vec<f64> = self.rows.rows.kept.iter().map(|&q| r[q]).collect();
        let mut f = b.clone();
        self.factor.chol.solve_vec(&mut f);
        let scale = dot(&b, &f).max(0.0).sqrt();
        let (y, it) = self.solve(&b, rtol * scale, None);
        self.rows.jrt(&y, out);
        it
    }
}

/// J's spectrum at a point as the split reads it: σ₁, σ_ρ, σ_{ρ+1} (0 when ρ = m) and the
/// noise floor σ₁ ε max(m, d) of a spectral decomposition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GramSpectrum {
    pub(crate) sigma_max: f64,
    pub(crate) sigma_rho: f64,
    pub(crate) sigma_next: f64,
    pub(crate) noise: f64,
    /// σ_min(J_R): the kept rows' own conditioning (at most σ_ρ).
    pub(crate) sigma_kept: f64,
}

impl GramSpectrum {
    /// σ_ρ / max(σ_{ρ+1}, noise): the spectral gap of the split.
    pub(crate) fn gap(&self) -> f64 {
        self.sigma_rho / self.sigma_next.max(self.noise).max(f64::MIN_POSITIVE)
    }
}

/// The Lanczos vectors of the last spectrum, to start the next one from (the spectrum
/// changes little from one point of the flow to the next).
#[derive(Clone, Debug, Default)]
pub(crate) struct WarmStart {
    top: Option<Vec<f64>>,
    low: Option<Vec<f64>>,
    kept: Option<Vec<f64>>,
}

impl WarmStart {
    /// σ₁ at `rows`' point from the last top vector (a few Lanczos steps on JᵀJ).
    pub(crate) fn sigma_max(&mut self, rows: &RowsAt<'_>) -> f64 {
        let d = rows.theta.len();
        let start = self.top.as_ref().filter(|v| v.len() == d).cloned();
        let (s1, top) = lanczos_max(d, |v, out| rows.jtj(v, out), start.as_deref(), 20, 1e-4);
        self.top = Some(top);
        s1.max(0.0).sqrt()
    }

    /// With every row kept: the eigenvector of G = JJᵀ for its smallest eigenvalue, u = L w
    /// from the last spectrum's Lanczos vector w (an eigenvector of K = LᵀL), normalised.
    pub(crate) fn low_row_vector(&self, factor: &GramFactor) -> Option<Vec<f64>> {
        let w = self.low.as_ref()?;
        let l = factor.lower();
        let n = w.len();
        if l.nrows() != n || factor.cross.ncols() != 0 {
            return None;
        }
        let mut u = vec![0.0; n];
        for (j, wj) in w.iter().enumerate() {
            let col = crate::la::column(l, j);
            for i in j..n {
                u[i] += col[i] * wj;
            }
        }
        let s = norm(&u);
        (s > 0.0).then(|| u.iter().map(|x| x / s).collect())
    }
}

/// ‖J_Rᵀu‖ for a unit u: with every row kept and u the eigenvector of G for its smallest
/// eigenvalue at a nearby point, an estimate of σ_ρ here (from above, to first order).
pub(crate) fn rayleigh_sigma(rows: &RowsAt<'_>, u: &[f64]) -> f64 {
    let mut out = vec![0.0; rows.theta.len()];
    rows.jrt(u, &mut out);
    norm(&out)
}

/// The spectrum at the point of `rows`, where `factor` must have been taken.
pub(crate) fn spectrum(
    rows: &RowsAt<'_>,
    factor: &GramFactor,
    warm: &mut WarmStart,
) -> Result<GramSpectrum, EngineError> {
    let (m, d, rho) = (rows.res.count(), rows.theta.len(), rows.rho());
    let k = m - rho;
    let fits = |v: &Option<Vec<f64>>, n: usize| v.as_ref().filter(|v| v.len() == n).cloned();
    // σ₁² = λ_max(JᵀJ).
    let sigma_max = warm.sigma_max(rows);
    let noise = (sigma_max * f64::EPSILON * m.max(d) as f64).max(f64::MIN_POSITIVE);
    // 1/σ_ρ² is the largest eigenvalue of K⁻¹ (see `GramFactor::inverse_k`).
    let inverse_k = |v: &[f64], out: &mut [f64]| {
        out.copy_from_slice(v);
        factor.inverse_k(out);
    };
    let start = fits(&warm.low, rho);
    let (inv, low) = lanczos_max(rho, inverse_k, start.as_deref(), LANCZOS_STEPS, 1e-5);
    warm.low = Some(low);
    if !inv.is_finite() || inv <= 0.0 {
        return Err(EngineError::LinearAlgebra(
            "the smallest singular value of J on the normal space could not be estimated".into(),
        ));
    }
    let sigma_rho = inv.recip().sqrt();
    // σ_min(J_R)² = 1/λ_max(G_R⁻¹): how much worse the kept rows are conditioned than J
    // (the same when every row is kept).
    let sigma_kept = if k == 0 {
        sigma_rho
    } else {
        let start = fits(&warm.kept, rho);
        let (g_inv, kept) = lanczos_max(
            rho,
            |v, out| {
                out.copy_from_slice(v);
                factor.chol.solve_vec(out)
            },
            start.as_deref(),
            LANCZOS_STEPS,
            1e-3,
        );
        warm.kept = Some(kept);
        g_inv.recip().sqrt()
    };
    // σ_{ρ+1}: the rest rows projected onto the tangent space, Eᵀ = J_R̄ᵀ − J_Rᵀ X, then
    // projected again (what the first projection left through rounding).
    let sigma_next = if k == 0 {
        0.0
    } else {
        let x = &factor.rest().expect("ρ < m").0;
        let mut et = rows.rest_t();
        subtract_kept(rows, x, &mut et);
        let mut again = DMat::zeros(rho, k);
        for c in 0..k {
            let col: Vec<f64> = (0..d).map(|i| et[(i, c)]).collect();
            let mut out = vec![0.0; rho];
            rows.jr(&col, &mut out);
            for (i, o) in out.iter().enumerate() {
                again[(i, c)] = *o;
            }
        }
        factor.chol.solve_in_place(again.as_mut(), false);
        subtract_kept(rows, &again, &mut et);
        let s = et.transpose() * &et;
        let top = if k <= DENSE_REST {
            symmetric_eigen(s.as_ref())
                .map_err(EngineError::LinearAlgebra)?
                .0
                .last()
                .copied()
                .unwrap_or(0.0)
        } else {
            lanczos_max(k, |v, out| matvec_into(s.as_ref(), v, out), None, 30, 1e-3).0
        };
        top.max(0.0).sqrt()
    };
    Ok(GramSpectrum {
        sigma_max,
        sigma_rho,
        sigma_next,
        noise,
        sigma_kept,
    })
}

/// et ← et − J_Rᵀ y (columnwise; d×k and ρ×k).
fn subtract_kept(rows: &RowsAt<'_>, y: &DMat, et: &mut DMat) {
    match &rows.dense {
        Some((jt, _)) => matmul(
            et.as_mut(),
            Accum::Add,
            jt.as_ref(),
            y.as_ref(),
            -1.0,
            Par::Seq,
        ),
        None => {
            let d = rows.theta.len();
            let mut out = vec![0.0; d];
            for c in 0..y.ncols() {
                let col: Vec<f64> = (0..y.nrows()).map(|i| y[(i, c)]).collect();
                rows.jrt(&col, &mut out);
                for (i, o) in out.iter().enumerate() {
                    et[(i, c)] -= o;
                }
            }
        }
    }
}

/// The rows of a fresh split at θ from G = JJᵀ (pivoted Cholesky, ρ of them if given), for
/// when a spectral decomposition costs too much, with the pivots' square roots (empty when
/// G is well enough conditioned for every row to be kept at once).
pub(crate) fn fresh_rows(
    res: &dyn Residuals,
    theta: &[f64],
    rho: Option<usize>,
) -> (Rows, Vec<f64>) {
    let m = res.count();
    let mut g = DMat::zeros(m, m);
    res.gram_into(theta, g.as_mut());
    if rho.is_none_or(|r| r >= m) {
        // Every row, when G is positive definite with σ_min/σ₁ ≥ 1e-4: no ratio inside the
        // spectrum can then beat the one from σ_min to the noise, and the split keeps all m.
        // One blocked Cholesky factorisation instead of the pivoted one's m³/3 scalar steps.
        if let Ok(f) = Factorisation::cholesky_owned(g.clone()) {
            let (top, _) = lanczos_max(m, |v, o| matvec_into(g.as_ref(), v, o), None, 30, 1e-3);
            let solve = |v: &[f64], o: &mut [f64]| {
                o.copy_from_slice(v);
                f.solve_vec(o)
            };
            let (inv, _) = lanczos_max(m, solve, None, 30, 1e-3);
            if inv.is_finite() && inv > 0.0 && (inv * top).recip() >= 1e-8 {
                let all = Rows {
                    kept: (0..m).collect(),
                    rest: Vec::new(),
                };
                return (all, Vec::new());
            }
        }
    }
    let top = (0..m).map(|i| g[(i, i)]).fold(0.0f64, f64::max).sqrt();
    let noise = (top * f64::EPSILON.sqrt() * (m as f64).sqrt()).max(f64::MIN_POSITIVE);
    Rows::pivoted(&g, rho, noise)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::la::distance;

    /// r(θ) = Aθ − b with A = B C (rank 3, 5×8): J = A has rank 3 < m.
    struct LowRank {
        a: DMat,
    }

    impl Residuals for LowRank {
        fn count(&self) -> usize {
            self.a.nrows()
        }
        fn scale(&self) -> f64 {
            1.0
        }
        fn residuals_into(&self, theta: &[f64], r: &mut [f64]) {
            matvec_into(self.a.as_ref(), theta, r);
        }
        fn jacobian_into(&self, _theta: &[f64], mut jac: faer::MatMut<'_, f64>) {
            jac.copy_from(&self.a);
        }
    }

    fn low_rank() -> LowRank {
        let b = DMat::from_fn(5, 3, |i, j| {
            ((i * 3 + j * 5) % 7) as f64 - 3.0 + (i == j) as u8 as f64
        });
        let c = DMat::from_fn(3, 8, |i, j| ((i * 5 + j * 2) % 9) as f64 / 4.0 - 1.0);
        LowRank { a: &b * &c }
    }

    #[test]
    fn pivoted_rows_find_the_rank_and_the_projection_is_the_svds() {
        let lr = low_rank();
        let theta: Vec<f64> = (0..8).map(|i| (i as f64 * 0.7).sin()).collect();
        let g = &lr.a * lr.a.transpose();
        let (rows, pivots) = Rows::pivoted(&g, None, 1e-12);
        assert_eq!(rows.rank(), 3, "{pivots:?}");
        let rows = Arc::new(rows);
        let at = RowsAt::new(&lr, &theta, rows);
        let factor = GramFactor::new(&at).unwrap();
        let solver = GramSolver {
            rows: &at,
            factor: &factor,
        };
        let mut p = vec![0.0; 8];
        solver.project(&theta, &mut p, 1e-14, None);
        // Against the projector read off the SVD: v − V₃V₃ᵀv.
        let svd = lr.a.thin_svd().unwrap();
        let mut exact = theta.clone();
        for c in 0..3 {
            let v = svd.V().col(c);
            let w: f64 = (0..8).map(|i| v[i] * theta[i]).sum();
            (0..8).for_each(|i| exact[i] -= w * v[i]);
        }
        assert!(distance(&p, &exact) < 1e-13, "{p:?} {exact:?}");
        let spec = spectrum(&at, &factor, &mut WarmStart::default()).unwrap();
        let s: Vec<f64> = (0..5).map(|i| svd.S().column_vector()[i]).collect();
        assert!(
            (spec.sigma_max - s[0]).abs() < 1e-6 * s[0],
            "{spec:?} {s:?}"
        );
        assert!(
            (spec.sigma_rho - s[2]).abs() < 1e-8 * s[2],
            "{spec:?} {s:?}"
        );
        assert!(spec.sigma_next < 1e-12 * s[0], "{spec:?}");
        assert!(spec.gap() > 1e10, "{spec:?}");
    }
}
