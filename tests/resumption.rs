//! TLS session resumption over real TLS on loopback: a DP that reconnects offers its
//! ticket, the CP resumes the session, and the node's identity still comes from the
//! client certificate of the full handshake the session came from. Tickets sealed with a
//! shared secret survive a new `ServerTls` (a CP restart); the default rotating keys and a
//! changed trust configuration do not.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dpspec::cp::CpEvent;
use dpspec::dp::{ConfigUpdate, DataPlane, DpEvent, ProtocolChoice, Reconnect};
use dpspec::tls::{
    client_handshake, peer_certificate, server_handshake, ClientAuth, ClientTls, Identity,
    ServerTls, SessionTickets, TicketSecret, TlsError, TrustMode, KONG_SERVER_NAME,
};
use dpspec::ControlPlane;
use rustls::HandshakeKind::{self, Full, Resumed};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::json;
use support::certs::{self, Ca, Pem};

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const GREETING: &[u8] = b"hello from the server";
const PATIENCE: Duration = Duration::from_secs(20);

fn identity(p: &Pem) -> Identity {
    Identity::from_pem(p.cert.as_bytes(), p.key.as_bytes()).unwrap()
}

fn der(p: &Pem) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(p.cert.as_bytes()).unwrap()
}

/// What the server saw of one connection: how the handshake went and the client
/// certificate it holds for the session.
type Seen = Result<(HandshakeKind, Option<CertificateDer<'static>>), TlsError>;

/// Serves `n` TLS connections one after the other on 127.0.0.1:0: handshake, greeting,
/// then waits for the client to close. Returns the port and what it saw of each.
fn serve(tls: ServerTls, n: usize) -> (u16, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        (0..n)
            .map(|_| {
                let (mut sock, _) = listener.accept().unwrap();
                sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut conn = tls.session().unwrap();
                let seen = server_handshake(&mut conn, &mut sock)
                    .map(|()| (conn.handshake_kind().unwrap(), peer_certificate(&conn)));
                if seen.is_ok() {
                    rustls::Stream::new(&mut conn, &mut sock)
                        .write_all(GREETING)
                        .unwrap();
                }
                let mut sink = [0u8; 512];
                while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
                seen
            })
            .collect()
    });
    (port, handle)
}

/// Connects with `tls`, reads the greeting (and with it the tickets the server sent
/// after the handshake), closes, and says how the handshake went on the client's side.
fn connect(port: u16, tls: &ClientTls, server_name: &str) -> HandshakeKind {
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut conn = tls.session(server_name).unwrap();
    client_handshake(&mut conn, &mut sock).unwrap();
    let mut got = vec![0u8; GREETING.len()];
    rustls::Stream::new(&mut conn, &mut sock)
        .read_exact(&mut got)
        .unwrap();
    assert_eq!(got, GREETING);
    conn.handshake_kind().unwrap()
}

fn kong_client(kong: &Pem) -> ClientTls {
    ClientTls::new(TrustMode::Pinned(der(kong)), Some(identity(kong))).unwrap()
}

fn ok(seen: Vec<Seen>) -> Vec<(HandshakeKind, Option<CertificateDer<'static>>)> {
    seen.into_iter().map(Result::unwrap).collect()
}

#[test]
fn shared_mode_reconnect_resumes_and_keeps_the_client_certificate() {
    let kong = certs::kong_shared();
    let server = ServerTls::new(identity(&kong), ClientAuth::Shared(None)).unwrap();
    let (port, handle) = serve(server, 3);
    let client = kong_client(&kong);
    let kinds: Vec<_> = (0..3)
        .map(|_| connect(port, &client, KONG_SERVER_NAME))
        .collect();
    assert_eq!(kinds, [Full, Resumed, Resumed]);
    let cert = Some(der(&kong));
    assert_eq!(
        ok(handle.join().unwrap()),
        [
            (Full, cert.clone()),
            (Resumed, cert.clone()),
            (Resumed, cert)
        ]
    );
}

