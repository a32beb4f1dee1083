//! The control plane role: listen, authenticate, negotiate, track every data plane, and
//! push the declarative config to all of them.
//!
//! | file | what |
//! |---|---|
//! | `builder` | the settings and their (Kong) defaults |
//! | `session` | what every connection shares: admission, registration, pings, the end |
//! | `wrpc` | the wRPC driver (`/v1/wrpc`, Kong 3.0/3.1): negotiation, the config service, SyncConfig |
//! | `json` | the JSON driver (`/v1/outlet`, Kong 2.x, 3.0, 3.2–3.9): `basic_info`, pings, `reconfigure` |
//! | `link` | what a driver gives the roles: a connection's channel, and how to push a config to it |
//! | `push` | the current config, and pushing it (newest wins, one in flight per DP), for any driver |
//! | `registry` | what is known of each connected data plane |
//! | `events` | what happened, on a bounded channel |
//! | `timer` | one thread for every deadline: ReportMetadata, SyncConfig answers, closes |
//!
//! Both protocols are served on one listener by default ([`ControlPlaneBuilder::wrpc`],
//! [`ControlPlaneBuilder::json`]); every data plane shows up in the same registry
//! ([`NodeInfo::protocol`] says which it speaks) and gets the same config.
//!
//! Threads: the listener's accept thread; one thread per connection, which after the
//! upgrade becomes that connection's reader; a pool of handler workers shared by all
//! connections, of which each connection has a fair share
//! ([`ControlPlaneBuilder::max_pending_requests`]); a few push workers; one timer thread; and, for a
//! connection whose socket does not take what is sent at once, a flusher thread while
//! that backlog lasts. No worker, push, timer or reader thread waits on a data plane's
//! socket: sends go into the connection's bounded outbox ([`ControlPlaneBuilder::outbox_limit`]), a
//! push completes when the data plane's answer arrives (or its deadline passes), and a
//! data plane that does not read what it is sent within the write timeout is
//! disconnected.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

mod builder;
mod events;
mod json;
mod link;
mod push;
mod registry;
mod session;
mod timer;
mod window;
mod wrpc;

pub use crate::services::config::PluginVersion;
pub use crate::services::gate::SyncStatus;
pub use crate::services::negotiation::OfferedService;
pub use builder::{ControlPlaneBuilder, DEFAULT_MAX_REQUEST_RATE};
pub use events::CpEvent;
pub use registry::{NodeInfo, PushOutcome, PushRecord};

use crate::channel::{lock, ChannelConfig};
use crate::config::{EncodedConfig, Hashes};
use crate::http::{Listener, ServerConfig};
use crate::outlet::OUTLET_PATH;
use crate::services::negotiation::NegotiationPolicy;
use crate::tls::ServerTls;
use crate::upgrade::{self, Endpoint, WRPC_PATH};
use crate::wrpc::WorkerPool;
use crate::Result;
use events::Events;
use push::CurrentConfig;
use registry::Registry;
use timer::Timer;

/// WebSocket close code 1008, policy violation: used when a data plane breaks the
/// protocol's rules (no ReportMetadata in time, over the connection cap).
pub const CLOSE_POLICY: u16 = 1008;

/// A running control plane. Dropping it shuts it down ([`ControlPlane::shutdown`]).
///
/// ```no_run
/// # fn main() -> dpspec::Result<()> {
/// use dpspec::tls::Identity;
/// let cp = dpspec::ControlPlane::builder()
///     .listen("127.0.0.1:8005")
///     .identity(Identity::from_pem_files("cluster.crt", "cluster.key")?)
///     .start()?;
/// let version = cp.set_config(serde_json::json!({"_format_version": "3.0"}))?;
/// for node in cp.nodes() {
///     println!("{} {:?}", node.node_id, node.last_push);
/// }
/// # let _ = version; Ok(()) }
/// ```
pub struct ControlPlane {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    listener: Mutex<Option<Listener>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("local_addr", &self.local_addr)
            .field("node_id", &self.shared.policy.cp_node_id)
            .finish_non_exhaustive()
    }
}

/// What every thread of the control plane shares.
pub(crate) struct Shared {
    pub(crate) policy: NegotiationPolicy,
    pub(crate) plugins: Option<Vec<PluginVersion>>,
    pub(crate) metadata_deadline: Duration,
    pub(crate) max_per_node: usize,
    pub(crate) channel: ChannelConfig,
    /// The channel settings of `/v1/outlet` connections.
    pub(crate) json_channel: ChannelConfig,
    pub(crate) wrpc_on: bool,
    pub(crate) json_on: bool,
    pub(crate) ping_timeout: Duration,
    pub(crate) sync_timeout: Duration,
    pub(crate) max_pending_requests: usize,
    pub(crate) max_request_rate: crate::wrpc::RequestRate,
    pub(crate) registry: Registry,
    pub(crate) events: Events,
    /// The newest config; pushes always read it afresh.
    pub(crate) current: Mutex<Option<Arc<CurrentConfig>>>,
    /// The last version assigned; held while a new config is stored.
    pub(crate) last_version: Mutex<u64>,
    pub(crate) next_conn: AtomicU64,
    pub(crate) handler_pool: Arc<WorkerPool>,
    pub(crate) push_pool: Arc<WorkerPool>,
    /// How many pushes are on the wire at once.
    pub(crate) window: window::Window,
    /// The window places of pushes waiting for their answer, by connection.
    pub(crate) places: Mutex<std::collections::HashMap<u64, push::Place>>,
    pub(crate) timer: Mutex<Option<Timer>>,
    pub(crate) stopping: AtomicBool,
}

