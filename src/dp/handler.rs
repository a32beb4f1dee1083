//! What the user plugs in: the code that applies a config.

use serde_json::{Map, Value};

use crate::config::Hashes;
pub use crate::services::config::ErrorType as ConfigErrorType;
pub use crate::services::config::SyncConfigError;

/// A config handed to the [`ConfigHandler`]: the same shape whichever protocol brought
/// it (wRPC's SyncConfig or the JSON protocol's `reconfigure`).
#[derive(Debug)]
#[non_exhaustive]
pub struct ConfigUpdate<'a> {
    /// The declarative config, parsed.
    pub config: &'a Map<String, Value>,
    /// The JSON text of the config: on wRPC the inflated text it was parsed from; on
    /// Kong's JSON protocol `config_table` re-encoded (the frame held the whole
    /// `reconfigure` message); from the cache, the cached config re-encoded.
    pub raw: &'a [u8],
    /// The version the CP gave it: `Some` on wRPC (versions count per connection),
    /// `None` on Kong's JSON protocol, whose `reconfigure` has no version number (the
    /// `config_hash` identifies a config there), and for a cached config that came from
    /// a JSON CP.
    pub version: Option<u64>,
    /// The config hash: the CP's id for this config, echoed in PingCP.
    pub hash: &'a str,
    /// The granular hashes (routes, services, plugins, upstreams, targets): as the CP
    /// sent them, Kong's own when it sent no `config_hash` (Kong 2.3, 2.4), and 32 zeros
    /// for parts it did not send (a JSON CP before Kong 2.8.1 sends no `hashes`).
    pub hashes: &'a Hashes,
    /// True when the config comes from the cache at start, not from a CP.
    pub from_cache: bool,
}

/// Applies configs, one at a time. Runs on a worker thread; take the time needed, well
/// inside the SyncConfig deadline on wRPC (90 s with Kong). On Kong's JSON protocol
/// there is no deadline: configs that arrive meanwhile are coalesced, the newest wins.
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
