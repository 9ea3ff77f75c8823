//! The structured direct solve of the Newton systems, for least-squares losses with few
//! residuals and block-diagonal residual curvature.
//!
//! For F = ‖r‖²/(2s) with m residuals, ∇²F = JᵀJ/s + R with R = Σᵢ rᵢ∇²rᵢ/s. When R is block
//! diagonal on fixed parameter groups ([`crate::Residuals::curvature_groups`]: the neurons of
//! a two-layer network, the pairs (uⱼ, vⱼ) of a diagonal network, the columns of U in matrix
//! sensing), the Newton matrix of an implicit step is
//!
//!   A = I − cJ_flow = B + βJᵀJ,  B = αI + γR,  α = 1 + cκλ, γ = cκ, β = γ/s,
//!
//! with B block diagonal, and Woodbury's identity gives it exactly through the m×m matrix
//! K = I/β + J B⁻¹ Jᵀ:  A⁻¹ = B⁻¹ − W K⁻¹ J B⁻¹ with W = B⁻¹Jᵀ. A factorisation costs
//! O(dm² + m³ + Σk³) instead of O(d³/3), and a solve O(dm) instead of O(d²).
//!
//! When every group has the same block (matrix completion: each column of (U; V) couples
//! through the same matrix of residuals) and the loss forms J(I ⊗ C)Jᵀ from its own structure
//! ([`crate::Residuals::has_shared_block_gram`]), only one k×k block is inverted, K is
//! assembled in O(m²) without J, and a solve applies J and Jᵀ through the loss's products:
//! no m×d matrix is stored, and a factorisation costs O(m³/3 + k³). There a block too
//! ill-conditioned to invert refuses the factorisation instead of falling back to the d×d
//! matrix: its solves fail, and the Newton iteration retries with another step size (B
//! depends on it).
//!
//! With the stored J, blocks of more than [`SMALL_BLOCK`] parameters found equal at the
//! linearisation point (matrix sensing, where R = I ⊗ S, but the loss does not form the Gram
//! matrix) are inverted once, and B⁻¹ applies to all groups as one k×k by k×(d/k) product:
//! matrix sensing at λ = 1e-6, rtol 1e-8 went from 16.1 to 13.3 ms (ten 10×10 inversions
//! per factorisation were a tenth of its time).
//!
//! Where the residuals are r = Aβ(θ) − b with a constant m×G matrix A and each coefficient
//! β_g a function of group g's parameters only ([`crate::Residuals::group_features`]: the
//! diagonal network, β_j = u_j v_j), J's columns on group g are a_g∇β_gᵀ and
//! K = I/β + A diag(q) Aᵀ with q_g = ∇β_gᵀ B_g⁻¹ ∇β_g: J is never stored, a factorisation
//! costs m²G/2 products instead of m²d/2, and a solve applies A and Aᵀ (m×G) instead of J
//! and W (m×d). The diagonal network (G = d/2) went from 2.9 to 2.3 ms at λ = 1e-2,
//! rtol 1e-6, and from 8.1 to 5.9 ms at λ = 1e-4, rtol 1e-8, with the same counts.
//!
//! Where R's blocks are all zero at the linearisation point (affine residuals: linear
//! regression), B = αI and JJᵀ is kept with J: a factorisation is an m×m copy and Cholesky,
//! and W = Jᵀ/α is never formed (linear regression at λ = 1e-6: 0.90 → 0.62 ms at rtol 1e-4,
//! 1.77 → 1.65 ms at rtol 1e-8, the same steps and errors).
//!
//! The identity loses digits when B is ill-conditioned (far from the manifold, where the
//! residuals are large and γR can cancel αI). A block whose condition number exceeds
//! [`MAX_BLOCK_CONDITION`] sends that factorisation to the dense path: A assembled from J and
//! R (no Hessian evaluation) and factorised as the dense solver does. Either way the Newton
//! iteration judges the corrections, so a loose solve costs iterations, never accuracy. The
//! exception is a loss declared a convex quadratic, whose corrector is accepted after one
//! solve: with affine residuals (linear regression) R = 0 and B = αI, and the identity loses
//! nothing to B.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Par};

use crate::flow::GradientFlow;
use crate::la::{DMat, MatMut, MatRef};
use crate::linsolve::Factorisation;
use crate::loss::Residuals;

/// A block of B = αI + γR whose condition number (∞-norm) exceeds this sends the
/// factorisation to the assembled matrix.
const MAX_BLOCK_CONDITION: f64 = 1e8;

/// Blocks of B up to this size are applied by plain loops instead of faer's kernels.
const SMALL_BLOCK: usize = 4;

/// How the current factorisation solves.
enum Factor {
    /// Woodbury: B's block inverses (only the first when the blocks are equal), W = B⁻¹Jᵀ
    /// (d×m, column-major, rows in `perm` order) and K = I/β + JW factorised.
    Woodbury {
        binv: Vec<f64>,
        w: Vec<f64>,
        k: Factorisation,
    },
    /// Woodbury with one shared block: C = B₀⁻¹ (k×k, row-major) and K = I/β + J(I ⊗ C)Jᵀ
    /// factorised.
    Shared { cinv: Vec<f64>, k: Factorisation },
    /// R = 0 at θ_J (affine residuals: linear regression): B = αI, K = I/β + JJᵀ/α from
    /// the Gram matrix kept with J, and W = Jᵀ/α never formed.
    Affine { alpha: f64, k: Factorisation },
    /// Rank-one groups (see [`Kind::RankOne`]): B's block inverses, w = B⁻¹∇β (d entries,
    /// `perm` order) and K = I/β + A diag(q) Aᵀ factorised, q_g = ∇β_gᵀ B_g⁻¹ ∇β_g.
    RankOne {
        binv: Vec<f64>,
        w: Vec<f64>,
        k: Factorisation,
    },
    /// The fallback: A itself (d×d).
    Dense(Factorisation),
    /// The shared block was too ill-conditioned: every solve fails.
    Refused,
}

/// Where J comes from.
enum Jacobian {
    /// Jᵀ (d×m) at θ_J as the loss writes it, and again with its rows in `perm` order
    /// (column-major): each group's rows are contiguous.
    Stored { jtp: DMat, jt: Vec<f64> },
    /// θ_J only: J and Jᵀ through the loss's products, K through its shared-block Gram matrix.
    Shared { theta: Vec<f64> },
    /// The coefficient gradients ∇β_g at θ_J in `perm` order (d entries): J = A·diag(∇β)
    /// group by group, with the loss's A.
    RankOne { grads: Vec<f64> },
}

/// Which form of J the structured solve keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// J stored (d×m).
    Stored,
    /// One shared block and the loss's products ([`shared_block`]).
    Shared,
    /// Rank-one groups ([`rank_one_groups`]): J's columns on group g are a_g∇β_gᵀ, with A
    /// (m×G) the loss's; per solve two m×G products instead of two m×d ones, per
    /// factorisation m²G/2 products instead of m²d/2.
    RankOne,
}

/// The linearisation point's J and R, and the factorisation for one c.
pub(crate) struct Structured {
    layout: Layout,
    /// The groups concatenated: parameter order in which B's blocks are contiguous.
    perm: Vec<usize>,
    jacobian: Jacobian,
    /// m.
    m: usize,
    /// R's blocks at θ_J.
    blocks: Vec<f64>,
    factor: Option<(f64, Factor)>,
    tmp_m: Vec<f64>,
    tmp_d: Vec<f64>,
    /// Scratch of the shared-block solve (d entries each).
    tmp_a: Vec<f64>,
    tmp_b: Vec<f64>,
    /// Scratch of the block inversions: [B_g | I] for the largest group.
    aug: Vec<f64>,
    /// Scratch of the stored-J solve: the right-hand side in `perm` order (d entries).
    tmp_p: Vec<f64>,
    /// The stored-J blocks of R at θ_J are all equal and of one size k > [`SMALL_BLOCK`]
    /// (matrix sensing: R is I ⊗ S): one block is inverted, and B⁻¹ applies to the k×(d/k)
    /// matrix of the groups' entries in one product.
    equal_blocks: Option<usize>,
    /// JJᵀ (m×m) at θ_J when R's blocks are all zero there (see [`Factor::Affine`]).
    gram: Option<DMat>,
    /// Scratch of the rank-one groups: one entry per group, and A diag(q) (m×G,
    /// column-major).
    tmp_g: Vec<f64>,
    scaled: Vec<f64>,
}

/// What one factorisation was.
pub(crate) struct Factored {
    /// The factorised matrix (K, or A on the fallback) was positive definite (Cholesky).
    pub(crate) cholesky: bool,
    /// A block of B was too ill-conditioned: A itself was assembled and factorised, or
    /// (shared block) nothing was, and the solves fail until the next factorisation.
    pub(crate) fallback: bool,
    /// A matrix was factorised (false when refused).
    pub(crate) factorised: bool,
}

