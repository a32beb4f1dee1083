//! Peers that misbehave at the socket level, for the isolation tests: a raw wRPC client
//! that writes frames through its TLS session and never reads (or reads only a trickle),
//! a byte-by-byte trickler, and a log of every control plane event that a test can wait
//! on without losing events to the CP's bounded queue.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use dpspec::channel::frame::apply_mask;
use dpspec::cp::CpEvent;
use dpspec::http::NodeIdentity;
use dpspec::services::config::{PingCPRequest, ReportMetadataRequest};
use dpspec::services::negotiation::dp_request;
use dpspec::services::{NegotiateServices, PingCP, ReportMetadata};
use dpspec::tls::ClientTls;

use dpspec::upgrade::{dial, DialOptions, UpgradeTarget};
use dpspec::wrpc::envelope::{encode_envelope, PayloadV1};
use dpspec::wrpc::Rpc;

use crate::support::chaos::{client_frame, unix_now};

/// Every event a control plane emitted, kept by a thread that drains
/// `ControlPlane::events()` as fast as they come (PingCP events are only counted, so a
/// flood cannot grow the log). Waits scan the whole history, so no event is missed by
/// waiting for another first.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<(Mutex<Log>, Condvar)>,
}

#[derive(Default)]
struct Log {
    events: Vec<CpEvent>,
    pings: u64,
}

impl EventLog {
    /// Starts draining `rx` (the thread ends with the control plane).
    pub fn drain(rx: Receiver<CpEvent>) -> EventLog {
        let inner: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let log = inner.clone();
        std::thread::Builder::new()
            .name("test-events".into())
            .spawn(move || {
                for ev in rx.iter() {
                    let mut l = log.0.lock().unwrap_or_else(|e| e.into_inner());
                    match ev {
                        CpEvent::Ping { .. } => l.pings += 1,
                        ev => l.events.push(ev),
                    }
                    drop(l);
                    log.1.notify_all();
                }
            })
            .unwrap();
        EventLog { inner }
    }

