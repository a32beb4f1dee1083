//! The outbox of one connection, without I/O: frames waiting to be sealed, ciphertext
//! waiting to be written, a byte limit over both, and the write deadline of every message.
//!
//! Senders push whole frames and return; whoever owns the writing (the sender on the fast
//! path, or the connection's flusher thread while a backlog lasts) seals records from the
//! front and hands the ciphertext to the socket. Records are filled from consecutive
//! frames, so many small messages share one record and one system call, and a big frame
//! is sealed a chunk at a time as the socket takes it: a config body shared by thousands
//! of connections ([`Part::Shared`]) is never copied or sealed ahead of the socket.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Instant;

/// Plaintext per TLS record: the most one record carries.
pub(crate) const RECORD: usize = 16 * 1024;

/// The most a TLS record adds to its plaintext: header, content type or explicit nonce,
/// and tag.
const RECORD_OVERHEAD: usize = 32;

/// Buffer capacity an idle connection keeps.
const KEEP: usize = 4 * 1024;

/// Plaintext sealed per step of a pump before the ciphertext is offered to the socket:
/// one system call for 16 records. On loopback each `send(2)` also delivers the bytes to
/// the peer's socket and wakes its reader on this thread's time, so fewer, bigger sends
/// cost both ends less (a 10,000-DP fan-out of 1 MiB spent 4 to 10% less CPU than with
/// 4 records per send).
pub(crate) const CHUNK: usize = 16 * RECORD;

/// Encrypts plaintext into records (rustls; an identity sealer in tests).
pub(crate) trait Seal {
    /// Seals all of `plaintext` and appends the records to `out`.
    fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> io::Result<()>;
    /// Appends what the TLS session wants to send on its own (alerts, close_notify, key
    /// updates) to `out`.
    fn drain(&mut self, out: &mut Vec<u8>) -> io::Result<()>;
}

impl Seal for rustls::Connection {
    fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        use std::io::Write;
        let mut rest = plaintext;
        while !rest.is_empty() {
            let n = self.writer().write(rest)?;
            rest = &rest[n..];
            self.drain(out)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS refused plaintext",
                ));
            }
        }
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        while self.wants_write() {
            self.write_tls(out)?;
        }
        Ok(())
    }
}

/// One piece of a frame's bytes.
#[derive(Debug)]
pub(crate) enum Part {
    /// Bytes of this frame alone (headers, masked payloads, small messages).
    Owned(Vec<u8>),
    /// A body shared with other connections, unmasked (server side only).
    Shared(Arc<[u8]>),
}

impl Part {
    fn bytes(&self) -> &[u8] {
        match self {
            Part::Owned(v) => v,
            Part::Shared(b) => b,
        }
    }
}

/// Run once a frame has been wholly written to the socket (`true`), or when the
/// connection ends before it was (`false`).
pub(crate) type Written = Box<dyn FnOnce(bool) + Send>;

/// A frame not yet wholly sealed.
struct Frame {
    parts: Vec<Part>,
    /// The part being sealed and how far into it.
    part: usize,
    within: usize,
    /// Bytes not yet sealed.
    left: usize,
    deadline: Option<Instant>,
    on_written: Option<Written>,
}

/// The frame would take the outbox over its limit: the peer is not reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow {
    /// The limit, in bytes.
    pub(crate) limit: usize,
}

/// A message sealed but not yet wholly written: where it ends in the ciphertext stream.
struct Mark {
    end: u64,
    deadline: Option<Instant>,
    on_written: Option<Written>,
}

/// The queue and the bookkeeping of one connection's writes.
pub(crate) struct Outbox {
    limit: usize,
    frames: VecDeque<Frame>,
    /// Bytes in `frames` not yet sealed.
    unsealed: usize,
    /// Ciphertext not yet handed to the socket: `sealed[sealed_at..]`.
    sealed: Vec<u8>,
    sealed_at: usize,
    /// Ciphertext taken by the flusher and not yet reported written.
    in_flight: usize,
    /// Where each sealed but unwritten message ends in the ciphertext stream, and its
    /// deadline: the oldest one is what the write timeout measures.
    marks: VecDeque<Mark>,
    /// Callbacks of messages written since the last [`take_written`](Self::take_written).
    written: Vec<Written>,
    sealed_total: u64,
    written_total: u64,
    scratch: Vec<u8>,
    /// A flusher thread owns the writing until the backlog is gone.
    pub(crate) flusher: bool,
}