/// True when the shared-block solve applies to `res` with these groups: the loss forms
/// J(I ⊗ C)Jᵀ itself and its groups all have one size.
/// (Its solves go through the loss's J·v and Jᵀ·u, so those must be structured too.)
pub(crate) fn shared_block(res: &dyn Residuals, groups: &[Vec<usize>]) -> bool {
    res.has_shared_block_gram() && res.has_structured_products() && uniform_size(groups).is_some()
}

/// True when `res` declares rank-one groups ([`Residuals::group_features`]) that hold: A is
/// m×G for the G `groups`, the coefficient gradients are given, and A∇β reproduces
/// [`Residuals::jacobian_into`] to 1e-12 of J's largest entry at θ and at a fixed nearby
/// point (θ alone may say nothing: at θ = 0 a diagonal network's J and ∇β vanish), where J
/// must not vanish everywhere and every ∇β_g must be non-zero at one of the two. A
/// declaration that does not hold is ignored, and J is stored instead.
pub(crate) fn rank_one_groups(res: &dyn Residuals, groups: &[Vec<usize>], theta: &[f64]) -> bool {
    let Some(a) = res.group_features() else {
        return false;
    };
    let (m, d) = (res.count(), theta.len());
    if a.nrows() != m || a.ncols() != groups.len() {
        return false;
    }
    let nearby: Vec<f64> = (0..d)
        .map(|i| theta[i] + 0.1 * (1.0 + theta[i].abs()) * ((i as f64 + 1.0) * 0.618).sin())
        .collect();
    let (mut grads, mut jac) = (vec![0.0; d], DMat::zeros(m, d));
    let mut seen = vec![false; groups.len()];
    for point in [theta, &nearby[..]] {
        if !res.coefficient_gradients_into(point, &mut grads) {
            return false;
        }
        res.jacobian_into(point, jac.as_mut());
        let scale = (0..d)
            .flat_map(|p| (0..m).map(move |i| (i, p)))
            .fold(0.0_f64, |s, (i, p)| s.max(jac[(i, p)].abs()));
        let mut q = 0;
        for (g, group) in groups.iter().enumerate() {
            for &p in group {
                seen[g] |= grads[q] != 0.0 && scale > 0.0;
                for i in 0..m {
                    // A NaN anywhere fails the comparison and the declaration with it.
                    let e = a[(i, g)] * grads[q] - jac[(i, p)];
                    let holds = e.abs() <= 1e-12 * scale;
                    if !holds {
                        return false;
                    }
                }
                q += 1;
            }
        }
    }
    seen.iter().all(|&s| s)
}

/// The size every group has, if they all have one (None for no groups).
fn uniform_size(groups: &[Vec<usize>]) -> Option<usize> {
    let k = groups.first()?.len();
    groups.iter().all(|g| g.len() == k).then_some(k)
}

/// The groups of `res` if they are non-empty and partition 0..d, else None.
pub(crate) fn valid_groups(res: &dyn Residuals, d: usize) -> Option<Vec<Vec<usize>>> {
    let groups = res.curvature_groups()?;
    let mut seen = vec![false; d];
    if groups.iter().any(|g| g.is_empty()) {
        return None;
    }
    for &i in groups.iter().flatten() {
        if i >= d || seen[i] {
            return None;
        }
        seen[i] = true;
    }
    seen.iter().all(|&s| s).then_some(groups)
}

impl Structured {
    /// For a loss whose residuals have valid curvature groups (see [`valid_groups`]), keeping
    /// J in the form `kind`.
    pub(crate) fn new(groups: Vec<Vec<usize>>, m: usize, d: usize, kind: Kind) -> Self {
        let shared = kind == Kind::Shared;
        let mut offsets = Vec::with_capacity(groups.len());
        let mut starts = Vec::with_capacity(groups.len());
        let (mut total, mut start) = (0, 0);
        for g in &groups {
            offsets.push(total);
            starts.push(start);
            total += g.len() * g.len();
            start += g.len();
        }
        let perm = groups.iter().flatten().copied().collect();
        let jacobian = match kind {
            Kind::Shared => Jacobian::Shared {
                theta: vec![0.0; d],
            },
            Kind::Stored => Jacobian::Stored {
                jtp: DMat::zeros(d, m),
                jt: vec![0.0; d * m],
            },
            Kind::RankOne => Jacobian::RankOne {
                grads: vec![0.0; d],
            },
        };
        let n_groups = if kind == Kind::RankOne {
            groups.len()
        } else {
            0
        };
        let scratch = if shared { d } else { 0 };
        let uniform_small = uniform_size(&groups).filter(|&k| k > 0 && k <= SMALL_BLOCK && !shared);
        Self {
            layout: Layout {
                groups,
                offsets,
                starts,
                uniform_small,
            },
            perm,
            jacobian,
            m,
            blocks: vec![0.0; total],
            factor: None,
            tmp_m: vec![0.0; m],
            tmp_d: vec![0.0; d],
            tmp_a: vec![0.0; scratch],
            tmp_b: vec![0.0; scratch],
            aug: Vec::new(),
            tmp_p: vec![0.0; if shared { 0 } else { d }],
            equal_blocks: None,
            gram: None,
            tmp_g: vec![0.0; n_groups],
            scaled: vec![0.0; m * n_groups],
        }
    }

    /// J and R at `at`; the factorisation is dropped.
    pub(crate) fn linearise(&mut self, res: &dyn Residuals, at: &[f64]) {
        match &mut self.jacobian {
            Jacobian::Stored { jtp, jt } => {
                res.jacobian_transpose_into(at, jtp.as_mut());
                let d = self.perm.len();
                for (i, col) in jt.chunks_exact_mut(d).enumerate() {
                    let src = crate::la::column(jtp, i);
                    for (x, &p) in col.iter_mut().zip(&self.perm) {
                        *x = src[p];
                    }
                }
            }
            Jacobian::Shared { theta } => theta.copy_from_slice(at),
            Jacobian::RankOne { grads } => {
                // Checked to be given when the solve was set up (rank_one_groups).
                let given = res.coefficient_gradients_into(at, grads);
                debug_assert!(given, "coefficient gradients were given at set-up");
            }
        }
        res.curvature_blocks_into(at, &mut self.blocks);
        self.equal_blocks = match (&self.jacobian, uniform_size(&self.layout.groups)) {
            // Blocks of up to SMALL_BLOCK parameters keep their unrolled loops.
            (Jacobian::Stored { .. }, Some(k))
                if k > SMALL_BLOCK && self.layout.groups.len() > 1 =>
            {
                let (first, rest) = self.blocks.split_at(k * k);
                rest.chunks_exact(k * k).all(|b| b == first).then_some(k)
            }
            _ => None,
        };
        self.gram = match &self.jacobian {
            Jacobian::Stored { jt, .. } if self.blocks.iter().all(|&b| b == 0.0) => {
                let (d, m) = (self.perm.len(), self.m);
                let mut gram = self.gram.take().unwrap_or_else(|| DMat::zeros(m, m));
                let jt = MatRef::from_column_major_slice(jt, d, m);
                symmetric_product(gram.as_mut(), jt, jt, false);
                Some(gram)
            }
            _ => None,
        };
        self.factor = None;
    }

    /// True when the current factorisation was refused (its solves fail).
    pub(crate) fn refused(&self) -> bool {
        matches!(self.factor, Some((_, Factor::Refused)))
    }

    /// The c of the current factorisation.
    pub(crate) fn prepared_c(&self) -> Option<f64> {
        self.factor.as_ref().map(|(c, _)| *c)
    }

    /// Factorises A = I − cJ_flow at θ_J for `flow`, whose loss has residuals `res`.
    pub(crate) fn factorise(
        &mut self,
        flow: &GradientFlow<'_>,
        res: &dyn Residuals,
        c: f64,
    ) -> Factored {
        let gamma = c * flow.rate();
        let (alpha, beta) = (1.0 + gamma * flow.lambda(), gamma / res.scale());
        match self.jacobian {
            Jacobian::Stored { .. } => self.factorise_with(c, alpha, beta, gamma),
            Jacobian::Shared { .. } => self.factorise_shared(res, c, alpha, beta, gamma),
            Jacobian::RankOne { .. } => self.factorise_rank_one(res, c, alpha, beta, gamma),
        }
    }

    /// Records the dense fallback `f` (A itself) as the factorisation for c.
    fn fell_back(&mut self, c: f64, f: Factorisation) -> Factored {
        let cholesky = f.is_cholesky();
        self.factor = Some((c, Factor::Dense(f)));
        Factored {
            cholesky,
            fallback: true,
            factorised: true,
        }
    }

