//! End-to-end tests of TCP connect and HTTP CONNECT tunnels, against a tiny proxy on
//! loopback, with TLS carried inside the tunnel.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use dpspec::proxy::{tunnel, ProxyError, ProxyUrl};
use dpspec::tcp::{self, ConnectError};
use dpspec::tls::{
    client_handshake, server_handshake, ClientAuth, ClientTls, Identity, ServerTls, TlsError,
    TrustMode,
};
use rustls::Side;
use support::certs::Ca;
use support::proxy as test_proxy;
use test_proxy::Behavior;

const TIMEOUT: Duration = Duration::from_secs(5);
const GREETING: &[u8] = b"hello through the tunnel";
const PASSWORD: &str = "s3cret:x";

/// A TLS server for one connection that sends a greeting; returns (port, client CA PEM).
fn tls_server() -> (u16, String, JoinHandle<()>) {
    let ca = Ca::new("cp ca");
    let pem = ca.server(&["cp.test"]);
    let tls = ServerTls::new(
        Identity::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap(),
        ClientAuth::None,
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut conn = tls.session().unwrap();
        server_handshake(&mut conn, &mut sock).unwrap();
        rustls::Stream::new(&mut conn, &mut sock)
            .write_all(GREETING)
            .unwrap();
        let mut sink = [0u8; 256];
        while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
    });
    (port, ca.pem.cert, handle)
}

fn tls_over(mut sock: TcpStream, ca_pem: &str) {
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let client = ClientTls::new(TrustMode::ca_pem(ca_pem.as_bytes()).unwrap(), None).unwrap();
    let mut conn = client.session("cp.test").unwrap();
    client_handshake(&mut conn, &mut sock).unwrap();
    let mut got = vec![0u8; GREETING.len()];
    rustls::Stream::new(&mut conn, &mut sock)
        .read_exact(&mut got)
        .map_err(|e| TlsError::from_stream_error(e, Side::Client))
        .unwrap();
    assert_eq!(got, GREETING);
}

fn url(port: u16, auth: bool) -> ProxyUrl {
    if auth {
        ProxyUrl::parse(&format!("http://dp:s3cret%3Ax@127.0.0.1:{port}")).unwrap()
    } else {
        ProxyUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap()
    }
}

fn assert_no_password(e: &ProxyError) {
    assert!(!e.to_string().contains(PASSWORD), "{e}");
    assert!(!format!("{e:?}").contains(PASSWORD), "{e:?}");
    assert!(!e.to_string().contains("czNjcmV0"), "{e}");
}

#[test]
fn tunnel_without_credentials_carries_tls() {
    let (port, ca, server) = tls_server();
    let proxy = test_proxy::start(Behavior::Tunnel, None);
    let sock = tunnel(&url(proxy.port, false), "127.0.0.1", port, TIMEOUT).unwrap();
    assert_eq!(
        proxy.heads.recv().unwrap(),
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes()
    );
    assert_eq!(sock.read_timeout().unwrap(), None);
    tls_over(sock, &ca);
    server.join().unwrap();
}

#[test]
fn tunnel_with_basic_credentials_carries_tls() {
    let (port, ca, server) = tls_server();
    let proxy = test_proxy::start(Behavior::Tunnel, Some("Basic ZHA6czNjcmV0Ong="));
    let sock = tunnel(&url(proxy.port, true), "127.0.0.1", port, TIMEOUT).unwrap();
    assert_eq!(
        proxy.heads.recv().unwrap(),
        format!(
            "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Proxy-Authorization: Basic ZHA6czNjcmV0Ong=\r\n\r\n"
        )
        .as_bytes()
    );
    tls_over(sock, &ca);
    server.join().unwrap();
}

#[test]
fn tunnel_target_ipv6_is_bracketed() {
    let proxy = test_proxy::start(Behavior::Answer(b"HTTP/1.1 200 OK\r\n\r\n"), None);
    let _sock = tunnel(&url(proxy.port, false), "::1", 8005, TIMEOUT).unwrap();
    assert_eq!(
        proxy.heads.recv().unwrap(),
        b"CONNECT [::1]:8005 HTTP/1.1\r\nHost: [::1]:8005\r\n\r\n"
    );
}

#[test]
fn missing_credentials_get_407_naming_the_proxy() {
    let proxy = test_proxy::start(Behavior::Tunnel, Some("Basic ZHA6czNjcmV0Ong="));
    let e = tunnel(&url(proxy.port, false), "127.0.0.1", 9, TIMEOUT).unwrap_err();
    assert!(
        matches!(e, ProxyError::Refused { status: 407, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "proxy 127.0.0.1:{} refused the tunnel: 407 Proxy Authentication Required \
             (proxy authentication required: check the credentials)",
            proxy.port
        )
    );
}

#[test]
fn wrong_credentials_get_407_without_leaking_the_password() {
    let proxy = test_proxy::start(Behavior::Tunnel, Some("Basic b3RoZXI6b25l"));
    let e = tunnel(&url(proxy.port, true), "127.0.0.1", 9, TIMEOUT).unwrap_err();
    assert!(
        matches!(e, ProxyError::Refused { status: 407, .. }),
        "{e:?}"
    );
    assert_no_password(&e);
    assert!(!format!("{:?}", url(proxy.port, true)).contains(PASSWORD));
    assert!(!url(proxy.port, true).to_string().contains(PASSWORD));
}

#[test]
fn forbidden_gets_403() {
    let proxy = test_proxy::start(Behavior::Answer(b"HTTP/1.1 403 Forbidden\r\n\r\n"), None);
    let e = tunnel(&url(proxy.port, true), "127.0.0.1", 9, TIMEOUT).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "proxy 127.0.0.1:{} refused the tunnel: 403 Forbidden (the proxy does not allow \
             this target)",
            proxy.port
        )
    );
    assert_no_password(&e);
}

