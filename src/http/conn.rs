//! One connection, on its own thread: TLS, one request head under the limits, then the
//! route at its exact path: an answer and a close, or a protocol switch whose handler takes
//! the connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::StreamOwned;

use super::handoff::HandOff;
use super::head::{read_request_head, RequestHead};
use super::listener::Inner;
use super::server::{
    error_response, response_bytes, HttpHandler, Request, Response, Route, RouteKind, ServerConfig,
    SwitchHandler, Switched,
};
use super::{body_length, drain_plaintext, read_body, BodyLength, HttpError};
use crate::deadline::{set_timeouts, Timed};
use crate::tls;

/// Marks a connection thread as done when it ends, even by a panic: unless it handed its
/// connection to another thread ([`HandOff`]), which then serves it and marks it done.
pub(super) struct Finished<'a> {
    pub(super) inner: &'a Inner,
    pub(super) id: u64,
}

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        let mut conns = self.inner.conns();
        self.inner.handshake_done(&mut conns, self.id);
        if let Some(c) = conns.map.get_mut(&self.id) {
            let me = std::thread::current().id();
            if c.thread.as_ref().is_some_and(|t| t.thread().id() != me) {
                return; // handed on: the thread recorded now is the one serving it
            }
            c.sock = None;
            conns.finished.push(self.id);
        }
    }
}

type Stream = StreamOwned<rustls::ServerConnection, Timed>;

/// Reads the request head's plaintext without first writing what waits to be sent (a
/// `rustls::Stream` would): the session tickets that `tls::server_handshake` left queued
/// go out with the response instead, in one write.
struct Unflushed<'a> {
    conn: &'a mut rustls::ServerConnection,
    sock: &'a mut Timed,
}

impl Read for Unflushed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            // At the end of the socket rustls notes it, and the next read says how
            // the stream ended (close_notify or not), as a `rustls::Stream` would.
            self.conn.read_tls(self.sock)?;
            if let Err(e) = self.conn.process_new_packets() {
                // Send the alert rustls queued, so the peer learns why.
                let _ = self.conn.write_tls(self.sock);
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
        }
    }
}

pub(super) fn serve(
    inner: &Arc<Inner>,
    id: u64,
    sock: TcpStream,
    peer: SocketAddr,
    accepted_at: Instant,
) {
    let cfg = &inner.config;
    let _ = sock.set_nodelay(true);
    let mut session = match inner.tls.session() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start a TLS session for {peer}: {e}");
            return;
        }
    };
    // One deadline from the accept to a whole request head, the TLS handshake included: a
    // client trickling its hello a byte at a time is cut there.
    let deadline = accepted_at + cfg.limits.head_timeout;
    if set_timeouts(&sock, deadline).is_err() {
        log::info!("connection from {peer} dropped: its deadline passed before the handshake");
        return;
    }
    let mut timed = Timed { sock, deadline };
    if let Err(e) = tls::server_handshake(&mut session, &mut timed) {
        log::info!(
            "TLS handshake with {peer} failed: {}",
            crate::error::Chain(&e)
        );
        return;
    }
    let kind = match session.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => &inner.resumed_handshakes,
        _ => &inner.full_handshakes,
    };
    kind.fetch_add(1, Ordering::Relaxed);
    let read = read_request_head(
        &mut Unflushed {
            conn: &mut session,
            sock: &mut timed,
        },
        &cfg.limits,
    );
    let stream = StreamOwned::new(session, timed);
    let (head, leftover) = match read {
        Ok(read) => read,
        Err(e) => {
            match e.status() {
                Some(status) => {
                    log::info!("answering {status} to {peer}: {e}");
                    let resp = error_response(status, e.to_string());
                    send_response(inner, stream, &resp, true);
                }
                None => log::debug!("connection from {peer} ended: {}", crate::error::Chain(&e)),
            }
            return;
        }
    };
    // Past the phase the cap counts: answering and lingering are bounded on their own.
    inner.handshake_done(&mut inner.conns(), id);
    let path = head.path();
    let with_body = head.method != "HEAD";
    match cfg.route_for(path) {
        Some(Route(RouteKind::Switch(handler))) => {
            serve_switch(inner, id, stream, head, leftover, peer, handler.as_ref())
        }
        Some(Route(RouteKind::Plain(handler))) => {
            serve_plain(inner, stream, head, leftover, peer, handler.as_ref())
        }
        None => {
            log::info!("answering 404 to {peer}: {} {}", head.method, head.target);
            let resp = error_response(404, format!("no endpoint at {path}"));
            send_response(inner, stream, &resp, with_body);
        }
    }
}

