//! `basic_info`, the data plane's first frame: the plugins it has loaded and its labels.
//!
//! Kong's data plane (2.3+) sends it binary and uncompressed:
//! `{"type":"basic_info","plugins":[{"name":"acl","version":"3.9.3"},..],"labels":{..}}`,
//! plugins sorted by lowercased name, `version` absent for a plugin without one, `labels`
//! (3.3+) only when `cluster_dp_labels` is set. Kong 3.4+ adds `process_conf` (its
//! configuration, secrets masked) and `filters` (wasm filters); an OSS control plane
//! ignores the first and checks the second only with wasm on. Key order is random.

use std::collections::BTreeMap;

#[cfg(feature = "dp")]
use serde_json::Map;
use serde_json::Value;

#[cfg(feature = "cp")]
use super::{cut, kind_of, Message, OutletError};
use crate::services::config::PluginVersion;

#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
/// What the control plane keeps from a `basic_info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BasicInfo {
    /// The data plane's plugins, in the order sent. A plugin sent without `version` has
    /// an empty `version`, which [`crate::services::gate::plugin_gate`] treats as "do not
    /// check the version", as Kong does.
    pub plugins: Vec<PluginVersion>,
    /// The data plane's labels (Kong 3.3+); empty when none were sent (an absent or
    /// `null` `labels`).
    pub labels: BTreeMap<String, String>,
}

#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
/// Encodes the data plane's `basic_info` as Kong's data plane does: `plugins` sorted by
/// lowercased name (ties keep their order), `version` left out for a plugin whose version
/// is empty, `labels` only when `labels` is given and not empty.
///
/// Send it as the first frame, binary, uncompressed, within 5 s of the 101.
pub fn encode_basic_info(
    plugins: &[PluginVersion],
    labels: Option<&BTreeMap<String, String>>,
) -> Vec<u8> {
    let mut sorted: Vec<&PluginVersion> = plugins.iter().collect();
    sorted.sort_by_cached_key(|p| p.name.to_lowercase());
    let plugins: Vec<Value> = sorted
        .into_iter()
        .map(|p| {
            let mut o = Map::new();
            o.insert("name".into(), Value::String(p.name.clone()));
            if !p.version.is_empty() {
                o.insert("version".into(), Value::String(p.version.clone()));
            }
            Value::Object(o)
        })
        .collect();
    let mut msg = Map::new();
    msg.insert("type".into(), Value::from("basic_info"));
    msg.insert("plugins".into(), Value::Array(plugins));
    if let Some(labels) = labels.filter(|l| !l.is_empty()) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        msg.insert("labels".into(), Value::Object(labels));
    }
    // Serializing a Value built from strings cannot fail.
    serde_json::to_vec(&Value::Object(msg)).unwrap_or_default()
}

#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
/// Parses a data plane's first frame on the control plane.
///
/// Requires, as Kong's control plane does, a JSON object with `type` `basic_info` and a
/// `plugins` array; further, that each plugin is an object with a string `name` and, if
/// present, a string `version` (Kong would fail on anything else later), and that
/// `labels`, if present and not `null`, maps strings to strings. Other fields
/// (`process_conf`, `filters`, ...) are ignored.
///
/// Errors: [`OutletError::Json`] (close 1007) for undecodable bytes;
/// [`OutletError::NotAnObject`], [`OutletError::WrongType`], [`OutletError::Missing`]
/// or [`OutletError::Invalid`] (close 1008) otherwise.
pub fn parse_basic_info(frame: &[u8]) -> Result<BasicInfo, OutletError> {
    let msg = match serde_json::from_slice(frame) {
        Ok(Value::Object(msg)) => msg,
        Ok(other) => {
            return Err(OutletError::NotAnObject {
                message: Message::BasicInfo,
                got: kind_of(&other),
            })
        }
        Err(e) => {
            return Err(OutletError::Json {
                message: Message::BasicInfo,
                error: e.to_string(),
            })
        }
    };
    match msg.get("type") {
        Some(Value::String(t)) if t == "basic_info" => {}
        Some(Value::String(t)) => return Err(OutletError::WrongType { got: Some(cut(t)) }),
        _ => return Err(OutletError::WrongType { got: None }),
    }
    let plugins = match msg.get("plugins") {
        None | Some(Value::Null) => {
            return Err(OutletError::Missing {
                message: Message::BasicInfo,
                field: "plugins",
            })
        }
        Some(Value::Array(a)) => a,
        Some(other) => return Err(invalid("plugins".into(), "an array", other)),
    };
    let plugins = plugins
        .iter()
        .enumerate()
        .map(|(i, p)| plugin(i, p))
        .collect::<Result<_, _>>()?;
    let labels = match msg.get("labels") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(l)) => l
            .iter()
            .map(|(k, v)| match v {
                Value::String(v) => Ok((k.clone(), v.clone())),
                other => Err(invalid(format!("labels.{}", cut(k)), "a string", other)),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(invalid("labels".into(), "an object", other)),
    };
    Ok(BasicInfo { plugins, labels })
}

