//! HTTP CONNECT tunnels through a forward proxy, as Kong 3.1's DP does with
//! `proxy_server`: `CONNECT host:port HTTP/1.1`, `Host`, optional
//! `Proxy-Authorization: Basic`, a 2xx answer, then TLS inside the tunnel. The proxy never
//! sees or touches the TLS bytes.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::tcp::{self, join_host_port, ConnectError};

/// The largest proxy answer head we read.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Errors of this layer. Each names the proxy by `host:port`, never with its password.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL cannot be used; the reason never repeats the password.
    InvalidUrl(String),
    /// The TCP connection to the proxy failed.
    Connect(ConnectError),
    /// The proxy answered the CONNECT with a non-2xx status.
    Refused {
        /// The proxy, `host:port`.
        proxy: String,
        /// The status code (407: credentials missing or wrong, 403: not allowed, 502:
        /// the proxy could not reach the target).
        status: u16,
        /// The reason phrase sent by the proxy.
        reason: Box<str>,
    },
    /// The proxy answered something that is not an HTTP/1.x response.
    NotHttp {
        /// The proxy, `host:port`.
        proxy: String,
    },
    /// The proxy's answer head is larger than `MAX_HEAD_BYTES` (16 KiB).
    HeadTooLarge {
        /// The proxy, `host:port`.
        proxy: String,
    },
    /// The proxy sent bytes after its answer head before we started TLS.
    DataAfterHead {
        /// The proxy, `host:port`.
        proxy: String,
    },
    /// The proxy did not answer within the timeout.
    Timeout {
        /// The proxy, `host:port`.
        proxy: String,
    },
    /// The proxy closed the connection before answering, or right after a 2xx.
    Closed {
        /// The proxy, `host:port`.
        proxy: String,
    },
    /// Reading or writing the proxy connection failed.
    Io {
        /// The proxy, `host:port`.
        proxy: String,
        /// The socket error.
        source: io::Error,
    },
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::InvalidUrl(s) => write!(f, "invalid proxy URL: {s}"),
            ProxyError::Connect(e) => write!(f, "cannot reach the proxy {}", e.target()),
            ProxyError::Refused {
                proxy,
                status,
                reason,
            } => {
                write!(f, "proxy {proxy} refused the tunnel: {status} {reason}")?;
                match status {
                    407 => f.write_str(" (proxy authentication required: check the credentials)"),
                    403 => f.write_str(" (the proxy does not allow this target)"),
                    502 | 504 => f.write_str(" (the proxy could not reach the target)"),
                    _ => Ok(()),
                }
            }
            ProxyError::NotHttp { proxy } => {
                write!(f, "proxy {proxy} answered something that is not HTTP")
            }
            ProxyError::HeadTooLarge { proxy } => write!(
                f,
                "proxy {proxy} sent an answer head larger than {MAX_HEAD_BYTES} bytes"
            ),
            ProxyError::DataAfterHead { proxy } => write!(
                f,
                "proxy {proxy} sent data after its answer, before the tunnel was used"
            ),
            ProxyError::Timeout { proxy } => {
                write!(f, "proxy {proxy} did not answer the CONNECT in time")
            }
            ProxyError::Closed { proxy } => {
                write!(f, "proxy {proxy} closed the connection during the CONNECT")
            }
            ProxyError::Io { proxy, .. } => {
                write!(f, "the connection to proxy {proxy} failed")
            }
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Connect(e) => Some(e),
            ProxyError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A forward proxy, `http://[user:password@]host[:port]` (port 80 when absent).
///
/// `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username())
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("http://")?;
        if let Some((user, _)) = &self.credentials {
            write!(f, "{user}:***@")?;
        }
        f.write_str(&self.address())
    }
}

impl ProxyUrl {
    /// A proxy without credentials.
    pub fn new(host: impl Into<String>, port: u16) -> ProxyUrl {
        ProxyUrl {
            host: host.into(),
            port,
            credentials: None,
        }
    }

    /// Adds Basic credentials.
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Parses `http://[user:password@]host[:port][/]`. User and password may be
    /// percent-encoded; an IPv6 host is written in brackets. Only `http` proxies are
    /// supported (the tunnel itself carries TLS).
    pub fn parse(url: &str) -> Result<ProxyUrl, ProxyError> {
        let bad = |s: &str| ProxyError::InvalidUrl(s.to_string());
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http://[user:password@]host:port"))?;
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(ProxyError::InvalidUrl(format!(
                "scheme {scheme:?} is not supported, only http"
            )));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if hostport.contains(['/', '?', '#']) {
            return Err(bad("a proxy URL has no path, query or fragment"));
        }
        let credentials = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let user = percent_decode(user)
                    .ok_or_else(|| bad("the user name has a bad percent-encoding"))?;
                let pass = percent_decode(pass)
                    .ok_or_else(|| bad("the password has a bad percent-encoding"))?;
                Some((user, pass))
            }
        };
        let has_port = match hostport.strip_prefix('[') {
            Some(v6) => v6.contains("]:"),
            None => hostport.contains(':'),
        };
        let (host, port) = if has_port {
            tcp::split_host_port(hostport).map_err(|e| ProxyError::InvalidUrl(e.to_string()))?
        } else {
            let host = hostport
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(hostport);
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            (host.to_string(), 80)
        };
        Ok(ProxyUrl {
            host,
            port,
            credentials,
        })
    }

    /// The proxy host (without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name, if credentials are set.
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(u, _)| u.as_str())
    }

    /// `host:port` of the proxy, for messages.
    pub fn address(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// The `Proxy-Authorization` value, if credentials are set. It is a secret.
    fn authorization(&self) -> Option<String> {
        self.credentials
            .as_ref()
            .map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
    }
}

