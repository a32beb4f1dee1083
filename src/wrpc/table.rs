//! The handler table without I/O: (service id, rpc id) to what serves it, and what a
//! lookup finds. Generic over the context a handler is given, so it is tested with `()`;
//! [`Services`](super::Services) is this table with [`Context`](super::Context).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use super::rpc::HandlerError;
use super::stream::InboundStream;

/// A unary handler as the table holds it: given the request's bytes as a slice of the
/// received message, which a typed handler decodes without copying its `bytes` fields
/// (a SyncConfig's config).
pub(crate) type UnaryFn<C> = dyn Fn(&C, &Bytes) -> Result<Vec<u8>, HandlerError> + Send + Sync;
/// A handler for a stream the peer begins.
pub(crate) type StreamFn<C> = dyn Fn(&C, InboundStream) + Send + Sync;

/// What serves one rpc.
pub(crate) enum Entry<C> {
    /// A unary handler run on a worker.
    Unary(Arc<UnaryFn<C>>),
    /// A unary handler run on the reader thread itself, without the hand-off to a worker.
    Inline(Arc<UnaryFn<C>>),
    /// A handler for streams the peer begins.
    Stream(Arc<StreamFn<C>>),
}

// Not derived: that would ask for `C: Clone`, and only the handles are cloned.
impl<C> Clone for Entry<C> {
    fn clone(&self) -> Self {
        match self {
            Entry::Unary(h) => Entry::Unary(h.clone()),
            Entry::Inline(h) => Entry::Inline(h.clone()),
            Entry::Stream(h) => Entry::Stream(h.clone()),
        }
    }
}

/// What the table says about a (service, rpc) pair.
pub(crate) enum Lookup<C> {
    /// The rpc is served.
    Found(Entry<C>),
    /// No handler and no declaration for the service: INVALID_SERVICE.
    UnknownService,
    /// The service is known, the rpc is not: INVALID_RPC.
    UnknownRpc,
}

type Map<C> = HashMap<u32, HashMap<u32, Entry<C>>>;

/// The table. It changes through `&self` (a connection's table changes while its reader
/// looks up in it), and a clone is a copy: it starts with the same handlers, and a change
/// to one is not seen by the other. Copies share the map until one of them changes (copy
/// on write), so cloning costs one reference count.
pub(crate) struct HandlerTable<C> {
    map: RwLock<Arc<Map<C>>>,
}

impl<C> Default for HandlerTable<C> {
    fn default() -> Self {
        HandlerTable {
            map: RwLock::new(Arc::default()),
        }
    }
}

impl<C> Clone for HandlerTable<C> {
    fn clone(&self) -> Self {
        HandlerTable {
            map: RwLock::new(self.read().clone()),
        }
    }
}

impl<C> fmt::Debug for HandlerTable<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerTable")
            .field("ids", &self.service_ids())
            .finish()
    }
}

impl<C> HandlerTable<C> {
    /// Serves (svc_id, rpc_id) with `entry`, replacing any earlier one.
    pub(crate) fn insert(&self, svc_id: u32, rpc_id: u32, entry: Entry<C>) {
        self.write()
            .entry(svc_id)
            .or_default()
            .insert(rpc_id, entry);
    }

    /// Makes a service known without adding handlers.
    pub(crate) fn declare(&self, svc_id: u32) {
        self.write().entry(svc_id).or_default();
    }

    /// Whether the service has a handler or a declaration.
    pub(crate) fn serves(&self, svc_id: u32) -> bool {
        self.read().contains_key(&svc_id)
    }

