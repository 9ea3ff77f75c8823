//! The structured solves: y = B⁻¹b, u = K⁻¹Jy, x = y − Wu, in each form of J.

use faer::linalg::matmul::matmul;
use faer::{Accum, Par};

use super::{Factor, Jacobian, Structured};
use crate::la::{MatMut, MatRef};
use crate::loss::Residuals;

impl Structured {
    /// rhs ← A⁻¹ rhs; false (rhs unusable) when the factorisation was refused.
    pub(super) fn solve_with(&mut self, res: &dyn Residuals, rhs: &mut [f64]) -> bool {
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
