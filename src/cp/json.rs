//! The JSON driver (`/v1/outlet`, Kong 2.x, 3.0 and 3.2 to 3.9): one data plane connection
//! from the upgrade to its end, and how a config goes to it (one `reconfigure` frame).
//!
//! What the data plane must do, in order, and how each breach is answered (Kong's rules,
//! `interop-json.md`; the messages themselves are in [`crate::outlet`]):
//!
//! | when | what is accepted | anything else |
//! |---|---|---|
//! | within the first-report deadline (5 s) | one binary frame, `basic_info` | text, ping, garbage: close 1008 (1007 for undecodable JSON); silence: close 1008 |
//! | right after `basic_info` | the version gate passes | status `kong_version_incompatible`, [`CpEvent::Incompatible`], close 1008 |
//! | from then on | pings (32-byte hash, or empty = 32 zeros), each answered with an empty pong; close | a ping of another length, any data frame: close 1008 |
//! | always | at least one ping per ping timeout (45 s) | close 1008 |
//! | always | unfragmented frames within the JSON frame limit | fragmented: 1008; too big: 1009, never buffered |
//!
//! Pushes: after `basic_info` and after every new config, the push scheduler asks this
//! driver to send the current config. The `reconfigure` frame is built once per config
//! for every JSON data plane and sent as one shared buffer. A frame above the data plane's
//! limit ([`crate::outlet::max_frame_for`] of its version, and at most the JSON frame
//! limit) is skipped with [`CpEvent::ConfigSkipped`] and the connection kept. There is no
//! answer in this protocol: the push completes as `Sent` when queued and becomes
//! `Accepted` when a ping reports its hash; a new config is not queued while the
//! connection still holds bytes of the previous one (it waits for the next ping), so one
//! push at most is in flight per data plane.
//!
//! Pongs from the data plane are ignored (a Kong control plane would close on them;
//! Kong data planes never send them).

use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use super::events::CpEvent;
use super::push::{self, CurrentConfig, Link, Ready, Sent};
use super::{session, Shared, CLOSE_POLICY};
use crate::channel::{close_code, lock, Channel, CloseRequest, Ended, MessageSink, Pong, Written};
use crate::outlet::reconfigure::timestamp;
use crate::outlet::EncodedReconfigure;
use crate::outlet::{check_ping, json_version_gate, max_frame_for, parse_basic_info, BasicInfo};
use crate::services::gate::SyncStatus;
use crate::upgrade::Upgraded;
use crate::Protocol;

/// A JSON connection as the push scheduler sees it.
struct JsonLink {
    channel: Channel,
    /// The largest frame this data plane takes: by its version, within the JSON limit.
    max_frame: usize,
    /// Its Kong version, for the skip reason.
    version: String,
}

impl Link for JsonLink {
    fn channel(&self) -> &Channel {
        &self.channel
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn ping_accepts(&self) -> bool {
        true
    }

    fn prepare(&self, config: &CurrentConfig) -> Ready {
        let Some(frame) = frame(config) else {
            return Ready::Skip(
                None,
                "the config was stored while the JSON protocol was off".into(),
            );
        };
        let len = frame.gzipped_len();
        if len > self.max_frame {
            return Ready::Skip(
                None,
                format!(
                    "the gzipped reconfigure frame is {len} bytes, over the {} bytes a Kong {} \
                     data plane accepts (cluster_max_payload: 4 MiB below 3.4, 16 MiB from \
                     3.4); not sent, the data plane keeps its config. Make the config \
                     smaller, or raise the limit on both sides",
                    self.max_frame, self.version
                ),
            );
        }
        let backlog = self.channel.backlog();
        if backlog > 0 {
            return Ready::Later(format!(
                "{backlog} bytes of the previous push are still being written"
            ));
        }
        Ready::Now
    }

    fn send(
        &self,
        _shared: &Arc<Shared>,
        _conn: u64,
        _node_id: &str,
        config: &Arc<CurrentConfig>,
        on_written: Written,
    ) -> Result<Sent, String> {
        let frame = frame(config).ok_or("no reconfigure frame was built for this config")?;
        self.channel
            .send_shared_then(&[], frame.gzipped.clone(), Some(on_written))
            .map(|()| Sent::Queued)
            .map_err(|e| crate::error::Chain(&e).to_string())
    }
}

/// The `reconfigure` frame of `config`: built by the first caller, from the config's JSON
/// text (which it then lets go), and shared by every JSON data plane.
fn frame(config: &CurrentConfig) -> Option<&EncodedReconfigure> {
    config
        .json
        .get_or_init(|| {
            let text = lock(&config.json_source).take()?;
            let ts = timestamp(SystemTime::now());
            match EncodedReconfigure::from_json(&text, config.hashes.clone(), ts) {
                Ok(frame) => {
                    log::debug!(
                        "config {}: reconfigure frame of {} bytes ({} bytes of JSON)",
                        config.version,
                        frame.gzipped_len(),
                        frame.json_len
                    );
                    Some(frame)
                }
                Err(e) => {
                    log::error!("config {}: no reconfigure frame: {e}", config.version);
                    None
                }
            }
        })
        .as_ref()
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
    }) = session::open(shared, up, &shared.json_channel)
    else {
        return;
    };
    let link = Arc::new(JsonLink {
        channel,
        max_frame: max_frame_for(&node.version).min(shared.json_channel.max_message_size),
        version: node.version.clone(),
    });
    if !session::register(
        shared,
        conn,
        &node,
        addr,
        Protocol::Json,
        link,
        "basic_info",
    ) {
        drop(reader);
        return;
    }
    watch_pings(shared, conn, Instant::now() + shared.ping_timeout);
    let sink = JsonSink {
        shared: Arc::downgrade(shared),
        conn,
        node_id: node.node_id.clone(),
        version: node.version.clone(),
        ready: false,
    };
    let shared = shared.clone();
    hand_off.run(move || {
        let ended = reader.run(sink);
        session::ended(&shared, conn, &node.node_id, &ended);
    });
}

