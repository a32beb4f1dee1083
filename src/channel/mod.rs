//! The full-duplex message channel: binary WebSocket messages over a TLS session, after the
//! upgrade.
//!
//! One reader thread blocks on the socket (no timeout polling: an idle connection costs no
//! wake-ups). It takes the TLS lock only to feed the bytes it received and take the
//! plaintext out. Any thread can [`Channel::send`]: it takes the writer lock, seals each
//! record under the TLS lock, and writes the ciphertext with the TLS lock released, so the
//! TLS lock is never held while waiting on the network.
//!
//! Kong never sends WebSocket pings and never answers them, so liveness never depends on
//! pongs here; pings from other peers are answered.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

pub mod frame;
mod reader;
mod writer;

pub use frame::{close_code, Role};
pub use reader::{Incoming, Reader};

use frame::close_payload;
use writer::Writer;

/// Kong's default `cluster_max_payload`: 4 MiB, in both directions.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Settings of one channel.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Largest message sent or accepted, in bytes. Default 4 MiB, Kong's
    /// `cluster_max_payload`; a bigger message is refused before sending and closes the
    /// connection with 1009 on receipt.
    pub max_message_size: usize,
    /// How long one write may block before the connection is declared dead. Default 10 s:
    /// a peer that stops reading must not hold a sender forever.
    pub write_timeout: Option<Duration>,
    /// How long to wait for the peer's close frame after sending ours. Default 5 s.
    pub close_timeout: Duration,
    /// A label for logs and thread names, usually the peer's address.
    pub label: String,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            write_timeout: Some(Duration::from_secs(10)),
            close_timeout: Duration::from_secs(5),
            label: String::from("peer"),
        }
    }
}

/// How and why a channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// What a [`MessageSink`] returns to have the connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// The close code to send.
    pub code: u16,
    /// The reason to send (cut to 123 bytes).
    pub reason: String,
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
            ChannelError::Io(e) => write!(f, "write failed, connection dropped: {e}"),
            ChannelError::WriteTimeout(after) => write!(
                f,
                "write timed out after {after:?}: the peer is not reading; connection dropped"
            ),
            ChannelError::Spawn(e) => write!(f, "could not start the reader thread: {e}"),
        }
    }
}

impl std::error::Error for ChannelError {}

/// Receives what the reader thread reads. Runs on the reader thread: keep it quick and
/// hand long work to other threads.
pub trait MessageSink: Send + 'static {
    /// A whole binary message. Return `Err` to close the connection with that code.
    fn on_message(&mut self, message: Vec<u8>) -> Result<(), CloseRequest>;
    /// The channel ended; called exactly once, last.
    fn on_end(&mut self, ended: &Ended);
}

struct Shared {
    tls: Mutex<rustls::Connection>,
    writer: Mutex<Writer>,
    /// The socket, shared by the reader, the writer and shutdown: one descriptor per
    /// connection (a CP with 10,000 DPs must stay under the open-file limit).
    sock: Arc<TcpStream>,
    config: ChannelConfig,
    peer_addr: Option<SocketAddr>,
    ended: Mutex<Option<Ended>>,
    /// The close frame this end sent, once sent: no data frame may follow it. Kept out of
    /// the writer lock so the reader can look without waiting on a blocked writer.
    closing: Mutex<Option<(u16, String)>>,
    /// Disconnected once the reader has finished.
    done: Receiver<()>,
    reader_thread: OnceLock<ThreadId>,
    /// Senders waiting for the writer lock. A sender that sees others waiting leaves its
    /// sealed records for the last one to write, so concurrent messages share system calls
    /// and TLS writes instead of paying one each.
    waiting: AtomicUsize,
    /// The reader is handling the frames of one read; what it sends meanwhile (inline
    /// handlers' answers) is written once, when the batch is done.
    corked: AtomicBool,
    /// The reader left sealed records unwritten while corked.
    corked_pending: AtomicBool,
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
    /// Builds a channel over an established TLS session whose upgrade has completed.
    ///
    /// `leftover` holds plaintext bytes that arrived after the upgrade's HTTP head (they
    /// are the first WebSocket bytes, never lost). Returns the sending handle and the
    /// [`Reader`], which must be run (on this thread or a new one) for anything to be
    /// received.
    pub fn new(
        session: impl Into<rustls::Connection>,
        sock: TcpStream,
        leftover: Vec<u8>,
        role: Role,
        config: ChannelConfig,
    ) -> Result<(Channel, Reader), ChannelError> {
        sock.set_read_timeout(None).map_err(ChannelError::Io)?;
        sock.set_write_timeout(config.write_timeout)
            .map_err(ChannelError::Io)?;
        let _ = sock.set_nodelay(true);
        let sock = Arc::new(sock);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let shared = Arc::new(Shared {
            tls: Mutex::new(session.into()),
            writer: Mutex::new(Writer::new(sock.clone(), role)),
            peer_addr: sock.peer_addr().ok(),
            sock: sock.clone(),
            config,
            ended: Mutex::new(None),
            closing: Mutex::new(None),
            done: done_rx,
            reader_thread: OnceLock::new(),
            waiting: AtomicUsize::new(0),
            corked: AtomicBool::new(false),
            corked_pending: AtomicBool::new(false),
        });
        let channel = Channel { shared };
        let reader = Reader::new(channel.clone(), sock, leftover, role, done_tx);
        Ok((channel, reader))
    }

    /// Sends one binary message, unfragmented. Blocks until it is written to the socket
    /// (at most the write timeout), or handed to a sender that is about to write: when
    /// several threads send at once, the last one writes what the others sealed in one
    /// system call. Messages from concurrent senders never interleave.
    pub fn send(&self, message: &[u8]) -> Result<(), ChannelError> {
        self.send_parts(&[message])
    }

