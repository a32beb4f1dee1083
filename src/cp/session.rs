//! What every data plane connection shares, whatever protocol it speaks: admission (the
//! per-node cap), registration and its events, the deadline for the first report, pings
//! and their bookkeeping, and the end. The drivers ([`super::wrpc`], [`super::json`])
//! call these and only turn them into messages.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use super::events::CpEvent;
use super::push::{self, Link};
use super::registry::{Entry, NodeInfo, PushOutcome};
use super::{Shared, CLOSE_POLICY};
use crate::channel::{Channel, ChannelConfig, Ended, Reader, Role};
use crate::http::{HandOff, NodeIdentity};
use crate::services::gate::SyncStatus;
use crate::upgrade::{Rejection, UpgradeHandler, UpgradeRequest, Upgraded};
use crate::Protocol;

/// The admission check of every upgrade: the node's connection cap (`429` past it).
pub(crate) fn admit(shared: &Shared, req: &UpgradeRequest) -> Result<(), Rejection> {
    let held = shared.registry.count_node(&req.node.node_id);
    if held >= shared.max_per_node {
        log::warn!(
            "refusing node {}: it already holds {held} connections (the cap is {})",
            req.node.node_id,
            shared.max_per_node
        );
        return Err(too_many(&req.node.node_id, held, shared.max_per_node));
    }
    Ok(())
}

fn too_many(node_id: &str, held: usize, cap: usize) -> Rejection {
    Rejection::new(
        429,
        format!(
            "node {node_id} already holds {held} connections to this control plane, \
             the most allowed is {cap}; close one or retry later"
        ),
    )
    .with_header("Retry-After", "5")
}

/// The control plane's [`UpgradeHandler`] for one protocol's path: admission is shared,
/// and `run` is that protocol driver's connection.
pub(crate) struct Handler {
    shared: Weak<Shared>,
    run: fn(&Arc<Shared>, Upgraded),
}

impl Handler {
    pub(crate) fn new(shared: &Arc<Shared>, run: fn(&Arc<Shared>, Upgraded)) -> Handler {
        Handler {
            shared: Arc::downgrade(shared),
            run,
        }
    }
}

impl UpgradeHandler for Handler {
    fn admit(&self, req: &UpgradeRequest) -> Result<(), Rejection> {
        match self.shared.upgrade() {
            Some(shared) => admit(&shared, req),
            None => Err(shutting_down()),
        }
    }

    fn upgraded(&self, up: Upgraded) {
        if let Some(shared) = self.shared.upgrade() {
            (self.run)(&shared, up);
        }
    }
}

/// A new connection, ready to be served by its driver.
pub(crate) struct Opened {
    pub(crate) conn: u64,
    pub(crate) node: NodeIdentity,
    pub(crate) addr: SocketAddr,
    pub(crate) channel: Channel,
    pub(crate) reader: Reader,
    /// Serves the connection on a fresh thread once it is set up.
    pub(crate) hand_off: HandOff,
}

/// Gives an upgraded connection its id and its channel (settings `base`, labelled for
/// logs); `None`, logged, when the channel cannot be made.
pub(crate) fn open(shared: &Shared, up: Upgraded, base: &ChannelConfig) -> Option<Opened> {
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let mut cfg = base.clone();
    cfg.label = format!("dp {} {} #{conn}", up.node.node_id, up.peer_addr);
    match Channel::new(up.session, up.sock, up.leftover, Role::Server, cfg) {
        Ok((channel, reader)) => Some(Opened {
            conn,
            node: up.node,
            addr: up.peer_addr,
            channel,
            reader,
            hand_off: up.hand_off,
        }),
        Err(e) => {
            log::warn!(
                "connection from {} failed: {}",
                up.peer_addr,
                crate::error::Chain(&e)
            );
            None
        }
    }
}

/// The control plane's answer when it is going away.
pub(crate) fn shutting_down() -> Rejection {
    Rejection::new(503, "the control plane is shutting down")
}

