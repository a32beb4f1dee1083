//! Two ends of a real TLS connection on loopback, handshaken with rustls directly (no
//! HTTP upgrade), for testing the channel and wRPC layers on their own.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use dpspec::channel::{Channel, ChannelConfig, Reader, Role};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};

use super::certs::Ca;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Handshaken TLS sessions for both ends of one loopback TCP connection.
pub fn tls_sessions() -> (
    (rustls::ClientConnection, TcpStream),
    (rustls::ServerConnection, TcpStream),
) {
    let ca = Ca::new("pair ca");
    let server = ca.server(&["localhost"]);
    let chain = vec![CertificateDer::from_pem_slice(server.cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap();
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.cert.as_bytes()).unwrap())
        .unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_thread = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(Arc::new(server_cfg)).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).unwrap();
        }
        (conn, sock)
    });
    let mut sock = TcpStream::connect(addr).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(client_cfg), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    let server = server_thread.join().unwrap();
    ((conn, sock), server)
}

/// A client channel and a server channel joined by one TLS connection.
pub fn channel_pair(
    client_cfg: ChannelConfig,
    server_cfg: ChannelConfig,
) -> ((Channel, Reader), (Channel, Reader)) {
    let ((cc, cs), (sc, ss)) = tls_sessions();
    let client = Channel::new(cc, cs, Vec::new(), Role::Client, client_cfg).unwrap();
    let server = Channel::new(sc, ss, Vec::new(), Role::Server, server_cfg).unwrap();
    (client, server)
}
