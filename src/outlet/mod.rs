//! Kong's JSON protocol at `/v1/outlet`, without I/O: the messages both sides exchange,
//! as plain functions over bytes, for a socket layer to drive.
//!
//! `/v1/outlet` is the hybrid-mode protocol of Kong 2.x and of Kong 3.2 to 3.9 (3.4 LTS
//! included); Kong 3.0 speaks it beside wRPC (its data plane probes `HEAD /v1/wrpc` and
//! falls back to it on a 404), and Kong 3.1 does not speak it at all. The data plane opens
//! a WebSocket to [`OUTLET_PATH`] with `?node_id=..&node_hostname=..&node_version=..` and
//! no subprotocol, then:
//!
//! | direction | frame | content | here |
//! |---|---|---|---|
//! | DP → CP | binary, the first frame, within [`BASIC_INFO_TIMEOUT`] | uncompressed JSON `basic_info` | [`basic_info`] |
//! | DP → CP | ping, at once, every 30 s, after each applied config | the applied config hash, [`PING_HASH_LEN`] bytes | [`ping`] |
//! | CP → DP | binary | gzip of the JSON `reconfigure` (the whole config) | [`reconfigure`] |
//! | CP → DP | pong | empty, one per ping | – |
//!
//! The version and size rules the control plane applies are in [`gate`].
//!
//! Frame discipline (what Kong's nodes require of the socket layer):
//!
//! - every message is one unfragmented frame, and no extension (`permessage-deflate`) is
//!   negotiated;
//! - `basic_info` must be the first frame and binary; after it a Kong control plane
//!   accepts only pings (and close): any other data frame ends the session, so a data
//!   plane sends no acknowledgement or error report;
//! - a Kong control plane never pings, and a Kong data plane never answers pings; the
//!   control plane answers each ping with an empty pong;
//! - any frame counts as liveness; [`LIVENESS_TIMEOUT`] without one ends the session on
//!   either side;
//! - a frame above the receiver's maximum ([`DEFAULT_MAX_FRAME`], [`LEGACY_MAX_FRAME`]
//!   for Kong below 3.4) kills a Kong node's session, and the limit applies to the
//!   *gzipped* reconfigure.
//!
//! Errors are [`OutletError`]; on the control plane each names the close code to answer
//! ([`OutletError::close_code`]). A data plane does not close on a bad `reconfigure`: it
//! keeps its applied config and stays connected.

use std::time::Duration;

pub mod basic_info;
mod error;
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub mod gate;
pub mod ping;
pub mod reconfigure;

#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub use basic_info::encode_basic_info;
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use basic_info::{parse_basic_info, BasicInfo};
pub(crate) use crate::config::kind_of;
pub(crate) use error::cut;
pub use error::{Message, OutletError};
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use gate::{json_version_gate, max_frame_for, DEFAULT_JSON_CP_VERSION};
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use ping::check_ping;
pub use ping::is_wire_hash;
#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub use ping::ping_payload;
#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub use reconfigure::{decode_reconfigure, Decoded, Reconfigure};
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use reconfigure::{timestamp, EncodedReconfigure};

/// The WebSocket path of the protocol. Kong's control plane matches it exactly
/// (`location = /v1/outlet`); the query string carries the node's id, hostname and
/// version.
pub const OUTLET_PATH: &str = "/v1/outlet";

/// Maximum frame payload from Kong 3.4 on: 16 MiB, the default of Kong's
/// `cluster_max_payload` since 3.4.0. It bounds the gzipped `reconfigure`, not the
/// inflated config.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Maximum frame payload below Kong 3.4: 4 MiB, a constant in Kong 2.1 to 2.7 and the
/// default of `cluster_max_payload` in 2.8 to 3.3.
pub const LEGACY_MAX_FRAME: usize = 4 * 1024 * 1024;

/// How long a control plane waits for `basic_info` after the 101: 5 s, Kong's socket
/// timeout for that first read.
pub const BASIC_INFO_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a Kong data plane pings: 30 s (`CLUSTERING_PING_INTERVAL`).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Silence after which either side gives up on the other: 45 s (Kong's `PING_WAIT`, 1.5
/// ping intervals). Any frame counts, not only pings and pongs.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(45);

/// Length of a ping payload: a config hash of 32 characters. Kong 3.6+ control planes
/// close on any other length.
pub const PING_HASH_LEN: usize = 32;