fn serve_switch(
    inner: &Arc<Inner>,
    id: u64,
    mut stream: Stream,
    head: RequestHead,
    mut leftover: Vec<u8>,
    peer: SocketAddr,
    handler: &dyn SwitchHandler,
) {
    let cfg = &inner.config;
    let with_body = head.method != "HEAD";
    let accepted = panic::catch_unwind(AssertUnwindSafe(|| {
        handler.accept(&head, peer, &cfg.node_id)
    }));
    let switch = match accepted {
        Ok(Ok(switch)) => switch,
        Ok(Err(resp)) => {
            log::info!(
                "refusing {} {} from {peer} with {}: {}",
                head.method,
                head.path(),
                resp.status,
                String::from_utf8_lossy(&resp.body).trim_end()
            );
            send_response(inner, stream, &resp, with_body);
            return;
        }
        Err(_) => {
            log::error!("the switch handler for {} panicked", head.path());
            send_response(
                inner,
                stream,
                &error_response(500, "the handler failed"),
                true,
            );
            return;
        }
    };
    // From here on the listener no longer cuts this connection at shutdown: the handler
    // owns it. Refuse if shutdown has begun, so none slips past stop_accepting.
    let handed_over = {
        let mut conns = inner.conns();
        if inner.stopping.load(Ordering::SeqCst) {
            false
        } else {
            inner.handshake_done(&mut conns, id);
            if let Some(c) = conns.map.get_mut(&id) {
                c.sock = None;
            }
            true
        }
    };
    if !handed_over {
        let resp = error_response(503, "the control plane is shutting down");
        send_response(inner, stream, &resp, true);
        return;
    }
    stream.sock.deadline = write_deadline(cfg);
    let written = tls::write_with_pending(&mut stream.conn, &mut stream.sock, &switch.response);
    if let Err(e) = written {
        log::info!("writing the switch response to {peer} failed: {e}");
        return;
    }
    let StreamOwned { mut conn, sock } = stream;
    let sock = sock.sock;
    drain_plaintext(&mut conn, &mut leftover);
    if let Err(e) = sock
        .set_read_timeout(None)
        .and_then(|()| sock.set_write_timeout(Some(cfg.write_timeout)))
    {
        log::info!("connection from {peer} failed: {e}");
        return;
    }
    log::debug!("switched {peer} at {}", head.path());
    (switch.then)(Switched {
        session: conn,
        sock,
        leftover,
        peer_addr: peer,
        head,
        hand_off: HandOff::new(inner, id, peer),
    });
}

fn serve_plain(
    inner: &Inner,
    mut stream: Stream,
    head: RequestHead,
    leftover: Vec<u8>,
    peer: SocketAddr,
    handler: &dyn HttpHandler,
) {
    let cfg = &inner.config;
    let with_body = head.method != "HEAD";
    let reject = |stream: Stream, status: u16, reason: String| {
        log::info!("answering {status} to {peer}: {reason}");
        send_response(inner, stream, &error_response(status, reason), with_body);
    };
    let len = match body_length(&head.headers) {
        Ok(BodyLength::Exactly(n)) => n,
        Ok(BodyLength::Unspecified) => 0,
        Err(e @ HttpError::Unsupported(_)) => return reject(stream, 501, e.to_string()),
        Err(e) => return reject(stream, 400, e.to_string()),
    };
    if len > cfg.limits.max_body_bytes {
        let e = HttpError::BodyTooLarge {
            limit: cfg.limits.max_body_bytes,
        };
        return reject(stream, 413, e.to_string());
    }
    stream.sock.deadline = Instant::now() + cfg.limits.head_timeout;
    let body = match read_body(
        &mut stream,
        leftover,
        BodyLength::Exactly(len),
        cfg.limits.max_body_bytes,
    ) {
        Ok(body) => body,
        Err(e @ HttpError::Timeout(_)) => return reject(stream, 408, e.to_string()),
        Err(e) => {
            let e = crate::error::Chain(&e);
            log::debug!("connection from {peer} ended: {e}");
            return;
        }
    };
    let req = Request {
        peer_certificates: stream
            .conn
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
        head,
        body,
        peer_addr: peer,
    };
    let resp = match panic::catch_unwind(AssertUnwindSafe(|| handler.handle(&req))) {
        Ok(resp) => resp,
        Err(_) => {
            log::error!("the handler for {} panicked", req.head.path());
            Response::new(500, "the handler failed\n")
        }
    };
    log::debug!(
        "{peer} {} {} -> {}",
        req.head.method,
        req.head.target,
        resp.status
    );
    send_response(inner, stream, &resp, with_body);
}

/// Writes `resp` (with `kong-node-id`, `Content-Length`, `Connection: close`) and closes.
fn send_response(inner: &Inner, stream: Stream, resp: &Response, with_body: bool) {
    let bytes = response_bytes(
        resp.status,
        &resp.headers,
        &inner.config.node_id,
        &resp.body,
        with_body,
        true,
    );
    send_and_close(inner, stream, &bytes);
}

fn write_deadline(cfg: &ServerConfig) -> Instant {
    Instant::now() + cfg.write_timeout
}

/// The most bytes read and thrown away while closing.
const LINGER_BYTES: usize = 256 * 1024;
/// The longest wait for the peer to close after our last response.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Writes `bytes` and closes gracefully: TLS close_notify, then our side of TCP, then
/// reads what the peer still sends (for a while) so the close does not reset the
/// connection and destroy the response before the peer reads it.
fn send_and_close(inner: &Inner, mut stream: Stream, bytes: &[u8]) {
    stream.sock.deadline = write_deadline(&inner.config);
    if tls::write_with_pending(&mut stream.conn, &mut stream.sock, bytes).is_err() {
        return;
    }
    stream.conn.send_close_notify();
    if stream.flush().is_err() {
        return;
    }
    let mut sock = stream.sock;
    let _ = sock.sock.shutdown(Shutdown::Write);
    sock.deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}
