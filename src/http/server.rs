//! The CP side of HTTP: what the [`Listener`](super::Listener) is configured with and hands
//! out: [`ServerConfig`] and its [`Route`]s by exact path, plain [`Request`]s and
//! [`Response`]s for [`HttpHandler`]s, and [`Switched`] connections for a
//! [`SwitchHandler`]. Nothing here knows of WebSockets or wRPC: the
//! `upgrade` module sits on top and builds the switch routes.
//!
//! One accept thread (`dpspec-accept`) and one thread per connection
//! (`dpspec-conn-<peer>`, a small stack). A connection thread runs the TLS handshake and
//! reads one request head under [`HttpLimits`], both within one deadline counted from the
//! accept (at most [`ServerConfig::max_handshakes`] connections are in that phase at
//! once), and then dispatches it by exact path: a plain route's [`HttpHandler`] answers
//! and the connection closes; a switch route's [`SwitchHandler`] refuses, or accepts and
//! takes the connection on the same thread after its `101` is written; any other path gets
//! `404`.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use super::handoff::HandOff;
use super::head::{
    push_header, reason_phrase, valid_header_name, valid_header_value, HttpLimits, RequestHead,
};
use super::HttpError;
use super::HEADER_NODE_ID;

/// A plain (non-upgrade) HTTP request, as given to an [`HttpHandler`].
#[derive(Debug, Clone)]
#[non_exhaustive]
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
#[non_exhaustive]
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

/// What is served at one path of the listener: a plain handler ([`Route::plain`]) or a
/// WebSocket upgrade ([`upgrade::route`](crate::upgrade::route)).
#[derive(Clone)]
pub struct Route(pub(crate) RouteKind);

#[derive(Clone)]
pub(crate) enum RouteKind {
    /// Plain request and response: the body is read, the handler answers, the connection
    /// closes.
    Plain(Arc<dyn HttpHandler>),
    /// A request that switches protocols (a WebSocket upgrade): the handler looks at the
    /// head and refuses it, or accepts it with the `101` to write and takes the connection.
    Switch(Arc<dyn SwitchHandler>),
}

impl Route {
    /// Plain request and response: the body is read, `handler` answers, the connection
    /// closes.
    pub fn plain(handler: Arc<dyn HttpHandler>) -> Route {
        Route(RouteKind::Plain(handler))
    }

    internal_fn! {
        /// A request that switches protocols: `handler` looks at the head and refuses it,
        /// or accepts it with the response to write and takes the connection.
        fn switch(handler: Arc<dyn SwitchHandler>) -> Route {
            Route(RouteKind::Switch(handler))
        }
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            RouteKind::Plain(_) => "Route::Plain",
            RouteKind::Switch(_) => "Route::Switch",
        })
    }
}

/// Decides on a request that switches protocols, from its head alone (no body is read).
pub trait SwitchHandler: Send + Sync + 'static {
    /// Refuses the request with a response (written, then the connection closes), or
    /// accepts it with a [`Switch`]. Runs on the connection's thread, before anything is
    /// written; `node_id` is the listener's [`ServerConfig::node_id`], for the response
    /// headers.
    fn accept(
        &self,
        head: &RequestHead,
        peer: SocketAddr,
        node_id: &str,
    ) -> Result<Switch, Response>;
}

/// An accepted protocol switch: the response to write, and what takes the connection
/// after it.
pub struct Switch {
    /// The whole response (status line, headers and blank line), usually a `101`.
    pub response: Vec<u8>,
    /// Takes the connection once `response` is written. Runs on the connection's thread,
    /// which it may keep (as the connection's reader, say):
    /// [`Listener::shutdown`](super::Listener::shutdown) joins it, so it must return once
    /// the connection is closed.
    pub then: Box<dyn FnOnce(Switched) + Send>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("response", &String::from_utf8_lossy(&self.response))
            .finish_non_exhaustive()
    }
}

/// A connection whose protocol switch was accepted, handed to [`Switch::then`] after the
/// response was written.
///
/// The socket's read timeout is cleared (an idle connection costs no wake-ups) and its
/// write timeout set to [`ServerConfig::write_timeout`]. `leftover` holds every plaintext
/// byte received after the request head (the start of the peer's first frames),
/// including any the TLS session had already decrypted; the session holds at most a
/// partial TLS record, so the next step is to read from the socket.
#[derive(Debug)]
pub struct Switched {
    /// The TLS session.
    pub session: rustls::ServerConnection,
    /// The socket under it.
    pub sock: TcpStream,
    /// Plaintext received after the request head: never lost.
    pub leftover: Vec<u8>,
    /// The peer's address.
    pub peer_addr: SocketAddr,
    /// The request's head.
    pub head: RequestHead,
    /// Moves the rest of the connection's life off the connection thread, whose stack
    /// the handshake made deep (see [`HandOff`]).
    pub hand_off: HandOff,
}

/// How the listener serves: [`ServerConfig::new`] with the CP's node id, then the
/// by-value setters, each of which documents its default.
#[derive(Clone)]
pub struct ServerConfig {
    pub(crate) node_id: String,
    pub(crate) limits: HttpLimits,
    pub(crate) routes: Vec<(String, Route)>,
    pub(crate) write_timeout: Duration,
    pub(crate) conn_stack_size: usize,
    pub(crate) max_handshakes: usize,
}

