//! The CP listener end to end over TLS on 127.0.0.1: routing, limits, plain handlers,
//! `kong-node-id` on every response, shutdown.

mod support;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dpspec::http::{request, HttpHandler, HttpLimits, Request, Response, ServerConfig};
use dpspec::upgrade::{build_request, generate_key};
use dpspec::upgrade::{dial, UpgradeTarget};
use support::tls_pair::{dp_node, read_to_close, start, start_default, CP_ID, PATIENCE};

/// Records the requests it gets and answers 200 with the body echoed.
#[derive(Default)]
struct Echo {
    seen: Mutex<Vec<Request>>,
}

impl HttpHandler for Echo {
    fn handle(&self, req: &Request) -> Response {
        self.seen.lock().unwrap().push(req.clone());
        let mut body = b"echo: ".to_vec();
        body.extend_from_slice(&req.body);
        Response::new(200, body)
            .with_header("Content-Type", "text/plain")
            .with_header("kong-node-id", "forged")
    }
}

struct Panics;

impl HttpHandler for Panics {
    fn handle(&self, _: &Request) -> Response {
        panic!("handler bug");
    }
}

#[test]
fn head_probe_of_the_wrpc_path_is_400_not_404() {
    support::init_logs();
    let cp = start_default();
    let (head, body) = cp.raw(b"HEAD /v1/wrpc HTTP/1.1\r\nHost: cp\r\n\r\n");
    assert_eq!(head.status, 400);
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
    assert_eq!(head.header_str("connection"), Some("close"));
    // A HEAD answer announces a length but carries no body.
    assert!(head.header_str("content-length").is_some());
    assert!(body.is_empty());
}

#[test]
fn kong_node_id_is_on_the_101_a_400_and_a_404() {
    let cp = start_default();
    let dialed = dial(&cp.dial_opts(), &UpgradeTarget::wrpc()).unwrap();
    assert_eq!(dialed.response.header_str("kong-node-id"), Some(CP_ID));

    let (head, _) = cp.raw(b"GET /v1/wrpc HTTP/1.1\r\nHost: cp\r\n\r\n");
    assert_eq!(head.status, 400);
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));

    let (head, body) = cp.raw(b"GET /nowhere?x=1 HTTP/1.1\r\nHost: cp\r\n\r\n");
    assert_eq!(head.status, 404);
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
    assert_eq!(head.header_str("content-length"), Some("24"));
    assert_eq!(body, b"no endpoint at /nowhere\n");
}

#[test]
fn registered_handler_round_trips_with_the_kong_headers() {
    let echo = Arc::new(Echo::default());
    let cp = start(
        ServerConfig::new(CP_ID).handler("/v1/echo", echo.clone()),
        None,
    );
    let (head, body) = request(&cp.dial_opts(), "POST", "/v1/echo?q=1", b"hello").unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(body, b"echo: hello");
    // Ours, not the handler's forged one.
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
    assert_eq!(head.header_str("content-type"), Some("text/plain"));
    assert_eq!(head.header_str("connection"), Some("close"));

    let seen = echo.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.head.method, "POST");
    assert_eq!(req.head.target, "/v1/echo?q=1");
    assert_eq!(req.body, b"hello");
    let node = dp_node();
    assert_eq!(req.head.header_str("kong-node-id"), Some(&*node.node_id));
    assert_eq!(req.head.header_str("kong-version"), Some(&*node.version));
    assert_eq!(req.head.header_str("kong-hostname"), Some(&*node.hostname));
    assert!(req.peer_certificates.is_empty());
}

#[test]
fn request_to_an_unknown_path_gets_404_with_the_cp_id() {
    let cp = start_default();
    let (head, body) = request(&cp.dial_opts(), "GET", "/v1/unknown", b"").unwrap();
    assert_eq!(head.status, 404);
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
    assert_eq!(body, b"no endpoint at /v1/unknown\n");
}

#[test]
fn a_panicking_handler_gets_500_and_the_listener_lives_on() {
    let cp = start(
        ServerConfig::new(CP_ID).handler("/boom", Arc::new(Panics)),
        None,
    );
    let (head, _) = request(&cp.dial_opts(), "GET", "/boom", b"").unwrap();
    assert_eq!(head.status, 500);
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
    let (head, _) = request(&cp.dial_opts(), "GET", "/boom", b"").unwrap();
    assert_eq!(head.status, 500);
}

