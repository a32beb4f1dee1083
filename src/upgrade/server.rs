//! The CP's side of the upgrade: what an endpoint requires ([`Endpoint`]), the checks on a
//! request, the 101, refusals, and the listener route that runs them ([`route`]).

use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use super::*;
use crate::channel::{Channel, ChannelConfig, ChannelError, Reader, Role};
use crate::http::head::{push_header, reason_phrase, valid_header_value};
use crate::http::server::response_bytes;
use crate::http::{
    HandOff, NodeIdentity, RequestHead, Response, Route, Switch, SwitchHandler, Switched,
    HEADER_HOSTNAME,
    HEADER_NODE_ID, HEADER_VERSION, MAX_IDENTITY_LEN,
};

/// What an upgrade endpoint requires of a request: which subprotocol, and whether a Kong
/// node identity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Endpoint {
    /// The subprotocol the client must offer, answered in the `101`; `None`: none is
    /// required, and the `101` echoes the first one offered, if any (as Kong's
    /// `/v1/outlet` does), or carries no `Sec-WebSocket-Protocol`.
    pub subprotocol: Option<String>,
    /// Whether the request must carry a Kong node identity (node id and version, in the
    /// query or the `kong-*` headers).
    pub require_identity: bool,
    /// Whether the identity is checked before the WebSocket headers (Kong's `/v1/outlet`
    /// order: a request without `node_id` is a `400` whatever else it lacks) rather
    /// than after (the wRPC order).
    pub identity_first: bool,
}

impl Endpoint {
    /// Kong's wRPC endpoint ([`WRPC_PATH`]): subprotocol `wrpc.konghq.com` required, node
    /// identity required, checked after the WebSocket headers.
    pub fn wrpc() -> Endpoint {
        Endpoint {
            subprotocol: Some(WRPC_SUBPROTOCOL.into()),
            require_identity: true,
            identity_first: false,
        }
    }

    /// Kong's JSON endpoint (`/v1/outlet`): no subprotocol, node identity required and
    /// checked first, in Kong's order (client certificate at TLS, then `node_id` and
    /// `node_version`, then the WebSocket headers).
    pub fn outlet() -> Endpoint {
        Endpoint {
            subprotocol: None,
            require_identity: true,
            identity_first: true,
        }
    }

    /// This endpoint with the node identity required or not (plain wRPC services that any
    /// wRPC client may call need none; an identity that is sent is still checked).
    pub fn identity(mut self, required: bool) -> Endpoint {
        self.require_identity = required;
        self
    }
}

/// Receives the connections that passed an upgrade endpoint's checks.
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
    /// [`Listener::shutdown`](crate::http::Listener::shutdown) joins it, so it must return
    /// once the connection is closed.
    fn upgraded(&self, conn: Upgraded);
}

internal_fields! {
    /// A connection that passed the upgrade, handed to [`UpgradeHandler::upgraded`].
    ///
    /// The socket's read timeout is cleared (an idle connection costs no wake-ups) and its
    /// write timeout set to the listener's write timeout. `leftover` holds every plaintext
    /// byte received after the request head (the start of the DP's first WebSocket frames),
    /// including any the TLS session had already decrypted; the session holds at most a
    /// partial TLS record, so the next step is to read from the socket.
    #[derive(Debug)]
    pub struct Upgraded {
        /// The TLS session.
        session: rustls::ServerConnection,
        /// The socket under it.
        sock: TcpStream,
        /// Plaintext received after the request head: never lost.
        leftover: Vec<u8>,
        /// The DP's identity from the upgrade request.
        node: NodeIdentity,
        /// The DP's address.
        peer_addr: SocketAddr,
        /// The upgrade request's head.
        head: RequestHead,
        /// The subprotocol answered in the `101`, if any.
        subprotocol: Option<String>,
        /// Moves the rest of the connection's life to a fresh thread (see [`HandOff`]).
        hand_off: HandOff,
    }
}

