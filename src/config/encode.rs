//! The config as a control plane sends it: gzipped once, with its hashes, for every data
//! plane. (The data plane's side, inflating under a cap, is [`codec`](super::codec).)

use std::io::Write;
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;

use super::hash::{config_hashes, Hashes};
use super::{kind_of, ConfigError};

/// Compresses `json` with gzip at level 6, the level Kong uses.
pub fn gzip(json: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(json.len() / 8 + 64), Compression::new(6));
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(json);
    enc.finish().unwrap_or_default()
}

/// A config encoded once for sending: the control plane sends the same bytes and hashes
/// to every data plane (cloning is cheap: the bytes are shared).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodedConfig {
    /// The gzip of the config's compact JSON: SyncConfig's `config` field.
    pub gzipped: Arc<[u8]>,
    /// Kong's hashes of the config: `config_hash` and `hashes` in SyncConfig.
    pub hashes: Hashes,
    /// Length of the JSON before compression, in bytes.
    pub json_len: usize,
}

impl EncodedConfig {
    /// Checks that `config` is an object, serializes it compactly, hashes it and gzips it.
    pub fn new(config: &Value) -> Result<EncodedConfig, ConfigError> {
        let Value::Object(map) = config else {
            return Err(ConfigError::NotAnObject(kind_of(config)));
        };
        let json = serde_json::to_vec(config).map_err(|e| ConfigError::Json(e.to_string()))?;
        Ok(EncodedConfig {
            gzipped: gzip(&json).into(),
            hashes: config_hashes(map),
            json_len: json.len(),
        })
    }
}
