//! The WebSocket upgrade, both sides, for any path and subprotocol: wRPC at [`WRPC_PATH`]
//! (subprotocol `wrpc.konghq.com`) and Kong's JSON protocol at `/v1/outlet` (none).
//!
//! The DP builds the request with [`build_request`] and checks the answer with
//! [`check_response`]; the CP checks a request against an [`Endpoint`] with
//! [`check_upgrade`] and answers [`accept_response`] (or the [`Rejection`] it got).
//! [`route`] puts those checks on a path of the [`http`](crate::http) listener, which
//! knows nothing of upgrades: it moves the bytes, and this module sits on top of it.
//!
//! What real Kong peers send and expect (see the crate's interop notes): the DP puts its
//! identity in the query, `node_id`, `node_hostname`, `node_version` in that order and not
//! percent-encoded, and (the spec's rule) in the headers `kong-node-id`, `kong-version`,
//! `kong-hostname`; the subprotocol is `wrpc.konghq.com`; the CP answers every response
//! with its own `kong-node-id`.

use std::fmt;

mod client;
mod server;
#[cfg(test)]
mod tests;

pub(crate) use client::push_node_headers;
pub use client::{build_request, check_response, generate_key};
pub use server::{
    accept_response, check_request, check_request_without_identity, check_upgrade,
    rejection_response, route, Endpoint, Rejection, UpgradeHandler, UpgradeRequest, Upgraded,
};

/// The WebSocket subprotocol every wRPC peer offers and answers.
pub const WRPC_SUBPROTOCOL: &str = "wrpc.konghq.com";

/// The path of the wRPC upgrade, as Kong serves it.
pub const WRPC_PATH: &str = "/v1/wrpc";

/// The longest node id, hostname or version accepted, in bytes.
pub const MAX_IDENTITY_LEN: usize = 256;

pub use crate::http::{HEADER_HOSTNAME, HEADER_NODE_ID, HEADER_VERSION};

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

pub(crate) fn query_safe(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !b"&#%".contains(&b)
}

/// Whether any comma-separated token of any `name` header equals `token`
/// (case-insensitively).
pub(crate) fn has_token<'a>(mut values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values.any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}