    /// The ids of the services known, in order.
    pub(crate) fn service_ids(&self) -> Vec<u32> {
        let mut ids: Vec<_> = self.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// What serves (svc_id, rpc_id), or which error its request gets.
    pub(crate) fn lookup(&self, svc_id: u32, rpc_id: u32) -> Lookup<C> {
        match self.read().get(&svc_id) {
            None => Lookup::UnknownService,
            Some(rpcs) => match rpcs.get(&rpc_id) {
                None => Lookup::UnknownRpc,
                Some(entry) => Lookup::Found(entry.clone()),
            },
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Arc<Map<C>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The map to change, copied first if another table still shares it.
    fn write(&self) -> MapWriter<'_, C> {
        MapWriter(self.map.write().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A write lock on the table's map that copies the map on first change when it is shared.
struct MapWriter<'a, C>(RwLockWriteGuard<'a, Arc<Map<C>>>);

impl<C> std::ops::Deref for MapWriter<'_, C> {
    type Target = Map<C>;
    fn deref(&self) -> &Map<C> {
        &self.0
    }
}

impl<C> std::ops::DerefMut for MapWriter<'_, C> {
    fn deref_mut(&mut self) -> &mut Map<C> {
        Arc::make_mut(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &'static str) -> Entry<()> {
        Entry::Unary(Arc::new(move |_: &(), _: &Bytes| {
            Ok(text.as_bytes().to_vec())
        }))
    }

    /// What a lookup found, in words, calling a unary handler to tell which one it is.
    fn found(table: &HandlerTable<()>, svc: u32, rpc: u32) -> String {
        match table.lookup(svc, rpc) {
            Lookup::UnknownService => "unknown service".into(),
            Lookup::UnknownRpc => "unknown rpc".into(),
            Lookup::Found(Entry::Unary(h)) => {
                String::from_utf8(h(&(), &Bytes::new()).unwrap()).unwrap()
            }
            Lookup::Found(Entry::Inline(_)) => "inline".into(),
            Lookup::Found(Entry::Stream(_)) => "stream".into(),
        }
    }

    #[test]
    fn an_empty_table_knows_no_service() {
        let table = HandlerTable::<()>::default();
        assert_eq!(found(&table, 1, 1), "unknown service");
        assert!(!table.serves(1));
    }

    #[test]
    fn a_declared_service_without_the_rpc_gets_unknown_rpc() {
        let table = HandlerTable::<()>::default();
        table.declare(2);
        assert!(table.serves(2));
        assert_eq!(found(&table, 2, 1), "unknown rpc");
        table.insert(3, 1, answer("a"));
        assert_eq!(found(&table, 3, 2), "unknown rpc");
        assert_eq!(found(&table, 4, 1), "unknown service");
    }

    #[test]
    fn a_later_handler_replaces_the_earlier() {
        let table = HandlerTable::<()>::default();
        table.insert(1, 1, answer("first"));
        table.insert(1, 1, answer("second"));
        assert_eq!(found(&table, 1, 1), "second");
        table.declare(1);
        assert_eq!(
            found(&table, 1, 1),
            "second",
            "declaring keeps the handlers"
        );
    }

    #[test]
    fn each_entry_kind_is_found_as_itself() {
        let table = HandlerTable::<()>::default();
        table.insert(
            1,
            1,
            Entry::Inline(Arc::new(|_: &(), _: &Bytes| Ok(vec![]))),
        );
        table.insert(1, 2, Entry::Stream(Arc::new(|_: &(), _| {})));
        assert_eq!(found(&table, 1, 1), "inline");
        assert_eq!(found(&table, 1, 2), "stream");
        assert_eq!(table.service_ids(), [1]);
    }

    #[test]
    fn a_change_to_a_clone_is_not_seen_by_the_original_nor_the_reverse() {
        let original = HandlerTable::<()>::default();
        original.insert(1, 1, answer("original"));
        let copy = original.clone();
        copy.insert(1, 1, answer("copy"));
        copy.insert(2, 1, answer("only in the copy"));
        original.declare(3);
        assert_eq!(found(&original, 1, 1), "original");
        assert_eq!(found(&original, 2, 1), "unknown service");
        assert_eq!(found(&copy, 1, 1), "copy");
        assert_eq!(found(&copy, 2, 1), "only in the copy");
        assert_eq!(found(&copy, 3, 1), "unknown service");
        assert_eq!(original.service_ids(), [1, 3]);
        assert_eq!(copy.service_ids(), [1, 2]);
    }
}
