//! Kong's config hash, computed exactly as Kong computes it, so that Kong data planes and
//! control planes agree with us on whether a config changed.
//!
//! A value is first serialized into one byte buffer, then hashed with MD5 (32 lowercase
//! hex chars):
//!
//! - `null` is written `/null/`, booleans `true` / `false`, strings as their raw bytes;
//! - numbers as C's `printf("%.14g")` of the value as a double (Lua has only doubles, so
//!   integers are converted first);
//! - an empty array or object is written `{}` (Lua cannot tell them apart);
//! - an array of 1 to 5 items: the items joined by `;`; of 6 or more: each item followed
//!   by `;`;
//! - an object: for each key in bytewise order, `key:` then the value then `;`.
//!
//! Before each value is written, a buffer already longer than 1,000,000 bytes is replaced
//! by the raw 16-byte MD5 of its contents, which bounds memory for huge configs (and so
//! changes the result: it is part of the function).

use md5::{Digest, Md5};
use serde_json::{Map, Value};

/// The hash Kong uses for "no config" and for absent parts: 32 zeros.
pub const EMPTY_HASH: &str = "00000000000000000000000000000000";

/// The five config parts Kong hashes separately, in the order their hashes are combined.
const PARTS: [&str; 5] = ["routes", "services", "plugins", "upstreams", "targets"];

/// Buffer size above which Kong replaces the buffer by its MD5.
const BUFFER_LIMIT: usize = 1_000_000;

/// The hashes of a config, as SyncConfig carries them: 32 lowercase hex chars each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Hashes {
    /// The whole config: MD5 of the five part hashes and the hash of the rest.
    pub config: String,
    /// `routes`, or [`EMPTY_HASH`] when absent.
    pub routes: String,
    /// `services`, or [`EMPTY_HASH`] when absent.
    pub services: String,
    /// `plugins`, or [`EMPTY_HASH`] when absent.
    pub plugins: String,
    /// `upstreams`, or [`EMPTY_HASH`] when absent.
    pub upstreams: String,
    /// `targets`, or [`EMPTY_HASH`] when absent.
    pub targets: String,
}

impl Hashes {
    internal_fn! {
        /// The same hashes as the SyncConfig message field.
        fn to_granular(&self) -> crate::services::config::GranularHashes {
            crate::services::config::GranularHashes {
                config: self.config.clone(),
                routes: self.routes.clone(),
                services: self.services.clone(),
                plugins: self.plugins.clone(),
                upstreams: self.upstreams.clone(),
                targets: self.targets.clone(),
            }
        }
    }
}

/// Kong's hash of one JSON value: 32 lowercase hex chars.
pub fn hash_value(v: &Value) -> String {
    let mut w = Writer::default();
    w.value(v);
    md5_hex(&w.buf)
}

/// Kong's hashes of a declarative config: one per part (`routes`, `services`, `plugins`,
/// `upstreams`, `targets`; [`EMPTY_HASH`] when the key is absent), and `config`, the MD5
/// of the five part hashes (in that order) followed by the hash of the object made of all
/// other keys.
pub fn config_hashes(config: &Map<String, Value>) -> Hashes {
    let part = |name: &str| {
        config
            .get(name)
            .map_or_else(|| EMPTY_HASH.into(), hash_value)
    };
    let [routes, services, plugins, upstreams, targets] = PARTS.map(part);

    let mut w = Writer::default();
    w.object(config.iter().filter(|(k, _)| !PARTS.contains(&k.as_str())));
    let rest = md5_hex(&w.buf);

    let mut all = String::with_capacity(32 * 6);
    for h in [&routes, &services, &plugins, &upstreams, &targets, &rest] {
        all.push_str(h);
    }
    Hashes {
        config: md5_hex(all.as_bytes()),
        routes,
        services,
        plugins,
        upstreams,
        targets,
    }
}

