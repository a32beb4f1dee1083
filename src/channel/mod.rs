//! The full-duplex message channel: binary WebSocket messages over a TLS session, after the
//! upgrade.
//!
//! One reader thread blocks on the socket (no timeout polling: an idle connection costs no
//! wake-ups). It takes the TLS lock only to feed the bytes it received and take the
//! plaintext out.
//!
//! Sending never waits on the peer. [`Channel::send`] puts the frame into the
//! connection's bounded outbox and returns; when nothing waits ahead of it, the sender
//! seals it and hands it to the socket with a non-blocking `send(2)` at once, so the fast
//! path costs no thread hand-off. Whatever the socket does not take is written by a
//! flusher thread that exists only while that backlog does. A connection whose outbox
//! would pass [`ChannelConfig::outbox_limit`], or whose oldest message is not wholly
//! written within [`ChannelConfig::write_timeout`] of being queued, is dropped as not
//! reading: one log line, and the channel ends with [`Ended::Failed`] saying why. The TLS
//! lock is never held while waiting on the network, and no lock is held by a thread
//! waiting on it.
//!
//! Kong never sends WebSocket pings and never answers them, so liveness never depends on
//! pongs here; pings from other peers are answered.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

internal! { mod frame; }
mod outbox;
mod reader;
mod writer;

pub use frame::close_code;
internal_use!(frame::Role);
pub use reader::{Incoming, Reader};

use frame::{apply_mask, close_payload, write_header, MAX_HEADER_LEN};
pub(crate) use outbox::Written;
use outbox::{Outbox, Part};
use writer::{pump, spawn_flusher, Pumped};

/// Kong's default `cluster_max_payload`: 4 MiB, in both directions.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The default outbox limit: twice Kong's default `cluster_max_payload`, so one whole
/// message of the largest size can wait behind another.
pub const DEFAULT_OUTBOX_LIMIT: usize = 2 * DEFAULT_MAX_MESSAGE_SIZE;

/// Settings of one channel: start from [`ChannelConfig::default`] and change what you
/// need with the by-value setters, each of which documents its default.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub(crate) max_message_size: usize,
    pub(crate) outbox_limit: usize,
    /// Always `Some` through the public API; `None` is kept for the crate's own tests of
    /// a connection without a deadline.
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) close_timeout: Duration,
    pub(crate) label: String,
    pub(crate) fragments: bool,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            outbox_limit: DEFAULT_OUTBOX_LIMIT,
            write_timeout: Some(Duration::from_secs(10)),
            close_timeout: Duration::from_secs(5),
            label: String::from("peer"),
            fragments: true,
        }
    }
}

impl ChannelConfig {
    /// Largest message sent or accepted, in bytes. Default 4 MiB
    /// ([`DEFAULT_MAX_MESSAGE_SIZE`], Kong's `cluster_max_payload`); a bigger message is
    /// refused before sending and closes the connection with 1009 on receipt.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The most bytes that may wait to be written to the peer (queued frames and sealed
    /// records together). Default [`DEFAULT_OUTBOX_LIMIT`] (8 MiB); never less than one
    /// message of the largest size. A send that would pass it drops the connection as not
    /// reading. A body shared by many connections counts for each of them but is held
    /// once.
    pub fn outbox_limit(mut self, bytes: usize) -> Self {
        self.outbox_limit = bytes;
        self
    }

    /// How long a message may take to be wholly written, from the moment it is queued.
    /// Default 10 s (a zero is taken as 1 ms). Past it the peer is not reading and the
    /// connection is dropped: no send can wait forever on a peer.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }

    /// How long to wait for the peer's close frame after sending ours. Default 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// A label for logs and thread names, usually the peer's address. Default `peer`.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Whether a message may come in several frames (RFC 6455 fragmentation). Default
    /// true. Kong's `/v1/outlet` nodes take a non-final frame as fatal, so the JSON
    /// control plane sets false: a fragmented message closes the connection with 1008.
    pub fn fragments(mut self, allowed: bool) -> Self {
        self.fragments = allowed;
        self
    }

    /// The outbox limit in force: the configured one, raised to hold one whole message.
    pub(crate) fn effective_outbox_limit(&self) -> usize {
        self.outbox_limit
            .max(self.max_message_size + MAX_HEADER_LEN + 1024)
    }
}

