//! What the roles need of a protocol driver: [`Link`], one per connection. The push
//! scheduler (`push`) and the registry hold connections only through it, so a new
//! protocol (say `/v2/outlet`, JSON-RPC) is one more driver file implementing it.

use std::sync::Arc;

use super::push::CurrentConfig;
use super::Shared;
use crate::channel::{Channel, Written};
use crate::services::gate::SyncStatus;

/// A connection as the roles see it, whatever it speaks: its channel, and how its
/// protocol pushes a config. Implemented by each protocol driver.
pub(crate) trait Link: Send + Sync {
    /// The connection's channel (for closing it).
    fn channel(&self) -> &Channel;

    /// The driver itself, for its own timer tasks to find their connection again.
    fn as_any(&self) -> &dyn std::any::Any;

    /// Whether a ping reporting the pushed hash completes the push as accepted (the
    /// protocol has no answer of its own). Default false.
    fn ping_accepts(&self) -> bool {
        false
    }

    /// Whether `config` can be sent to this data plane now. Runs on a push worker, off
    /// every lock; may build the protocol's encoding of the config (once per config).
    fn prepare(&self, config: &CurrentConfig) -> Ready;

    /// Queues `config` on the connection without waiting, with `on_written` to run once
    /// its message has been wholly written (the fan-out window moves on then). For
    /// [`Sent::Awaiting`] the driver calls [`finish`](super::push::finish) when the answer
    /// comes; `Err` says why nothing was sent.
    fn send(
        &self,
        shared: &Arc<Shared>,
        conn: u64,
        node_id: &str,
        config: &Arc<CurrentConfig>,
        on_written: Written,
    ) -> Result<Sent, String>;
}

/// What a driver says of a config before sending it.
pub(crate) enum Ready {
    /// Send it.
    Now,
    /// Never send it to this data plane (it cannot take it): skip, keep the connection,
    /// report the reason, and set the status if one is given (else it stays).
    Skip(Option<SyncStatus>, String),
    /// Not now (the connection still holds the previous push): try again at the data
    /// plane's next ping.
    Later(String),
}

/// How a driver sent a config.
pub(crate) enum Sent {
    /// Queued; the protocol answers, and the driver completes the push with [`finish`](super::push::finish).
    Awaiting,
    /// Queued; the protocol has no answer, so the push is complete as
    /// [`PushOutcome::Sent`](super::PushOutcome::Sent).
    Queued,
}