    /// The rank-one factorisation: B's blocks inverted, w = B⁻¹∇β, q_g = ∇β_gᵀw_g and
    /// K = I/β + A diag(q) Aᵀ (its lower triangle for Cholesky); the dense fallback assembles
    /// J from A and ∇β when a block is too ill-conditioned.
    fn factorise_rank_one(
        &mut self,
        res: &dyn Residuals,
        c: f64,
        alpha: f64,
        beta: f64,
        gamma: f64,
    ) -> Factored {
        let a = res
            .group_features()
            .expect("rank-one groups were checked when the solve was set up");
        let Jacobian::RankOne { grads } = &self.jacobian else {
            unreachable!("the rank-one factorisation needs the coefficient gradients")
        };
        let (m, d) = (self.m, self.perm.len());
        let (mut binv, mut w, k_old) = match self.factor.take() {
            Some((_, Factor::RankOne { binv, w, k })) => (binv, w, Some(k)),
            _ => (vec![0.0; self.blocks.len()], vec![0.0; d], None),
        };
        let all = self.layout.groups.len();
        let invertible =
            self.layout
                .invert_blocks(all, &mut binv, &self.blocks, alpha, gamma, &mut self.aug);
        if !invertible {
            let mut jac = DMat::zeros(m, d);
            for (g, group) in self.layout.groups.iter().enumerate() {
                for (l, &p) in group.iter().enumerate() {
                    let scale = grads[self.layout.starts[g] + l];
                    for i in 0..m {
                        jac[(i, p)] = a[(i, g)] * scale;
                    }
                }
            }
            let f = self.dense(jac.as_ref(), alpha, beta, gamma);
            return self.fell_back(c, f);
        }
        let layout = &self.layout;
        layout.apply(&binv, grads, &mut w);
        let q = &mut self.tmp_g;
        layout.group_dots(grads, &w, q);
        for (g, &qg) in q.iter().enumerate() {
            let src = a.col(g);
            let dst = &mut self.scaled[g * m..(g + 1) * m];
            for (i, x) in dst.iter_mut().enumerate() {
                *x = src[i] * qg;
            }
        }
        let scaled = MatRef::from_column_major_slice(&self.scaled, m, self.layout.groups.len());
        let k = capacitance(scaled.transpose(), a.transpose(), beta, k_old);
        let cholesky = k.is_cholesky();
        self.factor = Some((c, Factor::RankOne { binv, w, k }));
        Factored {
            cholesky,
            fallback: false,
            factorised: true,
        }
    }

    /// The shared-block factorisation of A = αI + βJᵀJ + γ(I ⊗ R₀) (recorded for c).
    fn factorise_shared(
        &mut self,
        res: &dyn Residuals,
        c: f64,
        alpha: f64,
        beta: f64,
        gamma: f64,
    ) -> Factored {
        let Jacobian::Shared { theta } = &self.jacobian else {
            unreachable!("the shared factorisation needs the shared Jacobian")
        };
        let (mut cinv, k_old) = match self.factor.take() {
            Some((_, Factor::Shared { cinv, k })) => (cinv, Some(k)),
            _ => (Vec::new(), None),
        };
        let k = self.layout.groups[0].len();
        cinv.resize(k * k, 0.0);
        if !shifted_block_inverse(
            &mut cinv,
            &self.blocks[..k * k],
            k,
            alpha,
            gamma,
            &mut self.aug,
        ) {
            self.factor = Some((c, Factor::Refused));
            return Factored {
                cholesky: false,
                fallback: true,
                factorised: false,
            };
        }
        let c_ref = &cinv;
        let kk = Factorisation::build(self.m, k_old, |mut kk, _| {
            res.shared_block_gram_into(theta, c_ref, kk.as_mut());
            for i in 0..kk.nrows() {
                kk[(i, i)] += 1.0 / beta;
            }
        });
        let cholesky = kk.is_cholesky();
        self.factor = Some((c, Factor::Shared { cinv, k: kk }));
        Factored {
            cholesky,
            fallback: false,
            factorised: true,
        }
    }

    /// Factorises A = αI + βJᵀJ + γR (recorded as the factorisation for c) from the stored J.
    fn factorise_with(&mut self, c: f64, alpha: f64, beta: f64, gamma: f64) -> Factored {
        if let Some(gram) = &self.gram {
            // B = αI: K = I/β + JJᵀ/α, an m×m copy instead of the m×d×m product.
            let k_old = match self.factor.take() {
                Some((_, Factor::Affine { k, .. })) | Some((_, Factor::Woodbury { k, .. })) => {
                    Some(k)
                }
                _ => None,
            };
            let m = gram.nrows();
            let k = Factorisation::build(m, k_old, |mut kk, _| {
                for j in 0..m {
                    for i in 0..m {
                        kk[(i, j)] = gram[(i, j)] / alpha;
                    }
                    kk[(j, j)] += 1.0 / beta;
                }
            });
            let cholesky = k.is_cholesky();
            self.factor = Some((c, Factor::Affine { alpha, k }));
            return Factored {
                cholesky,
                fallback: false,
                factorised: true,
            };
        }
        let recycled = match self.factor.take() {
            Some((_, Factor::Woodbury { binv, w, k })) => Some((binv, w, k)),
            _ => None,
        };
        let Jacobian::Stored { jtp, jt } = &self.jacobian else {
            unreachable!("the Woodbury factorisation needs the stored Jacobian")
        };
        let (d, m) = (jtp.nrows(), jtp.ncols());
        let (mut binv, mut w, k_old) = match recycled {
            Some((b, w, k)) => (b, w, Some(k)),
            None => (vec![0.0; self.blocks.len()], vec![0.0; d * m], None),
        };
        let inverted = match self.equal_blocks {
            Some(_) => 1,
            None => self.layout.groups.len(),
        };
        let invertible = self.layout.invert_blocks(
            inverted,
            &mut binv,
            &self.blocks,
            alpha,
            gamma,
            &mut self.aug,
        );
        if !invertible {
            let f = self.dense(jtp.transpose(), alpha, beta, gamma);
            return self.fell_back(c, f);
        }
        // W = B⁻¹Jᵀ (rows in `perm` order): with equal blocks, as one k×k by k×(d/k·m)
        // product (Jᵀ's columns are the groups' k-vectors one after another); column by
        // column when the blocks are small and of one size (a kernel call per block of one or
        // two parameters costs more than its work); else group by group.
        if let Some(k) = self.equal_blocks {
            matmul(
                MatMut::from_column_major_slice_mut(&mut w, k, d / k * m),
                Accum::Replace,
                MatRef::from_row_major_slice(&binv[..k * k], k, k),
                MatRef::from_column_major_slice(jt, k, d / k * m),
                1.0,
                Par::Seq,
            );
        } else if let Some(k) = self.layout.uniform_small {
            for (src, dst) in jt.chunks_exact(d).zip(w.chunks_exact_mut(d)) {
                blocks_times(k, &binv, src, dst);
            }
        } else {
            let (jt, mut wm) = (
                MatRef::from_column_major_slice(jt, d, m),
                MatMut::from_column_major_slice_mut(&mut w, d, m),
            );
            for (g, group) in self.layout.groups.iter().enumerate() {
                let (k, o) = (group.len(), self.layout.starts[g]);
                let b = &binv[self.layout.offsets[g]..self.layout.offsets[g] + k * k];
                matmul(
                    wm.as_mut().subrows_mut(o, k),
                    Accum::Replace,
                    MatRef::from_row_major_slice(b, k, k),
                    jt.subrows(o, k),
                    1.0,
                    Par::Seq,
                );
            }
        }
        let (jt_ref, w_ref) = (
            MatRef::from_column_major_slice(jt, d, m),
            MatRef::from_column_major_slice(&w, d, m),
        );
        let k = capacitance(jt_ref, w_ref, beta, k_old);
        let cholesky = k.is_cholesky();
        self.factor = Some((c, Factor::Woodbury { binv, w, k }));
        Factored {
            cholesky,
            fallback: false,
            factorised: true,
        }
    }

    /// A = αI + βJᵀJ + γR assembled from `jac` and factorised.
    fn dense(&self, jac: MatRef<'_, f64>, alpha: f64, beta: f64, gamma: f64) -> Factorisation {
        let d = jac.ncols();
        Factorisation::build(d, None, |mut a, _| {
            matmul(
                a.as_mut(),
                Accum::Replace,
                jac.transpose(),
                jac,
                beta,
                Par::Seq,
            );
            for i in 0..d {
                a[(i, i)] += alpha;
            }
            for (g, group) in self.layout.groups.iter().enumerate() {
                let k = group.len();
                let r = &self.blocks[self.layout.offsets[g]..self.layout.offsets[g] + k * k];
                for (x, &px) in group.iter().enumerate() {
                    for (y, &py) in group.iter().enumerate() {
                        a[(px, py)] += gamma * r[x * k + y];
                    }
                }
            }
        })
    }

