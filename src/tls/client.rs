//! Client side (the DP): how the CP's certificate is trusted, and the client identity.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};

use super::pem::{certs_from_pem, first_cert_from_pem, read_file};
use super::verify::{NoVerification, PinnedServer};
use super::{provider, Identity, TlsError, KONG_SERVER_NAME, VERSIONS};

/// How the DP decides to trust the CP's certificate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TrustMode {
    /// The Mozilla roots from webpki-roots, with the usual name and validity checks.
    WebPki,
    /// These CA certificates only (Kong's `cluster_mtls = pki` with `cluster_ca_cert`),
    /// with the usual name and validity checks.
    CaBundle(Vec<CertificateDer<'static>>),
    /// Exactly this certificate (Kong's `cluster_mtls = shared`): the CP must present it,
    /// byte for byte, within its validity window. No name check (Kong's shared
    /// certificate has CN `kong_clustering` and no subjectAltName); the handshake
    /// signatures are still verified, so the CP must hold its key.
    Pinned(CertificateDer<'static>),
    /// No certificate check at all; only the handshake signatures are verified. Anyone
    /// on the path can impersonate the CP. Every session logs a warning.
    DangerousNoVerification,
}

impl TrustMode {
    /// A [`TrustMode::CaBundle`] from PEM text holding one or more CA certificates.
    pub fn ca_pem(pem: &[u8]) -> Result<TrustMode, TlsError> {
        Ok(TrustMode::CaBundle(certs_from_pem(pem, "CA bundle PEM")?))
    }

    /// A [`TrustMode::CaBundle`] from a PEM file; errors name the file.
    pub fn ca_pem_file(path: impl AsRef<Path>) -> Result<TrustMode, TlsError> {
        let (what, pem) = read_file(path.as_ref())?;
        Ok(TrustMode::CaBundle(certs_from_pem(&pem, &what)?))
    }

    /// A [`TrustMode::Pinned`] from PEM text; the first certificate is pinned.
    pub fn pinned_pem(pem: &[u8]) -> Result<TrustMode, TlsError> {
        Ok(TrustMode::Pinned(first_cert_from_pem(
            pem,
            "pinned certificate PEM",
        )?))
    }

    /// A [`TrustMode::Pinned`] from a PEM file (Kong's `cluster_cert`); errors name the file.
    pub fn pinned_pem_file(path: impl AsRef<Path>) -> Result<TrustMode, TlsError> {
        let (what, pem) = read_file(path.as_ref())?;
        Ok(TrustMode::Pinned(first_cert_from_pem(&pem, &what)?))
    }
}

/// A client TLS configuration; cheap to clone (it shares one `rustls::ClientConfig`).
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    pinned: bool,
    dangerous: bool,
}

impl ClientTls {
    /// Builds a configuration: TLS 1.2 and 1.3, the ring provider, `trust` for the
    /// server's certificate, and `identity` as the client certificate if given (required
    /// by Kong in both `shared` and `pki` modes).
    pub fn new(trust: TrustMode, identity: Option<Identity>) -> Result<ClientTls, TlsError> {
        let provider = provider();
        let algs = provider.signature_verification_algorithms;
        let (verifier, pinned, dangerous): (Arc<dyn ServerCertVerifier>, bool, bool) = match trust {
            TrustMode::WebPki => {
                let roots = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                (webpki_verifier(roots, &provider)?, false, false)
            }
            TrustMode::CaBundle(cas) => {
                if cas.is_empty() {
                    return Err(TlsError::Config("the CA bundle is empty".into()));
                }
                let mut roots = RootCertStore::empty();
                for (i, ca) in cas.into_iter().enumerate() {
                    roots.add(ca).map_err(|e| {
                        TlsError::Config(format!(
                            "CA certificate #{} of the bundle cannot be used as a trust anchor: {e}",
                            i + 1
                        ))
                    })?;
                }
                (webpki_verifier(roots, &provider)?, false, false)
            }
            TrustMode::Pinned(pinned) => (Arc::new(PinnedServer { pinned, algs }), true, false),
            TrustMode::DangerousNoVerification => (Arc::new(NoVerification { algs }), false, true),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain, id.key)
                .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.resumption = own_sessions();
        Ok(ClientTls {
            config: Arc::new(config),
            pinned,
            dangerous,
        })
    }

    internal_fn! {
        /// Starts a session to `server_name`: a DNS name (sent as SNI and verified) or an IP
        /// address literal, bracketed or not (no SNI, verified against IP subjectAltNames).
        fn session(&self, server_name: &str) -> Result<rustls::ClientConnection, TlsError> {
            let bare = server_name
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(server_name);
            let name = ServerName::try_from(bare.to_string())
                .map_err(|_| TlsError::InvalidServerName(server_name.to_string()))?;
            if self.dangerous {
                log::warn!(
                    "TLS certificate verification is OFF for {server_name}: this is dangerous, \
                     anyone on the network path can impersonate the control plane"
                );
            }
            rustls::ClientConnection::new(self.config.clone(), name).map_err(TlsError::protocol)
        }
    }

    /// The server name to use when the user gives none: `kong_clustering` in pinned
    /// (shared) mode, as Kong's DP does; `None` otherwise (use the CP's host).
    pub fn default_server_name(&self) -> Option<&'static str> {
        self.pinned.then_some(KONG_SERVER_NAME)
    }

    internal_fn! {
        /// The underlying rustls configuration.
        fn config(&self) -> &Arc<rustls::ClientConfig> {
            &self.config
        }
    }

    internal_fn! {
        /// The same configuration with resumption off: every connection does a full
        /// handshake, as Kong's data planes do.
        fn without_resumption(&self) -> ClientTls {
            self.with_resumption(rustls::client::Resumption::disabled())
        }
    }

    internal_fn! {
        /// The same configuration with a session store of its own: clones of a
        /// `ClientTls` share theirs (a data plane's connections resume each other's
        /// sessions), this one does not. For benchmarks that run many data planes in one
        /// process.
        fn with_own_sessions(&self) -> ClientTls {
            self.with_resumption(own_sessions())
        }
    }

    fn with_resumption(&self, resumption: rustls::client::Resumption) -> ClientTls {
        let mut config = (*self.config).clone();
        config.resumption = resumption;
        ClientTls {
            config: Arc::new(config),
            ..self.clone()
        }
    }
}

/// A session store for one data plane: it talks to one control plane name, so a few
/// entries are plenty (each holds up to 8 TLS 1.3 tickets; rustls's default keeps 256).
/// Kept in the `ClientConfig`, which every connection of a `ClientTls` and its clones
/// shares, so a reconnect offers the ticket of the connection before.
fn own_sessions() -> rustls::client::Resumption {
    rustls::client::Resumption::in_memory_sessions(4)
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(format!("server certificate verifier: {e}")))?;
    Ok(v)
}
