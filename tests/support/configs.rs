//! Declarative configs for tests.

use dpspec::config::EncodedConfig;
use serde_json::json;

/// The config hash the CP will give `v` (Kong's hash).
pub fn hash_of(v: &serde_json::Value) -> String {
    EncodedConfig::new(v).unwrap().hashes.config
}

/// A config of about `bytes` that gzip cannot shrink much (random text from `seed`).
pub fn big_config(bytes: usize, seed: u64) -> serde_json::Value {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed | 1;
    let text: String = (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect();
    json!({"_format_version": "3.0", "blob": text})
}
