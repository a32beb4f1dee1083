//! The data plane role: connect to a CP, pick the protocol, report, ping, apply configs,
//! and survive the CP going away.
//!
//! Two protocols sit behind this one API ([`ProtocolChoice`]): Kong's JSON protocol at
//! `/v1/outlet` (Kong 2.x, 3.0, 3.2 to 3.9: every CP in the field) and wRPC at
//! `/v1/wrpc` (Kong 3.0 and 3.1). By default the data plane probes as Kong 3.0 does
//! (`HEAD /v1/wrpc`: 404 means JSON) on every connection. The handler sees the same
//! [`ConfigUpdate`] either way; [`Status::protocol`] and [`DpEvent::Connected`] say which
//! protocol a connection speaks. Files: `session.rs` (what every connection shares),
//! `wrpc.rs` and `json.rs` (one per protocol), `intake.rs` (configs and the cache).
//!
//! ```no_run
//! use dpspec::dp::{DataPlane, ConfigUpdate};
//! use dpspec::tls::{Identity, TrustMode};
//!
//! let cert = std::fs::read("cluster.crt").unwrap();
//! let key = std::fs::read("cluster.key").unwrap();
//! let dp = DataPlane::builder("cp.example.com:8005")
//!     // Kong's default shared mode: both ends hold the same certificate.
//!     .trust(TrustMode::pinned_pem(&cert).unwrap())
//!     .identity(Identity::from_pem(&cert, &key).unwrap())
//!     .cache_dir("/var/lib/my-dp")
//!     .config_handler(|update: &ConfigUpdate<'_>| {
//!         println!("config {} with {} keys", update.hash, update.config.len());
//!         Ok(())
//!     })
//!     .start()
//!     .unwrap();
//! for event in dp.events().iter() {
//!     println!("{event:?}");
//! }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{select, Receiver, Sender};

mod builder;
internal! { mod cache; }
mod events;
mod handler;
mod intake;
mod json;
mod reconnect;
mod session;
mod wrpc;

pub use builder::{DataPlaneBuilder, ProtocolChoice, DEFAULT_KONG_VERSION};
pub use events::{DpEvent, Status};
pub use handler::{config_error, ConfigErrorType, ConfigHandler, ConfigUpdate, SyncConfigError};
pub use reconnect::Reconnect;

use crate::channel::{close_code, lock, Channel};
use crate::config::EMPTY_HASH;
use crate::proxy::ProxyUrl;
use crate::services::config::PluginVersion;
use crate::tls::ClientTls;
use crate::wrpc::WorkerPool;
use crate::{Error, Result};
use intake::Intake;

/// Events kept for a slow reader before new ones are dropped.
const EVENT_BUFFER: usize = 1024;

/// Settings fixed at start.
pub(crate) struct Settings {
    host: String,
    port: u16,
    server_name: Option<String>,
    tls: ClientTls,
    node_id: String,
    hostname: String,
    version: String,
    plugins: Vec<PluginVersion>,
    labels: BTreeMap<String, String>,
    proxy: Option<ProxyUrl>,
    protocol: ProtocolChoice,
    ping_interval: Duration,
    liveness_timeout: Duration,
    reconnect: Reconnect,
    max_message_size: usize,
    json_max_frame: usize,
    connect_timeout: Duration,
    call_timeout: Duration,
    write_timeout: Duration,
    close_timeout: Duration,
}

/// State shared by the handle, the supervisor thread and the handlers.
pub(crate) struct Shared {
    settings: Settings,
    intake: Intake,
    status: Mutex<Status>,
    events: Sender<DpEvent>,
    /// The connection up now, whatever its protocol (closed by shutdown).
    current: Mutex<Option<Channel>>,
    pool: Arc<WorkerPool>,
    stopping: AtomicBool,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
    }

    /// Delivers an event unless nobody keeps up (then it is dropped, never buffered
    /// without bound).
    fn emit(&self, event: DpEvent) {
        let _ = self.events.try_send(event);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The hash pings report: the applied config's, or 32 zeros before any.
    fn applied_hash(&self) -> String {
        self.intake
            .applied()
            .map(|a| a.hash)
            .unwrap_or_else(|| EMPTY_HASH.to_string())
    }
}

/// A running data plane. Dropping it shuts it down.
pub struct DataPlane {
    shared: Arc<Shared>,
    events: Receiver<DpEvent>,
    stop: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("node_id", &self.shared.settings.node_id)
            .field("status", &self.status())
            .finish()
    }
}