impl Upgraded {
    /// The DP's identity from the upgrade request (empty fields where the endpoint does
    /// not require one and the DP sent none).
    pub fn node(&self) -> &NodeIdentity {
        &self.node
    }

    /// The DP's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The upgrade request's head.
    pub fn head(&self) -> &RequestHead {
        &self.head
    }

    /// The subprotocol answered in the `101`, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The DP's client certificate (end entity), if it presented one.
    pub fn peer_certificate(&self) -> Option<rustls_pki_types::CertificateDer<'static>> {
        crate::tls::peer_certificate(&self.session)
    }

    /// The message channel on this connection, as its server: the returned [`Reader`]
    /// must be run for anything to be received (see [`Channel`]).
    pub fn into_channel(self, config: ChannelConfig) -> Result<(Channel, Reader), ChannelError> {
        Channel::new(self.session, self.sock, self.leftover, Role::Server, config)
    }
}

/// A listener route that takes WebSocket upgrades for `endpoint` and hands them to
/// `handler`: checks (method, version, upgrade headers, key, subprotocol and,
/// where the endpoint requires it, the node identity), then [`UpgradeHandler::admit`],
/// then the `101` and [`UpgradeHandler::upgraded`]. Any refusal is answered with
/// its status and reason, and `kong-node-id`.
pub fn route(endpoint: Endpoint, handler: Arc<dyn UpgradeHandler>) -> Route {
    Route::switch(Arc::new(WebSocketRoute { endpoint, handler }))
}

struct WebSocketRoute {
    endpoint: Endpoint,
    handler: Arc<dyn UpgradeHandler>,
}

impl SwitchHandler for WebSocketRoute {
    fn accept(
        &self,
        head: &RequestHead,
        peer: SocketAddr,
        node_id: &str,
    ) -> Result<Switch, Response> {
        let req = check_upgrade(head, &self.endpoint)
            .and_then(|req| self.handler.admit(&req).map(|()| req))
            .map_err(|rej| rej.to_response())?;
        let response = accept_response(&req, node_id);
        log::debug!(
            "upgrading {peer} at {}: node {} ({}), version {}",
            req.head.path(),
            req.node.node_id,
            req.node.hostname,
            req.node.version
        );
        let handler = self.handler.clone();
        Ok(Switch {
            response,
            then: Box::new(move |sw: Switched| {
                handler.upgraded(Upgraded {
                    session: sw.session,
                    sock: sw.sock,
                    leftover: sw.leftover,
                    node: req.node,
                    peer_addr: sw.peer_addr,
                    head: sw.head,
                    subprotocol: req.subprotocol,
                    hand_off: sw.hand_off,
                })
            }),
        })
    }
}

/// The CP's refusal of a request: a status, a reason sent as the body, and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The status code (a `4xx` or `5xx`).
    pub status: u16,
    /// Why, in words: sent as the `text/plain` body (not in the status line).
    pub reason: String,
    /// Extra headers for the response (the server adds `kong-node-id`, `Content-Length`,
    /// `Content-Type` and `Connection: close` itself).
    pub headers: Vec<(String, String)>,
}