impl Outbox {
    /// An empty outbox that holds at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Outbox {
        Outbox {
            limit,
            frames: VecDeque::new(),
            unsealed: 0,
            sealed: Vec::new(),
            sealed_at: 0,
            in_flight: 0,
            marks: VecDeque::new(),
            written: Vec::new(),
            sealed_total: 0,
            written_total: 0,
            scratch: Vec::new(),
            flusher: false,
        }
    }

    /// Bytes waiting: unsealed frames, sealed ciphertext not yet written, and what the
    /// flusher is writing.
    pub(crate) fn backlog(&self) -> usize {
        self.unsealed + (self.sealed.len() - self.sealed_at) + self.in_flight
    }

    /// True when nothing waits to be written.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.backlog() == 0
    }

    /// Queues one whole frame, to be written by `deadline`; refuses it when the backlog
    /// would pass the limit.
    #[cfg(test)]
    pub(crate) fn push(
        &mut self,
        parts: Vec<Part>,
        deadline: Option<Instant>,
    ) -> Result<(), Overflow> {
        self.push_then(parts, deadline, None)
    }

    /// [`push`](Self::push), with `on_written` to run once the frame is wholly written
    /// (see [`take_written`](Self::take_written)). On overflow it is dropped unrun.
    pub(crate) fn push_then(
        &mut self,
        parts: Vec<Part>,
        deadline: Option<Instant>,
        on_written: Option<Written>,
    ) -> Result<(), Overflow> {
        let len: usize = parts.iter().map(|p| p.bytes().len()).sum();
        if self.backlog() + len > self.limit {
            return Err(Overflow { limit: self.limit });
        }
        if len == 0 {
            if let Some(f) = on_written {
                self.written.push(f);
            }
            return Ok(());
        }
        self.unsealed += len;
        self.frames.push_back(Frame {
            parts,
            part: 0,
            within: 0,
            left: len,
            deadline,
            on_written,
        });
        Ok(())
    }

    /// The callbacks of the messages written since the last call: run them (with
    /// `true`) once the outbox lock is let go.
    pub(crate) fn take_written(&mut self) -> Vec<Written> {
        std::mem::take(&mut self.written)
    }

    /// The connection ended: every message not yet written is dropped, and the callbacks
    /// of those that have one are returned, to be run with `false`.
    pub(crate) fn fail_all(&mut self) -> Vec<Written> {
        let mut failed: Vec<Written> = self.marks.drain(..).filter_map(|m| m.on_written).collect();
        failed.extend(self.frames.drain(..).filter_map(|f| f.on_written));
        self.unsealed = 0;
        failed
    }

    /// When the oldest message not yet wholly written must be written by.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.marks.front() {
            Some(mark) => mark.deadline,
            None => self.frames.front().and_then(|f| f.deadline),
        }
    }

    /// Appends what TLS wants to send on its own to the unwritten ciphertext.
    pub(crate) fn drain_tls(&mut self, tls: &mut impl Seal) -> io::Result<()> {
        let before = self.sealed.len();
        tls.drain(&mut self.sealed)?;
        self.sealed_total += (self.sealed.len() - before) as u64;
        Ok(())
    }

    /// The unwritten ciphertext, sealing up to [`CHUNK`] more first if there is none.
    /// Empty when the backlog is gone (or all of it is with the flusher).
    pub(crate) fn unwritten(&mut self, tls: &mut impl Seal) -> io::Result<&[u8]> {
        if self.sealed_at == self.sealed.len() {
            self.sealed.clear();
            self.sealed_at = 0;
            if self.unsealed > RECORD {
                // Room for the chunk's records at once, not by doubling (each doubling
                // copies what was sealed so far).
                let plaintext = self.unsealed.min(CHUNK);
                self.sealed
                    .reserve(plaintext + plaintext.div_ceil(RECORD) * RECORD_OVERHEAD);
            }
            self.seal_some(tls, CHUNK)?;
        }
        Ok(&self.sealed[self.sealed_at..])
    }

    /// `n` bytes of [`unwritten`](Self::unwritten) reached the socket.
    pub(crate) fn wrote(&mut self, n: usize) {
        self.sealed_at += n;
        self.advance(n);
        if self.sealed_at == self.sealed.len() {
            self.sealed.clear();
            self.sealed_at = 0;
            self.trim();
        }
    }

    /// Hands the unwritten ciphertext (sealing more first if there is none) to the
    /// flusher, which writes it without the lock and reports with
    /// [`wrote_taken`](Self::wrote_taken). `None` when nothing is left.
    pub(crate) fn take(&mut self, tls: &mut impl Seal) -> io::Result<Option<Vec<u8>>> {
        if self.unwritten(tls)?.is_empty() {
            return Ok(None);
        }
        let chunk = if self.sealed_at == 0 {
            std::mem::take(&mut self.sealed)
        } else {
            let rest = self.sealed[self.sealed_at..].to_vec();
            self.sealed.clear();
            rest
        };
        self.sealed_at = 0;
        self.in_flight += chunk.len();
        Ok(Some(chunk))
    }

    /// `n` bytes the flusher took reached the socket.
    pub(crate) fn wrote_taken(&mut self, n: usize) {
        self.in_flight -= n.min(self.in_flight);
        self.advance(n);
        if self.backlog() == 0 {
            self.trim();
        }
    }

    fn advance(&mut self, n: usize) {
        self.written_total += n as u64;
        while self
            .marks
            .front()
            .is_some_and(|m| m.end <= self.written_total)
        {
            if let Some(f) = self.marks.pop_front().and_then(|m| m.on_written) {
                self.written.push(f);
            }
        }
    }

    /// Lets go of big buffers once they are empty: an idle connection keeps little.
    fn trim(&mut self) {
        // 10,000 connections each keeping a config push's 80 KiB of buffers would hold
        // 800 MB after the push: keep only what a small message needs.
        if self.sealed.capacity() > KEEP {
            self.sealed = Vec::new();
        }
        if self.scratch.capacity() > KEEP {
            self.scratch = Vec::new();
        }
        if self.frames.is_empty() && self.frames.capacity() > 64 {
            self.frames = VecDeque::new();
        }
    }

    /// Seals up to `budget` plaintext bytes from the front frames, a record at a time.
    /// True if anything was sealed.
    fn seal_some(&mut self, tls: &mut impl Seal, budget: usize) -> io::Result<bool> {
        let mut sealed_any = false;
        let mut budget = budget;
        while budget > 0 && !self.frames.is_empty() {
            let n = self.seal_record(tls, budget.min(RECORD))?;
            budget = budget.saturating_sub(n);
            sealed_any = true;
        }
        Ok(sealed_any)
    }

    /// Seals one record of up to `max` bytes, filled from consecutive frames; returns the
    /// plaintext bytes it took.
    fn seal_record(&mut self, tls: &mut impl Seal, max: usize) -> io::Result<usize> {
        let mut finished: Vec<(Option<Instant>, Option<Written>)> = Vec::new();
        let before = self.sealed.len();
        let front = self.frames.front().expect("seal_record needs a frame");
        let rest = &front.parts[front.part].bytes()[front.within..];
        let taken = if rest.len() >= max {
            // A big part: seal straight from it, no copy.
            tls.seal(&rest[..max], &mut self.sealed)?;
            let front = self.frames.front_mut().expect("checked");
            step(front, max);
            if front.left == 0 {
                if let Some(f) = self.frames.pop_front() {
                    finished.push((f.deadline, f.on_written));
                }
            }
            max
        } else {
            self.scratch.clear();
            while self.scratch.len() < max {
                let Some(frame) = self.frames.front_mut() else {
                    break;
                };
                let rest = &frame.parts[frame.part].bytes()[frame.within..];
                let take = rest.len().min(max - self.scratch.len());
                self.scratch.extend_from_slice(&rest[..take]);
                step(frame, take);
                if frame.left == 0 {
                    if let Some(f) = self.frames.pop_front() {
                        finished.push((f.deadline, f.on_written));
                    }
                }
            }
            tls.seal(&self.scratch, &mut self.sealed)?;
            self.scratch.len()
        };
        self.unsealed -= taken;
        self.sealed_total += (self.sealed.len() - before) as u64;
        for (deadline, on_written) in finished {
            self.marks.push_back(Mark {
                end: self.sealed_total,
                deadline,
                on_written,
            });
        }
        Ok(taken)
    }
}

