//! The wRPC peer: calls and serves on one connection at the same time.
//!
//! The reader thread decodes and validates each envelope, hands answers to the callers
//! waiting for them, and queues requests on the worker pool; it never runs a handler.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::envelope::{decode_envelope_owned, encode_envelope, request_head, ErrorType, PayloadV1};
use super::fair::{Bucket, FairShare, RequestRate, Turns, DEFAULT_MAX_PENDING_REQUESTS};
use super::pending::{deadline_after, is_past, AnswerSlot, Pending, Resolved, SeqCounter};
#[cfg(feature = "cp")]
use super::pending::{Answer, Waiter};
use super::pool::WorkerPool;
use super::service::{Context, Entry, Lookup, Services};
use super::stream::{OutboundStream, Streams};
use super::validate::{classify, Invalid, Kind, Rule};
use super::{Rpc, WrpcError};
use crate::channel::{
    close_code, lock, Channel, ChannelError, CloseRequest, Ended, MessageSink, Reader,
};

/// Requests are not read from a connection while more than this many bytes wait to be
/// written to it (256 KiB): a peer that does not read its answers does not get more.
pub const PAUSE_BACKLOG: usize = 256 * 1024;

/// Kong's deadline for a request: 90 s after it is sent (go-wrpc uses 60 s).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// Settings of a [`Peer`].
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

type EndHook = Box<dyn FnOnce(&Ended) + Send>;

struct Inner {
    channel: Channel,
    seq: SeqCounter,
    pending: Pending,
    services: Services,
    pool: Arc<WorkerPool>,
    streams: Streams,
    fair: FairShare,
    turns: Turns,
    /// Only the reader takes from it.
    bucket: Option<Mutex<Bucket>>,
    config: PeerConfig,
    end_hooks: Mutex<Option<Vec<EndHook>>>,
}

/// One end of a wRPC connection. Cheap to clone; all clones are the same connection.
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("label", &self.inner.channel.label())
            .field("pending", &self.inner.pending.len())
            .finish()
    }
}

impl Peer {
    /// A peer on `channel`, serving `services` with handlers run on `pool`. Nothing is
    /// received until the channel's [`Reader`] runs through [`Peer::serve`] or
    /// [`Peer::spawn`].
    pub fn new(
        channel: Channel,
        services: Services,
        pool: Arc<WorkerPool>,
        config: PeerConfig,
    ) -> Peer {
        Peer {
            inner: Arc::new(Inner {
                channel,
                seq: SeqCounter::default(),
                pending: Pending::default(),
                services,
                pool,
                streams: Streams::default(),
                fair: FairShare::new(config.max_pending_requests),
                turns: Turns::default(),
                bucket: config
                    .max_request_rate
                    .map(|r| Mutex::new(Bucket::new(r, std::time::Instant::now()))),
                config,
                end_hooks: Mutex::new(Some(Vec::new())),
            }),
        }
    }

    /// Runs the reader on this thread until the connection ends.
    pub fn serve(&self, reader: Reader) -> Ended {
        reader.run(PeerSink { peer: self.clone() })
    }

    /// Runs the reader on a new thread.
    pub fn spawn(&self, reader: Reader) -> Result<JoinHandle<()>, ChannelError> {
        reader.spawn(PeerSink { peer: self.clone() })
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
        if self.inner.channel.on_reader_thread() {
            // The answer could only be read by this very thread.
            return Err(WrpcError::from_channel(ChannelError::OnReaderThread));
        }
        let seq = self.next_seq();
        let slot = Arc::new(AnswerSlot::default());
        self.inner
            .pending
            .insert(seq, svc_id, rpc_id, slot.clone())?;
        // The body is written behind its envelope head as it is: never copied per call.
        let head = request_head(svc_id, rpc_id, seq, deadline_after(timeout), body.len());
        let sent = self.inner.channel.send_parts(&[&head, body]);
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
        let seq = self.next_seq();
        let waiter = Waiter::Callback(Box::new(on_answer));
        self.inner
            .pending
            .insert_waiter(seq, svc_id, rpc_id, waiter)?;
        let head = request_head(svc_id, rpc_id, seq, deadline_after(timeout), body.len());
        let sent = self.inner.channel.send_shared_then(&head, body, on_written);
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
        OutboundStream::begin::<R>(self.clone())
    }

