//! What the control plane reports as it runs: one [`CpEvent`] per step of each data
//! plane's life, on a bounded channel that drops events when nobody reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::services::config::{PluginVersion, SyncConfigError};
use crate::services::gate::SyncStatus;
use crate::Protocol;

/// Default number of events kept for a slow reader; past it new events are dropped.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// One thing that happened on the control plane. `conn` identifies a connection (a data
/// plane may hold several); `node_id` is the data plane's id from its upgrade request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CpEvent {
    /// The control plane listens on this address (the real port when bound to port 0).
    Listening {
        /// The bound address.
        addr: SocketAddr,
    },
    /// A data plane passed TLS and the upgrade.
    DpConnected {
        /// The connection.
        conn: u64,
        /// The data plane's node id.
        node_id: String,
        /// Its address.
        addr: SocketAddr,
        /// The protocol it speaks.
        protocol: Protocol,
    },
    /// NegotiateServices was answered.
    Negotiated {
        /// The connection.
        conn: u64,
        /// The data plane's node id.
        node_id: String,
        /// `Ok` with the accepted services as `name version`, or `Err` with the
        /// `error_message` sent.
        outcome: Result<Vec<String>, String>,
    },
    /// The data plane reported its plugins: wRPC ReportMetadata (answered `done`), or a
    /// JSON `basic_info` that passed the version gate. Pushes start here.
    Metadata {
        /// The connection.
        conn: u64,
        /// The data plane's node id.
        node_id: String,
        /// The plugins it reported.
        plugins: Vec<PluginVersion>,
    },
    /// A SyncConfig was sent.
    ConfigPushed {
        /// The connection.
        conn: u64,
        /// The data plane's node id.
        node_id: String,
        /// The config version.
        version: u64,
        /// The config hash.
        hash: String,
    },
    /// A push was skipped and the connection kept: the data plane is not compatible
    /// (plugin gate: status `plugin_set_incompatible` or `plugin_version_incompatible`),
    /// or the JSON frame is over the data plane's limit (its status is left as it was:
    /// Kong has none for this, it resends forever and the data plane reconnects each time).
    ConfigSkipped {
        /// The connection.
        conn: u64,
        /// The data plane's node id.
        node_id: String,
        /// The version not sent.
        version: u64,
        /// The data plane's status.
        status: SyncStatus,
        /// Why.
        reason: String,
    },
    /// The data plane accepted a config.
    ConfigAcked {
        /// The connection.
        conn: u64,
        /// The data plane's node id.
        node_id: String,
        /// The version accepted.
        version: u64,
    },
    /// The data plane refused a config, or the push failed.
    ConfigRejected {
        /// The connection.
        conn: u64,
        /// The data plane's node id.
        node_id: String,
        /// The version refused.
        version: u64,
        /// The data plane's errors (empty when the call itself failed).
        errors: Vec<SyncConfigError>,
        /// A summary.
        reason: String,
    },
    /// A data plane failed the version gate and is being disconnected: on `/v1/outlet`
    /// right after `basic_info`, as Kong does (status `kong_version_incompatible`). A wRPC
    /// data plane's gate failure is a [`CpEvent::Negotiated`] error instead.
    Incompatible {
        /// The connection.
        conn: u64,
        /// The data plane's node id.
        node_id: String,
        /// Its status.
        status: SyncStatus,
        /// Why.
        reason: String,
    },
    /// A ping was received: wRPC PingCP, or a JSON WebSocket ping.
    Ping {
        /// The connection.
        conn: u64,
        /// The data plane's node id.
        node_id: String,
        /// The hash the data plane runs.
        hash: String,
    },
    /// A connection ended.
    DpDisconnected {
        /// The connection.
        conn: u64,
        /// The data plane's node id.
        node_id: String,
        /// How it ended.
        reason: String,
    },
}

/// The sending side, shared by the control plane's threads.
pub(crate) struct Events {
    tx: Sender<CpEvent>,
    rx: Receiver<CpEvent>,
    dropped: AtomicU64,
}

impl Events {
    pub(crate) fn new(capacity: usize) -> Events {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        Events {
            tx,
            rx,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `event`, or drops it when the queue is full: never blocks, never grows.
    pub(crate) fn emit(&self, event: CpEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    log::debug!("the event queue is full: events are dropped until it is read");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub(crate) fn receiver(&self) -> Receiver<CpEvent> {
        self.rx.clone()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_instead_of_growing() {
        let events = Events::new(2);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for _ in 0..5 {
            events.emit(CpEvent::Listening { addr });
        }
        assert_eq!(events.receiver().len(), 2);
        assert_eq!(events.dropped(), 3);
    }
}
