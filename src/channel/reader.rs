//! The reading half: one thread per connection blocks on the raw socket, feeds the TLS
//! session under its lock, and decodes frames outside it.

use std::io::{self, BufRead, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::frame::{close_code, Decoder, Frame, Role};
use super::{lock, Channel, ChannelError, CloseRequest, Ended, MessageSink, Pong, QueueSink};

/// Bytes read from the socket per system call while bytes flow: a whole TLS record and
/// some.
const READ_CHUNK: usize = 16 * 1024 + 512;

/// The buffer an idle connection waits on. A connection spends nearly all its life
/// waiting for its next ping, so this is what each of thousands of idle connections
/// holds: small, yet big enough for a ping or a request with its TLS record (a read
/// that fills it is followed by reads of [`READ_CHUNK`] until the message is whole).
const IDLE_READ: usize = 1024;

/// Bytes read per system call while a read keeps filling [`READ_CHUNK`] (a big message
/// streaming in): each read is a system call, and on loopback each one also sends the
/// peer an ACK that makes its kernel send more on this thread's time. With 256 KiB
/// instead of 16.5 KiB (and the outbox's bigger sends) the data planes of the 10,000-DP
/// fan-out of 1 MiB spent a quarter less CPU.
const READ_BULK: usize = 256 * 1024;

/// Stack of a reader thread: it decrypts, decodes frames and runs the sink, none of which
/// recurses deeply. Small stacks keep thousands of connections cheap.
pub const READER_STACK_SIZE: usize = 256 * 1024;

/// What [`Reader::spawn_queue`] delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole binary message.
    Message(Vec<u8>),
    /// The channel ended; nothing follows.
    Ended(Ended),
}

/// The reading half of a channel. Run it with [`Reader::run`] on a thread of your own,
/// or [`Reader::spawn`] / [`Reader::spawn_queue`] on a new one.
pub struct Reader {
    channel: Channel,
    sock: Arc<TcpStream>,
    decoder: Decoder,
    leftover: Vec<u8>,
    /// The peer sent TLS close_notify: nothing more will come.
    tls_closed: bool,
    _done: Sender<()>,
}

impl Reader {
    pub(super) fn new(
        channel: Channel,
        sock: Arc<TcpStream>,
        leftover: Vec<u8>,
        role: Role,
        done: Sender<()>,
    ) -> Reader {
        let max = channel.shared.config.max_message_size;
        let mut decoder = Decoder::new(role, max);
        if !channel.shared.config.fragments {
            decoder = decoder.without_fragments();
        }
        Reader {
            channel,
            sock,
            decoder,
            leftover,
            tls_closed: false,
            _done: done,
        }
    }

    /// Starts a thread named `dpspec-reader-<label>` that runs the reader into `sink`.
    pub fn spawn(self, sink: impl MessageSink) -> Result<JoinHandle<()>, ChannelError> {
        let name = format!("dpspec-reader-{}", self.channel.label());
        std::thread::Builder::new()
            .name(name)
            .stack_size(READER_STACK_SIZE)
            .spawn(move || {
                self.run(sink);
            })
            .map_err(ChannelError::Spawn)
    }

    /// Starts the reader on a new thread and delivers messages into a channel of `bound`
    /// entries (the reader waits when it is full, which pushes back on the peer).
    pub fn spawn_queue(
        self,
        bound: usize,
    ) -> Result<(JoinHandle<()>, Receiver<Incoming>), ChannelError> {
        let (tx, rx) = crossbeam_channel::bounded(bound);
        let handle = self.spawn(QueueSink(tx))?;
        Ok((handle, rx))
    }

    /// Reads until the connection ends, handing each message to `sink`, then calls
    /// [`MessageSink::on_end`] and returns how it ended.
    pub fn run(mut self, mut sink: impl MessageSink) -> Ended {
        let _ = self
            .channel
            .shared
            .reader_thread
            .set(std::thread::current().id());
        let ended = self.read_loop(&mut sink);
        log::debug!("{}: channel ended: {ended}", self.channel.label());
        self.channel.finish(&ended);
        sink.on_end(&ended);
        ended
    }

