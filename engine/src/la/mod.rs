//! Linear-algebra types and small vector kernels, aliased in one place so that the rest of
//! grokflow never names a backend directly.

mod factorisation;
mod lanczos;

pub use factorisation::Factorisation;
pub use faer::{Mat, MatMut, MatRef};
pub use lanczos::lanczos_max;

/// A dense `f64` matrix (column-major, faer).
pub type DMat = Mat<f64>;

/// ⟨a, b⟩.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// ‖a‖₂.
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// ‖a − b‖₂.
pub fn distance(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// y ← y + α x.
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// out ← A v for a dense square or rectangular `A` (faer's kernel, which takes row- and
/// column-major views alike).
pub fn matvec_into(a: MatRef<'_, f64>, v: &[f64], out: &mut [f64]) {
    debug_assert_eq!(a.ncols(), v.len());
    debug_assert_eq!(a.nrows(), out.len());
    faer::linalg::matmul::matmul(
        MatMut::from_column_major_slice_mut(out, a.nrows(), 1),
        faer::Accum::Replace,
        a,
        MatRef::from_column_major_slice(v, a.ncols(), 1),
        1.0,
        faer::Par::Seq,
    );
}

/// Column j of the owned matrix `a` as a slice (an owned matrix's columns are contiguous).
pub fn column(a: &DMat, j: usize) -> &[f64] {
    a.col(j)
        .try_as_col_major()
        .expect("an owned matrix's columns are contiguous")
        .as_slice()
}

/// True when every entry is finite.
pub fn all_finite(a: &[f64]) -> bool {
    a.iter().all(|x| x.is_finite())
}

/// The eigenvalues (ascending) and orthonormal eigenvectors (columns) of a symmetric matrix.
/// Only the lower triangle of `a` is read.
pub fn symmetric_eigen(a: MatRef<'_, f64>) -> Result<(Vec<f64>, DMat), String> {
    let evd = a
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| format!("symmetric eigendecomposition failed: {e:?}"))?;
    let s = evd.S();
    let s = s.column_vector();
    let values = (0..s.nrows()).map(|i| s[i]).collect();
    Ok((values, evd.U().to_owned()))
}
