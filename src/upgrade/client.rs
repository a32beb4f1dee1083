//! The DP's side of the upgrade: the request it sends and the checks on the answer.

use super::*;
use crate::http::head::push_header;
use crate::http::node::push_node_headers;
use crate::http::ResponseHead;

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