/// Opens a tunnel to `target_host:target_port` through `proxy`, all within `timeout`
/// (TCP connect to the proxy included). Requires a 2xx answer and reads nothing past its
/// head; the returned socket has no read or write timeouts and carries the target's bytes.
pub fn tunnel(
    proxy: &ProxyUrl,
    target_host: &str,
    target_port: u16,
    timeout: Duration,
) -> Result<TcpStream, ProxyError> {
    let deadline = Instant::now() + timeout;
    let name = proxy.address();
    let mut sock = tcp::connect(&proxy.host, proxy.port, timeout).map_err(ProxyError::Connect)?;
    let io_err = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ProxyError::Timeout {
            proxy: name.clone(),
        },
        _ => ProxyError::Io {
            proxy: name.clone(),
            source,
        },
    };
    let set_timeouts = |sock: &TcpStream| -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero duration means "no timeout" to std: use the smallest real one instead.
        let left = left.max(Duration::from_millis(1));
        sock.set_read_timeout(Some(left))?;
        sock.set_write_timeout(Some(left))
    };

    let target = join_host_port(target_host, target_port);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = proxy.authorization() {
        req.push_str("Proxy-Authorization: ");
        req.push_str(&auth);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    set_timeouts(&sock).map_err(io_err)?;
    sock.write_all(req.as_bytes()).map_err(io_err)?;
    log::debug!("sent CONNECT {target} to proxy {name}");

    let (status, reason) =
        read_head(&mut sock, &name, &|s| set_timeouts(s)).map_err(|e| match e {
            HeadError::Io(source) => io_err(source),
            HeadError::Proxy(p) => p,
        })?;
    if !(200..300).contains(&status) {
        return Err(ProxyError::Refused {
            proxy: name,
            status,
            reason: reason.into(),
        });
    }

    // Nothing may follow the head before we speak: the target only talks after our
    // ClientHello.
    sock.set_nonblocking(true).map_err(io_err)?;
    let mut one = [0u8; 1];
    let peeked = sock.peek(&mut one);
    sock.set_nonblocking(false).map_err(io_err)?;
    match peeked {
        Ok(0) => return Err(ProxyError::Closed { proxy: name }),
        Ok(_) => return Err(ProxyError::DataAfterHead { proxy: name }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(io_err(e)),
    }
    sock.set_read_timeout(None).map_err(io_err)?;
    sock.set_write_timeout(None).map_err(io_err)?;
    log::debug!("proxy {name} opened a tunnel to {target}");
    Ok(sock)
}

enum HeadError {
    Io(io::Error),
    Proxy(ProxyError),
}

/// Reads a proxy's answer to a CONNECT from `r`, exactly as [`tunnel`] does: byte by
/// byte, so nothing past the head is consumed, at most [`MAX_HEAD_BYTES`] bytes and 64
/// header lines. `proxy` names the proxy in errors.
///
/// Returns the status and reason phrase of any well-formed `HTTP/1.x` answer, 2xx or
/// not (the caller decides); errors are [`ProxyError::Closed`] (nothing arrived),
/// [`ProxyError::NotHttp`], [`ProxyError::HeadTooLarge`], and [`ProxyError::Timeout`]
/// or [`ProxyError::Io`] for read failures. It needs no socket, so it can be tested and
/// fuzzed on bytes.
pub fn read_connect_answer(r: &mut impl Read, proxy: &str) -> Result<(u16, String), ProxyError> {
    read_head(r, proxy, &|_| Ok(())).map_err(|e| match e {
        HeadError::Proxy(p) => p,
        HeadError::Io(source) => match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ProxyError::Timeout {
                proxy: proxy.to_string(),
            },
            _ => ProxyError::Io {
                proxy: proxy.to_string(),
                source,
            },
        },
    })
}

