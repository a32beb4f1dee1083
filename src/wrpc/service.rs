//! Typed services: define a service's ids and message types once with
//! [`wrpc_service!`](crate::wrpc_service), then call with [`Peer::call`](super::Peer::call)
//! and serve with [`Services::handle`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::peer::Peer;
use super::stream::InboundStream;

/// One RPC of a service: its ids and its request and response types.
pub trait Rpc: 'static {
    /// The service id (`+wrpc:service-id`), above 0.
    const SERVICE_ID: u32;
    /// The rpc id within the service (`+wrpc:rpc-id`), above 0.
    const RPC_ID: u32;
    /// `Service.Rpc`, for logs and errors.
    const NAME: &'static str;
    /// The request message.
    type Request: prost::Message + Default + Send + 'static;
    /// The response message.
    type Response: prost::Message + Default + Send + 'static;
}

/// Defines a service: a unit struct with the service id, and one unit struct per rpc
/// implementing [`Rpc`].
///
/// ```
/// use dpspec::wrpc_service;
/// # #[derive(Clone, PartialEq, prost::Message)] pub struct EchoRequest { #[prost(string, tag = "1")] pub s: String }
/// # #[derive(Clone, PartialEq, prost::Message)] pub struct EchoResponse { #[prost(string, tag = "1")] pub s: String }
/// wrpc_service! {
///     /// The echo service of the wRPC examples.
///     pub service EchoService = 1 {
///         /// Answers "echo-" + s.
///         rpc Echo = 1 (EchoRequest) -> EchoResponse;
///     }
/// }
/// assert_eq!(EchoService::ID, 1);
/// use dpspec::wrpc::Rpc;
/// assert_eq!(<Echo as Rpc>::RPC_ID, 1);
/// ```
#[macro_export]
macro_rules! wrpc_service {
    (
        $(#[$meta:meta])*
        $vis:vis service $service:ident = $id:literal {
            $(
                $(#[$rmeta:meta])*
                rpc $rpc:ident = $rid:literal ($req:ty) -> $resp:ty;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $service;

        impl $service {
            /// The service id.
            pub const ID: u32 = $id;
        }

        $(
            $(#[$rmeta])*
            #[derive(Debug, Clone, Copy)]
            $vis struct $rpc;

            impl $crate::wrpc::Rpc for $rpc {
                const SERVICE_ID: u32 = $id;
                const RPC_ID: u32 = $rid;
                const NAME: &'static str = concat!(stringify!($service), ".", stringify!($rpc));
                type Request = $req;
                type Response = $resp;
            }
        )*
    };
}

/// What a handler knows about the call it serves.
#[derive(Clone)]
pub struct Context {
    /// The connection the request came on; handlers may call back on it.
    pub peer: Peer,
    /// The request's seq.
    pub seq: u32,
    /// The request's deadline, Unix seconds.
    pub deadline: u32,
    /// The service id.
    pub svc_id: u32,
    /// The rpc id.
    pub rpc_id: u32,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("seq", &self.seq)
            .field("svc_id", &self.svc_id)
            .field("rpc_id", &self.rpc_id)
            .finish()
    }
}

/// A handler's failure: the text goes to the caller in an ERROR of type GENERIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError(pub String);

impl HandlerError {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> HandlerError {
        HandlerError(message.into())
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `handler` on the bytes of `R`'s request: decoded from the message's buffer (no copy of
/// its `bytes` fields), answered, encoded.
fn typed<R, F>(handler: F) -> Arc<BodyHandler>
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

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError(e.to_string())
    }
}

/// A handler working on encoded bytes.
pub type RawHandler = dyn Fn(&Context, &[u8]) -> Result<Vec<u8>, HandlerError> + Send + Sync;
/// What the table holds for a unary RPC: a handler given the request's bytes as a slice
/// of the received message, which a typed handler decodes without copying its `bytes`
/// fields (a SyncConfig's config).
pub(crate) type BodyHandler =
    dyn Fn(&Context, &Bytes) -> Result<Vec<u8>, HandlerError> + Send + Sync;
/// A handler for streams begun by the peer.
pub type StreamHandler = dyn Fn(&Context, InboundStream) + Send + Sync;

#[derive(Clone)]
pub(crate) enum Entry {
    Unary(Arc<BodyHandler>),
    /// Runs on the reader thread itself, without the hand-off to a worker.
    Inline(Arc<BodyHandler>),
    Stream(Arc<StreamHandler>),
}

/// The services one connection serves: a table from (service id, rpc id) to handler.
/// It can change while the connection runs (the CP adds the config service only after
/// negotiation). Clone it to share one table between connections.
#[derive(Clone, Default)]
pub struct Services {
    table: Arc<RwLock<HashMap<u32, HashMap<u32, Entry>>>>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<_> = table.keys().copied().collect();
        ids.sort_unstable();
        f.debug_struct("Services").field("ids", &ids).finish()
    }
}

/// What the table says about a (service, rpc) pair.
pub(crate) enum Lookup {
    Found(Entry),
    UnknownService,
    UnknownRpc,
}

impl Services {
    /// An empty table: every request gets INVALID_SERVICE.
    pub fn new() -> Services {
        Services::default()
    }

    /// A new table holding the same handlers as this one, changed independently.
    pub fn snapshot(&self) -> Services {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        Services {
            table: Arc::new(RwLock::new(table)),
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
        self.write().entry(svc_id).or_default();
        self
    }

    /// Whether any handler or declaration exists for the service.
    pub fn serves(&self, svc_id: u32) -> bool {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&svc_id)
    }

    pub(crate) fn lookup(&self, svc_id: u32, rpc_id: u32) -> Lookup {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        match table.get(&svc_id) {
            None => Lookup::UnknownService,
            Some(rpcs) => match rpcs.get(&rpc_id) {
                None => Lookup::UnknownRpc,
                Some(entry) => Lookup::Found(entry.clone()),
            },
        }
    }

    fn insert(&self, svc_id: u32, rpc_id: u32, entry: Entry) -> &Self {
        self.write()
            .entry(svc_id)
            .or_default()
            .insert(rpc_id, entry);
        self
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, HashMap<u32, Entry>>> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }
}
