//! Streams (wRPC spec, "Stream flow"): STREAM_BEGIN, STREAM_MESSAGE and STREAM_END tied
//! to an RPC by its service and rpc ids. Kong peers do not support them (Kong answers
//! "Unsupported message type", go-wrpc closes the connection), so only services that
//! declare a stream handler use them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::envelope::PayloadV1;
use super::rpc::Rpc;
use super::wire::Wire;
use super::WrpcError;
use crate::channel::lock;

/// Messages a stream may buffer before the reader waits for its handler (which pushes
/// back on the peer through TCP, as the spec expects: there is no flow control in wRPC).
pub const STREAM_BUFFER: usize = 1024;

/// A stream the peer began: its messages in order, ending at STREAM_END or when the
/// connection ends.
#[derive(Debug)]
pub struct InboundStream {
    rx: Receiver<Vec<u8>>,
    /// The stream's id (the seq of the peer's STREAM_BEGIN).
    pub stream_id: u32,
}

impl InboundStream {
    /// The next message's bytes, or `None` once the stream has ended.
    pub fn recv(&self) -> Option<Vec<u8>> {
        self.rx.recv().ok()
    }

    /// Like [`recv`](Self::recv) but gives up at `deadline` (`Err(true)` on time-out,
    /// `Err(false)` when the stream ended).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Vec<u8>, bool> {
        self.rx
            .recv_deadline(deadline)
            .map_err(|e| matches!(e, RecvTimeoutError::Timeout))
    }
}

impl Iterator for InboundStream {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        self.recv()
    }
}

/// A stream this end began with [`Peer::open_stream`](super::Peer::open_stream); STREAM_END is sent by
/// [`finish`](Self::finish) or on drop.
#[derive(Debug)]
pub struct OutboundStream {
    wire: Wire,
    svc_id: u32,
    rpc_id: u32,
    stream_id: u32,
    finished: bool,
}

impl OutboundStream {
    /// Sends STREAM_BEGIN for `R` on `wire`.
    pub(crate) fn begin<R: Rpc>(wire: Wire) -> Result<OutboundStream, WrpcError> {
        let seq = wire.next_seq();
        wire.send_envelope(&PayloadV1::stream_begin(R::SERVICE_ID, R::RPC_ID, seq))?;
        Ok(OutboundStream {
            wire,
            svc_id: R::SERVICE_ID,
            rpc_id: R::RPC_ID,
            stream_id: seq,
            finished: false,
        })
    }

    /// The stream's id (the seq of our STREAM_BEGIN).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Sends one message on the stream.
    pub fn send(&self, message: &impl prost::Message) -> Result<(), WrpcError> {
        self.send_raw(message.encode_to_vec())
    }

    /// Sends one already-encoded message on the stream.
    pub fn send_raw(&self, body: Vec<u8>) -> Result<(), WrpcError> {
        let seq = self.wire.next_seq();
        let msg = PayloadV1::stream_message(self.svc_id, self.rpc_id, seq, self.stream_id, body);
        self.wire.send_envelope(&msg)
    }

    /// Ends the stream.
    pub fn finish(mut self) -> Result<(), WrpcError> {
        self.end()
    }

    fn end(&mut self) -> Result<(), WrpcError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let seq = self.wire.next_seq();
        self.wire.send_envelope(&PayloadV1::stream_end(
            self.svc_id,
            self.rpc_id,
            seq,
            self.stream_id,
        ))
    }
}

impl Drop for OutboundStream {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// The streams the peer has begun on one connection.
#[derive(Default)]
pub(crate) struct Streams {
    open: Mutex<HashMap<u32, Sender<Vec<u8>>>>,
}

impl Streams {
    /// Opens a stream and returns its receiving end.
    pub(crate) fn begin(&self, stream_id: u32) -> InboundStream {
        let (tx, rx) = crossbeam_channel::bounded(STREAM_BUFFER);
        lock(&self.open).insert(stream_id, tx);
        InboundStream { rx, stream_id }
    }

    /// Delivers a message; false when no such stream is open (the message is dropped).
    pub(crate) fn deliver(&self, stream_id: u32, body: Vec<u8>) -> bool {
        let tx = lock(&self.open).get(&stream_id).cloned();
        match tx {
            Some(tx) => {
                if tx.send(body).is_err() {
                    // The handler stopped listening: forget the stream.
                    lock(&self.open).remove(&stream_id);
                }
                true
            }
            None => false,
        }
    }

    /// Ends one stream; false if it was not open.
    pub(crate) fn end(&self, stream_id: u32) -> bool {
        lock(&self.open).remove(&stream_id).is_some()
    }

    /// Ends every stream (the connection ended).
    pub(crate) fn end_all(&self) {
        lock(&self.open).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_their_stream_in_order_until_it_ends() {
        let streams = Streams::default();
        let inbound = streams.begin(3);
        assert!(streams.deliver(3, b"one".to_vec()));
        assert!(streams.deliver(3, b"two".to_vec()));
        assert!(streams.end(3));
        let got: Vec<_> = inbound.collect();
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn a_message_for_an_unknown_or_ended_stream_is_dropped() {
        let streams = Streams::default();
        assert!(!streams.deliver(9, b"never begun".to_vec()));
        let _inbound = streams.begin(9);
        assert!(streams.end(9));
        assert!(!streams.deliver(9, b"after its end".to_vec()));
        assert!(!streams.end(9), "a second STREAM_END finds nothing to end");
    }

    #[test]
    fn streams_are_told_apart_by_id() {
        let streams = Streams::default();
        let (a, b) = (streams.begin(1), streams.begin(2));
        streams.deliver(2, b"to b".to_vec());
        streams.deliver(1, b"to a".to_vec());
        streams.end_all();
        assert_eq!(a.collect::<Vec<_>>(), [b"to a".to_vec()]);
        assert_eq!(b.collect::<Vec<_>>(), [b"to b".to_vec()]);
    }

    #[test]
    fn a_stream_whose_handler_stopped_listening_is_forgotten() {
        let streams = Streams::default();
        drop(streams.begin(5));
        assert!(streams.deliver(5, b"nobody listens".to_vec()));
        assert!(!streams.deliver(5, b"forgotten".to_vec()));
    }

    #[test]
    fn the_end_of_the_connection_ends_every_stream() {
        let streams = Streams::default();
        let inbound = streams.begin(7);
        streams.end_all();
        let soon = Instant::now() + std::time::Duration::from_secs(1);
        assert_eq!(
            inbound.recv_deadline(soon),
            Err(false),
            "ended, not timed out"
        );
    }
}
