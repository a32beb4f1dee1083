//! The config service (service id 1): the messages that carry the declarative config
//! from the control plane to data planes, and the data planes' metadata and pings back.
//!
//! | rpc | id | direction |
//! |---|---|---|
//! | GetCapabilities | 1 | defined, never implemented by Kong |
//! | SyncConfig | 2 | CP to DP |
//! | PingCP | 3 | DP to CP |
//! | ReportMetadata | 4 | DP to CP |

/// The config service's wRPC service id.
pub const SERVICE_ID: u32 = 1;
/// GetCapabilities: defined by the service, never implemented by Kong (a Kong CP answers
/// "Unhandled method").
pub const RPC_GET_CAPABILITIES: u32 = 1;
/// SyncConfig: the control plane pushes a full config to a data plane.
pub const RPC_SYNC_CONFIG: u32 = 2;
/// PingCP: the data plane reports the hash of its applied config (Kong: at once after
/// ReportMetadata, then every 30 s).
pub const RPC_PING_CP: u32 = 3;
/// ReportMetadata: the data plane lists its plugins; a Kong CP requires it within 5 s of
/// the upgrade.
pub const RPC_REPORT_METADATA: u32 = 4;

/// A feature a service can offer beyond its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Capability {
    /// Not set.
    Unspecified = 0,
    /// Whole configs are pushed at once (the only mode defined).
    BulkUpdate = 1,
}

/// GetCapabilities request: empty.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetCapabilitiesRequest {}

/// GetCapabilities response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetCapabilitiesResponse {
    /// The capabilities offered, each a [`Capability`].
    #[prost(enumeration = "Capability", repeated, tag = "1")]
    pub capabilities: Vec<i32>,
}

/// ReportMetadata request: what the data plane runs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReportMetadataRequest {
    /// The data plane's plugins, name and version each (Kong sorts them by name).
    #[prost(message, repeated, tag = "1")]
    pub plugins: Vec<PluginVersion>,
}

/// ReportMetadata response: either `ok` or `error`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReportMetadataResponse {
    /// The outcome; Kong's CP answers `Ok("done")`, Kong's Go CP `Ok("valid")`.
    #[prost(oneof = "report_metadata_response::Response", tags = "1, 2")]
    pub response: Option<report_metadata_response::Response>,
}

/// The oneof of [`ReportMetadataResponse`].
pub mod report_metadata_response {
    /// The outcome of a ReportMetadata call.
    #[derive(Clone, PartialEq, Eq, Hash, prost::Oneof)]
    pub enum Response {
        /// Accepted, with a short word (`"done"` from Kong).
        #[prost(string, tag = "1")]
        Ok(String),
        /// Refused, with the reason.
        #[prost(string, tag = "2")]
        Error(String),
    }
}

/// A plugin and its version, as a data plane reports it.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct PluginVersion {
    /// The plugin's name, e.g. `rate-limiting`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its version, e.g. `2.4.0`; may be empty.
    #[prost(string, tag = "2")]
    pub version: String,
}

/// The hash of a config and of its main parts, 32 lowercase hex chars each (Kong's
/// hash, see [`crate::config::hash`]).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct GranularHashes {
    /// The whole config.
    #[prost(string, tag = "1")]
    pub config: String,
    /// The `routes` array.
    #[prost(string, tag = "2")]
    pub routes: String,
    /// The `services` array.
    #[prost(string, tag = "3")]
    pub services: String,
    /// The `plugins` array.
    #[prost(string, tag = "4")]
    pub plugins: String,
    /// The `upstreams` array.
    #[prost(string, tag = "5")]
    pub upstreams: String,
    /// The `targets` array.
    #[prost(string, tag = "6")]
    pub targets: String,
}

/// SyncConfig request: one complete config, never combined with an earlier one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SyncConfigRequest {
    /// The gzip (Kong: level 6) of the declarative config's JSON. Received, it shares the
    /// message's buffer.
    #[prost(bytes = "bytes", tag = "1")]
    pub config: bytes::Bytes,
    /// Increases with every push on a connection, starting at 1 (0 crashes a Kong DP).
    #[prost(uint64, tag = "2")]
    pub version: u64,
    /// The config's hash, 32 lowercase hex chars: the data plane echoes it in PingCP.
    #[prost(string, tag = "3")]
    pub config_hash: String,
    /// The config's hash and the hashes of its parts.
    #[prost(message, optional, tag = "4")]
    pub hashes: Option<GranularHashes>,
}

