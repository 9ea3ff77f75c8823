//! The paper's example losses for grokflow, one file each: its loss with analytic
//! derivatives, seeded instance generation, a JSON instance file that round-trips, its test
//! metric, its report, its known truth where there is one, and its [`SystemSpec`] (name,
//! parameters, presets). [`registry`] lists them all: the command line, validation, the
//! benchmark and the tests read it, so a new system is its file and one line below.

pub mod curve;
pub mod data;
pub mod derived;
pub mod error;
pub mod params;
pub mod scratch;
pub mod spec;
pub mod spectral;
pub mod system;
pub mod truth;

pub use curve::Curve;
pub use error::SystemError;
pub use params::{Kind, Param, Settings};
pub use spec::{Build, Footprint, Preset, RunPreset, SmoothFamily, SystemSpec};
pub use system::System;
pub use truth::Truth;

/// Declares the systems' modules and the registry, one line per system.
macro_rules! systems {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every system, in the order of `simulate --help`.
        pub fn registry() -> Vec<&'static SystemSpec> {
            vec![$(&$module::SPEC),*]
        }
    };
}

systems! {
    linear,
    matrix_completion,
    matrix_sensing,
    diagonal,
    relu,
    modular,
}

use std::path::Path;

use error::invalid_instance;

/// The system called `name`.
pub fn find(name: &str) -> Option<&'static SystemSpec> {
    registry().into_iter().find(|s| s.name == name)
}

/// Reads an instance file of any registered system (dispatching on its "system" field).
pub fn load_instance(path: &Path) -> Result<Box<dyn System>, SystemError> {
    let text = std::fs::read_to_string(path).map_err(|source| SystemError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| invalid_instance(format!("{}: not valid JSON: {e}", path.display())))?;
    let name = value
        .get("system")
        .and_then(|s| s.as_str())
        .ok_or_else(|| invalid_instance(format!("{}: no \"system\" field", path.display())))?
        .to_string();
    let spec = find(&name).ok_or_else(|| {
        invalid_instance(format!("{}: unknown system \"{name}\"", path.display()))
    })?;
    (spec.load)(value).map_err(|e| match e {
        SystemError::InvalidInstance(m) => invalid_instance(format!("{}: {m}", path.display())),
        other => other,
    })
}
