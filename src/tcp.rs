//! TCP connect with a timeout, over every address a host name resolves to.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The connect timeout Kong's DP uses: 5 seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of this layer. Each names the `host:port` it was about.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address text is not `host:port` or `[v6]:port` with a port from 1 to 65535.
    InvalidAddress {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name could not be resolved (or resolved to no address).
    Resolve {
        /// `host:port`.
        target: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The host refused the connection (nothing listens on that port).
    Refused {
        /// `host:port`.
        target: String,
    },
    /// No address answered within the timeout.
    TimedOut {
        /// `host:port`.
        target: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// Another socket error (unreachable network, ...).
    Io {
        /// `host:port`.
        target: String,
        /// The last error seen.
        source: io::Error,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::InvalidAddress { input, reason } => {
                write!(f, "invalid address {input:?}: {reason}")
            }
            ConnectError::Resolve { target, .. } => {
                write!(f, "cannot resolve {target}; check the host name")
            }
            ConnectError::Refused { target } => write!(
                f,
                "connection to {target} refused: nothing listens there; check the host and port"
            ),
            ConnectError::TimedOut { target, timeout } => write!(
                f,
                "connecting to {target} timed out after {} ms; check the address and any firewall",
                timeout.as_millis()
            ),
            ConnectError::Io { target, .. } => write!(f, "cannot connect to {target}"),
        }
    }
}

impl ConnectError {
    /// The `host:port` (or the address text given) this error is about.
    pub(crate) fn target(&self) -> &str {
        match self {
            ConnectError::InvalidAddress { input, .. } => input,
            ConnectError::Resolve { target, .. }
            | ConnectError::Refused { target }
            | ConnectError::TimedOut { target, .. }
            | ConnectError::Io { target, .. } => target,
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Resolve { source, .. } | ConnectError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Formats `host:port`, bracketing IPv6 literals.
pub fn join_host_port(host: &str, port: u16) -> String {
    let bare = strip_brackets(host);
    if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    }
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(host)
}

/// Splits `host:port` or `[v6]:port` into the host (without brackets) and the port.
///
/// A bare IPv6 literal (`::1:8005`) is refused as ambiguous; port 0 is refused.
pub fn split_host_port(s: &str) -> Result<(String, u16), ConnectError> {
    let bad = |reason| ConnectError::InvalidAddress {
        input: s.to_string(),
        reason,
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("missing ']' after the IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("missing ':port' after ']'"))?;
        (host, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("missing ':port'"))?;
        if host.contains(':') {
            return Err(bad(
                "an IPv6 address must be written in brackets: [addr]:port",
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the port is not a number"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad("the port must be from 1 to 65535")),
        Ok(p) => Ok((host.to_string(), p)),
    }
}

/// Resolves `host` (a name, an IPv4 literal or an IPv6 literal with or without brackets)
/// and connects to its addresses in turn until one answers or `timeout` has passed in
/// total. The socket has TCP_NODELAY set and no read or write timeouts.
///
/// Name resolution uses the system resolver, which has its own timeout.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let target = join_host_port(host, port);
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (strip_brackets(host), port)
        .to_socket_addrs()
        .map_err(|source| ConnectError::Resolve {
            target: target.clone(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ConnectError::Resolve {
            target,
            source: io::Error::new(io::ErrorKind::NotFound, "no address found"),
        });
    }
    let mut last: Option<io::Error> = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                s.set_nodelay(true).map_err(|source| ConnectError::Io {
                    target: target.clone(),
                    source,
                })?;
                log::debug!("connected to {target} at {addr}");
                return Ok(s);
            }
            Err(e) => {
                log::debug!("connecting to {target} at {addr} failed: {e}");
                last = Some(e);
            }
        }
    }
    match last {
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(ConnectError::Refused { target })
        }
        Some(e)
            if !matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            Err(ConnectError::Io { target, source: e })
        }
        _ => Err(ConnectError::TimedOut { target, timeout }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_v4_and_v6() {
        assert_eq!(
            split_host_port("cp.example:8005").unwrap(),
            ("cp.example".to_string(), 8005)
        );
        assert_eq!(
            split_host_port("10.0.0.1:443").unwrap(),
            ("10.0.0.1".to_string(), 443)
        );
        assert_eq!(
            split_host_port("[::1]:8005").unwrap(),
            ("::1".to_string(), 8005)
        );
    }

    #[test]
    fn refuses_bad_addresses() {
        for (input, reason) in [
            ("cp.example", "missing ':port'"),
            (
                "::1:8005",
                "an IPv6 address must be written in brackets: [addr]:port",
            ),
            ("[::1]8005", "missing ':port' after ']'"),
            ("[::1:8005", "missing ']' after the IPv6 address"),
            (":8005", "empty host"),
            ("h:", "the port is not a number"),
            ("h:+80", "the port is not a number"),
            ("h:0", "the port must be from 1 to 65535"),
            ("h:65536", "the port must be from 1 to 65535"),
        ] {
            match split_host_port(input) {
                Err(ConnectError::InvalidAddress { reason: r, .. }) => assert_eq!(r, reason),
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn joins_with_brackets_for_v6() {
        assert_eq!(join_host_port("::1", 1), "[::1]:1");
        assert_eq!(join_host_port("[::1]", 1), "[::1]:1");
        assert_eq!(join_host_port("h", 2), "h:2");
    }
}
