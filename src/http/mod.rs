//! HTTP/1.1: heads under limits ([`HttpLimits`]), the CP's [`Listener`] and what it serves
//! ([`ServerConfig`], [`Route`]), and who the DP says it is ([`NodeIdentity`]). The DP's
//! side of a connection is reached through [`crate::upgrade::dial`]. The WebSocket upgrade
//! sits on top of this module, in [`crate::upgrade`]. The response head exists with
//! feature `dp`; the listener and the request head with feature `cp`.
//!
//! Every HTTP request a DP makes carries `kong-node-id`, `kong-version` and
//! `kong-hostname`; every response the CP gives, `101` and errors included, carries
//! `kong-node-id`. Each connection carries one request: responses other than `101` end
//! with `Connection: close`.

use std::fmt;
use std::io;

internal! {
    #[cfg(feature = "dp")]
    mod client;
}
#[cfg(feature = "cp")]
mod conn;
#[cfg(feature = "cp")]
mod handoff;
internal! { mod head; }
#[cfg(feature = "cp")]
mod listener;
pub(crate) mod node;
#[cfg(feature = "cp")]
pub(crate) mod server;

#[cfg(feature = "dp")]
pub(crate) use client::DialOptions;
#[cfg(feature = "dp")]
internal_use!(client::{connect, request, Connected});
#[cfg(feature = "cp")]
internal_use!(head::read_request_head);
#[cfg(feature = "dp")]
internal_use!(head::read_response_head);
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use head::RequestHead;
#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub use head::ResponseHead;
pub use head::{HeadError, HttpLimits};
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use listener::Listener;
pub use node::{NodeIdentity, HEADER_HOSTNAME, HEADER_NODE_ID, HEADER_VERSION, MAX_IDENTITY_LEN};
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use server::{HttpHandler, Request, Response, Route, ServerConfig, DEFAULT_MAX_HANDSHAKES};
#[cfg(feature = "cp")]
internal_use!(handoff::HandOff);
#[cfg(feature = "cp")]
internal_use!(server::{Switch, SwitchHandler, Switched});

/// Errors of the HTTP layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// A request or response head could not be read. Transparent: its `Display` and
    /// `source()` are the [`HeadError`]'s own.
    Head(HeadError),
    /// Binding the listening socket failed (address in use, no permission, ...).
    Bind(io::Error),
    /// A thread could not be started.
    Spawn(io::Error),
    /// A configuration value is not usable; the text says which and why.
    InvalidConfig(String),
    /// The connection failed while writing a request or reading a body.
    Io(io::Error),
    /// A step did not finish in time; the text names the step.
    Timeout(&'static str),
    /// The body is larger than [`HttpLimits::max_body_bytes`].
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The peer used an HTTP feature this crate does not speak; the text says which.
    Unsupported(&'static str),
    /// Our own node identity cannot be sent; the text says which field and why.
    InvalidNode(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Head(e) => e.fmt(f),
            HttpError::Bind(_) => {
                f.write_str("could not bind the listener (is the port taken, or privileged?)")
            }
            HttpError::Spawn(_) => f.write_str("could not start a thread"),
            HttpError::InvalidConfig(s) => write!(f, "invalid HTTP configuration: {s}"),
            HttpError::Io(_) => f.write_str("the connection failed"),
            HttpError::Timeout(step) => write!(
                f,
                "timed out {step}: check the network and the peer, or raise the timeout"
            ),
            HttpError::BodyTooLarge { limit } => write!(
                f,
                "the body is larger than {limit} bytes: raise max_body_bytes if this is expected"
            ),
            HttpError::Unsupported(what) => write!(f, "unsupported HTTP: {what}"),
            HttpError::InvalidNode(s) => write!(f, "invalid node identity: {s}"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent, as its Display is the head error's own.
            HttpError::Head(e) => e.source(),
            HttpError::Bind(e) | HttpError::Spawn(e) | HttpError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HeadError> for HttpError {
    fn from(e: HeadError) -> Self {
        HttpError::Head(e)
    }
}

/// Maps an I/O error met during `step` to ours.
pub(crate) fn io_error(e: io::Error, step: &'static str) -> HttpError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::Timeout(step),
        _ => HttpError::Io(e),
    }
}

/// How a body is delimited, from a head's headers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// `Content-Length: n`.
    Exactly(usize),
    /// Neither header: for a response, the body runs to the end of the connection; for a
    /// request, there is no body.
    Unspecified,
}

/// Reads `Content-Length` and refuses `Transfer-Encoding` (never needed by the DP-spec).
pub(crate) fn body_length(headers: &head::Headers) -> Result<BodyLength, HttpError> {
    let mut found: Option<usize> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Unsupported(
                "Transfer-Encoding (chunked bodies): send Content-Length",
            ));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(HttpError::Head(HeadError::Malformed(
                    "invalid Content-Length",
                )))?;
            if found.is_some_and(|f| f != n) {
                return Err(HttpError::Head(HeadError::Malformed(
                    "conflicting Content-Length headers",
                )));
            }
            found = Some(n);
        }
    }
    Ok(found.map_or(BodyLength::Unspecified, BodyLength::Exactly))
}

