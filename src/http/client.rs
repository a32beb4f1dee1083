//! The DP side: connect to the CP (TCP, proxy, TLS: [`connect`]) and make one plain
//! request ([`request`]). The WebSocket upgrade on top of [`connect`] is
//! [`crate::upgrade::dial`].

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustls::StreamOwned;

use super::head::{push_header, read_response_head, HeadError, HttpLimits, ResponseHead};
use super::node::{push_node_headers, NodeIdentity};
use super::{body_length, io_error, read_body, HttpError};
use crate::deadline::{set_timeouts, Timed};
use crate::proxy::{self, ProxyUrl};
use crate::tcp;
use crate::tls::{self, ClientTls, TlsError};
use crate::Error;

/// Where and how a DP connects to its CP: [`DialOptions::new`] with what has no default,
/// then the by-value setters, each of which documents its default.
#[derive(Debug, Clone)]
pub struct DialOptions {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) server_name: Option<String>,
    pub(crate) tls: ClientTls,
    pub(crate) proxy: Option<ProxyUrl>,
    pub(crate) connect_timeout: Duration,
    pub(crate) node: NodeIdentity,
    pub(crate) limits: HttpLimits,
    pub(crate) write_timeout: Duration,
}

impl DialOptions {
    /// Options for the CP at `host` (a host name or IP address, IPv6 without brackets)
    /// and `port` (Kong's cluster port is 8005), over `tls`, as `node` (sent in the
    /// `kong-*` headers and in an upgrade's query), with the defaults.
    pub fn new(host: impl Into<String>, port: u16, tls: ClientTls, node: NodeIdentity) -> Self {
        DialOptions {
            host: host.into(),
            port,
            server_name: None,
            tls,
            proxy: None,
            connect_timeout: tcp::DEFAULT_CONNECT_TIMEOUT,
            node,
            limits: HttpLimits::default(),
            write_timeout: Duration::from_secs(10),
        }
    }

    /// The name for SNI and certificate verification. Default: the TLS configuration's
    /// (`kong_clustering` in shared mode, as Kong), else the host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// An HTTP CONNECT proxy to tunnel through. Default none.
    pub fn proxy(mut self, proxy: ProxyUrl) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// The time allowed to connect: TCP, the proxy tunnel, the TLS handshake and the
    /// upgrade together. Default 5 s, Kong's.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Limits on the CP's responses. For a plain request, `head_timeout` is the time the
    /// CP has to answer, body included. Default [`HttpLimits::default`].
    pub fn limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The write timeout left on the socket of an upgraded connection
    /// ([`crate::upgrade::Dialed`]). Default 10 s.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Who this DP says it is.
    pub fn node(&self) -> &NodeIdentity {
        &self.node
    }

    internal_fn! {
        /// The server name used for SNI and verification.
        fn effective_server_name(&self) -> &str {
            self.server_name
                .as_deref()
                .or(self.tls.default_server_name())
                .unwrap_or(&self.host)
        }
    }
}

/// Maps a failure to read the CP's answer head. With TLS 1.3 the CP refuses our client
/// certificate only after our side of the handshake is done, so its alert arrives on this
/// first read: that is a TLS error ([`TlsError::ClientCertMissing`],
/// [`TlsError::ClientCertRejected`], ...), not an HTTP one.
pub(crate) fn head_error(e: HeadError) -> Error {
    match e {
        HeadError::Io(io) if io.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
            Error::Tls(TlsError::from_stream_error(io, rustls::Side::Client))
        }
        e => HttpError::Head(e).into(),
    }
}

/// A TLS connection to the CP with nothing sent yet, from [`connect`].
#[derive(Debug)]
pub struct Connected {
    /// The TLS session, handshake done.
    pub session: rustls::ClientConnection,
    /// The socket under it; its read and write timeouts are set to what is left of
    /// `deadline`.
    pub sock: TcpStream,
    /// When the connect timeout ends: the next step (a request, an upgrade) shares it.
    pub deadline: Instant,
}

