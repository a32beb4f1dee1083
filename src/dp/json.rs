//! A connection speaking Kong's JSON protocol (`/v1/outlet`: Kong 2.x, 3.0, 3.2 to 3.9)
//! after the upgrade.
//!
//! What goes out: `basic_info` (binary, uncompressed) as the first frame, then a ping at
//! once, every ping interval and at once after each applied config, its payload always
//! the 32-character applied hash (or 32 zeros). Nothing else: there is no ACK in this
//! protocol, and a Kong CP disconnects a DP that sends anything but pings.
//!
//! What comes in, all on the one reader thread, which never decodes or applies:
//!
//! - a binary frame is a `reconfigure`. It goes into a one-slot mailbox (a newer frame
//!   replaces one not yet started: the newest wins, as in Kong's DP) and one job at a
//!   time on the DP's worker pool inflates, parses and applies it through the intake. A
//!   bad frame (not gzip or zlib, over a cap, not JSON, no `config_table`, refused by the
//!   handler) keeps the applied config and the connection: one log line and a
//!   `ConfigRejected` event (Kong's DP drops the connection instead);
//! - a text frame is ignored (Kong's CP never sends one), logged once per connection;
//! - a ping is answered with a pong by the channel (Kong's CPs never ping); pongs are
//!   never answered;
//! - any frame counts as liveness: none for the liveness timeout (45 s, Kong's
//!   `PING_WAIT`) and the connection is dropped and redialled by the reconnect policy.
//!   The session thread checks it when it wakes to ping, not the reader: no read
//!   timeouts, no polling;
//! - a frame above the maximum is never buffered: the channel closes with 1009, logs
//!   once, and the DP reconnects by the policy.

use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crossbeam_channel::{select, Receiver, Sender};

use super::intake::Outcome;
use super::session::{self, Connection, SessionEnd};
use super::{DpEvent, Shared};
use crate::channel::{lock, CloseRequest, Ended, MessageSink, Pong};
use crate::outlet;

/// Runs a JSON connection until it ends or `shutdown` is disconnected.
pub(crate) fn run(shared: &Arc<Shared>, conn: Connection, shutdown: &Receiver<()>) -> SessionEnd {
    let Connection {
        channel,
        reader,
        cp_node_id,
        protocol,
    } = conn;
    let (ended_tx, ended_rx) = crossbeam_channel::bounded::<String>(1);
    let (ping_now_tx, ping_now_rx) = crossbeam_channel::bounded::<()>(1);
    let seen = Arc::new(Mutex::new(Instant::now()));
    let sink = Sink {
        shared: Arc::downgrade(shared),
        mailbox: Arc::new(Mutex::new(Mailbox::default())),
        seen: seen.clone(),
        ended: ended_tx,
        ping_now: ping_now_tx,
        label: channel.label().to_string(),
        text_logged: false,
    };
    let reader = reader.spawn(sink);
    session::serve(shared, &channel, protocol, cp_node_id, reader, || {
        converse(shared, &channel, shutdown, &ping_now_rx, &ended_rx, &seen)
    })
}

/// Sends `basic_info`, then pings and watches liveness until the connection ends.
fn converse(
    shared: &Arc<Shared>,
    channel: &crate::channel::Channel,
    shutdown: &Receiver<()>,
    ping_now: &Receiver<()>,
    ended: &Receiver<String>,
    seen: &Mutex<Instant>,
) -> SessionEnd {
    let s = &shared.settings;
    let labels = (!s.labels.is_empty()).then_some(&s.labels);
    let basic_info = outlet::encode_basic_info(&s.plugins, labels);
    if let Err(e) = channel.send(&basic_info) {
        if shared.stopping() {
            return SessionEnd::stopping(false);
        }
        let e = crate::error::Chain(&e);
        return SessionEnd::failed(format!("sending basic_info: {e}"), false);
    }
    log::debug!("{}: basic_info sent", channel.label());
    let mut next_ping = Instant::now();
    loop {
        let now = Instant::now();
        let last = *lock(seen);
        if now.duration_since(last) >= s.liveness_timeout {
            let reason = format!(
                "no frame from the CP for {:?}; dropping the connection",
                s.liveness_timeout
            );
            log::warn!("{}: {reason}", channel.label());
            channel.abort();
            return SessionEnd::failed(reason, true);
        }
        if now >= next_ping {
            let hash = shared.applied_hash();
            match channel.send_ping(&outlet::ping_payload(Some(&hash))) {
                Ok(()) => shared.emit(DpEvent::Pinged { hash }),
                // The end arrives on `ended` (or shutdown) at once.
                Err(e) => log::debug!(
                    "{}: ping not sent: {}",
                    channel.label(),
                    crate::error::Chain(&e)
                ),
            }
            next_ping = now + s.ping_interval;
        }
        let wake = next_ping.min(last + s.liveness_timeout);
        let wait = wake.saturating_duration_since(Instant::now());
        select! {
            recv(shutdown) -> _ => return SessionEnd::stopping(true),
            recv(ended) -> why => {
                if shared.stopping() {
                    return SessionEnd::stopping(true);
                }
                return SessionEnd::failed(why.unwrap_or_else(|_| "connection ended".into()), true)
            }
            recv(ping_now) -> _ => next_ping = Instant::now(),
            default(wait) => {}
        }
    }
}

