//! Server side (the CP): its certificate and how DPs are authenticated by theirs.

use std::path::Path;
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::pem::{certs_from_pem, first_cert_from_pem, read_file};
use super::tickets::{ticketer, NoTickets, SessionTickets};
use super::verify::PinnedClient;
use super::{owned, provider, Identity, TlsError, VERSIONS};

/// How the CP authenticates DPs by their client certificate.
///
/// In every mode but [`ClientAuth::None`] a client certificate is mandatory, and a
/// missing or refused one fails the TLS handshake with an alert: no HTTP byte is read.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No client certificate asked for.
    None,
    /// The client chain must lead to one of these CA certificates (Kong's
    /// `cluster_mtls = pki` with `cluster_ca_cert`). Certificates whose extended key
    /// usage is only clientAuth are accepted (Kong's Go CP wrongly refuses them).
    Pki(Vec<CertificateDer<'static>>),
    /// The client certificate must equal this one (Kong's `cluster_mtls = shared`: Kong
    /// compares SHA-256 digests, which is the same test). `None` pins the server's own
    /// leaf certificate, as Kong does. The certificate must also be within its validity
    /// window; the handshake signature proves the client holds its key. No CA names are
    /// offered to the client.
    Shared(Option<CertificateDer<'static>>),
}

impl ClientAuth {
    /// A [`ClientAuth::Pki`] from PEM text holding one or more CA certificates.
    pub fn pki_pem(pem: &[u8]) -> Result<ClientAuth, TlsError> {
        Ok(ClientAuth::Pki(certs_from_pem(pem, "client CA PEM")?))
    }

    /// A [`ClientAuth::Pki`] from a PEM file; errors name the file.
    pub fn pki_pem_file(path: impl AsRef<Path>) -> Result<ClientAuth, TlsError> {
        let (what, pem) = read_file(path.as_ref())?;
        Ok(ClientAuth::Pki(certs_from_pem(&pem, &what)?))
    }

    /// A [`ClientAuth::Shared`] pinning the first certificate of `pem`, or the server's own
    /// leaf when `pem` is `None`.
    pub fn shared_pem(pem: Option<&[u8]>) -> Result<ClientAuth, TlsError> {
        Ok(ClientAuth::Shared(match pem {
            Some(pem) => Some(first_cert_from_pem(pem, "shared certificate PEM")?),
            None => None,
        }))
    }

    /// A [`ClientAuth::Shared`] pinning the first certificate of a PEM file.
    pub fn shared_pem_file(path: impl AsRef<Path>) -> Result<ClientAuth, TlsError> {
        let (what, pem) = read_file(path.as_ref())?;
        Ok(ClientAuth::Shared(Some(first_cert_from_pem(&pem, &what)?)))
    }
}

/// A server TLS configuration; cheap to clone (it shares one `rustls::ServerConfig`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    /// A digest of the certificate chain and the client authentication: ticket keys
    /// derived from a shared secret depend on it.
    binding: [u8; 32],
}

impl ServerTls {
    /// Builds a configuration: TLS 1.2 and 1.3, the ring provider, `identity` as the
    /// server certificate and `auth` for client certificates, and session tickets
    /// [`SessionTickets::Rotating`] (change with [`ServerTls::session_tickets`]).
    pub fn new(identity: Identity, auth: ClientAuth) -> Result<ServerTls, TlsError> {
        if identity.chain.is_empty() {
            return Err(TlsError::Config(
                "the server certificate chain is empty".into(),
            ));
        }
        let binding = binding(&identity.chain, &auth);
        let provider = provider();
        let algs = provider.signature_verification_algorithms;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Pki(cas) => {
                if cas.is_empty() {
                    return Err(TlsError::Config("the client CA list is empty".into()));
                }
                let mut roots = RootCertStore::empty();
                for (i, ca) in cas.into_iter().enumerate() {
                    roots.add(ca).map_err(|e| {
                        TlsError::Config(format!(
                            "client CA certificate #{} cannot be used as a trust anchor: {e}",
                            i + 1
                        ))
                    })?;
                }
                let v: Arc<dyn ClientCertVerifier> =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| {
                            TlsError::Config(format!("client certificate verifier: {e}"))
                        })?;
                builder.with_client_cert_verifier(v)
            }
            ClientAuth::Shared(pinned) => {
                let pinned = pinned.unwrap_or_else(|| owned(&identity.chain[0]));
                builder.with_client_cert_verifier(Arc::new(PinnedClient { pinned, algs }))
            }
        };
        let config = builder
            .with_single_cert(identity.chain, identity.key)
            .map_err(|e| TlsError::Config(format!("server certificate and key: {e}")))?;
        ServerTls {
            config: Arc::new(config),
            binding,
        }
        .session_tickets(&SessionTickets::Rotating)
    }

    /// The same configuration issuing session tickets as `tickets` says; sessions
    /// established before keep their own configuration.
    pub fn session_tickets(self, tickets: &SessionTickets) -> Result<ServerTls, TlsError> {
        let mut config = Arc::unwrap_or_clone(self.config);
        match ticketer(tickets, self.binding)? {
            Some(t) => {
                config.ticketer = t;
                config.session_storage = rustls::server::ServerSessionMemoryCache::new(256);
                // rustls's default: two, so a client that opens two connections at
                // once (a probe and its upgrade) resumes both.
                config.send_tls13_tickets = 2;
            }
            None => {
                config.ticketer = Arc::new(NoTickets);
                config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                config.send_tls13_tickets = 0;
            }
        }
        Ok(ServerTls {
            config: Arc::new(config),
            binding: self.binding,
        })
    }

    internal_fn! {
        /// Starts a session for one accepted connection.
        fn session(&self) -> Result<rustls::ServerConnection, TlsError> {
            rustls::ServerConnection::new(self.config.clone()).map_err(TlsError::protocol)
        }
    }

    internal_fn! {
        /// The underlying rustls configuration.
        fn config(&self) -> &Arc<rustls::ServerConfig> {
            &self.config
        }
    }
}

