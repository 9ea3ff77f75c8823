//! Tests of the structured solve against the assembled Newton matrix.

use super::blocks::{inf_norm, invert_in_place, shifted_block_inverse};
use super::products::symmetric_product;
use super::*;
use crate::la::{DMat, MatMut, MatRef};
use faer::linalg::matmul::matmul;
use faer::{Accum, Par};

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
        st.linearise_at(self, &vec![0.0; d]);
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
    assert!(st.solve_with(res, &mut x));
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
    // R = 0 (γ = 0: B = αI, affine residuals) and β up to 1e12, as at λ = 1e-8: the
    // corrector of a convex quadratic is accepted after this one solve, so x itself must
    // be accurate. Reference: A⁻¹b = b/α + Σᵢ vᵢ(1/(α + βσᵢ²) − 1/α)vᵢᵀb from the
    // eigenvectors of JJᵀ = UΣ²Uᵀ (vᵢ = Jᵀuᵢ/σᵢ), exact to rounding whatever β. A
    // Cholesky solve of the assembled A is not: its error grows like β (1.7e-8 at 1e9).
    // With R's blocks zero (as affine residuals declare them) the Gram matrix JJᵀ kept
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
            st.linearise_at(&res, &vec![0.0; d]);
        }
        let gamma = if zero_blocks { 5.0 } else { 0.0 };
        for beta in [1e2, 1e6, 1e9, 1e12] {
            let alpha = 1.0 + 1e-8 * beta;
            st.factorise_with(beta, alpha, beta, gamma);
            let affine = matches!(st.factor, Some((_, Factor::Affine { .. })));
            assert_eq!(affine, zero_blocks);
            let b: Vec<f64> = (0..d).map(|i| (i as f64 * 0.7).sin()).collect();
            let mut x = b.clone();
            assert!(st.solve_with(&res, &mut x));
            let mut want: Vec<f64> = b.iter().map(|bi| bi / alpha).collect();
            for (i, &s2) in sigma2.iter().enumerate() {
                let v: Vec<f64> = (0..d)
                    .map(|p| (0..m).map(|r| res.jac[(r, p)] * u[(r, i)]).sum::<f64>() / s2.sqrt())
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
    assert!(!st.solve_with(&res, &mut x));
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
    st.linearise_at(&res, &vec![0.0; d]);
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
    st.linearise_at(&res, &vec![0.0; d]);
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
        st.linearise_at(&res, &vec![0.0; d]);
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
        st.linearise_at(&singular, &vec![0.0; d]);
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
