//! Seeded random data and the JSON shape of matrices in instance files.

use grokflow_engine::la::DMat;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{invalid_instance, SystemError};

/// The generator every system draws from: ChaCha8, stable across platforms and versions.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `len` independent N(0, σ²) draws.
pub fn gaussian_vec(rng: &mut ChaCha8Rng, len: usize, sigma: f64) -> Vec<f64> {
    (0..len)
        .map(|_| sigma * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng))
        .collect()
}

/// An r×c matrix of independent N(0, σ²) draws, filled row by row.
pub fn gaussian_mat(rng: &mut ChaCha8Rng, rows: usize, cols: usize, sigma: f64) -> DMat {
    let v = gaussian_vec(rng, rows * cols, sigma);
    DMat::from_fn(rows, cols, |i, j| v[i * cols + j])
}

/// A matrix as JSON rows: `[[row 0], [row 1], …]` (what numpy's `np.array` reads).
pub fn mat_to_rows(m: &DMat) -> Vec<Vec<f64>> {
    (0..m.nrows())
        .map(|i| (0..m.ncols()).map(|j| m[(i, j)]).collect())
        .collect()
}

/// The inverse of [`mat_to_rows`], checking that every row has `cols` finite entries.
pub fn rows_to_mat(rows: &[Vec<f64>], cols: usize, what: &str) -> Result<DMat, SystemError> {
    for (i, r) in rows.iter().enumerate() {
        if r.len() != cols {
            return Err(invalid_instance(format!(
                "{what}: row {i} has {} entries, expected {cols}",
                r.len()
            )));
        }
        if let Some(j) = r.iter().position(|x| !x.is_finite()) {
            return Err(invalid_instance(format!("{what}[{i}][{j}] is not finite")));
        }
        if let Some(j) = r.iter().position(|x| x.abs() > MAX_MAGNITUDE) {
            return Err(too_large(&format!("{what}[{i}][{j}]"), r[j]));
        }
    }
    Ok(DMat::from_fn(rows.len(), cols, |i, j| rows[i][j]))
}

/// Checks that a vector has the expected length and only finite entries.
pub fn check_vec(v: &[f64], len: usize, what: &str) -> Result<(), SystemError> {
    if v.len() != len {
        return Err(invalid_instance(format!(
            "{what} has {} entries, expected {len}",
            v.len()
        )));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(invalid_instance(format!("{what}[{i}] is not finite")));
    }
    if let Some(i) = v.iter().position(|x| x.abs() > MAX_MAGNITUDE) {
        return Err(too_large(&format!("{what}[{i}]"), v[i]));
    }
    Ok(())
}

/// The largest magnitude an instance's numbers may have: losses square products of them,
/// and beyond about 1e150 those overflow double precision.
pub const MAX_MAGNITUDE: f64 = 1e100;

fn too_large(what: &str, x: f64) -> SystemError {
    invalid_instance(format!(
        "{what} = {x:e} is beyond ±{MAX_MAGNITUDE:e}: the loss squares products of such \
         numbers, which overflow double precision; rescale the data"
    ))
}

/// A uniformly random permutation of 0..n (Fisher–Yates).
pub fn permutation(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    use rand::RngExt;
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        p.swap(i, j);
    }
    p
}

/// An n×k matrix with orthonormal columns: the Q factor of a Gaussian matrix.
pub fn orthonormal_columns(rng: &mut ChaCha8Rng, n: usize, k: usize) -> DMat {
    let g = gaussian_mat(rng, n, k, 1.0);
    let qr = g.qr();
    qr.compute_thin_Q()
}

/// `count` values: `first` in order, then `rest` (a default spectrum for a given rank).
pub fn default_spectrum(count: usize, first: &[f64], rest: f64) -> Vec<f64> {
    (0..count)
        .map(|k| first.get(k).copied().unwrap_or(rest))
        .collect()
}
