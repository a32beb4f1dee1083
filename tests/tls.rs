//! End-to-end TLS tests: a server thread and a client over real sockets on loopback, for
//! every trust mode and client authentication mode, with the right and the wrong
//! certificates.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use dpspec::tls::{
    client_handshake, peer_certificate, server_handshake, CertificateOf, ClientAuth, ClientTls,
    Identity, ServerTls, TlsError, TrustMode, KONG_SERVER_NAME,
};
use rustls::Side;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use support::certs::{self, Ca, Pem};

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const GREETING: &[u8] = b"hello from the server";

fn identity(p: &Pem) -> Identity {
    Identity::from_pem(p.cert.as_bytes(), p.key.as_bytes()).unwrap()
}

fn der(p: &Pem) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(p.cert.as_bytes()).unwrap()
}

type ServerResult = Result<Option<CertificateDer<'static>>, TlsError>;

/// Binds a listener on `addr` and serves one TLS connection on a thread: handshake,
/// greeting, then wait for the client to close. Returns the port and the server's result
/// (the client certificate it saw, or its handshake error).
fn serve_one_on(addr: &str, tls: ServerTls) -> (u16, JoinHandle<ServerResult>) {
    let listener = TcpListener::bind(addr).unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut conn = tls.session()?;
        let result = server_handshake(&mut conn, &mut sock).map(|()| peer_certificate(&conn));
        if result.is_ok() {
            let mut stream = rustls::Stream::new(&mut conn, &mut sock);
            stream
                .write_all(GREETING)
                .map_err(|e| TlsError::from_stream_error(e, Side::Server))?;
        }
        // Wait for the client to close, so our close never resets the connection
        // before the client has read our last bytes (greeting or alert).
        let mut sink = [0u8; 512];
        while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
        result
    });
    (port, handle)
}

fn serve_one(tls: ServerTls) -> (u16, JoinHandle<ServerResult>) {
    serve_one_on("127.0.0.1:0", tls)
}

/// Connects, runs the client handshake and reads the server's greeting.
fn client_on(
    host: &str,
    port: u16,
    tls: &ClientTls,
    server_name: &str,
) -> Result<rustls::ClientConnection, TlsError> {
    let mut sock = dpspec::tcp::connect(host, port, IO_TIMEOUT).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut conn = tls.session(server_name)?;
    client_handshake(&mut conn, &mut sock)?;
    let mut got = vec![0u8; GREETING.len()];
    rustls::Stream::new(&mut conn, &mut sock)
        .read_exact(&mut got)
        .map_err(|e| TlsError::from_stream_error(e, Side::Client))?;
    assert_eq!(got, GREETING);
    Ok(conn)
}

fn client(
    port: u16,
    tls: &ClientTls,
    server_name: &str,
) -> Result<rustls::ClientConnection, TlsError> {
    client_on("127.0.0.1", port, tls, server_name)
}

/// Runs one connection; returns (client result, server result).
fn run(
    server: ServerTls,
    client_tls: &ClientTls,
    server_name: &str,
) -> (Result<rustls::ClientConnection, TlsError>, ServerResult) {
    let (port, handle) = serve_one(server);
    let c = client(port, client_tls, server_name);
    let s = handle.join().unwrap();
    (c, s)
}

fn ca_client(ca: &Ca, id: Option<Identity>) -> ClientTls {
    ClientTls::new(TrustMode::ca_pem(ca.pem.cert.as_bytes()).unwrap(), id).unwrap()
}

// ---- CA bundle mode (Kong pki) ----

#[test]
fn ca_bundle_accepts_a_server_certificate_from_that_ca() {
    let ca = Ca::new("cp ca");
    let server = ServerTls::new(identity(&ca.server(&["localhost"])), ClientAuth::None).unwrap();
    let (c, s) = run(server, &ca_client(&ca, None), "localhost");
    let conn = c.unwrap();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(s.unwrap(), None);
}

