//! Settings of a [`DataPlane`](super::DataPlane), with Kong's defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::handler::ConfigHandler;
use super::reconnect::Reconnect;
use super::DataPlane;
use crate::channel::DEFAULT_MAX_MESSAGE_SIZE;
use crate::config::DEFAULT_MAX_INFLATED;
use crate::outlet;
use crate::proxy::ProxyUrl;
use crate::services::config::PluginVersion;
use crate::tls::{Identity, TrustMode};
use crate::{Error, Result};

/// The Kong version a data plane reports by default: 3.1.1, the last Kong release that
/// spoke wRPC.
pub const DEFAULT_KONG_VERSION: &str = "3.1.1";

/// Which protocol a data plane speaks to its CP.
///
/// Kong 2.x and 3.2 to 3.9 (every supported release, 3.4 LTS included) speak only Kong's
/// JSON protocol at `/v1/outlet`; Kong 3.0 speaks both; Kong 3.1 only wRPC at
/// `/v1/wrpc`. Note that a Kong CP refuses a DP whose Kong version (the builder's
/// [`version`](DataPlaneBuilder::version), default 3.1.1) has another major or a newer
/// minor than its own: for a 2.x CP, report a 2.x version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProtocolChoice {
    /// Kong 3.0's probe before every connection: `HEAD /v1/wrpc` with the kong-*
    /// headers; a 404 means JSON, any other HTTP status wRPC (Kong 3.0 and 3.1 CPs answer
    /// 400). A probe that fails (TCP, TLS, no answer) is a failed attempt, retried by the
    /// reconnect policy; Kong 3.0 instead settles on JSON until it restarts. The default.
    #[default]
    Auto,
    /// Always wRPC at `/v1/wrpc`.
    Wrpc,
    /// Always Kong's JSON protocol at `/v1/outlet`.
    Json,
}

impl std::str::FromStr for ProtocolChoice {
    type Err = Error;

    /// `auto`, `wrpc` or `json`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(ProtocolChoice::Auto),
            "wrpc" => Ok(ProtocolChoice::Wrpc),
            "json" => Ok(ProtocolChoice::Json),
            other => Err(Error::InvalidInput(format!(
                "protocol {other:?}: expected auto, wrpc or json"
            ))),
        }
    }
}

/// Builds a [`DataPlane`]. Every setter takes and returns the builder by value.
pub struct DataPlaneBuilder {
    pub(crate) cp: String,
    pub(crate) server_name: Option<String>,
    pub(crate) trust: TrustMode,
    pub(crate) identity: Option<Identity>,
    pub(crate) node_id: Option<String>,
    pub(crate) hostname: Option<String>,
    pub(crate) version: String,
    pub(crate) plugins: Vec<PluginVersion>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) proxy: Option<ProxyUrl>,
    pub(crate) protocol: ProtocolChoice,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) ping_interval: Duration,
    pub(crate) liveness_timeout: Duration,
    pub(crate) reconnect: Reconnect,
    pub(crate) max_message_size: usize,
    pub(crate) json_max_frame: usize,
    pub(crate) max_inflated_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) session_resumption: bool,
    pub(crate) call_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) workers: usize,
    pub(crate) handler: Option<Arc<dyn ConfigHandler>>,
}

impl DataPlaneBuilder {
    pub(crate) fn new(cp: impl Into<String>) -> DataPlaneBuilder {
        DataPlaneBuilder {
            cp: cp.into(),
            server_name: None,
            trust: TrustMode::WebPki,
            identity: None,
            node_id: None,
            hostname: None,
            version: DEFAULT_KONG_VERSION.to_string(),
            plugins: Vec::new(),
            labels: BTreeMap::new(),
            proxy: None,
            protocol: ProtocolChoice::Auto,
            cache_dir: None,
            ping_interval: outlet::PING_INTERVAL,
            liveness_timeout: outlet::LIVENESS_TIMEOUT,
            reconnect: Reconnect::Kong,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            json_max_frame: outlet::DEFAULT_MAX_FRAME,
            max_inflated_size: DEFAULT_MAX_INFLATED,
            connect_timeout: crate::tcp::DEFAULT_CONNECT_TIMEOUT,
            session_resumption: true,
            call_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            workers: 2,
            handler: None,
        }
    }

    /// The name the CP's certificate is verified against, and sent as SNI (never for an
    /// IP address). Default: `kong_clustering` in pinned (shared) mode, else the CP host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// How the CP's certificate is trusted. Default: the Mozilla roots (webpki-roots).
    /// Kong's default `cluster_mtls = shared` is `TrustMode::Pinned` with the shared
    /// certificate.
    pub fn trust(mut self, trust: TrustMode) -> Self {
        self.trust = trust;
        self
    }

    /// This data plane's certificate and key, presented to the CP for mTLS (in Kong's
    /// shared mode, the shared pair; the control plane's builder takes its own the same
    /// way). Default: none.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// This node's id, a UUID (Kong stores it in a UUID column). Default: made once and
    /// kept in the cache directory (a new one per process without a cache directory).
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// The hostname reported. Default: the machine's.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// The Kong version reported. Default `3.1.1`; Kong's CP refuses a DP whose minor is
    /// newer than its own.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The plugins reported (ReportMetadata on wRPC, `basic_info` on JSON), as (name,
    /// version); an empty version is left out of `basic_info`, as Kong does for a plugin
    /// without one. Default: none.
    pub fn plugins<I, N, V>(mut self, plugins: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        self.plugins = plugins
            .into_iter()
            .map(|(n, v)| PluginVersion {
                name: n.into(),
                version: v.into(),
            })
            .collect();
        self
    }

