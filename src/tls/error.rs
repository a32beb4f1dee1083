//! The TLS layer's error type and the mapping from rustls errors to it.

use std::fmt;
use std::io;

use rustls::{AlertDescription, CertificateError, Side};

/// Which peer's certificate an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateOf {
    /// The server's certificate (seen by the client, the DP).
    Server,
    /// The client's certificate (seen by the server, the CP).
    Client,
}

impl fmt::Display for CertificateOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertificateOf::Server => "server",
            CertificateOf::Client => "client",
        })
    }
}

/// Errors of the TLS layer: configuration, PEM input and handshake failures.
///
/// Handshake failures say which check failed and whose certificate it was about. A
/// rejection decided by the *other* side arrives as a TLS alert and maps to
/// [`TlsError::ClientCertMissing`], [`TlsError::ClientCertRejected`],
/// [`TlsError::ServerCertRejected`] or [`TlsError::AlertReceived`].
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM input could not be used: `what` names the file or the input, `reason` says why.
    Pem {
        /// The file path or a description of the input ("certificate PEM", ...).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS configuration could not be built (for example a key of an unsupported type).
    Config(String),
    /// The server name is neither a valid DNS name nor an IP address.
    InvalidServerName(String),
    /// The peer's certificate is not issued by a CA we trust (unknown CA / untrusted issuer).
    UnknownIssuer {
        /// Whose certificate.
        peer: CertificateOf,
    },
    /// The peer's certificate is not the pinned one (Kong's shared mode).
    PinMismatch {
        /// Whose certificate.
        peer: CertificateOf,
    },
    /// The server's certificate does not cover the name we connected to.
    NameMismatch {
        /// The name we verified against.
        expected: String,
        /// The names the certificate is valid for (its subjectAltName entries).
        presented: Vec<String>,
    },
    /// The peer's certificate has expired.
    Expired {
        /// Whose certificate.
        peer: CertificateOf,
        /// Verification time and the end of validity.
        detail: String,
    },
    /// The peer's certificate is not valid yet.
    NotYetValid {
        /// Whose certificate.
        peer: CertificateOf,
        /// Verification time and the start of validity.
        detail: String,
    },
    /// The peer's certificate is unacceptable for another reason (encoding, key usage,
    /// signature, ...).
    BadCertificate {
        /// Whose certificate.
        peer: CertificateOf,
        /// What is wrong, as rustls reports it.
        detail: String,
    },
    /// A client certificate is required but none was presented (seen by the server), or the
    /// server told us it requires one (seen by the client).
    ClientCertMissing,
    /// The server refused the client certificate we presented (the alert it sent).
    ClientCertRejected {
        /// The TLS alert received.
        alert: String,
    },
    /// The client refused our server certificate (the alert it sent).
    ServerCertRejected {
        /// The TLS alert received.
        alert: String,
    },
    /// The peer does not speak TLS 1.2 or 1.3, or no common parameters were found.
    ProtocolVersion(String),
    /// The peer sent another fatal alert.
    AlertReceived {
        /// The TLS alert received.
        alert: String,
    },
    /// The handshake did not finish within the socket's read or write timeout.
    Timeout,
    /// The peer closed the connection before the handshake finished.
    Closed,
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// Any other TLS protocol error; its text is rustls's.
    Protocol(ProtocolError),
}