impl ControlPlane {
    /// A builder with Kong's defaults.
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    pub(crate) fn start(b: ControlPlaneBuilder) -> Result<ControlPlane> {
        let node_id = b.node_id.unwrap_or_else(crate::random::uuid_v4);
        let identity = b.identity.expect("checked by ControlPlaneBuilder::start");
        let tls = ServerTls::new(identity, b.client_auth)?.session_tickets(&b.session_tickets)?;
        let shared = Arc::new(Shared {
            policy: NegotiationPolicy {
                cp_node_id: node_id.clone(),
                offered: b.offered,
                kong_version: b.kong_version,
                version_gate: b.version_gate,
            },
            plugins: b.plugins,
            metadata_deadline: b.metadata_deadline,
            max_per_node: b.max_connections_per_node,
            channel: ChannelConfig {
                max_message_size: b.max_message_size,
                outbox_limit: b.outbox_limit.unwrap_or(2 * b.max_message_size),
                write_timeout: Some(b.write_timeout),
                close_timeout: b.close_timeout,
                label: String::new(),
                ..ChannelConfig::default()
            },
            json_channel: ChannelConfig {
                max_message_size: b.json_max_message_size,
                outbox_limit: b.outbox_limit.unwrap_or(2 * b.json_max_message_size),
                write_timeout: Some(b.write_timeout),
                close_timeout: b.close_timeout,
                label: String::new(),
                // Kong's nodes take every message as one frame.
                fragments: false,
            },
            wrpc_on: b.wrpc,
            json_on: b.json,
            ping_timeout: b.ping_timeout,
            sync_timeout: b.sync_timeout,
            max_pending_requests: b.max_pending_requests,
            max_request_rate: b.max_request_rate,
            registry: Registry::default(),
            events: Events::new(b.event_capacity),
            current: Mutex::new(None),
            last_version: Mutex::new(0),
            next_conn: AtomicU64::new(1),
            handler_pool: Arc::new(WorkerPool::new("cp-worker", b.worker_threads, 4096)?),
            push_pool: Arc::new(WorkerPool::new("cp-push", b.push_threads, 65536)?),
            window: window::Window::new(window::PUSH_WINDOW),
            places: Mutex::new(std::collections::HashMap::new()),
            timer: Mutex::new(None),
            stopping: AtomicBool::new(false),
        });
        *lock(&shared.timer) = Some(Timer::start("cp-timer")?);
        let mut config = ServerConfig::new(node_id)
            .limits(b.http_limits)
            .write_timeout(b.write_timeout)
            .max_handshakes(b.max_handshakes);
        for (path, handler) in b.http_handlers {
            config = config.handler(path, handler);
        }
        if b.wrpc {
            let handler = Arc::new(session::Handler::new(&shared, wrpc::run));
            config = config.route(WRPC_PATH, upgrade::route(Endpoint::wrpc(), handler));
        }
        if b.json {
            let handler = Arc::new(session::Handler::new(&shared, json::run));
            config = config.route(OUTLET_PATH, upgrade::route(Endpoint::outlet(), handler));
        }
        let listener = match Listener::bind(b.listen.as_str(), tls, config) {
            Ok(l) => l,
            Err(e) => {
                shared.stop_threads();
                return Err(e.into());
            }
        };
        let local_addr = listener.local_addr();
        shared.events.emit(CpEvent::Listening { addr: local_addr });
        Ok(ControlPlane {
            shared,
            local_addr,
            listener: Mutex::new(Some(listener)),
        })
    }

    /// The address the control plane listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This control plane's node id.
    pub fn node_id(&self) -> &str {
        &self.shared.policy.cp_node_id
    }

