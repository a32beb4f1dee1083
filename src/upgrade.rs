//! The wRPC WebSocket upgrade, both sides, as bytes in and bytes out.
//!
//! The DP builds the request with [`build_request`] and checks the answer with
//! [`check_response`]; the CP checks a request with [`check_request`] and answers
//! [`accept_response`] (or the [`Rejection`] it got). No sockets here: the
//! [`http`](crate::http) module moves the bytes.
//!
//! What real Kong peers send and expect (see the crate's interop notes): the DP puts its
//! identity in the query, `node_id`, `node_hostname`, `node_version` in that order and not
//! percent-encoded, and (the spec's rule) in the headers `kong-node-id`, `kong-version`,
//! `kong-hostname`; the subprotocol is `wrpc.konghq.com`; the CP answers every response
//! with its own `kong-node-id`.

use std::fmt;

use crate::http::head::{push_header, reason_phrase, valid_header_name, valid_header_value};
use crate::http::{RequestHead, ResponseHead};

/// The WebSocket subprotocol every wRPC peer offers and answers.
pub const WRPC_SUBPROTOCOL: &str = "wrpc.konghq.com";

/// The path of the wRPC upgrade, as Kong serves it.
pub const WRPC_PATH: &str = "/v1/wrpc";

/// The longest node id, hostname or version accepted, in bytes.
pub const MAX_IDENTITY_LEN: usize = 256;

/// Header carrying a node's id, on DP requests and CP responses.
pub const HEADER_NODE_ID: &str = "kong-node-id";
/// Header carrying the DP's Kong version.
pub const HEADER_VERSION: &str = "kong-version";
/// Header carrying the DP's hostname.
pub const HEADER_HOSTNAME: &str = "kong-hostname";

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
    /// The CP did not accept the `wrpc.konghq.com` subprotocol (it answered this one, if
    /// any).
    Subprotocol(Option<String>),
    /// Our own node identity cannot be sent; the text says which field and why.
    InvalidNode(String),
}

/// A non-`101` answer to the upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
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
                        "; is this a CP that speaks wRPC (Kong 3.0 or 3.1), and is the path right?",
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
                "the CP did not accept the {WRPC_SUBPROTOCOL} subprotocol (it answered {})",
                got.as_deref()
                    .map_or("none".to_string(), |g| format!("{g:?}"))
            ),
            UpgradeError::InvalidNode(s) => write!(f, "invalid node identity: {s}"),
        }
    }
}

impl std::error::Error for UpgradeError {}

/// Who a node is: what the DP sends in its upgrade and requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NodeIdentity {
    /// The node id (Kong uses a UUID). Required.
    pub node_id: String,
    /// The node's hostname. Optional: empty if unknown.
    pub hostname: String,
    /// The node's Kong version, `x.y.z`. Required.
    pub version: String,
}

impl NodeIdentity {
    /// A node identity from its three parts.
    pub fn new(
        node_id: impl Into<String>,
        hostname: impl Into<String>,
        version: impl Into<String>,
    ) -> NodeIdentity {
        NodeIdentity {
            node_id: node_id.into(),
            hostname: hostname.into(),
            version: version.into(),
        }
    }

    /// Checks that this identity can be sent as Kong sends it, raw in a query and in
    /// headers: node id and version not empty, each part at most [`MAX_IDENTITY_LEN`]
    /// bytes of visible ASCII other than `&`, `#` and `%`.
    pub fn validate(&self) -> Result<(), UpgradeError> {
        for (field, value, required) in [
            ("node id", &self.node_id, true),
            ("hostname", &self.hostname, false),
            ("version", &self.version, true),
        ] {
            if required && value.is_empty() {
                return Err(UpgradeError::InvalidNode(format!("the {field} is empty")));
            }
            if value.len() > MAX_IDENTITY_LEN {
                return Err(UpgradeError::InvalidNode(format!(
                    "the {field} is longer than {MAX_IDENTITY_LEN} bytes"
                )));
            }
            if !value.bytes().all(query_safe) {
                return Err(UpgradeError::InvalidNode(format!(
                    "the {field} {value:?} has a character other than visible ASCII, or one of & # %"
                )));
            }
        }
        Ok(())
    }
}

