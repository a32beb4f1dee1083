//! The CP's listener: TLS, one HTTP/1.1 request per connection, the wRPC upgrade.
//!
//! One accept thread (`dpspec-accept`) and one thread per connection
//! (`dpspec-conn-<peer>`, a small stack). A connection thread runs the TLS handshake,
//! reads one request head under [`HttpLimits`], and then either answers it (a registered
//! [`HttpHandler`], or an error) and closes, or, for an accepted wRPC upgrade, writes the
//! `101` and hands the connection to the [`UpgradeHandler`] on the same thread.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::StreamOwned;
use rustls_pki_types::CertificateDer;

use super::head::{read_request_head, HttpLimits, RequestHead};
use super::timed::{set_timeouts, Timed};
use super::{body_length, drain_plaintext, read_body, BodyLength, HttpError};
use crate::tls::{self, ServerTls};
use crate::upgrade::{
    self, accept_response, check_request, rejection_response, NodeIdentity, Rejection,
    UpgradeRequest, WRPC_PATH,
};

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
    /// the listener's [`ServerTls`] client authentication).
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
    /// [`Listener::shutdown`] joins it, so it must return once the connection is closed.
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
    /// The stack size of each connection thread, which also runs
    /// [`UpgradeHandler::upgraded`]. Default 256 KiB.
    pub conn_stack_size: usize,
}

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
            conn_stack_size: 256 * 1024,
        }
    }

    /// Adds a plain HTTP endpoint.
    pub fn with_handler(mut self, path: impl Into<String>, handler: Arc<dyn HttpHandler>) -> Self {
        self.handlers.push((path.into(), handler));
        self
    }

    fn check(&self) -> Result<(), HttpError> {
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
            .field("conn_stack_size", &self.conn_stack_size)
            .finish()
    }
}