/// A cluster CA and a CP (`localhost`) that accepts the client certificates it signs.
fn pki_server() -> (Ca, ServerTls) {
    let ca = Ca::new("cluster ca");
    let server = ServerTls::new(
        identity(&ca.server(&["localhost"])),
        ClientAuth::pki_pem(ca.pem.cert.as_bytes()).unwrap(),
    )
    .unwrap();
    (ca, server)
}

#[test]
fn pki_resumed_sessions_keep_each_clients_own_certificate() {
    let (ca, server) = pki_server();
    let (a, b) = (ca.client("dp-a"), ca.client("dp-b"));
    let client = |p: &Pem| {
        ClientTls::new(
            TrustMode::ca_pem(ca.pem.cert.as_bytes()).unwrap(),
            Some(identity(p)),
        )
        .unwrap()
    };
    let (tls_a, tls_b) = (client(&a), client(&b));
    let (port, handle) = serve(server, 4);
    let kinds: Vec<_> = [&tls_a, &tls_b, &tls_a, &tls_b]
        .into_iter()
        .map(|tls| connect(port, tls, "localhost"))
        .collect();
    assert_eq!(kinds, [Full, Full, Resumed, Resumed]);
    assert_eq!(
        ok(handle.join().unwrap()),
        [
            (Full, Some(der(&a))),
            (Full, Some(der(&b))),
            (Resumed, Some(der(&a))),
            (Resumed, Some(der(&b))),
        ]
    );
}

#[test]
fn pki_over_tls12_resumes_with_the_client_certificate() {
    let (ca, server) = pki_server();
    let dp = ca.client("dp-12");
    // A TLS 1.2-only client built directly with rustls.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&ca.pem)).unwrap();
    let id = identity(&dp);
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(id.chain, id.key)
    .unwrap();
    let config = Arc::new(config);
    let (port, handle) = serve(server, 2);
    for want in [Full, Resumed] {
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let name = "localhost".try_into().unwrap();
        let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let mut got = vec![0u8; GREETING.len()];
        rustls::Stream::new(&mut conn, &mut sock)
            .read_exact(&mut got)
            .unwrap();
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_eq!(conn.handshake_kind(), Some(want));
    }
    assert_eq!(
        ok(handle.join().unwrap()),
        [(Full, Some(der(&dp))), (Resumed, Some(der(&dp)))]
    );
}

#[test]
fn our_client_resumes_over_tls12_and_its_last_message_goes_out_with_its_first_write() {
    let kong = certs::kong_shared();
    // A TLS 1.2-only server with tickets, built directly with rustls.
    let id = identity(&kong);
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(id.chain, id.key)
    .unwrap();
    config.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        (0..2)
            .map(|_| {
                let (mut sock, _) = listener.accept().unwrap();
                sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
                server_handshake(&mut conn, &mut sock).unwrap();
                // The client's request: in a resumption its Finished comes last, queued by
                // client_handshake until this write of the client's.
                let mut got = [0u8; 4];
                rustls::Stream::new(&mut conn, &mut sock)
                    .read_exact(&mut got)
                    .unwrap();
                assert_eq!(&got, b"ping");
                rustls::Stream::new(&mut conn, &mut sock)
                    .write_all(GREETING)
                    .unwrap();
                let mut sink = [0u8; 64];
                while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
                conn.handshake_kind().unwrap()
            })
            .collect::<Vec<_>>()
    });
    let client = ClientTls::new(TrustMode::Pinned(der(&kong)), None).unwrap();
    for want in [Full, Resumed] {
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut conn = client.session(KONG_SERVER_NAME).unwrap();
        client_handshake(&mut conn, &mut sock).unwrap();
        dpspec::tls::write_with_pending(&mut conn, &mut sock, b"ping").unwrap();
        let mut got = vec![0u8; GREETING.len()];
        rustls::Stream::new(&mut conn, &mut sock)
            .read_exact(&mut got)
            .unwrap();
        assert_eq!(got, GREETING);
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_eq!(conn.handshake_kind(), Some(want));
    }
    assert_eq!(server.join().unwrap(), [Full, Resumed]);
}

