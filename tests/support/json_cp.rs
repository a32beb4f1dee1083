//! A scripted control plane for Kong's JSON protocol (`/v1/outlet`), for testing the data
//! plane: a listener on 127.0.0.1:0 with Kong's shared-mode TLS that answers
//! `HEAD /v1/wrpc` with the scripted status (404, as Kong 3.2+), upgrades `/v1/outlet`
//! the way Kong's CP does (101, no subprotocol), writes the scripted raw bytes after the
//! 101, and hands each connection to the test: everything the DP sends arrives, in
//! order, on one receiver; the test writes what it likes.
//!
//! Built from raw sockets, rustls and our `Channel` only, not from the crate's CP, so a
//! bug there cannot hide one in the DP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use dpspec::channel::{Channel, ChannelConfig, CloseRequest, Ended, MessageSink, Pong, Role};
use dpspec::http::{read_request_head, HttpLimits};
use dpspec::tls::{ClientAuth, Identity, ServerTls, TrustMode};
use rustls::StreamOwned;

use super::certs::{kong_shared, Pem};

pub const PATIENCE: Duration = Duration::from_secs(10);
pub const CP_ID: &str = "3f1c2b8e-5b2a-4d6e-9a1b-0c0ffee0cafe";

/// What the DP sent, in the order it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromDp {
    Binary(Vec<u8>),
    Text,
    /// A ping, its payload as text.
    Ping(String),
    Pong,
    Ended(Ended),
}

/// How the scripted CP behaves.
#[derive(Clone, Debug)]
pub struct Script {
    /// The answer to `HEAD /v1/wrpc`.
    pub head_status: u16,
    /// Raw bytes (WebSocket frames, or garbage) written right after the 101.
    pub after_101: Vec<u8>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            head_status: 404,
            after_101: Vec::new(),
        }
    }
}

/// One upgraded DP connection as the CP sees it.
pub struct JsonConn {
    pub channel: Channel,
    /// The upgrade request's head, as received.
    pub request: String,
    pub from_dp: Receiver<FromDp>,
}

impl JsonConn {
    pub fn next(&self) -> FromDp {
        self.from_dp
            .recv_timeout(PATIENCE)
            .expect("something from the DP in time")
    }

    /// The next ping, skipping pongs.
    pub fn next_ping(&self) -> String {
        loop {
            match self.next() {
                FromDp::Ping(p) => return p,
                FromDp::Pong => {}
                other => panic!("expected a ping, got {other:?}"),
            }
        }
    }

    /// Sends a binary frame.
    pub fn send(&self, frame: &[u8]) {
        self.channel.send(frame).expect("queued");
    }

    /// Pings the DP and waits for its pong: everything sent before has been read by
    /// the DP's reader once this returns. Pings from the DP meanwhile are skipped.
    pub fn sync(&self) {
        self.channel.send_ping(b"sync").unwrap();
        loop {
            match self.next() {
                FromDp::Pong => return,
                FromDp::Ping(_) => {}
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    }

    /// Waits for the end of the connection, skipping pings and pongs.
    pub fn ended(&self) -> Ended {
        loop {
            match self.next() {
                FromDp::Ended(e) => return e,
                FromDp::Ping(_) | FromDp::Pong => {}
                other => panic!("expected the end, got {other:?}"),
            }
        }
    }
}

struct Sink(Sender<FromDp>);

impl MessageSink for Sink {
    fn on_message(&mut self, message: Vec<u8>) -> Result<(), CloseRequest> {
        let _ = self.0.send(FromDp::Binary(message));
        Ok(())
    }
    fn on_text(&mut self) -> Result<(), CloseRequest> {
        let _ = self.0.send(FromDp::Text);
        Ok(())
    }
    fn on_ping(&mut self, payload: &[u8]) -> Result<Pong, CloseRequest> {
        let _ = self
            .0
            .send(FromDp::Ping(String::from_utf8_lossy(payload).into_owned()));
        // Kong's CP answers every ping with an empty pong.
        Ok(Pong::Empty)
    }
    fn on_pong(&mut self, _payload: &[u8]) {
        let _ = self.0.send(FromDp::Pong);
    }
    fn on_end(&mut self, ended: &Ended) {
        let _ = self.0.send(FromDp::Ended(ended.clone()));
    }
}

/// Records every byte read, so the test sees the request exactly as sent.
struct Recorder<'a, R> {
    inner: &'a mut R,
    seen: Vec<u8>,
}

impl<R: Read> Read for Recorder<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// The scripted JSON CP.
pub struct JsonCp {
    pub addr: SocketAddr,
    pub conns: Receiver<JsonConn>,
    /// The `HEAD /v1/wrpc` probes received, as request heads.
    pub probes: Receiver<String>,
    pub cert: Pem,
    stop: Arc<AtomicBool>,
    channels: Arc<Mutex<Vec<Channel>>>,
}

impl JsonCp {
    pub fn start(script: Script) -> JsonCp {
        let cert = kong_shared();
        let identity = Identity::from_pem(cert.cert.as_bytes(), cert.key.as_bytes()).unwrap();
        let tls = ServerTls::new(identity, ClientAuth::Shared(None)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (conn_tx, conns) = crossbeam_channel::unbounded();
        let (probe_tx, probes) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let channels = Arc::new(Mutex::new(Vec::new()));
        {
            let stop = stop.clone();
            let channels = channels.clone();
            std::thread::Builder::new()
                .name("json-cp-accept".into())
                .spawn(move || {
                    for sock in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(sock) = sock else { continue };
                        let (tls, script) = (tls.clone(), script.clone());
                        let (conn_tx, probe_tx) = (conn_tx.clone(), probe_tx.clone());
                        let channels = channels.clone();
                        std::thread::spawn(move || {
                            serve(sock, &tls, &script, &conn_tx, &probe_tx, &channels)
                        });
                    }
                })
                .unwrap();
        }
        JsonCp {
            addr,
            conns,
            probes,
            cert,
            stop,
            channels,
        }
    }

