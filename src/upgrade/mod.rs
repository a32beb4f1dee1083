//! The WebSocket upgrade, both sides, on top of [`http`](crate::http), for any path and
//! subprotocol: `/v1/wrpc` with `wrpc.konghq.com` and `/v1/outlet` with none.
//!
//! The DP builds the request with [`build_request`] and checks the answer with
//! [`check_response`]; [`dial`] does both over a connection from [`http::connect`]
//! (TCP, proxy, TLS), for an [`UpgradeTarget`]. The CP checks a request against an
//! [`Endpoint`] with [`check_upgrade`] and answers [`accept_response`] (or the
//! [`Rejection`] it got); [`route`] puts those checks on a path of the
//! [`http`](crate::http) listener, which knows nothing of upgrades: it moves the bytes,
//! and this module sits on top of it.
//!
//! What real Kong peers send and expect (see the crate's interop notes): the DP puts its
//! identity in the query, `node_id`, `node_hostname`, `node_version` in that order and not
//! percent-encoded, and (the spec's rule) in the headers `kong-node-id`, `kong-version`,
//! `kong-hostname`; the wRPC subprotocol is `wrpc.konghq.com`, Kong's JSON protocol has
//! none; the CP answers every response with its own `kong-node-id`.
//!
//! [`http::connect`]: crate::http::connect

use std::fmt;

mod client;
mod dial;
mod server;
#[cfg(test)]
mod tests;

pub use client::{build_request, check_response, generate_key};
pub use dial::{dial, Dialed};
// Who the DP is belongs to HTTP (every request carries it); re-exported here where it
// used to live.
pub(crate) use crate::http::node::query_safe;
pub use crate::http::node::{
    NodeIdentity, HEADER_HOSTNAME, HEADER_NODE_ID, HEADER_VERSION, MAX_IDENTITY_LEN,
};
pub use server::{
    accept_response, check_request, check_request_without_identity, check_upgrade,
    rejection_response, route, Endpoint, Rejection, UpgradeHandler, UpgradeRequest, Upgraded,
};

/// The WebSocket subprotocol every wRPC peer offers and answers.
pub const WRPC_SUBPROTOCOL: &str = "wrpc.konghq.com";

/// The path of the wRPC upgrade, as Kong serves it.
pub const WRPC_PATH: &str = "/v1/wrpc";

/// Where a DP upgrades and which subprotocol it offers: the path (a query string of its
/// own is kept; the identity query is appended) and the subprotocol, if any. The answer
/// must name the same subprotocol, or none when none was offered.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// Kong's JSON protocol: [`OUTLET_PATH`](crate::outlet::OUTLET_PATH), no
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

/// Whether any comma-separated token of any `name` header equals `token`
/// (case-insensitively).
pub(crate) fn has_token<'a>(mut values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values.any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}
