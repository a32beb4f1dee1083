//! TLS with rustls and ring (placeholder API: filled in by its owner).

use std::fmt;
use std::net::TcpStream;

mod client;
mod server;

pub use client::{ClientTls, TrustMode};
pub use server::{ClientAuth, ServerTls};

/// The server name Kong uses in shared mode for SNI and verification.
pub const KONG_SERVER_NAME: &str = "kong_clustering";

/// Errors of the TLS layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// Placeholder.
    Other(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for TlsError {}

/// A certificate chain and its private key, for a server or for a client (mTLS).
#[derive(Debug)]
pub struct Identity {
    /// The chain, leaf first.
    pub chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// The private key of the leaf.
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads a chain and a key from PEM text.
    pub fn from_pem(_cert_pem: &[u8], _key_pem: &[u8]) -> Result<Identity, TlsError> {
        todo!()
    }
}

/// Runs a client handshake to completion on a blocking socket.
pub fn client_handshake(
    _conn: &mut rustls::ClientConnection,
    _sock: &mut TcpStream,
) -> Result<(), TlsError> {
    todo!()
}

/// Runs a server handshake to completion on a blocking socket.
pub fn server_handshake(
    _conn: &mut rustls::ServerConnection,
    _sock: &mut TcpStream,
) -> Result<(), TlsError> {
    todo!()
}
