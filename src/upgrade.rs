//! The wRPC WebSocket upgrade, both sides (placeholder: filled in by its owner).

use std::fmt;

/// Errors of this layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Placeholder.
    Other(String),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for UpgradeError {}
