//! Modular addition's residual structure: J·v, Jᵀu and JJᵀ through the hidden layer, and
//! the residual curvature in one block per hidden unit.

use grokflow_engine::la::MatMut;
use grokflow_engine::Residuals;

use super::ModularAddition;
use crate::scratch::{with_buf, with_bufs2};

impl ModularAddition {
    /// The x-th parameter of hidden unit i in the order of [`Self::groups`].
    pub(super) fn unit_index(&self, i: usize, x: usize) -> usize {
        let p = self.p;
        i + if x < p {
            self.e1(x)
        } else if x < 2 * p {
            self.e2(x - p)
        } else {
            self.wk(x - 2 * p)
        }
    }

    /// Hidden unit i's parameters: E₁_{·,i}, E₂_{·,i}, W_{·,i} (3p of them, in that order).
    pub(super) fn groups(&self) -> Vec<Vec<usize>> {
        let p = self.p;
        (0..self.w)
            .map(|i| {
                (0..p)
                    .map(|a| self.e1(a) + i)
                    .chain((0..p).map(|b| self.e2(b) + i))
                    .chain((0..p).map(|k| self.wk(k) + i))
                    .collect()
            })
            .collect()
    }
}

impl Residuals for ModularAddition {
    fn count(&self) -> usize {
        self.train.len() * self.p
    }

    fn scale(&self) -> f64 {
        self.train.len() as f64
    }

    /// r_{q,k} = o_k(a_q, b_q) − δ_{k,c_q}.
    fn residuals_into(&self, theta: &[f64], r: &mut [f64]) {
        let p = self.p;
        self.for_pairs(theta, |q, _a, _b, c, _z, _h, _s, o| {
            for k in 0..p {
                r[q * p + k] = o[k] - f64::from(u8::from(k == c));
            }
        });
    }

    /// Column (q, k) of Jᵀ: hᵢ at W_{k,i}, W_{k,i}sᵢ at E₁_{a,i} and E₂_{b,i}.
    fn jacobian_transpose_into(&self, theta: &[f64], mut jt: MatMut<'_, f64>) {
        let (p, w) = (self.p, self.w);
        jt.fill(0.0);
        self.for_pairs(theta, |q, a, b, _c, _z, h, s, _o| {
            for k in 0..p {
                let col = q * p + k;
                let row = self.wk(k);
                for i in 0..w {
                    jt[(row + i, col)] = h[i];
                    let v = theta[row + i] * s[i];
                    jt[(self.e1(a) + i, col)] += v;
                    jt[(self.e2(b) + i, col)] += v;
                }
            }
        });
    }

    fn jacobian_into(&self, theta: &[f64], jac: MatMut<'_, f64>) {
        self.jacobian_transpose_into(theta, jac.transpose_mut());
    }

    /// J·v, Jᵀu and JJᵀ cost O(Npw), O(Npw) and O(N²pw) through the hidden layer.
    fn has_structured_products(&self) -> bool {
        true
    }

    /// (J v)_{q,k} = ⟨v_{W_k}, h⟩ + ⟨W_k, s ∘ (v_{E₁,a} + v_{E₂,b})⟩.
    fn jvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        let (p, w) = (self.p, self.w);
        with_buf(w, |dz| self.for_pairs(theta, |q, a, b, _c, _z, h, s, _o| {
            for i in 0..w {
                dz[i] = s[i] * (v[self.e1(a) + i] + v[self.e2(b) + i]);
            }
            for k in 0..p {
                let row = self.wk(k);
                out[q * p + k] = (0..w)
                    .map(|i| v[row + i] * h[i] + theta[row + i] * dz[i])
                    .sum();
            }
        }));
    }

    fn vjp_into(&self, theta: &[f64], u: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        self.add_jt(theta, u, out);
    }

    /// (JJᵀ)_{(q,k),(q',k')} = δ_{kk'}⟨h_q, h_q'⟩ + ([a = a'] + [b = b'])⟨W_k ∘ s_q, W_k' ∘ s_q'⟩:
    /// O(N²w + N²p²w/p) instead of the m²d of J Jᵀ.
    fn gram_into(&self, theta: &[f64], mut gram: MatMut<'_, f64>) {
        let (p, w, n) = (self.p, self.w, self.train.len());
        gram.fill(0.0);
        with_bufs2(3 * w * n, p * w, |hsz, ws| {
            let (hs, z) = hsz.split_at_mut(2 * w * n);
            let (hh, ss) = hs.split_at_mut(w * n);
            for (q, &(a, b)) in self.train.iter().enumerate() {
                let (h, s) = (&mut hh[q * w..(q + 1) * w], &mut ss[q * w..(q + 1) * w]);
                self.hidden(theta, a, b, &mut z[..w], h, s);
            }
            for (q, &(a, b)) in self.train.iter().enumerate() {
                let (hq, sq) = (&hh[q * w..(q + 1) * w], &ss[q * w..(q + 1) * w]);
                // W_k ∘ s_q for every class k.
                for k in 0..p {
                    let row = self.wk(k);
                    for i in 0..w {
                        ws[k * w + i] = theta[row + i] * sq[i];
                    }
                }
                for (q2, &(a2, b2)) in self.train.iter().enumerate() {
                    let h2 = &hh[q2 * w..(q2 + 1) * w];
                    let hdot: f64 = hq.iter().zip(h2).map(|(x, y)| x * y).sum();
                    for k in 0..p {
                        gram[(q * p + k, q2 * p + k)] += hdot;
                    }
                    let shared = f64::from(u8::from(a == a2)) + f64::from(u8::from(b == b2));
                    if shared == 0.0 {
                        continue;
                    }
                    let s2 = &ss[q2 * w..(q2 + 1) * w];
                    for k2 in 0..p {
                        let row2 = self.wk(k2);
                        for k in 0..p {
                            let t = &ws[k * w..(k + 1) * w];
                            let v: f64 = (0..w).map(|i| t[i] * theta[row2 + i] * s2[i]).sum();
                            gram[(q * p + k, q2 * p + k2)] += shared * v;
                        }
                    }
                }
            }
        });
    }

    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        Some(self.groups())
    }

    /// Unit i's block (local order E₁_{·,i}, E₂_{·,i}, W_{·,i}): for each training pair and
    /// class k, (1/N) r_{q,k} times sᵢ at (W_k, E₁_a), (W_k, E₂_b) and W_{k,i}σ''(zᵢ) on the
    /// 2×2 block of (E₁_a, E₂_b).
    fn curvature_blocks_into(&self, theta: &[f64], out: &mut [f64]) {
        let (p, w) = (self.p, self.w);
        let kk = 3 * p;
        let scale = 1.0 / self.train.len() as f64;
        out.fill(0.0);
        self.for_pairs(theta, |_q, a, b, c, z, _h, s, o| {
            for i in 0..w {
                let block = &mut out[i * kk * kk..(i + 1) * kk * kk];
                let (_, _, dd) = self.activation.eval(z[i]);
                let (la, lb) = (a, p + b);
                let mut u = 0.0;
                for k in 0..p {
                    let r = (o[k] - f64::from(u8::from(k == c))) * scale;
                    u += r * theta[self.wk(k) + i];
                    let lk = 2 * p + k;
                    let v = r * s[i];
                    block[lk * kk + la] += v;
                    block[la * kk + lk] += v;
                    block[lk * kk + lb] += v;
                    block[lb * kk + lk] += v;
                }
                let t = dd * u;
                block[la * kk + la] += t;
                block[lb * kk + lb] += t;
                block[la * kk + lb] += t;
                block[lb * kk + la] += t;
            }
        });
    }
}
