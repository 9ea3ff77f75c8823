//! The structured direct solve of the Newton systems, for least-squares losses with few
//! residuals and block-diagonal residual curvature.
//!
//! For F = ‖r‖²/(2s) with m residuals, ∇²F = JᵀJ/s + R with R = Σᵢ rᵢ∇²rᵢ/s. When R is block
//! diagonal on fixed parameter groups ([`crate::Residuals::curvature_groups`]), the Newton
//! matrix is A = B + βJᵀJ with B = αI + γR block diagonal ([`crate::newton::NewtonMatrix`]),
//! and Woodbury's identity gives it exactly through the m×m matrix K = I/β + J B⁻¹ Jᵀ:
//! A⁻¹ = B⁻¹ − W K⁻¹ J B⁻¹ with W = B⁻¹Jᵀ. A factorisation costs O(dm² + m³ + Σk³) instead of
//! O(d³/3), a solve O(dm) instead of O(d²).
//!
//! J is kept in one of three forms ([`Kind`]): stored (d×m; with R = 0 at the linearisation
//! point JJᵀ is kept too and W = Jᵀ/α is never formed), one block shared by all groups (J
//! applied through the loss's products, K formed by the loss), or rank-one groups
//! r = Aβ(θ) − b (J = A·diag(∇β) group by group). A block of B too ill-conditioned for the
//! identity sends the factorisation to the assembled d×d matrix (or, shared, refuses it).
//! The design note (docs/design.md) has the measurements behind these forms.

mod blocks;
mod factorise;
mod layout;
mod products;
mod solve;
#[cfg(test)]
mod tests;

use crate::flow::GradientFlow;
use crate::la::{DMat, Factorisation, MatRef};
use crate::loss::Residuals;
use crate::newton::{direct_tolerates, Factorised, NewtonMatrix, NewtonSolve, Solved};
use layout::Layout;
use products::symmetric_product;

/// Blocks of B up to this size are applied by plain loops instead of faer's kernels.
const SMALL_BLOCK: usize = 4;

/// How the current factorisation solves.
pub(super) enum Factor {
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
    /// R = 0 at θ_J (affine residuals): B = αI, K = I/β + JJᵀ/α from
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
pub(super) enum Jacobian {
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
    /// (R = I ⊗ S): one block is inverted, and B⁻¹ applies to the k×(d/k)
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
/// point (θ alone may say nothing: at θ = 0 products such as u_j v_j have vanishing J and ∇β), where J
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
    pub(super) fn new(groups: Vec<Vec<usize>>, m: usize, d: usize, kind: Kind) -> Self {
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
    pub(super) fn linearise_at(&mut self, res: &dyn Residuals, at: &[f64]) {
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

    /// The structured solve for `res` with its valid `groups`, in the form the loss allows at
    /// θ₀ (`shared`: one shared block with the loss's products).
    pub(crate) fn for_residuals(
        res: &dyn Residuals,
        groups: Vec<Vec<usize>>,
        theta0: &[f64],
        shared: bool,
    ) -> Self {
        let kind = if shared {
            Kind::Shared
        } else if rank_one_groups(res, &groups, theta0) {
            Kind::RankOne
        } else {
            Kind::Stored
        };
        Self::new(groups, res.count(), theta0.len(), kind)
    }
}

/// The residuals of a flow solved by the structured solve (chosen only for losses with them).
fn residuals<'f>(flow: &'f GradientFlow<'_>) -> &'f dyn Residuals {
    flow.loss()
        .residuals()
        .expect("the structured solve is chosen only for losses with residuals")
}

impl NewtonSolve for Structured {
    fn name(&self) -> &'static str {
        "structured"
    }

    fn linearise(&mut self, flow: &GradientFlow<'_>, at: &[f64]) {
        self.linearise_at(residuals(flow), at);
    }

    fn prepared_c(&self) -> Option<f64> {
        self.factor.as_ref().map(|(c, _)| *c)
    }

    fn tolerates(&self, c: f64, c_factorised: f64) -> bool {
        direct_tolerates(c, c_factorised)
    }

    /// Factorises A = I − cJ_flow at θ_J.
    fn factorise(&mut self, flow: &GradientFlow<'_>, c: f64) -> Factorised {
        let res = residuals(flow);
        let a = NewtonMatrix::new(flow, c);
        let (alpha, beta, gamma) = (a.alpha, a.beta(res.scale()), a.gamma);
        let f = match self.jacobian {
            Jacobian::Stored { .. } => self.factorise_with(c, alpha, beta, gamma),
            Jacobian::Shared { .. } => self.factorise_shared(res, c, alpha, beta, gamma),
            Jacobian::RankOne { .. } => self.factorise_rank_one(res, c, alpha, beta, gamma),
        };
        Factorised {
            factorised: f.factorised,
            cholesky: f.cholesky,
            fallback: f.fallback,
        }
    }

    fn solve(&mut self, flow: &GradientFlow<'_>, _c: f64, rhs: &mut [f64]) -> Solved {
        Solved {
            ok: self.solve_with(residuals(flow), rhs),
            krylov_iterations: 0,
        }
    }

    fn refused(&self) -> bool {
        matches!(self.factor, Some((_, Factor::Refused)))
    }

    fn cheap_factorisations(&self) -> bool {
        true
    }
}
