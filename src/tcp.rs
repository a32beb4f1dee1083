//! TCP connect with a timeout (placeholder: filled in by its owner).

use std::fmt;

/// Errors of this layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// Placeholder.
    Other(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ConnectError {}
