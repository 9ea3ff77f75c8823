//! What every system offers beyond its loss, and reading any system's instance file.

use grokflow_engine::{Loss, Observables};

use crate::curve::Curve;
use crate::error::{invalid_instance, SystemError};
use crate::params::Settings;
use crate::truth::Truth;

/// A loss with its observables, its initial point, its instance file and its report.
pub trait System: Loss + Observables {
    /// θ_init of this instance.
    fn theta_init(&self) -> &[f64];
    /// The instance file contents (pretty JSON).
    fn instance_json(&self) -> String;
    /// The generating seed, if the instance was generated.
    fn seed(&self) -> Option<u64>;
    /// The generation parameters the instance carries (null if none).
    fn params_json(&self) -> serde_json::Value;
    /// System-specific facts about θ (rank, support, kinks…), as JSON for summary.json.
    fn report(&self, theta: &[f64]) -> serde_json::Value;
    /// The model as a function of one input, for the 1-D problems.
    fn curve(&self) -> Option<&dyn Curve> {
        None
    }
    /// The closed forms of this instance, where its flows are explicit.
    fn truth(&self) -> Option<Box<dyn Truth>> {
        None
    }
    /// The same instance with every derivative derived from a generic twin of its residuals
    /// (automatic differentiation), where the system has one.
    fn derived(&self) -> Option<Result<Box<dyn System>, SystemError>> {
        None
    }
    /// "hand-written", or "derived" for [`System::derived`]'s instances.
    fn derivatives(&self) -> &'static str {
        "hand-written"
    }
    /// The same instance with the model parameters of `settings` (those whose
    /// [`crate::Param::model`] is set) applied; an error where it has none.
    fn with_model(&self, _settings: &Settings) -> Result<Box<dyn System>, SystemError> {
        Err(SystemError::InvalidParams(format!(
            "a {} instance has no model parameters to change",
            self.name()
        )))
    }
}

/// Implements the boilerplate of [`System`] for a system type with `theta_init`,
/// `to_file`, `params` and `report` methods; the remaining items are passed through.
#[macro_export]
macro_rules! impl_system {
    ($ty:ty $(, $item:item)* $(,)?) => {
        impl $crate::System for $ty {
            fn theta_init(&self) -> &[f64] {
                <$ty>::theta_init(self)
            }
            fn instance_json(&self) -> String {
                serde_json::to_string_pretty(&self.to_file()).expect("plain data serialises")
            }
            fn seed(&self) -> Option<u64> {
                self.params().map(|p| p.seed)
            }
            fn params_json(&self) -> serde_json::Value {
                serde_json::to_value(self.params()).expect("plain data serialises")
            }
            fn report(&self, theta: &[f64]) -> serde_json::Value {
                serde_json::to_value(<$ty>::report(self, theta)).expect("plain data serialises")
            }
            $($item)*
        }
    };
}

/// Parses an instance file's JSON into its typed form.
pub fn parse_file<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, SystemError> {
    serde_json::from_value(value).map_err(|e| invalid_instance(e.to_string()))
}