    /// rhs ← A⁻¹ rhs; false (rhs unusable) when the factorisation was refused.
    pub(crate) fn solve(&mut self, res: &dyn Residuals, rhs: &mut [f64]) -> bool {
        let Some((_, factor)) = &self.factor else {
            panic!("factorised before solving");
        };
        let layout = &self.layout;
        match (factor, &self.jacobian) {
            (Factor::Refused, _) => return false,
            (Factor::Dense(f), _) => f.solve_vec(rhs),
            (Factor::Shared { cinv, k }, Jacobian::Shared { theta }) => {
                // y = (I ⊗ C) rhs; u = K⁻¹ J y; rhs = y − (I ⊗ C) Jᵀ u.
                let (y, z) = (&mut self.tmp_a, &mut self.tmp_b);
                let size = self.layout.groups[0].len();
                apply_shared(cinv, size, &self.perm, rhs, y, &mut self.tmp_d);
                let u = &mut self.tmp_m;
                res.jvp_into(theta, y, u);
                k.solve_vec(u);
                res.vjp_into(theta, u, z);
                apply_shared(cinv, size, &self.perm, z, rhs, &mut self.tmp_d);
                for (r, yi) in rhs.iter_mut().zip(y.iter()) {
                    *r = yi - *r;
                }
            }
            (Factor::Shared { .. }, Jacobian::Stored { .. } | Jacobian::RankOne { .. }) => {
                unreachable!("a shared factorisation comes with the shared Jacobian")
            }
            (Factor::RankOne { binv, w, k }, Jacobian::RankOne { grads }) => {
                // y = B⁻¹ rhs (in `perm` order); s_g = ∇β_g·y_g, so that J y = A s;
                // u = K⁻¹ A s; y ← y − w ⊙ (Aᵀu per group); rhs = y in parameter order.
                let a = res
                    .group_features()
                    .expect("rank-one groups were checked when the solve was set up");
                let (x, y) = (&mut self.tmp_p, &mut self.tmp_d);
                for (xq, &p) in x.iter_mut().zip(&self.perm) {
                    *xq = rhs[p];
                }
                layout.apply(binv, x, y);
                let s = &mut self.tmp_g;
                layout.group_dots(grads, y, s);
                let u = &mut self.tmp_m;
                crate::la::matvec_into(a, s, u);
                k.solve_vec(u);
                crate::la::matvec_into(a.transpose(), u, s);
                layout.group_axpy(s, w, y);
                for (q, &p) in self.perm.iter().enumerate() {
                    rhs[p] = y[q];
                }
            }
            (Factor::RankOne { .. }, _) => {
                unreachable!("a rank-one factorisation comes with the coefficient gradients")
            }
            (Factor::Woodbury { .. } | Factor::Affine { .. }, _) => {
                let Jacobian::Stored { jt, .. } = &self.jacobian else {
                    unreachable!("a stored-J factorisation comes with the stored Jacobian")
                };
                // y = B⁻¹ rhs, in `perm` order (rhs gathered into it first), and W = B⁻¹Jᵀ as a
                // stored matrix and a scale.
                let (x, y) = (&mut self.tmp_p, &mut self.tmp_d);
                for (xq, &p) in x.iter_mut().zip(&self.perm) {
                    *xq = rhs[p];
                }
                let d = x.len();
                let (w, w_scale, k) = match factor {
                    Factor::Affine { alpha, k } => {
                        // B = αI: W = Jᵀ/α.
                        for (yq, xq) in y.iter_mut().zip(x.iter()) {
                            *yq = xq / alpha;
                        }
                        (&jt[..], 1.0 / alpha, k)
                    }
                    Factor::Woodbury { binv, w, k } => {
                        if let Some(k) = self.equal_blocks {
                            matmul(
                                MatMut::from_column_major_slice_mut(y, k, d / k),
                                Accum::Replace,
                                MatRef::from_row_major_slice(&binv[..k * k], k, k),
                                MatRef::from_column_major_slice(x, k, d / k),
                                1.0,
                                Par::Seq,
                            );
                        } else {
                            layout.apply(binv, x, y);
                        }
                        (&w[..], 1.0, k)
                    }
                    _ => unreachable!("matched Woodbury or Affine above"),
                };
                // u = K⁻¹ Jᵀᵀ y; y ← y − W u; rhs = y back in parameter order.
                let u = &mut self.tmp_m;
                let m = u.len();
                crate::la::matvec_into(MatRef::from_column_major_slice(jt, d, m).transpose(), y, u);
                k.solve_vec(u);
                matmul(
                    MatMut::from_column_major_slice_mut(y, d, 1),
                    Accum::Add,
                    MatRef::from_column_major_slice(w, d, m),
                    MatRef::from_column_major_slice(u, m, 1),
                    -w_scale,
                    Par::Seq,
                );
                for (q, &p) in self.perm.iter().enumerate() {
                    rhs[p] = y[q];
                }
            }
        }
        true
    }
}

/// out ← (I ⊗ C) v: C (k×k, row-major) applied to v's entries of each group (`perm`: the
/// groups concatenated, all of size k), as one k×k by k×g product through the gathered
/// `scratch` (d entries).
fn apply_shared(
    c: &[f64],
    k: usize,
    perm: &[usize],
    v: &[f64],
    out: &mut [f64],
    scratch: &mut [f64],
) {
    let g = perm.len() / k;
    for (q, &p) in perm.iter().enumerate() {
        scratch[q] = v[p];
    }
    // Y = C X in `out`'s storage (column-major k×g), then scattered back through `scratch`.
    matmul(
        MatMut::from_column_major_slice_mut(out, k, g),
        Accum::Replace,
        MatRef::from_row_major_slice(c, k, k),
        MatRef::from_column_major_slice(scratch, k, g),
        1.0,
        Par::Seq,
    );
    scratch.copy_from_slice(out);
    for (q, &p) in perm.iter().enumerate() {
        out[p] = scratch[q];
    }
}

/// K = AᵀB + I/β for d×m A and B with AᵀB symmetric (J B⁻¹ Jᵀ, A diag(q) Aᵀ), factorised
/// from its lower triangle (Cholesky reads nothing else: half the product), in the storage
/// of `recycled`.
fn capacitance(
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    beta: f64,
    recycled: Option<Factorisation>,
) -> Factorisation {
    let m = a.ncols();
    Factorisation::build(m, recycled, |mut kk, lower| {
        symmetric_product(kk.as_mut(), a, b, lower);
        for i in 0..m {
            kk[(i, i)] += 1.0 / beta;
        }
    })
}

