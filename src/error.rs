//! The crate's one error type.

use std::fmt;

/// Everything that can go wrong in this crate, by layer.
///
/// Each variant wraps the typed error of its layer; match on those for details.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Resolving or connecting the TCP socket failed.
    Connect(crate::tcp::ConnectError),
    /// The HTTP CONNECT proxy refused or broke the tunnel.
    Proxy(crate::proxy::ProxyError),
    /// TLS configuration or handshake failed.
    Tls(crate::tls::TlsError),
    /// An HTTP head could not be read or was refused.
    Http(crate::http::HttpError),
    /// The WebSocket upgrade was refused or answered wrongly.
    Upgrade(crate::upgrade::UpgradeError),
    /// The message channel failed or is closed.
    Channel(crate::channel::ChannelError),
    /// A wRPC call failed.
    Wrpc(crate::wrpc::WrpcError),
    /// A declarative config could not be encoded, decoded or hashed.
    Config(crate::config::ConfigError),
    /// An argument given to a builder or a call is not valid; the text says which and why.
    InvalidInput(String),
    /// An I/O error outside the network layers (files, threads).
    Io(std::io::Error),
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect(e) => write!(f, "connect: {e}"),
            Error::Proxy(e) => write!(f, "proxy: {e}"),
            Error::Tls(e) => write!(f, "tls: {e}"),
            Error::Http(e) => write!(f, "http: {e}"),
            Error::Upgrade(e) => write!(f, "websocket upgrade: {e}"),
            Error::Channel(e) => write!(f, "channel: {e}"),
            Error::Wrpc(e) => write!(f, "wrpc: {e}"),
            Error::Config(e) => write!(f, "config: {e}"),
            Error::InvalidInput(s) => write!(f, "invalid input: {s}"),
            Error::Io(e) => write!(f, "i/o: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect(e) => Some(e),
            Error::Proxy(e) => Some(e),
            Error::Tls(e) => Some(e),
            Error::Http(e) => Some(e),
            Error::Upgrade(e) => Some(e),
            Error::Channel(e) => Some(e),
            Error::Wrpc(e) => Some(e),
            Error::Config(e) => Some(e),
            Error::InvalidInput(_) => None,
            Error::Io(e) => Some(e),
        }
    }
}

macro_rules! from_layer {
    ($($variant:ident($ty:ty)),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(e)
            }
        }
    )*};
}

from_layer!(
    Connect(crate::tcp::ConnectError),
    Proxy(crate::proxy::ProxyError),
    Tls(crate::tls::TlsError),
    Http(crate::http::HttpError),
    Upgrade(crate::upgrade::UpgradeError),
    Channel(crate::channel::ChannelError),
    Wrpc(crate::wrpc::WrpcError),
    Config(crate::config::ConfigError),
    Io(std::io::Error),
);

#[cfg(test)]
mod tests {
    #[test]
    fn error_stays_small() {
        assert!(
            std::mem::size_of::<super::Error>() <= 64,
            "{}",
            std::mem::size_of::<super::Error>()
        );
    }
}
