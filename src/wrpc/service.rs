//! Serving: register handlers for typed services (define them once with
//! [`wrpc_service!`](crate::wrpc_service)) in a [`Services`] table, then call them with
//! [`Peer::call`](super::Peer::call) from the other end.

use std::sync::Arc;

use bytes::Bytes;

pub use super::conn::{Context, Services};
pub use super::rpc::{HandlerError, Rpc};
use super::stream::InboundStream;
use super::table::{Entry, UnaryFn};

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

impl Services {
    /// An empty table: every request gets INVALID_SERVICE.
    pub fn new() -> Services {
        Services::default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrpc::table::Lookup;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Empty {}

    crate::wrpc_service! {
        /// A service for these tests.
        service TestService = 1 {
            /// One rpc.
            rpc First = 1 (Empty) -> Empty;
            /// Another.
            rpc Second = 2 (Empty) -> Empty;
        }
    }

    fn kind(services: &Services, svc: u32, rpc: u32) -> &'static str {
        match services.table.lookup(svc, rpc) {
            Lookup::UnknownService => "unknown service",
            Lookup::UnknownRpc => "unknown rpc",
            Lookup::Found(Entry::Unary(_)) => "unary",
            Lookup::Found(Entry::Inline(_)) => "inline",
            Lookup::Found(Entry::Stream(_)) => "stream",
        }
    }

    #[test]
    fn a_change_to_one_clone_of_services_does_not_affect_another() {
        let base = Services::new();
        base.handle::<First, _>(|_, r| Ok(r));
        let (a, b) = (base.clone(), base.clone());
        a.handle_inline::<Second, _>(|_, r| Ok(r));
        b.declare(7);
        assert_eq!(kind(&a, 1, 2), "inline");
        assert_eq!(kind(&b, 1, 2), "unknown rpc");
        assert_eq!(kind(&base, 1, 2), "unknown rpc");
        assert!(b.serves(7) && !a.serves(7) && !base.serves(7));
        for s in [&base, &a, &b] {
            assert_eq!(
                kind(s, 1, 1),
                "unary",
                "what was there before the clone stays"
            );
        }
    }

    #[test]
    fn each_registration_serves_its_rpc_in_its_own_way() {
        let s = Services::new();
        s.handle::<First, _>(|_, r| Ok(r));
        s.handle_stream::<Second, _>(|_, _| {});
        s.handle_raw(2, 1, Arc::new(|_, b| Ok(b.to_vec())));
        assert_eq!(kind(&s, TestService::ID, 1), "unary");
        assert_eq!(kind(&s, 1, 2), "stream");
        assert_eq!(kind(&s, 2, 1), "unary");
        assert_eq!(kind(&s, 3, 1), "unknown service");
        assert_eq!(format!("{s:?}"), "Services { ids: [1, 2] }");
    }
}