/// How and why a channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// This end sent a close frame with this code and reason.
    ClosedByUs {
        /// The close code sent.
        code: u16,
        /// The reason sent.
        reason: String,
    },
    /// The peer sent a close frame first.
    ClosedByPeer {
        /// The peer's close code, if it gave one (Kong's close frames carry none).
        code: Option<u16>,
        /// The peer's reason, possibly empty.
        reason: String,
    },
    /// The connection broke without a close handshake: reset, EOF, TLS failure, write
    /// timeout.
    Failed {
        /// What happened.
        reason: String,
    },
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::ClosedByUs { code, reason } => write!(f, "closed by us ({code}: {reason})"),
            Ended::ClosedByPeer {
                code: Some(code),
                reason,
            } => {
                write!(f, "closed by the peer ({code}: {reason})")
            }
            Ended::ClosedByPeer { code: None, reason } => {
                write!(f, "closed by the peer (no status: {reason})")
            }
            Ended::Failed { reason } => write!(f, "connection lost: {reason}"),
        }
    }
}

/// The pong that answers a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pong {
    /// Echo the ping's payload (RFC 6455).
    Echo,
    /// An empty pong (what Kong's CP sends on `/v1/outlet`).
    Empty,
}

/// What a [`MessageSink`] returns to have the connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseRequest {
    /// The close code to send.
    pub code: u16,
    /// The reason to send (cut to 123 bytes).
    pub reason: String,
}

impl CloseRequest {
    /// Close with `code` and `reason` (cut to 123 bytes when sent).
    pub fn new(code: u16, reason: impl Into<String>) -> CloseRequest {
        CloseRequest {
            code,
            reason: reason.into(),
        }
    }
}

/// Errors of the channel.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChannelError {
    /// The message is over the configured maximum; nothing was sent.
    MessageTooLarge {
        /// Size of the message.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The channel has ended (or is closing); nothing was sent.
    Closed(Ended),
    /// Writing failed; the connection has been torn down.
    Io(io::Error),
    /// A write blocked longer than the write timeout: the peer is not reading. The
    /// connection has been torn down.
    WriteTimeout(Duration),
    /// The outbox would pass its limit: the peer is not reading. The connection has been
    /// torn down.
    OutboxFull {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A call to our own peer from its reader thread (an inline handler): its answer
    /// could only be read by the thread that would wait for it.
    OnReaderThread,
    /// A thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::MessageTooLarge { size, max } => write!(
                f,
                "message of {size} bytes is over the maximum of {max} bytes; nothing was sent \
                 (raise max_message_size on both ends, Kong's cluster_max_payload)"
            ),
            ChannelError::Closed(ended) => write!(f, "channel is closed: {ended}"),
            ChannelError::Io(_) => f.write_str("write failed, connection dropped"),
            ChannelError::WriteTimeout(after) => write!(
                f,
                "write timed out after {after:?}: the peer is not reading; connection dropped"
            ),
            ChannelError::OutboxFull { limit } => write!(
                f,
                "more than {limit} bytes wait to be written: the peer is not reading; \
                 connection dropped"
            ),
            ChannelError::OnReaderThread => f.write_str(
                "cannot wait for an answer on the connection's own reader thread (an inline \
                 handler): register the handler with Services::handle instead",
            ),
            ChannelError::Spawn(_) => f.write_str("could not start a thread"),
        }
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChannelError::Io(e) | ChannelError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// Receives what the reader thread reads. Runs on the reader thread: keep it quick and
/// hand long work to other threads.
pub trait MessageSink: Send + 'static {
    /// A whole binary message. Return `Err` to close the connection with that code.
    fn on_message(&mut self, message: Vec<u8>) -> Result<(), CloseRequest>;
    /// A text message arrived. Default: close with 1003 (wRPC is binary only).
    fn on_text(&mut self) -> Result<(), CloseRequest> {
        Err(CloseRequest {
            code: close_code::UNSUPPORTED_DATA,
            reason: "text frames are not accepted: wRPC uses binary messages".into(),
        })
    }
    /// A ping arrived; the answer says which pong to send. Default: echo its payload, as
    /// RFC 6455 asks (Kong's CP answers with an empty pong instead).
    fn on_ping(&mut self, _payload: &[u8]) -> Result<Pong, CloseRequest> {
        Ok(Pong::Echo)
    }
    /// A pong arrived. Default: nothing.
    fn on_pong(&mut self, _payload: &[u8]) {}
    /// The channel ended; called exactly once, last.
    fn on_end(&mut self, ended: &Ended);
}

