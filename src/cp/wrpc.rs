//! One data plane connection, from the upgrade to its end.
//!
//! The connection's thread (handed over by the listener) becomes its reader. The
//! connection serves only NegotiateServices at first; a successful negotiation adds the
//! config service (before it, a config call gets INVALID_SERVICE, as from Kong's Go CP).
//! SyncConfig is declared but has no handler here: a data plane calling it gets
//! INVALID_RPC.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use super::events::CpEvent;
use super::registry::{Entry, NodeInfo};
use super::{push, Shared, CLOSE_POLICY};
use crate::channel::{Channel, Role};
use crate::services::config::report_metadata_response::Response as MetadataAnswer;
use crate::services::config::{
    Capability, GetCapabilitiesResponse, PingCPResponse, ReportMetadataResponse,
};
use crate::services::gate::SyncStatus;
use crate::services::negotiation::CONFIG_SERVICE_NAME;
use crate::services::{ConfigService, GetCapabilities, NegotiateServices, PingCP, ReportMetadata};
use crate::upgrade::{Rejection, UpgradeHandler, UpgradeRequest, Upgraded};
use crate::wrpc::{HandlerError, Peer, PeerConfig, Services};

/// The control plane's [`UpgradeHandler`].
pub(crate) struct Handler {
    shared: Weak<Shared>,
}

impl Handler {
    pub(crate) fn new(shared: &Arc<Shared>) -> Handler {
        Handler {
            shared: Arc::downgrade(shared),
        }
    }
}

