//! Helpers for the hostile-peer, fault and leak tests: process gauges from /proc, a raw
//! wRPC data plane that writes whatever envelope the test wants, raw WebSocket frames,
//! and a TCP relay that can throttle, black-hole or cut its connections.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use dpspec::channel::{Channel, Ended, Incoming};
use dpspec::http::NodeIdentity;
use dpspec::services::config::ReportMetadataRequest;
use dpspec::services::negotiation::dp_request;
use dpspec::services::{NegotiateServices, ReportMetadata};
use dpspec::tls::ClientTls;

use dpspec::wrpc::envelope::{decode_envelope, encode_envelope, PayloadV1};
use dpspec::wrpc::Rpc;

use crate::support::cp_dp::dial_raw;

/// One field of /proc/self/status (the number before any unit).
fn proc_status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// The threads of this process now.
pub fn threads() -> usize {
    proc_status("Threads:") as usize
}

/// The resident memory of this process, in KiB.
pub fn rss_kib() -> u64 {
    proc_status("VmRSS:")
}

/// Waits until the thread count is at most `limit`; returns the last count seen (the
/// caller asserts it).
///
/// A poll, for want of an event: a connection's threads end just after the control
/// plane has announced its end (`DpDisconnected`, the log line), and nothing announces
/// the moment a thread is gone; `/proc` is the only witness.
pub fn wait_threads_at_most(limit: usize, patience: Duration) -> usize {
    let mut n = threads();
    crate::support::wait::until(patience, || {
        n = threads();
        n <= limit
    });
    n
}

/// Whole Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A data plane that writes raw envelopes and reads every message the CP sends, undecoded
/// by any peer: what a hostile or broken client looks like.
pub struct RawDp {
    pub channel: Channel,
    pub incoming: Receiver<Incoming>,
    pub node: NodeIdentity,
    _reader: JoinHandle<()>,
}

impl RawDp {
    pub fn connect(addr: SocketAddr, tls: &ClientTls, node_id: &str) -> RawDp {
        let node = NodeIdentity::new(node_id, format!("host-{node_id}"), "3.1.0");
        let (channel, reader) = dial_raw(addr, tls, &node).unwrap();
        let (handle, incoming) = reader.spawn_queue(4096).unwrap();
        RawDp {
            channel,
            incoming,
            node,
            _reader: handle,
        }
    }

    /// Sends one envelope.
    pub fn send(&self, p: &PayloadV1) {
        self.channel.send(&encode_envelope(p)).unwrap();
    }

    /// Sends raw bytes as one binary message (whatever they are).
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), dpspec::channel::ChannelError> {
        self.channel.send(bytes)
    }

    /// A request for `R` with `seq` and wire `deadline`.
    pub fn call<R: Rpc>(&self, seq: u32, deadline: u32, req: &R::Request) {
        let body = prost::Message::encode_to_vec(req);
        self.send(&PayloadV1::request(
            R::SERVICE_ID,
            R::RPC_ID,
            seq,
            deadline,
            body,
        ));
    }

    /// The next message, decoded, or how the channel ended.
    pub fn next(&self, patience: Duration) -> Result<PayloadV1, Ended> {
        match self.incoming.recv_timeout(patience) {
            Ok(Incoming::Message(bytes)) => Ok(decode_envelope(&bytes)
                .expect("the CP sent an envelope that does not decode")
                .payload
                .expect("the CP sent an envelope without payload")),
            Ok(Incoming::Ended(e)) => Err(e),
            Err(_) => panic!("{}: nothing came in {patience:?}", self.node.node_id),
        }
    }

    /// Waits for the end of the channel, skipping messages; returns how it ended.
    pub fn wait_end(&self, patience: Duration) -> Ended {
        let deadline = Instant::now() + patience;
        loop {
            match self.incoming.recv_deadline(deadline) {
                Ok(Incoming::Ended(e)) => return e,
                Ok(Incoming::Message(_)) => {}
                Err(_) => panic!("{}: the channel did not end", self.node.node_id),
            }
        }
    }

    /// NegotiateServices (seq 1) and ReportMetadata (seq 2), by hand, each answered.
    pub fn negotiate_and_report(&self) {
        let deadline = (unix_now() + 60) as u32;
        let req = dp_request("3.1.0", &self.node.hostname);
        self.call::<NegotiateServices>(1, deadline, &req);
        let answer = self.next(Duration::from_secs(5)).unwrap();
        assert_eq!(answer.ack, 1);
        self.call::<ReportMetadata>(2, deadline, &ReportMetadataRequest::default());
        let answer = self.next(Duration::from_secs(5)).unwrap();
        assert_eq!(answer.ack, 2);
    }
}

/// A client WebSocket frame (masked), with its length field set to `claimed` when given
/// (to lie about the size) and `payload` after it.
pub fn client_frame(opcode: u8, payload: &[u8], claimed: Option<u64>) -> Vec<u8> {
    let len = claimed.unwrap_or(payload.len() as u64);
    let mut out = vec![0x80 | opcode];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    let mask = [0x11, 0x22, 0x33, 0x44];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads server frames (unmasked) from `r` until a close frame; returns its code and
/// reason. `None` when the stream ends first.
pub fn read_close_frame(r: &mut impl Read) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Parse whole frames from the front of buf.
        while buf.len() >= 2 {
            let opcode = buf[0] & 0x0f;
            let (len, start) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < start + len {
                break;
            }
            let payload = buf[start..start + len].to_vec();
            buf.drain(..start + len);
            if opcode == 8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
            }
        }
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// What a relay connection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Forward,
    /// Neither read nor written again; the sockets stay open (a silent network).
    BlackHole,
    /// Both sockets shut down (a dead host's connection as its peer sees it).
    Cut,
}

