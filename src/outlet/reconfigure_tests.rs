//! Tests of `reconfigure`, on bytes, with fixtures shaped as the facts file describes
//! each Kong version's message.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use flate2::Compression;
use serde_json::{json, Map, Value};

use super::*;
use crate::config::{config_hashes, hash_value, inflate, ConfigError, EMPTY_HASH};
use crate::outlet::{Message, OutletError};

const MAX: usize = 1024 * 1024;
const HASH: &str = "8f1e3b8b0d1c4a9e2f6a7b5c3d2e1f00";

fn config() -> Value {
    json!({
        "_format_version": "3.0",
        "_transform": false,
        "services": [{"id": "s1", "host": "example.com", "port": 80, "path": null}],
        "routes": [{"id": "r1", "paths": ["/"], "service": "s1"}],
        "workspaces": [{"id": "w1", "name": "default"}],
    })
}

fn gz(json: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(json).unwrap();
    e.finish().unwrap()
}

fn decoded(frame: &[u8]) -> Reconfigure {
    match decode_reconfigure(frame, MAX) {
        Ok(Decoded::Reconfigure(r)) => r,
        other => panic!("expected a reconfigure, got {other:?}"),
    }
}

#[test]
fn encoded_reconfigure_is_gzipped_kong_shaped_json() {
    let enc = EncodedReconfigure::new(&config(), 1718000000.1234).unwrap();
    assert_eq!(&enc.gzipped[..2], &[0x1f, 0x8b]);
    assert_eq!(enc.gzipped_len(), enc.gzipped.len());
    let json = inflate(&enc.gzipped, MAX).unwrap();
    assert_eq!(json.len(), enc.json_len);
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(text.contains("\"timestamp\":1718000000.123,"), "{text}");
    let v: Value = serde_json::from_slice(&json).unwrap();
    let h = config_hashes(config().as_object().unwrap());
    assert_eq!(
        v,
        json!({
            "type": "reconfigure",
            "timestamp": 1718000000.123,
            "config_table": config(),
            "config_hash": h.config,
            "hashes": {"config": h.config, "routes": h.routes, "services": h.services,
                       "plugins": h.plugins, "upstreams": h.upstreams, "targets": h.targets},
        })
    );
    assert_eq!(enc.hashes, h);
}

#[test]
fn encoded_reconfigure_round_trips_through_the_dp() {
    let enc = EncodedReconfigure::new(&config(), 1.5).unwrap();
    let r = decoded(&enc.gzipped);
    assert_eq!(Value::Object(r.config.clone()), config());
    assert_eq!(r.config_hash.as_deref(), Some(enc.hashes.config.as_str()));
    assert_eq!(r.hashes.as_ref(), Some(&enc.hashes));
    assert_eq!(r.timestamp, Some(1.5));
    assert_eq!(r.effective_hash(), enc.hashes.config);
    assert_eq!(r.effective_hashes(), Some(enc.hashes));
}

#[test]
fn spliced_config_text_makes_the_same_valid_json() {
    let cfg = config();
    let h = config_hashes(cfg.as_object().unwrap());
    let text = format!("  \n{}\t", serde_json::to_string_pretty(&cfg).unwrap());
    let spliced = EncodedReconfigure::from_json(text.as_bytes(), h.clone(), 7.0).unwrap();
    let whole = EncodedReconfigure::new(&cfg, 7.0).unwrap();
    let a: Value = serde_json::from_slice(&inflate(&spliced.gzipped, MAX).unwrap()).unwrap();
    let b: Value = serde_json::from_slice(&inflate(&whole.gzipped, MAX).unwrap()).unwrap();
    assert_eq!(a, b);
    assert_eq!(spliced.hashes, h);
    // An empty config is an object too.
    let empty = EncodedReconfigure::from_json(b"{}", config_hashes(&Map::new()), 0.0).unwrap();
    let r = decoded(&empty.gzipped);
    assert!(r.config.is_empty());
}

