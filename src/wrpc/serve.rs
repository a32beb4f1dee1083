//! The serving side of a [`Peer`]: its reader does what [`decide`] says of each message,
//! handing requests to the worker pool within the connection's fair share (or running an
//! inline handler itself), answers to the callers waiting for them, and stream messages
//! to their streams. The reader never runs a worker's handler.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::PAUSE_BACKLOG;
use super::conn::{Context, Peer};
use super::dispatch::{decide, Decision, Reject};
use super::envelope::{ErrorType, PayloadV1};
use super::pending::{is_past, unix_now, Resolved};
use super::pool::{Job, Overloaded};
use super::table::{StreamFn, UnaryFn};
use super::validate::Rule;
use super::WrpcError;
use crate::channel::{close_code, lock, ChannelError, CloseRequest, Ended, MessageSink, Reader};

impl Peer {
    /// Runs the reader on this thread until the connection ends.
    pub fn serve(&self, reader: Reader) -> Ended {
        reader.run(PeerSink { peer: self.clone() })
    }

    /// Runs the reader on a new thread.
    pub fn spawn(&self, reader: Reader) -> Result<JoinHandle<()>, ChannelError> {
        reader.spawn(PeerSink { peer: self.clone() })
    }

    fn label(&self) -> &str {
        self.inner.wire.label()
    }

    fn reject(&self, r: &Reject) {
        self.inner
            .wire
            .send_error(r.svc_id, r.rpc_id, r.ack, r.etype, &r.text);
    }

    /// Does what one received message calls for.
    fn dispatch(&self, message: Vec<u8>) -> Result<(), CloseRequest> {
        let inner = &self.inner;
        let label = self.label();
        match decide(message, &inner.services.table, unix_now()) {
            Decision::Close { rule, why, reply } => {
                log::warn!("{label}: closing with 1007: {why}");
                if let Some(reply) = reply {
                    self.reject(&reply);
                }
                return Err(invalid_close(rule));
            }
            Decision::Reject(r) => self.reject(&r),
            Decision::Serve {
                request,
                handler,
                inline,
            } => self.on_request(request, handler, inline),
            Decision::BeginStream { begin, handler } => self.on_stream_begin(begin, handler),
            Decision::Answer {
                ack,
                svc_id,
                rpc_id,
                body,
            } => match inner.pending.resolve(ack, svc_id, rpc_id, Ok(body)) {
                Resolved::Delivered => {}
                Resolved::Stray => {
                    log::debug!("{label}: dropping a response to seq {ack}: no call waits for it")
                }
                Resolved::Mismatched => {
                    log::warn!(
                        "{label}: response to seq {ack} names another rpc ({svc_id}, {rpc_id})"
                    )
                }
            },
            Decision::Fail { ack, error } => {
                // ERRORs may not echo the ids faithfully; match on ack alone.
                if inner.pending.resolve_any(ack, Err(error)) == Resolved::Stray {
                    log::debug!("{label}: dropping an ERROR for seq {ack}: no call waits");
                }
            }
            Decision::StreamMessage { stream_id, body } => {
                if !inner.streams.deliver(stream_id, body) {
                    log::debug!("{label}: dropping a message of unknown stream");
                }
            }
            Decision::StreamEnd { stream_id } => {
                inner.streams.end(stream_id);
            }
        }
        Ok(())
    }

    fn on_request(&self, p: PayloadV1, handler: Arc<UnaryFn<Context>>, inline: bool) {
        let peer = self.clone();
        let (svc, rpc, seq, deadline) = (p.svc_id, p.rpc_id, p.seq, p.deadline);
        let job = Box::new(move || {
            let wire = &peer.inner.wire;
            if is_past(deadline) {
                return peer.reject(&Reject::to(&p, ErrorType::Generic, "deadline exceeded"));
            }
            let ctx = Context {
                peer: peer.clone(),
                seq,
                deadline,
                svc_id: svc,
                rpc_id: rpc,
            };
            let result = catch_unwind(AssertUnwindSafe(|| handler(&ctx, &p.body_bytes())));
            match result {
                Ok(Ok(body)) => {
                    let resp = PayloadV1::response(svc, rpc, wire.next_seq(), seq, body);
                    if let Err(e) = wire.send_envelope(&resp) {
                        log::debug!("{}: could not send a response: {e}", peer.label());
                        if let WrpcError::TooLarge { .. } = e {
                            peer.reject(&Reject::to(&p, ErrorType::Generic, e.to_string()));
                        }
                    }
                }
                Ok(Err(e)) => peer.reject(&Reject::to(&p, ErrorType::Generic, e.0)),
                Err(_) => {
                    log::error!("{}: handler for ({svc}, {rpc}) panicked", peer.label());
                    peer.reject(&Reject::to(&p, ErrorType::Generic, "handler panicked"));
                }
            }
        });
        if inline {
            // No worker is taken, but the rate and the backlog hold all the same: an
            // inline request is as much work as any for this reader.
            if self.admit() {
                job();
            }
            return;
        }
        if !self.take_share() {
            return;
        }
        let share = Share(self.clone());
        let job = Box::new(move || {
            let _share = share;
            job();
        });
        if self.submit(job).is_err() {
            log::warn!(
                "{}: worker queue full; answering seq {seq} overloaded",
                self.label()
            );
            let text = "overloaded: the worker queue is full, retry later";
            self.inner
                .wire
                .send_error(svc, rpc, seq, ErrorType::Generic, text);
        }
    }