    /// Sends the concatenation of `parts` as one binary message, as [`send`](Self::send)
    /// does, without first copying them together (a big shared body behind a small
    /// per-message head, say).
    pub fn send_parts(&self, parts: &[&[u8]]) -> Result<(), ChannelError> {
        let size: usize = parts.iter().map(|p| p.len()).sum();
        let max = self.shared.config.max_message_size;
        if size > max {
            return Err(ChannelError::MessageTooLarge { size, max });
        }
        let shared = &self.shared;
        shared.waiting.fetch_add(1, Ordering::SeqCst);
        let mut w = lock(&shared.writer);
        shared.waiting.fetch_sub(1, Ordering::SeqCst);
        if let Some(ended) = self.ended() {
            return Err(ChannelError::Closed(ended));
        }
        if let Some((code, reason)) = self.close_sent() {
            return Err(ChannelError::Closed(Ended::ClosedByUs { code, reason }));
        }
        if w.broken {
            return Err(ChannelError::Closed(Ended::Failed {
                reason: "a write failed".into(),
            }));
        }
        // Someone waiting for the lock will write our records with theirs; the reader
        // writes its batch when the batch is done.
        let corked = shared.corked.load(Ordering::SeqCst) && self.on_reader_thread();
        let flush = !corked && shared.waiting.load(Ordering::SeqCst) == 0;
        if corked {
            shared.corked_pending.store(true, Ordering::SeqCst);
        }
        match w.write_frame(&shared.tls, OpCode::Data(Data::Binary), parts, flush) {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(w);
                Err(self.write_failed(e))
            }
        }
    }

    /// Starts the close handshake with `code` and `reason`, then waits (at most the close
    /// timeout) for the reader to finish; past that the socket is shut down. Closing an
    /// ended channel does nothing. Called from the reader thread itself, it does not wait.
    pub fn close(&self, code: u16, reason: &str) {
        self.send_close(code, reason);
        if self.shared.reader_thread.get() == Some(&std::thread::current().id()) {
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

    /// Tears the connection down at once, without a close handshake. The reader ends with
    /// [`Ended::Failed`] unless it had already ended.
    pub fn abort(&self) {
        let _ = self.shared.sock.shutdown(std::net::Shutdown::Both);
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
        !matches!(
            self.shared.done.recv_timeout(timeout),
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

    /// Sends a close frame once; later calls and calls after the end do nothing.
    fn send_close(&self, code: u16, reason: &str) {
        let mut w = lock(&self.shared.writer);
        if w.broken || self.ended().is_some() {
            return;
        }
        {
            let mut closing = lock(&self.shared.closing);
            if closing.is_some() {
                return;
            }
            *closing = Some((code, reason.to_string()));
        }
        let payload = close_payload(code, reason);
        let frame = OpCode::Control(Control::Close);
        if let Err(e) = w.write_frame(&self.shared.tls, frame, &[&payload], true) {
            log::debug!("{}: could not send the close frame: {e}", self.label());
            drop(w);
            self.abort();
        }
    }

    /// Answers a ping, unless a sender holds the writer: the reader must never wait on a
    /// writer that may itself be waiting for this reader to drain the peer. A skipped pong
    /// is harmless (Kong never pings; RFC 6455 allows answering only the latest ping).
    fn send_pong(&self, payload: &[u8]) {
        let Ok(mut w) = self.shared.writer.try_lock() else {
            log::debug!("{}: writer busy, ping left unanswered", self.label());
            return;
        };
        if self.close_sent().is_some() || w.broken {
            return;
        }
        let _ = w.write_frame(
            &self.shared.tls,
            OpCode::Control(Control::Pong),
            &[payload],
            true,
        );
    }

    /// Writes what TLS produced on its own while reading (alerts, key updates). If a sender
    /// holds the writer, it writes these too with its next record.
    fn flush_tls(&self) -> io::Result<()> {
        match self.shared.writer.try_lock() {
            Ok(mut w) => w.flush_tls(&self.shared.tls),
            Err(_) => Ok(()),
        }
    }

    fn on_reader_thread(&self) -> bool {
        self.shared.reader_thread.get() == Some(&std::thread::current().id())
    }

    /// Called by the reader around the frames of one read.
    fn cork(&self) {
        self.shared.corked.store(true, Ordering::SeqCst);
    }

    /// Ends the reader's batch and writes what it sealed meanwhile.
    fn uncork(&self) -> Result<(), ChannelError> {
        self.shared.corked.store(false, Ordering::SeqCst);
        if self.shared.corked_pending.swap(false, Ordering::SeqCst) {
            let mut w = lock(&self.shared.writer);
            if !w.broken {
                let result = w.flush();
                drop(w);
                return result.map_err(|e| self.write_failed(e));
            }
        }
        Ok(())
    }

    /// A write failed: says why (a timeout means the peer is not reading), logs it once,
    /// and tears the connection down.
    fn write_failed(&self, e: io::Error) -> ChannelError {
        let err = match (e.kind(), self.shared.config.write_timeout) {
            (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, Some(after)) => {
                ChannelError::WriteTimeout(after)
            }
            _ => ChannelError::Io(e),
        };
        log::warn!("{}: {err}", self.label());
        self.abort();
        err
    }

    fn close_sent(&self) -> Option<(u16, String)> {
        lock(&self.shared.closing).clone()
    }

    /// Records the end, sends close_notify and shuts the socket down.
    fn finish(&self, ended: &Ended) {
        *lock(&self.shared.ended) = Some(ended.clone());
        lock(&self.shared.writer).finish(&self.shared.tls);
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
