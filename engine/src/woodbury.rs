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
//! The identity loses digits when B is ill-conditioned (far from the manifold, where the
//! residuals are large and γR can cancel αI). A block whose condition number exceeds
//! [`MAX_BLOCK_CONDITION`] sends that factorisation to the dense path: A assembled from J and
//! R (no Hessian evaluation) and factorised as the dense solver does. Either way the Newton
//! iteration judges the corrections, so a loose solve costs iterations, never accuracy.

use faer::linalg::matmul::matmul;
use faer::{Accum, Par};

use crate::flow::GradientFlow;
use crate::la::{DMat, MatMut, MatRef};
use crate::linsolve::Factorisation;
use crate::loss::Residuals;

/// A block of B = αI + γR whose condition number (∞-norm) exceeds this sends the
/// factorisation to the assembled matrix.
const MAX_BLOCK_CONDITION: f64 = 1e8;

/// How the current factorisation solves.
enum Factor {
    /// Woodbury: B's block inverses, W = B⁻¹Jᵀ (d×m) and K = I/β + JW factorised.
    Woodbury {
        binv: Vec<f64>,
        w: DMat,
        k: Factorisation,
    },
    /// The fallback: A itself (d×d).
    Dense(Factorisation),
}

/// The linearisation point's J and R, and the factorisation for one c.
pub(crate) struct Structured {
    groups: Vec<Vec<usize>>,
    /// Start of each group's block in `blocks` (k² entries each).
    offsets: Vec<usize>,
    /// The groups concatenated: parameter order in which B's blocks are contiguous.
    perm: Vec<usize>,
    /// Start of each group in `perm`.
    starts: Vec<usize>,
    /// J (m×d) at θ_J.
    jac: DMat,
    /// Jᵀ with its rows in `perm` order (d×m): each group's rows are contiguous.
    jt: DMat,
    /// R's blocks at θ_J.
    blocks: Vec<f64>,
    factor: Option<(f64, Factor)>,
    tmp_m: Vec<f64>,
    tmp_d: Vec<f64>,
    /// Scratch of the block inversions: [B_g | I] for the largest group.
    aug: Vec<f64>,
}

/// What one factorisation was.
pub(crate) struct Factored {
    /// The factorised matrix (K, or A on the fallback) was positive definite (Cholesky).
    pub(crate) cholesky: bool,
    /// A block of B was too ill-conditioned: A itself was assembled and factorised.
    pub(crate) fallback: bool,
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
    /// For a loss whose residuals have valid curvature groups (see [`valid_groups`]).
    pub(crate) fn new(groups: Vec<Vec<usize>>, m: usize, d: usize) -> Self {
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
        Self {
            groups,
            offsets,
            perm,
            starts,
            jac: DMat::zeros(m, d),
            jt: DMat::zeros(d, m),
            blocks: vec![0.0; total],
            factor: None,
            tmp_m: vec![0.0; m],
            tmp_d: vec![0.0; d],
            aug: Vec::new(),
        }
    }

    /// J and R at `at`; the factorisation is dropped.
    pub(crate) fn linearise(&mut self, res: &dyn Residuals, at: &[f64]) {
        res.jacobian_into(at, self.jac.as_mut());
        for i in 0..self.jac.nrows() {
            for (q, &p) in self.perm.iter().enumerate() {
                self.jt[(q, i)] = self.jac[(i, p)];
            }
        }
        res.curvature_blocks_into(at, &mut self.blocks);
        self.factor = None;
    }

    /// The c of the current factorisation.
    pub(crate) fn prepared_c(&self) -> Option<f64> {
        self.factor.as_ref().map(|(c, _)| *c)
    }

    /// Factorises A = I − cJ_flow at θ_J for `flow`, whose loss has residual scale `scale`.
    pub(crate) fn factorise(&mut self, flow: &GradientFlow<'_>, scale: f64, c: f64) -> Factored {
        let gamma = c * flow.rate();
        self.factorise_with(c, 1.0 + gamma * flow.lambda(), gamma / scale, gamma)
    }

