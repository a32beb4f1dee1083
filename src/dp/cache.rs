//! The data plane's files in its cache directory: the last applied config, written
//! atomically (temporary file, fsync, rename), and the node id.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::Hashes;

/// Name of the cached config inside the cache directory.
pub const CONFIG_FILE: &str = "config.json";
/// Name of the node id file inside the cache directory.
pub const NODE_ID_FILE: &str = "node_id";

/// A config as cached: what was applied, with its version and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedConfig {
    /// The version the CP gave it (versions count per connection; kept for information):
    /// `None` for a config from Kong's JSON protocol, which has none. The file leaves the
    /// field out then, and files without it (or with `null`) read as `None`.
    pub version: Option<u64>,
    /// The config hash (the CP's id for it).
    pub hash: String,
    /// The granular hashes as received.
    pub hashes: Hashes,
    /// The declarative config.
    pub config: Map<String, Value>,
}

/// Writes `cached` to `dir/config.json` so that a crash at any moment leaves either the
/// previous file or the new one, never a mix.
pub fn write_config(dir: &Path, cached: &CachedConfig) -> std::io::Result<()> {
    let hashes = &cached.hashes;
    let mut doc = serde_json::json!({
        "hash": cached.hash,
        "hashes": {
            "config": hashes.config, "routes": hashes.routes, "services": hashes.services,
            "plugins": hashes.plugins, "upstreams": hashes.upstreams, "targets": hashes.targets,
        },
        "config": cached.config,
    });
    if let (Some(v), Some(doc)) = (cached.version, doc.as_object_mut()) {
        doc.insert("version".into(), v.into());
    }
    let bytes = serde_json::to_vec(&doc).map_err(std::io::Error::other)?;
    write_atomically(dir, CONFIG_FILE, &bytes)
}

/// Reads `dir/config.json`. `Ok(None)` when there is none; an error says what is wrong
/// with a file that exists (the caller reports it and goes on without it).
pub fn read_config(dir: &Path) -> Result<Option<CachedConfig>, String> {
    let path = dir.join(CONFIG_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is corrupt ({e}); ignoring it", path.display()))?;
    let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_string);
    let hashes = doc.get("hashes").cloned().unwrap_or(Value::Null);
    let hash_field = |name: &str| {
        hashes
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let version = match doc.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            format!(
                "{} has a version that is not a whole number; ignoring it",
                path.display()
            )
        })?),
    };
    let (Some(hash), Some(Value::Object(config))) = (field("hash"), doc.get("config").cloned())
    else {
        return Err(format!(
            "{} lacks hash or config; ignoring it",
            path.display()
        ));
    };
    Ok(Some(CachedConfig {
        version,
        hash,
        hashes: Hashes {
            config: hash_field("config"),
            routes: hash_field("routes"),
            services: hash_field("services"),
            plugins: hash_field("plugins"),
            upstreams: hash_field("upstreams"),
            targets: hash_field("targets"),
        },
        config,
    }))
}

/// The node id kept in `dir/node_id`, made and saved on first use.
pub fn node_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join(NODE_ID_FILE);
    if let Ok(text) = fs::read_to_string(&path) {
        let id = text.trim();
        if crate::random::is_uuid(id) {
            return Ok(id.to_string());
        }
        log::warn!(
            "{} does not hold a UUID; making a new node id",
            path.display()
        );
    }
    let id = crate::random::uuid_v4();
    write_atomically(dir, NODE_ID_FILE, id.as_bytes())?;
    Ok(id)
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    // Make the rename itself durable.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("dpspec-cache-{name}-{}", crate::random::uuid_v4()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn config_round_trips() {
        let dir = tmpdir("rt");
        let mut config = Map::new();
        config.insert("_format_version".into(), "3.0".into());
        let cached = CachedConfig {
            version: Some(3),
            hash: "a".repeat(32),
            hashes: crate::config::config_hashes(&config),
            config,
        };
        write_config(&dir, &cached).unwrap();
        assert_eq!(read_config(&dir).unwrap(), Some(cached));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_config_without_a_version_round_trips_and_old_files_still_read() {
        let dir = tmpdir("nover");
        let cached = CachedConfig {
            version: None,
            hash: "b".repeat(32),
            hashes: crate::config::config_hashes(&Map::new()),
            config: Map::new(),
        };
        write_config(&dir, &cached).unwrap();
        let text = fs::read_to_string(dir.join(CONFIG_FILE)).unwrap();
        assert!(!text.contains("\"version\""), "{text}");
        assert_eq!(read_config(&dir).unwrap(), Some(cached));
        // A file written before versions became optional.
        let old = format!(
            r#"{{"version":7,"hash":"{}","config":{{}}}}"#,
            "c".repeat(32)
        );
        fs::write(dir.join(CONFIG_FILE), old).unwrap();
        assert_eq!(read_config(&dir).unwrap().unwrap().version, Some(7));
        fs::write(
            dir.join(CONFIG_FILE),
            r#"{"version":"x","hash":"h","config":{}}"#,
        )
        .unwrap();
        assert!(read_config(&dir).is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn half_a_file_is_reported_not_used() {
        let dir = tmpdir("half");
        let text = br#"{"version":1,"hash":"0123","config":{"services":[{"#;
        fs::write(dir.join(CONFIG_FILE), text).unwrap();
        let err = read_config(&dir).unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn node_id_is_made_once_and_kept() {
        let dir = tmpdir("id");
        let a = node_id(&dir).unwrap();
        assert_eq!(node_id(&dir).unwrap(), a);
        fs::remove_dir_all(dir).unwrap();
    }
}