struct RelayConn {
    fate: Mutex<Fate>,
    /// Notified when `fate` changes (a black-holed pump waits on it).
    fated: Condvar,
    client: TcpStream,
    upstream: TcpStream,
}

impl RelayConn {
    fn set_fate(&self, fate: Fate) {
        *self.fate.lock().unwrap() = fate;
        self.fated.notify_all();
        if fate == Fate::Cut {
            let _ = self.client.shutdown(Shutdown::Both);
            let _ = self.upstream.shutdown(Shutdown::Both);
        }
    }
}

/// A byte count that can be waited on.
#[derive(Default)]
pub struct Counter {
    bytes: AtomicU64,
    lock: Mutex<()>,
    grew: Condvar,
}

impl Counter {
    /// The bytes counted so far.
    pub fn get(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    fn add(&self, n: u64) {
        let _g = self.lock.lock().unwrap();
        self.bytes.fetch_add(n, Ordering::SeqCst);
        self.grew.notify_all();
    }

    /// Waits until at least `bytes` are counted; false if `patience` passes first (a
    /// liveness bound).
    pub fn wait_at_least(&self, bytes: u64, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let mut g = self.lock.lock().unwrap();
        while self.get() < bytes {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self.grew.wait_timeout(g, left).unwrap().0;
        }
        true
    }
}

/// A TCP relay on 127.0.0.1:0 to `target`: forwards bytes both ways, and on command
/// black-holes or cuts every connection it holds, or throttles what flows to the client.
/// Its pumps block on their sockets (or, black-holed, on their fate): nothing polls.
pub struct Relay {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<RelayConn>>>>,
    /// Black-holed connections, cut when the relay is dropped (their pumps end then).
    silenced: Mutex<Vec<Arc<RelayConn>>>,
    /// Bytes forwarded from the target to clients.
    pub down_bytes: Arc<Counter>,
    /// Chunk size and pause between chunks towards the client (0: unthrottled).
    throttle: Arc<(AtomicUsize, AtomicU64)>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<RelayConn>>>> = Arc::default();
        let down_bytes = Arc::new(Counter::default());
        let throttle = Arc::new((AtomicUsize::new(0), AtomicU64::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (c, d, t, s, a) = (
            conns.clone(),
            down_bytes.clone(),
            throttle.clone(),
            stop.clone(),
            accepted.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let conn = Arc::new(RelayConn {
                    fate: Mutex::new(Fate::Forward),
                    fated: Condvar::new(),
                    client,
                    upstream,
                });
                c.lock().unwrap().push(conn.clone());
                let up = conn.clone();
                std::thread::spawn(move || pump(&up, true, None, None));
                let (d, t) = (d.clone(), t.clone());
                std::thread::spawn(move || pump(&conn, false, Some(&d), Some(&t)));
            }
        });
        Relay {
            addr,
            conns,
            silenced: Mutex::default(),
            down_bytes,
            throttle,
            stop,
            accepted,
        }
    }

    /// How many connections were relayed so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Towards the client, at most `chunk` bytes per `pause`.
    pub fn throttle(&self, chunk: usize, pause: Duration) {
        self.throttle
            .1
            .store(pause.as_millis() as u64, Ordering::SeqCst);
        self.throttle.0.store(chunk, Ordering::SeqCst);
    }

    /// Every connection held now goes silent: nothing more is read or written on either
    /// side, nothing is closed. Later connections are forwarded normally.
    pub fn black_hole(&self) {
        let held: Vec<_> = self.conns.lock().unwrap().drain(..).collect();
        for c in &held {
            c.set_fate(Fate::BlackHole);
        }
        self.silenced.lock().unwrap().extend(held);
    }

    /// Every connection held now is shut down on both sides at once; bytes the relay has
    /// not forwarded yet are lost. Later connections are forwarded normally.
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.set_fate(Fate::Cut);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        self.cut();
        for c in self.silenced.lock().unwrap().drain(..) {
            c.set_fate(Fate::Cut);
        }
    }
}

/// Copies one direction: client to upstream when `up`, else upstream to client.
fn pump(
    conn: &RelayConn,
    up: bool,
    counter: Option<&Counter>,
    throttle: Option<&(AtomicUsize, AtomicU64)>,
) {
    let (mut from, mut to) = if up {
        (
            conn.client.try_clone().unwrap(),
            conn.upstream.try_clone().unwrap(),
        )
    } else {
        (
            conn.upstream.try_clone().unwrap(),
            conn.client.try_clone().unwrap(),
        )
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        {
            let mut fate = conn.fate.lock().unwrap();
            // A black hole holds the pump until the connection is cut (or the relay
            // dropped): the silence is the scenario, and nothing polls meanwhile.
            while *fate == Fate::BlackHole {
                fate = conn.fated.wait(fate).unwrap();
            }
            if *fate == Fate::Cut {
                return;
            }
        }
        let limit = throttle
            .map(|t| t.0.load(Ordering::SeqCst))
            .filter(|&c| c > 0)
            .unwrap_or(buf.len());
        // Blocks until bytes come, the peer closes, or a cut shuts the socket down.
        let read = from.read(&mut buf[..limit]);
        // The fate may have changed while reading: a black hole or a cut loses what was
        // read, and a black hole also swallows the end (a silent network passes no FIN).
        if *conn.fate.lock().unwrap() != Fate::Forward {
            continue;
        }
        let n = match read {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        };
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
        if let Some(c) = counter {
            c.add(n as u64);
        }
        if let Some(t) = throttle {
            let pause = t.1.load(Ordering::SeqCst);
            if pause > 0 {
                // The trickle is the scenario: a slow link, `chunk` bytes per `pause`.
                std::thread::sleep(Duration::from_millis(pause));
            }
        }
    }
}