    fn read_loop(&mut self, sink: &mut impl MessageSink) -> Ended {
        let leftover = std::mem::take(&mut self.leftover);
        self.decoder.buffer().extend_from_slice(&leftover);
        if let Err(ended) = self.feed(&[]) {
            return ended;
        }
        // After a framing violation the byte stream cannot be trusted: only wait for EOF.
        let mut desynced = false;
        let mut raw = ReadBuffer::default();
        // Whether the last read filled its buffer: more is probably waiting.
        let mut filled = false;
        loop {
            self.channel.cork();
            while !desynced {
                match self.decoder.next() {
                    Ok(Some(frame)) => {
                        if let Some(ended) = self.handle(frame, sink) {
                            return ended;
                        }
                    }
                    Ok(None) => break,
                    Err(violation) => {
                        log::warn!(
                            "{}: closing with {}: {}",
                            self.channel.label(),
                            violation.code,
                            violation.reason
                        );
                        self.start_close(violation.code, &violation.reason);
                        desynced = true;
                    }
                }
            }
            if let Err(e) = self.channel.uncork() {
                return Ended::Failed {
                    reason: format!("write failed: {e}"),
                };
            }
            if self.tls_closed {
                // Whatever the peer sent before its close_notify has been handled.
                return self.eof("the peer ended TLS (close_notify) without a close frame");
            }
            // Between messages with nothing more waiting: wait on small buffers.
            let idle = !filled && self.decoder.pending() == 0;
            if idle {
                self.decoder.shrink();
            }
            let buf = raw.get(idle, filled, self.decoder.missing());
            self.channel.shared.reader_buffers.store(
                buf.len() + self.decoder.reserved(),
                std::sync::atomic::Ordering::Relaxed,
            );
            match (&*self.sock).read(buf) {
                Ok(0) => return self.eof("the peer closed the connection without a close frame"),
                Ok(n) => {
                    filled = n == buf.len();
                    if let Err(ended) = self.feed(&buf[..n]) {
                        return ended;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return self.eof("no close reply from the peer in time");
                }
                Err(e) => return self.eof(&format!("read failed: {e}")),
            }
        }
    }

    /// Decides how a connection that stopped delivering bytes ended.
    fn eof(&self, what: &str) -> Ended {
        if let Some(reason) = lock(&self.channel.shared.dropped).clone() {
            return Ended::Failed { reason };
        }
        match self.channel.close_sent() {
            Some((code, reason)) => Ended::ClosedByUs { code, reason },
            None => Ended::Failed {
                reason: what.to_string(),
            },
        }
    }

    /// Feeds ciphertext to TLS under its lock and moves the plaintext into the decoder.
    fn feed(&mut self, mut data: &[u8]) -> Result<(), Ended> {
        let mut wants_write = false;
        {
            let mut tls = lock(&self.channel.shared.tls);
            loop {
                let mut stalled = false;
                if !data.is_empty() {
                    match tls.read_tls(&mut data) {
                        Ok(0) => stalled = true,
                        Ok(_) => {}
                        Err(e) => {
                            return Err(Ended::Failed {
                                reason: format!("TLS buffer: {e}"),
                            })
                        }
                    }
                }
                let state = match tls.process_new_packets() {
                    Ok(state) => state,
                    Err(e) => {
                        // Let rustls send its alert before the socket goes.
                        drop(tls);
                        let _ = self.channel.flush_tls();
                        return Err(Ended::Failed {
                            reason: format!("TLS error: {e}"),
                        });
                    }
                };
                let n = state.plaintext_bytes_to_read();
                if n > 0 {
                    // Straight from rustls's buffers into the decoder's: no zeroing first.
                    if let Err(e) = take_plaintext(&mut tls.reader(), self.decoder.buffer_for(n), n)
                    {
                        return Err(Ended::Failed {
                            reason: format!("TLS read: {e}"),
                        });
                    }
                }
                wants_write |= tls.wants_write();
                self.tls_closed |= state.peer_has_closed();
                if data.is_empty() {
                    break;
                }
                if stalled && n == 0 {
                    // rustls takes nothing more: the peer sent records after its
                    // close_notify. Looping here would spin; the stream is over.
                    let what = if state.peer_has_closed() {
                        "the peer sent data after its TLS close_notify"
                    } else {
                        "TLS took no more bytes"
                    };
                    return Err(Ended::Failed {
                        reason: what.to_string(),
                    });
                }
            }
        }
        if wants_write {
            if let Err(e) = self.channel.flush_tls() {
                return Err(Ended::Failed {
                    reason: format!("write failed: {e}"),
                });
            }
        }
        Ok(())
    }

    /// Acts on one frame; returns how the channel ended if this frame ended it.
    fn handle(&mut self, frame: Frame, sink: &mut impl MessageSink) -> Option<Ended> {
        match frame {
            Frame::Binary(message) => {
                if self.channel.close_sent().is_some() {
                    return None; // closing: data after our close frame is dropped
                }
                if let Err(CloseRequest { code, reason }) = sink.on_message(message) {
                    self.start_close(code, &reason);
                }
            }
            Frame::Text => {
                if self.channel.close_sent().is_some() {
                    return None;
                }
                if let Err(CloseRequest { code, reason }) = sink.on_text() {
                    log::warn!(
                        "{}: text frame received; closing with {code}",
                        self.channel.label()
                    );
                    self.start_close(code, &reason);
                }
            }
            Frame::Ping(payload) => match sink.on_ping(&payload) {
                Ok(Pong::Echo) => self.channel.send_pong(&payload),
                Ok(Pong::Empty) => self.channel.send_pong(&[]),
                Err(CloseRequest { code, reason }) => self.start_close(code, &reason),
            },
            Frame::Pong => sink.on_pong(&[]),
            Frame::Close(peer) => {
                if let Some((code, reason)) = self.channel.close_sent() {
                    return Some(Ended::ClosedByUs { code, reason });
                }
                let (code, reason) = match peer {
                    Some((code, reason)) => (Some(code), reason),
                    None => (None, String::new()),
                };
                // Echo the peer's code, as RFC 6455 asks; 1000 when it gave none. The
                // decoder passes only valid codes: an invalid one (or a 1-byte payload) is
                // a violation, answered with 1002 instead of an echo.
                self.channel
                    .send_close(code.unwrap_or(close_code::NORMAL), "");
                return Some(Ended::ClosedByPeer { code, reason });
            }
        }
        None
    }

    /// Sends our close frame from the reader thread and arms the close timeout on the
    /// socket this thread reads from.
    fn start_close(&mut self, code: u16, reason: &str) {
        self.channel.send_close(code, reason);
        let timeout = self.channel.shared.config.close_timeout;
        let _ = self
            .sock
            .set_read_timeout(Some(timeout.max(std::time::Duration::from_millis(1))));
    }
}

/// Appends the `n` plaintext bytes rustls holds to `buf`.
fn take_plaintext(tls: &mut impl BufRead, buf: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let mut left = n;
    while left > 0 {
        let chunk = tls.fill_buf()?;
        if chunk.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let take = chunk.len().min(left);
        buf.extend_from_slice(&chunk[..take]);
        tls.consume(take);
        left -= take;
    }
    Ok(())
}

/// The reader's socket buffer: [`IDLE_READ`] bytes while the connection is idle,
/// [`READ_CHUNK`] while bytes flow, grown (up to [`READ_BULK`]) when a read fills it in
/// the middle of a frame that needs more. The bigger ones are let go as soon as a message
/// is whole and nothing more waits, so an idle connection never holds them (and no timer
/// is needed to give them back), and only a connection receiving something big holds a
/// big one, only as big as what it is receiving (zeroing a buffer costs in proportion to
/// its size).
#[derive(Default)]
struct ReadBuffer(Vec<u8>);

impl ReadBuffer {
    /// The buffer for the next read: the small one when `idle`; else given whether the
    /// last read `filled` its buffer and how many bytes of the frame being received are
    /// `missing` (0 between frames).
    fn get(&mut self, idle: bool, filled: bool, missing: usize) -> &mut [u8] {
        let size = if idle {
            IDLE_READ
        } else if missing == 0 {
            READ_CHUNK
        } else if filled {
            // The rest of the frame with its TLS records' overhead (under 1%), at most
            // READ_BULK; never smaller than now, so reads that outrun the sender (and
            // return less) do not trade buffers back and forth.
            let rest = missing.saturating_add(missing / 128 + 512);
            rest.min(READ_BULK).max(self.0.len()).max(READ_CHUNK)
        } else {
            self.0.len().max(READ_CHUNK)
        };
        if self.0.len() != size {
            // A fresh buffer rather than a resize: shrinking in place keeps the memory.
            self.0 = vec![0u8; size];
        }
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_buffer_grows_for_a_big_frame_only_and_shrinks_once_it_is_whole() {
        let mut raw = ReadBuffer::default();
        assert_eq!(raw.get(true, false, 0).len(), IDLE_READ);
        // Bytes flow between frames (the last read filled its buffer): the usual size.
        assert_eq!(raw.get(false, true, 0).len(), READ_CHUNK);
        // A filled read of a small frame: no growth past what it needs.
        assert_eq!(raw.get(false, true, 10_000).len(), READ_CHUNK);
        // A filled read with 100 KiB to come: room for them, not more.
        let mid = raw.get(false, true, 100 * 1024).len();
        assert!((100 * 1024..=READ_BULK).contains(&mid), "{mid}");
        // More to come than READ_BULK: READ_BULK; then kept while the frame lasts, even
        // when reads return less or little is left.
        assert_eq!(raw.get(false, true, 1 << 20).len(), READ_BULK);
        assert_eq!(raw.get(false, false, 300 * 1024).len(), READ_BULK);
        assert_eq!(raw.get(false, true, 1000).len(), READ_BULK);
        // The frame is whole and nothing waits: back to the idle buffer.
        assert_eq!(raw.get(true, false, 0).len(), IDLE_READ);
    }
}