fn md5_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(data);
    let mut s = String::with_capacity(32);
    for b in digest {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn value(&mut self, v: &Value) {
        if self.buf.len() > BUFFER_LIMIT {
            let digest = Md5::digest(&self.buf);
            self.buf.clear();
            self.buf.extend_from_slice(&digest);
        }
        match v {
            Value::Null => self.buf.extend_from_slice(b"/null/"),
            Value::Bool(true) => self.buf.extend_from_slice(b"true"),
            Value::Bool(false) => self.buf.extend_from_slice(b"false"),
            Value::String(s) => self.buf.extend_from_slice(s.as_bytes()),
            Value::Number(n) => {
                // Lua numbers are doubles: integers become the nearest double first.
                let x = n
                    .as_f64()
                    .or_else(|| n.as_i64().map(|i| i as f64))
                    .or_else(|| n.as_u64().map(|u| u as f64))
                    .unwrap_or(0.0);
                format_g14(x, &mut self.buf);
            }
            Value::Array(a) if a.is_empty() => self.buf.extend_from_slice(b"{}"),
            Value::Array(a) if a.len() <= 5 => {
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b';');
                    }
                    self.value(item);
                }
            }
            Value::Array(a) => {
                for item in a {
                    self.value(item);
                    self.buf.push(b';');
                }
            }
            Value::Object(m) => self.object(m.iter()),
        }
    }

    /// Writes an object given as its entries (so a filtered view needs no copy).
    fn object<'a>(&mut self, entries: impl Iterator<Item = (&'a String, &'a Value)>) {
        let mut entries: Vec<_> = entries.collect();
        if entries.is_empty() {
            self.buf.extend_from_slice(b"{}");
            return;
        }
        // Lua sorts with strcmp: bytewise, which is how `str` orders.
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (k, v) in entries {
            self.buf.extend_from_slice(k.as_bytes());
            self.buf.push(b':');
            self.value(v);
            self.buf.push(b';');
        }
    }
}