/// One full handshake with `first`, then one connection to `second` (a new ServerTls, as a
/// restarted CP builds): how did the second go?
fn after_restart(first: ServerTls, second: ServerTls, client: &ClientTls, name: &str) -> Seen {
    let (port, handle) = serve(first, 1);
    assert_eq!(connect(port, client, name), Full);
    handle.join().unwrap().pop().unwrap()?;
    let (port, handle) = serve(second, 1);
    connect(port, client, name);
    handle.join().unwrap().pop().unwrap()
}

/// A CP in Kong's shared mode issuing `tickets`.
fn kong_server(kong: &Pem, tickets: &SessionTickets) -> ServerTls {
    ServerTls::new(identity(kong), ClientAuth::Shared(None))
        .unwrap()
        .session_tickets(tickets)
        .unwrap()
}

fn secret(byte: u8) -> SessionTickets {
    SessionTickets::Shared(TicketSecret::new(&[byte; 48]).unwrap())
}

#[test]
fn a_restarted_server_with_the_same_secret_resumes() {
    let kong = certs::kong_shared();
    let server = |tickets: &SessionTickets| kong_server(&kong, tickets);
    let seen = after_restart(
        server(&secret(1)),
        server(&secret(1)),
        &kong_client(&kong),
        KONG_SERVER_NAME,
    );
    assert_eq!(seen.unwrap(), (Resumed, Some(der(&kong))));
}

#[test]
fn a_restarted_server_with_rotating_keys_or_another_secret_does_a_full_handshake() {
    let kong = certs::kong_shared();
    let server = |tickets: &SessionTickets| kong_server(&kong, tickets);
    for (first, second) in [
        (SessionTickets::Rotating, SessionTickets::Rotating),
        (secret(1), secret(2)),
        (secret(1), SessionTickets::Rotating),
    ] {
        let seen = after_restart(
            server(&first),
            server(&second),
            &kong_client(&kong),
            KONG_SERVER_NAME,
        );
        assert_eq!(
            seen.unwrap(),
            (Full, Some(der(&kong))),
            "{first:?} then {second:?}"
        );
    }
}

#[test]
fn changing_the_trusted_clients_invalidates_the_tickets() {
    let ca = Ca::new("cluster ca");
    let other = Ca::new("another ca");
    let leaf = ca.server(&["localhost"]);
    let dp = ca.client("dp-1");
    let server = |cas: String| {
        ServerTls::new(
            identity(&leaf),
            ClientAuth::pki_pem(cas.as_bytes()).unwrap(),
        )
        .unwrap()
        .session_tickets(&secret(1))
        .unwrap()
    };
    let client = ClientTls::new(
        TrustMode::ca_pem(ca.pem.cert.as_bytes()).unwrap(),
        Some(identity(&dp)),
    )
    .unwrap();
    // The DP is still trusted after the change, but by a verifier that has not seen it.
    let seen = after_restart(
        server(ca.pem.cert.clone()),
        server(format!("{}{}", ca.pem.cert, other.pem.cert)),
        &client,
        "localhost",
    );
    assert_eq!(seen.unwrap(), (Full, Some(der(&dp))));
}

#[test]
fn with_tickets_off_every_connection_is_a_full_handshake() {
    let kong = certs::kong_shared();
    let server = ServerTls::new(identity(&kong), ClientAuth::Shared(None))
        .unwrap()
        .session_tickets(&SessionTickets::Off)
        .unwrap();
    two_full_handshakes(server, &kong_client(&kong));
}

#[test]
fn a_client_without_resumption_never_offers_its_ticket() {
    let kong = certs::kong_shared();
    let server = ServerTls::new(identity(&kong), ClientAuth::Shared(None)).unwrap();
    two_full_handshakes(server, &kong_client(&kong).without_resumption());
}

/// Two connections of `client` to `server`: both sides see two full handshakes.
fn two_full_handshakes(server: ServerTls, client: &ClientTls) {
    let (port, handle) = serve(server, 2);
    let kinds: Vec<_> = (0..2)
        .map(|_| connect(port, client, KONG_SERVER_NAME))
        .collect();
    assert_eq!(kinds, [Full, Full]);
    let seen = ok(handle.join().unwrap());
    assert!(seen.iter().all(|(k, _)| *k == Full), "{seen:?}");
}