    pub fn next_conn(&self) -> JsonConn {
        self.conns
            .recv_timeout(PATIENCE)
            .expect("a DP connection in time")
    }

    /// The DP-side trust and identity for this CP's shared certificate.
    pub fn dp_trust(&self) -> (TrustMode, Identity) {
        (
            TrustMode::pinned_pem(self.cert.cert.as_bytes()).unwrap(),
            Identity::from_pem(self.cert.cert.as_bytes(), self.cert.key.as_bytes()).unwrap(),
        )
    }
}

impl Drop for JsonCp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        for c in self.channels.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

fn serve(
    sock: TcpStream,
    tls: &ServerTls,
    script: &Script,
    conns: &Sender<JsonConn>,
    probes: &Sender<String>,
    channels: &Mutex<Vec<Channel>>,
) {
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sock.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut sock = sock;
    let mut session = tls.session().unwrap();
    if dpspec::tls::server_handshake(&mut session, &mut sock).is_err() {
        return;
    }
    let mut stream = StreamOwned::new(session, sock);
    let mut rec = Recorder {
        inner: &mut stream,
        seen: Vec::new(),
    };
    let Ok((head, leftover)) = read_request_head(&mut rec, &HttpLimits::default()) else {
        return;
    };
    let raw = rec.seen[..rec.seen.len() - leftover.len()].to_vec();
    let request = String::from_utf8_lossy(&raw).into_owned();
    let path = head.target.split('?').next().unwrap_or("").to_string();
    if head.method == "HEAD" && path == "/v1/wrpc" {
        let _ = probes.send(request);
        let answer = format!(
            "HTTP/1.1 {} Scripted\r\nkong-node-id: {CP_ID}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            script.head_status
        );
        let _ = stream.write_all(answer.as_bytes());
        let _ = stream.flush();
        stream.conn.send_close_notify();
        let _ = stream.flush();
        return;
    }
    if head.method != "GET" || path != "/v1/outlet" {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let _ = stream.flush();
        return;
    }
    let key = head
        .header("sec-websocket-key")
        .map(|k| String::from_utf8_lossy(k).trim().to_string())
        .unwrap_or_default();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nkong-node-id: {CP_ID}\r\n\r\n"
    );
    let mut out = answer.into_bytes();
    out.extend_from_slice(&script.after_101);
    if stream
        .write_all(&out)
        .and_then(|()| stream.flush())
        .is_err()
    {
        return;
    }
    let StreamOwned { conn, sock } = stream;
    // Big enough to send the DP frames above its own limit.
    let cfg = ChannelConfig::default()
        .max_message_size(64 << 20)
        .label("json-cp");
    let (channel, reader) = Channel::new(conn, sock, leftover, Role::Server, cfg).unwrap();
    let (tx, from_dp) = crossbeam_channel::unbounded();
    channels.lock().unwrap().push(channel.clone());
    let _ = conns.send(JsonConn {
        channel,
        request,
        from_dp,
    });
    reader.run(Sink(tx));
}

/// A server-to-client WebSocket frame (unmasked, FIN set), as raw bytes.
pub fn raw_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}