fn query_safe(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !b"&#%".contains(&b)
}

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

/// The DP's upgrade request, as bytes.
///
/// `GET <path>?node_id=<id>&node_hostname=<h>&node_version=<v> HTTP/1.1` (values raw, as
/// Kong sends them; `&` instead of `?` if `path` has a query already), then `Host`, the
/// WebSocket headers with subprotocol `wrpc.konghq.com`, and `kong-node-id`,
/// `kong-version`, `kong-hostname`. Validate `node` first ([`NodeIdentity::validate`]):
/// bytes it refuses are percent-encoded here, and dropped from the headers.
pub fn build_request(host_header: &str, path: &str, node: &NodeIdentity, key: &str) -> Vec<u8> {
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
    push_header(
        &mut out,
        "Sec-WebSocket-Protocol",
        WRPC_SUBPROTOCOL.as_bytes(),
    );
    push_node_headers(&mut out, node);
    out.extend_from_slice(b"\r\n");
    out
}

/// Appends the DP's three identity headers (values that cannot be sent are left out).
pub(crate) fn push_node_headers(out: &mut Vec<u8>, node: &NodeIdentity) {
    for (name, value) in [
        (HEADER_NODE_ID, &node.node_id),
        (HEADER_VERSION, &node.version),
        (HEADER_HOSTNAME, &node.hostname),
    ] {
        if value.bytes().all(query_safe) {
            push_header(out, name, value.as_bytes());
        }
    }
}