#[test]
fn unreachable_target_gets_502() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let proxy = test_proxy::start(Behavior::Tunnel, None);
    let e = tunnel(&url(proxy.port, false), "127.0.0.1", dead_port, TIMEOUT).unwrap_err();
    match &e {
        ProxyError::Refused {
            proxy: p,
            status,
            reason,
        } => {
            assert_eq!(p, &format!("127.0.0.1:{}", proxy.port));
            assert_eq!((*status, &**reason), (502, "Bad Gateway"));
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .to_string()
        .ends_with("(the proxy could not reach the target)"));
}

#[test]
fn garbage_answer_is_not_http() {
    let proxy = test_proxy::start(Behavior::Answer(b"SSH-2.0-OpenSSH_9.6\r\n"), None);
    let e = tunnel(&url(proxy.port, true), "127.0.0.1", 9, TIMEOUT).unwrap_err();
    assert!(matches!(e, ProxyError::NotHttp { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "proxy 127.0.0.1:{} answered something that is not HTTP",
            proxy.port
        )
    );
    assert_no_password(&e);
}

#[test]
fn malformed_status_line_is_not_http() {
    let proxy = test_proxy::start(Behavior::Answer(b"HTTP/1.1 2x0 OK\r\n\r\n"), None);
    let e = tunnel(&url(proxy.port, false), "127.0.0.1", 9, TIMEOUT).unwrap_err();
    assert!(matches!(e, ProxyError::NotHttp { .. }), "{e:?}");
}

#[test]
fn silent_proxy_times_out() {
    let proxy = test_proxy::start(Behavior::Silent, None);
    let e = tunnel(
        &url(proxy.port, true),
        "127.0.0.1",
        9,
        Duration::from_millis(150),
    )
    .unwrap_err();
    assert!(matches!(e, ProxyError::Timeout { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "proxy 127.0.0.1:{} did not answer the CONNECT in time",
            proxy.port
        )
    );
    assert_no_password(&e);
}

#[test]
fn proxy_closing_without_answer_is_reported() {
    let proxy = test_proxy::start(Behavior::Close, None);
    let e = tunnel(&url(proxy.port, false), "127.0.0.1", 9, TIMEOUT).unwrap_err();
    assert!(matches!(e, ProxyError::Closed { .. }), "{e:?}");
}

#[test]
fn data_after_the_answer_head_is_refused() {
    let proxy = test_proxy::start(
        Behavior::Answer(b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03junk"),
        None,
    );
    let e = tunnel(&url(proxy.port, false), "127.0.0.1", 9, TIMEOUT).unwrap_err();
    assert!(matches!(e, ProxyError::DataAfterHead { .. }), "{e:?}");
}

#[test]
fn oversized_answer_head_is_refused() {
    static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let big = BIG.get_or_init(|| {
        let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..300 {
            v.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        v.extend_from_slice(b"\r\n");
        v
    });
    let proxy = test_proxy::start(Behavior::Answer(big), None);
    let e = tunnel(&url(proxy.port, false), "127.0.0.1", 9, TIMEOUT).unwrap_err();
    assert!(matches!(e, ProxyError::HeadTooLarge { .. }), "{e:?}");
}

#[test]
fn unreachable_proxy_is_a_connect_error() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = tunnel(&url(port, true), "127.0.0.1", 9, TIMEOUT).unwrap_err();
    assert!(
        matches!(e, ProxyError::Connect(ConnectError::Refused { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert_no_password(&e);
}

// ---- tcp::connect ----

#[test]
fn connect_refused_names_the_target() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let e = tcp::connect("127.0.0.1", port, TIMEOUT).unwrap_err();
    assert!(matches!(e, ConnectError::Refused { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "connection to 127.0.0.1:{port} refused: nothing listens there; check the host \
             and port"
        )
    );
}

#[test]
fn connect_sets_nodelay_and_tries_every_address_of_a_name() {
    // "localhost" may resolve to ::1 first; the listener is on 127.0.0.1 only.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let s = tcp::connect("localhost", port, tcp::DEFAULT_CONNECT_TIMEOUT).unwrap();
    assert!(s.nodelay().unwrap());
    assert_eq!(s.peer_addr().unwrap(), l.local_addr().unwrap());
}

#[test]
fn connect_to_ipv6_literal_with_or_without_brackets() {
    let Ok(l) = TcpListener::bind("[::1]:0") else {
        eprintln!("no ::1 on this machine: skipped");
        return;
    };
    let port = l.local_addr().unwrap().port();
    for host in ["::1", "[::1]"] {
        let s = tcp::connect(host, port, TIMEOUT).unwrap();
        assert_eq!(s.peer_addr().unwrap(), l.local_addr().unwrap());
    }
}

#[test]
fn unresolvable_host_is_a_resolve_error() {
    // A NUL byte fails in the resolver call without asking any DNS server.
    let e = tcp::connect("no-such\0host", 80, TIMEOUT).unwrap_err();
    assert!(matches!(e, ConnectError::Resolve { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("cannot resolve no-such\0host:80"),
        "{e}"
    );
    // The resolver's message is the cause, not part of the text.
    assert!(std::error::Error::source(&e).is_some(), "{e:?}");
}
