//! The wRPC driver (`/v1/wrpc`, Kong 3.0 and 3.1): one data plane connection from the
//! upgrade to its end, and how a config goes to it (a SyncConfig call).
//!
//! The connection's thread (handed over by the listener) becomes its reader. The
//! connection serves only NegotiateServices at first; a successful negotiation adds the
//! config service (before it, a config call gets INVALID_SERVICE, as from Kong's Go CP).
//! SyncConfig is declared but has no handler here: a data plane calling it gets
//! INVALID_RPC. ReportMetadata enables pushes; PingCP feeds the shared ping bookkeeping.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use prost::encoding::{encoded_len_varint, int32, key_len};
use prost::Message;

use super::events::CpEvent;
use super::push::{self, CurrentConfig, Link, Ready, Sent};
use super::registry::PushOutcome;
use super::{session, Shared};
use crate::channel::{Channel, Written};
use crate::config::EncodedConfig;
use crate::services::config::report_metadata_response::Response as MetadataAnswer;
use crate::services::config::{
    Capability, GetCapabilitiesResponse, PingCPResponse, ReportMetadataResponse, SyncConfigRequest,
    SyncConfigResponse,
};
use crate::services::gate::SyncStatus;
use crate::services::negotiation::CONFIG_SERVICE_NAME;
use crate::services::{
    ConfigService, GetCapabilities, NegotiateServices, PingCP, ReportMetadata, SyncConfig,
};
use crate::upgrade::Upgraded;
use crate::wrpc::envelope::PayloadV1;
use crate::wrpc::pending::Answer;
use crate::wrpc::{HandlerError, Peer, PeerConfig, Rpc, Services, WrpcError};
use crate::{Error, Protocol, Result};

/// A wRPC connection as the push scheduler sees it: its peer.
struct WrpcLink(Peer);

impl Link for WrpcLink {
    fn channel(&self) -> &Channel {
        self.0.channel()
    }

    fn prepare(&self, config: &CurrentConfig) -> Ready {
        // The size was checked when the config was stored.
        match config.wrpc {
            Some(_) => Ready::Now,
            None => Ready::Skip(None, "the config was stored while wRPC was off".into()),
        }
    }