impl DataPlane {
    /// Starts building a data plane that connects to the CP at `cp` (`host:port`; Kong's
    /// cluster port is 8005).
    pub fn builder(cp: impl Into<String>) -> DataPlaneBuilder {
        DataPlaneBuilder::new(cp)
    }

    fn start(b: DataPlaneBuilder) -> Result<DataPlane> {
        let (host, port) = crate::tcp::split_host_port(&b.cp)?;
        let node_id = match (&b.node_id, &b.cache_dir) {
            (Some(id), _) => id.clone(),
            (None, Some(dir)) => cache::node_id(dir)?,
            (None, None) => crate::random::uuid_v4(),
        };
        let mut tls = ClientTls::new(b.trust, b.identity)?;
        if !b.session_resumption {
            tls = tls.without_resumption();
        }
        let settings = Settings {
            host,
            port,
            server_name: b.server_name,
            tls,
            node_id,
            hostname: b.hostname.unwrap_or_else(builder::machine_hostname),
            version: b.version,
            plugins: b.plugins,
            labels: b.labels,
            proxy: b.proxy,
            protocol: b.protocol,
            ping_interval: b.ping_interval,
            liveness_timeout: b.liveness_timeout,
            reconnect: b.reconnect,
            max_message_size: b.max_message_size,
            json_max_frame: b.json_max_frame,
            connect_timeout: b.connect_timeout,
            call_timeout: b.call_timeout,
            write_timeout: b.write_timeout,
            close_timeout: b.close_timeout,
        };
        let handler = b
            .handler
            .ok_or_else(|| Error::InvalidInput("no config handler".into()))?;
        let pool = Arc::new(WorkerPool::new("dp-worker", b.workers, 64)?);
        let (events_tx, events_rx) = crossbeam_channel::bounded(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            intake: Intake::new(handler, b.max_inflated_size, b.cache_dir.clone()),
            settings,
            status: Mutex::new(Status::default()),
            events: events_tx,
            current: Mutex::new(None),
            pool,
            stopping: AtomicBool::new(false),
        });
        // The last good config serves before any CP answers.
        if let Some(applied) = shared.intake.load_cache() {
            shared.emit(DpEvent::ConfigApplied {
                version: applied.version,
                hash: applied.hash,
                from_cache: true,
            });
        }
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("dpspec-dp".into())
                .spawn(move || supervise(&shared, &stop_rx))
                .map_err(Error::Io)?
        };
        Ok(DataPlane {
            shared,
            events: events_rx,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A snapshot of the current state.
    pub fn status(&self) -> Status {
        let mut status = lock(&self.shared.status).clone();
        // The applied config has one source of truth: the intake.
        if let Some(applied) = self.shared.intake.applied() {
            status.applied_version = applied.version;
            status.applied_hash = Some(applied.hash);
        }
        status
    }

    /// The event stream. Every receiver shares one bounded queue (each event goes to one
    /// of them); when 1024 are waiting and nobody reads, new events are dropped rather
    /// than kept.
    pub fn events(&self) -> Receiver<DpEvent> {
        self.events.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.settings.node_id
    }

    /// Closes the connection with 1000, stops reconnecting, and joins every thread.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        lock(&self.stop).take();
        let current = lock(&self.shared.current).clone();
        if let Some(channel) = current {
            channel.close(close_code::NORMAL, "data plane shutting down");
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        self.shared.pool.shutdown();
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Connects, runs the session, waits by the reconnect policy, again, until shutdown.
fn supervise(shared: &Arc<Shared>, stop: &Receiver<()>) {
    let mut failures = 0u32;
    loop {
        if shared.stopping() {
            return;
        }
        let end = session::run(shared, stop);
        let Some(reason) = end.reason else { return };
        if shared.stopping() {
            return;
        }
        failures = if end.negotiated {
            0
        } else {
            failures.saturating_add(1)
        };
        let delay = shared.settings.reconnect.delay(failures);
        log::warn!("connection to the CP ended: {reason}; reconnecting in {delay:?}");
        shared.update(|st| st.last_error = Some(reason.clone()));
        shared.emit(DpEvent::Disconnected { reason });
        select! {
            recv(stop) -> _ => return,
            default(delay) => {}
        }
        shared.update(|st| st.reconnects += 1);
    }
}
