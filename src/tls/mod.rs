//! TLS with rustls and the ring provider: Kong's trust modes on the DP side, certificate
//! and client authentication on the CP side, and handshakes driven on blocking sockets.
//!
//! Only TLS 1.2 and 1.3 are enabled, and the ring provider is always passed explicitly,
//! so another crypto provider in the same process never changes what we do.
//!
//! | Kong setting | DP side ([`TrustMode`]) | CP side ([`ClientAuth`]) |
//! |---|---|---|
//! | `cluster_mtls = shared` | [`TrustMode::Pinned`] + the same [`Identity`] | [`ClientAuth::Shared`] |
//! | `cluster_mtls = pki` | [`TrustMode::CaBundle`] (or [`TrustMode::WebPki`]) + its own [`Identity`] | [`ClientAuth::Pki`] |

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{ConnectionCommon, Side, SideData};
#[cfg(feature = "cp")]
use rustls_pki_types::CertificateDer;

#[cfg(feature = "dp")]
mod client;
mod error;
mod pem;
#[cfg(feature = "cp")]
mod server;
#[cfg(feature = "cp")]
mod tickets;
mod validity;
mod verify;

#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub use client::{ClientTls, TrustMode};
pub use error::{CertificateOf, ProtocolError, TlsError};
pub use pem::Identity;
#[cfg(feature = "cp")]
internal_use!(server::peer_certificate);
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use server::{ClientAuth, ServerTls};
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use tickets::{SessionTickets, TicketSecret, DEFAULT_TICKET_ROTATION};

/// The server name Kong uses in shared mode for SNI and verification.
pub const KONG_SERVER_NAME: &str = "kong_clustering";

/// The ring provider; every configuration gets it explicitly.
///
/// Cipher suites are ring's, with AES-128-GCM ahead of AES-256-GCM: config pushes are
/// bulk data (a 1 MiB config to 10,000 DPs is 10 GiB to seal), AES-128 seals it with 10
/// rounds instead of 14, and it is as acceptable for TLS 1.2 and 1.3 session keys as
/// AES-256. Kong's nodes (OpenSSL) offer and accept both.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut provider = rustls::crypto::ring::default_provider();
    let preferred = [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    let rest: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| !preferred.iter().any(|p| p.suite() == s.suite()))
        .copied()
        .collect();
    provider.cipher_suites = preferred.into_iter().chain(rest).collect();
    Arc::new(provider)
}

/// The protocol versions we speak.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[cfg(feature = "dp")]
internal_fn! {
    /// Runs a client handshake to completion on a blocking socket. Only with the `dp` feature.
    ///
    /// The caller bounds the socket's reads and writes (one deadline for the whole
    /// handshake: a socket that sets its timeout to the time left before each call); running
    /// out of time gives [`TlsError::Timeout`]. With TLS 1.3 the server checks our client certificate after we
    /// have sent our last handshake message, so its refusal can also show up on the first
    /// read afterwards (map it with `TlsError::from_rustls`).
    ///
    /// Our last handshake message (the client Finished) is left queued: the first request
    /// goes out with it in one write ([`write_with_pending`]), or a `rustls::Stream`
    /// sends it before anything else. The server waits for it, so write (or read
    /// through a `Stream`) next.
    fn client_handshake(
        conn: &mut rustls::ClientConnection,
        sock: &mut (impl Read + Write),
    ) -> Result<(), TlsError> {
        drive(&mut **conn, sock, Side::Client)
    }
}

#[cfg(feature = "cp")]
internal_fn! {
    /// Runs a server handshake to completion on a blocking socket. Only with the `cp` feature.
    ///
    /// A refused client certificate ends the handshake with a TLS alert sent to the client,
    /// before any HTTP byte is read. The caller bounds the socket as for
    /// [`client_handshake`]. With TLS 1.3 the session tickets sent after the handshake are
    /// left queued, to go out with the first response ([`write_with_pending`]); the
    /// client does not wait for them.
    fn server_handshake(
        conn: &mut rustls::ServerConnection,
        sock: &mut (impl Read + Write),
    ) -> Result<(), TlsError> {
        drive(&mut **conn, sock, Side::Server)?;
        server::check_resumed(conn)
    }
}

internal_fn! {
    /// Queues `data` and writes it together with every TLS record that waits (the end of
    /// a handshake that [`client_handshake`] or [`server_handshake`] left queued), in one
    /// `writev` when the socket takes it all: a `rustls::Stream` would write what waits
    /// first, as a segment (and a wake-up of the peer) of its own.
    fn write_with_pending<D: SideData>(
        conn: &mut ConnectionCommon<D>,
        sock: &mut (impl Read + Write),
        data: &[u8],
    ) -> io::Result<()> {
        conn.writer().write_all(data)?;
        while conn.wants_write() {
            match conn.write_tls(sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        sock.flush()
    }
}

/// Whether the records that wait when the handshake is over may wait for the first write:
/// a TLS 1.3 client's Finished (or a TLS 1.2 client's after a resumption: the server sent
/// its own first), and a TLS 1.3 server's tickets. A TLS 1.2 server's last flight (its
/// Finished) must go now: the client waits for it before it sends anything.
fn may_wait<D: SideData>(conn: &ConnectionCommon<D>, side: Side) -> bool {
    match side {
        Side::Client => true,
        Side::Server => conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3),
    }
}

fn drive<D: SideData>(
    conn: &mut ConnectionCommon<D>,
    sock: &mut (impl Read + Write),
    side: Side,
) -> Result<(), TlsError> {
    loop {
        if !conn.is_handshaking() && may_wait(conn, side) {
            return Ok(());
        }
        flush(conn, sock)?;
        if !conn.is_handshaking() {
            return Ok(());
        }
        let n = match conn.read_tls(sock) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TlsError::from_io(e)),
        };
        if n == 0 {
            return Err(TlsError::Closed);
        }
        if let Err(e) = conn.process_new_packets() {
            // Send the alert rustls queued, so the peer learns why; ignore failures, the
            // handshake error is what matters.
            let _ = flush(conn, sock);
            let err = TlsError::from_rustls(e, side);
            log::debug!("TLS handshake failed: {}", crate::error::Chain(&err));
            return Err(err);
        }
    }
}

fn flush<D: SideData>(
    conn: &mut ConnectionCommon<D>,
    sock: &mut (impl Read + Write),
) -> Result<(), TlsError> {
    while conn.wants_write() {
        match conn.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TlsError::from_io(e)),
        }
    }
    sock.flush().map_err(TlsError::from_io)
}

#[cfg(feature = "cp")]
fn owned(c: &CertificateDer<'_>) -> CertificateDer<'static> {
    c.clone().into_owned()
}