/// Whether any comma-separated token of any `name` header equals `token`
/// (case-insensitively).
fn has_token<'a>(mut values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values.any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Checks the CP's answer to our upgrade request with `key`.
///
/// It must be `101` with `Upgrade: websocket`, `Connection: upgrade`, the
/// `Sec-WebSocket-Accept` derived from `key` and subprotocol `wrpc.konghq.com` (Kong 3.1
/// and go-wrpc require 101 too). A non-`101` answer gives [`UpgradeError::Refused`] with
/// an empty body: the caller, which holds the connection, fills it in.
pub fn check_response(head: &ResponseHead, key: &str) -> Result<(), UpgradeError> {
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
    match head
        .header("sec-websocket-protocol")
        .map(<[u8]>::trim_ascii)
    {
        Some(p) if p == WRPC_SUBPROTOCOL.as_bytes() => Ok(()),
        other => Err(UpgradeError::Subprotocol(
            other.map(|p| String::from_utf8_lossy(p).into_owned()),
        )),
    }
}

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

    fn bad(reason: impl Into<String>) -> Rejection {
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
        node_id: identity_field(head, HEADER_NODE_ID, "node_id", true)?,
        hostname: identity_field(head, HEADER_HOSTNAME, "node_hostname", false)?,
        version: identity_field(head, HEADER_VERSION, "node_version", true)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{read_request_head, read_response_head, HttpLimits};
    use std::io::Cursor;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn node() -> NodeIdentity {
        NodeIdentity::new("7b8a0c5e-1111-4c4c-9d9d-000000000001", "dp-1", "3.1.0")
    }

    fn parse_req(bytes: &[u8]) -> RequestHead {
        read_request_head(&mut Cursor::new(bytes), &HttpLimits::default())
            .unwrap()
            .0
    }

    fn parse_resp(bytes: &[u8]) -> (ResponseHead, Vec<u8>) {
        read_response_head(&mut Cursor::new(bytes), &HttpLimits::default()).unwrap()
    }

    fn good_request() -> Vec<u8> {
        build_request("cp.example:8005", WRPC_PATH, &node(), KEY)
    }

    /// The good request with header `name` removed (all of them) and `extra` lines added.
    fn edited(remove: &[&str], extra: &str) -> RequestHead {
        let text = String::from_utf8(good_request()).unwrap();
        let mut lines: Vec<&str> = text
            .split("\r\n")
            .filter(|l| {
                !remove
                    .iter()
                    .any(|r| l.to_ascii_lowercase().starts_with(&format!("{r}:")))
            })
            .filter(|l| !l.is_empty())
            .collect();
        for e in extra.split("\r\n").filter(|e| !e.is_empty()) {
            lines.push(e);
        }
        parse_req(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())
    }

    #[test]
    fn request_bytes_are_exactly_kongs() {
        let text = String::from_utf8(good_request()).unwrap();
        assert_eq!(
            text,
            "GET /v1/wrpc?node_id=7b8a0c5e-1111-4c4c-9d9d-000000000001&node_hostname=dp-1&node_version=3.1.0 HTTP/1.1\r\n\
             Host: cp.example:8005\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: wrpc.konghq.com\r\n\
             kong-node-id: 7b8a0c5e-1111-4c4c-9d9d-000000000001\r\n\
             kong-version: 3.1.0\r\n\
             kong-hostname: dp-1\r\n\r\n"
        );
    }

    #[test]
    fn request_with_a_query_in_the_path_and_unsafe_values() {
        let n = NodeIdentity::new("a b", "h&x", "1%");
        let text = String::from_utf8(build_request("h", "/p?x=1", &n, KEY)).unwrap();
        assert!(
            text.starts_with(
                "GET /p?x=1&node_id=a%20b&node_hostname=h%26x&node_version=1%25 HTTP/1.1\r\n"
            ),
            "{text}"
        );
        // Values that cannot be sent raw stay out of the headers.
        assert!(!text.contains("kong-node-id"), "{text}");
        assert!(n.validate().is_err());
    }

    #[test]
    fn node_validation() {
        assert!(node().validate().is_ok());
        assert!(NodeIdentity::new("id", "", "3.1.0").validate().is_ok());
        for bad in [
            NodeIdentity::new("", "h", "3.1.0"),
            NodeIdentity::new("id", "h", ""),
            NodeIdentity::new("id", "h\r\n", "3.1.0"),
            NodeIdentity::new("id", "h#", "3.1.0"),
            NodeIdentity::new("x".repeat(257), "h", "3.1.0"),
            NodeIdentity::new("id", "hé", "3.1.0"),
        ] {
            assert!(
                matches!(bad.validate(), Err(UpgradeError::InvalidNode(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn good_request_is_accepted_with_its_identity() {
        let req = check_request(&parse_req(&good_request())).unwrap();
        assert_eq!(req.key, KEY);
        assert_eq!(req.node, node());
    }

    #[test]
    fn identity_from_the_query_alone_as_kong_sends_it() {
        let head = edited(&["kong-node-id", "kong-version", "kong-hostname"], "");
        assert_eq!(check_request(&head).unwrap().node, node());
    }

    #[test]
    fn headers_win_over_the_query() {
        let head = edited(
            &["kong-node-id", "kong-version"],
            "kong-node-id: from-header\r\nKONG-VERSION: 3.0.1",
        );
        let n = check_request(&head).unwrap().node;
        assert_eq!(n.node_id, "from-header");
        assert_eq!(n.version, "3.0.1");
        assert_eq!(n.hostname, "dp-1");
    }

    #[test]
    fn identity_from_headers_alone() {
        let mut head = parse_req(&good_request());
        head.target = WRPC_PATH.into();
        assert_eq!(check_request(&head).unwrap().node, node());
    }

    #[test]
    fn hostname_is_optional() {
        let mut head = edited(&["kong-hostname"], "");
        head.target = "/v1/wrpc?node_id=a&node_version=3.1.0".into();
        assert_eq!(check_request(&head).unwrap().node.hostname, "");
    }

    #[test]
    fn missing_node_id_or_version_is_400_saying_which() {
        let mut head = edited(&["kong-node-id"], "");
        head.target = "/v1/wrpc?node_hostname=h&node_version=3.1.0".into();
        let rej = check_request(&head).unwrap_err();
        assert_eq!(rej.status, 400);
        assert!(rej.reason.contains("missing node_id"), "{rej}");

        let mut head = edited(&["kong-version"], "");
        head.target = "/v1/wrpc?node_id=a".into();
        let rej = check_request(&head).unwrap_err();
        assert_eq!(rej.status, 400);
        assert!(rej.reason.contains("missing node_version"), "{rej}");

        let head = edited(&["kong-node-id"], "kong-node-id: ");
        let rej = check_request(&head).unwrap_err();
        assert_eq!(rej.status, 400);
        assert!(rej.reason.contains("kong-node-id header is empty"), "{rej}");
    }

    #[test]
    fn bad_identity_values_are_400() {
        let long = "x".repeat(257);
        let head = edited(&["kong-hostname"], &format!("kong-hostname: {long}"));
        let rej = check_request(&head).unwrap_err();
        assert_eq!(rej.status, 400);
        assert!(rej.reason.contains("longer than 256"), "{rej}");

        // httparse refuses control characters in headers; the query can still hold them.
        let mut head = edited(&["kong-node-id"], "");
        head.target = "/v1/wrpc?node_id=a\x1bb&node_version=1".into();
        let rej = check_request(&head).unwrap_err();
        assert!(rej.reason.contains("control"), "{rej}");

        let mut head = edited(&["kong-node-id"], "");
        head.headers.push(("kong-node-id".into(), vec![0xff, 0xfe]));
        let rej = check_request(&head).unwrap_err();
        assert!(rej.reason.contains("not UTF-8"), "{rej}");
    }

    #[test]
    fn head_gets_400_and_other_methods_405() {
        let mut head = parse_req(&good_request());
        head.method = "HEAD".into();
        assert_eq!(check_request(&head).unwrap_err().status, 400);
        head.method = "POST".into();
        let rej = check_request(&head).unwrap_err();
        assert_eq!(rej.status, 405);
        assert_eq!(rej.headers, vec![("Allow".to_string(), "GET".to_string())]);
    }

    #[test]
    fn http_1_0_is_refused() {
        let mut head = parse_req(&good_request());
        head.version = 0;
        assert_eq!(check_request(&head).unwrap_err().status, 400);
    }

    #[test]
    fn upgrade_and_connection_headers_are_required() {
        let rej = check_request(&edited(&["upgrade"], "")).unwrap_err();
        assert_eq!(rej.status, 400);
        assert!(rej.reason.contains("Upgrade: websocket"), "{rej}");
        let rej = check_request(&edited(&["upgrade"], "Upgrade: h2c")).unwrap_err();
        assert_eq!(rej.status, 400);
        let rej = check_request(&edited(&["connection"], "")).unwrap_err();
        assert!(rej.reason.contains("Connection"), "{rej}");
        let rej = check_request(&edited(&["connection"], "Connection: keep-alive")).unwrap_err();
        assert_eq!(rej.status, 400);
        // Tokens are found in lists and across repeated headers, in any case.
        let ok = edited(
            &["connection", "upgrade"],
            "Connection: keep-alive\r\nConnection: keep-alive, UPGRADE\r\nUpgrade: WebSocket",
        );
        assert!(check_request(&ok).is_ok());
    }

    #[test]
    fn key_must_be_base64_of_16_bytes() {
        let rej = check_request(&edited(&["sec-websocket-key"], "")).unwrap_err();
        assert_eq!(rej.status, 400);
        assert!(rej.reason.contains("missing"), "{rej}");
        for bad in [
            "short==",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZQ=x",
            "dGhlIHNhbXBsZSBub25j!Q==",
        ] {
            let rej = check_request(&edited(
                &["sec-websocket-key"],
                &format!("Sec-WebSocket-Key: {bad}"),
            ))
            .unwrap_err();
            assert_eq!(rej.status, 400, "{bad}");
            assert!(rej.reason.contains("base64"), "{rej}");
        }
    }

    #[test]
    fn version_other_than_13_is_426_with_the_version_header() {
        for extra in ["", "Sec-WebSocket-Version: 8"] {
            let rej = check_request(&edited(&["sec-websocket-version"], extra)).unwrap_err();
            assert_eq!(rej.status, 426);
            assert_eq!(
                rej.headers,
                vec![("Sec-WebSocket-Version".to_string(), "13".to_string())]
            );
        }
    }

    #[test]
    fn missing_subprotocol_is_400_with_the_protocol_header() {
        for extra in ["", "Sec-WebSocket-Protocol: chat, superchat"] {
            let rej = check_request(&edited(&["sec-websocket-protocol"], extra)).unwrap_err();
            assert_eq!(rej.status, 400);
            assert_eq!(
                rej.headers,
                vec![(
                    "Sec-WebSocket-Protocol".to_string(),
                    "wrpc.konghq.com".to_string()
                )]
            );
        }
        let ok = edited(
            &["sec-websocket-protocol"],
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: x, wrpc.konghq.com ",
        );
        assert!(check_request(&ok).is_ok());
    }

    #[test]
    fn accept_response_bytes_and_round_trip() {
        let req = check_request(&parse_req(&good_request())).unwrap();
        let bytes = accept_response(&req, "cp-1");
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: wrpc.konghq.com\r\n\
             kong-node-id: cp-1\r\n\r\n"
        );
        let (head, _) = parse_resp(&bytes);
        check_response(&head, KEY).unwrap();
    }

    #[test]
    fn response_checks() {
        let req = check_request(&parse_req(&good_request())).unwrap();
        let good = String::from_utf8(accept_response(&req, "cp-1")).unwrap();
        type Case = (&'static str, &'static str, fn(&UpgradeError) -> bool);
        let cases: [Case; 5] = [
            (
                "Upgrade: websocket\r\n",
                "",
                |e| matches!(e, UpgradeError::NotWebSocket(w) if w.contains("Upgrade")),
            ),
            (
                "Connection: Upgrade\r\n",
                "",
                |e| matches!(e, UpgradeError::NotWebSocket(w) if w.contains("Connection")),
            ),
            (
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                |e| matches!(e, UpgradeError::BadAccept),
            ),
            ("Sec-WebSocket-Protocol: wrpc.konghq.com\r\n", "", |e| {
                matches!(e, UpgradeError::Subprotocol(None))
            }),
            (
                "wrpc.konghq.com",
                "chat",
                |e| matches!(e, UpgradeError::Subprotocol(Some(p)) if p == "chat"),
            ),
        ];
        for (from, to, check) in cases {
            let bytes = good.replace(from, to);
            let (head, _) = parse_resp(bytes.as_bytes());
            let err = check_response(&head, KEY).unwrap_err();
            assert!(check(&err), "{from}: {err:?}");
        }
    }

    #[test]
    fn non_101_is_refused_with_status_reason_and_cp_id() {
        let rej = Rejection::new(429, "node 7b8a has 2 connections already");
        let bytes = rejection_response(&rej, "cp-9", true);
        let (head, body) = parse_resp(&bytes);
        assert_eq!(body, b"node 7b8a has 2 connections already\n");
        let err = check_response(&head, KEY).unwrap_err();
        match &err {
            UpgradeError::Refused(r) => {
                assert_eq!(r.status, 429);
                assert_eq!(r.reason, "Too Many Requests");
                assert_eq!(r.cp_node_id.as_deref(), Some("cp-9"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "the CP answered 429 Too Many Requests (CP node cp-9); too many connections from this node, retry later"
        );
    }

    #[test]
    fn rejection_response_bytes() {
        let rej = Rejection::bad("nope")
            .with_header("Sec-WebSocket-Protocol", WRPC_SUBPROTOCOL)
            .with_header("Content-Length", "999")
            .with_header("X-Bad", "a\r\nb");
        let text = String::from_utf8(rejection_response(&rej, "cp-1", true)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 400 Bad Request\r\n\
             Sec-WebSocket-Protocol: wrpc.konghq.com\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             kong-node-id: cp-1\r\n\
             Content-Length: 5\r\n\
             Connection: close\r\n\r\nnope\n"
        );
        let head_only = rejection_response(&rej, "cp-1", false);
        assert!(head_only.ends_with(b"Connection: close\r\n\r\n"));
    }
}
