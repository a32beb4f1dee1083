//! The registry of connected data planes: what each one said, what was pushed to it and
//! how it answered. One entry per connection (a data plane may hold several).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use crate::services::config::{PluginVersion, SyncConfigError};
use crate::services::gate::SyncStatus;
use crate::wrpc::Peer;

/// A snapshot of one connected data plane, as [`ControlPlane::nodes`](super::ControlPlane::nodes)
/// returns it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The connection's id, unique for the control plane's life (events carry it too).
    pub conn: u64,
    /// The data plane's node id (from its upgrade request).
    pub node_id: String,
    /// Its host name (upgrade request, or negotiation when the upgrade had none).
    pub hostname: String,
    /// Its Kong version.
    pub version: String,
    /// Its address.
    pub address: SocketAddr,
    /// When the upgrade completed.
    pub connected_since: SystemTime,
    /// When its last PingCP came, if any.
    pub last_seen: Option<SystemTime>,
    /// Whether NegotiateServices succeeded (the config service is served from then on).
    pub negotiated: bool,
    /// Whether ReportMetadata came (configs are pushed from then on).
    pub metadata_reported: bool,
    /// The plugins it reported.
    pub plugins: Vec<PluginVersion>,
    /// The hash it reported in its last PingCP.
    pub reported_hash: Option<String>,
    /// The last config push and its outcome.
    pub last_push: Option<PushRecord>,
    /// Its sync status, with Kong's names: `unknown` until negotiation succeeds, then
    /// `normal` unless a gate says otherwise.
    pub sync_status: SyncStatus,
    /// Why the status is not `normal`, when a gate said so.
    pub status_reason: Option<String>,
}

/// One config push to a data plane.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRecord {
    /// The config version pushed.
    pub version: u64,
    /// Its hash.
    pub hash: String,
    /// How it went.
    pub outcome: PushOutcome,
}

/// The outcome of a push.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// Sent, no answer yet.
    InFlight,
    /// The data plane answered `accepted`.
    Accepted,
    /// The data plane refused it, with its errors.
    Rejected(Vec<SyncConfigError>),
    /// The call failed (timeout, connection lost, ERROR answer); the text says how.
    Failed(String),
}

/// A connection's entry: its public info and what the control plane needs to reach it.
pub(crate) struct Entry {
    pub(crate) info: NodeInfo,
    pub(crate) peer: Peer,
    /// A push job runs for this connection (at most one at a time).
    pub(crate) pushing: bool,
}

/// Every connected data plane, by connection id.
#[derive(Default)]
pub(crate) struct Registry {
    map: Mutex<HashMap<u64, Entry>>,
}

impl Registry {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many connections `node_id` holds.
    pub(crate) fn count_node(&self, node_id: &str) -> usize {
        self.lock()
            .values()
            .filter(|e| e.info.node_id == node_id)
            .count()
    }

    /// Adds `entry` unless its node already holds `cap` connections; then gives it back.
    pub(crate) fn insert(&self, entry: Entry, cap: usize) -> Result<(), Box<Entry>> {
        let mut map = self.lock();
        let held = map
            .values()
            .filter(|e| e.info.node_id == entry.info.node_id)
            .count();
        if held >= cap {
            return Err(Box::new(entry));
        }
        map.insert(entry.info.conn, entry);
        Ok(())
    }

    pub(crate) fn remove(&self, conn: u64) -> Option<Entry> {
        self.lock().remove(&conn)
    }

    /// Runs `f` on the entry of `conn`, if it is still connected.
    pub(crate) fn update<R>(&self, conn: u64, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        self.lock().get_mut(&conn).map(f)
    }

    /// A snapshot of every entry, in connection order.
    pub(crate) fn snapshot(&self) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self.lock().values().map(|e| e.info.clone()).collect();
        nodes.sort_by_key(|n| n.conn);
        nodes
    }

    /// Every connection's peer.
    pub(crate) fn peers(&self) -> Vec<Peer> {
        self.lock().values().map(|e| e.peer.clone()).collect()
    }

    /// Every connection id.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.lock().keys().copied().collect()
    }
}
