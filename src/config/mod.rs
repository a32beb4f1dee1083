//! The declarative config as it travels: Kong's config hash ([`config_hashes`]), the gzip
//! encoding of a control plane and the JSON intake of a data plane with size limits.
//!
//! The control plane encodes a config once (`EncodedConfig`) and sends the same bytes to
//! every data plane; a data plane inflates under a cap (`DEFAULT_MAX_INFLATED`) so a gzip
//! bomb costs it at most that much memory.

use std::fmt;

internal! {
    #[cfg(feature = "dp")]
    mod codec;
}
internal! {
    #[cfg(feature = "cp")]
    mod encode;
}
mod hash;

#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub use codec::DEFAULT_MAX_INFLATED;
#[cfg(feature = "dp")]
internal_use!(codec::{decode, inflate, parse_object});
#[cfg(feature = "cp")]
internal_use!(encode::{gzip, EncodedConfig});
internal_use!(hash::hash_value);
pub use hash::{config_hashes, Hashes, EMPTY_HASH};

/// Why a config could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The inflated config is larger than the limit (in bytes); inflating stopped there.
    TooLarge {
        /// The limit that was passed.
        limit: usize,
    },
    /// The data is neither gzip nor zlib.
    NotCompressed,
    /// The compressed data is corrupt or truncated; holds the decoder's message.
    Inflate(String),
    /// The config is not valid JSON; holds the parser's message.
    Json(String),
    /// The JSON is valid but not an object; holds what it is instead (e.g. `an array`).
    NotAnObject(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::TooLarge { limit } => write!(
                f,
                "the inflated config exceeds the limit of {limit} bytes; \
                 raise the limit if the config is legitimately this large"
            ),
            ConfigError::NotCompressed => {
                f.write_str("the config is neither gzip nor zlib compressed")
            }
            ConfigError::Inflate(e) => write!(f, "the compressed config is corrupt: {e}"),
            ConfigError::Json(e) => write!(f, "the config is not valid JSON: {e}"),
            ConfigError::NotAnObject(what) => {
                write!(f, "the config must be a JSON object, got {what}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// What kind of JSON value `v` is, for error messages (here and in Kong's JSON protocol).
pub(crate) fn kind_of(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
