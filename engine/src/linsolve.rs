//! The linear solver grokflow gives diffsol: the Newton matrix of every implicit step is
//! I − γJ = I + γκ(∇²F + λI), symmetric, and positive definite wherever ∇²F + λI is. It is
//! factorised by a Cholesky (LLᵀ) factorisation when that succeeds, and by a partial-pivot
//! LU otherwise (an indefinite Hessian far from the manifold). Both run sequentially: on this
//! class of machine faer's parallel kernels were slower (see the diffsol notes).

use std::cell::Cell;

use diffsol_la::{FaerContext, FaerMat, FaerVec, LaError, LinearOp, Matrix, MatrixCommon, Vector};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::lu::partial_pivoting;
use faer::{Conj, Mat, Par};

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

/// The counts of this thread so far (diffsol owns the solver, so counts live beside it).
pub fn factorisation_counts() -> FactorisationCounts {
    COUNTS.with(|c| c.get())
}

enum Factors {
    None,
    Cholesky(Mat<f64>),
    Lu {
        lu: Mat<f64>,
        perm: Vec<usize>,
        perm_inv: Vec<usize>,
    },
}

/// Cholesky with a partial-pivot LU fallback (see the module documentation).
pub struct SymmetricSolver {
    matrix: Option<FaerMat<f64>>,
    factors: Factors,
}

impl Default for SymmetricSolver {
    fn default() -> Self {
        Self {
            matrix: None,
            factors: Factors::None,
        }
    }
}

fn try_cholesky(a: &Mat<f64>) -> Option<Mat<f64>> {
    let n = a.nrows();
    let mut l = a.clone();
    let mut buf = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
        n,
        Par::Seq,
        Default::default(),
    ));
    llt::factor::cholesky_in_place(
        l.as_mut(),
        Default::default(),
        Par::Seq,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .ok()?;
    Some(l)
}

fn lu(a: &Mat<f64>) -> Factors {
    let n = a.nrows();
    let mut lu = a.clone();
    let mut perm = vec![0usize; n];
    let mut perm_inv = vec![0usize; n];
    let mut buf = MemBuffer::new(partial_pivoting::factor::lu_in_place_scratch::<usize, f64>(
        n,
        n,
        Par::Seq,
        Default::default(),
    ));
    partial_pivoting::factor::lu_in_place(
        lu.as_mut(),
        &mut perm,
        &mut perm_inv,
        Par::Seq,
        MemStack::new(&mut buf),
        Default::default(),
    );
    Factors::Lu { lu, perm, perm_inv }
}

impl SymmetricSolver {
    fn solve(&self, x: &mut FaerVec<f64>, transpose: bool) -> Result<(), LaError> {
        let rhs = x.inner_mut().as_mut();
        match &self.factors {
            Factors::None => Err(diffsol_la::error::LinearSolverError::LinearSolverNotSetup.into()),
            Factors::Cholesky(l) => {
                let mut buf = MemBuffer::new(llt::solve::solve_in_place_scratch::<f64>(
                    l.nrows(),
                    1,
                    Par::Seq,
                ));
                llt::solve::solve_in_place_with_conj(
                    l.as_ref(),
                    Conj::No,
                    rhs,
                    Par::Seq,
                    MemStack::new(&mut buf),
                );
                Ok(())
            }
            Factors::Lu { lu, perm, perm_inv } => {
                let n = lu.nrows();
                let p = faer::perm::PermRef::new_checked(perm, perm_inv, n);
                if transpose {
                    let mut buf = MemBuffer::new(
                        partial_pivoting::solve::solve_transpose_in_place_scratch::<usize, f64>(
                            n,
                            1,
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
                            1,
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
                Ok(())
            }
        }
    }
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
        self.factors = Factors::None;
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
        let a = matrix.inner();
        self.factors = match try_cholesky(a) {
            Some(l) => {
                COUNTS.with(|c| {
                    c.set(FactorisationCounts {
                        cholesky: c.get().cholesky + 1,
                        ..c.get()
                    })
                });
                Factors::Cholesky(l)
            }
            None => {
                COUNTS.with(|c| {
                    c.set(FactorisationCounts {
                        lu: c.get().lu + 1,
                        ..c.get()
                    })
                });
                lu(a)
            }
        };
    }

    fn solve_in_place(&self, x: &mut FaerVec<f64>) -> Result<(), LaError> {
        self.solve(x, false)
    }

    fn solve_transpose_in_place(&self, x: &mut FaerVec<f64>) -> Result<(), LaError> {
        self.solve(x, true)
    }
}
