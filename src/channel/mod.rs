//! The full-duplex WebSocket message channel over TLS (placeholder: filled in by its owner).

use std::fmt;

/// Errors of this layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChannelError {
    /// Placeholder.
    Other(String),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ChannelError {}
