//! What every system offers beyond its loss, reading any instance file, and the registry
//! through which tests and validation reach every system.

use std::path::Path;

use grokflow_engine::{Loss, Observables};
use serde::de::DeserializeOwned;

use crate::curve::Curve;
use crate::diagonal::{DiagonalNetwork, DiagonalParams};
use crate::error::{invalid_instance, SystemError};
use crate::linear::{LinearParams, LinearRegression};
use crate::matrix_completion::{CompletionParams, MatrixCompletion};
use crate::matrix_sensing::{MatrixSensing, SensingParams};
use crate::relu::{Activation, ReluParams, TwoLayerNetwork};

/// A loss with its observables, its initial point, its instance file and its report.
pub trait System: Loss + Observables {
    /// θ_init of this instance.
    fn theta_init(&self) -> &[f64];
    /// The instance file contents (pretty JSON).
    fn instance_json(&self) -> String;
    /// The generating seed, if the instance was generated.
    fn seed(&self) -> Option<u64>;
    /// System-specific facts about θ (rank, support, kinks…), as JSON for summary.json.
    fn report(&self, theta: &[f64]) -> serde_json::Value;
    /// The model as a function of one input, for the 1-D problems.
    fn curve(&self) -> Option<&dyn Curve> {
        None
    }
    /// The same instance with another activation, for systems that have one.
    fn with_activation(&self, _activation: Activation) -> Option<Box<dyn System>> {
        None
    }
}

macro_rules! impl_system {
    ($ty:ty) => {
        impl_system!($ty, fn curve(&self) -> Option<&dyn Curve> { None });
    };
    ($ty:ty, curve) => {
        impl_system!($ty, fn curve(&self) -> Option<&dyn Curve> { Some(self) });
    };
    ($ty:ty, $curve_fn:item) => {
        impl_system!($ty, $curve_fn, fn with_activation(&self, _a: Activation) -> Option<Box<dyn System>> { None });
    };
    ($ty:ty, $curve_fn:item, $act_fn:item) => {
        impl System for $ty {
            fn theta_init(&self) -> &[f64] {
                <$ty>::theta_init(self)
            }
            fn instance_json(&self) -> String {
                serde_json::to_string_pretty(&self.to_file()).expect("plain data serialises")
            }
            fn seed(&self) -> Option<u64> {
                self.params().map(|p| p.seed)
            }
            fn report(&self, theta: &[f64]) -> serde_json::Value {
                serde_json::to_value(<$ty>::report(self, theta)).expect("plain data serialises")
            }
            $curve_fn
            $act_fn
        }
    };
}

impl_system!(LinearRegression);
impl_system!(MatrixCompletion);
impl_system!(MatrixSensing);
impl_system!(DiagonalNetwork, curve);
impl_system!(
    TwoLayerNetwork,
    fn curve(&self) -> Option<&dyn Curve> {
        Some(self)
    },
    fn with_activation(&self, a: Activation) -> Option<Box<dyn System>> {
        Some(Box::new(TwoLayerNetwork::with_activation(self, a)))
    }
);

fn parse<T: DeserializeOwned>(value: serde_json::Value, path: &Path) -> Result<T, SystemError> {
    serde_json::from_value(value).map_err(|e| invalid_instance(format!("{}: {e}", path.display())))
}

/// Reads an instance file of any system (dispatching on its "system" field).
pub fn load_instance(path: &Path) -> Result<Box<dyn System>, SystemError> {
    let text = std::fs::read_to_string(path).map_err(|source| SystemError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| invalid_instance(format!("{}: not valid JSON: {e}", path.display())))?;
    let system = value
        .get("system")
        .and_then(|s| s.as_str())
        .ok_or_else(|| invalid_instance(format!("{}: no \"system\" field", path.display())))?
        .to_string();
    Ok(match system.as_str() {
        "linear" => Box::new(LinearRegression::from_file(parse(value, path)?)?),
        "matrix-completion" => Box::new(MatrixCompletion::from_file(parse(value, path)?)?),
        "matrix-sensing" => Box::new(MatrixSensing::from_file(parse(value, path)?)?),
        "diagonal" => Box::new(DiagonalNetwork::from_file(parse(value, path)?)?),
        "relu" => Box::new(TwoLayerNetwork::from_file(parse(value, path)?)?),
        other => {
            return Err(invalid_instance(format!(
                "{}: unknown system \"{other}\"",
                path.display()
            )))
        }
    })
}

/// One system as the registry knows it.
pub struct Entry {
    /// The name (the subcommand of `simulate`).
    pub name: &'static str,
    /// A small instance, cheap enough for tests and quick validation.
    pub cheap: fn(seed: u64) -> Result<Box<dyn System>, SystemError>,
    /// The default instance.
    pub default: fn(seed: u64) -> Result<Box<dyn System>, SystemError>,
}

/// Every system, so that every check can run on every system.
pub fn registry() -> Vec<Entry> {
    vec![
        Entry {
            name: "linear",
            cheap: |seed| {
                Ok(Box::new(LinearRegression::generate(&LinearParams {
                    n: 8,
                    d: 30,
                    seed,
                    ..LinearParams::default()
                })?))
            },
            default: |seed| {
                Ok(Box::new(LinearRegression::generate(&LinearParams {
                    seed,
                    ..LinearParams::default()
                })?))
            },
        },
        Entry {
            name: "matrix-completion",
            cheap: |seed| {
                let p = CompletionParams {
                    n1: 8,
                    n2: 8,
                    width: 4,
                    rank: 2,
                    singular_values: vec![4.0, 2.0],
                    observed: 0.7,
                    seed,
                    ..CompletionParams::default()
                };
                Ok(Box::new(MatrixCompletion::generate(&p)?))
            },
            default: |seed| {
                Ok(Box::new(MatrixCompletion::generate(&CompletionParams {
                    seed,
                    ..CompletionParams::default()
                })?))
            },
        },
        Entry {
            name: "matrix-sensing",
            cheap: |seed| {
                let p = SensingParams {
                    n: 5,
                    width: 5,
                    rank: 1,
                    eigenvalues: vec![2.0],
                    measurements: 10,
                    seed,
                    ..SensingParams::default()
                };
                Ok(Box::new(MatrixSensing::generate(&p)?))
            },
            default: |seed| {
                Ok(Box::new(MatrixSensing::generate(&SensingParams {
                    seed,
                    ..SensingParams::default()
                })?))
            },
        },
        Entry {
            name: "diagonal",
            cheap: |seed| {
                let p = DiagonalParams {
                    frequencies: 10,
                    n: 12,
                    teacher_sparsity: 2,
                    seed,
                    ..DiagonalParams::default()
                };
                Ok(Box::new(DiagonalNetwork::generate(&p)?))
            },
            default: |seed| {
                Ok(Box::new(DiagonalNetwork::generate(&DiagonalParams {
                    seed,
                    ..DiagonalParams::default()
                })?))
            },
        },
        Entry {
            name: "relu",
            cheap: |seed| {
                let p = ReluParams {
                    width: 12,
                    n: 6,
                    activation: Activation::Softplus { beta: 5.0 },
                    seed,
                    ..ReluParams::default()
                };
                Ok(Box::new(TwoLayerNetwork::generate(&p)?))
            },
            default: |seed| {
                Ok(Box::new(TwoLayerNetwork::generate(&ReluParams {
                    seed,
                    ..ReluParams::default()
                })?))
            },
        },
    ]
}
