//! What one connection holds. Three types refer to one another: a [`Peer`] holds the
//! [`Services`] it serves, whose handlers are given a [`Context`], which holds the
//! [`Peer`]. They are defined here together so that no file imports in a circle; what
//! they do lives in `peer.rs` (the Peer's calls and handle), `serve.rs` (its reader and
//! workers) and `service.rs` (registering handlers).

use std::fmt;
use std::sync::{Arc, Mutex};

use super::config::PeerConfig;
use super::fair::{Bucket, FairShare, Turns};
use super::pending::Pending;
use super::pool::WorkerPool;
use super::stream::Streams;
use super::table::HandlerTable;
use super::wire::Wire;
use crate::channel::Ended;

/// One end of a wRPC connection. Cheap to clone; all clones are the same connection.
#[derive(Clone)]
pub struct Peer {
    pub(crate) inner: Arc<Inner>,
}

/// Run once the connection has ended.
pub(crate) type EndHook = Box<dyn FnOnce(&Ended) + Send>;

/// The state of one connection, shared by its reader, its workers and its callers.
pub(crate) struct Inner {
    /// Sends, and numbers what is sent.
    pub(crate) wire: Wire,
    /// Our calls waiting for their answers.
    pub(crate) pending: Pending,
    /// What this end serves.
    pub(crate) services: Services,
    pub(crate) pool: Arc<WorkerPool>,
    /// The streams the peer has begun.
    pub(crate) streams: Streams,
    pub(crate) fair: FairShare,
    pub(crate) turns: Turns,
    /// Only the reader takes from it.
    pub(crate) bucket: Option<Mutex<Bucket>>,
    pub(crate) config: PeerConfig,
    /// `None` once they have run.
    pub(crate) end_hooks: Mutex<Option<Vec<EndHook>>>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("label", &self.inner.wire.label())
            .field("pending", &self.inner.pending.len())
            .finish()
    }
}

/// What a handler knows about the call it serves.
#[derive(Clone)]
#[non_exhaustive]
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

/// The services one end serves: a table from (service id, rpc id) to handler.
///
/// A `Services` is a value. [`Clone`] makes a copy: it starts with the same handlers,
/// and a handler added to or declared in one copy is not seen by the other (copies
/// share their handlers until one of them changes, so a clone per connection is
/// cheap). A [`Peer`] serves the table it was made with; to change what a running
/// connection serves (the control plane adds the config service only after
/// negotiation), change [`Peer::services`](super::Peer::services), which is that
/// connection's own table and takes effect at once.
#[derive(Clone, Default)]
pub struct Services {
    pub(crate) table: HandlerTable<Context>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("ids", &self.table.service_ids())
            .finish()
    }
}
