//! The control plane's settings, set with by-value setters; every default is Kong's where
//! Kong has one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::events::DEFAULT_EVENT_CAPACITY;
use super::ControlPlane;
use crate::channel::DEFAULT_MAX_MESSAGE_SIZE;
use crate::http::server::DEFAULT_MAX_HANDSHAKES;
use crate::http::{HttpHandler, HttpLimits};
use crate::outlet::{DEFAULT_JSON_CP_VERSION, DEFAULT_MAX_FRAME, LIVENESS_TIMEOUT};
use crate::services::config::PluginVersion;
use crate::services::negotiation::{NegotiationPolicy, OfferedService};
use crate::tls::{ClientAuth, Identity, SessionTickets};
use crate::wrpc::{RequestRate, DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_PENDING_REQUESTS};
use crate::{Error, Result};

/// Builds a [`ControlPlane`]; start it with [`ControlPlaneBuilder::start`].
///
/// Only the certificate ([`ControlPlaneBuilder::identity`]) has no default. By default one listener
/// serves both protocols: wRPC at `/v1/wrpc` ([`ControlPlaneBuilder::wrpc`]) for Kong 3.0 and 3.1
/// data planes, and Kong's JSON protocol at `/v1/outlet` ([`ControlPlaneBuilder::json`]) for Kong 2.x,
/// 3.0 and 3.2 to 3.9.
pub struct ControlPlaneBuilder {
    pub(crate) listen: String,
    pub(crate) identity: Option<Identity>,
    pub(crate) client_auth: ClientAuth,
    pub(crate) session_tickets: SessionTickets,
    pub(crate) node_id: Option<String>,
    pub(crate) offered: Vec<OfferedService>,
    pub(crate) kong_version: String,
    pub(crate) version_gate: bool,
    pub(crate) plugins: Option<Vec<PluginVersion>>,
    pub(crate) metadata_deadline: Duration,
    pub(crate) max_connections_per_node: usize,
    pub(crate) max_message_size: usize,
    pub(crate) worker_threads: usize,
    pub(crate) push_threads: usize,
    pub(crate) http_limits: HttpLimits,
    pub(crate) http_handlers: Vec<(String, Arc<dyn HttpHandler>)>,
    pub(crate) write_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) sync_timeout: Duration,
    pub(crate) event_capacity: usize,
    pub(crate) wrpc: bool,
    pub(crate) json: bool,
    pub(crate) ping_timeout: Duration,
    pub(crate) json_max_message_size: usize,
    pub(crate) outbox_limit: Option<usize>,
    pub(crate) max_pending_requests: usize,
    pub(crate) max_request_rate: RequestRate,
    pub(crate) max_handshakes: usize,
}

/// The default request rate per data plane connection: 200 per second, bursts of 400.
/// Kong's data planes make a few requests when they connect and one PingCP every 30 s,
/// so only a flooding peer ever meets it.
pub const DEFAULT_MAX_REQUEST_RATE: RequestRate = RequestRate::new(200, 400);

impl std::fmt::Debug for ControlPlaneBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneBuilder")
            .field("listen", &self.listen)
            .field("node_id", &self.node_id)
            .field("kong_version", &self.kong_version)
            .finish_non_exhaustive()
    }
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        let policy = NegotiationPolicy::default();
        ControlPlaneBuilder {
            listen: "0.0.0.0:8005".into(),
            identity: None,
            client_auth: ClientAuth::Shared(None),
            session_tickets: SessionTickets::Rotating,
            node_id: None,
            offered: policy.offered,
            kong_version: DEFAULT_JSON_CP_VERSION.into(),
            version_gate: policy.version_gate,
            plugins: None,
            metadata_deadline: Duration::from_secs(5),
            max_connections_per_node: 4,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            worker_threads: 4,
            push_threads: 4,
            http_limits: HttpLimits::default(),
            http_handlers: Vec::new(),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            sync_timeout: DEFAULT_CALL_TIMEOUT,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            wrpc: true,
            json: true,
            ping_timeout: LIVENESS_TIMEOUT,
            json_max_message_size: DEFAULT_MAX_FRAME,
            outbox_limit: None,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            max_request_rate: DEFAULT_MAX_REQUEST_RATE,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        }
    }
}

impl ControlPlaneBuilder {
    /// The address to listen on. Default `0.0.0.0:8005`, Kong's `cluster_listen`. Port 0
    /// picks a free port ([`ControlPlane::local_addr`] tells which).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// The listen address as a socket address.
    pub fn listen_addr(self, addr: SocketAddr) -> Self {
        self.listen(addr.to_string())
    }

