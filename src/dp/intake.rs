//! Config intake on the data plane, shared by the protocols: a wRPC SyncConfig (order by
//! version) or a JSON `reconfigure` frame; inflate under a cap, parse, skip what is
//! already applied, run the handler, cache what it accepted. One config at a time for
//! the whole data plane.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::cache::{self, CachedConfig};
use super::handler::{config_error, ConfigErrorType, ConfigHandler, ConfigUpdate, SyncConfigError};
use crate::channel::lock;
use crate::config::{self, Hashes};
use crate::outlet::{self, Decoded};
use crate::services::config::{GranularHashes, SyncConfigRequest, SyncConfigResponse};

/// The config in force.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Applied {
    /// `None` on Kong's JSON protocol, which has no versions.
    pub version: Option<u64>,
    pub hash: String,
}

/// What one SyncConfig led to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Its version was not above the last one on this connection: answered, not applied.
    Ignored,
    /// Its hash equals the applied one: the handler was not run.
    Unchanged,
    /// Applied.
    Applied(Applied),
    /// Refused by the decoder or the handler; the applied config stays.
    Rejected {
        version: Option<u64>,
        errors: Vec<SyncConfigError>,
    },
}

/// Applies configs one at a time for the whole data plane.
pub(crate) struct Intake {
    handler: Arc<dyn ConfigHandler>,
    max_inflated: usize,
    cache_dir: Option<PathBuf>,
    /// Held for a whole apply: configs are applied one at a time.
    one_at_a_time: Mutex<()>,
    /// The config in force, published once it is applied and cached; read by pings and
    /// `status()` without waiting for a handler.
    applied: Mutex<Option<Applied>>,
}

impl Intake {
    pub fn new(
        handler: Arc<dyn ConfigHandler>,
        max_inflated: usize,
        cache_dir: Option<PathBuf>,
    ) -> Intake {
        Intake {
            handler,
            max_inflated,
            cache_dir,
            one_at_a_time: Mutex::new(()),
            applied: Mutex::new(None),
        }
    }

    /// The config in force.
    pub fn applied(&self) -> Option<Applied> {
        lock(&self.applied).clone()
    }

    /// Hands the cached config, if any, to the handler. A missing cache is normal; an
    /// unreadable or corrupt one is logged and ignored.
    pub fn load_cache(&self) -> Option<Applied> {
        let dir = self.cache_dir.as_ref()?;
        let cached = match cache::read_config(dir) {
            Ok(Some(c)) => c,
            Ok(None) => return None,
            Err(problem) => {
                log::warn!("config cache: {problem}");
                return None;
            }
        };
        let raw = serde_json::to_vec(&cached.config).unwrap_or_default();
        let update = ConfigUpdate {
            config: &cached.config,
            raw: &raw,
            version: cached.version,
            hash: &cached.hash,
            hashes: &cached.hashes,
            from_cache: true,
        };
        let _one = lock(&self.one_at_a_time);
        match self.handler.apply(&update) {
            Ok(()) => {
                let a = Applied {
                    version: cached.version,
                    hash: cached.hash.clone(),
                };
                *lock(&self.applied) = Some(a.clone());
                log::info!("applied the cached config (hash {})", cached.hash);
                Some(a)
            }
            Err(errors) => {
                log::warn!("the handler rejected the cached config: {errors:?}");
                None
            }
        }
    }

    /// Handles one SyncConfig. `last_version` is the newest version seen on the
    /// connection it came on.
    pub fn sync(
        &self,
        last_version: &Mutex<u64>,
        req: SyncConfigRequest,
    ) -> (SyncConfigResponse, Outcome) {
        // One config at a time: a concurrent older push waits, then is ignored.
        let _one = lock(&self.one_at_a_time);
        {
            let mut last = lock(last_version);
            if req.version <= *last {
                log::info!(
                    "ignoring config version {} (already saw {})",
                    req.version,
                    *last
                );
                return (accepted(), Outcome::Ignored);
            }
            *last = req.version;
        }
        let version = req.version;
        let reject = |problem: String| {
            log::warn!("rejecting config version {version}: {problem}");
            let errors = vec![config_error(
                "",
                &format!("config: {problem}"),
                ConfigErrorType::Validation,
            )];
            (
                rejected(errors.clone()),
                Outcome::Rejected {
                    version: Some(version),
                    errors,
                },
            )
        };
        let raw = match config::inflate(&req.config, self.max_inflated) {
            Ok(raw) => raw,
            Err(e) => return reject(e.to_string()),
        };
        let parsed = match config::parse_object(&raw) {
            Ok(map) => map,
            Err(e) => return reject(e.to_string()),
        };
        let (hash, hashes) = hashes_of(&req, &parsed);
        let outcome = self.apply(Some(version), parsed, &raw, hash, hashes);
        let resp = match &outcome {
            Outcome::Rejected { errors, .. } => rejected(errors.clone()),
            _ => accepted(),
        };
        (resp, outcome)
    }

