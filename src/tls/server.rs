//! Server side (placeholder).

use super::{Identity, TlsError};

/// How the CP authenticates DPs by their client certificate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No client certificate asked for.
    None,
}

/// A server TLS configuration.
#[derive(Debug, Clone)]
pub struct ServerTls {}

impl ServerTls {
    /// Builds a configuration.
    pub fn new(_identity: Identity, _auth: ClientAuth) -> Result<ServerTls, TlsError> {
        todo!()
    }

    /// Starts a session for one accepted connection.
    pub fn session(&self) -> Result<rustls::ServerConnection, TlsError> {
        todo!()
    }
}