    /// The services this connection serves; change them at any time.
    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    /// Closes the connection with `code` and `reason`: every waiting call fails at once
    /// with [`WrpcError::ConnectionClosed`].
    pub fn close(&self, code: u16, reason: &str) {
        self.inner.channel.close(code, reason);
    }

    /// Blocks until the connection has ended; returns why.
    pub fn wait(&self) -> Ended {
        self.inner.channel.wait()
    }

    /// How the connection ended, or `None` while it is open.
    pub fn ended(&self) -> Option<Ended> {
        self.inner.channel.ended()
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
        &self.inner.channel
    }

    /// How many calls wait for an answer.
    pub fn pending_calls(&self) -> usize {
        self.inner.pending.len()
    }

    pub(crate) fn next_seq(&self) -> u32 {
        self.inner.seq.next()
    }

    pub(crate) fn send_envelope(&self, msg: &PayloadV1) -> Result<(), WrpcError> {
        self.inner
            .channel
            .send(&encode_envelope(msg))
            .map_err(WrpcError::from_channel)
    }

    /// Answers the message `to` with an ERROR (never used for ERRORs themselves).
    fn send_error(&self, to: &PayloadV1, etype: ErrorType, description: &str) {
        let seq = self.next_seq();
        let msg = PayloadV1::error(to.svc_id, to.rpc_id, seq, to.seq, etype, description);
        if let Err(e) = self.send_envelope(&msg) {
            log::debug!(
                "{}: could not send an ERROR: {e}",
                self.inner.channel.label()
            );
        }
    }

    fn dispatch(&self, bytes: Vec<u8>) -> Result<(), CloseRequest> {
        let label = self.inner.channel.label();
        let envelope = match decode_envelope_owned(bytes) {
            Ok(envelope) => envelope,
            Err(e) => {
                log::warn!("{label}: closing with 1007: envelope does not decode: {e}");
                return Err(invalid_close(Rule::BadProtobuf));
            }
        };
        let kind = match classify(&envelope) {
            Ok(kind) => kind,
            Err(Invalid { rule, seq }) => {
                log::warn!("{label}: closing with 1007: {rule}");
                if let (Some(_), Some(p)) = (seq, envelope.payload.as_ref()) {
                    self.send_error(p, ErrorType::Generic, &rule.to_string());
                }
                return Err(invalid_close(rule));
            }
        };
        let Some(p) = envelope.payload else {
            return Ok(());
        };
        match kind {
            Kind::Request => self.on_request(p),
            Kind::Response => {
                let (ack, svc, rpc) = (p.ack, p.svc_id, p.rpc_id);
                let answer = Ok(p.into_body());
                match self.inner.pending.resolve(ack, svc, rpc, answer) {
                    Resolved::Delivered => {}
                    Resolved::Stray => {
                        log::debug!(
                            "{label}: dropping a response to seq {ack}: no call waits for it"
                        )
                    }
                    Resolved::Mismatched => {
                        log::warn!(
                            "{label}: response to seq {ack} names another rpc ({svc}, {rpc})"
                        )
                    }
                }
            }
            Kind::Error => {
                let e = p.error.unwrap_or_default();
                let etype = ErrorType::try_from(e.etype).unwrap_or(ErrorType::Unspecified);
                let err = WrpcError::Remote {
                    etype,
                    description: e.description,
                };
                // ERRORs may not echo the ids faithfully; match on ack alone.
                if self.inner.pending.resolve_any(p.ack, Err(err)) == Resolved::Stray {
                    log::debug!(
                        "{label}: dropping an ERROR for seq {}: no call waits",
                        p.ack
                    );
                }
            }
            Kind::StreamBegin => self.on_stream_begin(p),
            Kind::StreamMessage => {
                if !self.inner.streams.deliver(p.stream_id, p.into_body()) {
                    log::debug!("{label}: dropping a message of unknown stream");
                }
            }
            Kind::StreamEnd => {
                self.inner.streams.end(p.stream_id);
            }
        }
        Ok(())
    }