impl Rejection {
    /// A rejection with `status` and `reason`, and no extra headers.
    pub fn new(status: u16, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header to the response (for example `Retry-After` on a `429`).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Rejection {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn bad(reason: impl Into<String>) -> Rejection {
        Rejection::new(400, reason)
    }

    /// The HTTP response: its status, its headers, its reason as a `text/plain` body.
    pub fn to_response(&self) -> Response {
        let mut headers = self.headers.clone();
        headers.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
        let mut body = self.reason.clone().into_bytes();
        body.push(b'\n');
        Response {
            status: self.status,
            headers,
            body,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            reason_phrase(self.status),
            self.reason
        )
    }
}

/// An upgrade request that passed the checks of its [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpgradeRequest {
    /// The client's `Sec-WebSocket-Key`.
    pub key: String,
    /// The DP's identity, from the `kong-*` headers or else the query.
    pub node: NodeIdentity,
    /// The whole request head.
    pub head: RequestHead,
    /// The subprotocol to answer in the `101`: the endpoint's, or the first one offered
    /// when the endpoint requires none; `None` for no `Sec-WebSocket-Protocol` header.
    pub subprotocol: Option<String>,
}

/// Checks a wRPC upgrade request on the CP side.
///
/// In order: method `GET` (`HEAD` gets `400`, as Kong answers the probe of Kong 3.0 DPs;
/// others `405`), HTTP/1.1, `Upgrade: websocket`, a `Connection` header with the `upgrade`
/// token, a `Sec-WebSocket-Key` that is base64 of 16 bytes, `Sec-WebSocket-Version: 13`
/// (else `426` with `Sec-WebSocket-Version: 13`), `wrpc.konghq.com` among the offered
/// subprotocols (else `400` with `Sec-WebSocket-Protocol: wrpc.konghq.com`: go-wrpc's
/// answer, without its bug of upgrading anyway), then the DP's identity: each of id,
/// version and hostname from its `kong-*` header if present, else from the query
/// (`node_id`, `node_version`, `node_hostname`, raw as Kong reads them). Id and version
/// are required; every value must be UTF-8, at most [`MAX_IDENTITY_LEN`] bytes, with no
/// control characters. Every refusal but the version and subprotocol ones is a `400`
/// saying what was wrong.
pub fn check_request(head: &RequestHead) -> Result<UpgradeRequest, Rejection> {
    check_upgrade(head, &Endpoint::wrpc())
}

/// [`check_request`] for plain wRPC services that any wRPC client may call: the Kong node
/// identity is not required (an identity that is sent is still checked).
pub fn check_request_without_identity(head: &RequestHead) -> Result<UpgradeRequest, Rejection> {
    check_upgrade(head, &Endpoint::wrpc().identity(false))
}

/// Checks an upgrade request for `endpoint`: the checks of [`check_request`], with the
/// endpoint's subprotocol (none required: any offered is fine, and the first is echoed)
/// and identity rules. With [`Endpoint::identity_first`] the identity is checked before
/// the method and WebSocket headers, in Kong's `/v1/outlet` order.
pub fn check_upgrade(head: &RequestHead, endpoint: &Endpoint) -> Result<UpgradeRequest, Rejection> {
    let required = endpoint.require_identity;
    let node = if endpoint.identity_first {
        Some(node_identity(head, required)?)
    } else {
        None
    };
    if head.method == "HEAD" {
        return Err(Rejection::bad(format!(
            "{} takes only a WebSocket upgrade (GET)",
            head.path()
        )));
    }
    if head.method != "GET" {
        return Err(Rejection::new(
            405,
            format!(
                "method {} not allowed: a WebSocket upgrade is a GET",
                head.method
            ),
        )
        .with_header("Allow", "GET"));
    }
    if head.version != 1 {
        return Err(Rejection::bad("a WebSocket upgrade needs HTTP/1.1"));
    }
    if !has_token(head.header_all("upgrade"), "websocket") {
        return Err(Rejection::bad(
            "not a WebSocket upgrade: the `Upgrade: websocket` header is missing",
        ));
    }
    if !has_token(head.header_all("connection"), "upgrade") {
        return Err(Rejection::bad(
            "not a WebSocket upgrade: the `Connection` header has no `upgrade` token",
        ));
    }
    let key = match head.header_str("sec-websocket-key").map(str::trim) {
        Some(k) if is_websocket_key(k) => k.to_string(),
        Some(_) => {
            return Err(Rejection::bad(
                "the Sec-WebSocket-Key header is not the base64 of 16 bytes",
            ))
        }
        None => return Err(Rejection::bad("the Sec-WebSocket-Key header is missing")),
    };
    if head.header("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(Rejection::new(
            426,
            "only WebSocket version 13 is supported: send Sec-WebSocket-Version: 13",
        )
        .with_header("Sec-WebSocket-Version", "13"));
    }
    let subprotocol = match &endpoint.subprotocol {
        Some(wanted) => {
            if !has_token(head.header_all("sec-websocket-protocol"), wanted) {
                return Err(Rejection::bad(format!(
                    "the {wanted} subprotocol must be offered in Sec-WebSocket-Protocol"
                ))
                .with_header("Sec-WebSocket-Protocol", wanted.as_str()));
            }
            Some(wanted.clone())
        }
        None => first_offered(head),
    };
    let node = match node {
        Some(node) => node,
        None => node_identity(head, required)?,
    };
    Ok(UpgradeRequest {
        key,
        node,
        head: head.clone(),
        subprotocol,
    })
}

