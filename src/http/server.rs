//! The CP side of HTTP: what the [`Listener`](super::Listener) is configured with and hands
//! out: [`ServerConfig`], plain [`Request`]s and [`Response`]s for [`HttpHandler`]s, and
//! [`Upgraded`] connections for the [`UpgradeHandler`].
//!
//! One accept thread (`dpspec-accept`) and one thread per connection
//! (`dpspec-conn-<peer>`, a small stack). A connection thread runs the TLS handshake and
//! reads one request head under [`HttpLimits`], both within one deadline counted from the
//! accept (at most [`ServerConfig::max_handshakes`] connections are in that phase at
//! once), and then either answers it (a registered
//! [`HttpHandler`], or an error) and closes, or, for an accepted wRPC upgrade, writes the
//! `101` and hands the connection to the [`UpgradeHandler`] on the same thread.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use super::head::{HttpLimits, RequestHead};
use super::HttpError;
use crate::upgrade::{NodeIdentity, Rejection, UpgradeRequest, WRPC_PATH};

/// A plain (non-upgrade) HTTP request, as given to an [`HttpHandler`].
#[derive(Debug, Clone)]
pub struct Request {
    /// The request head.
    pub head: RequestHead,
    /// The body, read by `Content-Length` (empty without one).
    pub body: Vec<u8>,
    /// The peer's address.
    pub peer_addr: SocketAddr,
    /// The client certificate chain the peer presented in TLS, if any (already checked by
    /// the listener's [`ServerTls`](crate::tls::ServerTls) client authentication).
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

/// The answer of an [`HttpHandler`].
///
/// The server adds `kong-node-id`, `Content-Length` and `Connection: close`; headers of
/// those names set here are ignored, as are headers that are not valid HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status` and `body` and no extra headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Answers plain HTTP requests on one path (the DP-spec allows stateless HTTP RPCs beside
/// the upgrade). Runs on the connection's thread; a panic is answered `500`.
pub trait HttpHandler: Send + Sync {
    /// Answers one request.
    fn handle(&self, req: &Request) -> Response;
}

/// Receives the connections that passed the wRPC upgrade.
pub trait UpgradeHandler: Send + Sync + 'static {
    /// Decides whether to accept an upgrade that passed the protocol checks, before the
    /// `101` is written; a [`Rejection`] is answered with its status and its reason as
    /// the body (for example `429` when a node has too many connections). Accepts all by
    /// default.
    fn admit(&self, req: &UpgradeRequest) -> Result<(), Rejection> {
        let _ = req;
        Ok(())
    }

    /// Takes an upgraded connection, after the `101` was written. Runs on the
    /// connection's thread, which it may keep (as the connection's reader thread, say):
    /// [`Listener::shutdown`](super::Listener::shutdown) joins it, so it must return once the connection is closed.
    fn upgraded(&self, conn: Upgraded);
}

/// A connection that passed the upgrade, handed to [`UpgradeHandler::upgraded`].
///
/// The socket's read timeout is cleared (an idle connection costs no wake-ups) and its
/// write timeout set to [`ServerConfig::write_timeout`]. `leftover` holds every plaintext
/// byte received after the request head (the start of the DP's first WebSocket frames),
/// including any the TLS session had already decrypted; the session holds at most a
/// partial TLS record, so the next step is to read from the socket.
#[derive(Debug)]
pub struct Upgraded {
    /// The TLS session.
    pub session: rustls::ServerConnection,
    /// The socket under it.
    pub sock: TcpStream,
    /// Plaintext received after the request head: never lost.
    pub leftover: Vec<u8>,
    /// The DP's identity from the upgrade request.
    pub node: NodeIdentity,
    /// The DP's address.
    pub peer_addr: SocketAddr,
    /// The upgrade request's head.
    pub head: RequestHead,
}