struct Shared {
    tls: Mutex<rustls::Connection>,
    /// Frames and ciphertext waiting for the socket. Held only for CPU work (queueing,
    /// sealing, a non-blocking send), never across a wait on the network.
    outbox: Mutex<Outbox>,
    /// The socket, shared by the reader, the senders, the flusher and shutdown: one
    /// descriptor per connection (a CP with 10,000 DPs must stay under the open-file
    /// limit).
    sock: Arc<TcpStream>,
    role: Role,
    config: ChannelConfig,
    peer_addr: Option<SocketAddr>,
    ended: Mutex<Option<Ended>>,
    /// The close frame this end queued, once queued: no data frame may follow it. Kept
    /// out of the outbox lock so the reader can look at any time.
    closing: Mutex<Option<(u16, String)>>,
    /// Why this end tore the connection down (not reading, a write error), first reason
    /// only; the reader reports it as the end.
    dropped: Mutex<Option<String>>,
    broken: AtomicBool,
    /// The flusher, while one runs (joined when the connection ends).
    flusher_thread: Mutex<Option<JoinHandle<()>>>,
    /// Signalled (with the outbox lock) when the flusher has written bytes or the
    /// connection is torn down: for threads of the application that choose to wait for
    /// room ([`Channel::wait_for_room`]).
    room: Condvar,
    /// Disconnected once the reader has finished.
    done: Receiver<()>,
    reader_thread: OnceLock<ThreadId>,
    /// Senders waiting for the outbox lock. A sender that sees others waiting leaves its
    /// frame for the last one to send, so concurrent messages share records and system
    /// calls instead of paying one each.
    waiting: AtomicUsize,
    /// The reader is handling the frames of one read; what it sends meanwhile (inline
    /// handlers' answers, pongs) is sent once, when the batch is done.
    corked: AtomicBool,
    /// The reader queued frames while corked.
    corked_pending: AtomicBool,
    masks: Mutex<Masks>,
    /// Bytes of read buffers the reader held when it last waited for the socket (its
    /// socket buffer and the frame decoder's), for tests of what an idle connection costs.
    reader_buffers: AtomicUsize,
}

