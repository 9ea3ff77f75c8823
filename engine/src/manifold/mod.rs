//! The critical manifold M = {∇F = 0} near a point: its tangent projector, the Morse–Bott
//! constant and spectral gap, the retraction onto it, and the KKT condition of the
//! minimum-norm problem on it.

mod gram;
mod kkt;
mod morse_bott;
mod projector;
mod retraction;

pub(crate) use gram::{
    fresh_rows, rayleigh_sigma, spectrum, GramFactor, GramSolver, Rows, RowsAt, WarmStart,
};
pub(crate) use kkt::kkt_residual;
pub use kkt::{kkt_info, KktInfo};
pub(crate) use projector::TangentProjector;
pub(crate) use retraction::{retract, retraction_step};
