//! The structured factorisations: stored J (Woodbury, or affine when R = 0), one shared
//! block, rank-one groups, and the dense fallback.

use faer::linalg::matmul::matmul;
use faer::{Accum, Par};

use super::blocks::shifted_block_inverse;
use super::layout::blocks_times;
use super::products::capacitance;
use super::{Factor, Factored, Jacobian, Structured};
use crate::la::{DMat, Factorisation, MatMut, MatRef};
use crate::loss::Residuals;

impl Structured {
    /// Records the dense fallback `f` (A itself) as the factorisation for c.
    pub(super) fn fell_back(&mut self, c: f64, f: Factorisation) -> Factored {
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
    pub(super) fn factorise_rank_one(
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
    pub(super) fn factorise_shared(
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
    pub(super) fn factorise_with(&mut self, c: f64, alpha: f64, beta: f64, gamma: f64) -> Factored {
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
    pub(super) fn dense(
        &self,
        jac: MatRef<'_, f64>,
        alpha: f64,
        beta: f64,
        gamma: f64,
    ) -> Factorisation {
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
}
