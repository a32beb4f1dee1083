//! Declarative config: Kong's hash, gzip and JSON intake (placeholder: filled in by its owner).

use std::fmt;

/// Errors of this layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// Placeholder.
    Other(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ConfigError {}
