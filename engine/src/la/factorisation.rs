//! Factorisations of symmetric matrices: Cholesky (LLᵀ) when the matrix is positive
//! definite, partial-pivot LU otherwise, with faer's parallel kernels from
//! [`PARALLEL_FROM`] rows on.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::lu::partial_pivoting;
use faer::{Conj, Mat, MatMut, MatRef, Par};

use crate::la::column;

/// A factorised symmetric matrix: Cholesky if it was positive definite, LU otherwise.
pub enum Factorisation {
    /// L (lower triangle; for small matrices Lᵀ mirrored above it).
    Cholesky(Mat<f64>),
    /// PA = LU with partial pivoting.
    Lu {
        /// L (unit diagonal, strictly below) and U (on and above the diagonal).
        lu: Mat<f64>,
        /// The row permutation P.
        perm: Vec<usize>,
        /// Its inverse.
        perm_inv: Vec<usize>,
    },
}

/// From this size on the factorisations use faer's parallel kernels (docs/design.md).
const PARALLEL_FROM: usize = 1500;

fn par(n: usize) -> Par {
    if n >= PARALLEL_FROM {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

impl Factorisation {
    /// Factorises `a` (its lower triangle for Cholesky; all of it for the LU fallback).
    pub fn new(a: &Mat<f64>) -> Self {
        Self::build(a.nrows(), None, |mut m, _| m.copy_from(a))
    }

    /// Factorises the n×n matrix that `fill(a, lower)` writes in place: Cholesky, for which
    /// `fill` may write the lower triangle only (`lower` true: Cholesky reads nothing else),
    /// and if that fails `fill(a, false)` writes every entry and a partial-pivot LU is taken.
    /// The storage of `recycled` is reused when it has the right size (no n² allocation per
    /// step).
    pub fn build(
        n: usize,
        recycled: Option<Factorisation>,
        fill: impl Fn(MatMut<'_, f64>, bool),
    ) -> Self {
        let mut a = match recycled {
            Some(Factorisation::Cholesky(m)) | Some(Factorisation::Lu { lu: m, .. })
                if m.nrows() == n && m.ncols() == n =>
            {
                m
            }
            _ => Mat::zeros(n, n),
        };
        fill(a.as_mut(), true);
        let par = par(n);
        let mut buf = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
            n,
            par,
            Default::default(),
        ));
        let chol = llt::factor::cholesky_in_place(
            a.as_mut(),
            Default::default(),
            par,
            MemStack::new(&mut buf),
            Default::default(),
        );
        if chol.is_ok() {
            if n <= SMALL_SOLVE {
                // Lᵀ into the upper triangle (never read by faer's solves), so that the
                // hand-written back substitution runs down contiguous columns too.
                for j in 1..n {
                    for i in 0..j {
                        a[(i, j)] = a[(j, i)];
                    }
                }
            }
            return Factorisation::Cholesky(a);
        }
        fill(a.as_mut(), false);
        let mut perm = vec![0usize; n];
        let mut perm_inv = vec![0usize; n];
        let mut buf = MemBuffer::new(partial_pivoting::factor::lu_in_place_scratch::<usize, f64>(
            n,
            n,
            par,
            Default::default(),
        ));
        partial_pivoting::factor::lu_in_place(
            a.as_mut(),
            &mut perm,
            &mut perm_inv,
            par,
            MemStack::new(&mut buf),
            Default::default(),
        );
        Factorisation::Lu {
            lu: a,
            perm,
            perm_inv,
        }
    }

    /// The Cholesky factorisation of the symmetric positive definite `a` (its lower triangle
    /// is read), in its own storage; `a` back, overwritten, if it is not positive definite.
    pub fn cholesky_owned(mut a: Mat<f64>) -> Result<Self, Mat<f64>> {
        let n = a.nrows();
        let par = par(n);
        let mut buf = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
            n,
            par,
            Default::default(),
        ));
        let chol = llt::factor::cholesky_in_place(
            a.as_mut(),
            Default::default(),
            par,
            MemStack::new(&mut buf),
            Default::default(),
        );
        if chol.is_err() {
            return Err(a);
        }
        if n <= SMALL_SOLVE {
            for j in 1..n {
                for i in 0..j {
                    a[(i, j)] = a[(j, i)];
                }
            }
        }
        Ok(Factorisation::Cholesky(a))
    }

    /// Factorises scale·`src` + shift·I for a symmetric n×n `src` (only its lower triangle is
    /// copied for the Cholesky attempt), in the storage of `recycled` when it fits.
    pub fn shifted(
        src: MatRef<'_, f64>,
        scale: f64,
        shift: f64,
        recycled: Option<Factorisation>,
    ) -> Self {
        let n = src.nrows();
        Self::build(n, recycled, |mut a, lower| {
            for j in 0..n {
                let (from, mut to) = (src.col(j), a.as_mut().col_mut(j));
                for i in if lower { j..n } else { 0..n } {
                    to[i] = scale * from[i];
                }
                to[j] += shift;
            }
        })
    }

    /// True for a Cholesky factorisation.
    pub fn is_cholesky(&self) -> bool {
        matches!(self, Factorisation::Cholesky(_))
    }

    /// rhs ← A⁻¹ rhs (or A⁻ᵀ rhs), sequentially: faer's parallel triangular solves change
    /// the last bits with the thread count, and a sweep's results must not.
    pub fn solve_in_place(&self, rhs: MatMut<'_, f64>, transpose: bool) {
        match self {
            Factorisation::Cholesky(l) => {
                let mut buf = MemBuffer::new(llt::solve::solve_in_place_scratch::<f64>(
                    l.nrows(),
                    rhs.ncols(),
                    Par::Seq,
                ));
                llt::solve::solve_in_place_with_conj(
                    l.as_ref(),
                    Conj::No,
                    rhs,
                    Par::Seq,
                    MemStack::new(&mut buf),
                );
            }
            Factorisation::Lu { lu, perm, perm_inv } => {
                let n = lu.nrows();
                let p = faer::perm::PermRef::new_checked(perm, perm_inv, n);
                let k = rhs.ncols();
                if transpose {
                    let mut buf = MemBuffer::new(
                        partial_pivoting::solve::solve_transpose_in_place_scratch::<usize, f64>(
                            n,
                            k,
                            Par::Seq,
                        ),
                    );
                    partial_pivoting::solve::solve_transpose_in_place_with_conj(
                        lu.as_ref(),
                        lu.as_ref(),
                        p,
                        Conj::No,
                        rhs,
                        Par::Seq,
                        MemStack::new(&mut buf),
                    );
                } else {
                    let mut buf = MemBuffer::new(
                        partial_pivoting::solve::solve_in_place_scratch::<usize, f64>(
                            n,
                            k,
                            Par::Seq,
                        ),
                    );
                    partial_pivoting::solve::solve_in_place_with_conj(
                        lu.as_ref(),
                        lu.as_ref(),
                        p,
                        Conj::No,
                        rhs,
                        Par::Seq,
                        MemStack::new(&mut buf),
                    );
                }
            }
        }
    }

    /// x ← A⁻¹ x for a vector: up to `SMALL_SOLVE` by substitution down contiguous
    /// columns, beyond by faer's triangular solves.
    pub fn solve_vec(&self, x: &mut [f64]) {
        let n = x.len();
        if n > SMALL_SOLVE {
            self.solve_in_place(faer::MatMut::from_column_major_slice_mut(x, n, 1), false);
            return;
        }
        match self {
            Factorisation::Cholesky(a) => {
                forward_substitution(a, x, false);
                back_substitution(a, x);
            }
            Factorisation::Lu { lu, perm, .. } => {
                // PA = LU: x ← U⁻¹L⁻¹(Px), (Px)ᵢ = x_{perm[i]}.
                let mut px = [0.0; SMALL_SOLVE];
                for (p, &q) in px.iter_mut().zip(perm) {
                    *p = x[q];
                }
                x.copy_from_slice(&px[..n]);
                forward_substitution(lu, x, true);
                back_substitution(lu, x);
            }
        }
    }
}

