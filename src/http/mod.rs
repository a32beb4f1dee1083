//! HTTP/1.1 heads, the DP's requests and the CP's listener (placeholder: filled in by its owner).

use std::fmt;

/// Errors of this layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// Placeholder.
    Other(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for HttpError {}