/// Registers connection `conn` of `node` with its `link`, emits `DpConnected`, and starts
/// the deadline for its first report (`what`, e.g. `ReportMetadata`). False (and the
/// connection torn down) when the node is over its cap: several connections of one node
/// passed admit at once.
pub(crate) fn register(
    shared: &Arc<Shared>,
    conn: u64,
    node: &NodeIdentity,
    addr: SocketAddr,
    protocol: Protocol,
    link: Arc<dyn Link>,
    what: &'static str,
) -> bool {
    let info = NodeInfo {
        conn,
        node_id: node.node_id.clone(),
        hostname: node.hostname.clone(),
        version: node.version.clone(),
        protocol,
        address: addr,
        connected_since: SystemTime::now(),
        last_seen: None,
        negotiated: false,
        metadata_reported: false,
        plugins: Vec::new(),
        labels: Default::default(),
        reported_hash: None,
        last_push: None,
        sync_status: SyncStatus::Unknown,
        status_reason: None,
    };
    if let Err(entry) = shared
        .registry
        .insert(Entry::new(info, link.clone()), shared.max_per_node)
    {
        let rej = too_many(&node.node_id, shared.max_per_node, shared.max_per_node);
        log::warn!("closing {}: {}", entry.info.address, rej.reason);
        link.channel().abort();
        return false;
    }
    shared.events.emit(CpEvent::DpConnected {
        conn,
        node_id: node.node_id.clone(),
        addr,
        protocol,
    });
    log::info!(
        "data plane {} ({}, {}) connected from {addr} over {protocol} as connection {conn}",
        node.node_id,
        node.hostname,
        node.version,
    );
    if shared.stopping.load(Ordering::SeqCst) {
        // Registered after shutdown collected the connections to close: close it the same
        // way; its reader waits at most the close timeout for the reply.
        link.channel().start_close(
            crate::channel::close_code::NORMAL,
            "control plane shutting down",
        );
    } else {
        let at = Instant::now() + shared.metadata_deadline;
        shared.at(at, move |shared| first_report_late(shared, conn, what));
    }
    true
}

/// The first-report deadline of `conn` has passed (on the timer thread): if the report
/// has still not come, queue the close frame and schedule the abort.
fn first_report_late(shared: &Arc<Shared>, conn: u64, what: &'static str) {
    let late = shared.registry.update(conn, |e| {
        (!e.info.metadata_reported && e.info.sync_status != SyncStatus::KongVersionIncompatible)
            .then(|| e.info.node_id.clone())
    });
    let Some(Some(node_id)) = late else {
        return;
    };
    log::warn!(
        "data plane {node_id} (connection {conn}) sent no {what} within {:?}; \
         disconnecting it",
        shared.metadata_deadline
    );
    shared.close_conn(conn, CLOSE_POLICY, &format!("no {what} in time"));
}

/// A ping from `conn` reporting `hash`: records it and when it came, emits `Ping`,
/// completes a push with this hash as `Accepted` (`ConfigAcked`) when the protocol has no
/// answer of its own ([`Link::ping_accepts`]), and schedules a push that was put off.
pub(crate) fn ping(shared: &Arc<Shared>, conn: u64, hash: String) {
    let seen = shared.registry.update(conn, |e| {
        e.info.last_seen = Some(SystemTime::now());
        e.alive = Instant::now();
        e.info.reported_hash = Some(hash.clone());
        let mut acked = None;
        let ping_accepts = e.link.ping_accepts();
        if let Some(p) = e.info.last_push.as_mut() {
            let open = matches!(p.outcome, PushOutcome::Sent | PushOutcome::InFlight);
            if ping_accepts && open && p.hash == hash {
                p.outcome = PushOutcome::Accepted;
                acked = Some(p.version);
            }
        }
        (e.info.node_id.clone(), acked, e.deferred)
    });
    let Some((node_id, acked, deferred)) = seen else {
        return;
    };
    log::debug!("ping from {node_id} (connection {conn}), hash {hash}");
    shared.events.emit(CpEvent::Ping {
        conn,
        node_id: node_id.clone(),
        hash,
    });
    if let Some(version) = acked {
        shared.events.emit(CpEvent::ConfigAcked {
            conn,
            node_id,
            version,
        });
    }
    if deferred {
        push::schedule(shared, conn);
    }
}

/// Connection `conn` of `node_id` has ended: forget it, log and emit `DpDisconnected`.
/// Never inlined: it runs once, last, on the connection's thread, and inlined its
/// locals would sit in the frame under the reader all the connection's life, deepening
/// the stack every idle connection keeps resident.
#[inline(never)]
pub(crate) fn ended(shared: &Shared, conn: u64, node_id: &str, ended: &Ended) {
    shared.registry.remove(conn);
    log::info!("data plane {node_id} (connection {conn}) disconnected: {ended}");
    shared.events.emit(CpEvent::DpDisconnected {
        conn,
        node_id: node_id.to_string(),
        reason: ended.to_string(),
    });
}
