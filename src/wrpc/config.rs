//! A [`Peer`](super::Peer)'s settings and the limits behind their defaults.

use std::time::Duration;

use super::fair::{RequestRate, DEFAULT_MAX_PENDING_REQUESTS};

/// Requests are not read from a connection while more than this many bytes wait to be
/// written to it (256 KiB): a peer that does not read its answers does not get more.
pub const PAUSE_BACKLOG: usize = 256 * 1024;

/// Kong's deadline for a request: 90 s after it is sent (go-wrpc uses 60 s).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// Settings of a [`Peer`](super::Peer).
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// How long a call waits for its answer unless the call says otherwise; also sets the
    /// request's wire deadline. Default 90 s, Kong's.
    pub call_timeout: Duration,
    /// The connection's fair share of the worker pool: requests queued or running at once
    /// (open inbound streams count while their handler runs). Past it the reader stops
    /// reading until one finishes, so TCP pushes back on this peer alone. Default
    /// [`DEFAULT_MAX_PENDING_REQUESTS`] (8). Inline handlers run on the reader and do not
    /// count.
    pub max_pending_requests: usize,
    /// How fast the peer's requests are read: past the rate the reader waits, so a peer
    /// flooding requests gets them served at this rate and costs the others little.
    /// Default `None`: no limit (a Peer serving its own services at full speed); the
    /// control plane sets one for data planes (see its builder).
    pub max_request_rate: Option<RequestRate>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            call_timeout: DEFAULT_CALL_TIMEOUT,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            max_request_rate: None,
        }
    }
}