    /// The control plane's certificate and key. Required. In Kong's shared mode this is
    /// the one certificate every node holds (`cluster_cert`, `cluster_cert_key`).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// How data planes authenticate. Default [`ClientAuth::Shared`]`(None)`: Kong's
    /// `cluster_mtls = shared`, a data plane must present this control plane's own
    /// certificate.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// How TLS session tickets are issued, so that a data plane that reconnects resumes
    /// its session instead of doing a full handshake. Default
    /// [`SessionTickets::Rotating`]: keys made by this process, rotated every 6 hours;
    /// after a restart every data plane does a full handshake. Give every start (and
    /// every node behind one address) the same [`SessionTickets::Shared`] secret for a
    /// restart storm to be paid in resumed handshakes (the secret is as sensitive as the
    /// cluster's keys: see [`TicketSecret`](crate::tls::TicketSecret)).
    /// [`SessionTickets::Off`]: every connection does a full handshake.
    ///
    /// Kong's control plane issues tickets with keys that nginx rotates and loses at
    /// restart, and Kong's data planes never resume: this matters for data planes built
    /// on this crate, which keep their session across reconnects.
    pub fn session_tickets(mut self, tickets: SessionTickets) -> Self {
        self.session_tickets = tickets;
        self
    }

    /// This control plane's node id, sent as `kong-node-id` and in negotiation.
    /// Default: a random UUID v4.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// The services offered, each with its versions in preference order. Default
    /// `config` in `v1`, what Kong offers.
    pub fn offered_services(mut self, offered: Vec<OfferedService>) -> Self {
        self.offered = offered;
        self
    }

    /// The Kong version this control plane speaks for: the version gate of both protocols
    /// compares data planes with it (same major, minor not newer), and wRPC negotiation
    /// announces it. Default `3.9.3`, Kong's newest release, so
    /// data planes of every 3.x minor up to 3.9 pass, wRPC's 3.0 and 3.1 included.
    /// Set `2.8.x` to serve Kong 2.x data planes instead.
    pub fn kong_version(mut self, version: impl Into<String>) -> Self {
        self.kong_version = version.into();
        self
    }

    /// Whether a data plane must pass Kong's version gate (same major, minor not newer):
    /// wRPC to negotiate, JSON right after `basic_info` (else it is closed with status
    /// `kong_version_incompatible`). Default on, as in Kong.
    pub fn version_gate(mut self, on: bool) -> Self {
        self.version_gate = on;
        self
    }

    /// The plugins configured on this control plane, with their versions, for Kong's
    /// plugin gate before each push. Default none: no plugin gate.
    pub fn plugins(mut self, plugins: Vec<PluginVersion>) -> Self {
        self.plugins = Some(plugins);
        self
    }

    /// How long a data plane has, from its upgrade, to report its plugins (wRPC
    /// ReportMetadata; JSON `basic_info`); past it the connection is closed with 1008 and
    /// the reason logged. Default 5 s, Kong's.
    pub fn metadata_deadline(mut self, deadline: Duration) -> Self {
        self.metadata_deadline = deadline;
        self
    }

    /// How many connections one data plane node id may hold; one more is answered `429`
    /// with the reason. Default 4 (Kong has no cap; a few leave room for reconnects
    /// while an old connection is still being torn down).
    pub fn max_connections_per_node(mut self, cap: usize) -> Self {
        self.max_connections_per_node = cap;
        self
    }

    /// The largest wRPC message sent or accepted. Default 4 MiB, Kong's
    /// `cluster_max_payload`. With wRPC on, [`ControlPlane::set_config`] refuses a config
    /// whose SyncConfig message is larger. JSON connections have their own limit
    /// ([`ControlPlaneBuilder::json_max_message_size`]).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Whether wRPC is served at `/v1/wrpc` (Kong 3.0 and 3.1 data planes). Default on.
    /// With it off, `/v1/wrpc` answers `404`, so Kong 3.0 data planes (which probe
    /// `HEAD /v1/wrpc`) fall back to `/v1/outlet`; with it on, the probe gets `400` and
    /// they speak wRPC.
    pub fn wrpc(mut self, on: bool) -> Self {
        self.wrpc = on;
        self
    }

    /// Whether Kong's JSON protocol is served at `/v1/outlet` (Kong 2.x, 3.0, 3.2 to
    /// 3.9). Default on. Off: `/v1/outlet` answers `404`. [`ControlPlaneBuilder::start`] refuses both
    /// protocols off.
    pub fn json(mut self, on: bool) -> Self {
        self.json = on;
        self
    }