#[test]
fn a_body_over_the_limit_gets_413() {
    let echo = Arc::new(Echo::default());
    let mut config = ServerConfig::new(CP_ID).handler("/v1/echo", echo.clone());
    config = config.limits(HttpLimits::default().max_body_bytes(10));
    let cp = start(config, None);
    let (head, _) = request(&cp.dial_opts(), "POST", "/v1/echo", &[b'x'; 11]).unwrap();
    assert_eq!(head.status, 413);
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
    assert!(echo.seen.lock().unwrap().is_empty());
}

#[test]
fn a_20_kib_request_head_gets_431() {
    let cp = start_default();
    let mut bytes = request_prefix();
    bytes.extend_from_slice(b"X-Padding: ");
    bytes.extend(std::iter::repeat_n(b'p', 20 * 1024));
    bytes.extend_from_slice(b"\r\n\r\n");
    let (head, body) = cp.raw(&bytes);
    assert_eq!(head.status, 431);
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
    assert_eq!(head.header_str("connection"), Some("close"));
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("larger than 16384 bytes"), "{body}");
    assert!(cp.admitted.try_recv().is_err());
}

/// A good upgrade request without its final blank line.
fn request_prefix() -> Vec<u8> {
    let mut bytes = build_request("cp", &UpgradeTarget::wrpc(), &dp_node(), &generate_key());
    bytes.truncate(bytes.len() - 2);
    bytes
}

#[test]
fn a_silent_client_gets_408_after_the_head_timeout() {
    let mut config = ServerConfig::new(CP_ID);
    config = config.limits(HttpLimits::default().head_timeout(Duration::from_millis(300)));
    let cp = start(config, None);
    // Before the connect: the server's deadline starts later than this.
    let start = Instant::now();
    let mut stream = cp.raw_connect();
    let (head, body) = read_to_close(&mut stream);
    let waited = start.elapsed();
    assert_eq!(head.status, 408);
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
    assert_eq!(head.header_str("connection"), Some("close"));
    assert!(String::from_utf8(body).unwrap().contains("in time"));
    // Not before the timeout (a lower bound: a busy machine only makes it later).
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
}

