//! Client side (placeholder).

use super::{Identity, TlsError};

/// How the DP decides to trust the CP's certificate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TrustMode {
    /// The Mozilla roots from webpki-roots.
    WebPki,
}

/// A client TLS configuration.
#[derive(Debug, Clone)]
pub struct ClientTls {}

impl ClientTls {
    /// Builds a configuration.
    pub fn new(_trust: TrustMode, _identity: Option<Identity>) -> Result<ClientTls, TlsError> {
        todo!()
    }

    /// Starts a session to `server_name` (a DNS name or an IP address).
    pub fn session(&self, _server_name: &str) -> Result<rustls::ClientConnection, TlsError> {
        todo!()
    }
}
