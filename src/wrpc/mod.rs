//! wRPC: envelope, validation, the peer (placeholder: filled in by its owner).

pub mod envelope;
pub mod validate;

use std::fmt;

/// Errors of this layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum WrpcError {
    /// Placeholder.
    Other(String),
}

impl fmt::Display for WrpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WrpcError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for WrpcError {}
