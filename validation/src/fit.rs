//! Empirical orders: error ≈ C λ^p by least squares on log error against log λ, over the
//! points of an asymptotic window (as diffrax's order tests do), kept as data.

use serde::{Deserialize, Serialize};

/// A fitted power law and the points it was fitted on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerFit {
    /// The order p.
    pub order: f64,
    /// The constant C.
    pub constant: f64,
    /// R² of the regression in log–log space.
    pub r_squared: f64,
    /// The λ's used.
    pub lambdas: Vec<f64>,
}

/// Least squares of log e on log λ. None with fewer than `min_points` points or a
/// non-positive value.
pub fn fit_power(points: &[(f64, f64)], min_points: usize) -> Option<PowerFit> {
    if points.len() < min_points.max(2)
        || points
            .iter()
            .any(|(l, e)| !(*l > 0.0 && *e > 0.0 && e.is_finite()))
    {
        return None;
    }
    let xs: Vec<f64> = points.iter().map(|(l, _)| l.ln()).collect();
    let ys: Vec<f64> = points.iter().map(|(_, e)| e.ln()).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let order = sxy / sxx;
    let intercept = my - order * mx;
    let ss_tot: f64 = ys.iter().map(|y| (y - my) * (y - my)).sum();
    let ss_res: f64 = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| (y - intercept - order * x).powi(2))
        .sum();
    Some(PowerFit {
        order,
        constant: intercept.exp(),
        r_squared: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            1.0
        },
        lambdas: points.iter().map(|(l, _)| *l).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_an_exact_power_law() {
        let pts: Vec<(f64, f64)> = [1e-1, 1e-2, 1e-3]
            .iter()
            .map(|&l| (l, 3.0 * l * l))
            .collect();
        let f = fit_power(&pts, 3).unwrap();
        assert!(
            (f.order - 2.0).abs() < 1e-12
                && (f.constant - 3.0).abs() < 1e-9
                && f.r_squared > 1.0 - 1e-12
        );
    }

    #[test]
    fn refuses_too_few_or_bad_points() {
        assert!(fit_power(&[(1e-1, 1.0), (1e-2, 0.1)], 3).is_none());
        assert!(fit_power(&[(1e-1, 1.0), (1e-2, 0.0), (1e-3, 0.1)], 3).is_none());
    }
}
