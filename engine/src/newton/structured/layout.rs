//! Where each curvature group's block and entries lie, and B⁻¹ applied group by group.

/// The curvature groups, and where each group's block and entries lie.
pub(super) struct Layout {
    pub(super) groups: Vec<Vec<usize>>,
    /// Start of each group's block in `blocks` (k² entries each).
    pub(super) offsets: Vec<usize>,
    /// Start of each group in `perm`.
    pub(super) starts: Vec<usize>,
    /// k when every group has k ≤ [`super::SMALL_BLOCK`] parameters: B is applied by
    /// [`blocks_times`].
    pub(super) uniform_small: Option<usize>,
}

impl Layout {
    /// binv ← (αI + γR_g)⁻¹ for the first `count` groups' blocks of R (`blocks`), with the
    /// scratch `aug`; false when one is refused ([`shifted_block_inverse`]).
    pub(super) fn invert_blocks(
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
            super::blocks::shifted_block_inverse(b, r, k, alpha, gamma, aug)
        })
    }

    /// out_g ← a_g·b_g, the dot product of the entries of group g (`perm` order).
    pub(super) fn group_dots(&self, a: &[f64], b: &[f64], out: &mut [f64]) {
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
    pub(super) fn group_axpy(&self, s: &[f64], w: &[f64], y: &mut [f64]) {
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
    pub(super) fn apply(&self, binv: &[f64], src: &[f64], dst: &mut [f64]) {
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
/// k entries of `src` (k ≤ [`super::SMALL_BLOCK`]: the loops are unrolled for each size).
pub(super) fn blocks_times(k: usize, blocks: &[f64], src: &[f64], dst: &mut [f64]) {
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
