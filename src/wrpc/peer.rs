//! The wRPC peer: calls and serves on one connection at the same time.
//!
//! This file is the caller's side: making a [`Peer`], calling, opening streams, closing.
//! The reader and the workers that serve the peer's requests are in `serve.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use super::config::{PeerConfig, DEFAULT_CALL_TIMEOUT};
pub use super::conn::Peer;
use super::conn::{Inner, Services};
use super::envelope::request_head;
use super::fair::{Bucket, FairShare, Turns};
use super::pending::{deadline_after, AnswerSlot, Pending};
#[cfg(feature = "cp")]
use super::pending::{Answer, Resolved, Waiter};
use super::pool::WorkerPool;
use super::rpc::Rpc;
use super::stream::{OutboundStream, Streams};
use super::wire::Wire;
use super::WrpcError;
use crate::channel::{lock, Channel, ChannelError, Ended};

impl Peer {
    /// A peer on `channel`, serving `services` with handlers run on `pool`. Nothing is
    /// received until the channel's [`Reader`](crate::channel::Reader) runs through
    /// [`Peer::serve`] or [`Peer::spawn`].
    pub fn new(
        channel: Channel,
        services: Services,
        pool: Arc<WorkerPool>,
        config: PeerConfig,
    ) -> Peer {
        Peer {
            inner: Arc::new(Inner {
                wire: Wire::new(channel),
                pending: Pending::default(),
                services,
                pool,
                streams: Streams::default(),
                fair: FairShare::new(config.max_pending_requests),
                turns: Turns::default(),
                bucket: config
                    .max_request_rate
                    .map(|r| Mutex::new(Bucket::new(r, Instant::now()))),
                config,
                end_hooks: Mutex::new(Some(Vec::new())),
            }),
        }
    }

    /// Calls `R` with the default timeout and waits for its answer.
    pub fn call<R: Rpc>(&self, request: &R::Request) -> Result<R::Response, WrpcError> {
        self.call_timeout::<R>(request, self.inner.config.call_timeout)
    }
    /// Calls `R`, giving up after `timeout` (also the request's wire deadline).
    pub fn call_timeout<R: Rpc>(
        &self,
        request: &R::Request,
        timeout: Duration,
    ) -> Result<R::Response, WrpcError> {
        let body = prost::Message::encode_to_vec(request);
        let answer = self.call_raw(R::SERVICE_ID, R::RPC_ID, &body, timeout, R::NAME)?;
        <R::Response as prost::Message>::decode(&answer[..]).map_err(|e| WrpcError::Decode {
            name: R::NAME.into(),
            message: e.to_string(),
        })
    }

    /// Calls (svc_id, rpc_id) with an encoded request and returns the encoded response.
    /// Blocks until the response, an ERROR, the timeout, or the connection's end.
    pub fn call_raw(
        &self,
        svc_id: u32,
        rpc_id: u32,
        body: &[u8],
        timeout: Duration,
        name: &str,
    ) -> Result<Vec<u8>, WrpcError> {
        if self.inner.wire.channel().on_reader_thread() {
            // The answer could only be read by this very thread.
            return Err(WrpcError::from_channel(ChannelError::OnReaderThread));
        }
        let seq = self.inner.wire.next_seq();
        let slot = Arc::new(AnswerSlot::default());
        self.inner
            .pending
            .insert(seq, svc_id, rpc_id, slot.clone())?;
        // The body is written behind its envelope head as it is: never copied per call.
        let head = request_head(svc_id, rpc_id, seq, deadline_after(timeout), body.len());
        let sent = self.inner.wire.channel().send_parts(&[&head, body]);
        if let Err(e) = sent.map_err(WrpcError::from_channel) {
            self.inner.pending.remove(seq);
            return Err(e);
        }
        match slot.wait_timeout(timeout) {
            Some(answer) => answer,
            None => {
                self.inner.pending.remove(seq);
                Err(WrpcError::Timeout {
                    name: name.to_string(),
                })
            }
        }
    }

    /// Calls (svc_id, rpc_id) without waiting: `body` is held by reference (one config
    /// body serves every connection), and `on_answer` runs once with the answer, on the
    /// reader thread, or with the error when the connection ends or [`expire`](Self::expire)
    /// gives up on it. It must be quick. `on_written`, if given, runs once the request has
    /// been wholly written (see [`Channel::send_shared_then`]). Returns the call's seq; on
    /// `Err` nothing was sent and neither callback runs.
    #[cfg(feature = "cp")]
    pub(crate) fn call_async(
        &self,
        svc_id: u32,
        rpc_id: u32,
        body: Arc<[u8]>,
        timeout: Duration,
        on_written: Option<crate::channel::Written>,
        on_answer: impl FnOnce(Answer) + Send + 'static,
    ) -> Result<u32, WrpcError> {
        let seq = self.inner.wire.next_seq();
        let waiter = Waiter::Callback(Box::new(on_answer));
        self.inner
            .pending
            .insert_waiter(seq, svc_id, rpc_id, waiter)?;
        let head = request_head(svc_id, rpc_id, seq, deadline_after(timeout), body.len());
        let sent = self
            .inner
            .wire
            .channel()
            .send_shared_then(&head, body, on_written);
        if let Err(e) = sent.map_err(WrpcError::from_channel) {
            self.inner.pending.remove(seq);
            return Err(e);
        }
        Ok(seq)
    }

    /// Gives up on the call `seq` made with [`call_async`](Self::call_async): its callback
    /// gets [`WrpcError::Timeout`] unless its answer came first. True if it was waiting.
    #[cfg(feature = "cp")]
    pub(crate) fn expire(&self, seq: u32, name: &str) -> bool {
        let timeout = Err(WrpcError::Timeout {
            name: name.to_string(),
        });
        self.inner.pending.resolve_any(seq, timeout) == Resolved::Delivered
    }

    /// Begins a stream for `R`; see [`OutboundStream`].
    pub fn open_stream<R: Rpc>(&self) -> Result<OutboundStream, WrpcError> {
        OutboundStream::begin::<R>(self.inner.wire.clone())
    }

    /// The services this connection serves: its own table (see [`Services`]), which may
    /// change at any time; a change applies to the next request read.
    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    /// Closes the connection with `code` and `reason`: every waiting call fails at once
    /// with [`WrpcError::ConnectionClosed`].
    pub fn close(&self, code: u16, reason: &str) {
        self.inner.wire.channel().close(code, reason);
    }

    /// Blocks until the connection has ended; returns why.
    pub fn wait(&self) -> Ended {
        self.inner.wire.channel().wait()
    }

    /// How the connection ended, or `None` while it is open.
    pub fn ended(&self) -> Option<Ended> {
        self.inner.wire.channel().ended()
    }

    /// Runs `hook` once the connection has ended (at once if it already has), on the
    /// reader thread: keep it short.
    pub fn on_end(&self, hook: impl FnOnce(&Ended) + Send + 'static) {
        let mut hooks = lock(&self.inner.end_hooks);
        match hooks.as_mut() {
            Some(list) => list.push(Box::new(hook)),
            None => {
                drop(hooks);
                let ended = self.ended().unwrap_or(Ended::Failed {
                    reason: "ended".into(),
                });
                hook(&ended);
            }
        }
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel {
        self.inner.wire.channel()
    }

    /// How many calls wait for an answer.
    pub fn pending_calls(&self) -> usize {
        self.inner.pending.len()
    }
}