    fn on_stream_begin(&self, p: PayloadV1, handler: Arc<StreamFn<Context>>) {
        if !self.take_share() {
            return;
        }
        let share = Share(self.clone());
        let stream = self.inner.streams.begin(p.stream_id);
        let ctx = Context {
            peer: self.clone(),
            seq: p.seq,
            deadline: p.deadline,
            svc_id: p.svc_id,
            rpc_id: p.rpc_id,
        };
        let job = Box::new(move || {
            let _share = share;
            handler(&ctx, stream)
        });
        if self.submit(job).is_err() {
            self.inner.streams.end(p.stream_id);
            let text = "overloaded: the worker queue is full";
            self.reject(&Reject::to(&p, ErrorType::Generic, text));
        }
    }

    /// Queues a job for this connection's turns on the pool (see
    /// [`Turns`](super::fair::Turns)); the job is dropped unrun when the pool refuses.
    fn submit(&self, job: Job) -> Result<(), Overloaded> {
        if self.inner.turns.push(job) {
            if let Err(e) = self.submit_turn() {
                drop(self.inner.turns.take_back());
                return Err(e);
            }
        }
        Ok(())
    }

    fn submit_turn(&self) -> Result<(), Overloaded> {
        let peer = self.clone();
        self.inner
            .pool
            .try_submit(Box::new(move || peer.run_turn()))
    }

    /// One turn on a worker: queue the next turn behind the other connections', then run
    /// one job. When the pool is full this worker keeps serving the connection itself.
    fn run_turn(&self) {
        loop {
            let (job, more) = self.inner.turns.next();
            let Some(job) = job else { return };
            if more && self.submit_turn().is_err() {
                job();
                continue;
            }
            job();
            return;
        }
    }

    /// Takes one of this connection's shares of the pool, stopping reading while none is
    /// left, or while more than [`PAUSE_BACKLOG`] bytes of answers wait to be written to
    /// the peer (it is not reading them: serving more of its requests only feeds an
    /// outbox that will overflow). False when the connection is going away meanwhile (the
    /// request is dropped).
    fn take_share(&self) -> bool {
        let channel = self.inner.wire.channel();
        let fair = &self.inner.fair;
        if fair.in_use() >= self.inner.config.max_pending_requests {
            log::debug!(
                "{}: {} requests queued or running; reading paused until one finishes",
                self.label(),
                fair.in_use()
            );
        }
        let gone = || channel.is_going() || channel.ended().is_some();
        self.admit() && fair.acquire(gone)
    }

    /// Waits, on the reader, until this connection may have one more request served: the
    /// request rate allows it and fewer than [`PAUSE_BACKLOG`] bytes of answers wait to be
    /// written. False when the connection is going away meanwhile.
    fn admit(&self) -> bool {
        let channel = self.inner.wire.channel();
        let gone = || channel.is_going() || channel.ended().is_some();
        if let Some(bucket) = &self.inner.bucket {
            loop {
                let wait = lock(bucket).take(Instant::now());
                match wait {
                    Ok(()) => break,
                    Err(_) if gone() => return false,
                    // The reader rests, so TCP pushes back on this peer alone.
                    Err(wait) => std::thread::sleep(wait.min(Duration::from_millis(250))),
                }
            }
        }
        channel.wait_backlog_below(PAUSE_BACKLOG, gone)
    }
}

/// One request's share of the pool, given back when its job is done (or dropped unrun).
struct Share(Peer);

impl Drop for Share {
    fn drop(&mut self) {
        self.0.inner.fair.release();
    }
}

fn invalid_close(rule: Rule) -> CloseRequest {
    CloseRequest {
        code: close_code::INVALID_PAYLOAD,
        reason: rule.close_reason(),
    }
}

/// The reader's view of the peer: each message is dispatched, and the end of the
/// connection fails the calls and ends the streams.
struct PeerSink {
    peer: Peer,
}

impl MessageSink for PeerSink {
    fn on_message(&mut self, message: Vec<u8>) -> Result<(), CloseRequest> {
        self.peer.dispatch(message)
    }

    fn on_end(&mut self, ended: &Ended) {
        let inner = &self.peer.inner;
        inner
            .pending
            .close(WrpcError::ConnectionClosed(ended.clone()));
        inner.streams.end_all();
        let hooks = lock(&inner.end_hooks).take().unwrap_or_default();
        for hook in hooks {
            hook(ended);
        }
    }
}
