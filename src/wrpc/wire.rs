//! The sending half of one wRPC connection: its channel and its seq counter. The peer,
//! its handlers' answers and its outbound streams all send through it, so none of them
//! needs the whole [`Peer`](super::Peer).

use std::fmt;
use std::sync::Arc;

use super::envelope::{encode_envelope, ErrorType, PayloadV1};
use super::pending::SeqCounter;
use super::WrpcError;
use crate::channel::Channel;

/// Sends envelopes on one connection, each with the next seq of that connection. Cheap
/// to clone; every clone counts on the same seq.
#[derive(Clone)]
pub(crate) struct Wire {
    channel: Channel,
    seq: Arc<SeqCounter>,
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wire")
            .field("label", &self.channel.label())
            .finish()
    }
}

impl Wire {
    /// Sends on `channel`, numbering from seq 1.
    pub(crate) fn new(channel: Channel) -> Wire {
        Wire {
            channel,
            seq: Arc::default(),
        }
    }

    /// The channel sent on.
    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The connection's label, for logs.
    pub(crate) fn label(&self) -> &str {
        self.channel.label()
    }

    /// The seq for the next message sent.
    pub(crate) fn next_seq(&self) -> u32 {
        self.seq.next()
    }

    /// Encodes and sends one envelope.
    pub(crate) fn send_envelope(&self, msg: &PayloadV1) -> Result<(), WrpcError> {
        self.channel
            .send(&encode_envelope(msg))
            .map_err(WrpcError::from_channel)
    }

    /// Sends an ERROR acknowledging `ack` of (svc_id, rpc_id), logging (not returning) a
    /// failure: the connection is being dropped then anyway.
    pub(crate) fn send_error(
        &self,
        svc_id: u32,
        rpc_id: u32,
        ack: u32,
        etype: ErrorType,
        text: &str,
    ) {
        let msg = PayloadV1::error(svc_id, rpc_id, self.next_seq(), ack, etype, text);
        if let Err(e) = self.send_envelope(&msg) {
            log::debug!("{}: could not send an ERROR: {e}", self.label());
        }
    }
}
