//! Server side (the CP): its certificate and how DPs are authenticated by theirs.

use std::path::Path;
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;

use super::pem::{certs_from_pem, first_cert_from_pem, read_file};
use super::verify::PinnedClient;
use super::{owned, provider, Identity, ProtocolError, TlsError, VERSIONS};

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
}

impl ServerTls {
    /// Builds a configuration: TLS 1.2 and 1.3, the ring provider, `identity` as the
    /// server certificate and `auth` for client certificates.
    pub fn new(identity: Identity, auth: ClientAuth) -> Result<ServerTls, TlsError> {
        if identity.chain.is_empty() {
            return Err(TlsError::Config(
                "the server certificate chain is empty".into(),
            ));
        }
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
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    internal_fn! {
        /// Starts a session for one accepted connection.
        fn session(&self) -> Result<rustls::ServerConnection, TlsError> {
            rustls::ServerConnection::new(self.config.clone()).map_err(|e| TlsError::Protocol(ProtocolError(Box::new(e))))
        }
    }

    internal_fn! {
        /// The underlying rustls configuration.
        fn config(&self) -> &Arc<rustls::ServerConfig> {
            &self.config
        }
    }
}

/// The client's end-entity certificate after the handshake, if it presented one.
pub fn peer_certificate(conn: &rustls::ServerConnection) -> Option<CertificateDer<'static>> {
    conn.peer_certificates().and_then(|c| c.first()).map(owned)
}