#[test]
fn a_trickling_client_gets_408_at_the_head_deadline() {
    let mut config = ServerConfig::new(CP_ID);
    config = config.limits(HttpLimits::default().head_timeout(Duration::from_millis(300)));
    let cp = start(config, None);
    let start = Instant::now();
    let mut stream = cp.raw_connect();
    // Send a byte of a head at a time, each after 100 ms of silence (the trickle is the
    // scenario): each piece is well inside the timeout, the whole head never is.
    let prefix = request_prefix();
    let mut sent = 0;
    let mut answer = Vec::new();
    while sent < prefix.len() {
        if stream.write_all(&prefix[sent..sent + 1]).is_err() || stream.flush().is_err() {
            break;
        }
        sent += 1;
        stream
            .sock
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut byte = [0u8; 1];
        match std::io::Read::read(&mut stream, &mut byte) {
            Ok(1) => {
                answer.push(byte[0]);
                break;
            }
            Ok(_) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let waited = start.elapsed();
    // The answer came while the head was still being trickled: the timeout is for the
    // whole head (a timeout per read would never fire, and the loop would send it all).
    assert!(
        sent < prefix.len(),
        "no answer after all {sent} bytes, {waited:?}"
    );
    stream.sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    let (head, body) = read_to_close(&mut &answer[..]);
    assert_eq!(head.status, 408, "after {sent} bytes");
    assert!(String::from_utf8(body).unwrap().contains("in time"));
    // Not before the timeout (a lower bound: a busy machine only makes it later).
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
}

#[test]
fn a_garbage_request_gets_400() {
    let cp = start_default();
    let (head, _) = cp.raw(b"\x00\x01 not http\r\n\r\n");
    assert_eq!(head.status, 400);
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
}

#[test]
fn shutdown_joins_connection_threads_and_new_connects_are_refused() {
    let mut cp = start_default();
    let addr = cp.addr();
    // One connection idle in the HTTP phase, one handed over and already closed.
    let mut idle = cp.raw_connect();
    let dialed = dial(&cp.dial_opts(), &UpgradeTarget::wrpc()).unwrap();
    let up = cp.upgraded.recv_timeout(PATIENCE).unwrap();
    drop((dialed, up));

    cp.listener.shutdown();
    // The idle connection was cut without an answer: shutdown did not wait out its head
    // timeout (10 s), which would have answered it with a 408.
    let mut buf = [0u8; 16];
    assert!(!matches!(std::io::Read::read(&mut idle, &mut buf), Ok(n) if n > 0));
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // Idempotent.
    cp.listener.shutdown();
}

#[test]
fn bind_refuses_a_bad_configuration() {
    let (server, _) = support::tls_pair::pki();
    let handler = Arc::new(support::tls_pair::Capture {
        reject: None,
        admitted: crossbeam_channel::unbounded().0,
        upgraded: crossbeam_channel::unbounded().0,
    });
    let wrpc = || dpspec::upgrade::route(dpspec::upgrade::Endpoint::wrpc(), handler.clone());
    for config in [
        ServerConfig::new(""),
        ServerConfig::new("cp\r\nx: y"),
        ServerConfig::new(CP_ID)
            .route("/v1/wrpc", wrpc())
            .handler("/v1/wrpc", Arc::new(Echo::default())),
        ServerConfig::new(CP_ID).handler("no-slash", Arc::new(Echo::default())),
        ServerConfig::new(CP_ID).route("/v1/wrpc?x=1", wrpc()),
    ] {
        let err = dpspec::http::Listener::bind("127.0.0.1:0", server.clone(), config).unwrap_err();
        assert!(
            matches!(err, dpspec::http::HttpError::InvalidConfig(_)),
            "{err:?}"
        );
    }
}

/// This thread's id in the kernel (Linux), from `/proc/thread-self`.
#[cfg(target_os = "linux")]
fn kernel_tid() -> String {
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// Hands each upgraded connection to a fresh thread that reports itself and waits to be
/// released; reports the connection thread, after the hand-off returned.
#[cfg(target_os = "linux")]
struct HandsOff {
    seen: crossbeam_channel::Sender<(&'static str, String, Option<String>)>,
    release: crossbeam_channel::Receiver<()>,
}

#[cfg(target_os = "linux")]
impl dpspec::upgrade::UpgradeHandler for HandsOff {
    fn upgraded(&self, up: dpspec::upgrade::Upgraded) {
        let (seen, release) = (self.seen.clone(), self.release.clone());
        let connection = (
            kernel_tid(),
            std::thread::current().name().map(String::from),
        );
        up.hand_off.run(move || {
            let name = std::thread::current().name().map(String::from);
            let _ = seen.send(("fresh", kernel_tid(), name));
            let _ = release.recv();
            drop(up.sock);
        });
        let _ = self
            .seen
            .send(("connection thread returned", connection.0, connection.1));
    }
}

#[test]
#[cfg(target_os = "linux")]
fn a_handed_off_connection_runs_on_a_fresh_thread_that_shutdown_joins() {
    use dpspec::http::Listener;
    use dpspec::upgrade::{self, Endpoint, WRPC_PATH};

    support::init_logs();
    let (seen_tx, seen) = crossbeam_channel::unbounded();
    let (release_tx, release) = crossbeam_channel::bounded::<()>(0);
    let handler = Arc::new(HandsOff {
        seen: seen_tx,
        release,
    });
    let (server_tls, client_tls) = support::tls_pair::pki();
    let config =
        ServerConfig::new(CP_ID).route(WRPC_PATH, upgrade::route(Endpoint::wrpc(), handler));
    let mut listener = Listener::bind("127.0.0.1:0", server_tls, config).unwrap();
    let opts = dpspec::upgrade::DialOptions::new(
        "127.0.0.1",
        listener.local_addr().port(),
        client_tls,
        dp_node(),
    );
    let dialed = dial(&opts, &UpgradeTarget::wrpc()).unwrap();

    // Both report while the fresh thread still runs: the hand-off did not wait for it.
    let mut reports: Vec<_> = (0..2)
        .map(|_| seen.recv_timeout(PATIENCE).unwrap())
        .collect();
    reports.sort();
    let [(returned, connection_tid, connection_name), (fresh, fresh_tid, fresh_name)] =
        <[_; 2]>::try_from(reports).unwrap();
    assert_eq!((returned, fresh), ("connection thread returned", "fresh"));
    assert_ne!(
        connection_tid, fresh_tid,
        "the work ran on the connection thread"
    );
    assert_eq!(connection_name, fresh_name);
    assert!(
        fresh_name
            .as_deref()
            .is_some_and(|n| n.starts_with("dpspec-conn-")),
        "{fresh_name:?}"
    );

    // Shutdown joins the fresh thread (it ends once released) and the connection thread.
    let shutdown = std::thread::spawn(move || listener.shutdown());
    drop(release_tx);
    shutdown.join().unwrap();
    for tid in [connection_tid, fresh_tid] {
        assert!(
            !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists(),
            "thread {tid} still runs after shutdown"
        );
    }
    drop(dialed);
}