    /// Handles one binary frame of Kong's JSON protocol (`/v1/outlet`), a `reconfigure`:
    /// inflates it (gzip or zlib) under the cap and reads it
    /// ([`outlet::decode_reconfigure`]), then applies it unless its hash is the applied
    /// one. A message of another `type` is [`Outcome::Ignored`]; a frame that cannot be
    /// decoded is [`Outcome::Rejected`] with one error saying why, like a SyncConfig
    /// that cannot be decoded. Either way the applied config stays.
    pub fn reconfigure(&self, frame: &[u8]) -> Outcome {
        let _one = lock(&self.one_at_a_time);
        let r = match outlet::decode_reconfigure(frame, self.max_inflated) {
            Ok(Decoded::Reconfigure(r)) => r,
            Ok(Decoded::Ignored { type_name }) => {
                log::info!(
                    "ignoring a message of type {} from the CP (only reconfigure is applied)",
                    type_name.as_deref().unwrap_or("(none)")
                );
                return Outcome::Ignored;
            }
            Err(e) => {
                log::warn!(
                    "rejecting a reconfigure from the CP, keeping the applied config: {}",
                    crate::error::Chain(&e)
                );
                return Outcome::Rejected {
                    version: None,
                    errors: vec![config_error(
                        "",
                        &format!("config: {e}"),
                        ConfigErrorType::Validation,
                    )],
                };
            }
        };
        let hash = r.effective_hash();
        // No `hashes` (Kong before 2.8.1): 32 zeros for the parts, as Kong fills them.
        let hashes = r.effective_hashes().unwrap_or_else(|| {
            let zeros = || config::EMPTY_HASH.to_string();
            Hashes {
                config: hash.clone(),
                routes: zeros(),
                services: zeros(),
                plugins: zeros(),
                upstreams: zeros(),
                targets: zeros(),
            }
        });
        // The handler gets the config_table's JSON; the frame held the whole message.
        let raw = serde_json::to_vec(&r.config).unwrap_or_default();
        self.apply(None, r.config, &raw, hash, hashes)
    }

    /// Runs the handler on a decoded config unless its hash is the applied one, then
    /// caches and publishes it. The caller holds `one_at_a_time`.
    fn apply(
        &self,
        version: Option<u64>,
        config: Map<String, Value>,
        raw: &[u8],
        hash: String,
        hashes: Hashes,
    ) -> Outcome {
        let shown = version.map_or_else(|| "(no version)".to_string(), |v| v.to_string());
        {
            let mut applied = lock(&self.applied);
            if let Some(a) = applied.as_mut().filter(|a| a.hash == hash) {
                log::info!("config {shown} has the applied hash {hash}; not re-applying");
                if version.is_some() {
                    a.version = version;
                }
                return Outcome::Unchanged;
            }
        }
        let update = ConfigUpdate {
            config: &config,
            raw,
            version,
            hash: &hash,
            hashes: &hashes,
            from_cache: false,
        };
        if let Err(errors) = self.handler.apply(&update) {
            log::warn!(
                "the handler rejected config {shown} (hash {hash}): {} errors; keeping the applied one",
                errors.len()
            );
            return Outcome::Rejected { version, errors };
        }
        let a = Applied {
            version,
            hash: hash.clone(),
        };
        // Cache first, then publish: whatever status() and pings report is on disk.
        if let Some(dir) = &self.cache_dir {
            let cached = CachedConfig {
                version,
                hash,
                hashes,
                config,
            };
            if let Err(e) = cache::write_config(dir, &cached) {
                log::warn!("could not write the config cache in {}: {e}", dir.display());
            }
        }
        *lock(&self.applied) = Some(a.clone());
        Outcome::Applied(a)
    }
}