    /// How long a JSON data plane may stay silent (no ping) before it is closed with 1008.
    /// Default 45 s, Kong's `PING_WAIT` (1.5 times its 30 s ping interval). Checked by a
    /// timer task that looks at the last ping when it fires, so a pinging data plane
    /// costs no timer work per ping.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// The largest frame sent or accepted on a `/v1/outlet` connection. Default 16 MiB,
    /// Kong's `cluster_max_payload` from 3.4 (a separate setting from
    /// [`ControlPlaneBuilder::max_message_size`], whose 4 MiB default is wRPC's). A frame above it
    /// from a data plane closes the connection with 1009 before it is buffered. Each data
    /// plane also gets at most the limit of its version (4 MiB below Kong 3.4): a bigger
    /// `reconfigure` is skipped for it ([`CpEvent::ConfigSkipped`](super::CpEvent)),
    /// where Kong would send it and have the data plane drop the connection and
    /// reconnect, forever.
    pub fn json_max_message_size(mut self, bytes: usize) -> Self {
        self.json_max_message_size = bytes;
        self
    }

    /// Threads that run the rpc handlers of every connection. Default 4.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
        self
    }

    /// Threads that start config pushes: each decides what a data plane gets, and queues
    /// the message on its connection (no thread waits for a data plane to read or answer:
    /// its answer completes the push). Default 4.
    pub fn push_threads(mut self, n: usize) -> Self {
        self.push_threads = n;
        self
    }

    /// Limits on each HTTP request head. Default [`HttpLimits::default`].
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.http_limits = limits;
        self
    }

    /// Serves plain HTTP requests on `path` beside the upgrade. Default none.
    pub fn http_handler(mut self, path: impl Into<String>, handler: Arc<dyn HttpHandler>) -> Self {
        self.http_handlers.push((path.into(), handler));
        self
    }

    /// How long a message to a data plane may take to be wholly written, from the moment
    /// it is queued; past it the data plane is not reading and is disconnected (event
    /// [`CpEvent::DpDisconnected`](super::CpEvent::DpDisconnected) says so). Default 10 s;
    /// must be above 0.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long closing a connection waits for the data plane's close frame. Default 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How long a SyncConfig waits for the data plane's answer (also its wire deadline);
    /// a data plane that does not answer in time is disconnected. Default 90 s, Kong's
    /// request deadline.
    pub fn sync_timeout(mut self, timeout: Duration) -> Self {
        self.sync_timeout = timeout;
        self
    }

    /// The most bytes that may wait to be written to one data plane. A data plane that
    /// lets more pile up is not reading and is disconnected. Default twice the max message
    /// size (8 MiB), and never less than one message of that size. A config body pushed
    /// to many data planes is held once, whatever it counts for each.
    pub fn outbox_limit(mut self, bytes: usize) -> Self {
        self.outbox_limit = Some(bytes);
        self
    }

    /// Each connection's fair share of the handler workers: requests queued or running at
    /// once (open inbound streams included). Past it, that connection's reader stops
    /// reading until one finishes, so TCP pushes back on that data plane alone and no
    /// connection can fill the workers' queue for the others. Default
    /// [`DEFAULT_MAX_PENDING_REQUESTS`] (8).
    pub fn max_pending_requests(mut self, n: usize) -> Self {
        self.max_pending_requests = n;
        self
    }

    /// How fast one connection's requests are read: past the rate its reader waits (TCP
    /// pushes back on that data plane alone), so a peer flooding requests costs the
    /// others little. Default [`DEFAULT_MAX_REQUEST_RATE`].
    pub fn max_request_rate(mut self, rate: RequestRate) -> Self {
        self.max_request_rate = rate;
        self
    }

    /// The most connections in the TLS handshake or HTTP head phase at once (they share
    /// one deadline, [`HttpLimits::head_timeout`], counted from the accept). Past it new
    /// connections wait in the listen backlog. Default [`DEFAULT_MAX_HANDSHAKES`] (512).
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n;
        self
    }

    /// How many events wait for a reader of [`ControlPlane::events`]; past that new
    /// events are dropped. Default 1024.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n;
        self
    }

    /// Binds the listener and starts the control plane.
    pub fn start(self) -> Result<ControlPlane> {
        if self.identity.is_none() {
            return Err(Error::InvalidInput(
                "the control plane needs a certificate and key: call ControlPlaneBuilder::identity"
                    .into(),
            ));
        }
        if self.max_pending_requests == 0 || self.max_handshakes == 0 {
            return Err(Error::InvalidInput(
                "max_pending_requests and max_handshakes must be at least 1".into(),
            ));
        }
        if self.max_connections_per_node == 0 {
            return Err(Error::InvalidInput(
                "max_connections_per_node must be at least 1".into(),
            ));
        }
        if self.metadata_deadline.is_zero()
            || self.sync_timeout.is_zero()
            || self.ping_timeout.is_zero()
        {
            return Err(Error::InvalidInput(
                "metadata_deadline, sync_timeout and ping_timeout must be above 0".into(),
            ));
        }
        if !self.wrpc && !self.json {
            return Err(Error::InvalidInput(
                "both protocols are off: turn on wrpc (Kong 3.0/3.1 data planes) or json \
                 (Kong 2.x, 3.0, 3.2-3.9), or both"
                    .into(),
            ));
        }
        ControlPlane::start(self)
    }
}
