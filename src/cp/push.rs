//! The current config and its pushes.
//!
//! Per connection at most one push is in flight. A push step, on a push worker, takes the
//! newest config, stops if the data plane already has it, checks the plugin gate, and
//! queues the SyncConfig request on the connection; it returns at once, waiting neither
//! for the data plane to read nor to answer. The answer (on that connection's reader
//! thread) or its deadline (on the timer thread) completes the push and records the
//! outcome, and then the next step runs, which pushes again only if a newer config has
//! arrived meanwhile. A config superseded while a push was in flight is never sent, and
//! data planes that never answer hold no thread: only their deadline, after which they
//! are disconnected.

use std::sync::Arc;
use std::time::Instant;

use prost::encoding::{encoded_len_varint, int32, key_len};
use prost::Message;

use super::events::CpEvent;
use super::registry::{PushOutcome, PushRecord};
use super::Shared;
use crate::channel::lock;
use crate::config::{EncodedConfig, Hashes};
use crate::services::config::{SyncConfigRequest, SyncConfigResponse};
use crate::services::gate::{plugin_gate, SyncStatus};
use crate::services::SyncConfig;
use crate::wrpc::envelope::PayloadV1;
use crate::wrpc::pending::Answer;
use crate::wrpc::{Rpc, WrpcError};
use crate::{Error, Result};

/// A config ready to push: its version and the encoded SyncConfig request, made once.
pub(crate) struct CurrentConfig {
    pub(crate) version: u64,
    pub(crate) hashes: Hashes,
    /// The encoded [`SyncConfigRequest`], the same bytes for every data plane.
    pub(crate) body: Arc<[u8]>,
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

/// Assigns the next version to `encoded` and makes it the current config, unless its
/// message is over the max message size.
pub(crate) fn store(shared: &Shared, encoded: EncodedConfig) -> Result<u64> {
    let mut last = lock(&shared.last_version);
    let version = *last + 1;
    let req = SyncConfigRequest {
        config: encoded.gzipped.to_vec(),
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
             cluster_max_payload on the data planes",
            encoded.gzipped.len(),
            encoded.json_len
        )));
    }
    *last = version;
    *lock(&shared.current) = Some(Arc::new(CurrentConfig {
        version,
        hashes: encoded.hashes,
        body,
    }));
    drop(last);
    log::info!("config version {version} set");
    Ok(version)
}

/// Starts a push to every connection that is ready for one.
pub(crate) fn push_all(shared: &Arc<Shared>) {
    for conn in shared.registry.ids() {
        schedule(shared, conn);
    }
}

/// Starts a push job for `conn` unless one runs (that one will see the newest config).
pub(crate) fn schedule(shared: &Arc<Shared>, conn: u64) {
    let start = shared.registry.update(conn, |e| {
        if e.pushing || !e.info.metadata_reported {
            return false;
        }
        e.pushing = true;
        true
    });
    if start == Some(true) {
        submit(shared, conn);
    }
}

/// Queues the next push step of `conn` (whose `pushing` is set) on the push workers.
fn submit(shared: &Arc<Shared>, conn: u64) {
    let job_shared = shared.clone();
    let job = Box::new(move || run(&job_shared, conn));
    if shared.push_pool.try_submit(job).is_err() {
        log::warn!("push queue full or stopped; connection {conn} is not pushed to now");
        shared.registry.update(conn, |e| e.pushing = false);
    }
}

/// What one round of the push loop decided, under the registry lock.
enum Step {
    Done,
    Skip(String, SyncStatus, String, u64),
    Push(crate::wrpc::Peer, String, Arc<CurrentConfig>),
}

/// One push step: decide, and queue the SyncConfig request; never waits.
fn run(shared: &Arc<Shared>, conn: u64) {
    // Read the current config under the registry lock: set_config stores it before
    // taking this lock to schedule, so a newer config is never missed.
    let step = shared.registry.update(conn, |e| {
        let current = lock(&shared.current).clone();
        let Some(current) = current else {
            e.pushing = false;
            return Step::Done;
        };
        let done = e
            .info
            .last_push
            .as_ref()
            .is_some_and(|p| p.version >= current.version);
        if done || shared.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            e.pushing = false;
            return Step::Done;
        }
        if let Some(cp_plugins) = &shared.plugins {
            if let Err((status, reason)) = plugin_gate(cp_plugins, &e.info.plugins) {
                e.pushing = false;
                e.info.sync_status = status;
                e.info.status_reason = Some(reason.clone());
                return Step::Skip(e.info.node_id.clone(), status, reason, current.version);
            }
        }
        e.info.sync_status = SyncStatus::Normal;
        e.info.status_reason = None;
        e.info.last_push = Some(PushRecord {
            version: current.version,
            hash: current.hashes.config.clone(),
            outcome: PushOutcome::InFlight,
        });
        Step::Push(e.peer.clone(), e.info.node_id.clone(), current)
    });
    let (peer, node_id, current) = match step {
        None | Some(Step::Done) => return,
        Some(Step::Skip(node_id, status, reason, version)) => {
            log::warn!("not pushing config {version} to {node_id} (connection {conn}): {reason}");
            shared.events.emit(CpEvent::ConfigSkipped {
                conn,
                node_id,
                version,
                status,
                reason,
            });
            return;
        }
        Some(Step::Push(peer, node_id, current)) => (peer, node_id, current),
    };
    let version = current.version;
    shared.events.emit(CpEvent::ConfigPushed {
        conn,
        node_id: node_id.clone(),
        version,
        hash: current.hashes.config.clone(),
    });
    log::debug!("pushing config {version} to {node_id} (connection {conn})");
    let weak = Arc::downgrade(shared);
    let node = node_id.clone();
    let sent = peer.call_async(
        SyncConfig::SERVICE_ID,
        SyncConfig::RPC_ID,
        current.body.clone(),
        shared.sync_timeout,
        None,
        move |answer| {
            if let Some(shared) = weak.upgrade() {
                complete(&shared, conn, &node, version, answer);
            }
        },
    );
    match sent {
        // The deadline covers sending and answering: it starts as the request is queued.
        Ok(seq) => shared.at(Instant::now() + shared.sync_timeout, move |shared| {
            if let Some(peer) = shared.registry.update(conn, |e| e.peer.clone()) {
                peer.expire(seq, SyncConfig::NAME);
            }
        }),
        Err(e) => complete(shared, conn, &node_id, version, Err(e)),
    }
}

/// A push's answer came, or it failed: record the outcome, then take the next step (a
/// newer config may be waiting). Runs where the answer lands: keep it quick.
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
                if let Some(peer) = shared.registry.update(conn, |e| e.peer.clone()) {
                    peer.channel().abort();
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
    let failed = matches!(outcome, PushOutcome::Failed(_));
    shared.registry.update(conn, |e| {
        if let Some(p) = e.info.last_push.as_mut() {
            if p.version == version {
                p.outcome = outcome;
            }
        }
        if failed {
            e.pushing = false;
        }
    });
    shared.events.emit(event);
    if !failed {
        submit(shared, conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_size_is_the_encoded_length() {
        for n in [0, 1, 127, 128, 300, 16_383, 16_384, 200_000, 3_000_000] {
            let msg = PayloadV1::request(1, 2, u32::MAX, u32::MAX, vec![7u8; n]);
            let real = crate::wrpc::envelope::encode_envelope(&msg).len();
            assert_eq!(envelope_size(n), real, "body of {n} bytes");
        }
    }
}
