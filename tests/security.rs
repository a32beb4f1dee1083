//! Security checks over real TLS on 127.0.0.1: old TLS versions refused before HTTP, bad
//! server certificates refused by the DP with the typed error, DPs without the right
//! client certificate never reaching HTTP, the verification opt-out warning on every
//! connection, and no secret in any log line at any level during a whole CP + DP session
//! through a CONNECT proxy with credentials.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dpspec::dp::{ConfigUpdate, DataPlane, DpEvent, Reconnect};
use dpspec::http::{request, HttpHandler, Listener, NodeIdentity, Request, Response, ServerConfig};
use dpspec::proxy::ProxyUrl;
use dpspec::tls::{
    self, CertificateOf, ClientAuth, ClientTls, Identity, ServerTls, TlsError, TrustMode,
};
use dpspec::upgrade::{
    self, dial, DialOptions, Endpoint, UpgradeHandler, UpgradeTarget, Upgraded, WRPC_PATH,
};
use dpspec::ControlPlane;
use support::certs::{kong_shared, self_signed, Ca, Pem};
use support::logs;

const PATIENCE: Duration = Duration::from_secs(5);

fn identity(p: &Pem) -> Identity {
    Identity::from_pem(p.cert.as_bytes(), p.key.as_bytes()).unwrap()
}

fn dp_node() -> NodeIdentity {
    NodeIdentity::new("0b9d1b7e-0000-4000-8000-000000005ec1", "dp-sec", "3.1.0")
}

/// Counts every request that reaches HTTP: plain requests and upgrades alike.
#[derive(Default)]
struct Counter {
    http: AtomicUsize,
    upgrades: AtomicUsize,
}

impl Counter {
    fn total(&self) -> usize {
        self.http.load(Ordering::SeqCst) + self.upgrades.load(Ordering::SeqCst)
    }
}

struct CountHttp(Arc<Counter>);

impl HttpHandler for CountHttp {
    fn handle(&self, _: &Request) -> Response {
        self.0.http.fetch_add(1, Ordering::SeqCst);
        Response::new(200, "reached")
    }
}

struct CountUpgrades(Arc<Counter>);

