//! What every system offers beyond its loss, and reading any instance file.

use std::path::Path;

use grokflow_engine::{Loss, Observables};

use crate::error::{invalid_instance, SystemError};
use crate::linear::{LinearInstanceFile, LinearRegression};

/// A loss with its observables, its initial point and its instance file.
pub trait System: Loss + Observables {
    /// θ_init of this instance.
    fn theta_init(&self) -> &[f64];
    /// The instance file contents (pretty JSON).
    fn instance_json(&self) -> String;
    /// The generating seed, if the instance was generated.
    fn seed(&self) -> Option<u64>;
}

impl System for LinearRegression {
    fn theta_init(&self) -> &[f64] {
        LinearRegression::theta_init(self)
    }
    fn instance_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_file()).expect("plain data serialises")
    }
    fn seed(&self) -> Option<u64> {
        self.params().map(|p| p.seed)
    }
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
    let parse_err = |e: serde_json::Error| invalid_instance(format!("{}: {e}", path.display()));
    match system.as_str() {
        "linear" => {
            let file: LinearInstanceFile = serde_json::from_value(value).map_err(parse_err)?;
            Ok(Box::new(LinearRegression::from_file(file)?))
        }
        other => Err(invalid_instance(format!(
            "{}: unknown system \"{other}\"",
            path.display()
        ))),
    }
}