/// Appends `x` formatted as C's `printf("%.14g", x)` does (as LuaJIT writes numbers).
///
/// 14 significant digits, correctly rounded (ties to even on the exact binary value, as
/// glibc does); fixed notation when the decimal exponent is in -4..14, else `d.ddde+XX`
/// with at least two exponent digits; trailing zeros and a trailing point removed.
fn format_g14(x: f64, out: &mut Vec<u8>) {
    const P: i32 = 14;
    if x.is_nan() {
        out.extend_from_slice(if x.is_sign_negative() {
            b"-nan"
        } else {
            b"nan"
        });
        return;
    }
    if x.is_infinite() {
        out.extend_from_slice(if x < 0.0 { b"-inf" } else { b"inf" });
        return;
    }
    if x == 0.0 {
        out.extend_from_slice(if x.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    // Rust prints the exact decimal value rounded to the requested digits, ties to even.
    let sci = format!("{:.*e}", (P - 1) as usize, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..P).contains(&exp) {
        let fixed = format!("{:.*}", (P - 1 - exp) as usize, x);
        out.extend_from_slice(strip_fraction_zeros(&fixed).as_bytes());
    } else {
        out.extend_from_slice(strip_fraction_zeros(mantissa).as_bytes());
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let digits = exp.unsigned_abs().to_string();
        if digits.len() < 2 {
            out.push(b'0');
        }
        out.extend_from_slice(digits.as_bytes());
    }
}

fn strip_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn g(x: f64) -> String {
        let mut out = Vec::new();
        format_g14(x, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn kong_vectors_for_scalars() {
        assert_eq!(hash_value(&json!(null)), "5bf07a8b7343015026657d1108d8206e");
        assert_eq!(hash_value(&json!(10)), "d3d9446802a44259755d38e6d163e820");
        assert_eq!(hash_value(&json!(0.9)), "a894124cc6d5c5c71afe060d5dde0762");
        assert_eq!(hash_value(&json!(true)), "b326b5062b2f0e69046810717534cb09");
    }

    #[test]
    fn kong_vector_for_empty_config() {
        let h = config_hashes(&Map::new());
        assert_eq!(h.config, "2da3c26e4dbd6dd6ea3ab60a3dd7fb3e");
        for part in [&h.routes, &h.services, &h.plugins, &h.upstreams, &h.targets] {
            assert_eq!(part, EMPTY_HASH);
        }
    }

    #[test]
    fn kong_vector_for_routes_services_plugins() {
        let v = json!({"routes": {}, "services": {}, "plugins": {}});
        let h = config_hashes(v.as_object().unwrap());
        assert_eq!(
            h,
            Hashes {
                config: "81aac97a81ad03c0cf0b36663806488e".into(),
                routes: "99914b932bd37a50b983c5e7c90ae93b".into(),
                services: "99914b932bd37a50b983c5e7c90ae93b".into(),
                plugins: "99914b932bd37a50b983c5e7c90ae93b".into(),
                upstreams: EMPTY_HASH.into(),
                targets: EMPTY_HASH.into(),
            }
        );
        let g = h.to_granular();
        assert_eq!((g.config, g.targets), (h.config, h.targets));
    }

    #[test]
    fn kong_vector_for_upstreams_targets() {
        let v = json!({"upstreams": {}, "targets": {}});
        let h = config_hashes(v.as_object().unwrap());
        assert_eq!(h.config, "4d60dd9998ea4314039da5ca2f1db96f");
        assert_eq!(h.upstreams, "99914b932bd37a50b983c5e7c90ae93b");
        assert_eq!(h.routes, EMPTY_HASH);
    }

    fn serialized(v: &Value) -> String {
        let mut w = Writer::default();
        w.value(v);
        String::from_utf8(w.buf).unwrap()
    }

    #[test]
    fn serialization_follows_kong_rules() {
        assert_eq!(serialized(&json!([])), "{}");
        assert_eq!(serialized(&json!({})), "{}");
        assert_eq!(serialized(&json!([1])), "1");
        assert_eq!(
            serialized(&json!([1, "a", null, true, 2.5])),
            "1;a;/null/;true;2.5"
        );
        assert_eq!(serialized(&json!([1, 2, 3, 4, 5, 6])), "1;2;3;4;5;6;");
        assert_eq!(
            serialized(&json!({"b": [1, 2], "a": {"y": false, "x": []}, "B": "s"})),
            "B:s;a:x:{};y:false;;b:1;2;"
        );
    }

    #[test]
    fn rest_excludes_the_five_parts() {
        let v = json!({"routes": [1], "_format_version": "3.0", "consumers": []});
        let h = config_hashes(v.as_object().unwrap());
        let rest = hash_value(&json!({"_format_version": "3.0", "consumers": []}));
        let all = format!(
            "{}{}{}{}{}",
            hash_value(&json!(1)),
            EMPTY_HASH,
            EMPTY_HASH,
            EMPTY_HASH,
            EMPTY_HASH
        );
        assert_eq!(h.config, md5_hex(format!("{all}{rest}").as_bytes()));
        // A present null part is hashed, not treated as absent.
        let v = json!({"routes": null});
        assert_eq!(
            config_hashes(v.as_object().unwrap()).routes,
            "5bf07a8b7343015026657d1108d8206e"
        );
    }

    #[test]
    fn hash_does_not_depend_on_key_order() {
        let a: Value = serde_json::from_str(r#"{"z":1,"a":{"q":[1,2],"b":null},"m":"x"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"m":"x","a":{"b":null,"q":[1,2]},"z":1}"#).unwrap();
        assert_eq!(hash_value(&a), hash_value(&b));
        assert_eq!(hash_value(&a), md5_hex(b"a:b:/null/;q:1;2;;m:x;z:1;"));
    }

    #[test]
    fn big_buffer_is_replaced_by_its_md5() {
        // Twelve strings of 100,000 bytes: before item 10 the buffer holds
        // 10 * 100,001 = 1,000,010 bytes, so it becomes the raw MD5 of those.
        let items: Vec<Value> = (0..12u8)
            .map(|i| Value::String(String::from((b'a' + i) as char).repeat(100_000)))
            .collect();
        let v = Value::Array(items);
        // Computed independently (Python's hashlib).
        assert_eq!(hash_value(&v), "26cbd33207c5989f2785e07758bd8da1");
        // Restated here from the rule.
        let mut first = Vec::new();
        for i in 0..10u8 {
            first.extend(std::iter::repeat_n(b'a' + i, 100_000));
            first.push(b';');
        }
        let mut buf = Md5::digest(&first).to_vec();
        for i in 10..12u8 {
            buf.extend(std::iter::repeat_n(b'a' + i, 100_000));
            buf.push(b';');
        }
        assert_eq!(hash_value(&v), md5_hex(&buf));
    }

    #[test]
    fn numbers_format_as_c_g14() {
        let cases: &[(f64, &str)] = &[
            (10.0, "10"),
            (0.9, "0.9"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333333333333"),
            (2.0 / 3.0, "0.66666666666667"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000123456789012345, "0.00012345678901234"),
            (1e20, "1e+20"),
            (1e100, "1e+100"),
            (1e-300, "1e-300"),
            (5e-324, "4.9406564584125e-324"),
            (1.7976931348623157e308, "1.7976931348623e+308"),
            (99999999999999.0, "99999999999999"),
            (99999999999999.9, "1e+14"),
            (100000000000000.0, "1e+14"),
            (123456789012345.0, "1.2345678901234e+14"),
            (123456789012355.0, "1.2345678901236e+14"),
            (12345678901234.5, "12345678901234"),
            (12345678901235.5, "12345678901236"),
            (1.23456789012349, "1.2345678901235"),
            (1234.5, "1234.5"),
            (-1e-5, "-1e-05"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (x, want) in cases {
            assert_eq!(g(*x), *want, "{x:e}");
        }
    }

    #[test]
    fn integers_convert_to_double_first() {
        assert_eq!(serialized(&json!(i64::MAX)), "9.2233720368548e+18");
        assert_eq!(serialized(&json!(u64::MAX)), "1.844674407371e+19");
        assert_eq!(serialized(&json!(-42)), "-42");
        assert_eq!(
            serialized(&json!(123456789012345_u64)),
            "1.2345678901234e+14"
        );
    }
}
