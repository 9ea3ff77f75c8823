//! The products that build the capacitance matrix K = I/β + J B⁻¹ Jᵀ.

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Par};

use crate::la::{Factorisation, MatMut, MatRef};

/// K = AᵀB + I/β for d×m A and B with AᵀB symmetric (J B⁻¹ Jᵀ, A diag(q) Aᵀ), factorised
/// from its lower triangle (Cholesky reads nothing else: half the product), in the storage
/// of `recycled`.
pub(super) fn capacitance(
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    beta: f64,
    recycled: Option<Factorisation>,
) -> Factorisation {
    let m = a.ncols();
    Factorisation::build(m, recycled, |mut kk, lower| {
        symmetric_product(kk.as_mut(), a, b, lower);
        for i in 0..m {
            kk[(i, i)] += 1.0 / beta;
        }
    })
}

/// dst = Aᵀ B for d×m A and B with AᵀB symmetric: with `lower`, only its lower triangle is
/// computed (about half the m²d products; Cholesky reads nothing else), else all of it, the
/// upper triangle mirrored from the lower.
pub(super) fn symmetric_product(
    mut dst: MatMut<'_, f64>,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    lower: bool,
) {
    triangular::matmul(
        dst.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        a.transpose(),
        BlockStructure::Rectangular,
        b,
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    if !lower {
        for j in 1..dst.ncols() {
            for i in 0..j {
                dst[(i, j)] = dst[(j, i)];
            }
        }
    }
}
