//! The registry of connected data planes: what each one said, what was pushed to it and
//! how it answered. One entry per connection (a data plane may hold several).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use super::link::Link;
use crate::services::config::{PluginVersion, SyncConfigError};
use crate::services::gate::SyncStatus;
use crate::Protocol;

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
    /// The protocol it speaks: wRPC (`/v1/wrpc`) or Kong's JSON protocol (`/v1/outlet`).
    pub protocol: Protocol,
    /// Its address.
    pub address: SocketAddr,
    /// When the upgrade completed.
    pub connected_since: SystemTime,
    /// When its last ping came (wRPC: PingCP; JSON: a WebSocket ping), if any.
    pub last_seen: Option<SystemTime>,
    /// wRPC: whether NegotiateServices succeeded (the config service is served from then
    /// on). JSON: whether `basic_info` passed the version gate.
    pub negotiated: bool,
    /// Whether it reported its plugins (wRPC: ReportMetadata; JSON: `basic_info`, once it
    /// passed the version gate): configs are pushed from then on.
    pub metadata_reported: bool,
    /// The plugins it reported.
    pub plugins: Vec<PluginVersion>,
    /// Its labels (JSON `basic_info.labels`, Kong 3.3+); empty when none were sent.
    pub labels: BTreeMap<String, String>,
    /// The hash it reported in its last ping (an empty JSON ping counts as 32 zeros).
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
#[non_exhaustive]
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
    /// Being sent: wRPC, no answer yet; JSON, not yet queued on the connection.
    InFlight,
    /// JSON only (the protocol has no answer): the frame was queued on the connection.
    /// It becomes [`PushOutcome::Accepted`] when a later ping reports its hash.
    Sent,
    /// wRPC: the data plane answered `accepted`. JSON: a ping reported the pushed hash.
    Accepted,
    /// The data plane refused it, with its errors.
    Rejected(Vec<SyncConfigError>),
    /// The call failed (timeout, connection lost, ERROR answer); the text says how.
    Failed(String),
}

/// A connection's entry: its public info and what the control plane needs to reach it.
pub(crate) struct Entry {
    pub(crate) info: NodeInfo,
    /// The connection's protocol driver: its channel, and how to push a config.
    pub(crate) link: Arc<dyn Link>,
    /// A push job runs for this connection (at most one at a time).
    pub(crate) pushing: bool,
    /// A push was put off (the connection still held the previous one): the data plane's
    /// next ping schedules it again.
    pub(crate) deferred: bool,
    /// When the data plane last showed it is alive (connected, or pinged): the ping
    /// timeout counts from it.
    pub(crate) alive: Instant,
}

impl Entry {
    /// A new connection's entry: nothing reported yet.
    pub(crate) fn new(info: NodeInfo, link: Arc<dyn Link>) -> Entry {
        Entry {
            info,
            link,
            pushing: false,
            deferred: false,
            alive: Instant::now(),
        }
    }
}

/// Every connected data plane, by connection id.
#[derive(Default)]
pub(crate) struct Registry {
    table: Mutex<Table>,
}

/// What the registry's lock guards: the entries, and how many of them each node holds.
#[derive(Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    /// Kept by `insert` and `remove`, so the cap check on each admit does not scan every
    /// entry under the lock (O(n^2) over a reconnect storm of n data planes).
    nodes: NodeCounts,
}

/// Connections per node id. A node with none has no key, so the map holds only connected
/// nodes.
#[derive(Debug, Default)]
struct NodeCounts(HashMap<String, usize>);

impl NodeCounts {
    /// How many connections `node` holds.
    fn get(&self, node: &str) -> usize {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// Counts one more connection of `node`, unless it already holds `cap`; true if it did.
    fn add(&mut self, node: &str, cap: usize) -> bool {
        match self.0.get_mut(node) {
            Some(n) if *n >= cap => false,
            Some(n) => {
                *n += 1;
                true
            }
            None if cap == 0 => false,
            None => {
                self.0.insert(node.to_string(), 1);
                true
            }
        }
    }

    /// Counts one connection of `node` less; its last one takes the node out of the map.
    fn remove(&mut self, node: &str) {
        if let Some(n) = self.0.get_mut(node) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(node);
            }
        }
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many connections `node_id` holds.
    pub(crate) fn count_node(&self, node_id: &str) -> usize {
        self.lock().nodes.get(node_id)
    }

    /// Adds `entry` unless its node already holds `cap` connections; then gives it back.
    pub(crate) fn insert(&self, entry: Entry, cap: usize) -> Result<(), Box<Entry>> {
        let mut table = self.lock();
        if !table.nodes.add(&entry.info.node_id, cap) {
            return Err(Box::new(entry));
        }
        // Connection ids are unique, but a replaced entry must not stay counted.
        if let Some(old) = table.entries.insert(entry.info.conn, entry) {
            table.nodes.remove(&old.info.node_id);
        }
        Ok(())
    }

    /// Takes out the entry of `conn`, if it is there.
    pub(crate) fn remove(&self, conn: u64) -> Option<Entry> {
        let mut table = self.lock();
        let entry = table.entries.remove(&conn)?;
        table.nodes.remove(&entry.info.node_id);
        Some(entry)
    }

    /// Runs `f` on the entry of `conn`, if it is still connected. `f` must not change
    /// `info.node_id`: the per-node count is keyed on it.
    pub(crate) fn update<R>(&self, conn: u64, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        self.lock().entries.get_mut(&conn).map(f)
    }

    /// A snapshot of every entry, in connection order.
    pub(crate) fn snapshot(&self) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self
            .lock()
            .entries
            .values()
            .map(|e| e.info.clone())
            .collect();
        nodes.sort_by_key(|n| n.conn);
        nodes
    }

    /// Every connection's link.
    pub(crate) fn links(&self) -> Vec<Arc<dyn Link>> {
        self.lock()
            .entries
            .values()
            .map(|e| e.link.clone())
            .collect()
    }

    /// Every connection id.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.lock().entries.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::NodeCounts;

    #[test]
    fn node_counts_rise_with_add_and_fall_with_remove() {
        let mut counts = NodeCounts::default();
        assert_eq!(counts.get("a"), 0);
        assert!(counts.add("a", 3));
        assert!(counts.add("a", 3));
        assert!(counts.add("b", 3));
        assert_eq!((counts.get("a"), counts.get("b")), (2, 1));
        counts.remove("a");
        assert_eq!((counts.get("a"), counts.get("b")), (1, 1));
    }

    #[test]
    fn a_nodes_last_connection_takes_it_out_of_the_index() {
        let mut counts = NodeCounts::default();
        assert!(counts.add("a", 1));
        assert!(counts.add("b", 1));
        counts.remove("a");
        assert_eq!(counts.get("a"), 0);
        assert!(!counts.0.contains_key("a"));
        assert_eq!(counts.0.len(), 1);
        // Removing again, or a node never seen, changes nothing.
        counts.remove("a");
        counts.remove("never");
        assert_eq!(counts.0.len(), 1);
        assert_eq!(counts.get("b"), 1);
    }

    #[test]
    fn node_counts_refuse_past_the_cap_and_free_a_slot_on_remove() {
        let mut counts = NodeCounts::default();
        assert!(!counts.add("a", 0));
        assert!(!counts.0.contains_key("a"));
        assert!(counts.add("a", 2));
        assert!(counts.add("a", 2));
        assert!(!counts.add("a", 2));
        assert_eq!(counts.get("a"), 2);
        assert!(counts.add("b", 2), "the cap is per node");
        counts.remove("a");
        assert!(counts.add("a", 2));
        assert_eq!(counts.get("a"), 2);
    }
}