impl UpgradeHandler for Handler {
    fn admit(&self, req: &UpgradeRequest) -> Result<(), Rejection> {
        let Some(shared) = self.shared.upgrade() else {
            return Err(Rejection::new(503, "the control plane is shutting down"));
        };
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

    fn upgraded(&self, up: Upgraded) {
        if let Some(shared) = self.shared.upgrade() {
            run(&shared, up);
        }
    }
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

/// Serves one connection on this thread until it ends.
fn run(shared: &Arc<Shared>, up: Upgraded) {
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let node = up.node;
    let mut cfg = shared.channel.clone();
    cfg.label = format!("dp {} {} #{conn}", node.node_id, up.peer_addr);
    let (channel, reader) = match Channel::new(up.session, up.sock, up.leftover, Role::Server, cfg)
    {
        Ok(pair) => pair,
        Err(e) => {
            log::warn!("connection from {} failed: {e}", up.peer_addr);
            return;
        }
    };
    let services = Services::new();
    let peer = Peer::new(
        channel,
        services.clone(),
        shared.handler_pool.clone(),
        PeerConfig {
            call_timeout: shared.sync_timeout,
            max_pending_requests: shared.max_pending_requests,
        },
    );
    let weak = Arc::downgrade(shared);
    services.handle::<NegotiateServices, _>(move |ctx, req| {
        let shared = weak
            .upgrade()
            .ok_or_else(|| HandlerError::new("shutting down"))?;
        Ok(negotiate(&shared, conn, &ctx.peer, req))
    });
    let entry = Entry {
        info: NodeInfo {
            conn,
            node_id: node.node_id.clone(),
            hostname: node.hostname.clone(),
            version: node.version.clone(),
            address: up.peer_addr,
            connected_since: SystemTime::now(),
            last_seen: None,
            negotiated: false,
            metadata_reported: false,
            plugins: Vec::new(),
            reported_hash: None,
            last_push: None,
            sync_status: SyncStatus::Unknown,
            status_reason: None,
        },
        peer: peer.clone(),
        pushing: false,
    };
    if let Err(entry) = shared.registry.insert(entry, shared.max_per_node) {
        // Several connections of one node passed admit at once; the cap still holds.
        let rej = too_many(&node.node_id, shared.max_per_node, shared.max_per_node);
        log::warn!("closing {}: {}", entry.info.address, rej.reason);
        drop(reader);
        peer.channel().abort();
        return;
    }
    shared.events.emit(CpEvent::DpConnected {
        conn,
        node_id: node.node_id.clone(),
        addr: up.peer_addr,
    });
    log::info!(
        "data plane {} ({}, {}) connected from {} as connection {conn}",
        node.node_id,
        node.hostname,
        node.version,
        up.peer_addr
    );
    if shared.stopping.load(Ordering::SeqCst) {
        // Registered after shutdown collected the connections to close: close it the same
        // way; this thread, about to read, waits at most the close timeout for the reply.
        peer.channel().start_close(
            crate::channel::close_code::NORMAL,
            "control plane shutting down",
        );
    } else {
        let at = std::time::Instant::now() + shared.metadata_deadline;
        shared.at(at, move |shared| metadata_deadline_passed(shared, conn));
    }
    let ended = peer.serve(reader);
    shared.registry.remove(conn);
    log::info!(
        "data plane {} (connection {conn}) disconnected: {ended}",
        node.node_id
    );
    shared.events.emit(CpEvent::DpDisconnected {
        conn,
        node_id: node.node_id,
        reason: ended.to_string(),
    });
}

/// The ReportMetadata deadline of `conn` has passed (on the timer thread): if the
/// metadata has still not come, queue the close frame and schedule the abort.
fn metadata_deadline_passed(shared: &Arc<Shared>, conn: u64) {
    let late = shared.registry.update(conn, |e| {
        (!e.info.metadata_reported).then(|| e.info.node_id.clone())
    });
    let Some(Some(node_id)) = late else {
        return;
    };
    log::warn!(
        "data plane {node_id} (connection {conn}) sent no ReportMetadata within {:?}; \
         disconnecting it",
        shared.metadata_deadline
    );
    shared.close_conn(conn, CLOSE_POLICY, "no ReportMetadata in time");
}

fn negotiate(
    shared: &Arc<Shared>,
    conn: u64,
    peer: &Peer,
    req: crate::services::negotiation::NegotiateServicesRequest,
) -> crate::services::negotiation::NegotiateServicesResponse {
    let result = shared.policy.negotiate(&req);
    let node_id = shared.registry.update(conn, |e| {
        if let Some(node) = &req.node {
            if e.info.hostname.is_empty() {
                e.info.hostname = node.hostname.clone();
            }
        }
        match &result {
            Ok(_) => {
                e.info.negotiated = true;
                e.info.sync_status = SyncStatus::Normal;
                e.info.status_reason = None;
            }
            Err(f) => {
                e.info.sync_status = f.status;
                e.info.status_reason = Some(f.message.clone());
            }
        }
        e.info.node_id.clone()
    });
    let node_id = node_id.unwrap_or_default();
    match result {
        Ok(resp) => {
            let config = resp
                .services_accepted
                .iter()
                .any(|s| s.name.eq_ignore_ascii_case(CONFIG_SERVICE_NAME));
            if config {
                add_config_service(shared, conn, peer.services());
            }
            let accepted = resp
                .services_accepted
                .iter()
                .map(|s| format!("{} {}", s.name, s.version))
                .collect();
            log::info!("data plane {node_id} (connection {conn}) negotiated: {accepted:?}");
            shared.events.emit(CpEvent::Negotiated {
                conn,
                node_id,
                outcome: Ok(accepted),
            });
            resp
        }
        Err(failure) => {
            log::warn!("data plane {node_id} (connection {conn}): {failure}");
            shared.events.emit(CpEvent::Negotiated {
                conn,
                node_id,
                outcome: Err(failure.message.clone()),
            });
            failure.to_response()
        }
    }
}

/// Serves the config service on this connection: GetCapabilities, PingCP and
/// ReportMetadata; SyncConfig is the control plane's to call, so it is left unhandled.
fn add_config_service(shared: &Arc<Shared>, conn: u64, services: &Services) {
    services.declare(ConfigService::ID);
    services.handle::<GetCapabilities, _>(|_, _| {
        Ok(GetCapabilitiesResponse {
            capabilities: vec![Capability::BulkUpdate as i32],
        })
    });
    let weak = Arc::downgrade(shared);
    services.handle::<PingCP, _>(move |_, req| {
        let shared = weak
            .upgrade()
            .ok_or_else(|| HandlerError::new("shutting down"))?;
        if req.hash.len() != 32 || !req.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            log::warn!(
                "connection {conn}: PingCP with an invalid hash {:?}",
                req.hash
            );
            return Err(HandlerError::new(format!(
                "invalid hash {:?}: it must be 32 hex characters (32 zeros before any config)",
                req.hash
            )));
        }
        let node_id = shared.registry.update(conn, |e| {
            e.info.last_seen = Some(SystemTime::now());
            e.info.reported_hash = Some(req.hash.clone());
            e.info.node_id.clone()
        });
        if let Some(node_id) = node_id {
            log::debug!("ping from {node_id} (connection {conn}), hash {}", req.hash);
            shared.events.emit(CpEvent::Ping {
                conn,
                node_id,
                hash: req.hash,
            });
        }
        Ok(PingCPResponse {})
    });
    let weak = Arc::downgrade(shared);
    services.handle::<ReportMetadata, _>(move |_, req| {
        let shared = weak
            .upgrade()
            .ok_or_else(|| HandlerError::new("shutting down"))?;
        let node_id = shared.registry.update(conn, |e| {
            e.info.metadata_reported = true;
            e.info.plugins = req.plugins.clone();
            e.info.node_id.clone()
        });
        if let Some(node_id) = node_id {
            log::info!(
                "data plane {node_id} (connection {conn}) reported {} plugins",
                req.plugins.len()
            );
            shared.events.emit(CpEvent::Metadata {
                conn,
                node_id,
                plugins: req.plugins,
            });
            push::schedule(&shared, conn);
        }
        Ok(ReportMetadataResponse {
            response: Some(MetadataAnswer::Ok("done".into())),
        })
    });
}
