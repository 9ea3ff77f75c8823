//! The numbers a user's loss is written over: f64 for values, forward-mode dual numbers for
//! directional derivatives, and the reverse-mode variables of [`crate::autodiff::Var`] for
//! gradients. A loss written once against [`Scalar`] gets every derivative exactly.

use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use num_dual::{Dual64, DualNum};

/// A real number with derivatives attached (or f64 itself). Arithmetic works between two
/// scalars and between a scalar and an `f64` on its right; write a constant on the left as
/// `T::constant(2.0) * x`. Branch on [`Scalar::value`] (the real part) where a model is
/// piecewise.
pub trait Scalar:
    Copy
    + Send
    + Sync
    + std::fmt::Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Add<f64, Output = Self>
    + Sub<f64, Output = Self>
    + Mul<f64, Output = Self>
    + Div<f64, Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + AddAssign<f64>
    + SubAssign<f64>
    + MulAssign<f64>
    + DivAssign<f64>
    + Sum
    + 'static
{
    /// The constant x (no derivative).
    fn constant(x: f64) -> Self;
    /// The real part.
    fn value(&self) -> f64;
    /// 0.
    fn zero() -> Self {
        Self::constant(0.0)
    }
    /// 1.
    fn one() -> Self {
        Self::constant(1.0)
    }
    /// eˣ.
    fn exp(self) -> Self;
    /// ln x.
    fn ln(self) -> Self;
    /// ln(1 + x), accurate near 0.
    fn ln_1p(self) -> Self;
    /// eˣ − 1, accurate near 0.
    fn exp_m1(self) -> Self;
    /// √x.
    fn sqrt(self) -> Self;
    /// xⁿ.
    fn powi(self, n: i32) -> Self;
    /// xᵖ.
    fn powf(self, p: f64) -> Self;
    /// sin x.
    fn sin(self) -> Self;
    /// cos x.
    fn cos(self) -> Self;
    /// tanh x.
    fn tanh(self) -> Self;
    /// sinh x.
    fn sinh(self) -> Self;
    /// cosh x.
    fn cosh(self) -> Self;
    /// 1/x.
    fn recip(self) -> Self;
    /// |x| (derivative ±1, 0 taken as +).
    fn abs(self) -> Self {
        if self.value() >= 0.0 {
            self
        } else {
            -self
        }
    }
    /// The larger of the two (by value).
    fn max(self, other: Self) -> Self {
        if self.value() >= other.value() {
            self
        } else {
            other
        }
    }
    /// The smaller of the two (by value).
    fn min(self, other: Self) -> Self {
        if self.value() <= other.value() {
            self
        } else {
            other
        }
    }
}

impl Scalar for f64 {
    fn constant(x: f64) -> Self {
        x
    }
    fn value(&self) -> f64 {
        *self
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn ln_1p(self) -> Self {
        f64::ln_1p(self)
    }
    fn exp_m1(self) -> Self {
        f64::exp_m1(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn powi(self, n: i32) -> Self {
        f64::powi(self, n)
    }
    fn powf(self, p: f64) -> Self {
        f64::powf(self, p)
    }
    fn sin(self) -> Self {
        f64::sin(self)
    }
    fn cos(self) -> Self {
        f64::cos(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn sinh(self) -> Self {
        f64::sinh(self)
    }
    fn cosh(self) -> Self {
        f64::cosh(self)
    }
    fn recip(self) -> Self {
        f64::recip(self)
    }
}

impl Scalar for Dual64 {
    fn constant(x: f64) -> Self {
        Dual64::from_re(x)
    }
    fn value(&self) -> f64 {
        self.re
    }
    fn exp(self) -> Self {
        DualNum::exp(&self)
    }
    fn ln(self) -> Self {
        DualNum::ln(&self)
    }
    fn ln_1p(self) -> Self {
        DualNum::ln_1p(&self)
    }
    fn exp_m1(self) -> Self {
        DualNum::exp_m1(&self)
    }
    fn sqrt(self) -> Self {
        DualNum::sqrt(&self)
    }
    fn powi(self, n: i32) -> Self {
        DualNum::powi(&self, n)
    }
    fn powf(self, p: f64) -> Self {
        DualNum::powf(&self, p)
    }
    fn sin(self) -> Self {
        DualNum::sin(&self)
    }
    fn cos(self) -> Self {
        DualNum::cos(&self)
    }
    fn tanh(self) -> Self {
        DualNum::tanh(&self)
    }
    fn sinh(self) -> Self {
        DualNum::sinh(&self)
    }
    fn cosh(self) -> Self {
        DualNum::cosh(&self)
    }
    fn recip(self) -> Self {
        DualNum::recip(&self)
    }
}
