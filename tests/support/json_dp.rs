//! A scripted `/v1/outlet` data plane for the control plane tests: real TLS on loopback,
//! the upgrade written by hand as Kong's data plane writes it, and WebSocket frames
//! written and read raw, so a test can send what a Kong node sends, or anything else.
//! Part of `tests/support`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use dpspec::http::{read_response_head, HttpLimits, ResponseHead};
use dpspec::outlet::encode_basic_info;
use dpspec::services::config::PluginVersion;
use dpspec::tls::ClientTls;
use rustls::StreamOwned;
use serde_json::Value;

use crate::support::cp_dp::PATIENCE;

/// WebSocket opcodes.
pub const TEXT: u8 = 1;
pub const BINARY: u8 = 2;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

type Stream = StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr` with nothing sent yet (reads wait at most [`PATIENCE`]).
pub fn tls_connect(addr: SocketAddr, tls: &ClientTls) -> Stream {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sock.set_write_timeout(Some(PATIENCE)).unwrap();
    let conn = tls.session("kong_clustering").unwrap();
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

/// Kong's `/v1/outlet` upgrade request for `node_id` at `version` (`extra` header lines
/// each ending in `\r\n`).
pub fn upgrade_request(
    method: &str,
    path: &str,
    node_id: &str,
    version: &str,
    extra: &str,
) -> Vec<u8> {
    format!(
        "{method} {path}?node_id={node_id}&node_hostname=host-{node_id}&node_version={version} \
         HTTP/1.1\r\nUpgrade: websocket\r\nHost: cp:8005\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Connection: Upgrade\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Sends `request` on a fresh connection and reads the answer's head.
pub fn ask(addr: SocketAddr, tls: &ClientTls, request: &[u8]) -> (ResponseHead, Stream) {
    let mut stream = tls_connect(addr, tls);
    stream.write_all(request).unwrap();
    stream.flush().unwrap();
    let (head, leftover) = read_response_head(&mut stream, &HttpLimits::default()).unwrap();
    assert!(
        leftover.is_empty() || head.status != 101,
        "frames before basic_info"
    );
    (head, stream)
}

/// One frame from the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// An upgraded `/v1/outlet` connection driven by the test.
pub struct JsonDp {
    pub node_id: String,
    pub head: ResponseHead,
    stream: Stream,
    buf: Vec<u8>,
}

impl JsonDp {
    /// Upgrades at `/v1/outlet` as `node_id` with Kong version `version`; panics unless
    /// the answer is `101`.
    pub fn connect(addr: SocketAddr, tls: &ClientTls, node_id: &str, version: &str) -> JsonDp {
        let req = upgrade_request("GET", "/v1/outlet", node_id, version, "");
        let (head, stream) = ask(addr, tls, &req);
        assert_eq!(head.status, 101, "{node_id}: {head:?}");
        JsonDp {
            node_id: node_id.into(),
            head,
            stream,
            buf: Vec::new(),
        }
    }

    /// [`JsonDp::connect`], then `basic_info` with `plugins` (name, version).
    pub fn ready(
        addr: SocketAddr,
        tls: &ClientTls,
        node_id: &str,
        version: &str,
        plugins: &[(&str, &str)],
    ) -> JsonDp {
        let mut dp = JsonDp::connect(addr, tls, node_id, version);
        dp.basic_info(plugins);
        dp
    }

    /// Sends `basic_info` as Kong's data plane does.
    pub fn basic_info(&mut self, plugins: &[(&str, &str)]) {
        let plugins: Vec<PluginVersion> = plugins
            .iter()
            .map(|(n, v)| PluginVersion {
                name: (*n).into(),
                version: (*v).into(),
            })
            .collect();
        self.send(BINARY, &encode_basic_info(&plugins, None));
    }

    /// Sends one whole masked frame.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_frame(true, opcode, payload, None);
    }

    /// Sends a masked frame, final or not, claiming `claimed` bytes (default: the payload's
    /// length). Write errors are ignored: the control plane may be gone already.
    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8], claimed: Option<u64>) {
        let mut frame = crate::support::chaos::client_frame(opcode, payload, claimed);
        if !fin {
            frame[0] &= 0x7f;
        }
        let _ = self
            .stream
            .write_all(&frame)
            .and_then(|()| self.stream.flush());
    }

    /// A ping with `payload` (the config hash, or anything).
    pub fn ping(&mut self, payload: &[u8]) {
        self.send(PING, payload);
    }

    /// The next frame, or `None` when the connection ends (or nothing comes in
    /// [`PATIENCE`]).
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// The next frame that is not a pong.
    pub fn next_data(&mut self) -> Option<Frame> {
        loop {
            match self.next_frame()? {
                f if f.opcode == PONG => continue,
                f => return Some(f),
            }
        }
    }

    /// The next `reconfigure`, inflated and parsed; panics on anything else.
    pub fn next_reconfigure(&mut self) -> (Value, usize) {
        let frame = self
            .next_data()
            .unwrap_or_else(|| panic!("{}: no reconfigure", self.node_id));
        assert_eq!(frame.opcode, BINARY, "{}: {frame:?}", self.node_id);
        assert!(frame.fin);
        assert_eq!(&frame.payload[..2], &[0x1f, 0x8b], "gzip");
        let json = dpspec::config::inflate(&frame.payload, 256 << 20).unwrap();
        (serde_json::from_slice(&json).unwrap(), frame.payload.len())
    }

    /// Pings `payload` and returns the pong's payload.
    pub fn ping_pong(&mut self, payload: &[u8]) -> Vec<u8> {
        self.ping(payload);
        let frame = self
            .next_frame()
            .unwrap_or_else(|| panic!("{}: no pong", self.node_id));
        assert_eq!(frame.opcode, PONG, "{}: {frame:?}", self.node_id);
        frame.payload
    }

    /// Reads until the control plane's close frame, answers it and ends TLS and TCP as a
    /// peer does, and returns its code (`None` when the connection ends without one).
    pub fn wait_close(&mut self) -> Option<u16> {
        loop {
            let frame = self.next_frame()?;
            if frame.opcode == CLOSE {
                self.send(CLOSE, &frame.payload[..frame.payload.len().min(2)]);
                self.stream.conn.send_close_notify();
                let _ = self.stream.flush();
                let _ = self.stream.sock.shutdown(std::net::Shutdown::Write);
                return frame.close_code();
            }
        }
    }
}

/// Parses one unmasked server frame from the front of `buf`: the frame and its length.
fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
    let (len, at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return None;
    }
    let frame = Frame {
        fin: buf[0] & 0x80 != 0,
        opcode: buf[0] & 0x0f,
        payload: buf[at..at + len].to_vec(),
    };
    Some((frame, at + len))
}
