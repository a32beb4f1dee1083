//! `dpspec`: Kong's DP-spec for data planes and control planes, on blocking I/O and plain
//! threads.
//!
//! A Kong data plane (DP) gets its declarative config from a control plane (CP) over one
//! long-lived connection. This crate speaks that connection in both roles, over the same
//! stack Kong uses, with no async runtime anywhere in its dependency tree: link it into a
//! small gateway, a tool, or a test harness that must talk to real Kong nodes.
//!
//! # The stack
//!
//! | layer | where | what it does |
//! |---|---|---|
//! | TCP | inside [`upgrade::dial`] | connect with a timeout, through an HTTP CONNECT proxy ([`ProxyUrl`]) if asked |
//! | TLS | [`tls`] | rustls with ring, TLS 1.2 and 1.3, Kong's trust modes, mTLS on both sides |
//! | HTTP/1.1 | [`http`] | heads under limits, the kong-* identity headers, the CP's [`http::Listener`] |
//! | WebSocket | [`upgrade`], [`channel`] | the upgrade (`/v1/wrpc`, `/v1/outlet`), a full-duplex message [`channel::Channel`] |
//! | wRPC | [`wrpc`] | the envelope, seq/ack, deadlines, errors, streams, and a [`wrpc::Peer`] that calls and serves |
//! | Kong's JSON protocol | inside the roles | `basic_info`, `reconfigure`, pings at `/v1/outlet` |
//! | config | [`config`] | Kong's config hash; gzip and JSON intake under caps (inside the roles) |
//! | roles | [`dp`], [`cp`] | [`DataPlane`] and [`ControlPlane`] |
//!
//! Most users need only a role. The layers below are public for those who compose their
//! own peers: a [`wrpc::Peer`] serving services of your own ([`wrpc_service!`]) over a
//! channel from [`upgrade::dial`] (client) or an [`http::Listener`] route (server).
//!
//! # Two protocols, one API
//!
//! Kong has spoken two protocols between DP and CP, and this crate speaks both
//! ([`Protocol`]):
//!
//! - **Kong's JSON protocol** at `/v1/outlet`: Kong 2.3 to 3.9, every release in the
//!   field (3.4 LTS included). A gzipped `reconfigure` frame per config; the DP pings its
//!   applied hash every 30 s; there is no acknowledgement.
//! - **wRPC** at `/v1/wrpc` (subprotocol `wrpc.konghq.com`): Kong 3.0 and 3.1. Protobuf
//!   RPC: NegotiateServices, ReportMetadata, PingCP, and SyncConfig, which the DP answers.
//!
//! A [`DataPlane`] picks one per connection ([`dp::ProtocolChoice`]; by default Kong
//! 3.0's probe, `HEAD /v1/wrpc`, where 404 means JSON). A [`ControlPlane`] serves both on
//! one listener. Either way the roles' API is the same: the DP's config handler gets the
//! same [`dp::ConfigUpdate`], the CP's registry lists every DP with its protocol.
//!
//! # A data plane
//!
//! The config handler applies what the CP pushes (return errors to reject it: the DP keeps
//! the config it has). With Kong's default `cluster_mtls = shared`, both ends hold the same
//! certificate:
//!
//! ```no_run
//! # fn main() -> dpspec::Result<()> {
//! use dpspec::dp::{ConfigUpdate, ProtocolChoice};
//! use dpspec::{DataPlane, Identity, TrustMode};
//!
//! let cert = std::fs::read("cluster.crt")?;
//! let key = std::fs::read("cluster.key")?;
//! let dp = DataPlane::builder("kong-cp.internal:8005")
//!     .trust(TrustMode::pinned_pem(&cert)?)
//!     .identity(Identity::from_pem(&cert, &key)?)
//!     // Kong 2.3 to 3.9 CPs: Kong's JSON protocol. Report a version the CP accepts
//!     // (same major, minor not newer than the CP's).
//!     .protocol(ProtocolChoice::Json)
//!     .version("3.4.2")
//!     .cache_dir("/var/lib/my-dp") // the last good config survives restarts
//!     .config_handler(|update: &ConfigUpdate<'_>| {
//!         println!("config {} with {} top-level keys", update.hash, update.config.len());
//!         Ok(())
//!     })
//!     .start()?;
//! for event in dp.events().iter() {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! The same DP against a Kong 3.1 CP, which speaks only wRPC, in PKI mode
//! (`cluster_mtls = pki`: trust the CA, present the DP's own certificate):
//!
//! ```no_run
//! # fn main() -> dpspec::Result<()> {
//! use dpspec::dp::{ConfigUpdate, ProtocolChoice};
//! use dpspec::{DataPlane, Identity, TrustMode};
//!
//! let dp = DataPlane::builder("kong-cp.internal:8005")
//!     .trust(TrustMode::ca_pem_file("/etc/kong/cluster-ca.crt")?)
//!     .server_name("kong-cp.internal") // Kong's cluster_server_name
//!     .identity(Identity::from_pem_files("dp.crt", "dp.key")?)
//!     .protocol(ProtocolChoice::Wrpc) // the default, Auto, would find it too
//!     .config_handler(|update: &ConfigUpdate<'_>| {
//!         println!("config version {:?}, hash {}", update.version, update.hash);
//!         Ok(())
//!     })
//!     .start()?;
//! println!("{:?}", dp.status());
//! # Ok(()) }
//! ```
//!
//! # A control plane
//!
//! One listener serves both protocols by default; every DP, whichever it speaks, gets the
//! same config and shows up in [`ControlPlane::nodes`]:
//!
//! ```no_run
//! # fn main() -> dpspec::Result<()> {
//! use dpspec::{ClientAuth, ControlPlane, Identity};
//!
//! let cp = ControlPlane::builder()
//!     .listen("0.0.0.0:8005")
//!     .identity(Identity::from_pem_files("cluster.crt", "cluster.key")?)
//!     .client_auth(ClientAuth::shared_pem(None)?) // DPs must present our certificate
//!     .start()?;
//! let version = cp.set_config(serde_json::json!({"_format_version": "3.0", "services": []}))?;
//! for node in cp.nodes() {
//!     println!("{} speaks {}: {}", node.node_id, node.protocol, node.sync_status.as_str());
//! }
//! # let _ = version; Ok(()) }
//! ```
//!
//! Only wRPC (Kong 3.0 and 3.1 data planes), or only Kong's JSON protocol (Kong 2.x and
//! 3.2 to 3.9 data planes, here in PKI mode):
//!
//! ```no_run
//! # fn main() -> dpspec::Result<()> {
//! use dpspec::{ClientAuth, ControlPlane, Identity};
//!
//! let wrpc_only = ControlPlane::builder()
//!     .identity(Identity::from_pem_files("cluster.crt", "cluster.key")?)
//!     .json(false) // /v1/outlet answers 404
//!     .kong_version("3.1.1")
//!     .start()?;
//! let json_only = ControlPlane::builder()
//!     .listen("0.0.0.0:8006")
//!     .identity(Identity::from_pem_files("cp.crt", "cp.key")?)
//!     .client_auth(ClientAuth::pki_pem_file("cluster-ca.crt")?)
//!     .wrpc(false) // HEAD /v1/wrpc answers 404, so Kong 3.0 DPs pick JSON
//!     .start()?;
//! # let _ = (wrpc_only, json_only); Ok(()) }
//! ```
//!
//! # Where Kong's nodes differ from this crate
//!
//! Kong's Lua nodes, Kong's Go wRPC library and the published spec disagree in places; the
//! docs of each item say what Kong does and which way this crate goes. The main ones:
//!
//! - **Identity.** Kong's DPs send their identity only in the upgrade's query; ours send
//!   it in the query and in the `kong-node-id`, `kong-version` and `kong-hostname`
//!   headers, and our CP accepts either.
//! - **Rejected configs.** A Kong DP answers SyncConfig `accepted` before applying and
//!   never reports errors, and on `/v1/outlet` drops the connection on a bad config. Ours
//!   applies first and reports the handler's errors on wRPC; on JSON it keeps the applied
//!   config, keeps pinging its hash and stays connected.
//! - **Bad peers.** Kong's Lua receive loop crashes on several malformed envelopes, and
//!   two go-wrpc peers loop forever on a stray answer; ours answer or close with a
//!   WebSocket close code (1003, 1007, 1008, 1009) and never answer an ERROR with an
//!   ERROR.
//! - **Limits.** Kong has no cap on connections per node, and its CP resends a config
//!   too big for a DP on every reconnect; our CP caps connections per node (429), gives
//!   the phase before authentication one deadline and a cap, and skips an oversized push
//!   with an event.
//! - **Checks Kong skips.** Our DP checks `Sec-WebSocket-Accept` on both paths; our CP
//!   requires the `wrpc.konghq.com` subprotocol on `/v1/wrpc` and never trusts an
//!   `x-client-cert` header.
//! - **No compat layer yet.** Kong's CP rewrites a config for older DPs; ours pushes the
//!   config as given, so give it one the oldest connected DP understands.
//!
//! # Threads
//!
//! No async runtime is used anywhere, and no thread of the library waits on another peer's
//! socket: every connection has one reader thread that blocks on its own socket; sends go
//! into the connection's bounded outbox and out with a non-blocking write (a flusher
//! thread exists only while a backlog does; a peer that does not read within the write
//! timeout is dropped); handlers run on a bounded pool of worker threads, of which each
//! connection has a fair share; callers block on per-call slots with deadlines, and a
//! control plane's pushes are completed by the data plane's answer, parking no thread.
//! The phase before a connection is authenticated has one deadline and a cap. The
//! [`channel`] module and the README's "Threads and limits" give every limit and its
//! default.
//!
//! # Errors
//!
//! Every fallible call returns [`Result`] with the one [`Error`] enum, a variant per
//! layer. Its `Display` says what happened at that layer; the cause comes from `source()`;
//! [`Error::report`] prints the whole chain on one line.
//!
//! # Other crates in this API
//!
//! Three dependencies appear in signatures, so their major versions are part of this
//! crate's: [`prost`](https://docs.rs/prost) (wRPC messages and [`wrpc_service!`]
//! definitions are prost messages), [`serde_json`](https://docs.rs/serde_json) (configs
//! are JSON values) and [`crossbeam-channel`](https://docs.rs/crossbeam-channel) (event
//! streams are its `Receiver`s). No rustls or tungstenite type is part of the API.
//!
//! # Features
//!
//! `dp` and `cp` (both on by default) each compile one role and only the parts of the
//! lower layers that role uses: a DP-only build (`default-features = false, features =
//! ["dp"]`) has no listener, server TLS, server side of the upgrade, negotiation policy,
//! config encoder or JSON-protocol checks of a CP; a CP-only build has no dialer, proxy,
//! client TLS or config intake of a DP. Items that exist with one feature only say so in
//! their docs. (The `internals` feature is for this crate's own tests, fuzz targets and
//! benchmarks: what it opens is hidden from these docs and is not covered by semver.)
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod internals;

pub mod channel;
pub mod config;
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub mod cp;
#[cfg(any(feature = "dp", feature = "cp"))]
mod deadline;
#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub mod dp;
mod error;
pub mod http;
internal! { mod outlet; }
mod protocol;
internal! { #[cfg(feature = "dp")] mod proxy; }
internal! { mod random; }
internal! { mod services; }
internal! { #[cfg(feature = "dp")] mod tcp; }
pub mod tls;
pub mod upgrade;
pub mod wrpc;

#[cfg(feature = "cp")]
pub use cp::{ControlPlane, ControlPlaneBuilder};
#[cfg(feature = "dp")]
pub use dp::{DataPlane, DataPlaneBuilder};
pub use error::{Error, Result};
pub use protocol::Protocol;
#[cfg(feature = "dp")]
pub use proxy::{ProxyError, ProxyUrl};
#[cfg(feature = "dp")]
pub use tcp::ConnectError;
#[cfg(feature = "cp")]
pub use tls::ClientAuth;
pub use tls::Identity;
#[cfg(feature = "dp")]
pub use tls::TrustMode;
