//! One-dimensional regression problems, whose learned function can be drawn.

/// A system whose model is a function of one real input.
pub trait Curve {
    /// The input range of the data (and of the plots).
    fn domain(&self) -> (f64, f64);
    /// The learned function at x.
    fn predict(&self, theta: &[f64], x: f64) -> f64;
    /// The teacher at x, if known.
    fn teacher_at(&self, x: f64) -> Option<f64>;
    /// The training inputs and targets.
    fn training_points(&self) -> (Vec<f64>, Vec<f64>);
}

/// `count` evenly spaced points covering [lo, hi].
pub fn grid(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    let count = count.max(2);
    (0..count)
        .map(|i| lo + (hi - lo) * i as f64 / (count - 1) as f64)
        .collect()
}
