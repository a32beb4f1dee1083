//! A tiny HTTP CONNECT proxy for tests: one thread per connection, optional required
//! Basic credentials, and canned misbehaviours.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the proxy does with a CONNECT that passed the credential check.
#[derive(Clone, Copy, Debug)]
pub enum Behavior {
    /// Connects to the target, answers 200 and copies bytes both ways untouched.
    Tunnel,
    /// Writes these bytes as its answer, then waits for the client to close.
    Answer(&'static [u8]),
    /// Answers nothing and waits for the client to close.
    Silent,
    /// Closes the connection without answering.
    Close,
}

/// A running proxy; dropping it stops accepting.
pub struct Proxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Every request head it read, exact bytes, in order.
    pub heads: Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept call.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// Starts a proxy. With `basic` set (the expected `Proxy-Authorization` value, e.g.
/// `"Basic ZHA6eA=="`), requests without it or with another value get a 407.
pub fn start(behavior: Behavior, basic: Option<&str>) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, heads) = channel();
    let basic = basic.map(str::to_string);
    let stop2 = stop.clone();
    let acceptor = std::thread::spawn(move || {
        for sock in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                return;
            }
            let Ok(sock) = sock else { continue };
            let tx = tx.clone();
            let basic = basic.clone();
            std::thread::spawn(move || handle(sock, behavior, basic.as_deref(), tx));
        }
    });
    Proxy {
        port,
        heads,
        stop,
        acceptor: Some(acceptor),
    }
}

fn handle(
    mut sock: TcpStream,
    behavior: Behavior,
    basic: Option<&str>,
    tx: std::sync::mpsc::Sender<Vec<u8>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match sock.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let _ = tx.send(head.clone());
    let text = String::from_utf8_lossy(&head).into_owned();
    if let Some(expected) = basic {
        let ok = text.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("proxy-authorization") && v.trim() == expected
            })
        });
        if !ok {
            let _ = sock.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
            );
            drain(&mut sock);
            return;
        }
    }
    match behavior {
        Behavior::Tunnel => {
            let target = text
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let upstream = match TcpStream::connect(&target) {
                Ok(s) => s,
                Err(_) => {
                    let _ = sock.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                    return;
                }
            };
            sock.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .unwrap();
            let (mut a, mut b) = (sock.try_clone().unwrap(), upstream.try_clone().unwrap());
            let up = std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(Shutdown::Write);
            });
            let (mut a, mut b) = (upstream, sock);
            let _ = std::io::copy(&mut a, &mut b);
            let _ = b.shutdown(Shutdown::Write);
            let _ = up.join();
        }
        Behavior::Answer(bytes) => {
            let _ = sock.write_all(bytes);
            drain(&mut sock);
        }
        Behavior::Silent => drain(&mut sock),
        Behavior::Close => {}
    }
}

/// Reads until the client closes, so our close never resets the connection early.
fn drain(sock: &mut TcpStream) {
    let mut sink = [0u8; 256];
    while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
}