/// SyncConfig response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SyncConfigResponse {
    /// True when the data plane accepted (and applied) the config.
    #[prost(bool, tag = "1")]
    pub accepted: bool,
    /// When not accepted: what is wrong. Empty when accepted.
    #[prost(message, repeated, tag = "2")]
    pub errors: Vec<SyncConfigError>,
}

/// Kind of a [`SyncConfigError`] (the config service's own error types, not wRPC's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ErrorType {
    /// Not given.
    Unspecified = 0,
    /// An entity fails validation.
    Validation = 1,
    /// An entity has a field the data plane does not know.
    ExtraneousField = 2,
    /// An entity refers to an entity that is not in the config.
    Orphaned = 3,
}

/// One problem with a pushed config.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SyncConfigError {
    /// The id of the entity at fault.
    #[prost(string, tag = "1")]
    pub id: String,
    /// The entity type, e.g. `routes`.
    #[prost(string, tag = "2")]
    pub entity: String,
    /// What is wrong, an [`ErrorType`].
    #[prost(enumeration = "ErrorType", tag = "3")]
    pub err_type: i32,
}

/// PingCP request: the data plane's state.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct PingCPRequest {
    /// The applied config's hash, 32 lowercase hex chars, or 32 zeros before any config.
    #[prost(string, tag = "1")]
    pub hash: String,
}

/// PingCP response: empty.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct PingCPResponse {}

#[cfg(test)]
mod tests {
    use super::report_metadata_response::Response;
    use super::*;
    use prost::Message;

    #[test]
    fn report_metadata_response_oneof_uses_tags_1_and_2() {
        let ok = ReportMetadataResponse {
            response: Some(Response::Ok("done".into())),
        };
        assert_eq!(ok.encode_to_vec(), b"\x0a\x04done");
        let err = ReportMetadataResponse {
            response: Some(Response::Error("no".into())),
        };
        assert_eq!(err.encode_to_vec(), b"\x12\x02no");
        assert_eq!(
            ReportMetadataResponse::decode(&b"\x12\x02no"[..]).unwrap(),
            err
        );
        assert_eq!(
            ReportMetadataResponse::decode(&b""[..]).unwrap().response,
            None
        );
    }

    #[test]
    fn sync_config_request_round_trips() {
        let req = SyncConfigRequest {
            config: vec![0x1f, 0x8b, 1, 2].into(),
            version: 3,
            config_hash: "a".repeat(32),
            hashes: Some(GranularHashes {
                config: "a".repeat(32),
                routes: "b".repeat(32),
                ..Default::default()
            }),
        };
        let bytes = req.encode_to_vec();
        // config (1, len) first, then version (2, varint) = 3.
        assert_eq!(&bytes[..8], b"\x0a\x04\x1f\x8b\x01\x02\x10\x03");
        assert_eq!(SyncConfigRequest::decode(&bytes[..]).unwrap(), req);
    }

    #[test]
    fn sync_config_response_carries_typed_errors() {
        let resp = SyncConfigResponse {
            accepted: false,
            errors: vec![SyncConfigError {
                id: "r1".into(),
                entity: "routes".into(),
                err_type: ErrorType::Orphaned as i32,
            }],
        };
        let back = SyncConfigResponse::decode(&resp.encode_to_vec()[..]).unwrap();
        assert_eq!(back.errors[0].err_type(), ErrorType::Orphaned);
        assert_eq!(back, resp);
    }

    #[test]
    fn ping_and_capabilities_encode_as_expected() {
        let ping = PingCPRequest {
            hash: "0".repeat(32),
        };
        let bytes = ping.encode_to_vec();
        assert_eq!(&bytes[..2], b"\x0a\x20");
        assert!(PingCPResponse {}.encode_to_vec().is_empty());
        let caps = GetCapabilitiesResponse {
            capabilities: vec![Capability::BulkUpdate as i32],
        };
        // Repeated enums are packed in proto3: (1, len) 1 byte, value 1.
        assert_eq!(caps.encode_to_vec(), b"\x0a\x01\x01");
    }
}
