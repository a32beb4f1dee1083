//! wRPC: the envelope, its validation, and the [`Peer`] that calls and serves on one
//! connection.
//!
//! Without I/O, tested with bytes: `envelope`, `validate`, `pending`, `table`,
//! `dispatch`, the stream state in `stream`. The rest sends, reads and runs threads.
//!
//! | file | what |
//! |---|---|
//! | `envelope` | our prost definitions of the envelope and Kong-safe constructors |
//! | `validate` | which kind a message is, or which rule it breaks |
//! | `pending` | the seq counter, calls waiting for answers, deadlines |
//! | `rpc` | what an rpc is ([`Rpc`], [`wrpc_service!`](crate::wrpc_service)) and [`HandlerError`] |
//! | `table` | the handler table: (service, rpc) to handler, and what a lookup finds |
//! | `dispatch` | what a received message leads to: serve, answer with an ERROR, close... |
//! | `stream` | STREAM_BEGIN / STREAM_MESSAGE / STREAM_END, and the open streams |
//! | `wire` | the sending half of a connection: its channel and its seq counter |
//! | `config` | [`PeerConfig`] and its defaults |
//! | `conn` | what a connection holds: [`Peer`], [`Services`], [`Context`] |
//! | `service` | registering handlers in [`Services`] |
//! | `pool` | the worker threads that run handlers ([`WorkerPool`]) |
//! | `fair` | each connection's fair share of those workers |
//! | `peer` | the peer's calls, streams and handle |
//! | `serve` | the peer's reader: doing what `dispatch` decides, on the workers |
//!
//! # Your own services
//!
//! Define a service once with [`wrpc_service!`](crate::wrpc_service) (its messages are
//! prost types), register handlers in [`Services`], and call it through a [`Peer`] on any
//! [`Channel`](crate::channel::Channel). A client over a dialed connection, serving
//! nothing and calling the peer's `Echo.Say`:
//!
//! ```no_run
//! # fn main() -> dpspec::Result<()> {
//! use std::sync::Arc;
//!
//! use dpspec::channel::ChannelConfig;
//! use dpspec::http::NodeIdentity;
//! use dpspec::tls::ClientTls;
//! use dpspec::upgrade::{dial, DialOptions, UpgradeTarget};
//! use dpspec::wrpc::{Peer, PeerConfig, Services, WorkerPool};
//! use dpspec::{wrpc_service, TrustMode};
//!
//! #[derive(Clone, PartialEq, prost::Message)]
//! pub struct Text {
//!     #[prost(string, tag = "1")]
//!     pub s: String,
//! }
//! wrpc_service! {
//!     /// An echo service, id 7.
//!     pub service Echo = 7 {
//!         /// Answers with the text it got.
//!         rpc Say = 1 (Text) -> Text;
//!     }
//! }
//!
//! let tls = ClientTls::new(TrustMode::ca_pem_file("ca.pem")?, None)?;
//! let me = NodeIdentity::new("0d8b3ed6-6f2f-4b8e-9d1b-3c9a8f1e2b7a", "edge-1", "3.1.1");
//! let dialed = dial(&DialOptions::new("peer.internal", 8005, tls, me), &UpgradeTarget::wrpc())?;
//! let (channel, reader) = dialed.into_channel(ChannelConfig::default())?;
//! let pool = Arc::new(WorkerPool::new("my-workers", 2, 64)?);
//! let peer = Peer::new(channel, Services::new(), pool, PeerConfig::default());
//! peer.spawn(reader)?; // the connection's reader thread
//! let answer = peer.call::<Say>(&Text { s: "hello".into() })?;
//! assert_eq!(answer.s, "hello");
//! # Ok(()) }
//! ```
//!
//! The server side registers the handler
//! (`services.handle::<Say, _>(|_ctx, req| Ok(req))`) on a peer built the same way from
//! an [`Upgraded`](crate::upgrade::Upgraded) connection, which an
//! [`http::Listener`](crate::http::Listener) route hands to an
//! [`UpgradeHandler`](crate::upgrade::UpgradeHandler).

use std::fmt;

use crate::channel::{ChannelError, Ended};

mod config;
mod conn;
mod dispatch;
internal! { mod envelope; }
mod fair;
mod peer;
internal! { mod pending; }
mod pool;
mod rpc;
mod serve;
mod service;
mod stream;
mod table;
internal! { mod validate; }
mod wire;

pub use envelope::ErrorType;
pub use fair::{RequestRate, DEFAULT_MAX_PENDING_REQUESTS};
pub use peer::{Peer, PeerConfig, DEFAULT_CALL_TIMEOUT};
pub use pool::WorkerPool;
pub use service::{Context, HandlerError, Rpc, Services};
pub use stream::{InboundStream, OutboundStream};

/// Why a wRPC call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WrpcError {
    /// The peer answered with an ERROR message.
    Remote {
        /// The error's type (INVALID_SERVICE, INVALID_RPC, GENERIC, ...).
        etype: ErrorType,
        /// The peer's text.
        description: String,
    },
    /// No answer came before the call's deadline; a late answer will be dropped.
    Timeout {
        /// The rpc called.
        name: String,
    },
    /// The connection ended before the answer came (or before the call was made).
    ConnectionClosed(Ended),
    /// The response names another (service, rpc) than the request did.
    Mismatch {
        /// (service, rpc) of the request.
        expected: (u32, u32),
        /// (service, rpc) of the response.
        got: (u32, u32),
    },
    /// The answer's payload does not decode as the rpc's response type.
    Decode {
        /// The rpc called.
        name: String,
        /// The decoder's complaint.
        message: String,
    },
    /// The encoded message is over the connection's maximum message size; nothing was
    /// sent.
    TooLarge {
        /// Size of the encoded message.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// Sending failed; the connection has been dropped. Holds the channel's error and its
    /// causes, as text.
    Send(String),
}

impl WrpcError {
    pub(crate) fn from_channel(e: ChannelError) -> WrpcError {
        match e {
            ChannelError::MessageTooLarge { size, max } => WrpcError::TooLarge { size, max },
            ChannelError::Closed(ended) => WrpcError::ConnectionClosed(ended),
            // The whole chain as text: a WrpcError is Clone, an io::Error is not.
            other => WrpcError::Send(crate::error::Chain(&other).to_string()),
        }
    }

    /// True for an ERROR answer from the peer of type `etype`.
    pub fn is_remote(&self, etype: ErrorType) -> bool {
        matches!(self, WrpcError::Remote { etype: e, .. } if *e == etype)
    }
}

impl fmt::Display for WrpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WrpcError::Remote { etype, description } => {
                write!(f, "the peer answered ERROR {etype:?}: {description}")
            }
            WrpcError::Timeout { name } => write!(f, "{name}: no answer before the deadline"),
            WrpcError::ConnectionClosed(ended) => write!(f, "connection closed: {ended}"),
            WrpcError::Mismatch { expected, got } => write!(
                f,
                "the response names service {} rpc {}, the request was service {} rpc {}",
                got.0, got.1, expected.0, expected.1
            ),
            WrpcError::Decode { name, message } => {
                write!(f, "{name}: the answer does not decode: {message}")
            }
            WrpcError::TooLarge { size, max } => write!(
                f,
                "message of {size} bytes is over the connection's maximum of {max}; nothing sent"
            ),
            WrpcError::Send(e) => write!(f, "send failed: {e}"),
        }
    }
}

impl std::error::Error for WrpcError {}