/// Up to this size a single right-hand side is solved by the substitutions below: faer's
/// recursive triangular solves spend most of their time on dispatch there (docs/design.md).
const SMALL_SOLVE: usize = 96;

/// x ← L⁻¹x for the lower triangle L of `a` (with a unit diagonal if `unit`), one column of
/// L at a time (an axpy over contiguous entries, no serial sum).
fn forward_substitution(a: &Mat<f64>, x: &mut [f64], unit: bool) {
    let n = x.len();
    let pivot = |v: f64, d: f64| if unit { v } else { v / d };
    // Four columns at a time: their 4×4 diagonal block in registers, then one pass over the
    // rest of x (the same operations in the same order as column by column).
    let mut j = 0;
    while j + 4 <= n {
        let (c0, c1, c2, c3) = (
            column(a, j),
            column(a, j + 1),
            column(a, j + 2),
            column(a, j + 3),
        );
        let x0 = pivot(x[j], c0[j]);
        let x1 = pivot(x[j + 1] - x0 * c0[j + 1], c1[j + 1]);
        let x2 = pivot(x[j + 2] - x0 * c0[j + 2] - x1 * c1[j + 2], c2[j + 2]);
        let x3 = pivot(
            x[j + 3] - x0 * c0[j + 3] - x1 * c1[j + 3] - x2 * c2[j + 3],
            c3[j + 3],
        );
        x[j..j + 4].copy_from_slice(&[x0, x1, x2, x3]);
        let rest = j + 4..n;
        let cols = c0[rest.clone()]
            .iter()
            .zip(&c1[rest.clone()])
            .zip(&c2[rest.clone()])
            .zip(&c3[rest.clone()]);
        for (xi, (((l0, l1), l2), l3)) in x[rest].iter_mut().zip(cols) {
            *xi = *xi - x0 * l0 - x1 * l1 - x2 * l2 - x3 * l3;
        }
        j += 4;
    }
    for j in j..n {
        let c = column(a, j);
        x[j] = pivot(x[j], c[j]);
        let xj = x[j];
        for (xi, l) in x[j + 1..].iter_mut().zip(&c[j + 1..n]) {
            *xi -= xj * l;
        }
    }
}