/// A handle for sending on and closing a channel. Cheap to clone; every clone is the same
/// connection.
#[derive(Clone)]
pub struct Channel {
    shared: Arc<Shared>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("label", &self.shared.config.label)
            .field("ended", &self.ended())
            .finish()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Channel {
    internal_fn! {
        /// Builds a channel over an established TLS session whose upgrade has completed.
        ///
        /// `leftover` holds plaintext bytes that arrived after the upgrade's HTTP head (they
        /// are the first WebSocket bytes, never lost). Returns the sending handle and the
        /// [`Reader`], which must be run (on this thread or a new one) for anything to be
        /// received.
        fn new(
            session: impl Into<rustls::Connection>,
            sock: TcpStream,
            leftover: Vec<u8>,
            role: Role,
            config: ChannelConfig,
        ) -> Result<(Channel, Reader), ChannelError> {
            sock.set_read_timeout(None).map_err(ChannelError::Io)?;
            let _ = sock.set_nodelay(true);
            let sock = Arc::new(sock);
            let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
            let shared = Arc::new(Shared {
                tls: Mutex::new(session.into()),
                outbox: Mutex::new(Outbox::new(config.effective_outbox_limit())),
                peer_addr: sock.peer_addr().ok(),
                sock: sock.clone(),
                role,
                config,
                ended: Mutex::new(None),
                closing: Mutex::new(None),
                dropped: Mutex::new(None),
                broken: AtomicBool::new(false),
                flusher_thread: Mutex::new(None),
                room: Condvar::new(),
                done: done_rx,
                reader_thread: OnceLock::new(),
                waiting: AtomicUsize::new(0),
                corked: AtomicBool::new(false),
                corked_pending: AtomicBool::new(false),
                masks: Mutex::new(Masks::default()),
                reader_buffers: AtomicUsize::new(0),
            });
            let channel = Channel { shared };
            let reader = Reader::new(channel.clone(), sock, leftover, role, done_tx);
            Ok((channel, reader))
        }
    }

    /// Sends one binary message, unfragmented, without waiting for the peer: the message
    /// goes into the outbox, and out at once if the socket takes it. `Ok` means queued;
    /// a peer that does not take it in time is dropped (see the module docs). Messages
    /// from concurrent senders never interleave.
    pub fn send(&self, message: &[u8]) -> Result<(), ChannelError> {
        self.send_parts(&[message])
    }

    /// Sends the concatenation of `parts` as one binary message, as [`send`](Self::send)
    /// does.
    pub fn send_parts(&self, parts: &[&[u8]]) -> Result<(), ChannelError> {
        let size: usize = parts.iter().map(|p| p.len()).sum();
        self.check_size(size)?;
        let frame = self.frame(OpCode::Data(Data::Binary), parts);
        self.enqueue(vec![Part::Owned(frame)], None, None)
    }

    /// Sends `head` followed by `body` as one binary message, as [`send`](Self::send)
    /// does, holding `body` by reference instead of copying it: a config shared by many
    /// connections is held once, and sealed for each only as its socket takes it.
    pub fn send_shared(&self, head: &[u8], body: Arc<[u8]>) -> Result<(), ChannelError> {
        self.send_shared_then(head, body, None)
    }

    /// [`send_shared`](Self::send_shared), running `on_written` once the message has been
    /// wholly written to the socket (`true`) or the connection ends first (`false`); on
    /// `Err` it never runs. It runs on whichever thread finished the write: keep it
    /// quick. The control plane paces its fan-out with it.
    pub(crate) fn send_shared_then(
        &self,
        head: &[u8],
        body: Arc<[u8]>,
        on_written: Option<Written>,
    ) -> Result<(), ChannelError> {
        self.check_size(head.len() + body.len())?;
        if self.shared.role == Role::Client {
            // Client frames are masked per connection: the body must be copied anyway.
            let frame = self.frame(OpCode::Data(Data::Binary), &[head, &body]);
            return self.enqueue(vec![Part::Owned(frame)], None, on_written);
        }
        let mut first = Vec::with_capacity(MAX_HEADER_LEN + head.len());
        write_header(
            &mut first,
            OpCode::Data(Data::Binary),
            head.len() + body.len(),
            None,
        );
        first.extend_from_slice(head);
        self.enqueue(
            vec![Part::Owned(first), Part::Shared(body)],
            None,
            on_written,
        )
    }

    /// Sends a ping with `payload` (at most 125 bytes, RFC 6455), as [`send`](Self::send)
    /// sends a message.
    pub fn send_ping(&self, payload: &[u8]) -> Result<(), ChannelError> {
        if payload.len() > 125 {
            return Err(ChannelError::MessageTooLarge {
                size: payload.len(),
                max: 125,
            });
        }
        let frame = self.frame(OpCode::Control(Control::Ping), &[payload]);
        self.enqueue(vec![Part::Owned(frame)], None, None)
    }

    /// Starts the close handshake with `code` and `reason`, then waits (at most the close
    /// timeout) for the reader to finish; past that the socket is shut down. Closing an
    /// ended channel does nothing. Called from the reader thread itself, it does not wait.
    /// Threads that must not wait use [`start_close`](Self::start_close).
    pub fn close(&self, code: u16, reason: &str) {
        self.send_close(code, reason);
        if self.on_reader_thread() {
            return;
        }
        if !self.wait_timeout(self.shared.config.close_timeout) {
            log::debug!(
                "{}: no close reply in time; shutting the socket down",
                self.label()
            );
            self.abort();
            self.wait_timeout(self.shared.config.close_timeout);
        }
    }

    /// Queues the close frame and returns at once: the caller arranges the
    /// [`abort`](Self::abort) if the peer has not answered by
    /// [`close_timeout`](Self::close_timeout).
    pub fn start_close(&self, code: u16, reason: &str) {
        self.send_close(code, reason);
        // The reader's next wait for bytes is bounded by the close timeout (a wait already
        // under way is not: hence the abort the caller arranges).
        let timeout = self
            .shared
            .config
            .close_timeout
            .max(Duration::from_millis(1));
        let _ = self.shared.sock.set_read_timeout(Some(timeout));
    }

    /// Tears the connection down at once, without a close handshake. The reader ends with
    /// [`Ended::Failed`] unless it had already ended.
    pub fn abort(&self) {
        self.shared.broken.store(true, Ordering::SeqCst);
        let _ = self.shared.sock.shutdown(std::net::Shutdown::Both);
        self.shared.room.notify_all();
    }

    /// How the channel ended, or `None` while it is open.
    pub fn ended(&self) -> Option<Ended> {
        lock(&self.shared.ended).clone()
    }

    /// Blocks until the reader has finished; returns how the channel ended.
    pub fn wait(&self) -> Ended {
        let _ = self.shared.done.recv();
        self.ended().unwrap_or(Ended::Failed {
            reason: "reader never ran".into(),
        })
    }

    /// Waits at most `timeout` for the reader to finish; true if it did.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Instant::now() + timeout)
    }

