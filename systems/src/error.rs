//! Errors of system construction and instance files.

use thiserror::Error;

/// What can go wrong when a system is built or an instance file is read.
#[derive(Debug, Error)]
pub enum SystemError {
    /// A parameter is out of range or inconsistent with another.
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    /// An instance file is malformed or inconsistent.
    #[error("invalid instance: {0}")]
    InvalidInstance(String),
    /// Reading or writing an instance file failed.
    #[error("cannot read or write {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

pub(crate) fn invalid_params(msg: impl Into<String>) -> SystemError {
    SystemError::InvalidParams(msg.into())
}

pub(crate) fn invalid_instance(msg: impl Into<String>) -> SystemError {
    SystemError::InvalidInstance(msg.into())
}