#[cfg(feature = "cp")]
fn plugin(i: usize, p: &Value) -> Result<PluginVersion, OutletError> {
    let Value::Object(p) = p else {
        return Err(invalid(format!("plugins[{i}]"), "an object", p));
    };
    let name = match p.get("name") {
        Some(Value::String(n)) => n.clone(),
        Some(other) => return Err(invalid(format!("plugins[{i}].name"), "a string", other)),
        None => {
            return Err(OutletError::Invalid {
                message: Message::BasicInfo,
                field: format!("plugins[{i}].name"),
                expected: "a string",
                got: "nothing",
            })
        }
    };
    let version = match p.get("version") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(v)) => v.clone(),
        Some(other) => return Err(invalid(format!("plugins[{i}].version"), "a string", other)),
    };
    Ok(PluginVersion { name, version })
}

#[cfg(feature = "cp")]
fn invalid(field: String, expected: &'static str, got: &Value) -> OutletError {
    OutletError::Invalid {
        message: Message::BasicInfo,
        field,
        expected,
        got: kind_of(got),
    }
}

#[cfg(all(test, feature = "dp", feature = "cp"))]
mod tests {
    use super::*;

    fn pv(name: &str, version: &str) -> PluginVersion {
        PluginVersion {
            name: name.into(),
            version: version.into(),
        }
    }

    #[test]
    fn encoding_sorts_by_lowercased_name_and_omits_empty_versions() {
        let plugins = [pv("cors", "3.9.3"), pv("ACME", "3.9.3"), pv("acl", "")];
        let bytes = encode_basic_info(&plugins, None);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "basic_info", "plugins": [
                {"name": "acl"},
                {"name": "ACME", "version": "3.9.3"},
                {"name": "cors", "version": "3.9.3"},
            ]})
        );
        assert_eq!(parse_basic_info(&bytes).unwrap().plugins.len(), 3);
    }

    #[test]
    fn labels_are_sent_only_when_there_are_some() {
        let empty = BTreeMap::new();
        let none = encode_basic_info(&[], Some(&empty));
        assert!(!String::from_utf8_lossy(&none).contains("labels"));
        let labels = BTreeMap::from([("deployment".to_owned(), "eu-1".to_owned())]);
        let some = encode_basic_info(&[pv("acl", "1.0.0")], Some(&labels));
        let info = parse_basic_info(&some).unwrap();
        assert_eq!(info.labels, labels);
        assert_eq!(info.plugins, [pv("acl", "1.0.0")]);
    }

    #[test]
    fn kong_3_9_basic_info_with_extra_fields_parses() {
        let frame = br#"{"filters":{},"labels":{"region":"eu"},"type":"basic_info",
            "process_conf":{"pg_password":"******","role":"data_plane"},
            "plugins":[{"version":"3.9.3","name":"acl"},{"name":"my-plugin"}]}"#;
        let info = parse_basic_info(frame).unwrap();
        assert_eq!(info.plugins, [pv("acl", "3.9.3"), pv("my-plugin", "")]);
        assert_eq!(info.labels["region"], "eu");
    }

    #[test]
    fn kong_2_8_basic_info_without_labels_parses() {
        let frame = br#"{"type":"basic_info","plugins":[{"name":"acl","version":"2.8.1"}]}"#;
        let info = parse_basic_info(frame).unwrap();
        assert!(info.labels.is_empty());
        assert_eq!(info.plugins, [pv("acl", "2.8.1")]);
        let null_labels = br#"{"type":"basic_info","plugins":[],"labels":null}"#;
        assert!(parse_basic_info(null_labels).unwrap().labels.is_empty());
    }

    #[test]
    fn undecodable_basic_info_is_a_json_error_with_close_1007() {
        for frame in [&b"not json"[..], b"", b"{\"type\":", b"\xff\xfe"] {
            let e = parse_basic_info(frame).unwrap_err();
            assert!(matches!(e, OutletError::Json { .. }), "{e:?}");
            assert_eq!(e.close_code(), 1007);
        }
    }

    #[test]
    fn wrong_shapes_are_policy_violations() {
        let cases: [(&[u8], &str); 9] = [
            (b"[1]", "must be a JSON object, got an array"),
            (br#"{"plugins":[]}"#, "no string type"),
            (br#"{"type":"ping","plugins":[]}"#, "type \"ping\""),
            (br#"{"type":"basic_info"}"#, "has no plugins"),
            (br#"{"type":"basic_info","plugins":{}}"#, "plugins in the"),
            (
                br#"{"type":"basic_info","plugins":["acl"]}"#,
                "plugins[0] in",
            ),
            (
                br#"{"type":"basic_info","plugins":[{"version":"1"}]}"#,
                "plugins[0].name in the basic_info message must be a string, got nothing",
            ),
            (
                br#"{"type":"basic_info","plugins":[{"name":"a","version":1}]}"#,
                "plugins[0].version in the basic_info message must be a string, got a number",
            ),
            (
                br#"{"type":"basic_info","plugins":[],"labels":{"k":1}}"#,
                "labels.k",
            ),
        ];
        for (frame, text) in cases {
            let e = parse_basic_info(frame).unwrap_err();
            assert_eq!(e.close_code(), 1008, "{e:?}");
            assert!(e.to_string().contains(text), "{e} / {text}");
        }
    }

    #[test]
    fn a_long_type_is_cut_in_the_error() {
        let frame = format!(r#"{{"type":"{}","plugins":[]}}"#, "x".repeat(1000));
        let Err(OutletError::WrongType { got: Some(t) }) = parse_basic_info(frame.as_bytes())
        else {
            panic!("expected WrongType");
        };
        assert_eq!(t.len(), 64);
    }
}
