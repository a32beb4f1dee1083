//! The current config and its pushes, whatever protocol a data plane speaks.
//!
//! Per connection at most one push is in flight. A push step, on a push worker, takes the
//! newest config, stops if the data plane already has it, checks the plugin gate (the same
//! for every protocol), asks the connection's driver (its [`Link`]) whether the config can
//! go now, and has the driver queue it; it returns at once, waiting neither for the data
//! plane to read nor to answer. How the push completes is the protocol's:
//!
//! - wRPC answers SyncConfig: the answer (on that connection's reader thread) or its
//!   deadline (on the timer thread) completes the push with `Accepted`, `Rejected` or
//!   `Failed` ([`finish`]);
//! - Kong's JSON protocol has no answer: the push completes as `Sent` once the frame is
//!   queued, and becomes `Accepted` when a later ping reports its hash. To keep "one in
//!   flight", the driver does not queue a new config while the connection still holds
//!   bytes of the previous one: the push is put off, and the data plane's next ping
//!   schedules it again.
//!
//! Then the next step runs, which pushes again only if a newer config has arrived
//! meanwhile. A config superseded while a push was in flight is never sent, and data
//! planes that never answer hold no thread.
//!
//! A new protocol adds a driver that implements [`Link`] (and, if it encodes configs its
//! own way, one lazily built encoding in [`CurrentConfig`]); nothing here changes.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::events::CpEvent;
pub(crate) use super::link::{Link, Ready, Sent};
use super::registry::{PushOutcome, PushRecord};
use super::window::SLOT_TIMEOUT;
use super::Shared;
use crate::channel::lock;
use crate::config::{EncodedConfig, Hashes};
use crate::outlet::EncodedReconfigure;
use crate::services::gate::{plugin_gate, SyncStatus};
use crate::Result;

/// A config ready to push: its version, hashes and each protocol's encoding, made once
/// for every data plane.
pub(crate) struct CurrentConfig {
    pub(crate) version: u64,
    pub(crate) hashes: Hashes,
    /// wRPC: the encoded SyncConfig request, the same bytes for every data plane (`None`
    /// when wRPC is off).
    pub(crate) wrpc: Option<Arc<[u8]>>,
    /// JSON: the config's JSON text, until the `reconfigure` frame is built from it
    /// (`None` when the JSON protocol is off, or once built).
    pub(crate) json_source: Mutex<Option<Vec<u8>>>,
    /// JSON: the `reconfigure` frame, built by the first push to a JSON data plane.
    pub(crate) json: OnceLock<Option<EncodedReconfigure>>,
}

