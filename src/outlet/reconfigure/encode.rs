//! The control plane's side of `reconfigure`: the frame, encoded once per config.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::config::{self, config_hashes, ConfigError, Hashes};
use crate::outlet::kind_of;

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
    /// ([`max_frame_for`](crate::outlet::max_frame_for)). A control plane should refuse to send a frame above
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
