//! The Morse–Bott structure of a point near M: the spectrum of ∇²F (or of J for residuals)
//! split into its normal part and its kernel, the spectral gap between them, and the
//! Morse–Bott constant μ, the smallest curvature along the normal space.

/// The split of a decreasing sequence of magnitudes `mag` (already floored at `noise`) into
/// ρ leading values and the rest: at `rho` if given, else at the largest ratio. Returns
/// (ρ, the ratio there: the spectral gap).
pub(crate) fn split(mag: &[f64], rho: Option<usize>, noise: f64) -> (usize, f64) {
    let at = |r: usize| -> f64 {
        let hi = if r == 0 { f64::INFINITY } else { mag[r - 1] };
        let lo = mag.get(r).copied().unwrap_or(noise);
        hi / lo
    };
    if let Some(r) = rho {
        let r = r.min(mag.len());
        return (r, at(r));
    }
    let mut best = (0usize, 1.0f64);
    for r in 1..=mag.len() {
        let ratio = at(r);
        if ratio > best.1 {
            best = (r, ratio);
        }
    }
    best
}

/// μ: the smallest |curvature| along the normal directions (∞ when there are none).
pub(crate) fn morse_bott_constant(curvature: &[f64]) -> f64 {
    curvature.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()))
}