/// The DP's identity: each part from its `kong-*` header, else the query.
fn node_identity(head: &RequestHead, required: bool) -> Result<NodeIdentity, Rejection> {
    Ok(NodeIdentity {
        node_id: identity_field(head, HEADER_NODE_ID, "node_id", required)?,
        hostname: identity_field(head, HEADER_HOSTNAME, "node_hostname", false)?,
        version: identity_field(head, HEADER_VERSION, "node_version", required)?,
    })
}

/// The first subprotocol offered, if it is a usable header value.
fn first_offered(head: &RequestHead) -> Option<String> {
    head.header_all("sec-websocket-protocol")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .find(|t| !t.is_empty())
        .filter(|t| valid_header_value(t))
        .and_then(|t| std::str::from_utf8(t).ok())
        .map(str::to_owned)
}

/// One part of the DP's identity: the header if present, else the query parameter.
fn identity_field(
    head: &RequestHead,
    header: &str,
    param: &str,
    required: bool,
) -> Result<String, Rejection> {
    let (value, source) = match head.header(header) {
        Some(v) => (v, format!("the {header} header")),
        None => match head.query_param(param) {
            Some(v) => (v.as_bytes(), format!("the {param} query parameter")),
            None if required => {
                return Err(Rejection::bad(format!(
                    "missing {param}: send the {header} header or the {param} query parameter"
                )))
            }
            None => return Ok(String::new()),
        },
    };
    let Ok(value) = std::str::from_utf8(value.trim_ascii()) else {
        return Err(Rejection::bad(format!("{source} is not UTF-8")));
    };
    if required && value.is_empty() {
        return Err(Rejection::bad(format!("{source} is empty")));
    }
    if value.len() > MAX_IDENTITY_LEN {
        return Err(Rejection::bad(format!(
            "{source} is longer than {MAX_IDENTITY_LEN} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Rejection::bad(format!("{source} has control characters")));
    }
    Ok(value.to_string())
}

/// Whether `k` is the base64 of 16 bytes: 22 base64 characters and `==`.
fn is_websocket_key(k: &str) -> bool {
    let b = k.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

/// The CP's `101` for an accepted request, as bytes: `Upgrade: websocket`,
/// `Connection: Upgrade`, `Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol` with the
/// request's [`UpgradeRequest::subprotocol`] (none when it has none) and
/// `kong-node-id: <node_id>` (left out if it is not a valid header value). No
/// `Content-Length`: HTTP forbids it on a `1xx` response.
pub fn accept_response(req: &UpgradeRequest, node_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    push_header(&mut out, "Upgrade", b"websocket");
    push_header(&mut out, "Connection", b"Upgrade");
    push_header(
        &mut out,
        "Sec-WebSocket-Accept",
        tungstenite::handshake::derive_accept_key(req.key.as_bytes()).as_bytes(),
    );
    if let Some(protocol) = &req.subprotocol {
        push_header(&mut out, "Sec-WebSocket-Protocol", protocol.as_bytes());
    }
    if valid_header_value(node_id.as_bytes()) {
        push_header(&mut out, HEADER_NODE_ID, node_id.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The response for a [`Rejection`]: its status, its headers, its reason as a
/// `text/plain` body, `kong-node-id`, and `Connection: close`.
pub fn rejection_response(rej: &Rejection, node_id: &str, with_body: bool) -> Vec<u8> {
    let resp = rej.to_response();
    response_bytes(
        resp.status,
        &resp.headers,
        node_id,
        &resp.body,
        with_body,
        true,
    )
}
