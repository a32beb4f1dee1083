//! Settings of a [`DataPlane`](super::DataPlane), with Kong's defaults.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::handler::ConfigHandler;
use super::reconnect::Reconnect;
use super::DataPlane;
use crate::channel::DEFAULT_MAX_MESSAGE_SIZE;
use crate::config::DEFAULT_MAX_INFLATED;
use crate::proxy::ProxyUrl;
use crate::services::config::PluginVersion;
use crate::tls::{Identity, TrustMode};
use crate::{Error, Result};

/// The Kong version a data plane reports by default: 3.1.1, the last Kong release that
/// spoke wRPC.
pub const DEFAULT_KONG_VERSION: &str = "3.1.1";

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
    pub(crate) proxy: Option<ProxyUrl>,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) ping_interval: Duration,
    pub(crate) reconnect: Reconnect,
    pub(crate) max_message_size: usize,
    pub(crate) max_inflated_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) call_timeout: Duration,
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
            proxy: None,
            cache_dir: None,
            ping_interval: Duration::from_secs(30),
            reconnect: Reconnect::Kong,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_inflated_size: DEFAULT_MAX_INFLATED,
            connect_timeout: crate::tcp::DEFAULT_CONNECT_TIMEOUT,
            call_timeout: Duration::from_secs(5),
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

    /// The client certificate and key for mTLS (in Kong's shared mode, the shared pair).
    /// Default: none.
    pub fn client_identity(mut self, identity: Identity) -> Self {
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

    /// The plugins reported in ReportMetadata, as (name, version). Default: none.
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

    /// Time between PingCP calls. Default 30 s, Kong's.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// When to reconnect. Default [`Reconnect::Kong`] (5 to 10 s at random).
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = policy;
        self
    }

    /// Largest WebSocket message, both directions. Default 4 MiB, Kong's
    /// `cluster_max_payload`.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
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

    /// Time allowed for each of NegotiateServices, ReportMetadata and PingCP. Default 5 s:
    /// Kong's CP drops a DP that has not reported within 5 s of the upgrade.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Worker threads for handlers. Default 2.
    pub fn workers(mut self, workers: usize) -> Self {
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
