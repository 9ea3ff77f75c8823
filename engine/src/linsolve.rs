//! Factorisations of the Newton matrix. In every implicit step the matrix is
//! I − γJ = I + γκ(∇²F + λI): symmetric, and positive definite wherever ∇²F + λI is. It is
//! factorised by Cholesky (LLᵀ) when that succeeds and by a partial-pivot LU otherwise (an
//! indefinite Hessian far from the manifold), with faer's parallel kernels from n = 1500
//! (below, the threads cost more than they save). diffsol's own dense LU uses full pivoting
//! and is 20–45× slower from d ≈ 1000.

use std::cell::Cell;

use diffsol_la::{FaerContext, FaerMat, FaerVec, LaError, LinearOp, Matrix, MatrixCommon, Vector};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::lu::partial_pivoting;
use faer::{Conj, Mat, MatMut, MatRef, Par};

thread_local! {
    static COUNTS: Cell<FactorisationCounts> = const { Cell::new(FactorisationCounts { cholesky: 0, lu: 0 }) };
}

/// How many factorisations of each kind the current thread has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FactorisationCounts {
    /// Successful Cholesky factorisations.
    pub cholesky: usize,
    /// Partial-pivot LU factorisations (after a failed Cholesky).
    pub lu: usize,
}

/// The counts of this thread so far (diffsol owns its solver, so counts live beside it).
pub fn factorisation_counts() -> FactorisationCounts {
    COUNTS.with(|c| c.get())
}

/// A factorised symmetric matrix: Cholesky if it was positive definite, LU otherwise.
pub(crate) enum Factorisation {
    Cholesky(Mat<f64>),
    Lu {
        lu: Mat<f64>,
        perm: Vec<usize>,
        perm_inv: Vec<usize>,
    },
}

/// From this size on the factorisations use faer's parallel kernels (measured here:
/// Cholesky of 2000 in 0.040 s against 0.049 s sequentially, 3430 in 0.17 s against 0.24 s;
/// below about 1000 the threads cost more than they save).
const PARALLEL_FROM: usize = 1500;

fn par(n: usize) -> Par {
    if n >= PARALLEL_FROM {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

fn count(cholesky: bool) {
    COUNTS.with(|c| {
        let mut n = c.get();
        if cholesky {
            n.cholesky += 1;
        } else {
            n.lu += 1;
        }
        c.set(n)
    });
}

/// Factorises the symmetric `a` exactly as the BDF Newton solve does (Cholesky, partial-pivot
/// LU if that fails), solves `rhs` in place with it, and says whether Cholesky held. For
/// benchmarks and checks of the linear algebra from outside the engine.
pub fn factorise_and_solve(a: &Mat<f64>, rhs: &mut [f64]) -> bool {
    let f = Factorisation::new(a);
    f.solve_vec(rhs);
    f.is_cholesky()
}

impl Factorisation {
    /// Factorises `a` (its lower triangle for Cholesky; all of it for the LU fallback).
    pub(crate) fn new(a: &Mat<f64>) -> Self {
        Self::build(a.nrows(), None, |mut m, _| m.copy_from(a))
    }

    /// Factorises the n×n matrix that `fill(a, lower)` writes in place: Cholesky, for which
    /// `fill` may write the lower triangle only (`lower` true: Cholesky reads nothing else),
    /// and if that fails `fill(a, false)` writes every entry and a partial-pivot LU is taken.
    /// The storage of `recycled` is reused when it has the right size (no n² allocation per
    /// step).
    pub(crate) fn build(
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
            count(true);
            return Factorisation::Cholesky(a);
        }
        count(false);
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

    /// Factorises scale·`src` + shift·I for a symmetric n×n `src` (only its lower triangle is
    /// copied for the Cholesky attempt), in the storage of `recycled` when it fits.
    pub(crate) fn shifted(
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
    pub(crate) fn is_cholesky(&self) -> bool {
        matches!(self, Factorisation::Cholesky(_))
    }

    /// rhs ← A⁻¹ rhs (or A⁻ᵀ rhs), sequentially. faer's parallel triangular solves are 17%
    /// faster at n = 3430 (3.3 against 4.0 ms) and slower below n ≈ 2500, but their results
    /// change in the last bits with the thread count (the parallel factorisations' do not),
    /// and a sweep's results must not.
    pub(crate) fn solve_in_place(&self, rhs: MatMut<'_, f64>, transpose: bool) {
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

    /// x ← A⁻¹ x for a vector.
    pub(crate) fn solve_vec(&self, x: &mut [f64]) {
        let n = x.len();
        self.solve_in_place(faer::MatMut::from_column_major_slice_mut(x, n, 1), false);
    }
}

/// The diffsol linear solver over [`Factorisation`].
#[derive(Default)]
pub struct SymmetricSolver {
    matrix: Option<FaerMat<f64>>,
    factors: Option<Factorisation>,
}

impl diffsol_la::LinearSolver<FaerMat<f64>> for SymmetricSolver {
    fn set_sparsity<C: LinearOp<V = FaerVec<f64>, T = f64, M = FaerMat<f64>, C = FaerContext>>(
        &mut self,
        op: &C,
    ) {
        self.matrix = Some(<FaerMat<f64> as Matrix>::new_from_sparsity(
            op.nrows(),
            op.ncols(),
            op.sparsity(),
            *op.context(),
        ));
        self.factors = None;
    }

    fn set_linearisation<
        C: LinearOp<V = FaerVec<f64>, T = f64, M = FaerMat<f64>, C = FaerContext>,
    >(
        &mut self,
        op: &C,
    ) {
        let matrix = self
            .matrix
            .as_mut()
            .expect("set_sparsity is called before set_linearisation");
        op.matrix_inplace(matrix);
        self.factors = Some(Factorisation::new(matrix.inner()));
    }

    fn solve_in_place(&self, x: &mut FaerVec<f64>) -> Result<(), LaError> {
        let f = self
            .factors
            .as_ref()
            .ok_or(diffsol_la::error::LinearSolverError::LinearSolverNotSetup)?;
        f.solve_in_place(x.inner_mut().as_mut(), false);
        Ok(())
    }

    fn solve_transpose_in_place(&self, x: &mut FaerVec<f64>) -> Result<(), LaError> {
        let f = self
            .factors
            .as_ref()
            .ok_or(diffsol_la::error::LinearSolverError::LinearSolverNotSetup)?;
        f.solve_in_place(x.inner_mut().as_mut(), true);
        Ok(())
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
}