/// Moves a frame's cursor `n` bytes on, into its next part when one is used up.
fn step(frame: &mut Frame, n: usize) {
    frame.within += n;
    frame.left -= n;
    while frame.part < frame.parts.len() && frame.within == frame.parts[frame.part].bytes().len() {
        frame.part += 1;
        frame.within = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Seals by copying, with a 1-byte record marker so record boundaries show.
    #[derive(Default)]
    struct Plain {
        records: usize,
        alert: Vec<u8>,
    }

    impl Seal for Plain {
        fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
            self.records += 1;
            out.push(b'|');
            out.extend_from_slice(plaintext);
            Ok(())
        }
        fn drain(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
            out.append(&mut self.alert);
            Ok(())
        }
    }

    fn owned(b: &[u8]) -> Vec<Part> {
        vec![Part::Owned(b.to_vec())]
    }

    /// Writes everything, `max` bytes per "system call"; returns what was written.
    fn write_all(ob: &mut Outbox, tls: &mut Plain, max: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        loop {
            let chunk = ob.unwritten(tls).unwrap();
            if chunk.is_empty() {
                return wire;
            }
            let n = chunk.len().min(max);
            wire.extend_from_slice(&chunk[..n]);
            ob.wrote(n);
        }
    }

    #[test]
    fn small_frames_share_one_record_in_order() {
        let mut ob = Outbox::new(1 << 20);
        let mut tls = Plain::default();
        for m in [&b"one"[..], b"two", b"three"] {
            ob.push(owned(m), None).unwrap();
        }
        assert_eq!(ob.backlog(), 11);
        assert_eq!(write_all(&mut ob, &mut tls, usize::MAX), b"|onetwothree");
        assert_eq!(tls.records, 1);
        assert!(ob.is_empty());
    }

    #[test]
    fn a_shared_body_is_sealed_a_chunk_at_a_time_as_the_socket_takes_it() {
        let mut ob = Outbox::new(4 << 20);
        let mut tls = Plain::default();
        let body: Arc<[u8]> = vec![7u8; 1 << 20].into();
        ob.push(
            vec![Part::Owned(b"head".to_vec()), Part::Shared(body)],
            None,
        )
        .unwrap();
        // One pump step seals at most a chunk: the rest stays plaintext, shared.
        let first = ob.unwritten(&mut tls).unwrap().len();
        assert!(
            first <= CHUNK + CHUNK / RECORD,
            "sealed {first} bytes ahead"
        );
        assert!(
            ob.unsealed >= (1 << 20) - CHUNK,
            "the rest is not sealed ahead"
        );
        let wire = write_all(&mut ob, &mut tls, 1000);
        let plain: Vec<u8> = wire.into_iter().filter(|&b| b != b'|').collect();
        assert_eq!(plain.len(), 4 + (1 << 20));
        assert_eq!(&plain[..4], b"head");
        assert!(ob.is_empty());
    }

    #[test]
    fn a_frame_over_the_limit_overflows_and_changes_nothing() {
        let mut ob = Outbox::new(10);
        ob.push(owned(b"123456"), None).unwrap();
        assert_eq!(ob.push(owned(b"12345"), None), Err(Overflow { limit: 10 }));
        assert_eq!(ob.backlog(), 6);
        ob.push(owned(b"1234"), None).unwrap();
        assert_eq!(ob.backlog(), 10);
    }

    #[test]
    fn the_deadline_is_the_oldest_unwritten_message() {
        let mut ob = Outbox::new(1 << 20);
        let mut tls = Plain::default();
        let t0 = Instant::now();
        let (d1, d2) = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2));
        assert_eq!(ob.deadline(), None);
        ob.push(owned(b"first"), Some(d1)).unwrap();
        ob.push(owned(b"second"), Some(d2)).unwrap();
        assert_eq!(ob.deadline(), Some(d1));
        // Sealed together: "|firstsecond". Writing up to the end of "first" finishes it.
        let n = ob.unwritten(&mut tls).unwrap().len();
        assert_eq!(n, 12);
        ob.wrote(6);
        assert_eq!(
            ob.deadline(),
            Some(d1),
            "the record holding both is not written"
        );
        ob.wrote(5);
        assert_eq!(ob.deadline(), Some(d1), "marks sit at record ends");
        ob.wrote(1);
        assert_eq!(ob.deadline(), None);
        assert!(ob.is_empty());
    }

    #[test]
    fn the_flusher_takes_chunks_and_new_frames_queue_behind_them() {
        let mut ob = Outbox::new(1 << 20);
        let mut tls = Plain::default();
        ob.push(owned(b"abc"), None).unwrap();
        let chunk = ob.take(&mut tls).unwrap().unwrap();
        assert_eq!(chunk, b"|abc");
        assert_eq!(ob.backlog(), 4, "taken bytes still count until written");
        ob.push(owned(b"def"), None).unwrap();
        tls.alert = b"!".to_vec();
        ob.drain_tls(&mut tls).unwrap();
        ob.wrote_taken(4);
        // The alert was produced before "def" was sealed, so it goes first.
        let next = ob.take(&mut tls).unwrap().unwrap();
        assert_eq!(next, b"!");
        ob.wrote_taken(next.len());
        let next = ob.take(&mut tls).unwrap().unwrap();
        assert_eq!(next, b"|def");
        ob.wrote_taken(next.len());
        assert!(ob.take(&mut tls).unwrap().is_none());
        assert!(ob.is_empty());
    }

    #[test]
    fn a_callback_runs_once_its_message_is_written_or_fails_at_the_end() {
        let mut ob = Outbox::new(1 << 20);
        let mut tls = Plain::default();
        let (tx, rx) = crossbeam_channel::unbounded();
        let cb = |n: u32| -> Option<Written> {
            let tx = tx.clone();
            Some(Box::new(move |ok| tx.send((n, ok)).unwrap()))
        };
        ob.push_then(owned(b"one"), None, cb(1)).unwrap();
        ob.push_then(owned(b"two"), None, cb(2)).unwrap();
        let n = ob.unwritten(&mut tls).unwrap().len();
        ob.wrote(n - 1);
        assert!(
            ob.take_written().is_empty(),
            "the record is not wholly written"
        );
        ob.wrote(1);
        for f in ob.take_written() {
            f(true);
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [(1, true), (2, true)]);
        ob.push_then(owned(b"three"), None, cb(3)).unwrap();
        let _ = ob.unwritten(&mut tls).unwrap();
        ob.push_then(owned(b"four"), None, cb(4)).unwrap();
        for f in ob.fail_all() {
            f(false);
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [(3, false), (4, false)]);
    }

    #[test]
    fn empty_frames_are_nothing_to_write() {
        let mut ob = Outbox::new(8);
        ob.push(vec![Part::Owned(Vec::new())], None).unwrap();
        assert!(ob.is_empty());
        assert!(ob.take(&mut Plain::default()).unwrap().is_none());
    }
}