#[test]
fn only_object_text_can_be_spliced() {
    let h = config_hashes(&Map::new());
    for (text, got) in [
        (&b"[1]"[..], "an array"),
        (b" ", "nothing"),
        (b"{", "something that is not JSON"),
        (b"12", "a number"),
    ] {
        let e = EncodedReconfigure::from_json(text, h.clone(), 0.0);
        assert_eq!(e, Err(ConfigError::NotAnObject(got)), "{text:?}");
    }
    assert_eq!(
        EncodedReconfigure::new(&json!([1]), 0.0),
        Err(ConfigError::NotAnObject("an array"))
    );
}

#[test]
fn a_timestamp_has_millisecond_resolution() {
    let t = UNIX_EPOCH + Duration::from_micros(1_718_000_000_123_456);
    assert_eq!(timestamp(t), 1718000000.123);
    assert_eq!(timestamp(UNIX_EPOCH - Duration::from_secs(1)), 0.0);
    let enc = EncodedReconfigure::new(&json!({}), f64::NAN).unwrap();
    assert_eq!(decoded(&enc.gzipped).timestamp, Some(0.0));
}

#[test]
fn kong_2_8_reconfigure_without_hashes_keeps_its_hash() {
    let msg = format!(
        r#"{{"timestamp":1650000000.123,"type":"reconfigure","config_hash":"{HASH}",
            "config_table":{{"_format_version":"2.1","_transform":false,
            "services":[{{"id":"s1","host":"example.com","port":80}}]}}}}"#
    );
    let r = decoded(&gz(msg.as_bytes()));
    assert_eq!(r.config_hash.as_deref(), Some(HASH));
    assert_eq!(r.hashes, None);
    assert_eq!(r.timestamp, Some(1650000000.123));
    assert_eq!(r.effective_hash(), HASH);
    assert_eq!(r.effective_hashes(), None);
    assert_eq!(r.config["_format_version"], "2.1");
}

#[test]
fn kong_2_4_reconfigure_without_config_hash_gets_kongs_hash() {
    let msg = br#"{"type":"reconfigure","config_table":{"_format_version":"2.1",
        "routes":[{"id":"r1","paths":["/"]}],"plugins":[{"name":"acl"}]}}"#;
    let r = decoded(&gz(msg));
    assert_eq!((r.config_hash.as_ref(), r.timestamp), (None, None));
    let expected = config_hashes(&r.config);
    assert_eq!(r.effective_hash(), expected.config);
    assert_eq!(r.effective_hashes(), Some(expected.clone()));
    assert_eq!(expected.routes, hash_value(&r.config["routes"]));
    assert_eq!(expected.services, EMPTY_HASH);
}

#[test]
fn a_config_hash_that_is_not_32_chars_counts_as_absent() {
    for bad in [
        json!("abc"),
        json!(HASH.to_owned() + "0"),
        json!(12),
        json!(null),
    ] {
        let msg = json!({"type": "reconfigure", "config_table": {}, "config_hash": bad});
        let r = decoded(&gz(msg.to_string().as_bytes()));
        assert_eq!(r.config_hash, None, "{bad}");
        assert_eq!(r.effective_hash(), config_hashes(&Map::new()).config);
    }
}

#[test]
fn partial_hashes_are_filled_with_zeros() {
    let msg = json!({"type": "reconfigure", "config_table": {}, "config_hash": HASH,
                     "hashes": {"routes": HASH, "services": 5, "plugins": "short"}});
    let h = decoded(&gz(msg.to_string().as_bytes())).hashes.unwrap();
    assert_eq!((h.config.as_str(), h.routes.as_str()), (HASH, HASH));
    for part in [&h.services, &h.plugins, &h.upstreams, &h.targets] {
        assert_eq!(part, EMPTY_HASH);
    }
    let msg = json!({"type": "reconfigure", "config_table": {}, "hashes": []});
    assert_eq!(decoded(&gz(msg.to_string().as_bytes())).hashes, None);
}

