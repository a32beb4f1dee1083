//! The crate's one error type.

use std::fmt;

/// Everything that can go wrong in this crate, by layer.
///
/// Each variant wraps the typed error of its layer; match on those for details.
///
/// # Messages and causes
///
/// Every error type of this crate follows one rule: its `Display` says what happened at
/// its own layer (and, where that helps, what to do about it), and the cause (an
/// [`io::Error`](std::io::Error), a rustls error, a lower layer's error) comes from
/// [`source()`](std::error::Error::source), never from both, so a reporter that walks
/// the chain prints each message once. [`Error::report`] prints the whole chain on one
/// line, `what happened: its cause: ...`, as anyhow's `{:#}` does; `{}` alone prints only
/// the first link.
///
/// `Error` itself is transparent: it adds no text of its own. Its `Display` is the
/// wrapped error's `Display` and its `source()` is the wrapped error's `source()` (for
/// `InvalidInput`, the text given and no source).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Resolving or connecting the TCP socket failed. Only with the `dp` feature.
    #[cfg(feature = "dp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
    Connect(crate::tcp::ConnectError),
    /// The HTTP CONNECT proxy refused or broke the tunnel. Only with the `dp` feature.
    #[cfg(feature = "dp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
    Proxy(crate::proxy::ProxyError),
    /// TLS configuration or handshake failed.
    Tls(crate::tls::TlsError),
    /// An HTTP head could not be read or was refused.
    Http(crate::http::HttpError),
    /// The WebSocket upgrade was refused or answered wrongly. Only with the `dp` feature.
    #[cfg(feature = "dp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
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
            #[cfg(feature = "dp")]
            Error::Connect(e) => e.fmt(f),
            #[cfg(feature = "dp")]
            Error::Proxy(e) => e.fmt(f),
            Error::Tls(e) => e.fmt(f),
            Error::Http(e) => e.fmt(f),
            #[cfg(feature = "dp")]
            Error::Upgrade(e) => e.fmt(f),
            Error::Channel(e) => e.fmt(f),
            Error::Wrpc(e) => e.fmt(f),
            Error::Config(e) => e.fmt(f),
            Error::InvalidInput(s) => write!(f, "invalid input: {s}"),
            Error::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(feature = "dp")]
            Error::Connect(e) => e.source(),
            #[cfg(feature = "dp")]
            Error::Proxy(e) => e.source(),
            Error::Tls(e) => e.source(),
            Error::Http(e) => e.source(),
            #[cfg(feature = "dp")]
            Error::Upgrade(e) => e.source(),
            Error::Channel(e) => e.source(),
            Error::Wrpc(e) => e.source(),
            Error::Config(e) => e.source(),
            Error::InvalidInput(_) => None,
            Error::Io(e) => e.source(),
        }
    }
}

impl Error {
    /// The message and every cause behind it on one line, `what happened: cause: ...`:
    /// for a log line or a program's last words, where `{}` would print only what
    /// happened at the top layer.
    ///
    /// ```
    /// let e = dpspec::Error::from(std::io::Error::other("disk full"));
    /// assert_eq!(e.report().to_string(), "disk full");
    /// ```
    pub fn report(&self) -> impl fmt::Display + '_ {
        Chain(self)
    }
}

/// Displays an error and its `source()` chain, `a: b: c` (what [`Error::report`] returns;
/// the library's log lines use it for the typed errors of each layer).
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

macro_rules! from_layer {
    ($($(#[$attr:meta])* $variant:ident($ty:ty)),* $(,)?) => {$(
        $(#[$attr])*
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(e)
            }
        }
    )*};
}

from_layer!(
    #[cfg(feature = "dp")]
    Connect(crate::tcp::ConnectError),
    #[cfg(feature = "dp")]
    Proxy(crate::proxy::ProxyError),
    Tls(crate::tls::TlsError),
    Http(crate::http::HttpError),
    #[cfg(feature = "dp")]
    Upgrade(crate::upgrade::UpgradeError),
    Channel(crate::channel::ChannelError),
    Wrpc(crate::wrpc::WrpcError),
    Config(crate::config::ConfigError),
    Io(std::io::Error),
);