    /// Factorises A = αI + βJᵀJ + γR (recorded as the factorisation for c).
    fn factorise_with(&mut self, c: f64, alpha: f64, beta: f64, gamma: f64) -> Factored {
        let recycled = match self.factor.take() {
            Some((_, Factor::Woodbury { binv, w, k })) => Some((binv, w, k)),
            _ => None,
        };
        let (m, d) = (self.jac.nrows(), self.jac.ncols());
        let (mut binv, mut w, k_old) = match recycled {
            Some((b, w, k)) => (b, w, Some(k)),
            None => (vec![0.0; self.blocks.len()], DMat::zeros(d, m), None),
        };
        let mut invertible = true;
        for (g, group) in self.groups.iter().enumerate() {
            let k = group.len();
            let (o, n) = (self.offsets[g], k * k);
            let b = &mut binv[o..o + n];
            for (bi, ri) in b.iter_mut().zip(&self.blocks[o..o + n]) {
                *bi = gamma * ri;
            }
            for i in 0..k {
                b[i * k + i] += alpha;
            }
            if !invert_in_place(b, k, &mut self.aug) {
                invertible = false;
                break;
            }
        }
        if !invertible {
            let f = self.dense(alpha, beta, gamma);
            let cholesky = f.is_cholesky();
            self.factor = Some((c, Factor::Dense(f)));
            return Factored {
                cholesky,
                fallback: true,
            };
        }
        // W = B⁻¹Jᵀ (rows in `perm` order), group by group.
        for (g, group) in self.groups.iter().enumerate() {
            let (k, o) = (group.len(), self.starts[g]);
            let b =
                MatRef::from_row_major_slice(&binv[self.offsets[g]..self.offsets[g] + k * k], k, k);
            matmul(
                w.as_mut().subrows_mut(o, k),
                Accum::Replace,
                b,
                self.jt.as_ref().subrows(o, k),
                1.0,
                Par::Seq,
            );
        }
        let jt = &self.jt;
        let w_ref = &w;
        let k = Factorisation::build(m, k_old, |mut kk| {
            matmul(
                kk.as_mut(),
                Accum::Replace,
                jt.transpose(),
                w_ref,
                1.0,
                Par::Seq,
            );
            for i in 0..m {
                kk[(i, i)] += 1.0 / beta;
            }
        });
        let cholesky = k.is_cholesky();
        self.factor = Some((c, Factor::Woodbury { binv, w, k }));
        Factored {
            cholesky,
            fallback: false,
        }
    }

    /// A = αI + βJᵀJ + γR assembled and factorised.
    fn dense(&self, alpha: f64, beta: f64, gamma: f64) -> Factorisation {
        let d = self.jac.ncols();
        let jac = &self.jac;
        Factorisation::build(d, None, |mut a| {
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
            for (g, group) in self.groups.iter().enumerate() {
                let k = group.len();
                let r = &self.blocks[self.offsets[g]..self.offsets[g] + k * k];
                for (x, &px) in group.iter().enumerate() {
                    for (y, &py) in group.iter().enumerate() {
                        a[(px, py)] += gamma * r[x * k + y];
                    }
                }
            }
        })
    }

    /// rhs ← A⁻¹ rhs.
    pub(crate) fn solve(&mut self, rhs: &mut [f64]) {
        let Some((_, factor)) = &self.factor else {
            panic!("factorised before solving");
        };
        match factor {
            Factor::Dense(f) => f.solve_vec(rhs),
            Factor::Woodbury { binv, w, k } => {
                // y = B⁻¹ rhs, in `perm` order.
                let y = &mut self.tmp_d;
                for (g, group) in self.groups.iter().enumerate() {
                    let (kk, o) = (group.len(), self.starts[g]);
                    let b = &binv[self.offsets[g]..self.offsets[g] + kk * kk];
                    for a in 0..kk {
                        y[o + a] = group
                            .iter()
                            .enumerate()
                            .map(|(bb, &pb)| b[a * kk + bb] * rhs[pb])
                            .sum();
                    }
                }
                // u = K⁻¹ Jᵀᵀ y; y ← y − W u; rhs = y back in parameter order.
                let u = &mut self.tmp_m;
                crate::la::matvec_into(self.jt.transpose(), y, u);
                k.solve_vec(u);
                let (d, m) = (w.nrows(), w.ncols());
                matmul(
                    MatMut::from_column_major_slice_mut(y, d, 1),
                    Accum::Add,
                    w,
                    MatRef::from_column_major_slice(u, m, 1),
                    -1.0,
                    Par::Seq,
                );
                for (q, &p) in self.perm.iter().enumerate() {
                    rhs[p] = y[q];
                }
            }
        }
    }
}

/// The ∞-norm (largest absolute row sum) of the k×k row-major `a`.
fn inf_norm(a: &[f64], k: usize) -> f64 {
    a.chunks_exact(k)
        .map(|row| row.iter().map(|x| x.abs()).sum::<f64>())
        .fold(0.0, f64::max)
}

/// Inverts the k×k row-major `a` in place by Gauss–Jordan elimination with partial pivoting,
/// in the scratch `m` (resized to k×2k). False if a pivot vanishes or the condition number
/// ‖a‖∞‖a⁻¹‖∞ exceeds [`MAX_BLOCK_CONDITION`].
fn invert_in_place(a: &mut [f64], k: usize, m: &mut Vec<f64>) -> bool {
    let norm = inf_norm(a, k);
    if !(k > 0 && norm.is_finite() && norm > 0.0) {
        return false;
    }
    // Augment [a | I].
    let w = 2 * k;
    m.clear();
    m.resize(k * w, 0.0);
    for i in 0..k {
        m[i * w..i * w + k].copy_from_slice(&a[i * k..(i + 1) * k]);
        m[i * w + k + i] = 1.0;
    }
    for col in 0..k {
        let piv = (col..k)
            .max_by(|&x, &y| m[x * w + col].abs().total_cmp(&m[y * w + col].abs()))
            .unwrap_or(col);
        if m[piv * w + col].abs() <= f64::EPSILON * norm {
            return false;
        }
        if piv != col {
            for j in 0..w {
                m.swap(piv * w + j, col * w + j);
            }
        }
        let p = m[col * w + col];
        for j in 0..w {
            m[col * w + j] /= p;
        }
        for i in 0..k {
            if i != col {
                let f = m[i * w + col];
                if f != 0.0 {
                    for j in 0..w {
                        m[i * w + j] -= f * m[col * w + j];
                    }
                }
            }
        }
    }
    for i in 0..k {
        a[i * k..(i + 1) * k].copy_from_slice(&m[i * w + k..i * w + w]);
    }
    let inv_norm = inf_norm(a, k);
    inv_norm.is_finite() && norm * inv_norm <= MAX_BLOCK_CONDITION
}