/// x ← U⁻¹x for the upper triangle U of `a`, one column of U at a time from the last.
fn back_substitution(a: &Mat<f64>, x: &mut [f64]) {
    // Four columns at a time from the last, as in `forward_substitution`.
    let mut j = x.len();
    while j >= 4 {
        let (c3, c2, c1, c0) = (
            column(a, j - 1),
            column(a, j - 2),
            column(a, j - 3),
            column(a, j - 4),
        );
        let x3 = x[j - 1] / c3[j - 1];
        let x2 = (x[j - 2] - x3 * c3[j - 2]) / c2[j - 2];
        let x1 = (x[j - 3] - x3 * c3[j - 3] - x2 * c2[j - 3]) / c1[j - 3];
        let x0 = (x[j - 4] - x3 * c3[j - 4] - x2 * c2[j - 4] - x1 * c1[j - 4]) / c0[j - 4];
        x[j - 4..j].copy_from_slice(&[x0, x1, x2, x3]);
        let rest = 0..j - 4;
        let cols = c3[rest.clone()]
            .iter()
            .zip(&c2[rest.clone()])
            .zip(&c1[rest.clone()])
            .zip(&c0[rest.clone()]);
        for (xi, (((u3, u2), u1), u0)) in x[rest].iter_mut().zip(cols) {
            *xi = *xi - x3 * u3 - x2 * u2 - x1 * u1 - x0 * u0;
        }
        j -= 4;
    }
    for j in (0..j).rev() {
        let c = column(a, j);
        x[j] /= c[j];
        let xj = x[j];
        for (xi, u) in x[..j].iter_mut().zip(&c[..j]) {
            *xi -= xj * u;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cholesky reads the lower triangle only: a strict upper triangle of NaN (what a `fill`
    /// that writes the lower triangle leaves in recycled storage, at worst) changes nothing,
    /// sequentially and with the parallel kernels. The LU fallback gets every entry.
    #[test]
    fn cholesky_reads_the_lower_triangle_only_and_lu_gets_the_full_matrix() {
        for (n, indefinite) in [(60, false), (60, true), (PARALLEL_FROM + 10, false)] {
            let g = Mat::<f64>::from_fn(n, n, |i, j| ((i * 7 + j * 13) % 11) as f64 / 11.0 - 0.45);
            let mut a = &g * g.transpose();
            for i in 0..n {
                a[(i, i)] += if indefinite && i % 4 == 0 { -40.0 } else { 1.0 };
            }
            let f = Factorisation::build(n, None, |mut m, lower| {
                for j in 0..n {
                    for i in 0..n {
                        m[(i, j)] = if lower && i < j { f64::NAN } else { a[(i, j)] };
                    }
                }
            });
            assert_eq!(f.is_cholesky(), !indefinite, "n = {n}");
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.3).cos()).collect();
            let mut x = b.clone();
            f.solve_vec(&mut x);
            assert!(x.iter().all(|v| v.is_finite()), "n = {n}: a NaN was read");
            let ax = &a * faer::ColRef::from_slice(&x);
            let err = (0..n).map(|i| (ax[i] - b[i]).abs()).fold(0.0, f64::max);
            assert!(
                err < 1e-9,
                "n = {n}, indefinite {indefinite}: residual {err}"
            );
        }
    }

    /// The substitution written here for small systems agrees with faer's triangular solves
    /// to rounding, for Cholesky and (indefinite, pivoting) LU factors, at the sizes around
    /// its threshold; one size above it goes through faer.
    #[test]
    fn small_systems_are_solved_by_substitution_as_faer_solves_them() {
        for n in [1, 2, 7, 40, SMALL_SOLVE, SMALL_SOLVE + 1] {
            for indefinite in [false, true] {
                let g = Mat::<f64>::from_fn(n, n, |i, j| {
                    ((i * 31 + j * 17 + 3) as f64 * 0.618_033_988_749_895).fract() - 0.5
                });
                let mut a = &g * g.transpose();
                for i in 0..n {
                    // Zero diagonal entries (from the second) make it indefinite: the LU must pivot.
                    a[(i, i)] = if indefinite && i % 3 == 1 {
                        0.0
                    } else {
                        a[(i, i)] + 0.5
                    };
                }
                let f = Factorisation::new(&a);
                assert_eq!(f.is_cholesky(), !indefinite || n == 1, "n = {n}");
                let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin() + 0.1).collect();
                let mut ours = b.clone();
                f.solve_vec(&mut ours);
                let mut theirs = b.clone();
                f.solve_in_place(
                    faer::MatMut::from_column_major_slice_mut(&mut theirs, n, 1),
                    false,
                );
                let scale = theirs.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
                for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
                    assert!(
                        (o - t).abs() <= 1e-10 * scale,
                        "n = {n}, indefinite = {indefinite}, x[{i}]: {o} against {t}"
                    );
                }
                let ax = &a * faer::ColRef::from_slice(&ours);
                let res = (0..n).map(|i| (ax[i] - b[i]).abs()).fold(0.0, f64::max);
                assert!(res < 1e-8 * (1.0 + scale), "n = {n}: residual {res}");
            }
        }
    }
}
