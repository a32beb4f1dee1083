//! A [`Peer`](super::Peer)'s settings and the limits behind their defaults.

use std::time::Duration;

use super::fair::{RequestRate, DEFAULT_MAX_PENDING_REQUESTS};

/// Requests are not read from a connection while more than this many bytes wait to be
/// written to it (256 KiB): a peer that does not read its answers does not get more.
pub const PAUSE_BACKLOG: usize = 256 * 1024;

/// Kong's deadline for a request: 90 s after it is sent (go-wrpc uses 60 s).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// Settings of a [`Peer`](super::Peer): start from [`PeerConfig::default`] and change
/// what you need with the by-value setters, each of which documents its default.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub(crate) call_timeout: Duration,
    pub(crate) max_pending_requests: usize,
    pub(crate) max_request_rate: Option<RequestRate>,
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

impl PeerConfig {
    /// How long a call waits for its answer unless the call says otherwise; also sets the
    /// request's wire deadline. Default 90 s ([`DEFAULT_CALL_TIMEOUT`], Kong's).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The connection's fair share of the worker pool: requests queued or running at once
    /// (open inbound streams count while their handler runs). Past it the reader stops
    /// reading until one finishes, so TCP pushes back on this peer alone. Default
    /// [`DEFAULT_MAX_PENDING_REQUESTS`] (8); at least 1. Inline handlers run on the reader
    /// and do not count.
    pub fn max_pending_requests(mut self, n: usize) -> Self {
        self.max_pending_requests = n;
        self
    }

    /// How fast the peer's requests are read: past the rate the reader waits, so a peer
    /// flooding requests gets them served at this rate and costs the others little.
    /// Default: no limit (a Peer serving its own services at full speed); the control
    /// plane sets one for data planes (see its builder).
    pub fn max_request_rate(mut self, rate: RequestRate) -> Self {
        self.max_request_rate = Some(rate);
        self
    }
}
