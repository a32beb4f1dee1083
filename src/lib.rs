//! `dpspec`: Kong's DP-spec for data planes and control planes, on blocking I/O and plain
//! threads.
//!
//! The stack, bottom up, one module per layer:
//!
//! | layer | module | what it does |
//! |---|---|---|
//! | TCP | (inside [`upgrade::dial`]) | connect with a timeout, HTTP CONNECT tunnels ([`ProxyUrl`]) |
//! | TLS | [`tls`] | rustls (ring), Kong's trust modes, mTLS on both sides |
//! | HTTP/1.1 | [`http`] | request and response heads under limits, the CP listener |
//! | WebSocket | [`upgrade`], [`channel`] | the upgrade (`/v1/wrpc`, `/v1/outlet`), a full-duplex message channel |
//! | wRPC | [`wrpc`] | envelope, validation, the [`wrpc::Peer`] that calls and serves |
//! | JSON | (inside the roles) | Kong's `/v1/outlet` messages (`basic_info`, `reconfigure`, pings), without I/O |
//! | services | (inside the roles), [`config`] | negotiation and config messages, Kong's config hash |
//! | roles | `dp`, `cp` | `DataPlane` and `ControlPlane` (features `dp` and `cp`, both on by default) |
//!
//! Two message protocols run over the same stack ([`Protocol`]): wRPC at `/v1/wrpc`
//! (Kong 3.0 and 3.1) and Kong's JSON protocol at `/v1/outlet` (Kong 2.3 to 3.9). A
//! `DataPlane` picks one (`auto` by default: Kong 3.0's `HEAD /v1/wrpc` probe, 404 means
//! JSON), a `ControlPlane` serves both on one listener, and the roles' API is the same
//! for either; the README has the table of Kong releases.
//!
//! Where Kong's Lua nodes, Kong's Go library and the published spec disagree, the docs of
//! the item concerned say what Kong does and which way this crate goes.
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
//! # Features
//!
//! `dp` and `cp` (both on by default) each compile one role and only the parts of the
//! lower layers that role uses: a DP-only build has no listener, server TLS, server side
//! of the upgrade, negotiation policy, config encoder or JSON-protocol checks of a CP; a
//! CP-only build has no dialer, proxy, client TLS or config intake of a DP. Items that
//! exist with one feature only say so in their docs.
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