/// Reads the answer head byte by byte (so nothing past it is consumed) and parses it,
/// calling `refresh_timeouts` before each read.
fn read_head<R: Read>(
    sock: &mut R,
    name: &str,
    refresh_timeouts: &dyn Fn(&R) -> io::Result<()>,
) -> Result<(u16, String), HeadError> {
    let not_http = || {
        HeadError::Proxy(ProxyError::NotHttp {
            proxy: name.to_string(),
        })
    };
    let mut buf = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    loop {
        refresh_timeouts(sock).map_err(HeadError::Io)?;
        match sock.read(&mut byte) {
            Ok(0) if buf.is_empty() => {
                return Err(HeadError::Proxy(ProxyError::Closed {
                    proxy: name.to_string(),
                }))
            }
            Ok(0) => return Err(not_http()),
            Ok(_) => buf.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HeadError::Io(e)),
        }
        if !answer_prefix_ok(&buf) {
            return Err(not_http());
        }
        if byte[0] == b'\n' {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    let status = resp.code.ok_or_else(not_http)?;
                    let reason = resp.reason.unwrap_or("").to_string();
                    return Ok((status, reason));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HeadError::Proxy(ProxyError::HeadTooLarge {
                        proxy: name.to_string(),
                    }))
                }
                Err(_) => return Err(not_http()),
            }
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(HeadError::Proxy(ProxyError::HeadTooLarge {
                proxy: name.to_string(),
            }));
        }
    }
}

/// Whether `buf` can still be the start of an `HTTP/1.x` answer.
fn answer_prefix_ok(buf: &[u8]) -> bool {
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = buf.len().min(PREFIX.len());
    buf[..n] == PREFIX[..n]
}

/// Standard base64 with padding (RFC 4648), for the Basic credentials.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` on a bad escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn parses_urls_with_and_without_credentials() {
        let p = ProxyUrl::parse("http://proxy.local:3128").unwrap();
        assert_eq!(
            (p.host(), p.port(), p.username()),
            ("proxy.local", 3128, None)
        );
        let p = ProxyUrl::parse("HTTP://al%40ice:s%3Acret@[::1]:8080/").unwrap();
        assert_eq!(
            (p.host(), p.port(), p.username()),
            ("::1", 8080, Some("al@ice"))
        );
        assert_eq!(
            p.authorization().unwrap(),
            format!("Basic {}", base64(b"al@ice:s:cret"))
        );
        let p = ProxyUrl::parse("http://u:p@h").unwrap();
        assert_eq!((p.host(), p.port()), ("h", 80));
        let p = ProxyUrl::parse("http://[::1]").unwrap();
        assert_eq!((p.host(), p.port()), ("::1", 80));
    }

    #[test]
    fn refuses_bad_urls_without_echoing_the_password() {
        for url in [
            "https://u:hunter2@h:1",
            "h:1",
            "http://u:hunter2@h:1/path",
            "http://u:hunter2%zz@h:1",
            "http://u:hunter2@h:0",
            "http://u:hunter2@",
        ] {
            let e = ProxyUrl::parse(url).unwrap_err();
            assert!(matches!(e, ProxyError::InvalidUrl(_)), "{url}: {e:?}");
            assert!(!e.to_string().contains("hunter2"), "{url}: {e}");
            assert!(!format!("{e:?}").contains("hunter2"), "{url}: {e:?}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_password() {
        let p = ProxyUrl::parse("http://user:hunter2@proxy:3128").unwrap();
        assert_eq!(p.to_string(), "http://user:***@proxy:3128");
        let d = format!("{p:?}");
        assert!(!d.contains("hunter2") && d.contains("<redacted>"), "{d}");
        assert!(!format!("{p:#?}").contains("hunter2"));
    }

    #[test]
    fn connect_answer_from_bytes() {
        let mut r = io::Cursor::new(&b"HTTP/1.1 200 Connection established\r\n\r\nTLS"[..]);
        let (status, reason) = read_connect_answer(&mut r, "p:1").unwrap();
        assert_eq!((status, reason.as_str()), (200, "Connection established"));
        // Nothing past the head was consumed.
        assert_eq!(r.position(), 39);
        let mut r = io::Cursor::new(&b"HTTP/1.0 407 Auth\r\nProxy-Authenticate: Basic\r\n\r\n"[..]);
        assert_eq!(read_connect_answer(&mut r, "p:1").unwrap().0, 407);
        for (bytes, want) in [
            (&b""[..], "Closed"),
            (b"HTTP/1.1 200 OK\r\n", "NotHttp"),
            (b"SSH-2.0-OpenSSH\r\n", "NotHttp"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "NotHttp"),
        ] {
            let e = read_connect_answer(&mut io::Cursor::new(bytes), "p:1").unwrap_err();
            assert!(format!("{e:?}").starts_with(want), "{bytes:?}: {e:?}");
        }
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend(std::iter::repeat_n(b"X-A: b\r\n".as_slice(), 2000).flatten());
        assert!(matches!(
            read_connect_answer(&mut io::Cursor::new(big), "p:1"),
            Err(ProxyError::HeadTooLarge { .. })
        ));
    }

    #[test]
    fn answer_prefix_check() {
        assert!(answer_prefix_ok(b"HT"));
        assert!(answer_prefix_ok(b"HTTP/1.1 200"));
        assert!(!answer_prefix_ok(b"SSH-2.0"));
        assert!(!answer_prefix_ok(b"HTTP/2 200"));
    }
}
