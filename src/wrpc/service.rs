//! Serving: register handlers for typed services (define them once with
//! [`wrpc_service!`](crate::wrpc_service)) in a [`Services`] table, then call them with
//! [`Peer::call`](super::Peer::call) from the other end.

use std::sync::Arc;

use bytes::Bytes;

pub use super::conn::{Context, Services};
pub use super::rpc::{HandlerError, Rpc};
use super::stream::InboundStream;
use super::table::{Entry, HandlerTable, UnaryFn};

/// `handler` on the bytes of `R`'s request: decoded from the message's buffer (no copy of
/// its `bytes` fields), answered, encoded.
fn typed<R, F>(handler: F) -> Arc<UnaryFn<Context>>
where
    R: Rpc,
    F: Fn(&Context, R::Request) -> Result<R::Response, HandlerError> + Send + Sync + 'static,
{
    Arc::new(move |ctx: &Context, body: &Bytes| {
        let req = <R::Request as prost::Message>::decode(body.clone())
            .map_err(|e| HandlerError(format!("{}: request does not decode: {e}", R::NAME)))?;
        let resp = handler(ctx, req)?;
        Ok(prost::Message::encode_to_vec(&resp))
    })
}

/// A handler working on encoded bytes.
pub type RawHandler = dyn Fn(&Context, &[u8]) -> Result<Vec<u8>, HandlerError> + Send + Sync;
/// A handler for streams begun by the peer.
pub type StreamHandler = dyn Fn(&Context, InboundStream) + Send + Sync;

impl Services {
    /// An empty table: every request gets INVALID_SERVICE.
    pub fn new() -> Services {
        Services::default()
    }

    /// A new table holding the same handlers as this one, changed independently.
    pub fn snapshot(&self) -> Services {
        Services {
            table: Arc::new(HandlerTable::clone(&self.table)),
        }
    }

    /// Serves `R` with `handler`, replacing any earlier handler for it.
    pub fn handle<R, F>(&self, handler: F) -> &Self
    where
        R: Rpc,
        F: Fn(&Context, R::Request) -> Result<R::Response, HandlerError> + Send + Sync + 'static,
    {
        self.insert(
            R::SERVICE_ID,
            R::RPC_ID,
            Entry::Unary(typed::<R, F>(handler)),
        )
    }

    /// Serves `R` with `handler` run on the connection's reader thread instead of a
    /// worker: one thread hand-off less per call (the echo benchmark's round trip drops
    /// by about a third), but the connection reads nothing while the handler runs. Its
    /// answer goes into the outbox like any other (it never waits on the peer). Only for
    /// handlers that never block and finish in microseconds (an echo, a ping); use
    /// [`Services::handle`] for everything else. It takes no share of the worker pool,
    /// but counts toward the connection's request rate
    /// ([`PeerConfig::max_request_rate`](super::PeerConfig::max_request_rate)) and waits
    /// while the connection's answers back up, like any request. An inline handler
    /// cannot call its own peer: the answer could only be read by the thread that would
    /// wait for it, so such a call fails at once.
    pub fn handle_inline<R, F>(&self, handler: F) -> &Self
    where
        R: Rpc,
        F: Fn(&Context, R::Request) -> Result<R::Response, HandlerError> + Send + Sync + 'static,
    {
        self.insert(
            R::SERVICE_ID,
            R::RPC_ID,
            Entry::Inline(typed::<R, F>(handler)),
        )
    }

    /// Serves streams that the peer begins for `R` (see [`InboundStream`]).
    pub fn handle_stream<R, F>(&self, handler: F) -> &Self
    where
        R: Rpc,
        F: Fn(&Context, InboundStream) + Send + Sync + 'static,
    {
        self.insert(R::SERVICE_ID, R::RPC_ID, Entry::Stream(Arc::new(handler)))
    }

    /// Serves (svc_id, rpc_id) with a handler on encoded bytes.
    pub fn handle_raw(&self, svc_id: u32, rpc_id: u32, handler: Arc<RawHandler>) -> &Self {
        let body = move |ctx: &Context, body: &Bytes| handler(ctx, body);
        self.insert(svc_id, rpc_id, Entry::Unary(Arc::new(body)))
    }

    /// Makes a service known without handlers: its rpcs get INVALID_RPC, not
    /// INVALID_SERVICE.
    pub fn declare(&self, svc_id: u32) -> &Self {
        self.table.declare(svc_id);
        self
    }

    /// Whether any handler or declaration exists for the service.
    pub fn serves(&self, svc_id: u32) -> bool {
        self.table.serves(svc_id)
    }

    fn insert(&self, svc_id: u32, rpc_id: u32, entry: Entry<Context>) -> &Self {
        self.table.insert(svc_id, rpc_id, entry);
        self
    }
}
