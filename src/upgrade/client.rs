//! The DP's side of the upgrade: the request it sends and the checks on the answer.

use std::fmt;

use super::*;
use crate::http::head::push_header;
use crate::http::node::{push_node_headers, query_safe};
use crate::http::{NodeIdentity, ResponseHead, HEADER_NODE_ID};

/// Writes `value` raw, percent-encoding only bytes that [`NodeIdentity::validate`]
/// refuses, so that even an unchecked identity cannot break the request line.
fn push_query_value(out: &mut Vec<u8>, value: &str) {
    for b in value.bytes() {
        if query_safe(b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
}

/// A fresh random `Sec-WebSocket-Key` (base64 of 16 random bytes).
pub fn generate_key() -> String {
    tungstenite::handshake::client::generate_key()
}

/// The DP's upgrade request to `target`, as bytes.
///
/// `GET <path>?node_id=<id>&node_hostname=<h>&node_version=<v> HTTP/1.1` (values raw, as
/// Kong sends them; `&` instead of `?` if the path has a query already), then `Host`, the
/// WebSocket headers with `Sec-WebSocket-Protocol` only when the target has a
/// subprotocol (`wrpc.konghq.com`; none for `/v1/outlet`, as Kong's DPs), and
/// `kong-node-id`, `kong-version`, `kong-hostname`. Validate `node` first
/// ([`NodeIdentity::validate`]): bytes it refuses are percent-encoded here, and dropped
/// from the headers.
pub fn build_request(
    host_header: &str,
    target: &UpgradeTarget,
    node: &NodeIdentity,
    key: &str,
) -> Vec<u8> {
    let path = &target.path;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.push(if path.contains('?') { b'&' } else { b'?' });
    out.extend_from_slice(b"node_id=");
    push_query_value(&mut out, &node.node_id);
    out.extend_from_slice(b"&node_hostname=");
    push_query_value(&mut out, &node.hostname);
    out.extend_from_slice(b"&node_version=");
    push_query_value(&mut out, &node.version);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_header(&mut out, "Host", host_header.as_bytes());
    push_header(&mut out, "Upgrade", b"websocket");
    push_header(&mut out, "Connection", b"Upgrade");
    push_header(&mut out, "Sec-WebSocket-Key", key.as_bytes());
    push_header(&mut out, "Sec-WebSocket-Version", b"13");
    if let Some(p) = &target.subprotocol {
        push_header(&mut out, "Sec-WebSocket-Protocol", p.as_bytes());
    }
    push_node_headers(&mut out, node);
    out.extend_from_slice(b"\r\n");
    out
}

/// Checks the CP's answer to our upgrade request to `target` with `key`.
///
/// It must be `101` with `Upgrade: websocket`, `Connection: upgrade`, the
/// `Sec-WebSocket-Accept` derived from `key` (Kong's DPs do not check it; we do), and
/// the target's subprotocol, or none when the target has none (Kong 3.1 and go-wrpc
/// require 101 too). A non-`101` answer gives [`UpgradeError::Refused`] with an empty
/// body: the caller, which holds the connection, fills it in.
pub fn check_response(
    head: &ResponseHead,
    key: &str,
    target: &UpgradeTarget,
) -> Result<(), UpgradeError> {
    let headers = |name: &'static str| {
        head.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    };
    if head.status != 101 {
        return Err(UpgradeError::Refused(Box::new(Refusal {
            status: head.status,
            reason: head.reason.clone(),
            body: String::new(),
            cp_node_id: head.header_str(HEADER_NODE_ID).map(str::to_string),
        })));
    }
    if !has_token(headers("upgrade"), "websocket") {
        return Err(UpgradeError::NotWebSocket("no `Upgrade: websocket`"));
    }
    if !has_token(headers("connection"), "upgrade") {
        return Err(UpgradeError::NotWebSocket("no `Connection: upgrade`"));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if head.header("sec-websocket-accept").map(<[u8]>::trim_ascii) != Some(expected.as_bytes()) {
        return Err(UpgradeError::BadAccept);
    }
    let answered = head
        .header("sec-websocket-protocol")
        .map(<[u8]>::trim_ascii);
    match (target.subprotocol.as_deref(), answered) {
        (Some(offered), Some(p)) if p == offered.as_bytes() => Ok(()),
        (None, None) => Ok(()),
        (_, other) => Err(UpgradeError::Subprotocol(
            other.map(|p| String::from_utf8_lossy(p).into_owned()),
        )),
    }
}

/// Where a DP upgrades and which subprotocol it offers: the path (a query string of its
/// own is kept; the identity query is appended) and the subprotocol, if any. The answer
/// must name the same subprotocol, or none when none was offered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpgradeTarget {
    /// The request path, e.g. `/v1/wrpc`.
    pub path: String,
    /// The `Sec-WebSocket-Protocol` offered and required back; `None`: the header is
    /// not sent, and an answer without it is accepted.
    pub subprotocol: Option<String>,
}

impl UpgradeTarget {
    /// Any path and subprotocol.
    pub fn new(path: impl Into<String>, subprotocol: Option<&str>) -> UpgradeTarget {
        UpgradeTarget {
            path: path.into(),
            subprotocol: subprotocol.map(str::to_string),
        }
    }

    /// wRPC: [`WRPC_PATH`], offering and requiring [`WRPC_SUBPROTOCOL`] (Kong 3.0, 3.1).
    pub fn wrpc() -> UpgradeTarget {
        UpgradeTarget::new(WRPC_PATH, Some(WRPC_SUBPROTOCOL))
    }

    /// Kong's JSON protocol: `/v1/outlet`, no
    /// subprotocol (Kong's DPs send no `Sec-WebSocket-Protocol` there).
    pub fn outlet() -> UpgradeTarget {
        UpgradeTarget::new(crate::outlet::OUTLET_PATH, None)
    }
}

/// Errors of the upgrade, seen from the DP.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The CP answered something other than `101`.
    Refused(Box<Refusal>),
    /// The CP answered `101` without `Upgrade: websocket` or `Connection: upgrade`; the
    /// text says which.
    NotWebSocket(&'static str),
    /// The CP's `Sec-WebSocket-Accept` does not match our key.
    BadAccept,
    /// The CP did not answer with the subprotocol we offered, or answered one although
    /// we offered none: holds what it answered, if anything.
    Subprotocol(Option<String>),
}

/// A non-`101` answer to the upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent.
    pub reason: String,
    /// The body as text (lossy UTF-8, cut to a few hundred bytes), empty if none.
    pub body: String,
    /// The CP's `kong-node-id`, if it sent one.
    pub cp_node_id: Option<String>,
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Refused(r) => {
                write!(f, "the CP answered {} {}", r.status, r.reason)?;
                if let Some(id) = &r.cp_node_id {
                    write!(f, " (CP node {id})")?;
                }
                if !r.body.is_empty() {
                    write!(f, ": {}", r.body)?;
                }
                match r.status {
                    404 => f.write_str(
                        "; does this CP speak the protocol asked for (wRPC: Kong 3.0 or 3.1 only; \
                         JSON at /v1/outlet: Kong 2.x, 3.0, 3.2+), and is the path right?",
                    ),
                    429 => f.write_str("; too many connections from this node, retry later"),
                    _ => Ok(()),
                }
            }
            UpgradeError::NotWebSocket(what) => write!(
                f,
                "the CP answered 101 but not as a WebSocket: {what}; is a proxy rewriting HTTP?"
            ),
            UpgradeError::BadAccept => f.write_str(
                "the CP's Sec-WebSocket-Accept does not match our key; is a proxy rewriting HTTP?",
            ),
            UpgradeError::Subprotocol(got) => write!(
                f,
                "the CP answered subprotocol {} where we offered another or none \
                 ({WRPC_SUBPROTOCOL} on {WRPC_PATH}, none on /v1/outlet)",
                got.as_deref()
                    .map_or("none".to_string(), |g| format!("{g:?}"))
            ),
        }
    }
}

impl std::error::Error for UpgradeError {}