    /// Labels sent in `basic_info` on Kong's JSON protocol (Kong 3.3+'s
    /// `cluster_dp_labels`; the CP shows them in `/clustering/data-planes`). Default:
    /// none, and then `labels` is left out of `basic_info`, as Kong does. wRPC has no
    /// place for them.
    pub fn labels<I, K, V>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.labels = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// Which protocol to speak. Default [`ProtocolChoice::Auto`]: probe before every
    /// connection, as Kong 3.0 does.
    pub fn protocol(mut self, choice: ProtocolChoice) -> Self {
        self.protocol = choice;
        self
    }

    /// An HTTP CONNECT proxy to reach the CP through. Default: none.
    pub fn proxy(mut self, proxy: ProxyUrl) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Where the last applied config and the node id are kept. Default: none (nothing is
    /// cached; a restart waits for the CP).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Time between pings (PingCP on wRPC, WebSocket pings on JSON). Default 30 s,
    /// Kong's `CLUSTERING_PING_INTERVAL`. On JSON a ping also goes out at once after
    /// `basic_info` and after each applied config.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// On Kong's JSON protocol, how long the CP may stay silent (no frame of any kind)
    /// before the connection is dropped and redialled. Default 45 s, Kong's `PING_WAIT`;
    /// lower it in tests. (wRPC relies on PingCP answers within the call timeout.)
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.liveness_timeout = timeout;
        self
    }

    /// When to reconnect. Default [`Reconnect::Kong`] (5 to 10 s at random).
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = policy;
        self
    }

    /// Largest wRPC message, both directions. Default 4 MiB, Kong's
    /// `cluster_max_payload` for wRPC (3.0, 3.1). For JSON see
    /// [`json_max_message_size`](Self::json_max_message_size).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Largest message (one frame) on Kong's JSON protocol, both directions; it bounds the gzipped
    /// `reconfigure`. Default 16 MiB, Kong 3.4+'s `cluster_max_payload` (Kong 2.8 to 3.3
    /// used 4 MiB). A larger frame is not buffered: the connection closes with 1009 and
    /// is redialled by the reconnect policy (raise the limit on both ends).
    pub fn json_max_message_size(mut self, bytes: usize) -> Self {
        self.json_max_frame = bytes;
        self
    }

    /// Largest inflated config; a bigger one (a gzip bomb) is rejected. Default 64 MiB.
    pub fn max_inflated_size(mut self, bytes: usize) -> Self {
        self.max_inflated_size = bytes;
        self
    }

    /// Time allowed for TCP, proxy, TLS and the upgrade together. Default 5 s, Kong's.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether a reconnect offers the TLS session ticket of the connection before, so
    /// that a CP that issues tickets resumes the session: no certificate chain to verify
    /// and no signatures, on either side. The DP keeps a few tickets in memory for the
    /// life of the `DataPlane` (never on disk). Default on. Kong's DPs never resume
    /// (every connection is a full handshake); off does the same. The CP decides whether
    /// a ticket is still good, and a refused one costs nothing but the full handshake.
    pub fn session_resumption(mut self, on: bool) -> Self {
        self.session_resumption = on;
        self
    }

    /// Time allowed for each of NegotiateServices, ReportMetadata and PingCP. Default 5 s:
    /// Kong's CP drops a DP that has not reported within 5 s of the upgrade.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long a message to the CP may take to be wholly written, from the moment it is
    /// queued; past it the CP is not reading and the connection is dropped (and
    /// reconnected). Default 10 s, as the control plane's.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long closing the connection waits for the CP's close frame. Default 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Threads that run the handlers of the connection (config intake included).
    /// Default 2.
    pub fn worker_threads(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// The code that applies configs. Required.
    pub fn config_handler(mut self, handler: impl ConfigHandler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Checks the settings, applies the cached config if there is one, and starts
    /// connecting in the background.
    pub fn start(self) -> Result<DataPlane> {
        if self.handler.is_none() {
            return Err(Error::InvalidInput("a config handler is required".into()));
        }
        if let Some(id) = &self.node_id {
            if !crate::random::is_uuid(id) {
                return Err(Error::InvalidInput(format!(
                    "node id {id:?} is not a UUID; Kong's CP stores node ids as UUIDs"
                )));
            }
        }
        if self.ping_interval.is_zero() {
            return Err(Error::InvalidInput(
                "the ping interval must be above 0".into(),
            ));
        }
        if self.write_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::InvalidInput(
                "the write and connect timeouts must be above 0".into(),
            ));
        }
        if self.liveness_timeout.is_zero() {
            return Err(Error::InvalidInput(
                "the liveness timeout must be above 0".into(),
            ));
        }
        if self.json_max_frame < 1024 {
            return Err(Error::InvalidInput(format!(
                "a JSON max frame of {} bytes is too small for basic_info; Kong's default is {}",
                self.json_max_frame,
                outlet::DEFAULT_MAX_FRAME
            )));
        }
        DataPlane::start(self)
    }
}

/// The machine's hostname: /proc/sys/kernel/hostname, else `$HOSTNAME`, else `localhost`.
pub(crate) fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}
