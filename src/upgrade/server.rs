//! The CP's side of the upgrade: the checks on a request, the 101, and refusals.

use super::*;
use crate::http::head::{push_header, reason_phrase, valid_header_name, valid_header_value};
use crate::http::RequestHead;

/// The CP's refusal of a request: a status, a reason sent as the body, and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// An upgrade request that passed [`check_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The client's `Sec-WebSocket-Key`.
    pub key: String,
    /// The DP's identity, from the `kong-*` headers or else the query.
    pub node: NodeIdentity,
    /// The whole request head.
    pub head: RequestHead,
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
    check(head, true)
}

/// [`check_request`] for plain wRPC services that any wRPC client may call: the Kong node
/// identity is not required (an identity that is sent is still checked).
pub fn check_request_without_identity(head: &RequestHead) -> Result<UpgradeRequest, Rejection> {
    check(head, false)
}

fn check(head: &RequestHead, identity_required: bool) -> Result<UpgradeRequest, Rejection> {
    if head.method == "HEAD" {
        return Err(Rejection::bad(
            "this endpoint takes only a WebSocket upgrade (GET) to wRPC",
        ));
    }
    if head.method != "GET" {
        return Err(Rejection::new(
            405,
            format!(
                "method {} not allowed: the wRPC upgrade is a GET",
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
    if !has_token(head.header_all("sec-websocket-protocol"), WRPC_SUBPROTOCOL) {
        return Err(Rejection::bad(format!(
            "the {WRPC_SUBPROTOCOL} subprotocol must be offered in Sec-WebSocket-Protocol"
        ))
        .with_header("Sec-WebSocket-Protocol", WRPC_SUBPROTOCOL));
    }
    let node = NodeIdentity {
        node_id: identity_field(head, HEADER_NODE_ID, "node_id", identity_required)?,
        hostname: identity_field(head, HEADER_HOSTNAME, "node_hostname", false)?,
        version: identity_field(head, HEADER_VERSION, "node_version", identity_required)?,
    };
    Ok(UpgradeRequest {
        key,
        node,
        head: head.clone(),
    })
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
/// `Connection: Upgrade`, `Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol:
/// wrpc.konghq.com` and `kong-node-id: <node_id>` (left out if it is not a valid header
/// value). No `Content-Length`: HTTP forbids it on a `1xx` response.
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
    push_header(
        &mut out,
        "Sec-WebSocket-Protocol",
        WRPC_SUBPROTOCOL.as_bytes(),
    );
    if valid_header_value(node_id.as_bytes()) {
        push_header(&mut out, HEADER_NODE_ID, node_id.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A whole response with a body: status line, `headers` (invalid ones skipped),
/// `kong-node-id`, `Content-Length`, and `Connection: close` when `close`. For a `HEAD`
/// request pass `with_body = false`: the length is still announced, the body not sent.
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

/// The response for a [`Rejection`]: its status, its headers, its reason as a
/// `text/plain` body, `kong-node-id`, and `Connection: close`.
pub fn rejection_response(rej: &Rejection, node_id: &str, with_body: bool) -> Vec<u8> {
    let mut headers = rej.headers.clone();
    headers.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
    let mut body = rej.reason.clone().into_bytes();
    body.push(b'\n');
    response_bytes(rej.status, &headers, node_id, &body, with_body, true)
}