    /// Makes `config` (a declarative config: a JSON object) the current config and pushes
    /// it to every connected data plane that has reported its metadata. Returns its
    /// version: 1 for the first config, then 2, 3, ...
    ///
    /// The config is checked, hashed (Kong's hash) and gzipped once per protocol; every
    /// data plane of a protocol gets the same bytes (the JSON `reconfigure` frame is built
    /// by the first push to a JSON data plane). With wRPC on, a config whose SyncConfig
    /// message would be over the max message size is refused here, before anything is
    /// sent, and the current config stays. A JSON data plane whose frame limit the
    /// gzipped `reconfigure` passes (4 MiB below Kong 3.4, 16 MiB from 3.4) is skipped
    /// with [`CpEvent::ConfigSkipped`] and stays connected.
    ///
    /// No compatibility layer is applied: every data plane gets the config as given, so
    /// it must be one the oldest connected data plane understands (Kong's control plane
    /// rewrites it per data plane version; this one does not yet).
    /// Returns at once: pushes run on the push workers (watch [`ControlPlane::events`] or
    /// [`ControlPlane::nodes`] for their outcome). A data plane busy with an older push
    /// gets only the newest config once that push ends.
    pub fn set_config(&self, config: serde_json::Value) -> Result<u64> {
        let encoded = EncodedConfig::new(&config)?;
        // EncodedConfig checked it is an object; serializing a Value cannot fail.
        let json = self
            .shared
            .json_on
            .then(|| serde_json::to_vec(&config).unwrap_or_default());
        drop(config);
        let shared = &self.shared;
        let version = push::store(shared, encoded, json, |version, encoded| {
            shared
                .wrpc_on
                .then(|| wrpc::sync_request(shared, version, encoded))
                .transpose()
        })?;
        push::push_all(&self.shared);
        Ok(version)
    }

    /// The current config's version and hashes, if a config was set.
    pub fn config_version(&self) -> Option<(u64, Hashes)> {
        lock(&self.shared.current)
            .as_ref()
            .map(|c| (c.version, c.hashes.clone()))
    }

    /// A snapshot of every connected data plane, in connection order.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.shared.registry.snapshot()
    }

    /// The event stream. Every receiver shares one bounded queue (each event goes to one
    /// of them); when nobody reads, new events are dropped rather than kept.
    pub fn events(&self) -> Receiver<CpEvent> {
        self.shared.events.receiver()
    }

    internal_fn! {
        /// TLS handshakes completed so far: (full, resumed from a session ticket). Zeros
        /// once shut down.
        fn tls_handshakes(&self) -> (u64, u64) {
            lock(&self.listener)
                .as_ref()
                .map_or((0, 0), |l| l.handshakes())
        }
    }

    /// How many events were dropped because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.shared.events.dropped()
    }

    /// Stops accepting, closes every connection with 1000, and joins every thread.
    /// Idempotent; dropping the control plane does the same.
    pub fn shutdown(&self) {
        let Some(mut listener) = lock(&self.listener).take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        listener.stop_accepting();
        close_all(&self.shared);
        listener.shutdown();
        self.shared.stop_threads();
        log::info!("control plane on {} stopped", self.local_addr);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn stop_threads(&self) {
        // Take the timer out before joining it: a task that is running may schedule
        // another (Shared::at), which takes this lock.
        let timer = lock(&self.timer).take();
        if let Some(mut timer) = timer {
            timer.stop();
        }
        self.push_pool.shutdown();
        self.handler_pool.shutdown();
    }

    /// Runs `task` on the timer thread at `at` (never, once the control plane stops).
    /// It gets the control plane unless it has gone away meanwhile.
    pub(crate) fn at(
        self: &Arc<Self>,
        at: Instant,
        task: impl FnOnce(&Arc<Shared>) + Send + 'static,
    ) {
        let weak: Weak<Shared> = Arc::downgrade(self);
        if let Some(timer) = lock(&self.timer).as_ref() {
            timer.schedule(at, move || {
                if let Some(shared) = weak.upgrade() {
                    task(&shared);
                }
            });
        }
    }

    /// Queues the close frame of connection `conn` and, if it has not ended by the close
    /// timeout, shuts its socket down. Never waits.
    pub(crate) fn close_conn(self: &Arc<Self>, conn: u64, code: u16, reason: &str) {
        let Some(link) = self.registry.update(conn, |e| e.link.clone()) else {
            return;
        };
        link.channel().start_close(code, reason);
        let at = Instant::now() + link.channel().close_timeout();
        self.at(at, move |shared| {
            let still = shared.registry.update(conn, |e| e.link.clone());
            if let Some(link) = still {
                log::debug!("connection {conn}: no close reply in time; shutting it down");
                link.channel().abort();
            }
        });
    }
}

/// Closes every connection with 1000 at once, without a thread per connection: every
/// close frame is queued first, then all get one close timeout to answer, then the rest
/// are shut down.
fn close_all(shared: &Shared) {
    let links = shared.registry.links();
    for link in &links {
        link.channel().start_close(
            crate::channel::close_code::NORMAL,
            "control plane shutting down",
        );
    }
    let deadline = Instant::now() + shared.channel.close_timeout;
    for link in &links {
        if !link.channel().wait_deadline(deadline) {
            link.channel().abort();
        }
    }
}