/// A listening CP endpoint. Dropping it shuts it down ([`Listener::shutdown`]).
pub struct Listener {
    local_addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

struct Inner {
    tls: ServerTls,
    config: ServerConfig,
    upgrade: Arc<dyn UpgradeHandler>,
    stopping: AtomicBool,
    conns: Mutex<Conns>,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    map: HashMap<u64, Conn>,
    /// Threads that are done and wait to be joined.
    finished: Vec<u64>,
}

struct Conn {
    /// A handle on the socket while the connection is in the HTTP phase, to unblock it at
    /// shutdown; `None` once handed to the upgrade handler.
    sock: Option<TcpStream>,
    thread: Option<JoinHandle<()>>,
}

impl Inner {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        // A panic elsewhere while holding the lock leaves the map usable.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Listener {
    /// Binds `addr` and starts accepting.
    ///
    /// Each connection gets `tls`, then one request served by `config`; accepted
    /// upgrades go to `upgrade`.
    pub fn bind(
        addr: impl ToSocketAddrs,
        tls: ServerTls,
        config: ServerConfig,
        upgrade: Arc<dyn UpgradeHandler>,
    ) -> Result<Listener, HttpError> {
        config.check()?;
        let listener = TcpListener::bind(addr).map_err(HttpError::Bind)?;
        let local_addr = listener.local_addr().map_err(HttpError::Bind)?;
        let inner = Arc::new(Inner {
            tls,
            config,
            upgrade,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
        });
        let accept_inner = inner.clone();
        let accept = thread::Builder::new()
            .name("dpspec-accept".into())
            .spawn(move || accept_loop(listener, accept_inner))
            .map_err(HttpError::Spawn)?;
        log::info!("listening on {local_addr}");
        Ok(Listener {
            local_addr,
            inner,
            accept: Some(accept),
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting: new connections are refused, connections still in the HTTP phase
    /// are cut, and no further connection is handed to the [`UpgradeHandler`]. Connections
    /// already handed over keep running. Idempotent.
    ///
    /// Call this, then close the upgraded connections, then [`Listener::shutdown`]: no
    /// upgrade can slip in between.
    pub fn stop_accepting(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.inner.stopping.store(true, Ordering::SeqCst);
        // Wake the blocked accept with a connection to ourselves.
        let wake = match self.local_addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((Ipv6Addr::LOCALHOST, a.port()))
            }
            a => a,
        };
        if let Err(e) = TcpStream::connect_timeout(&wake, Duration::from_secs(2)) {
            log::warn!(
                "could not wake the accept thread on {wake}: {e}; it ends at the next connection"
            );
        }
        if accept.join().is_err() {
            log::error!("the accept thread panicked");
        }
        for conn in self.inner.conns().map.values() {
            if let Some(sock) = &conn.sock {
                let _ = sock.shutdown(Shutdown::Both);
            }
        }
        log::info!("stopped listening on {}", self.local_addr);
    }

    /// Stops accepting ([`Listener::stop_accepting`]) and joins every connection thread:
    /// those in the HTTP phase end at once; those handed to the [`UpgradeHandler`] are
    /// joined too, so close the upgraded connections first (or make
    /// [`UpgradeHandler::upgraded`] return), or this blocks until they end. Idempotent.
    pub fn shutdown(&mut self) {
        self.stop_accepting();
        let threads: Vec<JoinHandle<()>> = {
            let mut conns = self.inner.conns();
            conns.finished.clear();
            conns.map.drain().filter_map(|(_, c)| c.thread).collect()
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// How long to wait after an accept error before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut failing = false;
    loop {
        let accepted = listener.accept();
        if inner.stopping.load(Ordering::SeqCst) {
            break;
        }
        match accepted {
            Ok((sock, peer)) => {
                reap(&inner);
                match spawn_conn(&inner, sock, peer) {
                    Ok(()) if failing => {
                        log::info!("accepting connections again");
                        failing = false;
                    }
                    Ok(()) => {}
                    // Out of descriptors or threads just after the accept: the same episode
                    // as a failed accept, shed and said once, not once per connection.
                    Err(e) => {
                        if !failing {
                            log::warn!(
                                "accepting a connection failed: cannot serve the connection \
                                 from {peer}: {e}; shedding connections, retrying every \
                                 {ACCEPT_BACKOFF:?}"
                            );
                            failing = true;
                        } else {
                            log::debug!("dropping the connection from {peer}: {e}");
                        }
                        thread::sleep(ACCEPT_BACKOFF);
                    }
                }
            }
            // The peer gave up before we took it: nothing wrong here.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: never end the loop; say so once per episode.
                if !failing {
                    log::warn!(
                        "accepting a connection failed: {e}; retrying every {ACCEPT_BACKOFF:?}"
                    );
                    failing = true;
                }
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
    // The listening socket closes here: new connections are refused from now on.
}

/// Joins the connection threads that are done.
fn reap(inner: &Inner) {
    let threads: Vec<JoinHandle<()>> = {
        let mut conns = inner.conns();
        let done = std::mem::take(&mut conns.finished);
        done.iter()
            .filter_map(|id| conns.map.remove(id).and_then(|c| c.thread))
            .collect()
    };
    for t in threads {
        let _ = t.join();
    }
}

/// Starts the thread of a new connection; on failure (out of descriptors or threads) the
/// connection is dropped and the error returned.
fn spawn_conn(inner: &Arc<Inner>, sock: TcpStream, peer: SocketAddr) -> io::Result<()> {
    let handle = sock.try_clone()?;
    let id = {
        let mut conns = inner.conns();
        let id = conns.next_id;
        conns.next_id += 1;
        conns.map.insert(
            id,
            Conn {
                sock: Some(handle),
                thread: None,
            },
        );
        id
    };
    let conn_inner = inner.clone();
    let spawned = thread::Builder::new()
        .name(format!("dpspec-conn-{peer}"))
        .stack_size(inner.config.conn_stack_size)
        .spawn(move || {
            let _done = Finished {
                inner: &conn_inner,
                id,
            };
            serve(&conn_inner, id, sock, peer);
        });
    let mut conns = inner.conns();
    match spawned {
        Ok(t) => {
            if let Some(c) = conns.map.get_mut(&id) {
                c.thread = Some(t);
            }
            Ok(())
        }
        Err(e) => {
            conns.map.remove(&id);
            Err(io::Error::new(
                e.kind(),
                format!("cannot start its thread: {e}"),
            ))
        }
    }
}

/// Marks a connection thread as done when it ends, even by a panic.
struct Finished<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        let mut conns = self.inner.conns();
        if let Some(c) = conns.map.get_mut(&self.id) {
            c.sock = None;
            conns.finished.push(self.id);
        }
    }
}

type Stream = StreamOwned<rustls::ServerConnection, Timed>;

fn serve(inner: &Inner, id: u64, mut sock: TcpStream, peer: SocketAddr) {
    let cfg = &inner.config;
    let _ = sock.set_nodelay(true);
    let mut session = match inner.tls.session() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start a TLS session for {peer}: {e}");
            return;
        }
    };
    let deadline = Instant::now() + cfg.limits.head_timeout;
    if set_timeouts(&sock, deadline).is_err() {
        return;
    }
    if let Err(e) = tls::server_handshake(&mut session, &mut sock) {
        log::info!("TLS handshake with {peer} failed: {e}");
        return;
    }
    let deadline = Instant::now() + cfg.limits.head_timeout;
    let mut stream = StreamOwned::new(session, Timed { sock, deadline });
    let (head, leftover) = match read_request_head(&mut stream, &cfg.limits) {
        Ok(read) => read,
        Err(e) => {
            match e.status() {
                Some(status) => {
                    log::info!("answering {status} to {peer}: {e}");
                    let rej = Rejection::new(status, e.to_string());
                    send_and_close(inner, stream, &rejection_response(&rej, &cfg.node_id, true));
                }
                None => log::debug!("connection from {peer} ended: {e}"),
            }
            return;
        }
    };
    let path = head.path();
    let with_body = head.method != "HEAD";
    if path == cfg.wrpc_path || cfg.extra_wrpc_paths.iter().any(|p| p == path) {
        serve_upgrade(inner, id, stream, head, leftover, peer);
    } else if let Some((_, handler)) = cfg.handlers.iter().find(|(p, _)| p == path) {
        serve_plain(inner, stream, head, leftover, peer, handler.as_ref());
    } else {
        log::info!("answering 404 to {peer}: {} {}", head.method, head.target);
        let rej = Rejection::new(404, format!("no endpoint at {path}"));
        send_and_close(
            inner,
            stream,
            &rejection_response(&rej, &cfg.node_id, with_body),
        );
    }
}

fn serve_upgrade(
    inner: &Inner,
    id: u64,
    mut stream: Stream,
    head: RequestHead,
    mut leftover: Vec<u8>,
    peer: SocketAddr,
) {
    let cfg = &inner.config;
    let with_body = head.method != "HEAD";
    let req = match check_request(&head).and_then(|req| inner.upgrade.admit(&req).map(|()| req)) {
        Ok(req) => req,
        Err(rej) => {
            log::info!("refusing the upgrade from {peer}: {rej}");
            send_and_close(
                inner,
                stream,
                &rejection_response(&rej, &cfg.node_id, with_body),
            );
            return;
        }
    };
    // From here on the listener no longer cuts this connection at shutdown: the handler
    // owns it. Refuse if shutdown has begun, so none slips past stop_accepting.
    let handed_over = {
        let mut conns = inner.conns();
        if inner.stopping.load(Ordering::SeqCst) {
            false
        } else {
            if let Some(c) = conns.map.get_mut(&id) {
                c.sock = None;
            }
            true
        }
    };
    if !handed_over {
        let rej = Rejection::new(503, "the control plane is shutting down");
        send_and_close(inner, stream, &rejection_response(&rej, &cfg.node_id, true));
        return;
    }
    stream.sock.deadline = write_deadline(cfg);
    let response = accept_response(&req, &cfg.node_id);
    if let Err(e) = stream.write_all(&response).and_then(|()| stream.flush()) {
        log::info!("writing the 101 to {peer} failed: {e}");
        return;
    }
    let StreamOwned { mut conn, sock } = stream;
    let sock = sock.sock;
    drain_plaintext(&mut conn, &mut leftover);
    if let Err(e) = sock
        .set_read_timeout(None)
        .and_then(|()| sock.set_write_timeout(cfg.write_timeout))
    {
        log::info!("connection from {peer} failed: {e}");
        return;
    }
    log::debug!(
        "upgraded {peer}: node {} ({}), version {}",
        req.node.node_id,
        req.node.hostname,
        req.node.version
    );
    inner.upgrade.upgraded(Upgraded {
        session: conn,
        sock,
        leftover,
        node: req.node,
        peer_addr: peer,
        head: req.head,
    });
}

fn serve_plain(
    inner: &Inner,
    mut stream: Stream,
    head: RequestHead,
    leftover: Vec<u8>,
    peer: SocketAddr,
    handler: &dyn HttpHandler,
) {
    let cfg = &inner.config;
    let with_body = head.method != "HEAD";
    let reject = |stream: Stream, status: u16, reason: String| {
        log::info!("answering {status} to {peer}: {reason}");
        let rej = Rejection::new(status, reason);
        send_and_close(
            inner,
            stream,
            &rejection_response(&rej, &cfg.node_id, with_body),
        );
    };
    let len = match body_length(&head.headers) {
        Ok(BodyLength::Exactly(n)) => n,
        Ok(BodyLength::Unspecified) => 0,
        Err(e @ HttpError::Unsupported(_)) => return reject(stream, 501, e.to_string()),
        Err(e) => return reject(stream, 400, e.to_string()),
    };
    if len > cfg.limits.max_body_bytes {
        let e = HttpError::BodyTooLarge {
            limit: cfg.limits.max_body_bytes,
        };
        return reject(stream, 413, e.to_string());
    }
    stream.sock.deadline = Instant::now() + cfg.limits.head_timeout;
    let body = match read_body(
        &mut stream,
        leftover,
        BodyLength::Exactly(len),
        cfg.limits.max_body_bytes,
    ) {
        Ok(body) => body,
        Err(e @ HttpError::Timeout(_)) => return reject(stream, 408, e.to_string()),
        Err(e) => {
            log::debug!("connection from {peer} ended: {e}");
            return;
        }
    };
    let req = Request {
        peer_certificates: stream
            .conn
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
        head,
        body,
        peer_addr: peer,
    };
    let resp = match panic::catch_unwind(AssertUnwindSafe(|| handler.handle(&req))) {
        Ok(resp) => resp,
        Err(_) => {
            log::error!("the handler for {} panicked", req.head.path());
            Response::new(500, "the handler failed\n")
        }
    };
    log::debug!(
        "{peer} {} {} -> {}",
        req.head.method,
        req.head.target,
        resp.status
    );
    let bytes = upgrade::response_bytes(
        resp.status,
        &resp.headers,
        &cfg.node_id,
        &resp.body,
        with_body,
        true,
    );
    send_and_close(inner, stream, &bytes);
}

fn write_deadline(cfg: &ServerConfig) -> Instant {
    Instant::now() + cfg.write_timeout.unwrap_or(Duration::from_secs(10))
}

/// The most bytes read and thrown away while closing.
const LINGER_BYTES: usize = 256 * 1024;
/// The longest wait for the peer to close after our last response.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Writes `bytes` and closes gracefully: TLS close_notify, then our side of TCP, then
/// reads what the peer still sends (for a while) so the close does not reset the
/// connection and destroy the response before the peer reads it.
fn send_and_close(inner: &Inner, mut stream: Stream, bytes: &[u8]) {
    stream.sock.deadline = write_deadline(&inner.config);
    if stream.write_all(bytes).is_err() {
        return;
    }
    stream.conn.send_close_notify();
    if stream.flush().is_err() {
        return;
    }
    let mut sock = stream.sock;
    let _ = sock.sock.shutdown(Shutdown::Write);
    sock.deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}