#[cfg(test)]
mod tests {
    use super::*;

    /// J (m×d) and R's blocks from a fixed pseudo-random sequence.
    fn fixture(groups: Vec<Vec<usize>>, m: usize, d: usize, seed: u64) -> Structured {
        let mut st = Structured::new(groups, m, d);
        let mut x = seed;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        for i in 0..m {
            for j in 0..d {
                st.jac[(i, j)] = next();
            }
        }
        for i in 0..m {
            for (q, &p) in st.perm.iter().enumerate() {
                st.jt[(q, i)] = st.jac[(i, p)];
            }
        }
        // Symmetric blocks.
        for (g, group) in st.groups.iter().enumerate() {
            let k = group.len();
            let o = st.offsets[g];
            for a in 0..k {
                for b in 0..=a {
                    let v = next();
                    st.blocks[o + a * k + b] = v;
                    st.blocks[o + b * k + a] = v;
                }
            }
        }
        st
    }

    /// max |A x − b| / max |b| with A = αI + βJᵀJ + γR assembled from the fixture.
    fn residual(st: &Structured, alpha: f64, beta: f64, gamma: f64, x: &[f64], b: &[f64]) -> f64 {
        let mut a = DMat::zeros(x.len(), x.len());
        matmul(
            a.as_mut(),
            Accum::Replace,
            st.jac.transpose(),
            &st.jac,
            beta,
            Par::Seq,
        );
        for i in 0..x.len() {
            a[(i, i)] += alpha;
        }
        for (g, group) in st.groups.iter().enumerate() {
            let k = group.len();
            for (p, &gp) in group.iter().enumerate() {
                for (q, &gq) in group.iter().enumerate() {
                    a[(gp, gq)] += gamma * st.blocks[st.offsets[g] + p * k + q];
                }
            }
        }
        let mut ax = vec![0.0; x.len()];
        crate::la::matvec_into(a.as_ref(), x, &mut ax);
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        ax.iter()
            .zip(b)
            .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()))
            / scale
    }

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
        let b: Vec<f64> = (0..d).map(|i| (i as f64 * 0.7).sin()).collect();
        // Well-conditioned B (positive definite), indefinite B, and a stiff step (large β, γ).
        for (alpha, beta, gamma) in [(1.0, 2.0, 0.3), (1.0, 50.0, 3.0), (1.0001, 1e6, 1e4)] {
            let mut st = fixture(groups.clone(), m, d, 7);
            let f = st.factorise_with(0.1, alpha, beta, gamma);
            assert!(matches!(st.factor, Some((_, Factor::Woodbury { .. }))));
            let mut x = b.clone();
            st.solve(&mut x);
            let r = residual(&st, alpha, beta, gamma, &x, &b);
            assert!(r < 1e-9, "α={alpha} β={beta} γ={gamma}: residual {r}");
            assert!(!f.fallback);
        }
        // A second factorisation at another c reuses the storage and is exact again.
        let mut st = fixture(groups.clone(), m, d, 11);
        for (alpha, beta, gamma) in [(1.0, 2.0, 0.3), (1.5, 40.0, 8.0)] {
            st.factorise_with(beta, alpha, beta, gamma);
            let mut x = b.clone();
            st.solve(&mut x);
            let r = residual(&st, alpha, beta, gamma, &x, &b);
            assert!(r < 1e-9, "refactorised at β={beta}: residual {r}");
        }
        // Make the block of group 2 exactly singular in B = αI + γR: R's block = −(α/γ)I.
        let mut st = fixture(groups, m, d, 7);
        let (alpha, beta, gamma) = (1.0, 5.0, 2.0);
        let o = st.offsets[2];
        st.blocks[o..o + 4].copy_from_slice(&[-alpha / gamma, 0.0, 0.0, -alpha / gamma]);
        let f = st.factorise_with(0.1, alpha, beta, gamma);
        assert!(f.fallback);
        assert!(matches!(st.factor, Some((_, Factor::Dense(_)))));
        let mut x = b.clone();
        st.solve(&mut x);
        let r = residual(&st, alpha, beta, gamma, &x, &b);
        assert!(r < 1e-12, "fallback residual {r}");
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
    }
}
