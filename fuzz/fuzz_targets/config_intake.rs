//! The DP's config intake: gzip or zlib inflate under a cap, JSON parsing, Kong's hash.
//!
//! Input: compressed bytes (or JSON, for the parse path); the same bytes go down every
//! path.
//!
//! Checks: no panic; inflate never returns more than the cap, and a smaller cap never
//! succeeds where a larger one fails other than by size; a parsed config, gzipped and
//! decoded again, gives the same object and the same hashes.
#![no_main]

use dpspec::config::{config_hashes, decode, gzip, hash_value, inflate, parse_object, ConfigError};
use libfuzzer_sys::fuzz_target;

const CAP: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    match inflate(data, CAP) {
        Ok(raw) => {
            assert!(raw.len() <= CAP);
            // With a cap exactly the size, it still fits; one byte less, it does not.
            assert_eq!(inflate(data, raw.len()).unwrap(), raw);
            if !raw.is_empty() {
                assert!(matches!(
                    inflate(data, raw.len() - 1),
                    Err(ConfigError::TooLarge { .. })
                ));
            }
            if let Ok(map) = parse_object(&raw) {
                let _ = config_hashes(&map);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    if let Ok(map) = parse_object(data) {
        let h = config_hashes(&map);
        for part in [
            &h.config,
            &h.routes,
            &h.services,
            &h.plugins,
            &h.upstreams,
            &h.targets,
        ] {
            assert_eq!(part.len(), 32);
            assert!(part
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        let back = decode(&gzip(data), data.len().max(1)).expect("gzip of a parsed config decodes");
        assert_eq!(back, map);
        assert_eq!(config_hashes(&back), h);
        let _ = hash_value(&serde_json::Value::Object(map));
    }
});
