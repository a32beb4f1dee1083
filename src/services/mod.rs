//! The services spoken over wRPC between data planes and control planes: their messages,
//! ids, and the decisions each side makes, as plain functions without I/O.
//!
//! - [`negotiation`] (service 5): the first call on every connection; the data plane
//!   names the services and versions it speaks, the control plane picks
//!   ([`negotiation::NegotiationPolicy`]).
//! - [`config`] (service 1): config pushes, metadata reports and pings.
//! - [`gate`]: the control plane's compatibility checks (Kong version, plugins); feature
//!   `cp` only.
//!
//! Messages are prost structs written by hand from the protocol definitions; wire field
//! numbers are those of Kong's definitions.

pub mod config;
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub mod gate;
pub mod negotiation;

use config::{
    GetCapabilitiesRequest, GetCapabilitiesResponse, PingCPRequest, PingCPResponse,
    ReportMetadataRequest, ReportMetadataResponse, SyncConfigRequest, SyncConfigResponse,
};
use negotiation::{NegotiateServicesRequest, NegotiateServicesResponse};

crate::wrpc_service! {
    /// The negotiation service (id 5): the data plane's first call on every connection.
    pub service NegotiationService = 5 {
        /// DP to CP: the services and versions the DP speaks; the CP picks.
        rpc NegotiateServices = 1 (NegotiateServicesRequest) -> NegotiateServicesResponse;
    }
}

crate::wrpc_service! {
    /// The config service (id 1), version `v1`.
    pub service ConfigService = 1 {
        /// The capabilities of the service; Kong never implemented it (it answers
        /// "Unhandled method"); our CP answers `[BULK_UPDATE]`.
        rpc GetCapabilities = 1 (GetCapabilitiesRequest) -> GetCapabilitiesResponse;
        /// CP to DP: a whole declarative config, gzipped JSON.
        rpc SyncConfig = 2 (SyncConfigRequest) -> SyncConfigResponse;
        /// DP to CP: the hash of the config the DP runs; at once and every 30 s.
        rpc PingCP = 3 (PingCPRequest) -> PingCPResponse;
        /// DP to CP: the DP's plugins; Kong's CP wants it within 5 s of the upgrade.
        rpc ReportMetadata = 4 (ReportMetadataRequest) -> ReportMetadataResponse;
    }
}