    fn send(
        &self,
        shared: &Arc<Shared>,
        conn: u64,
        node_id: &str,
        config: &Arc<CurrentConfig>,
        on_written: Written,
    ) -> Result<Sent, String> {
        let Some(body) = config.wrpc.clone() else {
            return Err("no SyncConfig was encoded for this config".into());
        };
        let version = config.version;
        let weak = Arc::downgrade(shared);
        let node = node_id.to_string();
        let seq = self
            .0
            .call_async(
                SyncConfig::SERVICE_ID,
                SyncConfig::RPC_ID,
                body,
                shared.sync_timeout,
                Some(on_written),
                move |answer| {
                    if let Some(shared) = weak.upgrade() {
                        complete(&shared, conn, &node, version, answer);
                    }
                },
            )
            .map_err(|e| e.to_string())?;
        // The deadline covers sending and answering: it starts as the request is queued.
        shared.at(Instant::now() + shared.sync_timeout, move |shared| {
            if let Some(link) = shared.registry.update(conn, |e| e.link.clone()) {
                if let Some(WrpcLink(peer)) = link.as_any().downcast_ref::<WrpcLink>() {
                    peer.expire(seq, SyncConfig::NAME);
                }
            }
        });
        Ok(Sent::Awaiting)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The size of the whole WebSocket message carrying a SyncConfig request body of
/// `body_len` bytes, with seq and deadline at their widest (computed, nothing copied).
pub(crate) fn envelope_size(body_len: usize) -> usize {
    let empty = PayloadV1::request(
        SyncConfig::SERVICE_ID,
        SyncConfig::RPC_ID,
        u32::MAX,
        u32::MAX,
        Vec::new(),
    );
    // The empty element is its key and a one-byte length; the real one has a longer
    // length and the body.
    let inner = empty.encoded_len() - 1 + encoded_len_varint(body_len as u64) + body_len;
    int32::encoded_len(1, &1) + key_len(2) + encoded_len_varint(inner as u64) + inner
}

/// The SyncConfig request of config `version`, encoded once for every wRPC data plane,
/// unless its message would be over the max message size.
pub(crate) fn sync_request(
    shared: &Shared,
    version: u64,
    encoded: &EncodedConfig,
) -> Result<Arc<[u8]>> {
    let req = SyncConfigRequest {
        config: bytes::Bytes::copy_from_slice(&encoded.gzipped),
        version,
        config_hash: encoded.hashes.config.clone(),
        hashes: Some(encoded.hashes.to_granular()),
    };
    let body: Arc<[u8]> = req.encode_to_vec().into();
    drop(req);
    let size = envelope_size(body.len());
    let max = shared.channel.max_message_size;
    if size > max {
        return Err(Error::InvalidInput(format!(
            "the config's SyncConfig message would be {size} bytes (gzipped config {} bytes, \
             JSON {} bytes), over the max message size of {max} bytes; nothing was sent. \
             Make the config smaller, or raise max_message_size here and \
             cluster_max_payload on the data planes (or switch wRPC off if no data plane \
             speaks it)",
            encoded.gzipped.len(),
            encoded.json_len
        )));
    }
    Ok(body)
}

/// A SyncConfig answer came, or the call failed: map it to the push's outcome. Runs
/// where the answer lands: keep it quick.
fn complete(shared: &Arc<Shared>, conn: u64, node_id: &str, version: u64, answer: Answer) {
    let answer = answer.and_then(|bytes| {
        SyncConfigResponse::decode(&bytes[..]).map_err(|e| WrpcError::Decode {
            name: SyncConfig::NAME.into(),
            message: e.to_string(),
        })
    });
    let node_id = node_id.to_string();
    let (outcome, event) = match answer {
        Ok(resp) if resp.accepted => (
            PushOutcome::Accepted,
            CpEvent::ConfigAcked {
                conn,
                node_id,
                version,
            },
        ),
        Ok(resp) => {
            let reason = format!("refused with {} error(s)", resp.errors.len());
            (
                PushOutcome::Rejected(resp.errors.clone()),
                CpEvent::ConfigRejected {
                    conn,
                    node_id,
                    version,
                    errors: resp.errors,
                    reason,
                },
            )
        }
        Err(e) => {
            let reason = e.to_string();
            if matches!(e, WrpcError::Timeout { .. }) {
                log::warn!(
                    "{node_id} (connection {conn}) did not answer SyncConfig {version} \
                     in {:?}; disconnecting it",
                    shared.sync_timeout
                );
                if let Some(link) = shared.registry.update(conn, |e| e.link.clone()) {
                    link.channel().abort();
                }
            } else {
                log::info!("push of config {version} to {node_id} failed: {reason}");
            }
            (
                PushOutcome::Failed(reason.clone()),
                CpEvent::ConfigRejected {
                    conn,
                    node_id,
                    version,
                    errors: Vec::new(),
                    reason,
                },
            )
        }
    };
    push::finish(shared, conn, version, outcome, Some(event));
}

/// Sets one connection up on this thread, then serves it on a fresh one until it ends
/// (see [`HandOff`](crate::http::HandOff)).
pub(crate) fn run(shared: &Arc<Shared>, up: Upgraded) {
    let Some(session::Opened {
        conn,
        node,
        addr,
        channel,
        reader,
        hand_off,
    }) = session::open(shared, up, &shared.channel)
    else {
        return;
    };
    let services = Services::new();
    let weak = Arc::downgrade(shared);
    // Inline, on the reader: negotiation only reads the policy and records the outcome
    // (it never waits), and every data plane sends it once per connection, so in a
    // reconnect storm a worker hand-off here is two thread wake-ups per data plane.
    services.handle_inline::<NegotiateServices, _>(move |ctx, req| {
        let shared = weak
            .upgrade()
            .ok_or_else(|| HandlerError::new("shutting down"))?;
        Ok(negotiate(&shared, conn, &ctx.peer, req))
    });
    let peer = Peer::new(
        channel,
        services,
        shared.handler_pool.clone(),
        PeerConfig {
            call_timeout: shared.sync_timeout,
            max_pending_requests: shared.max_pending_requests,
            max_request_rate: Some(shared.max_request_rate),
        },
    );
    let link = Arc::new(WrpcLink(peer.clone()));
    if !session::register(
        shared,
        conn,
        &node,
        addr,
        Protocol::Wrpc,
        link,
        "ReportMetadata",
    ) {
        drop(reader);
        return;
    }
    let shared = shared.clone();
    hand_off.run(move || {
        let ended = peer.serve(reader);
        session::ended(&shared, conn, &node.node_id, &ended);
    });
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
/// All three run on the reader thread: they only record what came and queue a push,
/// never wait, and a ping is most of what a connected data plane ever sends, so serving
/// it there saves two thread wake-ups per ping (and a peer that pings at its rate limit
/// costs the worker pool nothing); ReportMetadata comes once per connection, which in a
/// reconnect storm is once per data plane at the same time.
fn add_config_service(shared: &Arc<Shared>, conn: u64, services: &Services) {
    services.declare(ConfigService::ID);
    services.handle_inline::<GetCapabilities, _>(|_, _| {
        Ok(GetCapabilitiesResponse {
            capabilities: vec![Capability::BulkUpdate as i32],
        })
    });
    let weak = Arc::downgrade(shared);
    services.handle_inline::<PingCP, _>(move |_, req| {
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
        session::ping(&shared, conn, req.hash);
        Ok(PingCPResponse {})
    });
    let weak = Arc::downgrade(shared);
    services.handle_inline::<ReportMetadata, _>(move |_, req| {
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
            push::schedule_here(&shared, conn);
        }
        Ok(ReportMetadataResponse {
            response: Some(MetadataAnswer::Ok("done".into())),
        })
    });
}