#[test]
fn zlib_is_accepted_like_gzip() {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(br#"{"type":"reconfigure","config_table":{"a":1}}"#)
        .unwrap();
    let r = decoded(&z.finish().unwrap());
    assert_eq!(r.config["a"], 1);
}

#[test]
fn raw_deflate_plain_json_and_garbage_are_not_compressed() {
    let json = br#"{"type":"reconfigure","config_table":{}}"#;
    let mut d = DeflateEncoder::new(Vec::new(), Compression::default());
    d.write_all(json).unwrap();
    for frame in [
        d.finish().unwrap(),
        json.to_vec(),
        b"\x00garbage".to_vec(),
        vec![],
    ] {
        let e = decode_reconfigure(&frame, MAX).unwrap_err();
        assert_eq!(
            e,
            OutletError::Inflate(ConfigError::NotCompressed),
            "{frame:?}"
        );
    }
    let truncated = gz(json);
    let e = decode_reconfigure(&truncated[..truncated.len() - 5], MAX).unwrap_err();
    assert!(
        matches!(e, OutletError::Inflate(ConfigError::Inflate(_))),
        "{e:?}"
    );
}

#[test]
fn a_gzip_bomb_stops_at_the_cap() {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(br#"{"type":"reconfigure","config_table":{"x":""#)
        .unwrap();
    let spaces = vec![b' '; 1024 * 1024];
    for _ in 0..8 {
        e.write_all(&spaces).unwrap();
    }
    e.write_all(b"\"}}").unwrap();
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let err = decode_reconfigure(&bomb, MAX).unwrap_err();
    assert_eq!(
        err,
        OutletError::Inflate(ConfigError::TooLarge { limit: MAX })
    );
    assert_eq!(err.close_code(), 1009);
    // The same frame fits under a larger cap.
    assert!(decode_reconfigure(&bomb, 16 * MAX).is_ok());
}

#[test]
fn gzipped_garbage_and_non_objects_are_refused() {
    let e = decode_reconfigure(&gz(b"not json"), MAX).unwrap_err();
    assert!(
        matches!(
            e,
            OutletError::Json {
                message: Message::Reconfigure,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.close_code(), 1007);
    let e = decode_reconfigure(&gz(b"[1,2]"), MAX).unwrap_err();
    assert_eq!(
        e,
        OutletError::NotAnObject {
            message: Message::Reconfigure,
            got: "an array"
        }
    );
}

#[test]
fn a_reconfigure_without_config_table_is_refused() {
    let e = decode_reconfigure(&gz(br#"{"type":"reconfigure","config_hash":"x"}"#), MAX);
    let e = e.unwrap_err();
    assert_eq!(
        e,
        OutletError::Missing {
            message: Message::Reconfigure,
            field: "config_table"
        }
    );
    assert!(e.to_string().contains("applied config stays"), "{e}");
    let e = decode_reconfigure(&gz(br#"{"type":"reconfigure","config_table":[]}"#), MAX);
    assert!(
        matches!(
            e,
            Err(OutletError::Invalid {
                got: "an array",
                ..
            })
        ),
        "{e:?}"
    );
}

#[test]
fn other_types_are_ignored() {
    let frame = gz(br#"{"type":"error","error":{"name":"x"}}"#);
    assert_eq!(
        decode_reconfigure(&frame, MAX).unwrap(),
        Decoded::Ignored {
            type_name: Some("error".into())
        }
    );
    for msg in [
        &br#"{"config_table":{}}"#[..],
        br#"{"type":7,"config_table":{}}"#,
    ] {
        assert_eq!(
            decode_reconfigure(&gz(msg), MAX).unwrap(),
            Decoded::Ignored { type_name: None }
        );
    }
}
