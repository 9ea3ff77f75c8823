//! How a system presents itself to the registry: its name and help, the parameters of its
//! instance generator (from which the command line is built), its presets, and the
//! functions that generate, load and shrink its instances. No command-line library is named
//! here: the application turns these plain descriptions into flags.

use grokflow_engine::Method;

use crate::error::SystemError;
use crate::params::{Param, Settings};
use crate::system::System;

/// A function that builds an instance.
pub type Build<A> = fn(A) -> Result<Box<dyn System>, SystemError>;

/// What an instance will weigh, known from its parameters before it is generated: enough to
/// refuse a run that cannot fit in memory before anything is allocated.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Footprint {
    /// d.
    pub dim: f64,
    /// m (residuals; 0 without).
    pub residuals: f64,
    /// The residuals have structured products (J·v, Jᵀu, JJᵀ cheaper than a dense J).
    pub structured_products: bool,
    /// The residual curvature's blocks: (how many, size of each); (0, 0) without.
    pub blocks: (f64, f64),
    /// The instance's data and θ_init, bytes.
    pub data_bytes: f64,
}

/// The run settings a preset sets (the user's flags still win).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunPreset {
    /// λ.
    pub lambda: Option<f64>,
    /// The method (with its step, for gradient descent).
    pub method: Option<Method>,
    /// End in fast time.
    pub t_end: Option<f64>,
    /// End in slow time.
    pub tau_end: Option<f64>,
}

/// A named setting of a system: parameter values and run settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    /// The value of `--preset`.
    pub name: &'static str,
    /// What it reproduces, and where the numbers come from.
    pub help: &'static str,
    /// Parameter values, as the user would type them.
    pub params: &'static [(&'static str, &'static str)],
    /// Run settings.
    pub run: RunPreset,
}

/// A non-smooth model as the limit of a smooth family (the benchmark compares the routes to
/// the limit: the family's flows as the parameter grows, and the limit itself).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothFamily {
    /// The parameter values that make the model the non-smooth limit.
    pub limit: &'static [(&'static str, &'static str)],
    /// The family's parameter.
    pub param: &'static str,
    /// Its values, towards the limit.
    pub values: &'static [&'static str],
    /// The step of gradient descent on the limit (which implicit methods cannot integrate).
    pub gd_step: f64,
}

/// A system as the registry knows it.
pub struct SystemSpec {
    /// The name: the subcommand of `simulate` and the `system` field of its instance files.
    pub name: &'static str,
    /// One line: the loss and what its slow phase does.
    pub about: &'static str,
    /// The rest of its help: the default instance and the test metric.
    pub details: &'static str,
    /// The parameters of its instance generator.
    pub params: &'static [Param],
    /// Its presets.
    pub presets: &'static [Preset],
    /// Where a run ends in slow time unless the user or a preset says otherwise: long enough
    /// for the default instance's slow phase.
    pub default_tau_end: f64,
    /// The limiting flow stops where μ has fallen below this fraction of its start value
    /// (0: never), for a model whose flow on M meets a rank drop of J at a finite time.
    pub limiting_mu_collapse: f64,
    /// The footprint of the instance these parameter values generate.
    pub footprint: for<'s> fn(&'s Settings) -> Result<Footprint, SystemError>,
    /// An instance from parameter values.
    pub generate: for<'s> fn(&'s Settings) -> Result<Box<dyn System>, SystemError>,
    /// An instance from the contents of its instance file.
    pub load: Build<serde_json::Value>,
    /// A small instance, cheap enough for tests and quick validation.
    pub cheap: Build<u64>,
    /// The instance of the validation report: small with `quick` (the tests' sweep), else the
    /// one the full report is for (the default instance, or one whose limit on M is a
    /// regular point).
    pub validation: Build<bool>,
    /// Instances of growing size n, for the benchmark's large-d section.
    pub scaled: Option<Build<usize>>,
    /// A non-smooth limit of the model and the smooth family that tends to it.
    pub smooth_family: Option<SmoothFamily>,
}

impl std::fmt::Debug for SystemSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SystemSpec {
    /// The default instance (seed 0).
    pub fn default_instance(&self) -> Result<Box<dyn System>, SystemError> {
        (self.generate)(&Settings::new(self.params))
    }

    /// The preset called `name`.
    pub fn preset(&self, name: &str) -> Option<&'static Preset> {
        self.presets.iter().find(|p| p.name == name)
    }
}
