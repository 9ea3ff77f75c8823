//! Exact derivatives of a loss written once, generically over [`Scalar`]: reverse mode
//! ([`Var`], a per-thread tape) for gradients and Jᵀu, forward mode (dual numbers, from
//! `num-dual`) for J·v, and forward over reverse for Hessian-vector products and the
//! residual curvature. [`Derived`] and [`DerivedScalar`] turn a model into a [`crate::Loss`].

mod derived;
mod scalar;
mod tape;

pub use derived::{Derived, DerivedScalar, ResidualModel, ScalarModel};
pub use num_dual::Dual64;
pub use scalar::Scalar;
pub use tape::{TapeValue, Var};