#[test]
fn ca_bundle_refuses_a_server_certificate_from_an_unknown_ca() {
    let ca = Ca::new("trusted ca");
    let other = Ca::new("other ca");
    let server = ServerTls::new(identity(&other.server(&["localhost"])), ClientAuth::None).unwrap();
    let (c, s) = run(server, &ca_client(&ca, None), "localhost");
    let e = c.unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::UnknownIssuer {
                peer: CertificateOf::Server
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("unknown CA"), "{e}");
    // The client told the server why with an alert.
    match s.unwrap_err() {
        TlsError::ServerCertRejected { alert } => assert_eq!(alert, "UnknownCA"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ca_bundle_refuses_a_name_mismatch() {
    let ca = Ca::new("cp ca");
    let server = ServerTls::new(identity(&ca.server(&["cp.example"])), ClientAuth::None).unwrap();
    let (c, _) = run(server, &ca_client(&ca, None), "localhost");
    match c.unwrap_err() {
        TlsError::NameMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, "localhost");
            assert_eq!(presented, vec!["cp.example".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    let (c, _) = run(
        ServerTls::new(identity(&ca.server(&["cp.example"])), ClientAuth::None).unwrap(),
        &ca_client(&ca, None),
        "localhost",
    );
    match c.unwrap_err() {
        e @ TlsError::NameMismatch { .. } => assert_eq!(
            e.to_string(),
            "the server's certificate is not valid for name \"localhost\" (it is valid for: \
             cp.example); set the server name to one of its names"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ca_bundle_refuses_an_expired_server_certificate() {
    let ca = Ca::new("cp ca");
    let pem = ca.server_valid(&["localhost"], (2001, 1, 1), (2002, 1, 1));
    let server = ServerTls::new(identity(&pem), ClientAuth::None).unwrap();
    let (c, _) = run(server, &ca_client(&ca, None), "localhost");
    let e = c.unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Expired {
                peer: CertificateOf::Server,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("the server's certificate has expired"),
        "{e}"
    );
}

#[test]
fn ca_bundle_refuses_a_server_certificate_not_valid_yet() {
    let ca = Ca::new("cp ca");
    let pem = ca.server_valid(&["localhost"], (2090, 1, 1), (2091, 1, 1));
    let server = ServerTls::new(identity(&pem), ClientAuth::None).unwrap();
    let (c, _) = run(server, &ca_client(&ca, None), "localhost");
    let e = c.unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::NotYetValid {
                peer: CertificateOf::Server,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn ca_bundle_verifies_ip_address_server_names() {
    let ca = Ca::new("cp ca");
    let server = ServerTls::new(identity(&ca.server(&["127.0.0.1"])), ClientAuth::None).unwrap();
    let (c, _) = run(server, &ca_client(&ca, None), "127.0.0.1");
    c.unwrap();
}

#[test]
fn webpki_roots_refuse_a_private_ca() {
    let ca = Ca::new("private ca");
    let server = ServerTls::new(identity(&ca.server(&["localhost"])), ClientAuth::None).unwrap();
    let client = ClientTls::new(TrustMode::WebPki, None).unwrap();
    let (c, _) = run(server, &client, "localhost");
    let e = c.unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::UnknownIssuer {
                peer: CertificateOf::Server
            }
        ),
        "{e:?}"
    );
}

#[test]
fn ipv6_loopback_works_when_available() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no ::1 on this machine: skipped");
        return;
    }
    let ca = Ca::new("cp ca");
    let server = ServerTls::new(identity(&ca.server(&["::1"])), ClientAuth::None).unwrap();
    let (port, handle) = serve_one_on("[::1]:0", server);
    let c = client_on("[::1]", port, &ca_client(&ca, None), "[::1]");
    c.unwrap();
    handle.join().unwrap().unwrap();
}

// ---- Pki client authentication (Kong pki) ----

#[test]
fn pki_accepts_a_client_certificate_with_only_client_auth_usage() {
    let ca = Ca::new("cluster ca");
    let dp = ca.client("dp-1");
    let server = ServerTls::new(
        identity(&ca.server(&["localhost"])),
        ClientAuth::pki_pem(ca.pem.cert.as_bytes()).unwrap(),
    )
    .unwrap();
    let (c, s) = run(server, &ca_client(&ca, Some(identity(&dp))), "localhost");
    c.unwrap();
    assert_eq!(s.unwrap(), Some(der(&dp)));
}

#[test]
fn pki_refuses_a_missing_client_certificate() {
    let ca = Ca::new("cluster ca");
    let server = ServerTls::new(
        identity(&ca.server(&["localhost"])),
        ClientAuth::Pki(vec![der(&ca.pem)]),
    )
    .unwrap();
    let (c, s) = run(server, &ca_client(&ca, None), "localhost");
    let s = s.unwrap_err();
    assert!(matches!(s, TlsError::ClientCertMissing), "{s:?}");
    let c = c.unwrap_err();
    assert!(matches!(c, TlsError::ClientCertMissing), "{c:?}");
    assert!(c.to_string().contains("client certificate missing"), "{c}");
}

#[test]
fn pki_refuses_a_client_certificate_from_another_ca() {
    let ca = Ca::new("cluster ca");
    let rogue = Ca::new("rogue ca");
    let server = ServerTls::new(
        identity(&ca.server(&["localhost"])),
        ClientAuth::Pki(vec![der(&ca.pem)]),
    )
    .unwrap();
    let (c, s) = run(
        server,
        &ca_client(&ca, Some(identity(&rogue.client("dp-1")))),
        "localhost",
    );
    let s = s.unwrap_err();
    assert!(
        matches!(
            s,
            TlsError::UnknownIssuer {
                peer: CertificateOf::Client
            }
        ),
        "{s:?}"
    );
    assert!(s
        .to_string()
        .starts_with("the client's certificate is issued by an unknown CA"));
    match c.unwrap_err() {
        TlsError::ClientCertRejected { alert } => assert_eq!(alert, "UnknownCA"),
        other => panic!("{other:?}"),
    }
}

// ---- Shared mode (Kong's default) ----

fn kong_pair() -> (ServerTls, ClientTls) {
    let kong = certs::kong_shared();
    let server = ServerTls::new(identity(&kong), ClientAuth::Shared(None)).unwrap();
    let client = ClientTls::new(
        TrustMode::pinned_pem(kong.cert.as_bytes()).unwrap(),
        Some(identity(&kong)),
    )
    .unwrap();
    (server, client)
}

#[test]
fn kong_shared_certificate_works_on_both_sides() {
    let (server, client_tls) = kong_pair();
    assert_eq!(client_tls.default_server_name(), Some(KONG_SERVER_NAME));
    let (port, handle) = serve_one(server);
    let conn = client(port, &client_tls, KONG_SERVER_NAME).unwrap();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    drop(conn);
    assert!(handle.join().unwrap().unwrap().is_some());
}

#[test]
fn kong_shared_client_presents_the_same_certificate() {
    let kong = certs::kong_shared();
    let server = ServerTls::new(identity(&kong), ClientAuth::Shared(None)).unwrap();
    let client = ClientTls::new(TrustMode::Pinned(der(&kong)), Some(identity(&kong))).unwrap();
    let (c, s) = run(server, &client, KONG_SERVER_NAME);
    c.unwrap();
    assert_eq!(s.unwrap(), Some(der(&kong)));
}

#[test]
fn pinned_mode_works_over_tls12() {
    let kong = certs::kong_shared();
    // A TLS 1.2-only server built directly with rustls.
    let id = identity(&kong);
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(id.chain, id.key)
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        server_handshake(&mut conn, &mut sock).unwrap();
        rustls::Stream::new(&mut conn, &mut sock)
            .write_all(GREETING)
            .unwrap();
        let mut sink = [0u8; 64];
        while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
    });
    let client_tls = ClientTls::new(TrustMode::Pinned(der(&kong)), None).unwrap();
    let conn = client(port, &client_tls, KONG_SERVER_NAME).unwrap();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    drop(conn);
    handle.join().unwrap();
}

#[test]
fn pinned_mode_refuses_another_certificate() {
    let kong = certs::kong_shared();
    let impostor = certs::kong_shared();
    let server = ServerTls::new(identity(&impostor), ClientAuth::None).unwrap();
    let client = ClientTls::new(TrustMode::Pinned(der(&kong)), None).unwrap();
    let (c, s) = run(server, &client, KONG_SERVER_NAME);
    let e = c.unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::PinMismatch {
                peer: CertificateOf::Server
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("certificate does not match the pinned certificate"),
        "{e}"
    );
    assert!(matches!(
        s.unwrap_err(),
        TlsError::ServerCertRejected { .. }
    ));
}

#[test]
fn pinned_mode_refuses_an_expired_pinned_certificate() {
    let ca = Ca::new("x");
    let old = ca.server_valid(&["cp"], (2001, 1, 1), (2002, 1, 1));
    let server = ServerTls::new(identity(&old), ClientAuth::None).unwrap();
    let client = ClientTls::new(TrustMode::Pinned(der(&old)), None).unwrap();
    let (c, _) = run(server, &client, KONG_SERVER_NAME);
    let e = c.unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Expired {
                peer: CertificateOf::Server,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn pinned_mode_reads_validity_past_2050() {
    // notAfter in 2060 is a GeneralizedTime in the certificate.
    let ca = Ca::new("x");
    let long = ca.server_valid(&["cp"], (2020, 1, 1), (2060, 1, 1));
    let server = ServerTls::new(identity(&long), ClientAuth::None).unwrap();
    let client = ClientTls::new(TrustMode::Pinned(der(&long)), None).unwrap();
    let (c, _) = run(server, &client, KONG_SERVER_NAME);
    c.unwrap();
}

#[test]
fn shared_server_refuses_a_missing_client_certificate() {
    let kong = certs::kong_shared();
    let server = ServerTls::new(identity(&kong), ClientAuth::Shared(None)).unwrap();
    let client = ClientTls::new(TrustMode::Pinned(der(&kong)), None).unwrap();
    let (c, s) = run(server, &client, KONG_SERVER_NAME);
    assert!(matches!(s.unwrap_err(), TlsError::ClientCertMissing));
    let c = c.unwrap_err();
    assert!(matches!(c, TlsError::ClientCertMissing), "{c:?}");
}

#[test]
fn shared_server_refuses_another_client_certificate() {
    let kong = certs::kong_shared();
    let other = certs::kong_shared();
    let server = ServerTls::new(identity(&kong), ClientAuth::Shared(None)).unwrap();
    let client = ClientTls::new(TrustMode::Pinned(der(&kong)), Some(identity(&other))).unwrap();
    let (c, s) = run(server, &client, KONG_SERVER_NAME);
    let s = s.unwrap_err();
    assert!(
        matches!(
            s,
            TlsError::PinMismatch {
                peer: CertificateOf::Client
            }
        ),
        "{s:?}"
    );
    assert_eq!(
        s.to_string(),
        "the client's certificate does not match the pinned certificate; both sides must use \
         the same cluster certificate"
    );
    let c = c.unwrap_err();
    assert!(matches!(c, TlsError::ClientCertRejected { .. }), "{c:?}");
}

#[test]
fn shared_server_with_an_explicit_pin_accepts_that_client() {
    let server_pem = certs::self_signed(&["localhost"]);
    let dp = certs::kong_shared();
    let server = ServerTls::new(
        identity(&server_pem),
        ClientAuth::shared_pem(Some(dp.cert.as_bytes())).unwrap(),
    )
    .unwrap();
    let client = ClientTls::new(TrustMode::Pinned(der(&server_pem)), Some(identity(&dp))).unwrap();
    let (c, s) = run(server, &client, "localhost");
    c.unwrap();
    assert_eq!(s.unwrap(), Some(der(&dp)));
}

// ---- No verification ----

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.level() == log::Level::Warn {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn captured_warnings() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
        c
    })
}

#[test]
fn no_verification_connects_to_an_untrusted_certificate_and_warns() {
    let capture = captured_warnings();
    let server = ServerTls::new(
        identity(&certs::self_signed(&["whatever"])),
        ClientAuth::None,
    )
    .unwrap();
    let client = ClientTls::new(TrustMode::DangerousNoVerification, None).unwrap();
    assert_eq!(client.default_server_name(), None);
    let (c, _) = run(server, &client, "unverified.test");
    c.unwrap();
    let warnings = capture.0.lock().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("verification is OFF for unverified.test")
                && w.contains("dangerous")),
        "{warnings:?}"
    );
}

// ---- Handshake failures that are not about certificates ----

#[test]
fn handshake_times_out_on_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_held, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let client = ClientTls::new(TrustMode::WebPki, None).unwrap();
    let mut conn = client.session("localhost").unwrap();
    let e = client_handshake(&mut conn, &mut sock).unwrap_err();
    assert!(matches!(e, TlsError::Timeout), "{e:?}");
}

#[test]
fn handshake_reports_a_peer_that_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (held, _) = listener.accept().unwrap();
    held.shutdown(std::net::Shutdown::Write).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let client = ClientTls::new(TrustMode::WebPki, None).unwrap();
    let mut conn = client.session("localhost").unwrap();
    let e = client_handshake(&mut conn, &mut sock).unwrap_err();
    assert!(matches!(e, TlsError::Closed), "{e:?}");
}