/// dst = Aᵀ B for d×m A and B with AᵀB symmetric: with `lower`, only its lower triangle is
/// computed (about half the m²d products; Cholesky reads nothing else), else all of it, the
/// upper triangle mirrored from the lower.
fn symmetric_product(
    mut dst: MatMut<'_, f64>,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    lower: bool,
) {
    triangular::matmul(
        dst.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        a.transpose(),
        BlockStructure::Rectangular,
        b,
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    if !lower {
        for j in 1..dst.ncols() {
            for i in 0..j {
                dst[(i, j)] = dst[(j, i)];
            }
        }
    }
}

/// The curvature groups, and where each group's block and entries lie.
struct Layout {
    groups: Vec<Vec<usize>>,
    /// Start of each group's block in `blocks` (k² entries each).
    offsets: Vec<usize>,
    /// Start of each group in `perm`.
    starts: Vec<usize>,
    /// k when every group has k ≤ [`SMALL_BLOCK`] parameters: B is applied by
    /// [`blocks_times`].
    uniform_small: Option<usize>,
}

impl Layout {
    /// binv ← (αI + γR_g)⁻¹ for the first `count` groups' blocks of R (`blocks`), with the
    /// scratch `aug`; false when one is refused ([`shifted_block_inverse`]).
    fn invert_blocks(
        &self,
        count: usize,
        binv: &mut [f64],
        blocks: &[f64],
        alpha: f64,
        gamma: f64,
        aug: &mut Vec<f64>,
    ) -> bool {
        self.groups[..count].iter().enumerate().all(|(g, group)| {
            let (k, o) = (group.len(), self.offsets[g]);
            let (b, r) = (&mut binv[o..o + k * k], &blocks[o..o + k * k]);
            shifted_block_inverse(b, r, k, alpha, gamma, aug)
        })
    }

    /// out_g ← a_g·b_g, the dot product of the entries of group g (`perm` order).
    fn group_dots(&self, a: &[f64], b: &[f64], out: &mut [f64]) {
        fn fixed<const K: usize>(a: &[f64], b: &[f64], out: &mut [f64]) {
            for ((o, x), y) in out.iter_mut().zip(a.chunks_exact(K)).zip(b.chunks_exact(K)) {
                *o = (0..K).map(|l| x[l] * y[l]).sum();
            }
        }
        match self.uniform_small {
            Some(1) => fixed::<1>(a, b, out),
            Some(2) => fixed::<2>(a, b, out),
            Some(3) => fixed::<3>(a, b, out),
            Some(4) => fixed::<4>(a, b, out),
            _ => {
                for ((o, group), &start) in out.iter_mut().zip(&self.groups).zip(&self.starts) {
                    let range = start..start + group.len();
                    *o = crate::la::dot(&a[range.clone()], &b[range]);
                }
            }
        }
    }

    /// y_g ← y_g − s_g w_g for every group g (`perm` order).
    fn group_axpy(&self, s: &[f64], w: &[f64], y: &mut [f64]) {
        fn fixed<const K: usize>(s: &[f64], w: &[f64], y: &mut [f64]) {
            for ((sg, wg), yg) in s.iter().zip(w.chunks_exact(K)).zip(y.chunks_exact_mut(K)) {
                for l in 0..K {
                    yg[l] -= sg * wg[l];
                }
            }
        }
        match self.uniform_small {
            Some(1) => fixed::<1>(s, w, y),
            Some(2) => fixed::<2>(s, w, y),
            Some(3) => fixed::<3>(s, w, y),
            Some(4) => fixed::<4>(s, w, y),
            _ => {
                for ((sg, group), &start) in s.iter().zip(&self.groups).zip(&self.starts) {
                    let range = start..start + group.len();
                    for (yq, wq) in y[range.clone()].iter_mut().zip(&w[range]) {
                        *yq -= sg * wq;
                    }
                }
            }
        }
    }

    /// dst ← B⁻¹src group by group, for `binv` B's block inverses and src, dst in `perm`
    /// order.
    fn apply(&self, binv: &[f64], src: &[f64], dst: &mut [f64]) {
        if let Some(k) = self.uniform_small {
            blocks_times(k, binv, src, dst);
            return;
        }
        for (g, group) in self.groups.iter().enumerate() {
            let (k, o) = (group.len(), self.starts[g]);
            let b = &binv[self.offsets[g]..self.offsets[g] + k * k];
            let xg = &src[o..o + k];
            for (a, ya) in dst[o..o + k].iter_mut().enumerate() {
                *ya = b[a * k..(a + 1) * k]
                    .iter()
                    .zip(xg)
                    .map(|(p, q)| p * q)
                    .sum();
            }
        }
    }
}

/// dst ← (I ⊗ B) src for the k×k row-major blocks concatenated in `blocks`, one per
/// k entries of `src` (k ≤ [`SMALL_BLOCK`]: the loops are unrolled for each size).
fn blocks_times(k: usize, blocks: &[f64], src: &[f64], dst: &mut [f64]) {
    fn fixed<const K: usize>(blocks: &[f64], src: &[f64], dst: &mut [f64]) {
        let parts = blocks
            .chunks_exact(K * K)
            .zip(src.chunks_exact(K).zip(dst.chunks_exact_mut(K)));
        for (b, (x, y)) in parts {
            for a in 0..K {
                let mut sum = 0.0;
                for c in 0..K {
                    sum += b[a * K + c] * x[c];
                }
                y[a] = sum;
            }
        }
    }
    match k {
        1 => fixed::<1>(blocks, src, dst),
        2 => fixed::<2>(blocks, src, dst),
        3 => fixed::<3>(blocks, src, dst),
        4 => fixed::<4>(blocks, src, dst),
        _ => unreachable!("blocks_times takes blocks of at most SMALL_BLOCK parameters"),
    }
}

/// b ← (αI + γr)⁻¹ for the k×k row-major block r (B's block of R), inverted in place with
/// the scratch `aug`; false when [`invert_in_place`] refuses it.
fn shifted_block_inverse(
    b: &mut [f64],
    r: &[f64],
    k: usize,
    alpha: f64,
    gamma: f64,
    aug: &mut Vec<f64>,
) -> bool {
    if k == 1 {
        // A 1×1 block is its own condition number: it needs only a non-zero pivot.
        let p = alpha + gamma * r[0];
        b[0] = 1.0 / p;
        return p.is_finite() && p != 0.0 && b[0].is_finite();
    }
    if k == 2 {
        // The diagonal network's blocks: the adjugate over the determinant, refused as
        // Gauss–Jordan refuses, on the condition number ‖a‖∞‖a⁻¹‖∞ (a vanishing
        // determinant makes it infinite).
        let (p, q, s, t) = (
            alpha + gamma * r[0],
            gamma * r[1],
            gamma * r[2],
            alpha + gamma * r[3],
        );
        let norm = (p.abs() + q.abs()).max(s.abs() + t.abs());
        let det = p * t - q * s;
        b.copy_from_slice(&[t / det, -q / det, -s / det, p / det]);
        // Every entry finite (`inf_norm`'s maximum would pass over a NaN), and the
        // determinant too: one that overflows would make the inverse zero.
        let finite = b.iter().chain(&[p, q, s, t, det]).all(|x| x.is_finite()) && det != 0.0;
        return finite && norm > 0.0 && norm * inf_norm(b, 2) <= MAX_BLOCK_CONDITION;
    }
    for (bi, ri) in b.iter_mut().zip(r) {
        *bi = gamma * ri;
    }
    for i in 0..k {
        b[i * k + i] += alpha;
    }
    invert_in_place(b, k, aug)
}

/// The ∞-norm (largest absolute row sum) of the k×k row-major `a`.
fn inf_norm(a: &[f64], k: usize) -> f64 {
    a.chunks_exact(k)
        .map(|row| row.iter().map(|x| x.abs()).sum::<f64>())
        .fold(0.0, f64::max)
}

/// Inverts the k×k row-major `a` in place by Gauss–Jordan elimination with partial pivoting,
/// in the scratch `m` (resized to (k + 1)×2k: the augmented matrix and a copy of the pivot
/// row). False if a pivot vanishes or the condition number ‖a‖∞‖a⁻¹‖∞ exceeds
/// [`MAX_BLOCK_CONDITION`]. The pivot row is zero left of the pivot, so each elimination
/// updates only the columns from the pivot on, over slices the compiler vectorises (matrix
/// sensing at λ = 1e-6, rtol 1e-8, when it still inverted ten 10×10 blocks per
/// factorisation: 20.7 → 19.6 ms against full-width indexed rows).
fn invert_in_place(a: &mut [f64], k: usize, m: &mut Vec<f64>) -> bool {
    let norm = inf_norm(a, k);
    if !(k > 0 && norm.is_finite() && norm > 0.0) {
        return false;
    }
    // Augment [a | I].
    let w = 2 * k;
    m.clear();
    m.resize((k + 1) * w, 0.0);
    for i in 0..k {
        m[i * w..i * w + k].copy_from_slice(&a[i * k..(i + 1) * k]);
        m[i * w + k + i] = 1.0;
    }
    let (rows, pivot) = m.split_at_mut(k * w);
    for col in 0..k {
        let piv = (col..k)
            .max_by(|&x, &y| rows[x * w + col].abs().total_cmp(&rows[y * w + col].abs()))
            .unwrap_or(col);
        if rows[piv * w + col].abs() <= f64::EPSILON * norm {
            return false;
        }
        if piv != col {
            for j in 0..w {
                rows.swap(piv * w + j, col * w + j);
            }
        }
        let p = rows[col * w + col];
        for x in &mut rows[col * w + col..(col + 1) * w] {
            *x /= p;
        }
        pivot[col..].copy_from_slice(&rows[col * w + col..(col + 1) * w]);
        for (i, row) in rows.chunks_exact_mut(w).enumerate() {
            let f = row[col];
            if i != col && f != 0.0 {
                for (x, q) in row[col..].iter_mut().zip(&pivot[col..]) {
                    *x -= f * q;
                }
            }
        }
    }
    for i in 0..k {
        a[i * k..(i + 1) * k].copy_from_slice(&rows[i * w + k..i * w + w]);
    }
    let inv_norm = inf_norm(a, k);
    inv_norm.is_finite() && norm * inv_norm <= MAX_BLOCK_CONDITION
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Residuals with a fixed pseudo-random J (m×d) and fixed symmetric curvature blocks;
    /// `shared` declares the shared-block Gram matrix (the trait's default, through J).
    struct Fixed {
        jac: DMat,
        groups: Vec<Vec<usize>>,
        blocks: Vec<f64>,
        shared: bool,
        /// Rank-one groups: A (m×G) and ∇β in group order, with J = A·diag(∇β) per group.
        features: Option<(DMat, Vec<f64>)>,
    }

    impl Fixed {
        /// With `shared`, every block is the first one.
        fn new(groups: Vec<Vec<usize>>, m: usize, d: usize, seed: u64, shared: bool) -> Self {
            let mut x = seed;
            let mut next = || {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            };
            let jac = DMat::from_fn(m, d, |_, _| next());
            let mut blocks = Vec::new();
            for (g, group) in groups.iter().enumerate() {
                let k = group.len();
                if shared && g > 0 {
                    blocks.extend_from_within(..k * k);
                    continue;
                }
                let o = blocks.len();
                blocks.resize(o + k * k, 0.0);
                for a in 0..k {
                    for b in 0..=a {
                        let v = next();
                        blocks[o + a * k + b] = v;
                        blocks[o + b * k + a] = v;
                    }
                }
            }
            Self {
                jac,
                groups,
                blocks,
                shared,
                features: None,
            }
        }

        /// Rank-one groups: J's columns on group g are a_g∇β_gᵀ for a pseudo-random A and ∇β.
        fn rank_one(groups: Vec<Vec<usize>>, m: usize, d: usize, seed: u64) -> Self {
            let mut res = Self::new(groups, m, d, seed, false);
            let g = res.groups.len();
            let a = DMat::from_fn(m, g, |i, j| {
                ((i * 7 + j * 3 + 1) as f64 * 0.618).fract() - 0.5
            });
            let grads: Vec<f64> = (0..d)
                .map(|q| ((q as f64 + 0.5) * 0.754).fract() + 0.2)
                .collect();
            let mut q = 0;
            for (j, group) in res.groups.iter().enumerate() {
                for &p in group {
                    for i in 0..m {
                        res.jac[(i, p)] = a[(i, j)] * grads[q];
                    }
                    q += 1;
                }
            }
            res.features = Some((a, grads));
            res
        }

        /// The structured solve linearised at this J and R.
        fn structured(&self) -> Structured {
            let (m, d) = (self.jac.nrows(), self.jac.ncols());
            let kind = if self.shared {
                Kind::Shared
            } else {
                Kind::Stored
            };
            let mut st = Structured::new(self.groups.clone(), m, d, kind);
            st.linearise(self, &vec![0.0; d]);
            st
        }

        /// max |A x − b| / max |b| with A = αI + βJᵀJ + γR.
        fn residual(&self, alpha: f64, beta: f64, gamma: f64, x: &[f64], b: &[f64]) -> f64 {
            let mut a = DMat::zeros(x.len(), x.len());
            matmul(
                a.as_mut(),
                Accum::Replace,
                self.jac.transpose(),
                &self.jac,
                beta,
                Par::Seq,
            );
            for i in 0..x.len() {
                a[(i, i)] += alpha;
            }
            let mut o = 0;
            for group in &self.groups {
                let k = group.len();
                for (p, &gp) in group.iter().enumerate() {
                    for (q, &gq) in group.iter().enumerate() {
                        a[(gp, gq)] += gamma * self.blocks[o + p * k + q];
                    }
                }
                o += k * k;
            }
            let mut ax = vec![0.0; x.len()];
            crate::la::matvec_into(a.as_ref(), x, &mut ax);
            let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            ax.iter()
                .zip(b)
                .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()))
                / scale
        }
    }

    impl Residuals for Fixed {
        fn count(&self) -> usize {
            self.jac.nrows()
        }
        fn scale(&self) -> f64 {
            1.0
        }
        fn residuals_into(&self, _theta: &[f64], r: &mut [f64]) {
            r.fill(0.0);
        }
        fn jacobian_into(&self, _theta: &[f64], mut jac: MatMut<'_, f64>) {
            jac.copy_from(&self.jac);
        }
        fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
            Some(self.groups.clone())
        }
        fn curvature_blocks_into(&self, _theta: &[f64], out: &mut [f64]) {
            out.copy_from_slice(&self.blocks);
        }
        fn has_shared_block_gram(&self) -> bool {
            self.shared
        }
        fn group_features(&self) -> Option<MatRef<'_, f64>> {
            self.features.as_ref().map(|(a, _)| a.as_ref())
        }
        fn coefficient_gradients_into(&self, _theta: &[f64], out: &mut [f64]) -> bool {
            match &self.features {
                Some((_, grads)) => {
                    out.copy_from_slice(grads);
                    true
                }
                None => false,
            }
        }
    }

    /// Solves A x = b with the factorisation for (α, β, γ) and returns the relative residual.
    fn solve_and_check(res: &Fixed, st: &mut Structured, abg: (f64, f64, f64)) -> f64 {
        let (alpha, beta, gamma) = abg;
        let d = res.jac.ncols();
        let b: Vec<f64> = (0..d).map(|i| (i as f64 * 0.7).sin()).collect();
        let mut x = b.clone();
        assert!(st.solve(res, &mut x));
        res.residual(alpha, beta, gamma, &x, &b)
    }

    /// Well-conditioned B (positive definite), indefinite B, and a stiff step (large β, γ).
    const CASES: [(f64, f64, f64); 3] = [(1.0, 2.0, 0.3), (1.0, 50.0, 3.0), (1.0001, 1e6, 1e4)];

    #[test]
    fn the_woodbury_solve_is_exact_and_the_fallback_takes_over_when_a_block_is_singular() {
        // Interleaved groups of sizes 3, 2 and 1 over d = 12, m = 4 residuals.
        let groups = vec![
            vec![0, 4, 8],
            vec![1, 5, 9],
            vec![2, 6],
            vec![3, 7],
            vec![10],
            vec![11],
        ];
        let (m, d) = (4, 12);
        let res = Fixed::new(groups.clone(), m, d, 7, false);
        for abg in CASES {
            let mut st = res.structured();
            let f = st.factorise_with(0.1, abg.0, abg.1, abg.2);
            assert!(matches!(st.factor, Some((_, Factor::Woodbury { .. }))));
            let r = solve_and_check(&res, &mut st, abg);
            assert!(r < 1e-9, "{abg:?}: residual {r}");
            assert!(!f.fallback && f.factorised);
        }
        // A second factorisation at another c reuses the storage and is exact again.
        let res = Fixed::new(groups.clone(), m, d, 11, false);
        let mut st = res.structured();
        for abg in [(1.0, 2.0, 0.3), (1.5, 40.0, 8.0)] {
            st.factorise_with(abg.1, abg.0, abg.1, abg.2);
            let r = solve_and_check(&res, &mut st, abg);
            assert!(r < 1e-9, "refactorised at {abg:?}: residual {r}");
        }
        // Make the block of group 2 exactly singular in B = αI + γR: R's block = −(α/γ)I.
        let mut res = Fixed::new(groups, m, d, 7, false);
        let abg = (1.0, 5.0, 2.0);
        let o = 9 + 9;
        res.blocks[o..o + 4].copy_from_slice(&[-abg.0 / abg.2, 0.0, 0.0, -abg.0 / abg.2]);
        let mut st = res.structured();
        let f = st.factorise_with(0.1, abg.0, abg.1, abg.2);
        assert!(f.fallback && f.factorised);
        assert!(matches!(st.factor, Some((_, Factor::Dense(_)))));
        let r = solve_and_check(&res, &mut st, abg);
        assert!(r < 1e-12, "fallback residual {r}");
    }

    #[test]
    fn blocks_of_one_small_size_take_the_unrolled_path_and_solve_exactly() {
        // Six interleaved groups of one size k (d = 6k): k ≤ 4 goes through
        // blocks_times, k = 5 through faer's products; both must solve A x = b exactly.
        for k in 1..=SMALL_BLOCK + 1 {
            let count = 6;
            let d = k * count;
            let groups: Vec<Vec<usize>> = (0..count)
                .map(|g| (0..k).map(|a| g + a * count).collect())
                .collect();
            let res = Fixed::new(groups, 7, d, 5 + k as u64, false);
            let mut st = res.structured();
            assert_eq!(
                st.layout.uniform_small.is_some(),
                k <= SMALL_BLOCK,
                "k = {k}"
            );
            for abg in CASES {
                let f = st.factorise_with(abg.1, abg.0, abg.1, abg.2);
                assert!(!f.fallback && f.factorised, "k = {k}, {abg:?}");
                let r = solve_and_check(&res, &mut st, abg);
                assert!(r < 1e-9, "k = {k}, {abg:?}: residual {r}");
            }
        }
        // A 1×1 block α + γr = 0 or infinite is refused (the dense fallback takes over), and a
        // tiny non-zero one is kept: a scalar is perfectly conditioned.
        let mut b = [0.0];
        let mut aug = Vec::new();
        assert!(!shifted_block_inverse(
            &mut b,
            &[f64::INFINITY],
            1,
            1.0,
            2.0,
            &mut aug
        ));
        assert!(!shifted_block_inverse(
            &mut b,
            &[-0.5],
            1,
            1.0,
            2.0,
            &mut Vec::new()
        ));
        assert!(shifted_block_inverse(
            &mut b,
            &[-0.5 + 1e-12],
            1,
            1.0,
            2.0,
            &mut Vec::new()
        ));
        assert!((b[0] - 0.5e12).abs() < 1e-3 * 0.5e12, "{}", b[0]);
    }

    #[test]
    fn affine_residuals_at_a_very_stiff_step_are_solved_to_the_spectral_solution() {
        // R = 0 (γ = 0: B = αI, linear regression) and β up to 1e12, as at λ = 1e-8: the
        // corrector of a convex quadratic is accepted after this one solve, so x itself must
        // be accurate. Reference: A⁻¹b = b/α + Σᵢ vᵢ(1/(α + βσᵢ²) − 1/α)vᵢᵀb from the
        // eigenvectors of JJᵀ = UΣ²Uᵀ (vᵢ = Jᵀuᵢ/σᵢ), exact to rounding whatever β. A
        // Cholesky solve of the assembled A is not: its error grows like β (1.7e-8 at 1e9).
        // With R's blocks zero (as linear regression declares them) the Gram matrix JJᵀ kept
        // with J gives K without the m×d×m product (`Factor::Affine`), whatever γ.
        let groups: Vec<Vec<usize>> = (0..30).map(|g| vec![g]).collect();
        let (m, d) = (8, 30);
        let mut res = Fixed::new(groups, m, d, 17, false);
        let gram = &res.jac * res.jac.transpose();
        let (sigma2, u) = crate::la::symmetric_eigen(gram.as_ref()).unwrap();
        let mut st = res.structured();
        for zero_blocks in [false, true] {
            if zero_blocks {
                res.blocks.fill(0.0);
                st.linearise(&res, &vec![0.0; d]);
            }
            let gamma = if zero_blocks { 5.0 } else { 0.0 };
            for beta in [1e2, 1e6, 1e9, 1e12] {
                let alpha = 1.0 + 1e-8 * beta;
                st.factorise_with(beta, alpha, beta, gamma);
                let affine = matches!(st.factor, Some((_, Factor::Affine { .. })));
                assert_eq!(affine, zero_blocks);
                let b: Vec<f64> = (0..d).map(|i| (i as f64 * 0.7).sin()).collect();
                let mut x = b.clone();
                assert!(st.solve(&res, &mut x));
                let mut want: Vec<f64> = b.iter().map(|bi| bi / alpha).collect();
                for (i, &s2) in sigma2.iter().enumerate() {
                    let v: Vec<f64> = (0..d)
                        .map(|p| {
                            (0..m).map(|r| res.jac[(r, p)] * u[(r, i)]).sum::<f64>() / s2.sqrt()
                        })
                        .collect();
                    let w = (1.0 / (alpha + beta * s2) - 1.0 / alpha) * crate::la::dot(&v, &b);
                    crate::la::axpy(w, &v, &mut want);
                }
                let gap = crate::la::distance(&x, &want) / crate::la::norm(&want);
                assert!(
                    gap < 1e-12,
                    "β = {beta:e}, zero blocks {zero_blocks}: against the spectral solution {gap:e}"
                );
            }
        }
    }

    #[test]
    fn the_shared_block_solve_is_exact_without_the_jacobian_and_refuses_a_singular_block() {
        // Four interleaved groups of size 3 over d = 12, m = 5, every block the same.
        let groups: Vec<Vec<usize>> = (0..4).map(|g| vec![g, g + 4, g + 8]).collect();
        let (m, d) = (5, 12);
        let res = Fixed::new(groups.clone(), m, d, 3, true);
        let mut st = res.structured();
        assert!(matches!(st.jacobian, Jacobian::Shared { .. }));
        for abg in CASES {
            let f = st.factorise_shared(&res, 0.1, abg.0, abg.1, abg.2);
            assert!(matches!(st.factor, Some((_, Factor::Shared { .. }))));
            assert!(!f.fallback && f.factorised);
            let r = solve_and_check(&res, &mut st, abg);
            assert!(r < 1e-9, "{abg:?}: residual {r}");
        }
        // R₀ = −(α/γ)I makes B₀ singular: the factorisation is refused and solves fail.
        let mut res = Fixed::new(groups, m, d, 3, true);
        let abg = (1.0, 5.0, 2.0);
        for g in 0..4 {
            let block = &mut res.blocks[9 * g..9 * g + 9];
            block.fill(0.0);
            for i in 0..3 {
                block[i * 3 + i] = -abg.0 / abg.2;
            }
        }
        let mut st = res.structured();
        let f = st.factorise_shared(&res, 0.1, abg.0, abg.1, abg.2);
        assert!(f.fallback && !f.factorised);
        let mut x = vec![1.0; d];
        assert!(!st.solve(&res, &mut x));
    }

    #[test]
    fn equal_blocks_with_the_stored_jacobian_are_inverted_once_and_solve_exactly() {
        // Four interleaved groups of size 5 over d = 20, m = 6, every block the same, but the
        // loss does not form the shared-block Gram matrix: the stored-J path, with B⁻¹
        // applied as one 5×5 by 5×4 product.
        let groups: Vec<Vec<usize>> = (0..4)
            .map(|g| (0..5).map(|a| 4 * a + g).collect())
            .collect();
        let (m, d) = (6, 20);
        let mut res = Fixed::new(groups, m, d, 5, true);
        res.shared = false;
        let mut st = res.structured();
        assert!(matches!(st.jacobian, Jacobian::Stored { .. }));
        assert_eq!(st.equal_blocks, Some(5));
        for abg in CASES {
            let f = st.factorise_with(0.1, abg.0, abg.1, abg.2);
            assert!(matches!(st.factor, Some((_, Factor::Woodbury { .. }))));
            assert!(!f.fallback && f.factorised);
            let r = solve_and_check(&res, &mut st, abg);
            assert!(r < 1e-9, "{abg:?}: residual {r}");
        }
        // R₀ = −(α/γ)e₁e₁ᵀ makes every block singular (B = α(I − e₁e₁ᵀ) in each group) but
        // not A, whose four null directions of B the six residuals cover: the factorisation
        // falls back to the assembled matrix, which is exact.
        let abg = (1.0, 5.0, 2.0);
        let saved = res.blocks.clone();
        for block in res.blocks.chunks_exact_mut(25) {
            block.fill(0.0);
            block[0] = -abg.0 / abg.2;
        }
        st.linearise(&res, &vec![0.0; d]);
        assert_eq!(st.equal_blocks, Some(5));
        let f = st.factorise_with(0.1, abg.0, abg.1, abg.2);
        assert!(f.fallback && matches!(st.factor, Some((_, Factor::Dense(_)))));
        let r = solve_and_check(&res, &mut st, abg);
        assert!(r < 1e-9, "fallback: residual {r}");
        // One entry of the last block changed (symmetrically) and the same solve linearised
        // again: every block is inverted.
        res.blocks = saved;
        res.blocks[3 * 25 + 1] += 0.25;
        res.blocks[3 * 25 + 5] += 0.25;
        st.linearise(&res, &vec![0.0; d]);
        assert_eq!(st.equal_blocks, None);
        for abg in CASES {
            st.factorise_with(0.1, abg.0, abg.1, abg.2);
            let r = solve_and_check(&res, &mut st, abg);
            assert!(r < 1e-9, "{abg:?}: residual {r}");
        }
        // Equal blocks of two parameters keep the unrolled path.
        let pairs: Vec<Vec<usize>> = (0..5).map(|g| vec![g, g + 5]).collect();
        let mut res = Fixed::new(pairs, 4, 10, 9, true);
        res.shared = false;
        let mut st = res.structured();
        assert_eq!((st.equal_blocks, st.layout.uniform_small), (None, Some(2)));
        for abg in CASES {
            st.factorise_with(0.1, abg.0, abg.1, abg.2);
            let r = solve_and_check(&res, &mut st, abg);
            assert!(r < 1e-9, "pairs {abg:?}: residual {r}");
        }
    }

    #[test]
    fn small_blocks_are_inverted_and_ill_conditioned_ones_refused() {
        let a = [4.0, 1.0, 2.0, 1.0, 3.0, 0.5, 2.0, 0.5, -5.0];
        let mut inv = a;
        assert!(invert_in_place(&mut inv, 3, &mut Vec::new()));
        for i in 0..3 {
            for j in 0..3 {
                let p: f64 = (0..3).map(|l| a[i * 3 + l] * inv[l * 3 + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((p - want).abs() < 1e-14, "({i},{j}): {p}");
            }
        }
        // A zero leading entry needs the pivot search.
        let mut swap = [0.0, 2.0, 3.0, 1.0];
        assert!(invert_in_place(&mut swap, 2, &mut Vec::new()));
        assert!((swap[0] + 1.0 / 6.0).abs() < 1e-15 && (swap[1] - 1.0 / 3.0).abs() < 1e-15);
        let mut singular = [1.0, 2.0, 2.0, 4.0];
        assert!(!invert_in_place(&mut singular, 2, &mut Vec::new()));
        let mut nearly = [1.0, 0.0, 0.0, 1e-10];
        assert!(!invert_in_place(&mut nearly, 2, &mut Vec::new()));
        // A 10×10 block (matrix sensing's size) with small diagonal entries, so that most
        // columns swap rows, through a scratch reused from a larger block.
        let k = 10;
        let a: Vec<f64> = (0..k * k)
            .map(|q| {
                let (i, j) = (q / k, q % k);
                let x = ((q as f64 + 1.0) * 0.618_033_988_749_895).fract() - 0.5;
                if i == j {
                    0.01 * x
                } else {
                    x
                }
            })
            .collect();
        let mut inv = a.clone();
        let mut scratch = vec![7.0; 4 * k * k];
        assert!(invert_in_place(&mut inv, k, &mut scratch));
        for i in 0..k {
            for j in 0..k {
                let p: f64 = (0..k).map(|l| a[i * k + l] * inv[l * k + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((p - want).abs() < 1e-12, "({i},{j}): {p}");
            }
        }
    }

    #[test]
    fn two_by_two_blocks_are_inverted_in_closed_form_as_gauss_jordan_inverts_them() {
        // (α, γ, r): generic, a zero leading entry (Gauss–Jordan swaps rows), indefinite.
        let cases = [
            (1.0, 0.5, [2.0, 0.3, 0.3, -1.0]),
            (0.0, 1.0, [0.0, 2.0, 3.0, 1.0]),
            (1e-3, 7.0, [1.0, -2.0, -2.0, 0.5]),
            (2.0, 1e6, [1e-3, 4e-4, 4e-4, 2e-4]),
        ];
        for (alpha, gamma, r) in cases {
            let mut closed = [0.0; 4];
            assert!(shifted_block_inverse(
                &mut closed,
                &r,
                2,
                alpha,
                gamma,
                &mut Vec::new()
            ));
            let mut gj = [
                alpha + gamma * r[0],
                gamma * r[1],
                gamma * r[2],
                alpha + gamma * r[3],
            ];
            assert!(invert_in_place(&mut gj, 2, &mut Vec::new()));
            let scale = inf_norm(&gj, 2);
            for (c, g) in closed.iter().zip(&gj) {
                assert!(
                    (c - g).abs() <= 1e-13 * scale,
                    "{r:?}: {closed:?} against {gj:?}"
                );
            }
        }
        // Refused: singular, condition number 1e10 (as Gauss–Jordan refuses them), non-finite,
        // and out of the closed form's range.
        for (alpha, r) in [
            (0.0, [1.0, 2.0, 2.0, 4.0]),
            (0.0, [1.0, 0.0, 0.0, 1e-10]),
            (1.0, [f64::INFINITY, 0.0, 0.0, 1.0]),
            (1.0, [f64::NAN, 0.0, 0.0, 1.0]),
            // A determinant that overflows (the adjugate over it would be zero).
            (0.0, [1e200, 0.0, 0.0, 1e200]),
        ] {
            let mut b = [0.0; 4];
            assert!(
                !shifted_block_inverse(&mut b, &r, 2, alpha, 1.0, &mut Vec::new()),
                "{r:?}"
            );
        }
    }

    #[test]
    fn the_symmetric_product_fills_the_lower_triangle_or_all_of_it() {
        let (d, m) = (13, 6);
        let next = |q: usize| ((q as f64 + 1.0) * 0.754_877_666_246_693).fract() - 0.5;
        let a = DMat::from_fn(d, m, |i, j| next(i * m + j));
        // B = S A for a symmetric S, so that AᵀB = AᵀSA is symmetric.
        let s = DMat::from_fn(d, d, |i, j| next(i.max(j) * d + i.min(j) + 500));
        let b = &s * &a;
        let want = a.transpose() * &b;
        for lower in [true, false] {
            let mut got = DMat::from_fn(m, m, |_, _| f64::NAN);
            symmetric_product(got.as_mut(), a.as_ref(), b.as_ref(), lower);
            for j in 0..m {
                for i in 0..m {
                    if lower && i < j {
                        continue;
                    }
                    let e = (got[(i, j)] - want[(i, j)]).abs();
                    assert!(e < 1e-13, "lower = {lower}, ({i}, {j}): {e}");
                }
            }
        }
    }

    #[test]
    fn rank_one_groups_solve_exactly_and_fall_back_when_a_block_is_singular() {
        // Pairs (the unrolled loops: the diagonal network's groups) and interleaved groups of
        // sizes 1-3 (the general ones).
        let pairs: Vec<Vec<usize>> = (0..6).map(|j| vec![j, 6 + j]).collect();
        let mixed = vec![vec![0, 4, 8], vec![1, 5], vec![2], vec![3, 7, 9], vec![6]];
        for (groups, d) in [(pairs, 12), (mixed, 10)] {
            let m = 4;
            let res = Fixed::rank_one(groups.clone(), m, d, 5);
            assert!(rank_one_groups(&res, &groups, &vec![0.0; d]));
            let mut st = Structured::new(groups.clone(), m, d, Kind::RankOne);
            st.linearise(&res, &vec![0.0; d]);
            // Positive definite B gives a positive definite K (Cholesky); the indefinite and
            // stiff cases an indefinite one (the LU of the mirrored lower triangle).
            for (abg, cholesky) in CASES.into_iter().zip([true, false, false]) {
                let f = st.factorise_rank_one(&res, abg.1, abg.0, abg.1, abg.2);
                assert_eq!(f.cholesky, cholesky, "d = {d}, {abg:?}");
                assert!(!f.fallback && f.factorised, "{abg:?}");
                assert!(matches!(st.factor, Some((_, Factor::RankOne { .. }))));
                let r = solve_and_check(&res, &mut st, abg);
                assert!(r < 1e-9, "d = {d}, {abg:?}: residual {r}");
            }
            // A singular block of B = αI + γR: R's first block −(α/γ)nnᵀ with n = ∇β₀/‖∇β₀‖,
            // so that B's null direction is the one J sees (A stays invertible): the dense
            // fallback, with J assembled from A and ∇β.
            let mut singular = Fixed::rank_one(groups.clone(), m, d, 5);
            let abg = (1.0, 5.0, 2.0);
            let k = groups[0].len();
            let g0 = singular.features.as_ref().unwrap().1[..k].to_vec();
            let n2: f64 = g0.iter().map(|x| x * x).sum();
            for a in 0..k {
                for b in 0..k {
                    singular.blocks[a * k + b] = -abg.0 / abg.2 * g0[a] * g0[b] / n2;
                }
            }
            let mut st = Structured::new(groups.clone(), m, d, Kind::RankOne);
            st.linearise(&singular, &vec![0.0; d]);
            let f = st.factorise_rank_one(&singular, 0.1, abg.0, abg.1, abg.2);
            assert!(f.fallback && matches!(st.factor, Some((_, Factor::Dense(_)))));
            let r = solve_and_check(&singular, &mut st, abg);
            assert!(r < 1e-12, "d = {d}: fallback residual {r}");
        }
        // Declarations that do not hold are not used: an A that does not give J, an A of the
        // wrong shape, gradients not provided.
        let groups: Vec<Vec<usize>> = (0..6).map(|j| vec![j, 6 + j]).collect();
        let theta = vec![0.0; 12];
        let mut wrong = Fixed::rank_one(groups.clone(), 4, 12, 5);
        wrong.features.as_mut().unwrap().0[(2, 3)] += 1e-6;
        assert!(!rank_one_groups(&wrong, &groups, &theta));
        let mut shape = Fixed::rank_one(groups.clone(), 4, 12, 5);
        shape.features.as_mut().unwrap().0 = DMat::zeros(4, 5);
        assert!(!rank_one_groups(&shape, &groups, &theta));
        assert!(!rank_one_groups(
            &Fixed::new(groups.clone(), 4, 12, 5, false),
            &groups,
            &theta
        ));
    }

    /// r = A(u ⊙ v) on pairs (u_j, v_j), declaring `declared` as its A.
    struct Pairs {
        a: DMat,
        declared: DMat,
    }

    impl Residuals for Pairs {
        fn count(&self) -> usize {
            self.a.nrows()
        }
        fn scale(&self) -> f64 {
            1.0
        }
        fn residuals_into(&self, theta: &[f64], r: &mut [f64]) {
            let p = self.a.ncols();
            for (i, ri) in r.iter_mut().enumerate() {
                *ri = (0..p)
                    .map(|j| self.a[(i, j)] * theta[j] * theta[p + j])
                    .sum();
            }
        }
        fn jacobian_into(&self, theta: &[f64], mut jac: MatMut<'_, f64>) {
            let p = self.a.ncols();
            for j in 0..p {
                for i in 0..self.a.nrows() {
                    jac[(i, j)] = self.a[(i, j)] * theta[p + j];
                    jac[(i, p + j)] = self.a[(i, j)] * theta[j];
                }
            }
        }
        fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
            let p = self.a.ncols();
            Some((0..p).map(|j| vec![j, p + j]).collect())
        }
        fn group_features(&self) -> Option<MatRef<'_, f64>> {
            Some(self.declared.as_ref())
        }
        fn coefficient_gradients_into(&self, theta: &[f64], out: &mut [f64]) -> bool {
            let p = self.a.ncols();
            for (j, pair) in out.chunks_exact_mut(2).enumerate() {
                pair.copy_from_slice(&[theta[p + j], theta[j]]);
            }
            true
        }
    }

    #[test]
    fn a_rank_one_declaration_is_checked_away_from_a_point_where_j_vanishes() {
        // At θ = 0 both J and ∇β vanish, so any A agrees there: the check must look nearby.
        let a = DMat::from_fn(3, 4, |i, j| ((i * 4 + j + 1) as f64 * 0.618).fract() - 0.5);
        let theta = vec![0.0; 8];
        let groups = Pairs {
            a: a.clone(),
            declared: a.clone(),
        }
        .curvature_groups()
        .unwrap();
        let right = Pairs {
            a: a.clone(),
            declared: a.clone(),
        };
        assert!(rank_one_groups(&right, &groups, &theta));
        let mut declared = a.clone();
        declared[(1, 2)] += 0.25;
        let wrong = Pairs { a, declared };
        assert!(!rank_one_groups(&wrong, &groups, &theta));
    }
}