/// Reads a body of `len` (or to EOF) starting with the bytes in `leftover`, at most
/// `limit` bytes.
pub(crate) fn read_body(
    r: &mut impl io::Read,
    mut leftover: Vec<u8>,
    len: BodyLength,
    limit: usize,
) -> Result<Vec<u8>, HttpError> {
    match len {
        BodyLength::Exactly(n) => {
            if n > limit {
                return Err(HttpError::BodyTooLarge { limit });
            }
            if leftover.len() >= n {
                leftover.truncate(n);
                return Ok(leftover);
            }
            let have = leftover.len();
            leftover.resize(n, 0);
            read_exact(r, &mut leftover[have..])?;
            Ok(leftover)
        }
        BodyLength::Unspecified => {
            let mut chunk = [0u8; 4096];
            loop {
                if leftover.len() > limit {
                    return Err(HttpError::BodyTooLarge { limit });
                }
                match r.read(&mut chunk) {
                    Ok(0) => return Ok(leftover),
                    Ok(n) => leftover.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // A TLS peer that closes without close_notify: the body ends here.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(leftover),
                    Err(e) => return Err(io_error(e, "reading a body")),
                }
            }
        }
    }
}

/// Moves the plaintext a TLS session has already decrypted into `out`, so that a caller
/// handed the session and the socket can start by reading the socket.
pub(crate) fn drain_plaintext<D>(conn: &mut rustls::ConnectionCommon<D>, out: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    loop {
        match io::Read::read(&mut conn.reader(), &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn read_exact(r: &mut impl io::Read, mut buf: &mut [u8]) -> Result<(), HttpError> {
    while !buf.is_empty() {
        match r.read(buf) {
            Ok(0) => {
                return Err(HttpError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection in the middle of a body",
                )))
            }
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e, "reading a body")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn headers(list: &[(&str, &str)]) -> head::Headers {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn body_length_from_headers() {
        assert_eq!(
            body_length(&headers(&[("Content-Length", " 12 ")])).unwrap(),
            BodyLength::Exactly(12)
        );
        assert_eq!(
            body_length(&headers(&[
                ("content-length", "3"),
                ("Content-Length", "3")
            ]))
            .unwrap(),
            BodyLength::Exactly(3)
        );
        assert_eq!(body_length(&headers(&[])).unwrap(), BodyLength::Unspecified);
        for bad in [
            &[("Content-Length", "-1")][..],
            &[("Content-Length", "1, 2")],
            &[("Content-Length", "")],
            &[("Content-Length", "99999999999999999999999")],
            &[("Content-Length", "1"), ("Content-Length", "2")],
        ] {
            assert!(
                matches!(
                    body_length(&headers(bad)),
                    Err(HttpError::Head(HeadError::Malformed(_)))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            body_length(&headers(&[("Transfer-Encoding", "chunked")])),
            Err(HttpError::Unsupported(_))
        ));
    }

    #[test]
    fn body_starts_with_leftover() {
        let body = read_body(
            &mut Cursor::new(b"lo world, and more"),
            b"hel".to_vec(),
            BodyLength::Exactly(11),
            100,
        )
        .unwrap();
        assert_eq!(body, b"hello world");
        let body = read_body(
            &mut Cursor::new(b""),
            b"hello!".to_vec(),
            BodyLength::Exactly(5),
            100,
        )
        .unwrap();
        assert_eq!(body, b"hello");
        let body = read_body(
            &mut Cursor::new(b" to the end"),
            b"up".to_vec(),
            BodyLength::Unspecified,
            100,
        )
        .unwrap();
        assert_eq!(body, b"up to the end");
    }

    #[test]
    fn body_over_the_limit_or_cut_short() {
        assert!(matches!(
            read_body(&mut Cursor::new(b""), vec![], BodyLength::Exactly(101), 100),
            Err(HttpError::BodyTooLarge { limit: 100 })
        ));
        assert!(matches!(
            read_body(
                &mut Cursor::new(vec![0u8; 200]),
                vec![],
                BodyLength::Unspecified,
                100
            ),
            Err(HttpError::BodyTooLarge { limit: 100 })
        ));
        assert!(matches!(
            read_body(&mut Cursor::new(b"abc"), vec![], BodyLength::Exactly(5), 100),
            Err(HttpError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
    }
}
