//! HTTP CONNECT tunnels through a proxy (placeholder: filled in by its owner).

use std::fmt;

/// Errors of this layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// Placeholder.
    Other(String),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ProxyError {}