/// The newest `reconfigure` not yet started, and whether a job is running.
#[derive(Default)]
struct Mailbox {
    next: Option<Vec<u8>>,
    running: bool,
}

/// What the reader thread does with each frame: note the time, hand binary frames to
/// the mailbox, and nothing that takes long.
struct Sink {
    shared: Weak<Shared>,
    mailbox: Arc<Mutex<Mailbox>>,
    seen: Arc<Mutex<Instant>>,
    ended: Sender<String>,
    ping_now: Sender<()>,
    label: String,
    text_logged: bool,
}

impl Sink {
    fn alive(&self) {
        *lock(&self.seen) = Instant::now();
    }

    /// Starts the job that drains the mailbox, unless one runs.
    fn start_job(&self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let job = Job {
            shared: self.shared.clone(),
            mailbox: self.mailbox.clone(),
            ping_now: self.ping_now.clone(),
        };
        if let Err(e) = shared.pool.try_submit(Box::new(move || job.run())) {
            // The frame stays in the mailbox: the next frame tries again.
            lock(&self.mailbox).running = false;
            log::warn!("{}: cannot apply the config yet: {e:?}", self.label);
        }
    }
}

impl MessageSink for Sink {
    fn on_message(&mut self, message: Vec<u8>) -> Result<(), CloseRequest> {
        self.alive();
        let start = {
            let mut mb = lock(&self.mailbox);
            if mb.next.replace(message).is_some() {
                log::info!(
                    "{}: a newer reconfigure replaces one not yet applied",
                    self.label
                );
            }
            !std::mem::replace(&mut mb.running, true)
        };
        if start {
            self.start_job();
        }
        Ok(())
    }

    /// Kong's CPs never send text; one is ignored (and counts as liveness) rather than
    /// ending a connection that may carry the next config.
    fn on_text(&mut self) -> Result<(), CloseRequest> {
        self.alive();
        if !std::mem::replace(&mut self.text_logged, true) {
            log::warn!(
                "{}: ignoring a text frame from the CP (Kong's JSON protocol sends binary \
                 frames only); later ones are ignored silently",
                self.label
            );
        }
        Ok(())
    }

    fn on_ping(&mut self, _payload: &[u8]) -> Result<Pong, CloseRequest> {
        self.alive();
        Ok(Pong::Echo)
    }

    fn on_pong(&mut self, _payload: &[u8]) {
        self.alive();
    }

    fn on_end(&mut self, ended: &Ended) {
        let _ = self.ended.try_send(ended.to_string());
    }
}

/// Applies the mailbox's frames one after another, the newest each time, until it is
/// empty.
struct Job {
    shared: Weak<Shared>,
    mailbox: Arc<Mutex<Mailbox>>,
    ping_now: Sender<()>,
}

impl Job {
    fn run(self) {
        loop {
            let frame = {
                let mut mb = lock(&self.mailbox);
                match mb.next.take() {
                    Some(frame) => frame,
                    None => {
                        mb.running = false;
                        return;
                    }
                }
            };
            let Some(shared) = self.shared.upgrade() else {
                lock(&self.mailbox).running = false;
                return;
            };
            match shared.intake.reconfigure(&frame) {
                Outcome::Applied(a) => {
                    log::info!("applied the config with hash {} from the CP", a.hash);
                    shared.emit(DpEvent::ConfigApplied {
                        version: a.version,
                        hash: a.hash,
                        from_cache: false,
                    });
                    let _ = self.ping_now.try_send(());
                }
                Outcome::Rejected { version, errors } => {
                    shared.emit(DpEvent::ConfigRejected { version, errors })
                }
                Outcome::Unchanged | Outcome::Ignored => {}
            }
        }
    }
}