    fn on_request(&self, p: PayloadV1) {
        if is_past(p.deadline) {
            self.send_error(&p, ErrorType::Generic, "deadline exceeded");
            return;
        }
        let handler = match self.inner.services.lookup(p.svc_id, p.rpc_id) {
            Lookup::UnknownService => {
                let text = format!("unknown service {}", p.svc_id);
                return self.send_error(&p, ErrorType::InvalidService, &text);
            }
            Lookup::UnknownRpc | Lookup::Found(Entry::Stream(_)) => {
                let text = format!("unknown rpc {} of service {}", p.rpc_id, p.svc_id);
                return self.send_error(&p, ErrorType::InvalidRpc, &text);
            }
            Lookup::Found(Entry::Unary(handler)) => (handler, false),
            Lookup::Found(Entry::Inline(handler)) => (handler, true),
        };
        let (handler, inline) = handler;
        let peer = self.clone();
        let (svc, rpc, seq, deadline) = (p.svc_id, p.rpc_id, p.seq, p.deadline);
        let job = Box::new(move || {
            if is_past(deadline) {
                return peer.send_error(&p, ErrorType::Generic, "deadline exceeded");
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
                    let resp = PayloadV1::response(svc, rpc, peer.next_seq(), seq, body);
                    if let Err(e) = peer.send_envelope(&resp) {
                        log::debug!("{}: could not send a response: {e}", peer.label());
                        if let WrpcError::TooLarge { .. } = e {
                            peer.send_error(&p, ErrorType::Generic, &e.to_string());
                        }
                    }
                }
                Ok(Err(e)) => peer.send_error(&p, ErrorType::Generic, &e.0),
                Err(_) => {
                    log::error!("{}: handler for ({svc}, {rpc}) panicked", peer.label());
                    peer.send_error(&p, ErrorType::Generic, "handler panicked");
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
            self.send_error_ids(svc, rpc, seq, ErrorType::Generic, text);
        }
    }

    fn send_error_ids(&self, svc: u32, rpc: u32, ack: u32, etype: ErrorType, text: &str) {
        let msg = PayloadV1::error(svc, rpc, self.next_seq(), ack, etype, text);
        let _ = self.send_envelope(&msg);
    }

    fn on_stream_begin(&self, p: PayloadV1) {
        let handler = match self.inner.services.lookup(p.svc_id, p.rpc_id) {
            Lookup::Found(Entry::Stream(handler)) => handler,
            Lookup::UnknownService => {
                return self.send_error(&p, ErrorType::InvalidService, "unknown service");
            }
            _ => return self.send_error(&p, ErrorType::InvalidRpc, "no stream handler"),
        };
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
            self.send_error(
                &p,
                ErrorType::Generic,
                "overloaded: the worker queue is full",
            );
        }
    }

    fn label(&self) -> &str {
        self.inner.channel.label()
    }

    /// Queues a job for this connection's turns on the pool (see [`Turns`]); the job is
    /// dropped unrun when the pool refuses.
    fn submit(&self, job: super::pool::Job) -> Result<(), super::pool::Overloaded> {
        if self.inner.turns.push(job) {
            if let Err(e) = self.submit_turn() {
                drop(self.inner.turns.take_back());
                return Err(e);
            }
        }
        Ok(())
    }

    fn submit_turn(&self) -> Result<(), super::pool::Overloaded> {
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
    /// outbox that will overflow). False when the connection is going away meanwhile (the request is dropped).
    fn take_share(&self) -> bool {
        let channel = &self.inner.channel;
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
        let channel = &self.inner.channel;
        let gone = || channel.is_going() || channel.ended().is_some();
        if let Some(bucket) = &self.inner.bucket {
            loop {
                let wait = lock(bucket).take(std::time::Instant::now());
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
