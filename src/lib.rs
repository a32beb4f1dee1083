//! `dpspec`: Kong's DP-spec for data planes and control planes, on blocking I/O and plain
//! threads.
//!
//! The stack, bottom up, one module per layer:
//!
//! | layer | module | what it does |
//! |---|---|---|
//! | TCP | [`tcp`], [`proxy`] | connect with a timeout, HTTP CONNECT tunnels |
//! | TLS | [`tls`] | rustls (ring), Kong's trust modes, mTLS on both sides |
//! | HTTP/1.1 | [`http`] | request and response heads under limits, the CP listener |
//! | WebSocket | [`upgrade`], [`channel`] | the upgrade for any path and subprotocol, a full-duplex message channel |
//! | wRPC | [`wrpc`] | envelope, validation, the [`wrpc::Peer`] that calls and serves |
//! | JSON | [`outlet`] | Kong's `/v1/outlet` messages (`basic_info`, `reconfigure`, pings), without I/O |
//! | services | [`services`], [`config`] | negotiation and config messages, Kong's config hash |
//! | roles | `dp`, `cp` | `DataPlane` and `ControlPlane` (features `dp` and `cp`, both on by default) |
//!
//! Where Kong's Lua nodes, Kong's Go library and the published spec disagree, the docs of
//! the item concerned say what Kong does and which way this crate goes.
//!
//! No async runtime is used anywhere: every connection has one reader thread that blocks on
//! its socket, handlers run on a bounded pool of worker threads, and callers block on
//! channels with deadlines.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod channel;
pub mod config;
#[cfg(feature = "cp")]
pub mod cp;
#[cfg(any(feature = "dp", feature = "cp"))]
mod deadline;
#[cfg(feature = "dp")]
pub mod dp;
mod error;
pub mod http;
pub mod outlet;
pub mod protocol;
pub mod proxy;
pub mod random;
pub mod services;
pub mod tcp;
pub mod tls;
pub mod upgrade;
pub mod wrpc;

#[cfg(feature = "cp")]
pub use cp::ControlPlane;
pub use error::{Error, Result};
pub use protocol::Protocol;

#[cfg(feature = "dp")]
pub use dp::DataPlane;