/// A TLS protocol error as rustls reports it, the cause ([`source()`]) of
/// [`TlsError::Protocol`]. Opaque, so that the rustls version behind it is not part of
/// this crate's API.
///
/// [`source()`]: std::error::Error::source
#[derive(Debug)]
pub struct ProtocolError(pub(crate) Box<rustls::Error>);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ProtocolError {}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { what, reason } => write!(f, "bad PEM in {what}: {reason}"),
            TlsError::Config(s) => write!(f, "TLS configuration: {s}"),
            TlsError::InvalidServerName(s) => write!(
                f,
                "server name {s:?} is neither a DNS name nor an IP address"
            ),
            TlsError::UnknownIssuer { peer } => write!(
                f,
                "the {peer}'s certificate is issued by an unknown CA (untrusted issuer); \
                 check the CA bundle given for verification"
            ),
            TlsError::PinMismatch { peer } => write!(
                f,
                "the {peer}'s certificate does not match the pinned certificate; both sides \
                 must use the same cluster certificate"
            ),
            TlsError::NameMismatch {
                expected,
                presented,
            } => {
                write!(
                    f,
                    "the server's certificate is not valid for name {expected:?}"
                )?;
                if presented.is_empty() {
                    write!(f, " (it has no subjectAltName names)")?;
                } else {
                    write!(f, " (it is valid for: {})", presented.join(", "))?;
                }
                f.write_str("; set the server name to one of its names")
            }
            TlsError::Expired { peer, detail } => {
                write!(f, "the {peer}'s certificate has expired: {detail}")
            }
            TlsError::NotYetValid { peer, detail } => {
                write!(f, "the {peer}'s certificate is not valid yet: {detail}")
            }
            TlsError::BadCertificate { peer, detail } => {
                write!(f, "the {peer}'s certificate is not acceptable: {detail}")
            }
            TlsError::ClientCertMissing => f.write_str(
                "client certificate missing: the server requires one and none was presented",
            ),
            TlsError::ClientCertRejected { alert } => write!(
                f,
                "the server rejected our client certificate (alert {alert})"
            ),
            TlsError::ServerCertRejected { alert } => write!(
                f,
                "the client rejected our server certificate (alert {alert})"
            ),
            TlsError::ProtocolVersion(s) => write!(
                f,
                "no common TLS version or parameters (we speak TLS 1.2 and 1.3 only): {s}"
            ),
            TlsError::AlertReceived { alert } => write!(f, "the peer sent fatal alert {alert}"),
            TlsError::Timeout => f.write_str("the TLS handshake timed out"),
            TlsError::Closed => {
                f.write_str("the peer closed the connection during the TLS handshake")
            }
            TlsError::Io(_) => f.write_str("the connection failed during TLS"),
            TlsError::Protocol(_) => f.write_str("TLS protocol error"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Io(e) => Some(e),
            TlsError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

/// The marker error our pinning verifiers return inside
/// `CertificateError::Other`, so the mapping can say "pin mismatch".
#[derive(Debug)]
pub(crate) struct PinMismatch;

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("certificate does not match the pinned certificate")
    }
}

impl std::error::Error for PinMismatch {}

impl TlsError {
    /// A rustls error that has no variant of its own.
    pub(crate) fn protocol(e: rustls::Error) -> TlsError {
        TlsError::Protocol(ProtocolError(Box::new(e)))
    }

    internal_fn! {
        /// Maps a rustls error seen by our side `ours` (the side of the local connection) to a
        /// typed error.
        ///
        /// Use it for errors from `process_new_packets` after the handshake too: with TLS 1.3
        /// a server's refusal of our client certificate arrives after the client has finished
        /// its part of the handshake, on the first read.
        fn from_rustls(e: rustls::Error, ours: Side) -> TlsError {
            let peer = match ours {
                Side::Client => CertificateOf::Server,
                Side::Server => CertificateOf::Client,
            };
            match e {
                rustls::Error::InvalidCertificate(c) => from_cert_error(c, peer),
                rustls::Error::NoCertificatesPresented => TlsError::ClientCertMissing,
                rustls::Error::AlertReceived(a) => from_alert(a, ours),
                rustls::Error::PeerIncompatible(p) => TlsError::ProtocolVersion(format!("{p:?}")),
                other => TlsError::protocol(other),
            }
        }
    }

    internal_fn! {
        /// Maps an I/O error from a `rustls::Stream` or `StreamOwned` read or write: a rustls
        /// error wrapped in it (kind `InvalidData`) maps as in `TlsError::from_rustls`, the
        /// rest as in `TlsError::from_io`.
        fn from_stream_error(e: io::Error, ours: Side) -> TlsError {
            match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(r) => TlsError::from_rustls(r.clone(), ours),
                None => TlsError::from_io(e),
            }
        }
    }

    internal_fn! {
        /// Maps a socket I/O error: timeouts (`WouldBlock`, `TimedOut`) to
        /// [`TlsError::Timeout`], an early end of stream to [`TlsError::Closed`].
        fn from_io(e: io::Error) -> TlsError {
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TlsError::Timeout,
                io::ErrorKind::UnexpectedEof => TlsError::Closed,
                _ => TlsError::Io(e),
            }
        }
    }
}

