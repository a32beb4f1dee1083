//! The config as a data plane receives it: inflated under a size cap and parsed as a JSON
//! object. (The control plane's side, gzip, is [`encode`](super::encode).)

use std::io::Read;

use flate2::read::{GzDecoder, ZlibDecoder};
use serde_json::{Map, Value};

use super::{kind_of, ConfigError};

/// Default cap on an inflated config: 64 MiB. A compressed config that inflates to more
/// fails with [`ConfigError::TooLarge`] after costing at most this much memory.
pub const DEFAULT_MAX_INFLATED: usize = 64 * 1024 * 1024;

/// Inflates a compressed config, detecting gzip (starts with `1f 8b`) or zlib (a valid
/// zlib header, usually `78 ..`), as Kong's data plane accepts both.
///
/// Stops with [`ConfigError::TooLarge`] as soon as the output would pass `max` bytes;
/// the output buffer never grows beyond `max`, so a gzip bomb costs at most that.
pub fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, ConfigError> {
    if data.starts_with(&[0x1f, 0x8b]) {
        read_capped(GzDecoder::new(data), max)
    } else if is_zlib_header(data) {
        read_capped(ZlibDecoder::new(data), max)
    } else {
        Err(ConfigError::NotCompressed)
    }
}

/// A zlib stream starts with CMF (method 8 = deflate, window up to 32 KiB) and FLG, with
/// `CMF * 256 + FLG` a multiple of 31 and no preset dictionary.
fn is_zlib_header(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0
                && flg & 0x20 == 0
        }
        _ => false,
    }
}

fn read_capped(mut reader: impl Read, max: usize) -> Result<Vec<u8>, ConfigError> {
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ConfigError::Inflate(e.to_string())),
        };
        if n > max - out.len() {
            return Err(ConfigError::TooLarge { limit: max });
        }
        if out.capacity() - out.len() < n {
            // Grow geometrically, but never past the cap.
            let target = (out.capacity() * 2).max(out.len() + n).min(max);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Parses a config's JSON, which must be an object.
///
/// Errors: [`ConfigError::Json`] with the parser's message for invalid JSON,
/// [`ConfigError::NotAnObject`] naming what it was otherwise.
pub fn parse_object(json: &[u8]) -> Result<Map<String, Value>, ConfigError> {
    match serde_json::from_slice(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ConfigError::NotAnObject(kind_of(&other))),
        Err(e) => Err(ConfigError::Json(e.to_string())),
    }
}

/// Inflates (under `max`) and parses a config received in SyncConfig.
pub fn decode(data: &[u8], max: usize) -> Result<Map<String, Value>, ConfigError> {
    parse_object(&inflate(data, max)?)
}

#[cfg(all(test, feature = "cp"))]
mod tests {
    use super::*;
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use crate::config::{config_hashes, gzip, EncodedConfig};
    use flate2::write::ZlibEncoder;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "_format_version": "3.0",
            "_transform": false,
            "routes": [{"id": "r1", "paths": ["/"], "service": "s1"}],
            "services": [{"id": "s1", "host": "example.com", "port": 80}],
        })
    }

    #[test]
    fn encoded_config_round_trips() {
        let cfg = config();
        let enc = EncodedConfig::new(&cfg).unwrap();
        assert_eq!(&enc.gzipped[..2], &[0x1f, 0x8b]);
        let json = inflate(&enc.gzipped, DEFAULT_MAX_INFLATED).unwrap();
        assert_eq!(json.len(), enc.json_len);
        assert_eq!(json, serde_json::to_vec(&cfg).unwrap());
        let map = decode(&enc.gzipped, DEFAULT_MAX_INFLATED).unwrap();
        assert_eq!(Value::Object(map.clone()), cfg);
        assert_eq!(enc.hashes, config_hashes(&map));
    }

    #[test]
    fn zlib_is_accepted() {
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(b"{\"a\":1}").unwrap();
        let data = z.finish().unwrap();
        assert_eq!(data[0], 0x78);
        assert_eq!(inflate(&data, 100).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn gzip_bomb_stops_at_the_cap() {
        // 16 MiB of zeros compress to about 16 KiB; the cap is 256 KiB.
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..16 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let max = 256 * 1024;
        assert_eq!(
            inflate(&bomb, max),
            Err(ConfigError::TooLarge { limit: max })
        );
    }

    #[test]
    fn output_exactly_at_the_cap_is_accepted() {
        let data = gzip(&[b'x'; 1000]);
        assert_eq!(inflate(&data, 1000).unwrap().len(), 1000);
        assert_eq!(
            inflate(&data, 999),
            Err(ConfigError::TooLarge { limit: 999 })
        );
    }

    #[test]
    fn capacity_never_exceeds_the_cap() {
        let data = gzip(&[b'y'; 300_000]);
        let out = inflate(&data, 300_000).unwrap();
        assert!(out.capacity() <= 300_000, "{}", out.capacity());
    }

    #[test]
    fn garbage_is_not_compressed() {
        assert_eq!(inflate(b"{\"a\":1}", 100), Err(ConfigError::NotCompressed));
        assert_eq!(inflate(b"", 100), Err(ConfigError::NotCompressed));
        assert_eq!(inflate(&[0x78, 0x00], 100), Err(ConfigError::NotCompressed));
    }

    #[test]
    fn truncated_gzip_is_an_inflate_error() {
        let data = gzip(b"{\"a\":1}");
        assert!(matches!(
            inflate(&data[..data.len() - 4], 100),
            Err(ConfigError::Inflate(_))
        ));
    }

    #[test]
    fn non_object_json_is_refused() {
        assert_eq!(
            parse_object(b"[1]"),
            Err(ConfigError::NotAnObject("an array"))
        );
        assert_eq!(parse_object(b"null"), Err(ConfigError::NotAnObject("null")));
        assert_eq!(
            EncodedConfig::new(&json!("x")),
            Err(ConfigError::NotAnObject("a string"))
        );
        assert_eq!(
            ConfigError::NotAnObject("an array").to_string(),
            "the config must be a JSON object, got an array"
        );
    }

    #[test]
    fn invalid_json_carries_the_parser_message() {
        let Err(ConfigError::Json(msg)) = parse_object(b"{\"a\":") else {
            panic!("expected a JSON error");
        };
        assert!(msg.contains("EOF"), "{msg}");
    }
}