#[test]
fn server_reports_a_client_that_speaks_plain_http() {
    let ca = Ca::new("cp ca");
    let server = ServerTls::new(identity(&ca.server(&["localhost"])), ClientAuth::None).unwrap();
    let (port, handle) = serve_one(server);
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    let e = handle.join().unwrap().unwrap_err();
    assert!(matches!(e, TlsError::Protocol(_)), "{e:?}");
}

#[test]
fn invalid_server_name_is_refused() {
    let client = ClientTls::new(TrustMode::WebPki, None).unwrap();
    let e = client.session("not a name!").unwrap_err();
    assert!(matches!(e, TlsError::InvalidServerName(_)), "{e:?}");
}

// ---- PEM input ----

#[test]
fn identity_refuses_a_key_of_another_certificate() {
    let a = certs::self_signed(&["a"]);
    let b = certs::self_signed(&["b"]);
    let e = Identity::from_pem(a.cert.as_bytes(), b.key.as_bytes()).unwrap_err();
    assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
    assert!(e.to_string().contains("does not belong"), "{e}");
}

#[test]
fn identity_debug_hides_the_key() {
    let a = certs::kong_shared();
    let id = identity(&a);
    let d = format!("{id:?}");
    assert!(d.contains("redacted") && d.contains("chain_len: 1"), "{d}");
    let key_der = rustls_pki_types::PrivateKeyDer::from_pem_slice(a.key.as_bytes()).unwrap();
    let key_bytes = format!("{:?}", key_der.secret_der());
    assert!(!d.contains(&key_bytes[1..20]));
}