/// TCP (or a CONNECT tunnel through the proxy), then TLS, within
/// [`DialOptions::connect_timeout`].
pub fn connect(opts: &DialOptions) -> Result<Connected, Error> {
    let deadline = Instant::now() + opts.connect_timeout;
    let sock = match &opts.proxy {
        None => tcp::connect(&opts.host, opts.port, opts.connect_timeout)?,
        Some(p) => proxy::tunnel(p, &opts.host, opts.port, opts.connect_timeout)?,
    };
    let _ = sock.set_nodelay(true);
    let mut session = opts.tls.session(opts.effective_server_name())?;
    set_timeouts(&sock, deadline).map_err(|e| io_error(e, "connecting (TLS)"))?;
    // The handshake shares the connect deadline: a CP trickling its hello cannot stretch it.
    let mut timed = Timed { sock, deadline };
    tls::client_handshake(&mut session, &mut timed)?;
    Ok(Connected {
        session,
        sock: timed.sock,
        deadline,
    })
}

/// Makes one plain HTTP/1.1 request to the CP (a stateless HTTP RPC) and returns its
/// response head and body.
///
/// Connects with [`connect`] (within the connect timeout), then sends `method path` with
/// `Host`, `kong-node-id`, `kong-version`, `kong-hostname`, `Content-Length` and
/// `Connection: close`. The CP then has [`HttpLimits::head_timeout`] to answer; the body
/// is read by `Content-Length` or to the end of the connection, at most
/// [`HttpLimits::max_body_bytes`]. Any status is returned as is.
pub fn request(
    opts: &DialOptions,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(ResponseHead, Vec<u8>), Error> {
    if !super::head::valid_header_name(method) {
        return Err(Error::InvalidInput(format!(
            "HTTP method {method:?} is not a token"
        )));
    }
    if !path.starts_with('/') || !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::InvalidInput(format!(
            "request path {path:?} must start with / and be visible ASCII"
        )));
    }
    opts.node.validate()?;
    let Connected { session, sock, .. } = connect(opts)?;
    let deadline = Instant::now() + opts.limits.head_timeout;
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\n").as_bytes());
    push_header(
        &mut out,
        "Host",
        tcp::join_host_port(&opts.host, opts.port).as_bytes(),
    );
    push_node_headers(&mut out, &opts.node);
    push_header(
        &mut out,
        "Content-Length",
        body.len().to_string().as_bytes(),
    );
    push_header(&mut out, "Connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    let mut stream = StreamOwned::new(session, Timed { sock, deadline });
    // With our Finished, which the handshake left queued: one write.
    tls::write_with_pending(&mut stream.conn, &mut stream.sock, &out)
        .map_err(|e| io_error(e, "sending the request"))?;
    let (head, leftover) = read_response_head(&mut stream, &opts.limits).map_err(head_error)?;
    let no_body = method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304;
    let body = if no_body {
        Vec::new()
    } else {
        let len = body_length(&head.headers)?;
        read_body(&mut stream, leftover, len, opts.limits.max_body_bytes)?
    };
    stream.conn.send_close_notify();
    let _ = stream.flush();
    Ok((head, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_defaults() {
        let tls = ClientTls::new(crate::tls::TrustMode::WebPki, None).unwrap();
        let mut opts = DialOptions::new("cp.example", 8005, tls, NodeIdentity::default());
        assert_eq!(opts.effective_server_name(), "cp.example");
        opts.server_name = Some("other".into());
        assert_eq!(opts.effective_server_name(), "other");
        assert_eq!(opts.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_tls_alert_on_the_first_read_is_a_tls_error() {
        use rustls::AlertDescription;
        let alert = |a| {
            HeadError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::AlertReceived(a),
            ))
        };
        assert!(matches!(
            head_error(alert(AlertDescription::CertificateRequired)),
            Error::Tls(TlsError::ClientCertMissing)
        ));
        assert!(matches!(
            head_error(alert(AlertDescription::BadCertificate)),
            Error::Tls(TlsError::ClientCertRejected { .. })
        ));
        // Other read failures stay HTTP errors.
        assert!(matches!(
            head_error(HeadError::Eof { received: 0 }),
            Error::Http(HttpError::Head(HeadError::Eof { received: 0 }))
        ));
        assert!(matches!(
            head_error(HeadError::Io(std::io::ErrorKind::ConnectionReset.into())),
            Error::Http(HttpError::Head(HeadError::Io(_)))
        ));
    }

    #[test]
    fn bad_method_or_path_is_invalid_input() {
        let tls = ClientTls::new(crate::tls::TrustMode::WebPki, None).unwrap();
        let opts = DialOptions::new("127.0.0.1", 1, tls, NodeIdentity::new("a", "", "1"));
        assert!(matches!(
            request(&opts, "G T", "/x", b""),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            request(&opts, "GET", "x y", b""),
            Err(Error::InvalidInput(_))
        ));
    }
}
