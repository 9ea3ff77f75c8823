//! The methods, each a [`crate::stepping::Stepper`] of the one loop: grokflow's BDF, gradient
//! descent, and diffsol's solvers.

mod bdf;
pub(crate) mod diffsol;
mod gd;
mod switched;

pub(crate) use bdf::Bdf;
pub(crate) use gd::GradientDescent;
pub(crate) use switched::{RegionLoss, Switched};
