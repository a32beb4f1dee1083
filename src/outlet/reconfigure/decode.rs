//! The data plane's side of `reconfigure`: inflating and checking a frame.

use serde_json::{Map, Value};

use crate::config::{self, config_hashes, ConfigError, Hashes, EMPTY_HASH};
use crate::outlet::ping::is_wire_hash;
use crate::outlet::{cut, kind_of, Message, OutletError};

/// A decoded `reconfigure` frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// A `reconfigure`: apply it unless its hash is the applied one.
    Reconfigure(Reconfigure),
    /// A message of another `type`, which Kong's data plane ignores and so do we: holds
    /// the `type` (cut to 64 bytes), or `None` when it is absent or not a string.
    Ignored {
        /// The message's `type`.
        type_name: Option<String>,
    },
}

/// A `reconfigure` received by a data plane.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Reconfigure {
    /// `config_table`: the declarative config.
    pub config: Map<String, Value>,
    /// `config_hash` (Kong 2.5+), or `None` when absent. A value that is not a
    /// 32-character printable string ([`is_wire_hash`](crate::outlet::is_wire_hash)) counts as absent, so that
    /// the hash we then compute, store and ping is always one a Kong control plane
    /// accepts.
    pub config_hash: Option<String>,
    /// `hashes` (Kong 2.8.1+), or `None` when absent or not an object. As Kong's data
    /// plane does, a part that is missing (or, here, not a valid hash) is filled with 32
    /// zeros; a missing `config` part with `config_hash` (or zeros).
    pub hashes: Option<Hashes>,
    /// `timestamp` (Kong 2.5+): the control plane's clock in seconds when it exported
    /// the config, or `None` when absent or not a number.
    pub timestamp: Option<f64>,
}

impl Reconfigure {
    /// The hash the data plane stores, compares with the applied one and pings: the
    /// control plane's `config_hash`, or Kong's hash of `config` when it sent none (Kong
    /// 2.3, 2.4). Computing it walks the whole config.
    ///
    /// A Kong 2.8 control plane's hash cannot be recomputed (2.8 hashes differently), but
    /// 2.8 always sends it.
    pub fn effective_hash(&self) -> String {
        match &self.config_hash {
            Some(h) => h.clone(),
            None => config_hashes(&self.config).config,
        }
    }

    /// The granular hashes as Kong's data plane ends up with them: computed from `config`
    /// when `config_hash` is absent, else `hashes` as sent (`None` when absent: then Kong
    /// rebuilds router, plugins and balancer on every reconfigure).
    pub fn effective_hashes(&self) -> Option<Hashes> {
        match &self.config_hash {
            None => Some(config_hashes(&self.config)),
            Some(_) => self.hashes.clone(),
        }
    }
}

/// Decodes a binary frame from the control plane on the data plane: inflates it (gzip or
/// zlib, detected; raw deflate and uncompressed JSON are refused) under `max_inflated`
/// bytes, then reads the JSON.
///
/// A JSON object whose `type` is not `reconfigure` gives [`Decoded::Ignored`]. Errors:
/// [`OutletError::Inflate`] when the frame is not gzip or zlib, is corrupt or inflates
/// past the cap; [`OutletError::Json`] and [`OutletError::NotAnObject`] for the JSON;
/// [`OutletError::Missing`] / [`OutletError::Invalid`] when `config_table` is absent or
/// not an object. On any error the data plane keeps its applied config.
pub fn decode_reconfigure(frame: &[u8], max_inflated: usize) -> Result<Decoded, OutletError> {
    let mut msg = config::decode(frame, max_inflated).map_err(|e| match e {
        ConfigError::Json(error) => OutletError::Json {
            message: Message::Reconfigure,
            error,
        },
        ConfigError::NotAnObject(got) => OutletError::NotAnObject {
            message: Message::Reconfigure,
            got,
        },
        other => OutletError::Inflate(other),
    })?;
    match msg.get("type") {
        Some(Value::String(t)) if t == "reconfigure" => {}
        Some(Value::String(t)) => {
            return Ok(Decoded::Ignored {
                type_name: Some(cut(t)),
            })
        }
        _ => return Ok(Decoded::Ignored { type_name: None }),
    }
    let config = match msg.remove("config_table") {
        Some(Value::Object(config)) => config,
        None | Some(Value::Null) => {
            return Err(OutletError::Missing {
                message: Message::Reconfigure,
                field: "config_table",
            })
        }
        Some(other) => {
            return Err(OutletError::Invalid {
                message: Message::Reconfigure,
                field: "config_table".into(),
                expected: "an object",
                got: kind_of(&other),
            })
        }
    };
    let config_hash = wire_hash(msg.get("config_hash")).map(str::to_owned);
    let hashes = match msg.get("hashes") {
        Some(Value::Object(h)) => {
            let part = |k: &str| wire_hash(h.get(k)).unwrap_or(EMPTY_HASH).to_owned();
            Some(Hashes {
                config: wire_hash(h.get("config"))
                    .or(config_hash.as_deref())
                    .unwrap_or(EMPTY_HASH)
                    .to_owned(),
                routes: part("routes"),
                services: part("services"),
                plugins: part("plugins"),
                upstreams: part("upstreams"),
                targets: part("targets"),
            })
        }
        _ => None,
    };
    let timestamp = msg.get("timestamp").and_then(Value::as_f64);
    Ok(Decoded::Reconfigure(Reconfigure {
        config,
        config_hash,
        hashes,
        timestamp,
    }))
}

fn wire_hash(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) if is_wire_hash(s) => Some(s),
        _ => None,
    }
}