/// How the listener serves.
#[derive(Clone)]
pub struct ServerConfig {
    /// This CP's node id, sent as `kong-node-id` on every response. Required: must be a
    /// non-empty valid header value.
    pub node_id: String,
    /// Limits on each request. Default: [`HttpLimits::default`].
    pub limits: HttpLimits,
    /// Plain HTTP endpoints: exact paths (no query) and their handlers. Default none.
    pub handlers: Vec<(String, Arc<dyn HttpHandler>)>,
    /// The upgrade path. Default `/v1/wrpc`, Kong's.
    pub wrpc_path: String,
    /// More paths that take the same upgrade. Default none.
    pub extra_wrpc_paths: Vec<String>,
    /// How long writing a response may take, and the write timeout left on the socket
    /// of an [`Upgraded`] connection, so a DP that stops reading cannot block a writer
    /// forever. Default 10 s. `None`: no timeout on the upgraded socket (responses still
    /// get 10 s).
    pub write_timeout: Option<Duration>,
    /// Whether an upgrade must carry a Kong node identity (node id and version, in the
    /// query or the `kong-*` headers). Default true, as Kong's CP requires; false for
    /// plain wRPC services that any wRPC client may call.
    pub require_node_identity: bool,
    /// The stack size of each connection thread, which also runs
    /// [`UpgradeHandler::upgraded`]. Default 256 KiB.
    pub conn_stack_size: usize,
    /// The most connections between accept and a served request (TLS handshake and HTTP
    /// head, which share one deadline: [`HttpLimits::head_timeout`] from the accept).
    /// Default [`DEFAULT_MAX_HANDSHAKES`]. Past it the listener stops accepting until one
    /// finishes, and new connections wait in the kernel's listen backlog
    /// ([`LISTEN_BACKLOG`]), so a storm of reconnecting DPs all get in, in turn.
    pub max_handshakes: usize,
}

/// The default cap on connections in the TLS handshake or HTTP head phase at once: the
/// handshakes are CPU work, and more at once on a small machine only makes each slower.
pub const DEFAULT_MAX_HANDSHAKES: usize = 512;

/// The listen backlog asked of the kernel (which may cap it, `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;

impl ServerConfig {
    /// A configuration with `node_id` and the defaults.
    pub fn new(node_id: impl Into<String>) -> ServerConfig {
        ServerConfig {
            node_id: node_id.into(),
            limits: HttpLimits::default(),
            handlers: Vec::new(),
            wrpc_path: WRPC_PATH.to_string(),
            extra_wrpc_paths: Vec::new(),
            write_timeout: Some(Duration::from_secs(10)),
            require_node_identity: true,
            conn_stack_size: 256 * 1024,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        }
    }

    /// Adds a plain HTTP endpoint.
    pub fn with_handler(mut self, path: impl Into<String>, handler: Arc<dyn HttpHandler>) -> Self {
        self.handlers.push((path.into(), handler));
        self
    }

    pub(super) fn check(&self) -> Result<(), HttpError> {
        let bad = |s: String| Err(HttpError::InvalidConfig(s));
        if self.node_id.is_empty() || !super::head::valid_header_value(self.node_id.as_bytes()) {
            return bad(format!(
                "node_id {:?} must be non-empty, with no control characters",
                self.node_id
            ));
        }
        let wrpc = std::iter::once(&self.wrpc_path).chain(&self.extra_wrpc_paths);
        for path in wrpc.clone().chain(self.handlers.iter().map(|(p, _)| p)) {
            if !path.starts_with('/') || path.contains('?') {
                return bad(format!("path {path:?} must start with / and have no query"));
            }
        }
        for (path, _) in &self.handlers {
            if wrpc.clone().any(|w| w == path) {
                return bad(format!("path {path:?} is both a handler and a wRPC path"));
            }
        }
        if self.limits.max_headers == 0 || self.limits.max_head_bytes == 0 {
            return bad("max_headers and max_head_bytes must be above 0".into());
        }
        if self.max_handshakes == 0 {
            return bad("max_handshakes must be above 0".into());
        }
        if self.limits.head_timeout.is_zero() || self.write_timeout.is_some_and(|t| t.is_zero()) {
            return bad("head_timeout and write_timeout must be above 0".into());
        }
        Ok(())
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("node_id", &self.node_id)
            .field("limits", &self.limits)
            .field(
                "handlers",
                &self.handlers.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("wrpc_path", &self.wrpc_path)
            .field("extra_wrpc_paths", &self.extra_wrpc_paths)
            .field("write_timeout", &self.write_timeout)
            .field("require_node_identity", &self.require_node_identity)
            .field("conn_stack_size", &self.conn_stack_size)
            .field("max_handshakes", &self.max_handshakes)
            .finish()
    }
}
