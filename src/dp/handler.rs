//! What the user plugs in: the code that applies a config.

use serde_json::{Map, Value};

use crate::config::Hashes;
pub use crate::services::config::ErrorType as ConfigErrorType;
pub use crate::services::config::SyncConfigError;

/// A config handed to the [`ConfigHandler`].
#[derive(Debug)]
pub struct ConfigUpdate<'a> {
    /// The declarative config, parsed.
    pub config: &'a Map<String, Value>,
    /// The JSON text it was parsed from (inflated), or the cache file's config re-encoded.
    pub raw: &'a [u8],
    /// The version the CP gave it: `Some` on wRPC (versions count per connection),
    /// `None` on Kong's JSON protocol, whose `reconfigure` has no version number (the
    /// `config_hash` identifies a config there), and for a cached config that came from
    /// a JSON CP.
    pub version: Option<u64>,
    /// The config hash: the CP's id for this config, echoed in PingCP.
    pub hash: &'a str,
    /// The granular hashes (routes, services, plugins, upstreams, targets).
    pub hashes: &'a Hashes,
    /// True when the config comes from the cache at start, not from a CP.
    pub from_cache: bool,
}

/// Applies configs. Runs on a worker thread; take the time needed, well inside the
/// SyncConfig deadline (90 s with Kong).
pub trait ConfigHandler: Send + Sync + 'static {
    /// Applies `update`, or rejects it with the errors to report to the CP. A rejected
    /// config leaves the last applied one in force.
    fn apply(&self, update: &ConfigUpdate<'_>) -> Result<(), Vec<SyncConfigError>>;
}

impl<F> ConfigHandler for F
where
    F: Fn(&ConfigUpdate<'_>) -> Result<(), Vec<SyncConfigError>> + Send + Sync + 'static,
{
    fn apply(&self, update: &ConfigUpdate<'_>) -> Result<(), Vec<SyncConfigError>> {
        self(update)
    }
}

/// A [`SyncConfigError`] for entity `entity` with id `id`.
pub fn config_error(id: &str, entity: &str, err_type: ConfigErrorType) -> SyncConfigError {
    SyncConfigError {
        id: id.to_string(),
        entity: entity.to_string(),
        err_type: err_type as i32,
    }
}
