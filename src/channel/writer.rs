//! The sending half: frames a message, encrypts it under the TLS lock one record at a time,
//! and writes the ciphertext outside that lock (but inside the writer lock, so records go
//! out in the order they were sealed).

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use tungstenite::protocol::frame::coding::OpCode;

use super::frame::{apply_mask, write_header, Role, MAX_HEADER_LEN};
use super::lock;

/// Plaintext per TLS record: the most one record carries.
const RECORD: usize = 16 * 1024;

/// The state behind the writer lock.
pub(super) struct Writer {
    sock: Arc<TcpStream>,
    role: Role,
    out: Vec<u8>,
    scratch: Vec<u8>,
    masks: Masks,
    /// A write failed; the connection is unusable.
    pub(super) broken: bool,
}

impl Writer {
    pub(super) fn new(sock: Arc<TcpStream>, role: Role) -> Writer {
        Writer {
            sock,
            role,
            out: Vec::new(),
            scratch: Vec::new(),
            masks: Masks::default(),
            broken: false,
        }
    }

    /// Frames and encrypts one whole message, then writes everything sealed so far if
    /// `flush` (else it waits in `out` for the next flush: see `Channel::send`). On error
    /// the writer is marked broken.
    pub(super) fn write_frame(
        &mut self,
        tls: &Mutex<rustls::Connection>,
        opcode: OpCode,
        parts: &[&[u8]],
        flush: bool,
    ) -> io::Result<()> {
        let mut result = self.write_frame_inner(tls, opcode, parts);
        if flush && result.is_ok() {
            result = self.flush_out();
        }
        if result.is_err() {
            self.broken = true;
        }
        // Do not keep a big message's buffers around on an idle connection.
        if self.scratch.capacity() > 2 * RECORD + MAX_HEADER_LEN {
            self.scratch = Vec::new();
        }
        if self.out.is_empty() && self.out.capacity() > 4 * RECORD {
            self.out = Vec::new();
        }
        result
    }

    /// Writes everything sealed so far.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        let result = self.flush_out();
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn write_frame_inner(
        &mut self,
        tls: &Mutex<rustls::Connection>,
        opcode: OpCode,
        parts: &[&[u8]],
    ) -> io::Result<()> {
        let mask = match self.role {
            Role::Client => Some(self.masks.next()),
            Role::Server => None,
        };
        let total: usize = parts.iter().map(|p| p.len()).sum();
        self.scratch.clear();
        write_header(&mut self.scratch, opcode, total, mask);
        // Fill records of up to RECORD bytes from the parts in turn; the payload is copied
        // once, into the record being sealed.
        let mut offset = 0;
        let (mut part, mut within) = (0, 0);
        loop {
            while part < parts.len() && self.scratch.len() < RECORD {
                let rest = &parts[part][within..];
                let take = (RECORD - self.scratch.len()).min(rest.len());
                let start = self.scratch.len();
                self.scratch.extend_from_slice(&rest[..take]);
                if let Some(mask) = mask {
                    apply_mask(&mut self.scratch[start..], mask, offset);
                }
                offset += take;
                within += take;
                if within == parts[part].len() {
                    part += 1;
                    within = 0;
                }
            }
            self.seal_scratch(tls)?;
            if offset >= total {
                break;
            }
            self.scratch.clear();
        }
        Ok(())
    }

    /// Encrypts whatever rustls wants to send on its own (alerts, close_notify, key updates)
    /// and writes it.
    pub(super) fn flush_tls(&mut self, tls: &Mutex<rustls::Connection>) -> io::Result<()> {
        {
            let mut tls = lock(tls);
            while tls.wants_write() {
                tls.write_tls(&mut self.out)?;
            }
        }
        self.flush_out()
    }

    /// Sends TLS close_notify (best effort) and shuts the socket down.
    pub(super) fn finish(&mut self, tls: &Mutex<rustls::Connection>) {
        if !self.broken {
            lock(tls).send_close_notify();
            let _ = self.flush_tls(tls);
        }
        self.broken = true;
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    fn seal_scratch(&mut self, tls: &Mutex<rustls::Connection>) -> io::Result<()> {
        let mut tls = lock(tls);
        let mut rest = &self.scratch[..];
        while !rest.is_empty() {
            let n = tls.writer().write(rest)?;
            rest = &rest[n..];
            while tls.wants_write() {
                tls.write_tls(&mut self.out)?;
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS refused plaintext",
                ));
            }
        }
        drop(tls);
        // Large messages: write each record as it is sealed so memory stays small.
        if self.out.len() >= 4 * RECORD {
            self.flush_out()?;
        }
        Ok(())
    }

    fn flush_out(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = (&*self.sock).write_all(&self.out);
        self.out.clear();
        result
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