fn from_cert_error(c: CertificateError, peer: CertificateOf) -> TlsError {
    match c {
        CertificateError::UnknownIssuer => TlsError::UnknownIssuer { peer },
        CertificateError::NotValidForName => TlsError::NameMismatch {
            expected: String::new(),
            presented: Vec::new(),
        },
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => TlsError::NameMismatch {
            expected: expected.to_str().into_owned(),
            presented: presented.iter().map(|p| bare_name(p)).collect(),
        },
        e @ (CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            TlsError::Expired {
                peer,
                detail: e.to_string(),
            }
        }
        e @ (CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }) => {
            TlsError::NotYetValid {
                peer,
                detail: e.to_string(),
            }
        }
        CertificateError::Other(ref o) if o.0.downcast_ref::<PinMismatch>().is_some() => {
            TlsError::PinMismatch { peer }
        }
        other => TlsError::BadCertificate {
            peer,
            detail: other.to_string(),
        },
    }
}

/// rustls presents names as `DnsName("x")` or `IpAddress(x)`: keep the `x`.
fn bare_name(p: &str) -> String {
    match (p.find('('), p.strip_suffix(')')) {
        (Some(open), Some(inner)) => inner[open + 1..].trim_matches('"').to_string(),
        _ => p.to_string(),
    }
}

fn from_alert(a: AlertDescription, ours: Side) -> TlsError {
    let alert = format!("{a:?}");
    match a {
        AlertDescription::ProtocolVersion | AlertDescription::InsufficientSecurity => {
            TlsError::ProtocolVersion(format!("the peer sent alert {alert}"))
        }
        AlertDescription::CertificateRequired if ours == Side::Client => {
            TlsError::ClientCertMissing
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied => match ours {
            Side::Client => TlsError::ClientCertRejected { alert },
            Side::Server => TlsError::ServerCertRejected { alert },
        },
        _ => TlsError::AlertReceived { alert },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn pin_mismatch_marker_maps_back() {
        let e = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            Arc::new(PinMismatch),
        )));
        let t = TlsError::from_rustls(e, Side::Client);
        assert!(matches!(
            t,
            TlsError::PinMismatch {
                peer: CertificateOf::Server
            }
        ));
        assert!(t
            .to_string()
            .contains("does not match the pinned certificate"));
    }

    #[test]
    fn alerts_map_by_side() {
        let c = TlsError::from_rustls(
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            Side::Client,
        );
        assert!(matches!(c, TlsError::ClientCertRejected { .. }), "{c:?}");
        let s = TlsError::from_rustls(
            rustls::Error::AlertReceived(AlertDescription::BadCertificate),
            Side::Server,
        );
        assert!(matches!(s, TlsError::ServerCertRejected { .. }), "{s:?}");
        let m = TlsError::from_rustls(
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            Side::Client,
        );
        assert!(matches!(m, TlsError::ClientCertMissing));
        let v = TlsError::from_rustls(
            rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
            Side::Client,
        );
        assert!(matches!(v, TlsError::ProtocolVersion(_)));
    }

    #[test]
    fn stream_errors_unwrap_rustls_errors() {
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        );
        assert!(matches!(
            TlsError::from_stream_error(wrapped, Side::Client),
            TlsError::ClientCertMissing
        ));
        let plain = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(
            TlsError::from_stream_error(plain, Side::Client),
            TlsError::Io(_)
        ));
    }

    #[test]
    fn presented_names_are_bare() {
        assert_eq!(bare_name("DnsName(\"cp.example\")"), "cp.example");
        assert_eq!(bare_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(bare_name("odd"), "odd");
    }

    #[test]
    fn io_timeouts_map_to_timeout() {
        for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
            assert!(matches!(
                TlsError::from_io(io::Error::from(kind)),
                TlsError::Timeout
            ));
        }
    }
}
