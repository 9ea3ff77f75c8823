//! Inverses of B's small blocks αI + γR_g, refused when ill-conditioned.

/// A block of B = αI + γR whose condition number (∞-norm) exceeds this sends the
/// factorisation to the assembled matrix.
pub(super) const MAX_BLOCK_CONDITION: f64 = 1e8;

/// b ← (αI + γr)⁻¹ for the k×k row-major block r (B's block of R), inverted in place with
/// the scratch `aug`; false when [`invert_in_place`] refuses it.
pub(super) fn shifted_block_inverse(
    b: &mut [f64],
    r: &[f64],
    k: usize,
    alpha: f64,
    gamma: f64,
    aug: &mut Vec<f64>,
) -> bool {
    if k == 1 {
        // A 1×1 block is its own condition number: it needs only a non-zero pivot.
        let p = alpha + gamma * r[0];
        b[0] = 1.0 / p;
        return p.is_finite() && p != 0.0 && b[0].is_finite();
    }
    if k == 2 {
        // 2×2 blocks: the adjugate over the determinant, refused as
        // Gauss–Jordan refuses, on the condition number ‖a‖∞‖a⁻¹‖∞ (a vanishing
        // determinant makes it infinite).
        let (p, q, s, t) = (
            alpha + gamma * r[0],
            gamma * r[1],
            gamma * r[2],
            alpha + gamma * r[3],
        );
        let norm = (p.abs() + q.abs()).max(s.abs() + t.abs());
        let det = p * t - q * s;
        b.copy_from_slice(&[t / det, -q / det, -s / det, p / det]);
        // Every entry finite (`inf_norm`'s maximum would pass over a NaN), and the
        // determinant too: one that overflows would make the inverse zero.
        let finite = b.iter().chain(&[p, q, s, t, det]).all(|x| x.is_finite()) && det != 0.0;
        return finite && norm > 0.0 && norm * inf_norm(b, 2) <= MAX_BLOCK_CONDITION;
    }
    for (bi, ri) in b.iter_mut().zip(r) {
        *bi = gamma * ri;
    }
    for i in 0..k {
        b[i * k + i] += alpha;
    }
    invert_in_place(b, k, aug)
}

/// The ∞-norm (largest absolute row sum) of the k×k row-major `a`.
pub(super) fn inf_norm(a: &[f64], k: usize) -> f64 {
    a.chunks_exact(k)
        .map(|row| row.iter().map(|x| x.abs()).sum::<f64>())
        .fold(0.0, f64::max)
}

/// Inverts the k×k row-major `a` in place by Gauss–Jordan elimination with partial pivoting,
/// in the scratch `m` (resized to (k + 1)×2k: the augmented matrix and a copy of the pivot
/// row). False if a pivot vanishes or the condition number ‖a‖∞‖a⁻¹‖∞ exceeds
/// [`MAX_BLOCK_CONDITION`]. The pivot row is zero left of the pivot, so each elimination
/// updates only the columns from the pivot on.
pub(super) fn invert_in_place(a: &mut [f64], k: usize, m: &mut Vec<f64>) -> bool {
    let norm = inf_norm(a, k);
    if !(k > 0 && norm.is_finite() && norm > 0.0) {
        return false;
    }
    // Augment [a | I].
    let w = 2 * k;
    m.clear();
    m.resize((k + 1) * w, 0.0);
    for i in 0..k {
        m[i * w..i * w + k].copy_from_slice(&a[i * k..(i + 1) * k]);
        m[i * w + k + i] = 1.0;
    }
    let (rows, pivot) = m.split_at_mut(k * w);
    for col in 0..k {
        let piv = (col..k)
            .max_by(|&x, &y| rows[x * w + col].abs().total_cmp(&rows[y * w + col].abs()))
            .unwrap_or(col);
        if rows[piv * w + col].abs() <= f64::EPSILON * norm {
            return false;
        }
        if piv != col {
            for j in 0..w {
                rows.swap(piv * w + j, col * w + j);
            }
        }
        let p = rows[col * w + col];
        for x in &mut rows[col * w + col..(col + 1) * w] {
            *x /= p;
        }
        pivot[col..].copy_from_slice(&rows[col * w + col..(col + 1) * w]);
        for (i, row) in rows.chunks_exact_mut(w).enumerate() {
            let f = row[col];
            if i != col && f != 0.0 {
                for (x, q) in row[col..].iter_mut().zip(&pivot[col..]) {
                    *x -= f * q;
                }
            }
        }
    }
    for i in 0..k {
        a[i * k..(i + 1) * k].copy_from_slice(&rows[i * w + k..i * w + w]);
    }
    let inv_norm = inf_norm(a, k);
    inv_norm.is_finite() && norm * inv_norm <= MAX_BLOCK_CONDITION
}