    /// Waits until `pick` finds what it looks for in the history; panics after
    /// `patience` with `what` and the disconnections seen so far.
    pub fn wait<T>(
        &self,
        patience: Duration,
        what: &str,
        mut pick: impl FnMut(&[CpEvent]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + patience;
        let (lock, cv) = &*self.inner;
        let mut log = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(t) = pick(&log.events) {
                return t;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let ends: Vec<String> = log
                    .events
                    .iter()
                    .filter_map(|e| match e {
                        CpEvent::DpDisconnected {
                            node_id, reason, ..
                        } => Some(format!("{node_id}: {reason}")),
                        _ => None,
                    })
                    .collect();
                drop(log);
                panic!("waited {patience:?} for {what}; disconnections so far: {ends:#?}");
            }
            log = cv
                .wait_timeout(log, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for an event of `node_id` that `pick` maps to `Some`.
    pub fn wait_node<T>(
        &self,
        patience: Duration,
        node_id: &str,
        what: &str,
        mut pick: impl FnMut(&CpEvent) -> Option<T>,
    ) -> T {
        self.wait(patience, &format!("{what} of {node_id}"), |events| {
            events
                .iter()
                .filter(|e| event_node(e) == Some(node_id))
                .find_map(&mut pick)
        })
    }

    /// Why `node_id`'s connection ended, waiting at most `patience` for it.
    pub fn wait_disconnect(&self, patience: Duration, node_id: &str) -> String {
        self.wait_node(patience, node_id, "the disconnection", |e| match e {
            CpEvent::DpDisconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    }

    /// A copy of the history.
    pub fn snapshot(&self) -> Vec<CpEvent> {
        self.inner
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .clone()
    }

    /// The disconnections so far, as `(node_id, reason)`.
    pub fn disconnections(&self) -> Vec<(String, String)> {
        self.snapshot()
            .into_iter()
            .filter_map(|e| match e {
                CpEvent::DpDisconnected {
                    node_id, reason, ..
                } => Some((node_id, reason)),
                _ => None,
            })
            .collect()
    }
}

/// The node id an event is about (`None` for `Listening`).
pub fn event_node(e: &CpEvent) -> Option<&str> {
    match e {
        CpEvent::DpConnected { node_id, .. }
        | CpEvent::Negotiated { node_id, .. }
        | CpEvent::Metadata { node_id, .. }
        | CpEvent::ConfigPushed { node_id, .. }
        | CpEvent::ConfigSkipped { node_id, .. }
        | CpEvent::ConfigAcked { node_id, .. }
        | CpEvent::ConfigRejected { node_id, .. }
        | CpEvent::Ping { node_id, .. }
        | CpEvent::Incompatible { node_id, .. }
        | CpEvent::DpDisconnected { node_id, .. } => Some(node_id),
        _ => None,
    }
}

/// How a batch of bytes went to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// All of it is on the socket.
    Done,
    /// The socket did not take it all within the write timeout: the CP is not reading
    /// us (TCP pushes back). The rest stays in the TLS session for the next flush.
    PushedBack,
    /// The connection is gone (reset, closed): the CP dropped us.
    Broken,
}

/// An upgraded wRPC connection driven by hand: the test writes WebSocket frames through
/// the TLS session onto the socket, and nothing reads unless the test reads the socket
/// itself ([`RawConn::reading_half`]). What a peer that never reads looks like.
pub struct RawConn {
    pub node_id: String,
    pub session: rustls::ClientConnection,
    pub sock: TcpStream,
    seq: u32,
}

impl RawConn {
    /// Dials and upgrades as `node_id`. Writes block at most `write_timeout` before a
    /// flush reports [`Sent::PushedBack`].
    pub fn dial(
        addr: SocketAddr,
        tls: &ClientTls,
        node_id: &str,
        write_timeout: Duration,
    ) -> RawConn {
        let node = NodeIdentity::new(node_id, format!("host-{node_id}"), "3.1.0");
        let mut opts = DialOptions::new("127.0.0.1", addr.port(), tls.clone(), node);
        opts = opts.connect_timeout(Duration::from_secs(10));
        opts = opts.write_timeout(write_timeout);
        let d = dial(&opts, &UpgradeTarget::wrpc())
            .unwrap_or_else(|e| panic!("{node_id}: dial failed: {e}"));
        RawConn {
            node_id: node_id.into(),
            session: d.session,
            sock: d.sock,
            seq: 0,
        }
    }

    /// A request for `R` with the next seq and a deadline a minute away.
    pub fn request<R: Rpc>(&mut self, req: &R::Request) -> PayloadV1 {
        self.seq += 1;
        PayloadV1::request(
            R::SERVICE_ID,
            R::RPC_ID,
            self.seq,
            (unix_now() + 60) as u32,
            prost::Message::encode_to_vec(req),
        )
    }

    /// Frames `messages` (one binary frame each), seals them and writes what the socket
    /// takes within its write timeout.
    pub fn send(&mut self, messages: &[PayloadV1]) -> Sent {
        let mut frames = Vec::new();
        for m in messages {
            binary_frame(&mut frames, &encode_envelope(m));
        }
        if self.session.writer().write_all(&frames).is_err() {
            return Sent::Broken;
        }
        self.flush()
    }

    /// Writes what the TLS session holds.
    pub fn flush(&mut self) -> Sent {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Sent::PushedBack
                }
                Err(_) => return Sent::Broken,
            }
        }
        Sent::Done
    }

    /// Sends a whole batch, retrying while pushed back, until it is written, the
    /// connection breaks or `stop` is dropped.
    pub fn send_all(&mut self, messages: &[PayloadV1], stop: &Receiver<()>) -> Sent {
        let mut sent = self.send(messages);
        while sent == Sent::PushedBack {
            if stop.try_recv() == Err(TryRecvError::Disconnected) {
                return Sent::PushedBack;
            }
            sent = self.flush();
        }
        sent
    }

    /// NegotiateServices, then ReportMetadata, each confirmed by the CP's event (the
    /// answers are never read).
    pub fn negotiate_and_report(&mut self, events: &EventLog, patience: Duration) {
        let neg = self.request::<NegotiateServices>(&dp_request("3.1.0", "host"));
        assert_eq!(self.send(&[neg]), Sent::Done, "{}", self.node_id);
        events.wait_node(patience, &self.node_id, "negotiation", |e| match e {
            CpEvent::Negotiated { outcome, .. } => {
                assert!(outcome.is_ok(), "{outcome:?}");
                Some(())
            }
            _ => None,
        });
        let meta = self.request::<ReportMetadata>(&ReportMetadataRequest::default());
        assert_eq!(self.send(&[meta]), Sent::Done, "{}", self.node_id);
        events.wait_node(patience, &self.node_id, "ReportMetadata", |e| {
            matches!(e, CpEvent::Metadata { .. }).then_some(())
        });
    }

    /// A second handle on the socket, to read the raw (encrypted) bytes the CP sends.
    pub fn reading_half(&self) -> TcpStream {
        self.sock.try_clone().unwrap()
    }
}

/// Appends a masked client binary frame carrying `payload` to `out` (the payload is
/// masked word by word: a byte loop would cost the floods more than the CP spends).
fn binary_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let mask = [0x5a, 0xc3, 0x3c, 0xa5];
    let header = client_frame(2, &[], Some(payload.len() as u64));
    // `client_frame` ends the header with its own mask key: put ours there.
    out.extend_from_slice(&header[..header.len() - 4]);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// A PingCP with an invalid hash of `bytes` control characters, whose ERROR answer is
/// about [`HEAVY_ANSWER_RATIO`] times larger: the CP quotes the hash with `{:?}`, which
/// writes each `\u{1}` as six characters. This is how a flood makes the CP write
/// megabytes to a peer that reads nothing without sending megabytes itself. (If the CP
/// stops quoting invalid hashes, these floods must grow; the tests that use them check
/// that the attackers were in the end dropped as not reading, so they would say so.)
pub fn heavy_ping(conn: &mut RawConn, bytes: usize) -> PayloadV1 {
    conn.request::<PingCP>(&PingCPRequest {
        hash: "\u{1}".repeat(bytes),
    })
}

/// How much larger the answer to a [`heavy_ping`] is than its hash.
pub const HEAVY_ANSWER_RATIO: usize = 6;

/// Floods `conn` with heavy PingCPs (one ReportMetadata after every fourth), `batch`
/// bytes of hash each, until `budget` bytes of hash are written, the connection breaks
/// or `stop` is dropped. Returns how it ended and the bytes of hash written.
pub fn flood(
    conn: &mut RawConn,
    batch: usize,
    budget: usize,
    stop: &Receiver<()>,
) -> (Sent, usize) {
    let mut written = 0;
    let mut n = 0u64;
    while written < budget {
        if stop.try_recv() == Err(TryRecvError::Disconnected) {
            return (Sent::PushedBack, written);
        }
        let mut msgs = vec![heavy_ping(conn, batch)];
        n += 1;
        if n % 4 == 0 {
            msgs.push(conn.request::<ReportMetadata>(&ReportMetadataRequest::default()));
        }
        match conn.send_all(&msgs, stop) {
            Sent::Done => written += batch,
            other => return (other, written),
        }
    }
    (Sent::Done, written)
}

/// Reads `chunk` raw bytes from `sock` every `pause` until the connection ends or `stop`
/// is dropped: a peer that reads, but far too slowly.
pub fn read_slowly(mut sock: TcpStream, chunk: usize, pause: Duration, stop: Receiver<()>) {
    let mut buf = vec![0u8; chunk];
    sock.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    loop {
        if let Err(crossbeam_channel::RecvTimeoutError::Disconnected) = stop.recv_timeout(pause) {
            return;
        }
        match sock.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// Every `every`, reads up to `burst` raw bytes from `sock` (as fast as they come, until
/// `burst` or a pause of 50 ms), until the connection ends or `stop` is dropped: a peer
/// whose every read frees the sender well within a second, yet which takes many seconds
/// to read a message of many bursts.
pub fn read_in_bursts(mut sock: TcpStream, burst: usize, every: Duration, stop: Receiver<()>) {
    let mut buf = vec![0u8; 64 * 1024];
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    loop {
        if let Err(crossbeam_channel::RecvTimeoutError::Disconnected) = stop.recv_timeout(every) {
            return;
        }
        let mut got = 0;
        while got < burst {
            let want = (burst - got).min(buf.len());
            match sock.read(&mut buf[..want]) {
                Ok(0) => return,
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => return,
            }
        }
    }
}

/// How a trickle went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trickled {
    /// Bytes written before the peer was seen to close.
    pub sent: usize,
    /// Bytes there were to send.
    pub total: usize,
    /// The peer closed the connection (or reset it) while we were trickling.
    pub closed: bool,
}

/// Writes `bytes` to `sock` one at a time, `every` apart, watching for the peer to close
/// in between (the wait for that is the pause). Gives up, without the peer having closed,
/// after `budget` bytes.
pub fn trickle(sock: &mut TcpStream, bytes: &[u8], every: Duration, budget: usize) -> Trickled {
    sock.set_read_timeout(Some(every)).unwrap();
    let total = bytes.len();
    let mut sink = [0u8; 4096];
    for (i, b) in bytes.iter().take(budget).enumerate() {
        if sock.write_all(&[*b]).is_err() {
            return Trickled {
                sent: i,
                total,
                closed: true,
            };
        }
        match sock.read(&mut sink) {
            Ok(0) => {
                return Trickled {
                    sent: i + 1,
                    total,
                    closed: true,
                }
            }
            // An alert or an answer: the close, if any, follows.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                return Trickled {
                    sent: i + 1,
                    total,
                    closed: true,
                }
            }
        }
    }
    Trickled {
        sent: budget.min(total),
        total,
        closed: false,
    }
}
