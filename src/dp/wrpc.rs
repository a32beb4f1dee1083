//! A wRPC connection (`/v1/wrpc`, Kong 3.0 and 3.1) after the upgrade:
//! NegotiateServices, ReportMetadata, then PingCP at once and every interval while
//! SyncConfig is served.

use std::sync::{Arc, Mutex, Weak};

use crossbeam_channel::{select, Receiver, Sender};

use super::intake::Outcome;
use super::session::{self, Connection, SessionEnd};
use super::{DpEvent, Shared};
use crate::services::config::{
    report_metadata_response, PingCPRequest, ReportMetadataRequest, SyncConfigRequest,
};
use crate::services::negotiation::{check_response, dp_request};
use crate::services::{NegotiateServices, PingCP, ReportMetadata, SyncConfig};
use crate::wrpc::{Peer, PeerConfig, Services, WrpcError};

/// Runs a wRPC connection: serves SyncConfig, negotiates, reports and pings until it
/// ends or `shutdown` is disconnected.
pub(crate) fn run(shared: &Arc<Shared>, conn: Connection, shutdown: &Receiver<()>) -> SessionEnd {
    let Connection {
        channel,
        reader,
        cp_node_id,
        protocol,
    } = conn;
    let (ping_now_tx, ping_now_rx) = crossbeam_channel::bounded::<()>(1);
    let services = Services::new();
    register_sync_config(&services, Arc::downgrade(shared), ping_now_tx);
    let peer = Peer::new(
        channel,
        services,
        shared.pool.clone(),
        PeerConfig::default(),
    );
    let (ended_tx, ended_rx) = crossbeam_channel::bounded(1);
    peer.on_end(move |e| {
        let _ = ended_tx.try_send(e.to_string());
    });
    let reader = peer.spawn(reader);
    session::serve(shared, peer.channel(), protocol, cp_node_id, reader, || {
        converse(shared, &peer, shutdown, &ping_now_rx, &ended_rx)
    })
}

/// Negotiates, reports, then pings until the connection ends.
fn converse(
    shared: &Arc<Shared>,
    peer: &Peer,
    shutdown: &Receiver<()>,
    ping_now: &Receiver<()>,
    ended: &Receiver<String>,
) -> SessionEnd {
    let s = &shared.settings;
    let stopped = |e: &WrpcError| {
        if shared.stopping() {
            SessionEnd::stopping(false)
        } else {
            SessionEnd::failed(e.to_string(), false)
        }
    };
    let request = dp_request(&s.version, &s.hostname);
    let answer = match peer.call_timeout::<NegotiateServices>(&request, s.call_timeout) {
        Ok(a) => a,
        Err(e) => return stopped(&e),
    };
    let accepted = match check_response(&answer) {
        Ok(accepted) => accepted,
        Err(reason) => return SessionEnd::failed(format!("negotiation refused: {reason}"), false),
    };
    let services: Vec<(String, String)> =
        accepted.into_iter().map(|a| (a.name, a.version)).collect();
    if let Some(node) = &answer.node {
        if !node.id.is_empty() {
            shared.update(|st| st.cp_node_id = Some(node.id.clone()));
        }
    }
    shared.update(|st| st.negotiated = services.clone());
    shared.emit(DpEvent::Negotiated { services });

    let mut plugins = s.plugins.clone();
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    let report = ReportMetadataRequest { plugins };
    match peer.call_timeout::<ReportMetadata>(&report, s.call_timeout) {
        Ok(resp) => match resp.response {
            Some(report_metadata_response::Response::Ok(_)) => {}
            Some(report_metadata_response::Response::Error(e)) => {
                return SessionEnd::failed(format!("ReportMetadata refused: {e}"), true)
            }
            None => return SessionEnd::failed("ReportMetadata answered without ok".into(), true),
        },
        Err(e) => return stopped(&e),
    }

    loop {
        let hash = shared.applied_hash();
        match peer.call_timeout::<PingCP>(&PingCPRequest { hash: hash.clone() }, s.call_timeout) {
            Ok(_) => shared.emit(DpEvent::Pinged { hash }),
            Err(WrpcError::ConnectionClosed(e)) if !shared.stopping() => {
                return SessionEnd::failed(e.to_string(), true)
            }
            Err(_) if shared.stopping() => return SessionEnd::stopping(true),
            // A CP that does not answer a ping within the call timeout is gone (a cut or
            // black-holed network looks like this, with no FIN or RST ever coming): drop
            // the connection and reconnect rather than wait on it forever.
            Err(WrpcError::Timeout { .. }) => {
                let reason = format!(
                    "the CP did not answer PingCP within {:?}; dropping the connection",
                    s.call_timeout
                );
                log::warn!("{reason}");
                peer.channel().abort();
                return SessionEnd::failed(reason, true);
            }
            Err(e) => log::warn!("PingCP failed: {e}"),
        }
        select! {
            recv(shutdown) -> _ => return SessionEnd::stopping(true),
            recv(ended) -> why => {
                return SessionEnd::failed(why.unwrap_or_else(|_| "connection ended".into()), true)
            }
            recv(ping_now) -> _ => {}
            default(s.ping_interval) => {}
        }
    }
}

/// Serves SyncConfig on this connection: versions count per connection, so each
/// connection has its own "last version seen".
fn register_sync_config(services: &Services, shared: Weak<Shared>, ping_now: Sender<()>) {
    let last_version = Arc::new(Mutex::new(0u64));
    services.handle::<SyncConfig, _>(move |_, req: SyncConfigRequest| {
        let Some(shared) = shared.upgrade() else {
            return Err(crate::wrpc::HandlerError::new(
                "data plane is shutting down",
            ));
        };
        let (resp, outcome) = shared.intake.sync(&last_version, req);
        match outcome {
            Outcome::Applied(a) => {
                shared.emit(DpEvent::ConfigApplied {
                    version: a.version,
                    hash: a.hash,
                    from_cache: false,
                });
                let _ = ping_now.try_send(());
            }
            Outcome::Rejected { version, errors } => {
                shared.emit(DpEvent::ConfigRejected { version, errors })
            }
            Outcome::Unchanged | Outcome::Ignored => {}
        }
        Ok(resp)
    });
}
