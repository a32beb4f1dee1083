//! What the data plane tells its owner: a status snapshot and a stream of events.

use crate::services::config::SyncConfigError;
use crate::Protocol;

/// A snapshot of the data plane's state, from [`DataPlane::status`](super::DataPlane::status).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// A connection to the CP is up (upgraded; negotiation may still be running).
    pub connected: bool,
    /// The protocol the connection up now speaks; `None` while there is none.
    pub protocol: Option<Protocol>,
    /// The CP's node id, from its `kong-node-id` header or the negotiation answer.
    pub cp_node_id: Option<String>,
    /// Services accepted in the last negotiation, as (name, version).
    pub negotiated: Vec<(String, String)>,
    /// Version of the config applied last (from a CP or the cache); `None` before any,
    /// and when it came over Kong's JSON protocol, which has no version numbers.
    pub applied_version: Option<u64>,
    /// Hash of the config applied last.
    pub applied_hash: Option<String>,
    /// Why the last connection or attempt failed.
    pub last_error: Option<String>,
    /// How many times the data plane has reconnected.
    pub reconnects: u64,
}

/// Something that happened, from [`DataPlane::events`](super::DataPlane::events).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DpEvent {
    /// The upgrade to the CP succeeded.
    Connected {
        /// The protocol the connection speaks (chosen by the builder's
        /// [`ProtocolChoice`](super::ProtocolChoice), or probed).
        protocol: Protocol,
        /// The CP's node id from its `kong-node-id` header, if it sent one.
        cp_node_id: Option<String>,
    },
    /// Negotiation succeeded.
    Negotiated {
        /// Accepted services as (name, version).
        services: Vec<(String, String)>,
    },
    /// A config was applied (from a CP, or from the cache at start).
    ConfigApplied {
        /// Its version: `Some` on wRPC, `None` on Kong's JSON protocol (no version
        /// numbers there; the hash identifies the config).
        version: Option<u64>,
        /// Its hash.
        hash: String,
        /// It came from the cache.
        from_cache: bool,
    },
    /// The handler rejected a config (or it could not be decoded); the old one stays.
    ConfigRejected {
        /// Its version: `Some` on wRPC, `None` on Kong's JSON protocol.
        version: Option<u64>,
        /// The errors: reported to the CP on wRPC; only logged on Kong's JSON protocol,
        /// which has no way to report them.
        errors: Vec<SyncConfigError>,
    },
    /// A ping went out: on wRPC, a PingCP that the CP answered; on Kong's JSON protocol,
    /// a WebSocket ping queued for sending (Kong's CP answers with an empty pong, which
    /// is not waited for).
    Pinged {
        /// The hash it carried.
        hash: String,
    },
    /// The connection ended or an attempt failed; a reconnect follows unless shutting down.
    Disconnected {
        /// Why.
        reason: String,
    },
}