#[test]
fn pem_files_load_and_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("dpspec-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kong = certs::kong_shared();
    let cert = dir.join("cluster.crt");
    let key = dir.join("cluster.key");
    std::fs::write(&cert, &kong.cert).unwrap();
    std::fs::write(&key, &kong.key).unwrap();
    let id = Identity::from_pem_files(&cert, &key).unwrap();
    assert_eq!(id.chain, vec![der(&kong)]);
    assert!(matches!(
        TrustMode::pinned_pem_file(&cert).unwrap(),
        TrustMode::Pinned(c) if c == der(&kong)
    ));
    assert!(matches!(
        ClientAuth::shared_pem_file(&cert).unwrap(),
        ClientAuth::Shared(Some(_))
    ));
    assert!(
        matches!(TrustMode::ca_pem_file(&cert).unwrap(), TrustMode::CaBundle(v) if v.len() == 1)
    );
    assert!(matches!(ClientAuth::pki_pem_file(&cert).unwrap(), ClientAuth::Pki(v) if v.len() == 1));

    // A key file given as the certificate: the error names that file.
    let e = TrustMode::pinned_pem_file(&key).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "bad PEM in {}: no \"BEGIN CERTIFICATE\" block found",
            key.display()
        )
    );
    let e = Identity::from_pem_files(&cert, &cert).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("bad PEM in {}: ", cert.display())),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
