//! The parameters of a system's generator ([`Param`], from which the command line is built)
//! and their values ([`Settings`], read through typed getters that fall back on the
//! defaults).

use std::collections::BTreeMap;

use crate::error::{invalid_params, SystemError};

/// What kind of value a parameter takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A whole number ≥ 0.
    Count,
    /// A real number.
    Real,
    /// Comma-separated real numbers.
    Reals,
    /// One of these values, each with its help.
    Choice(&'static [(&'static str, &'static str)]),
}

/// One parameter of a system's instance generator (a flag `--name` of its subcommand).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Param {
    /// The flag's name, kebab-case.
    pub name: &'static str,
    /// One line of help, with the parameter's symbol and accepted range.
    pub help: &'static str,
    /// The value's kind.
    pub kind: Kind,
    /// The default as the user would type it; None when it is computed from others (the
    /// help says how).
    pub default: Option<&'static str>,
    /// The parameter changes the model, not the data: it applies to a loaded instance too.
    pub model: bool,
}

impl Param {
    /// A data parameter with a default.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        default: &'static str,
    ) -> Self {
        Self {
            name,
            help,
            kind,
            default: Some(default),
            model: false,
        }
    }
}

/// Parameter values for a system's generator: what the user typed or a preset set, over
/// the defaults of its [`Param`]s.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    params: &'static [Param],
    values: BTreeMap<&'static str, String>,
}

impl Settings {
    /// No values: every parameter at its default.
    pub fn new(params: &'static [Param]) -> Self {
        Self {
            params,
            values: BTreeMap::new(),
        }
    }

    /// Sets `name` to `value` (as typed); an error for a parameter the system does not have.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> Result<(), SystemError> {
        let p = self.param(name)?;
        self.values.insert(p.name, value.into());
        Ok(())
    }

    /// The same settings with `name` set to `value`.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Result<Self, SystemError> {
        self.set(name, value)?;
        Ok(self)
    }

    /// The parameters that were set (not left at their defaults), with their values.
    pub fn given(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// True when `name` was set.
    pub fn is_given(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn param(&self, name: &str) -> Result<&'static Param, SystemError> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| invalid_params(format!("there is no parameter --{name}")))
    }

    /// The raw value of `name`: as set, else its default; None when neither.
    pub fn raw(&self, name: &str) -> Result<Option<&str>, SystemError> {
        let p = self.param(name)?;
        Ok(self.values.get(name).map(String::as_str).or(p.default))
    }

    fn required(&self, name: &str) -> Result<&str, SystemError> {
        self.raw(name)?
            .ok_or_else(|| invalid_params(format!("--{name} has no value")))
    }

    /// A whole number ≥ 0.
    pub fn count(&self, name: &str) -> Result<usize, SystemError> {
        let raw = self.required(name)?;
        raw.trim().parse().map_err(|_| {
            invalid_params(format!(
                "--{name} must be a whole number ≥ 0, got \"{raw}\""
            ))
        })
    }

    /// A whole number ≥ 0, or None when unset and without a default.
    pub fn count_opt(&self, name: &str) -> Result<Option<usize>, SystemError> {
        match self.raw(name)? {
            Some(_) => self.count(name).map(Some),
            None => Ok(None),
        }
    }

    /// A seed (a whole number ≥ 0 up to 2⁶⁴ − 1).
    pub fn seed(&self, name: &str) -> Result<u64, SystemError> {
        let raw = self.required(name)?;
        raw.trim().parse().map_err(|_| {
            invalid_params(format!(
                "--{name} must be a whole number ≥ 0, got \"{raw}\""
            ))
        })
    }

    /// A real number (range checks are the system's).
    pub fn real(&self, name: &str) -> Result<f64, SystemError> {
        let raw = self.required(name)?;
        raw.trim()
            .parse()
            .map_err(|_| invalid_params(format!("--{name} must be a number, got \"{raw}\"")))
    }

    /// Comma-separated real numbers, or None when unset and without a default.
    pub fn reals(&self, name: &str) -> Result<Option<Vec<f64>>, SystemError> {
        let Some(raw) = self.raw(name)? else {
            return Ok(None);
        };
        raw.split(',')
            .map(|x| {
                x.trim().parse().map_err(|_| {
                    invalid_params(format!(
                        "--{name} must be comma-separated numbers, got \"{raw}\""
                    ))
                })
            })
            .collect::<Result<Vec<f64>, _>>()
            .map(Some)
    }

    /// One of the parameter's choices.
    pub fn choice(&self, name: &str) -> Result<&str, SystemError> {
        let p = self.param(name)?;
        let raw = self.required(name)?;
        match p.kind {
            Kind::Choice(options) if !options.iter().any(|(o, _)| *o == raw) => {
                let names: Vec<&str> = options.iter().map(|(o, _)| *o).collect();
                Err(invalid_params(format!(
                    "--{name} must be one of {}, got \"{raw}\"",
                    names.join(", ")
                )))
            }
            _ => Ok(raw),
        }
    }
}