/// The CP's hashes when it sent them (its opaque id for the config; Kong's Go CP hashes
/// differently from Kong's Lua CP, so never recompute to compare); Kong's own hash
/// otherwise.
fn hashes_of(req: &SyncConfigRequest, parsed: &Map<String, Value>) -> (String, Hashes) {
    if req.config_hash.is_empty() {
        let h = config::config_hashes(parsed);
        return (h.config.clone(), h);
    }
    let g = req.hashes.clone().unwrap_or_default();
    let or_empty = |s: String| {
        if s.is_empty() {
            config::EMPTY_HASH.to_string()
        } else {
            s
        }
    };
    let GranularHashes {
        config: _,
        routes,
        services,
        plugins,
        upstreams,
        targets,
    } = g;
    let hashes = Hashes {
        config: req.config_hash.clone(),
        routes: or_empty(routes),
        services: or_empty(services),
        plugins: or_empty(plugins),
        upstreams: or_empty(upstreams),
        targets: or_empty(targets),
    };
    (req.config_hash.clone(), hashes)
}

fn accepted() -> SyncConfigResponse {
    SyncConfigResponse {
        accepted: true,
        errors: Vec::new(),
    }
}

fn rejected(errors: Vec<SyncConfigError>) -> SyncConfigResponse {
    SyncConfigResponse {
        accepted: false,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intake() -> Intake {
        let handler = |u: &ConfigUpdate<'_>| {
            if u.config.contains_key("bad") {
                Err(vec![config_error(
                    "1",
                    "services",
                    ConfigErrorType::Validation,
                )])
            } else {
                Ok(())
            }
        };
        Intake::new(Arc::new(handler), 1 << 20, None)
    }

    fn req(version: u64, json: &str, hash: &str) -> SyncConfigRequest {
        SyncConfigRequest {
            config: config::gzip(json.as_bytes()).into(),
            version,
            config_hash: hash.into(),
            hashes: None,
        }
    }

    #[test]
    fn older_version_is_answered_but_ignored() {
        let i = intake();
        let last = Mutex::new(0);
        assert!(matches!(
            i.sync(&last, req(2, "{}", &"a".repeat(32))).1,
            Outcome::Applied(_)
        ));
        let (resp, outcome) = i.sync(&last, req(1, r#"{"x":1}"#, &"b".repeat(32)));
        assert!(resp.accepted);
        assert_eq!(outcome, Outcome::Ignored);
        assert_eq!(i.applied().unwrap().hash, "a".repeat(32));
    }

    #[test]
    fn same_hash_skips_the_handler() {
        let i = intake();
        let last = Mutex::new(0);
        i.sync(&last, req(1, "{}", &"a".repeat(32)));
        assert_eq!(
            i.sync(&last, req(2, r#"{"bad":1}"#, &"a".repeat(32))).1,
            Outcome::Unchanged
        );
    }

    #[test]
    fn rejection_keeps_the_applied_hash() {
        let i = intake();
        let last = Mutex::new(0);
        i.sync(&last, req(1, "{}", &"a".repeat(32)));
        let (resp, _) = i.sync(&last, req(2, r#"{"bad":1}"#, &"b".repeat(32)));
        assert!(!resp.accepted);
        assert_eq!(resp.errors[0].entity, "services");
        assert_eq!(i.applied().unwrap().hash, "a".repeat(32));
    }

    #[test]
    fn kong_hash_is_computed_only_when_the_cp_sent_none() {
        let i = intake();
        let last = Mutex::new(0);
        let (_, outcome) = i.sync(&last, req(1, "{}", ""));
        let Outcome::Applied(a) = outcome else {
            panic!()
        };
        assert_eq!(a.hash, config::config_hashes(&Map::new()).config);
    }

    #[test]
    fn bad_json_and_non_objects_are_answered_in_the_response() {
        let i = intake();
        let last = Mutex::new(0);
        let (resp, _) = i.sync(&last, req(1, "{not json", ""));
        assert!(!resp.accepted);
        assert!(
            resp.errors[0].entity.starts_with("config: "),
            "{:?}",
            resp.errors
        );
        let (resp, _) = i.sync(&last, req(2, "[1,2]", ""));
        assert!(!resp.accepted);
    }
}