    /// Waits until `deadline` at most for the reader to finish; true if it did.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        !matches!(
            self.shared.done.recv_deadline(deadline),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        )
    }

    /// The peer's socket address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.peer_addr
    }

    /// The label given in the config (for logs).
    pub fn label(&self) -> &str {
        &self.shared.config.label
    }

    /// The configured maximum message size.
    pub fn max_message_size(&self) -> usize {
        self.shared.config.max_message_size
    }

    /// How long the peer has to answer our close frame.
    pub fn close_timeout(&self) -> Duration {
        self.shared.config.close_timeout
    }

    /// Bytes waiting to be written to the peer.
    pub fn backlog(&self) -> usize {
        lock(&self.shared.outbox).backlog()
    }

    /// Waits while more than `bytes` wait to be written, rechecking `stop` now and then;
    /// false if `stop` said so (or the connection was torn down) first. For a reader
    /// that pauses a peer which does not read its answers.
    pub(crate) fn wait_backlog_below(&self, bytes: usize, stop: impl Fn() -> bool) -> bool {
        let mut ob = lock(&self.shared.outbox);
        while ob.backlog() > bytes {
            if stop() || self.is_broken() {
                return false;
            }
            ob = match self
                .shared
                .room
                .wait_timeout(ob, Duration::from_millis(250))
            {
                Ok((ob, _)) => ob,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// Waits until a message of `bytes` fits in the outbox, at most until `deadline`:
    /// for a thread of the application that sends a long run of messages and would rather
    /// wait for the peer than have it dropped as not reading. The library's own threads
    /// never call it. `Ok` when there is room; the channel's end if it ends meanwhile;
    /// [`ChannelError::WriteTimeout`] at the deadline.
    pub fn wait_for_room(&self, bytes: usize, deadline: Instant) -> Result<(), ChannelError> {
        let limit = self.shared.config.effective_outbox_limit();
        let mut ob = lock(&self.shared.outbox);
        loop {
            if self.is_broken() {
                return Err(ChannelError::Closed(Ended::Failed {
                    reason: self.drop_reason(),
                }));
            }
            if let Some(ended) = self.ended() {
                return Err(ChannelError::Closed(ended));
            }
            if ob.backlog() + bytes <= limit {
                return Ok(());
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(ChannelError::WriteTimeout(Duration::ZERO));
            };
            ob = match self.shared.room.wait_timeout(ob, left) {
                Ok((ob, _)) => ob,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    internal_fn! {
        /// Bytes of read buffers the reader held when it last waited for the socket: its
        /// socket buffer and the frame decoder's. 0 before the reader first waits.
        fn reader_buffers(&self) -> usize {
            self.shared.reader_buffers.load(Ordering::Relaxed)
        }
    }

    /// Whether the calling thread is this channel's reader.
    pub fn on_reader_thread(&self) -> bool {
        self.shared.reader_thread.get() == Some(&std::thread::current().id())
    }

    fn check_size(&self, size: usize) -> Result<(), ChannelError> {
        let max = self.shared.config.max_message_size;
        if size > max {
            return Err(ChannelError::MessageTooLarge { size, max });
        }
        Ok(())
    }

    /// One whole frame as bytes: its header and its payload, masked for a client.
    fn frame(&self, opcode: OpCode, parts: &[&[u8]]) -> Vec<u8> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mask = match self.shared.role {
            Role::Client => Some(lock(&self.shared.masks).next()),
            Role::Server => None,
        };
        let mut out = Vec::with_capacity(MAX_HEADER_LEN + len);
        write_header(&mut out, opcode, len, mask);
        let start = out.len();
        for part in parts {
            out.extend_from_slice(part);
        }
        if let Some(mask) = mask {
            apply_mask(&mut out[start..], mask, 0);
        }
        out
    }

    /// Queues a frame and sends what the socket takes now, unless another thread is about
    /// to (a waiting sender, the corked reader, the flusher).
    fn enqueue(
        &self,
        parts: Vec<Part>,
        close: Option<(u16, String)>,
        on_written: Option<Written>,
    ) -> Result<(), ChannelError> {
        let shared = &self.shared;
        shared.waiting.fetch_add(1, Ordering::SeqCst);
        let mut ob = lock(&shared.outbox);
        shared.waiting.fetch_sub(1, Ordering::SeqCst);
        if let Some(ended) = self.ended() {
            return Err(ChannelError::Closed(ended));
        }
        if self.is_broken() {
            return Err(ChannelError::Closed(Ended::Failed {
                reason: self.drop_reason(),
            }));
        }
        let refused = {
            let mut closing = lock(&shared.closing);
            if close.is_some() && closing.is_none() {
                // Set under the outbox lock: no frame can be queued behind the close.
                *closing = close;
                None
            } else {
                closing.clone()
            }
        };
        if let Some((code, reason)) = refused {
            // Refused, but a sender that saw this one waiting may have left its frames
            // (the close frame among them) for this one to write.
            let _ = self.send_queued(ob);
            return Err(ChannelError::Closed(Ended::ClosedByUs { code, reason }));
        }
        let deadline = shared.config.write_timeout.map(|t| Instant::now() + t);
        if let Err(full) = ob.push_then(parts, deadline, on_written) {
            drop(ob);
            self.drop_connection(format!(
                "the peer is not reading: more than {} bytes wait to be written to it",
                full.limit
            ));
            return Err(ChannelError::OutboxFull { limit: full.limit });
        }
        self.send_queued(ob)
    }

    /// Sends what the outbox holds, unless another thread is about to: the corked reader
    /// (when this is the reader), a sender waiting for the outbox (it sends for both),
    /// or the flusher.
    fn send_queued(&self, mut ob: MutexGuard<'_, Outbox>) -> Result<(), ChannelError> {
        let shared = &self.shared;
        if shared.corked.load(Ordering::SeqCst) && self.on_reader_thread() {
            shared.corked_pending.store(true, Ordering::SeqCst);
            return Ok(());
        }
        if ob.flusher || shared.waiting.load(Ordering::SeqCst) > 0 {
            return Ok(());
        }
        let result = self.pump_locked(&mut ob);
        self.run_written(ob);
        result
    }

    /// Lets go of the outbox, then runs the callbacks of the messages written meanwhile.
    fn run_written(&self, mut ob: MutexGuard<'_, Outbox>) {
        let done = ob.take_written();
        drop(ob);
        for f in done {
            f(true);
        }
    }

    /// Sends what the socket takes; starts the flusher for the rest. Called with the
    /// outbox locked and no flusher running.
    fn pump_locked(&self, ob: &mut Outbox) -> Result<(), ChannelError> {
        match pump(ob, &self.shared.tls, &self.shared.sock) {
            Ok(Pumped::Drained) => Ok(()),
            Ok(Pumped::Backlog) => {
                ob.flusher = true;
                if let Err(e) = spawn_flusher(self) {
                    ob.flusher = false;
                    self.drop_connection(format!("could not start a flusher thread: {e}"));
                    return Err(ChannelError::Spawn(e));
                }
                Ok(())
            }
            Err(e) => {
                let err = ChannelError::Io(e);
                self.drop_connection(format!("write failed: {err}"));
                Err(err)
            }
        }
    }

    /// Queues a close frame once; later calls and calls after the end do nothing.
    fn send_close(&self, code: u16, reason: &str) {
        // What goes on the wire, and so what the end reports.
        let code = frame::sendable_close_code(code);
        let payload = close_payload(code, reason);
        let frame = self.frame(OpCode::Control(Control::Close), &[&payload]);
        match self.enqueue(
            vec![Part::Owned(frame)],
            Some((code, reason.to_string())),
            None,
        ) {
            Ok(()) | Err(ChannelError::Closed(_)) => {}
            Err(e) => log::debug!("{}: could not send the close frame: {e}", self.label()),
        }
    }

    /// Answers a ping (through the outbox, like any frame: the reader never waits).
    fn send_pong(&self, payload: &[u8]) {
        if self.close_sent().is_some() {
            return;
        }
        let frame = self.frame(OpCode::Control(Control::Pong), &[payload]);
        let _ = self.enqueue(vec![Part::Owned(frame)], None, None);
    }

    /// Queues what TLS produced on its own while reading (alerts, key updates) and sends
    /// it like any frame.
    fn flush_tls(&self) -> Result<(), ChannelError> {
        let mut ob = lock(&self.shared.outbox);
        if self.is_broken() {
            return Ok(());
        }
        {
            let mut tls = lock(&self.shared.tls);
            ob.drain_tls(&mut *tls).map_err(ChannelError::Io)?;
        }
        if ob.flusher || self.shared.corked.load(Ordering::SeqCst) {
            return Ok(());
        }
        let result = self.pump_locked(&mut ob);
        self.run_written(ob);
        result
    }

    /// Called by the reader around the frames of one read.
    fn cork(&self) {
        self.shared.corked.store(true, Ordering::SeqCst);
    }

    /// Ends the reader's batch and sends what it queued meanwhile.
    fn uncork(&self) -> Result<(), ChannelError> {
        self.shared.corked.store(false, Ordering::SeqCst);
        if self.shared.corked_pending.swap(false, Ordering::SeqCst) {
            let mut ob = lock(&self.shared.outbox);
            if !ob.flusher && !self.is_broken() {
                let result = self.pump_locked(&mut ob);
                self.run_written(ob);
                return result;
            }
        }
        Ok(())
    }

    fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::SeqCst)
    }

    /// Torn down, or closing: nothing more will be read for the application.
    pub(crate) fn is_going(&self) -> bool {
        self.is_broken() || self.close_sent().is_some()
    }

    /// Tears the connection down because of this end's writes (the peer is not reading,
    /// a write failed); the first reason is logged once and becomes the channel's end.
    fn drop_connection(&self, reason: String) {
        {
            let mut dropped = lock(&self.shared.dropped);
            if dropped.is_some() {
                return;
            }
            log::warn!("{}: {reason}; dropping the connection", self.label());
            *dropped = Some(reason);
        }
        self.abort();
    }

    fn drop_reason(&self) -> String {
        lock(&self.shared.dropped)
            .clone()
            .unwrap_or_else(|| "the connection was aborted".into())
    }

    fn close_sent(&self) -> Option<(u16, String)> {
        lock(&self.shared.closing).clone()
    }

    /// Records the end, sends what is waiting and then close_notify if the socket takes
    /// them without waiting, shuts the socket down and joins the flusher.
    fn finish(&self, ended: &Ended) {
        *lock(&self.shared.ended) = Some(ended.clone());
        {
            let mut ob = lock(&self.shared.outbox);
            // close_notify must be the last record: only once nothing else waits (a
            // record after it would be data after the end of the TLS stream).
            let drained = !self.is_broken()
                && !ob.flusher
                && matches!(
                    pump(&mut ob, &self.shared.tls, &self.shared.sock),
                    Ok(Pumped::Drained)
                );
            if drained {
                let mut tls = lock(&self.shared.tls);
                tls.send_close_notify();
                let _ = ob.drain_tls(&mut *tls);
                drop(tls);
                let _ = pump(&mut ob, &self.shared.tls, &self.shared.sock);
            }
            self.shared.broken.store(true, Ordering::SeqCst);
            let written = ob.take_written();
            let failed = ob.fail_all();
            drop(ob);
            for f in written {
                f(true);
            }
            for f in failed {
                f(false);
            }
        }
        self.abort();
        let flusher = lock(&self.shared.flusher_thread).take();
        if let Some(t) = flusher {
            let _ = t.join();
        }
    }
}

/// Frame masks from the operating system's random source, fetched 64 at a time.
#[derive(Default)]
struct Masks {
    pool: Vec<u8>,
}

impl Masks {
    fn next(&mut self) -> [u8; 4] {
        if self.pool.len() < 4 {
            let mut fresh = vec![0u8; 256];
            crate::random::fill(&mut fresh);
            self.pool = fresh;
        }
        let at = self.pool.len() - 4;
        let mask = [
            self.pool[at],
            self.pool[at + 1],
            self.pool[at + 2],
            self.pool[at + 3],
        ];
        self.pool.truncate(at);
        mask
    }
}

/// A [`MessageSink`] that forwards everything into a crossbeam channel.
pub(crate) struct QueueSink(pub(crate) Sender<Incoming>);

impl MessageSink for QueueSink {
    fn on_message(&mut self, message: Vec<u8>) -> Result<(), CloseRequest> {
        let _ = self.0.send(Incoming::Message(message));
        Ok(())
    }

    fn on_end(&mut self, ended: &Ended) {
        let _ = self.0.send(Incoming::Ended(ended.clone()));
    }
}