/// Assigns the next version to `encoded` and makes it the current config, unless
/// `wrpc` (the wRPC driver's encoding of a version, `None` when wRPC is off) refuses it.
/// `json` is the config's JSON text when the JSON protocol is on.
pub(crate) fn store(
    shared: &Shared,
    encoded: EncodedConfig,
    json: Option<Vec<u8>>,
    wrpc: impl FnOnce(u64, &EncodedConfig) -> Result<Option<Arc<[u8]>>>,
) -> Result<u64> {
    let mut last = lock(&shared.last_version);
    let version = *last + 1;
    let wrpc = wrpc(version, &encoded)?;
    *last = version;
    *lock(&shared.current) = Some(Arc::new(CurrentConfig {
        version,
        hashes: encoded.hashes,
        wrpc,
        json_source: Mutex::new(json),
        json: OnceLock::new(),
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
    if claim(shared, conn) {
        submit(shared, conn);
    }
}

/// [`schedule`], with the first step run on this thread rather than a push worker: for a
/// wRPC data plane that has just reported its metadata, on its reader. The step never
/// waits and a wRPC push only queues a message already encoded, so the SyncConfig goes
/// out with the ReportMetadata answer, without a hand-off to a worker (in a reconnect
/// storm, once per data plane, while the workers compete with every handshake).
pub(crate) fn schedule_here(shared: &Arc<Shared>, conn: u64) {
    if claim(shared, conn) {
        run(shared, conn, None);
    }
}

/// Marks `conn` as pushing, unless it is already or has not reported its metadata.
fn claim(shared: &Shared, conn: u64) -> bool {
    let start = shared.registry.update(conn, |e| {
        if e.pushing || !e.info.metadata_reported {
            return false;
        }
        e.pushing = true;
        e.deferred = false;
        true
    });
    start == Some(true)
}

/// Queues the next push step of `conn` (whose `pushing` is set) on the push workers.
fn submit(shared: &Arc<Shared>, conn: u64) {
    submit_step(shared, conn, None);
}

/// Queues a push step; `place` is its place in the fan-out window, when it has one.
fn submit_step(shared: &Arc<Shared>, conn: u64, place: Option<Place>) {
    let job_shared = shared.clone();
    let job = Box::new(move || run(&job_shared, conn, place));
    if shared.push_pool.try_submit(job).is_err() {
        // The job, and with it the place, is dropped: the place goes to the next in line.
        log::warn!("push queue full or stopped; connection {conn} is not pushed to now");
        shared.registry.update(conn, |e| e.pushing = false);
    }
}

/// A push's place in the fan-out window ([`Window`](super::window::Window)), given back
/// once: when the message has been written, after [`SLOT_TIMEOUT`], or when the step ends
/// without sending. The next connection in line then gets it.
pub(crate) struct Place {
    shared: std::sync::Weak<Shared>,
    given_back: Arc<std::sync::atomic::AtomicBool>,
}

impl Place {
    fn new(shared: &Arc<Shared>) -> Place {
        Place {
            shared: Arc::downgrade(shared),
            given_back: Arc::default(),
        }
    }

    /// A handle that gives the place back later, from another thread.
    fn share(&self) -> Place {
        Place {
            shared: self.shared.clone(),
            given_back: self.given_back.clone(),
        }
    }

    fn give_back(&self) {
        if self
            .given_back
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            if let Some(next) = shared.window.leave() {
                submit_step(&shared, next, Some(Place::new(&shared)));
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        // The last handle of a place never given back (a step that ended early).
        if Arc::strong_count(&self.given_back) == 1 {
            self.give_back();
        }
    }
}

/// What one round of the push loop decided, under the registry lock.
enum Step {
    Done,
    Skip(String, SyncStatus, String, u64),
    Push(Arc<dyn Link>, String, Arc<CurrentConfig>),
}

/// One push step: decide, take a place in the fan-out window (or wait in line for one),
/// and have the driver queue the config; never waits.
fn run(shared: &Arc<Shared>, conn: u64, place: Option<Place>) {
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
        Step::Push(e.link.clone(), e.info.node_id.clone(), current)
    });
    let (link, node_id, current) = match step {
        None | Some(Step::Done) => return,
        Some(Step::Skip(node_id, status, reason, version)) => {
            return skipped(shared, conn, node_id, version, status, reason)
        }
        Some(Step::Push(link, node_id, current)) => (link, node_id, current),
    };
    let version = current.version;
    match link.prepare(&current) {
        Ready::Now => {}
        Ready::Skip(status, reason) => {
            let status = shared.registry.update(conn, |e| {
                e.pushing = false;
                if let Some(status) = status {
                    e.info.sync_status = status;
                    e.info.status_reason = Some(reason.clone());
                }
                e.info.sync_status
            });
            let status = status.unwrap_or(SyncStatus::Unknown);
            return skipped(shared, conn, node_id, version, status, reason);
        }
        Ready::Later(why) => {
            log::debug!("config {version} to {node_id} (connection {conn}) put off: {why}");
            shared.registry.update(conn, |e| {
                e.pushing = false;
                e.deferred = true;
            });
            return;
        }
    }
    let place = match place {
        Some(place) => place,
        None if shared.window.enter(conn) => Place::new(shared),
        // In line: the place comes with a new step, which decides afresh.
        None => return,
    };
    let recorded = shared.registry.update(conn, |e| {
        e.info.last_push = Some(PushRecord {
            version,
            hash: current.hashes.config.clone(),
            outcome: PushOutcome::InFlight,
        });
    });
    if recorded.is_none() {
        return;
    }
    shared.events.emit(CpEvent::ConfigPushed {
        conn,
        node_id: node_id.clone(),
        version,
        hash: current.hashes.config.clone(),
    });
    log::debug!("pushing config {version} to {node_id} (connection {conn})");
    // A protocol that answers holds its place until the answer (`finish`): that is what
    // paces a fan-out, since the socket takes a whole config long before the data plane
    // has read it. One that does not answer holds it until its message is written.
    let answers = !link.ping_accepts();
    let written = place.share();
    let on_written: crate::channel::Written = Box::new(move |_| {
        if !answers {
            written.give_back();
        }
    });
    if answers {
        lock(&shared.places).insert(conn, place.share());
    }
    let slow = place.share();
    shared.at(Instant::now() + SLOT_TIMEOUT, move |_| slow.give_back());
    match link.send(shared, conn, &node_id, &current, on_written) {
        Ok(Sent::Awaiting) => {}
        Ok(Sent::Queued) => finish(shared, conn, version, PushOutcome::Sent, None),
        Err(reason) => {
            place.give_back();
            log::info!("push of config {version} to {node_id} failed: {reason}");
            let event = CpEvent::ConfigRejected {
                conn,
                node_id,
                version,
                errors: Vec::new(),
                reason: reason.clone(),
            };
            finish(
                shared,
                conn,
                version,
                PushOutcome::Failed(reason),
                Some(event),
            );
        }
    }
}

/// A config not sent to `conn`: logged and reported; the connection stays.
fn skipped(
    shared: &Shared,
    conn: u64,
    node_id: String,
    version: u64,
    status: SyncStatus,
    reason: String,
) {
    log::warn!("not pushing config {version} to {node_id} (connection {conn}): {reason}");
    shared.events.emit(CpEvent::ConfigSkipped {
        conn,
        node_id,
        version,
        status,
        reason,
    });
}

/// A push of `version` to `conn` is complete: record its outcome, emit `event`, then take
/// the next step (a newer config may be waiting), unless it failed. Runs where the
/// completion lands (a reader, the timer, a push worker): quick, never waits.
pub(crate) fn finish(
    shared: &Arc<Shared>,
    conn: u64,
    version: u64,
    outcome: PushOutcome,
    event: Option<CpEvent>,
) {
    let place = lock(&shared.places).remove(&conn);
    if let Some(place) = place {
        place.give_back();
    }
    let failed = matches!(outcome, PushOutcome::Failed(_));
    shared.registry.update(conn, |e| {
        if let Some(p) = e.info.last_push.as_mut() {
            // A ping may have reported the hash before the send returned.
            let acked = p.outcome == PushOutcome::Accepted && outcome == PushOutcome::Sent;
            if p.version == version && !acked {
                p.outcome = outcome;
            }
        }
        if failed {
            e.pushing = false;
        }
    });
    if let Some(event) = event {
        shared.events.emit(event);
    }
    if !failed {
        submit(shared, conn);
    }
}