/// Closes `conn` if no ping came within the ping timeout; a timer task that looks at the
/// last sign of life when it fires and, if there was one since, sleeps until it is due.
fn watch_pings(shared: &Arc<Shared>, conn: u64, at: Instant) {
    shared.at(at, move |shared| {
        let Some((alive, node_id)) = shared
            .registry
            .update(conn, |e| (e.alive, e.info.node_id.clone()))
        else {
            return;
        };
        let due = alive + shared.ping_timeout;
        if Instant::now() < due {
            return watch_pings(shared, conn, due);
        }
        log::warn!(
            "data plane {node_id} (connection {conn}) sent no ping within {:?}; \
             disconnecting it",
            shared.ping_timeout
        );
        let reason = format!("no ping within {:?}", shared.ping_timeout);
        shared.close_conn(conn, CLOSE_POLICY, &reason);
    });
}

/// What the reader hands to this driver: `basic_info` first, then pings.
struct JsonSink {
    shared: Weak<Shared>,
    conn: u64,
    node_id: String,
    version: String,
    /// `basic_info` passed: only pings from now on.
    ready: bool,
}

fn close(code: u16, reason: impl Into<String>) -> CloseRequest {
    CloseRequest {
        code,
        reason: reason.into(),
    }
}

impl JsonSink {
    fn refuse(&self, code: u16, reason: String) -> CloseRequest {
        log::warn!(
            "data plane {} (connection {}): closing with {code}: {reason}",
            self.node_id,
            self.conn
        );
        close(code, reason)
    }

    fn shared(&self) -> Result<Arc<Shared>, CloseRequest> {
        self.shared
            .upgrade()
            .ok_or_else(|| close(close_code::NORMAL, "control plane shutting down"))
    }

    /// `basic_info` arrived: record it, run the version gate, start pushing.
    fn basic_info(&mut self, info: BasicInfo) -> Result<(), CloseRequest> {
        let shared = self.shared()?;
        let conn = self.conn;
        let gate = if shared.policy.version_gate {
            json_version_gate(&shared.policy.kong_version, &self.version)
        } else {
            Ok(())
        };
        let plugins = info.plugins.clone();
        let count = plugins.len();
        shared.registry.update(conn, |e| {
            e.info.plugins = info.plugins;
            e.info.labels = info.labels;
            match &gate {
                Ok(()) => {
                    e.info.negotiated = true;
                    e.info.metadata_reported = true;
                    e.info.sync_status = SyncStatus::Normal;
                    e.info.status_reason = None;
                }
                Err((status, why)) => {
                    e.info.sync_status = *status;
                    e.info.status_reason = Some(why.clone());
                }
            }
        });
        if let Err((status, reason)) = gate {
            shared.events.emit(CpEvent::Incompatible {
                conn,
                node_id: self.node_id.clone(),
                status,
                reason: reason.clone(),
            });
            return Err(self.refuse(CLOSE_POLICY, format!("{status}: {reason}")));
        }
        log::info!(
            "data plane {} (connection {conn}) sent basic_info with {count} plugins",
            self.node_id
        );
        shared.events.emit(CpEvent::Metadata {
            conn,
            node_id: self.node_id.clone(),
            plugins,
        });
        self.ready = true;
        push::schedule(&shared, conn);
        Ok(())
    }
}

impl MessageSink for JsonSink {
    fn on_message(&mut self, message: Vec<u8>) -> Result<(), CloseRequest> {
        if self.ready {
            return Err(self.refuse(
                CLOSE_POLICY,
                format!(
                    "a binary frame of {} bytes after basic_info: a data plane may send only \
                     pings",
                    message.len()
                ),
            ));
        }
        match parse_basic_info(&message) {
            Ok(info) => self.basic_info(info),
            Err(e) => Err(self.refuse(e.close_code(), e.to_string())),
        }
    }

    fn on_text(&mut self) -> Result<(), CloseRequest> {
        let reason = if self.ready {
            "a text frame after basic_info: a data plane may send only pings"
        } else {
            "a text frame first: basic_info must be the first frame, and binary"
        };
        Err(self.refuse(CLOSE_POLICY, reason.into()))
    }

    fn on_ping(&mut self, payload: &[u8]) -> Result<Pong, CloseRequest> {
        if !self.ready {
            return Err(self.refuse(
                CLOSE_POLICY,
                "a ping first: basic_info must be the first frame, and binary".into(),
            ));
        }
        let hash = check_ping(payload).map_err(|e| self.refuse(e.close_code(), e.to_string()))?;
        let shared = self.shared()?;
        session::ping(&shared, self.conn, hash);
        Ok(Pong::Empty)
    }

    fn on_pong(&mut self, _payload: &[u8]) {
        log::debug!(
            "data plane {} (connection {}) sent a pong; ignored",
            self.node_id,
            self.conn
        );
    }

    fn on_end(&mut self, _ended: &Ended) {}
}
