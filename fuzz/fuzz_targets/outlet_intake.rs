//! `/v1/outlet` intake on both sides: the DP's `decode_reconfigure` (the frame as sent,
//! and the same bytes gzipped so the JSON checks are reached), the CP's
//! `parse_basic_info` and `check_ping`.
//!
//! Input: any bytes; the same bytes go down every path.
//!
//! Checks: no panic; every error has a close code of 1007, 1008 or 1009; an accepted ping
//! is a wire hash that `ping_payload` sends unchanged; a decoded reconfigure's effective
//! hash is a wire hash, and its config encoded again decodes to the same config; a parsed
//! basic_info encoded again parses to the same plugins (sorted) and labels.
#![no_main]

use dpspec::config::gzip;
use dpspec::outlet::{
    check_ping, decode_reconfigure, encode_basic_info, is_wire_hash, parse_basic_info,
    ping_payload, Decoded, EncodedReconfigure, OutletError,
};
use libfuzzer_sys::fuzz_target;

const CAP: usize = 256 * 1024;

fn code_ok(e: &OutletError) {
    assert!(matches!(e.close_code(), 1007..=1009), "{e:?}");
    let _ = e.to_string();
}

fn reconfigure(frame: &[u8]) {
    match decode_reconfigure(frame, CAP) {
        Ok(Decoded::Reconfigure(r)) => {
            let hash = r.effective_hash();
            assert!(is_wire_hash(&hash), "{hash:?}");
            assert_eq!(&ping_payload(Some(&hash)), hash.as_bytes());
            let _ = r.effective_hashes();
            let config = serde_json::Value::Object(r.config.clone());
            let enc = EncodedReconfigure::new(&config, r.timestamp.unwrap_or(0.0))
                .expect("a decoded config encodes");
            // Floats need not survive print-and-parse bit for bit, so compare with the
            // config's own text parsed again, which the frame carries verbatim.
            let text = serde_json::to_vec(&config).expect("a config serializes");
            let expected: serde_json::Value = serde_json::from_slice(&text).expect("reparses");
            match decode_reconfigure(&enc.gzipped, enc.json_len) {
                Ok(Decoded::Reconfigure(back)) => {
                    assert_eq!(serde_json::Value::Object(back.config), expected);
                    assert_eq!(
                        back.config_hash.as_deref(),
                        Some(enc.hashes.config.as_str())
                    );
                }
                other => panic!("re-encoded reconfigure decoded as {other:?}"),
            }
        }
        Ok(Decoded::Ignored { type_name }) => {
            assert!(type_name.map_or(0, |t| t.len()) <= 64);
        }
        Err(e) => code_ok(&e),
    }
}

fuzz_target!(|data: &[u8]| {
    reconfigure(data);
    reconfigure(&gzip(data));

    match parse_basic_info(data) {
        Ok(info) => {
            let again = parse_basic_info(&encode_basic_info(&info.plugins, Some(&info.labels)))
                .expect("an encoded basic_info parses");
            let mut sorted = info.plugins.clone();
            sorted.sort_by_cached_key(|p| p.name.to_lowercase());
            assert_eq!(again.plugins, sorted);
            assert_eq!(again.labels, info.labels);
        }
        Err(e) => code_ok(&e),
    }

    match check_ping(data) {
        Ok(hash) => {
            assert!(is_wire_hash(&hash));
            assert!(data.is_empty() || data == hash.as_bytes());
            assert_eq!(&ping_payload(Some(&hash)), hash.as_bytes());
        }
        Err(e) => code_ok(&e),
    }
});