#[test]
fn clones_share_their_sessions_and_own_stores_do_not() {
    let kong = certs::kong_shared();
    let server = ServerTls::new(identity(&kong), ClientAuth::Shared(None)).unwrap();
    let (port, handle) = serve(server, 3);
    let client = kong_client(&kong);
    assert_eq!(connect(port, &client, KONG_SERVER_NAME), Full);
    // A clone (what every connection of one DataPlane uses) resumes the session...
    assert_eq!(connect(port, &client.clone(), KONG_SERVER_NAME), Resumed);
    // ...a copy with its own store (one DP of a benchmark fleet) has none to offer.
    assert_eq!(
        connect(port, &client.with_own_sessions(), KONG_SERVER_NAME),
        Full
    );
    handle.join().unwrap();
}

// ---- The roles: a DataPlane across a ControlPlane restart ----

fn start_cp(kong: &Pem, listen: &str, tickets: SessionTickets) -> ControlPlane {
    let cp = ControlPlane::builder()
        .listen(listen)
        .identity(identity(kong))
        .session_tickets(tickets)
        .start()
        .unwrap();
    cp.set_config(json!({"_format_version": "3.0", "services": []}))
        .unwrap();
    cp
}

/// Waits for the CP to see `node`'s config acked.
fn wait_acked(cp: &ControlPlane) {
    let events = cp.events();
    loop {
        match events.recv_timeout(PATIENCE) {
            Ok(CpEvent::ConfigAcked { .. }) => return,
            Ok(_) => {}
            Err(_) => panic!("no ConfigAcked within {PATIENCE:?}"),
        }
    }
}

fn restart_and_count(tickets: impl Fn() -> SessionTickets, resumption: bool) -> (u64, u64) {
    support::init_logs();
    let kong = certs::kong_shared();
    let cp = start_cp(&kong, "127.0.0.1:0", tickets());
    let addr = cp.local_addr();
    let dp = DataPlane::builder(addr.to_string())
        .trust(TrustMode::Pinned(der(&kong)))
        .identity(identity(&kong))
        .protocol(ProtocolChoice::Wrpc)
        .session_resumption(resumption)
        .reconnect(Reconnect::Fixed(Duration::from_millis(20)))
        .config_handler(|_: &ConfigUpdate<'_>| Ok(()))
        .start()
        .unwrap();
    let dp_events = dp.events();
    wait_acked(&cp);
    assert_eq!(cp.tls_handshakes(), (1, 0));
    // The restart: a new ControlPlane on the same address.
    cp.shutdown();
    drop(cp);
    loop {
        match dp_events.recv_timeout(PATIENCE) {
            Ok(DpEvent::Disconnected { .. }) => break,
            Ok(_) => {}
            Err(_) => panic!("the DP did not see the CP go within {PATIENCE:?}"),
        }
    }
    let cp = start_cp(&kong, &addr.to_string(), tickets());
    wait_acked(&cp);
    let counts = cp.tls_handshakes();
    drop(dp);
    counts
}

#[test]
fn a_data_plane_resumes_across_a_control_plane_restart_with_a_shared_secret() {
    let key = [7u8; 32];
    let shared = || SessionTickets::Shared(TicketSecret::new(&key).unwrap());
    // Failed attempts while the CP was away never reached TLS: exactly one handshake.
    assert_eq!(restart_and_count(shared, true), (0, 1));
}

#[test]
fn a_data_plane_does_a_full_handshake_after_a_restart_without_shared_keys() {
    assert_eq!(restart_and_count(|| SessionTickets::Rotating, true), (1, 0));
}

#[test]
fn a_data_plane_with_resumption_off_does_a_full_handshake_after_a_restart() {
    let key = [7u8; 32];
    let shared = || SessionTickets::Shared(TicketSecret::new(&key).unwrap());
    assert_eq!(restart_and_count(shared, false), (1, 0));
}