impl UpgradeHandler for CountUpgrades {
    fn admit(&self, _: &dpspec::upgrade::UpgradeRequest) -> Result<(), dpspec::upgrade::Rejection> {
        self.0.upgrades.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn upgraded(&self, _: Upgraded) {}
}

/// A CP listener on 127.0.0.1:0 whose every handler counts.
fn counting_cp(tls: ServerTls) -> (Listener, Arc<Counter>) {
    let counter = Arc::new(Counter::default());
    let config = ServerConfig::new("cp-sec")
        .handler("/v1/probe", Arc::new(CountHttp(counter.clone())))
        .route(
            WRPC_PATH,
            upgrade::route(Endpoint::wrpc(), Arc::new(CountUpgrades(counter.clone()))),
        );
    let listener = Listener::bind("127.0.0.1:0", tls, config).unwrap();
    (listener, counter)
}

fn opts(port: u16, tls: ClientTls) -> DialOptions {
    let mut o = DialOptions::new("127.0.0.1", port, tls, dp_node());
    o = o.connect_timeout(PATIENCE);
    o
}

fn tls_error(e: dpspec::Error) -> TlsError {
    match e {
        dpspec::Error::Tls(t) => t,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

// -- TLS below 1.2 ---------------------------------------------------------------------

/// A ClientHello that offers only `version` (0x0301 TLS 1.0, 0x0302 TLS 1.1): no
/// supported_versions extension, suites of that era, SNI `localhost`; with
/// `signature_algorithms` when `sig_algs` (TLS 1.1 defines no such extension, but some
/// clients send it anyway).
fn legacy_client_hello(version: [u8; 2], sig_algs: bool) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    let suites: &[u8] = &[0xc0, 0x14, 0xc0, 0x0a, 0xc0, 0x13, 0x00, 0x2f, 0x00, 0x35];
    body.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    body.extend_from_slice(suites);
    body.extend_from_slice(&[1, 0]); // compression: null only
    let mut ext = Vec::new();
    // server_name: localhost
    let name = b"localhost";
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    // supported_groups: secp256r1, secp384r1; ec_point_formats: uncompressed
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x18]);
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    if sig_algs {
        // ecdsa_secp256r1_sha256, rsa_pkcs1_sha256, rsa_pkcs1_sha1
        ext.extend_from_slice(&[
            0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x04, 0x01, 0x02, 0x01,
        ]);
    }
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut hs = vec![0x01]; // ClientHello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 record version
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Sends `hello` and reads everything the server answers until it closes.
fn send_hello(port: u16, hello: &[u8]) -> Vec<u8> {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sock.write_all(hello).unwrap();
    let mut answer = Vec::new();
    // A reset after the alert is fine: keep what arrived.
    let _ = sock.read_to_end(&mut answer);
    answer
}

/// The description of the fatal alert `answer` is made of, if it is exactly one TLS
/// alert record at level fatal (2).
fn fatal_alert(answer: &[u8]) -> Option<u8> {
    match answer {
        [0x15, 0x03, _, 0x00, 0x02, 0x02, description] => Some(*description),
        _ => None,
    }
}

/// protocol_version: the version check refused the hello.
const PROTOCOL_VERSION: u8 = 70;
/// handshake_failure: rustls checks for signature_algorithms (which TLS 1.0 and 1.1
/// clients do not send) before the version.
const HANDSHAKE_FAILURE: u8 = 40;

fn pki_server(ca: &Ca) -> ServerTls {
    ServerTls::new(
        identity(&ca.server(&["localhost", "127.0.0.1"])),
        ClientAuth::None,
    )
    .unwrap()
}

#[test]
fn tls_1_0_and_1_1_client_hellos_get_a_fatal_alert_and_never_reach_http() {
    let ca = Ca::new("sec ca");
    let (cp, counter) = counting_cp(pki_server(&ca));
    for version in [[3, 1], [3, 2]] {
        for (sig_algs, alert) in [(false, HANDSHAKE_FAILURE), (true, PROTOCOL_VERSION)] {
            let answer = send_hello(
                cp.local_addr().port(),
                &legacy_client_hello(version, sig_algs),
            );
            assert_eq!(
                fatal_alert(&answer),
                Some(alert),
                "TLS {version:?}, signature_algorithms {sig_algs}: answer {answer:02x?}"
            );
        }
    }
    assert_eq!(counter.total(), 0);
    // The same listener serves a TLS 1.2+ DP, so the counters do count.
    let client = ClientTls::new(TrustMode::ca_pem(ca.pem.cert.as_bytes()).unwrap(), None).unwrap();
    dial(
        &opts(cp.local_addr().port(), client),
        &UpgradeTarget::wrpc(),
    )
    .unwrap();
    assert_eq!(counter.upgrades.load(Ordering::SeqCst), 1);
    assert_eq!(counter.http.load(Ordering::SeqCst), 0);
}

/// Runs `tls::server_handshake` against `hello`; returns its error and the answer.
fn handshake_against(hello: &[u8]) -> (TlsError, Vec<u8>) {
    let server = pki_server(&Ca::new("sec ca"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut conn = server.session().unwrap();
        tls::server_handshake(&mut conn, &mut sock)
    });
    let answer = send_hello(port, hello);
    (handle.join().unwrap().unwrap_err(), answer)
}

#[test]
fn server_handshake_refuses_tls_1_1_with_a_protocol_version_error() {
    let (err, answer) = handshake_against(&legacy_client_hello([3, 2], true));
    match &err {
        TlsError::ProtocolVersion(why) => assert_eq!(why, "Tls12NotOffered"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fatal_alert(&answer), Some(PROTOCOL_VERSION));
    assert!(err.to_string().contains("TLS 1.2"), "{err}");
    // Without signature_algorithms, refused all the same (typed as incompatible).
    let (err, answer) = handshake_against(&legacy_client_hello([3, 1], false));
    assert!(matches!(err, TlsError::ProtocolVersion(_)), "{err:?}");
    assert_eq!(fatal_alert(&answer), Some(HANDSHAKE_FAILURE));
}

// -- server certificates the DP must refuse --------------------------------------------

/// Dials a counting CP serving `leaf` with a DP that trusts `trust`; returns the error
/// and checks nothing reached HTTP.
fn dial_refused(leaf: &Pem, trust: TrustMode, server_name: Option<&str>) -> TlsError {
    let (cp, counter) = counting_cp(ServerTls::new(identity(leaf), ClientAuth::None).unwrap());
    let mut o = opts(cp.local_addr().port(), ClientTls::new(trust, None).unwrap());
    if let Some(name) = server_name {
        o = o.server_name(name);
    }
    let err = tls_error(dial(&o, &UpgradeTarget::wrpc()).unwrap_err());
    assert_eq!(
        counter.total(),
        0,
        "a refused server must not get an HTTP request"
    );
    err
}

#[test]
fn dp_refuses_an_expired_server_certificate() {
    let ca = Ca::new("sec ca");
    let leaf = ca.server_valid(&["localhost", "127.0.0.1"], (2001, 1, 1), (2002, 1, 1));
    let err = dial_refused(
        &leaf,
        TrustMode::ca_pem(ca.pem.cert.as_bytes()).unwrap(),
        None,
    );
    assert!(
        matches!(
            err,
            TlsError::Expired {
                peer: CertificateOf::Server,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn dp_refuses_a_server_certificate_not_valid_yet() {
    let ca = Ca::new("sec ca");
    let leaf = ca.server_valid(&["localhost", "127.0.0.1"], (2090, 1, 1), (2091, 1, 1));
    let err = dial_refused(
        &leaf,
        TrustMode::ca_pem(ca.pem.cert.as_bytes()).unwrap(),
        None,
    );
    assert!(
        matches!(
            err,
            TlsError::NotYetValid {
                peer: CertificateOf::Server,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn dp_refuses_a_server_certificate_for_another_name() {
    let ca = Ca::new("sec ca");
    let leaf = ca.server(&["cp.other.example"]);
    let err = dial_refused(
        &leaf,
        TrustMode::ca_pem(ca.pem.cert.as_bytes()).unwrap(),
        Some("cp.example"),
    );
    match err {
        TlsError::NameMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, "cp.example");
            assert_eq!(presented, vec!["cp.other.example".to_string()]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dp_refuses_a_self_signed_server_certificate_it_has_not_pinned() {
    let leaf = self_signed(&["localhost", "127.0.0.1"]);
    // Trusting another CA, the system roots, or pinning another certificate: all refuse.
    let other_ca = Ca::new("someone else");
    let err = dial_refused(
        &leaf,
        TrustMode::ca_pem(other_ca.pem.cert.as_bytes()).unwrap(),
        None,
    );
    assert!(
        matches!(
            err,
            TlsError::UnknownIssuer {
                peer: CertificateOf::Server
            }
        ),
        "{err:?}"
    );
    let err = dial_refused(&leaf, TrustMode::WebPki, None);
    assert!(
        matches!(
            err,
            TlsError::UnknownIssuer {
                peer: CertificateOf::Server
            }
        ),
        "{err:?}"
    );
    let other = self_signed(&["localhost", "127.0.0.1"]);
    let err = dial_refused(
        &leaf,
        TrustMode::pinned_pem(other.cert.as_bytes()).unwrap(),
        None,
    );
    assert!(
        matches!(
            err,
            TlsError::PinMismatch {
                peer: CertificateOf::Server
            }
        ),
        "{err:?}"
    );
}

// -- client certificates the CP must refuse ---------------------------------------------

/// Tries both an upgrade and a plain request with `client`: both must fail with a TLS
/// error (the one `expect` accepts) and nothing may reach HTTP.
fn assert_refused_before_http(
    port: u16,
    client: ClientTls,
    counter: &Counter,
    expect: fn(&TlsError) -> bool,
) {
    let err = tls_error(dial(&opts(port, client.clone()), &UpgradeTarget::wrpc()).unwrap_err());
    assert!(expect(&err), "{err:?}");
    let err = tls_error(request(&opts(port, client), "GET", "/v1/probe", b"").unwrap_err());
    assert!(expect(&err), "{err:?}");
    assert_eq!(counter.total(), 0, "no request may reach HTTP");
}

fn missing(e: &TlsError) -> bool {
    matches!(e, TlsError::ClientCertMissing)
}

fn rejected(e: &TlsError) -> bool {
    matches!(e, TlsError::ClientCertRejected { .. })
}

#[test]
fn pki_cp_never_serves_http_to_a_dp_without_the_right_client_certificate() {
    let ca = Ca::new("cluster ca");
    let server = ServerTls::new(
        identity(&ca.server(&["localhost", "127.0.0.1"])),
        ClientAuth::pki_pem(ca.pem.cert.as_bytes()).unwrap(),
    )
    .unwrap();
    let (cp, counter) = counting_cp(server);
    let port = cp.local_addr().port();
    let trust = || TrustMode::ca_pem(ca.pem.cert.as_bytes()).unwrap();

    // No certificate, one from another CA, a self-signed one.
    assert_refused_before_http(
        port,
        ClientTls::new(trust(), None).unwrap(),
        &counter,
        missing,
    );
    let stranger = Ca::new("stranger ca").client("dp");
    assert_refused_before_http(
        port,
        ClientTls::new(trust(), Some(identity(&stranger))).unwrap(),
        &counter,
        rejected,
    );
    let selfish = self_signed(&["dp"]);
    assert_refused_before_http(
        port,
        ClientTls::new(trust(), Some(identity(&selfish))).unwrap(),
        &counter,
        rejected,
    );

    // The right certificate gets through, so the counter does count.
    let good = ClientTls::new(trust(), Some(identity(&ca.client("dp")))).unwrap();
    dial(&opts(port, good), &UpgradeTarget::wrpc()).unwrap();
    assert_eq!(counter.upgrades.load(Ordering::SeqCst), 1);
}

#[test]
fn shared_mode_cp_never_serves_http_to_a_dp_with_another_certificate() {
    let cluster = kong_shared();
    let server = ServerTls::new(identity(&cluster), ClientAuth::Shared(None)).unwrap();
    let (cp, counter) = counting_cp(server);
    let port = cp.local_addr().port();
    let pinned = || TrustMode::pinned_pem(cluster.cert.as_bytes()).unwrap();

    assert_refused_before_http(
        port,
        ClientTls::new(pinned(), None).unwrap(),
        &counter,
        missing,
    );
    let other = kong_shared();
    assert_refused_before_http(
        port,
        ClientTls::new(pinned(), Some(identity(&other))).unwrap(),
        &counter,
        rejected,
    );

    let good = ClientTls::new(pinned(), Some(identity(&cluster))).unwrap();
    dial(&opts(port, good), &UpgradeTarget::wrpc()).unwrap();
    assert_eq!(counter.upgrades.load(Ordering::SeqCst), 1);
}

// -- the verification opt-out ------------------------------------------------------------

#[test]
fn verification_opt_out_warns_on_every_connection() {
    logs::capture();
    let (cp, counter) = counting_cp(
        ServerTls::new(identity(&self_signed(&["localhost"])), ClientAuth::None).unwrap(),
    );
    let name = "no-verify.sec.test";
    let needle = format!("verification is OFF for {name}");
    let client = ClientTls::new(TrustMode::DangerousNoVerification, None).unwrap();
    for n in 1..=2 {
        let mut o = opts(cp.local_addr().port(), client.clone());
        o = o.server_name(name.to_string());
        dial(&o, &UpgradeTarget::wrpc()).unwrap();
        let warnings = logs::lines_with(&needle);
        assert_eq!(warnings.len(), n, "{warnings:?}");
        assert!(
            warnings.iter().all(|l| l.starts_with("WARN ")),
            "{warnings:?}"
        );
    }
    assert_eq!(counter.upgrades.load(Ordering::SeqCst), 2);
}

// -- no secret in the logs ---------------------------------------------------------------

/// The lines of a PEM's base64 body: each is secret for a key.
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_whole_session_through_an_authenticating_proxy_logs_no_secret() {
    logs::capture();
    log::set_max_level(log::LevelFilter::Trace);

    let cluster = kong_shared();
    let user = "dp-user";
    let password = "pr0xy-S3cret-Value";
    let basic = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
    let proxy = support::proxy::start(support::proxy::Behavior::Tunnel, Some(&basic));

    let cp = ControlPlane::builder()
        .listen("127.0.0.1:0")
        .identity(identity(&cluster))
        .node_id("cp-secrets")
        .start()
        .unwrap();
    let url = ProxyUrl::parse(&format!(
        "http://{user}:{password}@127.0.0.1:{}",
        proxy.port
    ))
    .unwrap();
    let dp = DataPlane::builder(cp.local_addr().to_string())
        .trust(TrustMode::pinned_pem(cluster.cert.as_bytes()).unwrap())
        .identity(identity(&cluster))
        .proxy(url)
        .reconnect(Reconnect::Fixed(Duration::from_millis(20)))
        .ping_interval(Duration::from_millis(50))
        .config_handler(|_: &ConfigUpdate<'_>| Ok(()))
        .start()
        .unwrap();
    let version = cp
        .set_config(serde_json::json!({"_format_version": "3.0", "services": []}))
        .unwrap();
    let mut applied = false;
    let mut pinged = false;
    while !(applied && pinged) {
        match dp
            .events()
            .recv_timeout(PATIENCE)
            .expect("the session did not complete")
        {
            DpEvent::ConfigApplied { .. } => applied = true,
            DpEvent::Pinged { .. } if applied => pinged = true,
            _ => {}
        }
    }
    assert!(version > 0);
    dp.shutdown();
    cp.shutdown();

    // The proxy did get the credentials: the test is not vacuous.
    let head = String::from_utf8(proxy.heads.recv_timeout(PATIENCE).unwrap()).unwrap();
    assert!(head.contains(&basic), "{head}");

    let all = logs::lines_with("");
    assert!(
        all.iter()
            .any(|l| l.starts_with("TRACE ") || l.starts_with("DEBUG ")),
        "logging at every level was on"
    );
    let mut secrets: Vec<String> = pem_body_lines(&cluster.key);
    secrets.push(cluster.key.clone());
    secrets.push(password.to_string());
    secrets.push(basic.clone());
    secrets.push(basic.trim_start_matches("Basic ").to_string());
    for line in &all {
        for s in &secrets {
            assert!(!line.contains(s.as_str()), "a secret was logged: {line}");
        }
        let lower = line.to_ascii_lowercase();
        for header in ["proxy-authorization:", "authorization:"] {
            assert!(
                !lower.contains(header),
                "a credential header was logged: {line}"
            );
        }
    }
}
