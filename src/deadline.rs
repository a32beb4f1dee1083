//! A socket whose reads and writes share one deadline: every phase before a connection is
//! authenticated and upgraded (TLS handshake, HTTP head, upgrade answer) runs on one.
//!
//! Before each read or write the socket's timeout is set to the time left, so a peer that
//! trickles bytes, one every few seconds, cannot stretch a phase past its deadline.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The time left before `deadline`, or a `TimedOut` error when none is.
pub(crate) fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the deadline has passed",
        ))
    } else {
        Ok(left)
    }
}

/// Sets both socket timeouts to the time left before `deadline`.
pub(crate) fn set_timeouts(sock: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = time_left(deadline)?;
    sock.set_read_timeout(Some(left))?;
    sock.set_write_timeout(Some(left))
}

/// A `TcpStream` bounded by a deadline.
#[derive(Debug)]
pub(crate) struct Timed {
    pub(crate) sock: TcpStream,
    pub(crate) deadline: Instant,
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock
            .set_read_timeout(Some(time_left(self.deadline)?))?;
        self.sock.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock
            .set_write_timeout(Some(time_left(self.deadline)?))?;
        self.sock.write(buf)
    }

    /// One `writev` for all of `bufs`: rustls hands a handshake flight over as one buffer
    /// per record (ServerHello, ChangeCipherSpec, the encrypted rest), and writing them
    /// one by one made a segment, a wake-up of the peer and a timeout call each.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.sock
            .set_write_timeout(Some(time_left(self.deadline)?))?;
        self.sock.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}