/// What a ticket is bound to: the chain the server shows and the clients it accepts.
fn binding(chain: &[CertificateDer<'static>], auth: &ClientAuth) -> [u8; 32] {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    let mut put = |bytes: &[u8]| {
        d.update(&(bytes.len() as u64).to_be_bytes());
        d.update(bytes);
    };
    put(b"dpspec ticket binding v1");
    for c in chain {
        put(c.as_ref());
    }
    match auth {
        ClientAuth::None => put(b"none"),
        ClientAuth::Pki(cas) => {
            put(b"pki");
            for c in cas {
                put(c.as_ref());
            }
        }
        ClientAuth::Shared(pinned) => {
            put(b"shared");
            put(pinned.as_ref().unwrap_or(&chain[0]).as_ref());
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(d.finish().as_ref());
    out
}

/// Refuses a resumed session whose client certificate has expired (or is not valid yet)
/// since the full handshake that verified it: a resumption skips the verifier, and each
/// one issues new tickets, so without this a data plane could resume forever on a
/// certificate that has run out.
pub(crate) fn check_resumed(conn: &rustls::ServerConnection) -> Result<(), TlsError> {
    check_resumed_at(
        conn.handshake_kind(),
        conn.peer_certificates().and_then(|c| c.first()),
        UnixTime::now(),
    )
}

fn check_resumed_at(
    kind: Option<rustls::HandshakeKind>,
    client_cert: Option<&CertificateDer<'_>>,
    now: UnixTime,
) -> Result<(), TlsError> {
    match (kind, client_cert) {
        (Some(rustls::HandshakeKind::Resumed), Some(cert)) => {
            super::validity::check(cert.as_ref(), now).map_err(|e| {
                TlsError::from_rustls(rustls::Error::InvalidCertificate(e), rustls::Side::Server)
            })
        }
        _ => Ok(()),
    }
}

/// The client's end-entity certificate after the handshake, if it presented one.
pub fn peer_certificate(conn: &rustls::ServerConnection) -> Option<CertificateDer<'static>> {
    conn.peer_certificates().and_then(|c| c.first()).map(owned)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustls::HandshakeKind;

    use super::*;

    /// A client certificate valid from 2020-01-01 to 2030-01-01.
    fn cert() -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn at(year_2020_plus_days: u64) -> UnixTime {
        let jan_2020 = 1_577_836_800;
        UnixTime::since_unix_epoch(Duration::from_secs(jan_2020 + year_2020_plus_days * 86_400))
    }

    #[test]
    fn a_resumed_session_on_an_expired_client_certificate_is_refused() {
        let cert = cert();
        let resumed = Some(HandshakeKind::Resumed);
        assert!(check_resumed_at(resumed, Some(&cert), at(365)).is_ok());
        let late = check_resumed_at(resumed, Some(&cert), at(11 * 365)).unwrap_err();
        assert!(
            matches!(
                late,
                TlsError::Expired {
                    peer: super::super::CertificateOf::Client,
                    ..
                }
            ),
            "{late:?}"
        );
        let early = UnixTime::since_unix_epoch(Duration::from_secs(1_500_000_000));
        assert!(matches!(
            check_resumed_at(resumed, Some(&cert), early),
            Err(TlsError::NotYetValid { .. })
        ));
    }

    #[test]
    fn full_handshakes_and_sessions_without_a_client_certificate_pass() {
        let cert = cert();
        // A full handshake ran the verifier, which checked the window itself.
        assert!(check_resumed_at(Some(HandshakeKind::Full), Some(&cert), at(11 * 365)).is_ok());
        assert!(check_resumed_at(Some(HandshakeKind::Resumed), None, at(11 * 365)).is_ok());
    }
}