#[cfg(all(test, feature = "dp", feature = "cp"))]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::Error;
    use crate::channel::ChannelError;
    use crate::config::ConfigError;
    use crate::http::{HeadError, HttpError};
    use crate::proxy::ProxyError;
    use crate::tcp::ConnectError;
    use crate::tls::TlsError;
    use crate::upgrade::UpgradeError;
    use crate::wrpc::WrpcError;

    /// The variant's name. The match is exhaustive: a new variant must be named here, and
    /// then in `ALL`, and given a value in `one_of_each`.
    fn variant(e: &Error) -> &'static str {
        match e {
            Error::Connect(_) => "Connect",
            Error::Proxy(_) => "Proxy",
            Error::Tls(_) => "Tls",
            Error::Http(_) => "Http",
            Error::Upgrade(_) => "Upgrade",
            Error::Channel(_) => "Channel",
            Error::Wrpc(_) => "Wrpc",
            Error::Config(_) => "Config",
            Error::InvalidInput(_) => "InvalidInput",
            Error::Io(_) => "Io",
        }
    }

    const ALL: [&str; 10] = [
        "Connect",
        "Proxy",
        "Tls",
        "Http",
        "Upgrade",
        "Channel",
        "Wrpc",
        "Config",
        "InvalidInput",
        "Io",
    ];

    fn reset() -> io::Error {
        io::Error::from(io::ErrorKind::ConnectionReset)
    }

    /// Every variant, with a cause wherever the variant can hold one, and every
    /// cause-holding variant of each layer's error.
    fn one_of_each() -> Vec<Error> {
        let target = || "cp.example:8005".to_string();
        let proxy = || "proxy.example:3128".to_string();
        vec![
            ConnectError::Resolve {
                target: target(),
                source: io::Error::new(io::ErrorKind::NotFound, "Name or service not known"),
            }
            .into(),
            ConnectError::Io {
                target: target(),
                source: io::Error::from(io::ErrorKind::NetworkUnreachable),
            }
            .into(),
            ProxyError::Connect(ConnectError::Io {
                target: proxy(),
                source: io::Error::from(io::ErrorKind::HostUnreachable),
            })
            .into(),
            ProxyError::Io {
                proxy: proxy(),
                source: reset(),
            }
            .into(),
            TlsError::Io(reset()).into(),
            TlsError::protocol(rustls::Error::DecryptError).into(),
            HttpError::Head(HeadError::Io(reset())).into(),
            HttpError::Bind(io::Error::from(io::ErrorKind::AddrInUse)).into(),
            HttpError::Spawn(io::Error::from(io::ErrorKind::OutOfMemory)).into(),
            HttpError::Io(reset()).into(),
            UpgradeError::BadAccept.into(),
            ChannelError::Io(reset()).into(),
            ChannelError::Spawn(io::Error::from(io::ErrorKind::OutOfMemory)).into(),
            WrpcError::from_channel(ChannelError::Io(reset())).into(),
            ConfigError::NotCompressed.into(),
            Error::InvalidInput("the node id is empty".into()),
            io::Error::other(TlsError::Io(reset())).into(),
        ]
    }

    fn chain(e: &Error) -> Vec<String> {
        let mut texts = vec![e.to_string()];
        let mut cause = e.source();
        while let Some(c) = cause {
            texts.push(c.to_string());
            cause = c.source();
        }
        texts
    }

    #[test]
    fn each_message_of_a_chain_is_printed_once() {
        let all = one_of_each();
        for name in ALL {
            assert!(all.iter().any(|e| variant(e) == name), "no {name} value");
        }
        for e in &all {
            let texts = chain(e);
            for t in &texts {
                assert!(!t.is_empty(), "{e:?}: an empty message in {texts:?}");
            }
            for pair in texts.windows(2) {
                assert!(
                    !pair[0].contains(&pair[1]),
                    "{e:?}: {:?} repeats its cause {:?}",
                    pair[0],
                    pair[1]
                );
            }
            assert_eq!(e.report().to_string(), texts.join(": "));
        }
    }

    #[test]
    fn error_is_transparent_and_report_keeps_the_cause() {
        let e = Error::from(TlsError::Io(reset()));
        assert_eq!(e.to_string(), TlsError::Io(reset()).to_string());
        assert_eq!(e.source().map(|s| s.to_string()), Some(reset().to_string()));
        let report = e.report().to_string();
        assert!(report.ends_with(&reset().to_string()), "{report}");
    }

    #[test]
    fn a_send_failure_keeps_the_channel_cause_as_text() {
        let e = WrpcError::from_channel(ChannelError::Io(reset()));
        assert!(e.to_string().contains(&reset().to_string()), "{e}");
        assert!(e.source().is_none());
    }

    #[test]
    fn error_stays_small() {
        assert!(
            std::mem::size_of::<super::Error>() <= 64,
            "{}",
            std::mem::size_of::<super::Error>()
        );
    }
}