/// The default cap on connections in the TLS handshake or HTTP head phase at once: the
/// handshakes are CPU work, and more at once on a small machine only makes each slower.
pub const DEFAULT_MAX_HANDSHAKES: usize = 512;

/// The listen backlog asked of the kernel (which may cap it, `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;

impl ServerConfig {
    /// A configuration for the CP node `node_id`, sent as `kong-node-id` on every
    /// response (it must be a non-empty valid header value), serving nothing yet.
    pub fn new(node_id: impl Into<String>) -> ServerConfig {
        ServerConfig {
            node_id: node_id.into(),
            limits: HttpLimits::default(),
            routes: Vec::new(),
            write_timeout: Duration::from_secs(10),
            conn_stack_size: 256 * 1024,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        }
    }

    /// Limits on each request. Default: [`HttpLimits::default`].
    pub fn limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves a plain HTTP endpoint at `path` (an exact path, no query).
    pub fn handler(self, path: impl Into<String>, handler: Arc<dyn HttpHandler>) -> Self {
        self.route(path, Route::plain(handler))
    }

    /// Serves `route` at `path` (an exact path, no query). Any path without a route is
    /// answered `404`; two routes on one path are refused when the listener binds.
    pub fn route(mut self, path: impl Into<String>, route: Route) -> Self {
        self.routes.push((path.into(), route));
        self
    }

    /// How long writing a response may take, and the write timeout left on the socket of
    /// a switched (upgraded) connection, so a DP that stops reading cannot block a
    /// writer. Default 10 s; must be above 0.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The stack size of each connection thread, which runs the TLS handshake, the HTTP
    /// head, plain handlers and an upgraded connection's handler. Default 256 KiB (of
    /// virtual memory: only the pages a thread touches are resident). The control plane
    /// moves each upgraded connection to a fresh thread once it is set up, so that the
    /// pages the handshake touched are let go; that thread gets this and 64 KiB more.
    pub fn conn_stack_size(mut self, bytes: usize) -> Self {
        self.conn_stack_size = bytes;
        self
    }

    /// The most connections between accept and a served request (TLS handshake and HTTP
    /// head, which share one deadline: [`HttpLimits::head_timeout`] from the accept).
    /// Default [`DEFAULT_MAX_HANDSHAKES`]; must be above 0. Past it the listener stops
    /// accepting until one finishes, and new connections wait in the kernel's listen
    /// backlog (4096), so a storm of reconnecting DPs all get in, in turn.
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n;
        self
    }

    /// The route at `path`, if any.
    pub(super) fn route_for(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|(p, _)| p == path).map(|(_, r)| r)
    }

    pub(super) fn check(&self) -> Result<(), HttpError> {
        let bad = |s: String| Err(HttpError::InvalidConfig(s));
        if self.node_id.is_empty() || !super::head::valid_header_value(self.node_id.as_bytes()) {
            return bad(format!(
                "node_id {:?} must be non-empty, with no control characters",
                self.node_id
            ));
        }
        for (i, (path, _)) in self.routes.iter().enumerate() {
            if !path.starts_with('/') || path.contains('?') {
                return bad(format!("path {path:?} must start with / and have no query"));
            }
            if self.routes[..i].iter().any(|(p, _)| p == path) {
                return bad(format!("path {path:?} has two routes"));
            }
        }
        if self.limits.max_headers == 0 || self.limits.max_head_bytes == 0 {
            return bad("max_headers and max_head_bytes must be above 0".into());
        }
        if self.max_handshakes == 0 {
            return bad("max_handshakes must be above 0".into());
        }
        if self.limits.head_timeout.is_zero() || self.write_timeout.is_zero() {
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
            .field("routes", &self.routes)
            .field("write_timeout", &self.write_timeout)
            .field("conn_stack_size", &self.conn_stack_size)
            .field("max_handshakes", &self.max_handshakes)
            .finish()
    }
}

/// A whole response with a body: status line, `headers` (invalid ones, and those the
/// server sets itself, skipped), `kong-node-id`, `Content-Length`, and `Connection: close`
/// when `close`. For a `HEAD` request pass `with_body = false`: the length is still
/// announced, the body not sent.
pub(crate) fn response_bytes(
    status: u16,
    headers: &[(String, String)],
    node_id: &str,
    body: &[u8],
    with_body: bool,
    close: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    for (name, value) in headers {
        let ours = [
            HEADER_NODE_ID,
            "content-length",
            "connection",
            "transfer-encoding",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n));
        if ours {
            continue;
        }
        if valid_header_name(name) && valid_header_value(value.as_bytes()) {
            push_header(&mut out, name, value.as_bytes());
        } else {
            log::warn!("dropping response header {name:?}: not a valid header name or value");
        }
    }
    if valid_header_value(node_id.as_bytes()) {
        push_header(&mut out, HEADER_NODE_ID, node_id.as_bytes());
    }
    push_header(
        &mut out,
        "Content-Length",
        body.len().to_string().as_bytes(),
    );
    if close {
        push_header(&mut out, "Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

/// The listener's own refusal (404, 400, 413, ...): `reason` as a `text/plain` body.
pub(crate) fn error_response(status: u16, reason: impl Into<String>) -> Response {
    let mut body = reason.into().into_bytes();
    body.push(b'\n');
    Response::new(status, body).with_header("Content-Type", "text/plain; charset=utf-8")
}
