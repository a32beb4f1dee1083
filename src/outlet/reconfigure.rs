//! `reconfigure`, the control plane's config push: encoded once per config on the control
//! plane ([`EncodedReconfigure`]), inflated and checked on the data plane
//! ([`decode_reconfigure`]).
//!
//! Kong's control plane sends one binary frame, the gzip (level 6) of
//! `{"type":"reconfigure","timestamp":<float seconds>,"config_table":{..},
//! "config_hash":"<32 hex>","hashes":{"config","routes","services","plugins","upstreams",
//! "targets"}}`. Kong 2.3 and 2.4 send only `type` and `config_table`; `timestamp` and
//! `config_hash` come with 2.5, `hashes` with 2.8.1. Kong's data plane inflates gzip or
//! zlib, ignores any other `type`, and computes the hashes itself when `config_hash` is
//! absent.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::ping::is_wire_hash;
use super::{cut, kind_of, Message, OutletError};
use crate::config::{self, config_hashes, ConfigError, Hashes, EMPTY_HASH};

/// A `reconfigure` encoded once for all JSON data planes: the control plane sends the
/// same gzipped frame to each (cloning is cheap: the bytes are shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedReconfigure {
    /// The frame: gzip (Kong's level 6) of the `reconfigure` JSON.
    pub gzipped: Arc<[u8]>,
    /// Kong's hashes of the config, sent as `config_hash` (`hashes.config`) and `hashes`.
    pub hashes: Hashes,
    /// Length of the `reconfigure` JSON before compression, in bytes.
    pub json_len: usize,
}

impl EncodedReconfigure {
    /// Serializes `config` (which must be an object) once, hashes it and builds the frame.
    ///
    /// `timestamp` is Kong's `ngx.now()`: seconds since the epoch with millisecond
    /// resolution (see [`timestamp`]); it is rounded to the millisecond, and a value that
    /// is not finite is sent as 0.
    pub fn new(config: &Value, timestamp: f64) -> Result<EncodedReconfigure, ConfigError> {
        let Value::Object(map) = config else {
            return Err(ConfigError::NotAnObject(kind_of(config)));
        };
        let hashes = config_hashes(map);
        let mut json = head(&hashes, timestamp);
        serde_json::to_writer(&mut json, config).map_err(|e| ConfigError::Json(e.to_string()))?;
        json.push(b'}');
        Ok(EncodedReconfigure::finish(&json, hashes))
    }

    /// Builds the frame around a config that is already serialized, so that a control
    /// plane serving wRPC and JSON data planes serializes each config once.
    ///
    /// `config_json` must be the JSON text of an object (e.g. `serde_json::to_vec` of the
    /// config), and `hashes` Kong's hashes of that object ([`config_hashes`]); the text is
    /// spliced into the message as it is. Only its outline is checked (first and last
    /// non-blank bytes `{` and `}`), not its full syntax: it comes from this control plane,
    /// not from a peer. `timestamp` as for [`EncodedReconfigure::new`].
    pub fn from_json(
        config_json: &[u8],
        hashes: Hashes,
        timestamp: f64,
    ) -> Result<EncodedReconfigure, ConfigError> {
        let text = config_json.trim_ascii();
        if !(text.starts_with(b"{") && text.ends_with(b"}")) {
            return Err(ConfigError::NotAnObject(outline_kind(text)));
        }
        let mut json = head(&hashes, timestamp);
        json.reserve_exact(text.len() + 1);
        json.extend_from_slice(text);
        json.push(b'}');
        Ok(EncodedReconfigure::finish(&json, hashes))
    }

    fn finish(json: &[u8], hashes: Hashes) -> EncodedReconfigure {
        EncodedReconfigure {
            gzipped: config::gzip(json).into(),
            hashes,
            json_len: json.len(),
        }
    }

    /// Length of the frame in bytes: what a data plane's maximum frame size bounds
    /// ([`super::max_frame_for`]). A control plane should refuse to send a frame above
    /// the data plane's limit rather than let the data plane drop the connection.
    pub fn gzipped_len(&self) -> usize {
        self.gzipped.len()
    }
}

/// `t` as a `reconfigure` timestamp: seconds since the Unix epoch with millisecond
/// resolution, like Kong's `ngx.now()`. A time before the epoch gives 0.
pub fn timestamp(t: SystemTime) -> f64 {
    let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    ms as f64 / 1000.0
}

/// The message up to the `config_table` value: `{"type":..,"timestamp":..,
/// "config_hash":..,"hashes":{..},"config_table":`. Serialized by serde_json (so the hash
/// strings are escaped whatever they hold), then opened again at its closing brace.
fn head(hashes: &Hashes, timestamp: f64) -> Vec<u8> {
    let ts = if timestamp.is_finite() {
        (timestamp * 1000.0).round() / 1000.0
    } else {
        0.0
    };
    let mut granular = Map::new();
    for (k, v) in [
        ("config", &hashes.config),
        ("routes", &hashes.routes),
        ("services", &hashes.services),
        ("plugins", &hashes.plugins),
        ("upstreams", &hashes.upstreams),
        ("targets", &hashes.targets),
    ] {
        granular.insert(k.into(), Value::String(v.clone()));
    }
    let mut head = Map::new();
    head.insert("type".into(), Value::from("reconfigure"));
    head.insert("timestamp".into(), Value::from(ts));
    head.insert("config_hash".into(), Value::String(hashes.config.clone()));
    head.insert("hashes".into(), Value::Object(granular));
    // Serializing a Value made of strings and a finite number cannot fail.
    let mut json = serde_json::to_vec(&Value::Object(head)).unwrap_or_default();
    json.pop(); // the closing brace
    json.extend_from_slice(b",\"config_table\":");
    json
}

/// What a text that is not an object's outline looks like, for the error.
fn outline_kind(text: &[u8]) -> &'static str {
    match text.first() {
        None => "nothing",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(_) => "something that is not JSON",
    }
}

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
    /// 32-character printable string ([`super::is_wire_hash`]) counts as absent, so that
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

#[cfg(test)]
#[path = "reconfigure_tests.rs"]
mod tests;
