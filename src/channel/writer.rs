//! Moving the outbox to the socket: a non-blocking send on the sender's own thread (the
//! fast path: when the socket takes the bytes at once they go out at once), and a flusher
//! thread that exists only while a backlog does. The flusher is the one thread allowed to
//! wait on this connection's socket, and it waits at most until the oldest waiting
//! message's write deadline.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::outbox::Outbox;
use super::{lock, Channel};

/// Stack of a flusher thread: it seals records and writes them, nothing deeper.
const FLUSHER_STACK_SIZE: usize = 64 * 1024;

/// What a pump left behind.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pumped {
    /// Everything reached the socket.
    Drained,
    /// The socket would block: bytes wait in the outbox.
    Backlog,
}

/// Sends what the socket takes without blocking, sealing as it goes, until the outbox is
/// empty or the socket is full. Called with the outbox lock held and no flusher running.
pub(super) fn pump(
    ob: &mut Outbox,
    tls: &Mutex<rustls::Connection>,
    sock: &TcpStream,
) -> io::Result<Pumped> {
    loop {
        let chunk = {
            let mut tls = lock(tls);
            ob.unwritten(&mut *tls)?
        };
        if chunk.is_empty() {
            return Ok(Pumped::Drained);
        }
        match send_now(sock, chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the socket took no bytes",
                ))
            }
            Ok(n) => ob.wrote(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Pumped::Backlog),
            Err(e) => return Err(e),
        }
    }
}

/// One `send(2)` that never blocks, whatever the socket's mode (the reader keeps blocking
/// reads on the same descriptor), and never raises SIGPIPE.
#[cfg(unix)]
fn send_now(sock: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = libc::MSG_DONTWAIT;
    socket2::SockRef::from(sock).send_with_flags(buf, flags)
}

/// Without a per-call non-blocking flag, the fast path only reports a backlog and the
/// flusher writes everything.
#[cfg(not(unix))]
fn send_now(_sock: &TcpStream, _buf: &[u8]) -> io::Result<usize> {
    Err(io::ErrorKind::WouldBlock.into())
}

/// Starts the flusher of `channel` (the caller has set `flusher` under the outbox lock).
pub(super) fn spawn_flusher(channel: &Channel) -> io::Result<()> {
    let ch = channel.clone();
    let handle = std::thread::Builder::new()
        .name(format!("dpspec-flush-{}", channel.label()))
        .stack_size(FLUSHER_STACK_SIZE)
        .spawn(move || flush(&ch))?;
    // A previous flusher that has just let go of the backlog ends on its own.
    *lock(&channel.shared.flusher_thread) = Some(handle);
    Ok(())
}

/// The flusher: takes sealed chunks out of the outbox and writes them with blocking
/// writes bounded by the oldest message's deadline, until the backlog is gone.
fn flush(ch: &Channel) {
    let shared = &ch.shared;
    let write_timeout = shared.config.write_timeout;
    loop {
        let (chunk, mut deadline) = {
            let mut ob = lock(&shared.outbox);
            if ch.is_broken() {
                ob.flusher = false;
                return;
            }
            let taken = {
                let mut tls = lock(&shared.tls);
                ob.take(&mut *tls)
            };
            match taken {
                Ok(Some(chunk)) => (chunk, deadline_of(&ob, write_timeout)),
                Ok(None) => {
                    ob.flusher = false;
                    return;
                }
                Err(e) => {
                    ob.flusher = false;
                    drop(ob);
                    ch.drop_connection(format!("sealing failed: {e}"));
                    return;
                }
            }
        };
        let mut at = 0;
        while at < chunk.len() {
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left.max(Duration::from_millis(1))),
                    _ => {
                        let after = write_timeout.unwrap_or_default();
                        ch.drop_connection(format!(
                            "the peer is not reading: a message was not written within \
                             {after:?}"
                        ));
                        lock(&shared.outbox).flusher = false;
                        return;
                    }
                },
                None => None,
            };
            let written = shared
                .sock
                .set_write_timeout(left)
                .and_then(|()| (&*shared.sock).write(&chunk[at..]));
            match written {
                Ok(0) => {
                    ch.drop_connection("write failed: the socket took no bytes".into());
                    lock(&shared.outbox).flusher = false;
                    return;
                }
                Ok(n) => {
                    at += n;
                    let mut ob = lock(&shared.outbox);
                    ob.wrote_taken(n);
                    deadline = deadline_of(&ob, write_timeout);
                    shared.room.notify_all();
                    let done = ob.take_written();
                    drop(ob);
                    for f in done {
                        f(true);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => {
                    ch.drop_connection(format!("write failed: {e}"));
                    lock(&shared.outbox).flusher = false;
                    return;
                }
            }
        }
    }
}

/// The deadline of the oldest waiting message; bytes TLS produced on its own get a
/// fresh write timeout.
fn deadline_of(ob: &Outbox, write_timeout: Option<Duration>) -> Option<Instant> {
    ob.deadline()
        .or_else(|| write_timeout.map(|t| Instant::now() + t))
}
