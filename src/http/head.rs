//! HTTP/1.1 request and response heads: read under limits from any [`Read`], and written.
//!
//! Everything here is free of sockets: the readers take any `Read`, the writers return
//! bytes. Time limits are enforced by the caller through the reader (a socket read timeout
//! surfaces here as [`HeadError::Timeout`]).

use std::fmt;
use std::io::{self, Read};
use std::time::Duration;

/// Limits on what a peer may send in one HTTP head and body: start from
/// [`HttpLimits::default`] and change what you need with the by-value setters.
///
/// They bound the memory and time a slow or hostile peer can cost. The defaults suit the
/// small heads of the DP-spec (an upgrade request is well under 1 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub(crate) max_head_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) head_timeout: Duration,
    pub(crate) max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            head_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl HttpLimits {
    /// The largest head accepted, request line (or status line) and headers together,
    /// in bytes. Default 16 KiB. A larger request head is answered `431`.
    pub fn max_head_bytes(mut self, bytes: usize) -> Self {
        self.max_head_bytes = bytes;
        self
    }

    /// The most header lines accepted in one head. Default 64. More is answered `431`.
    pub fn max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }

    /// How long the peer has to deliver a whole head. Default 10 s. A request head that
    /// takes longer is answered `408` and the connection closed.
    pub fn head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// The largest body read for a plain (non-upgrade) request or response, in bytes.
    /// Default 1 MiB. A larger request body is answered `413`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
}

/// Why a head could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum HeadError {
    /// The head grew past [`HttpLimits::max_head_bytes`] (a server answers `431`).
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The head has more than [`HttpLimits::max_headers`] header lines (a server answers
    /// `431`).
    TooManyHeaders {
        /// The limit in lines.
        limit: usize,
    },
    /// The bytes are not an HTTP/1.x head (a server answers `400`).
    Malformed(&'static str),
    /// The peer closed the connection before a whole head arrived.
    Eof {
        /// How many bytes of the head had arrived (0: the peer sent nothing).
        received: usize,
    },
    /// The peer did not deliver the head in time (a server answers `408`).
    Timeout,
    /// The connection failed while reading.
    Io(io::Error),
}

impl HeadError {
    /// The status a server answers with for this error, if it answers at all (a closed or
    /// broken connection gets no answer).
    pub fn status(&self) -> Option<u16> {
        match self {
            HeadError::TooLarge { .. } | HeadError::TooManyHeaders { .. } => Some(431),
            HeadError::Malformed(_) => Some(400),
            HeadError::Timeout => Some(408),
            HeadError::Eof { .. } | HeadError::Io(_) => None,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge { limit } => write!(
                f,
                "the HTTP head is larger than {limit} bytes: send fewer or shorter headers, or raise max_head_bytes"
            ),
            HeadError::TooManyHeaders { limit } => write!(
                f,
                "the HTTP head has more than {limit} header lines: send fewer headers, or raise max_headers"
            ),
            HeadError::Malformed(what) => write!(f, "malformed HTTP head: {what}"),
            HeadError::Eof { received: 0 } => {
                f.write_str("the peer closed the connection before sending an HTTP head")
            }
            HeadError::Eof { received } => write!(
                f,
                "the peer closed the connection after {received} bytes, in the middle of an HTTP head"
            ),
            HeadError::Timeout => f.write_str(
                "the peer did not send a whole HTTP head in time: check the network, or raise head_timeout",
            ),
            HeadError::Io(_) => f.write_str("reading an HTTP head failed"),
        }
    }
}

impl std::error::Error for HeadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeadError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Header lines in the order received: names as sent, values as raw bytes.
pub type Headers = Vec<(String, Vec<u8>)>;

/// The first value of header `name` (compared ASCII case-insensitively).
fn find<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
/// A parsed HTTP/1.x request head. Only with the `cp` feature.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestHead {
    /// The method, as sent (`GET`, `HEAD`, ...).
    pub method: String,
    /// The raw request target, query included, not percent-decoded.
    pub target: String,
    /// The minor version: 1 for `HTTP/1.1`, 0 for `HTTP/1.0`.
    pub version: u8,
    /// The header lines in the order received.
    pub headers: Headers,
}

#[cfg(feature = "cp")]
impl RequestHead {
    /// The first value of header `name` (case-insensitive), as raw bytes.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find(&self.headers, name)
    }

    /// The first value of header `name` (case-insensitive), if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The path: the target without its query.
    pub fn path(&self) -> &str {
        match self.target.find('?') {
            Some(i) => &self.target[..i],
            None => &self.target,
        }
    }

    /// The raw query (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.find('?').map(|i| &self.target[i + 1..])
    }

    /// The query as `name=value` pairs, raw (not percent-decoded, as Kong's CP reads
    /// them). A pair without `=` has an empty value; empty pairs are skipped.
    pub fn query_pairs(&self) -> Vec<(&str, &str)> {
        self.query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect()
    }

    /// The raw value of the first query parameter `name` (exact name match).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query_pairs()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
/// A parsed HTTP/1.x response head. Only with the `dp` feature.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent (may be empty).
    pub reason: String,
    /// The minor version: 1 for `HTTP/1.1`, 0 for `HTTP/1.0`.
    pub version: u8,
    /// The header lines in the order received.
    pub headers: Headers,
}

#[cfg(feature = "dp")]
impl ResponseHead {
    /// The first value of header `name` (case-insensitive), as raw bytes.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find(&self.headers, name)
    }

    /// The first value of header `name` (case-insensitive), if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
/// Reads one request head from `r` under `limits`.
///
/// Returns the head and every byte read past it (the start of a body, or of WebSocket
/// frames): those bytes are never lost. Reads in chunks; the whole head must fit in
/// [`HttpLimits::max_head_bytes`]. A read that fails with `WouldBlock` or `TimedOut`
/// (a socket read timeout) gives [`HeadError::Timeout`].
pub fn read_request_head(
    r: &mut impl Read,
    limits: &HttpLimits,
) -> Result<(RequestHead, Vec<u8>), HeadError> {
    read_head(r, limits, |buf, headers| {
        let mut req = httparse::Request::new(headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let head = RequestHead {
                    method: req.method.unwrap_or_default().to_string(),
                    target: req.path.unwrap_or_default().to_string(),
                    version: req.version.unwrap_or(1),
                    headers: own_headers(req.headers),
                };
                Ok(Some((head, n)))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(e) => Err(e),
        }
    })
}

#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
/// Reads one response head from `r` under `limits`; see [`read_request_head`].
pub fn read_response_head(
    r: &mut impl Read,
    limits: &HttpLimits,
) -> Result<(ResponseHead, Vec<u8>), HeadError> {
    read_head(r, limits, |buf, headers| {
        let mut resp = httparse::Response::new(headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let head = ResponseHead {
                    status: resp.code.unwrap_or_default(),
                    reason: resp.reason.unwrap_or_default().to_string(),
                    version: resp.version.unwrap_or(1),
                    headers: own_headers(resp.headers),
                };
                Ok(Some((head, n)))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(e) => Err(e),
        }
    })
}

fn own_headers(headers: &[httparse::Header<'_>]) -> Headers {
    headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect()
}

/// How many bytes are asked for per read.
const CHUNK: usize = 4096;

fn read_head<H>(
    r: &mut impl Read,
    limits: &HttpLimits,
    parse: impl for<'b> Fn(
        &'b [u8],
        &mut [httparse::Header<'b>],
    ) -> Result<Option<(H, usize)>, httparse::Error>,
) -> Result<(H, Vec<u8>), HeadError> {
    // The header array is made per parse (parses are rare: see below), sized by the limit.
    let try_parse = |buf: &[u8]| {
        let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        parse(buf, &mut headers)
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let start = buf.len();
        buf.resize(start + CHUNK, 0);
        let n = loop {
            match r.read(&mut buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(match e.kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HeadError::Timeout,
                        io::ErrorKind::UnexpectedEof => HeadError::Eof { received: start },
                        _ => HeadError::Io(e),
                    })
                }
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            return Err(HeadError::Eof { received: start });
        }
        // Parse only when the new bytes may have completed the blank line that ends a
        // head (a peer sending one byte per packet must not cost a parse per byte), and
        // on the first read, to turn away garbage without waiting for more of it.
        let tail = &buf[start.saturating_sub(2)..];
        let ends = tail.windows(3).any(|w| w == b"\n\r\n") || tail.windows(2).any(|w| w == b"\n\n");
        if ends || start == 0 {
            match try_parse(&buf) {
                Ok(Some((head, len))) => {
                    if len > limits.max_head_bytes {
                        return Err(HeadError::TooLarge {
                            limit: limits.max_head_bytes,
                        });
                    }
                    return Ok((head, buf[len..].to_vec()));
                }
                Ok(None) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HeadError::TooManyHeaders {
                        limit: limits.max_headers,
                    })
                }
                Err(e) => return Err(HeadError::Malformed(malformed(e))),
            }
        }
        if buf.len() > limits.max_head_bytes {
            return Err(HeadError::TooLarge {
                limit: limits.max_head_bytes,
            });
        }
    }
}

fn malformed(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
/// The standard reason phrase for `status` (`"Unknown"` for codes not listed).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Whether `s` may be written as a header name: a non-empty HTTP token.
pub fn valid_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
/// Whether `v` may be written as a header value: no control characters but tab.
pub fn valid_header_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Appends `name: value\r\n` to `out`.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(all(test, feature = "dp", feature = "cp"))]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Hands out its bytes one per read.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    /// Gives its bytes, then fails every read with `kind`.
    struct ThenFail<'a>(&'a [u8], io::ErrorKind);

    impl Read for ThenFail<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(self.1.into());
            }
            let n = self.0.len().min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    const UPGRADE: &[u8] =
        b"GET /v1/wrpc?node_id=abc&node_hostname=h1&node_version=3.1.0 HTTP/1.1\r\n\
        Host: cp:8005\r\nUpgrade: websocket\r\nCONNECTION: Upgrade\r\n\r\n";

    #[test]
    fn request_head_parses_with_case_insensitive_headers_and_query() {
        let (head, rest) =
            read_request_head(&mut Cursor::new(UPGRADE), &HttpLimits::default()).unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(
            head.target,
            "/v1/wrpc?node_id=abc&node_hostname=h1&node_version=3.1.0"
        );
        assert_eq!(head.path(), "/v1/wrpc");
        assert_eq!(
            head.query(),
            Some("node_id=abc&node_hostname=h1&node_version=3.1.0")
        );
        assert_eq!(
            head.query_pairs(),
            vec![
                ("node_id", "abc"),
                ("node_hostname", "h1"),
                ("node_version", "3.1.0")
            ]
        );
        assert_eq!(head.query_param("node_version"), Some("3.1.0"));
        assert_eq!(head.query_param("nope"), None);
        assert_eq!(head.version, 1);
        assert_eq!(head.header("connection"), Some(&b"Upgrade"[..]));
        assert_eq!(head.header_str("UPGRADE"), Some("websocket"));
        assert_eq!(head.header("x-missing"), None);
        assert!(rest.is_empty());
    }

    #[test]
    fn query_pairs_of_odd_queries() {
        let mut head = read_request_head(&mut Cursor::new(UPGRADE), &HttpLimits::default())
            .unwrap()
            .0;
        head.target = "/p?a&&b=1=2&=x".into();
        assert_eq!(head.query_pairs(), vec![("a", ""), ("b", "1=2"), ("", "x")]);
        head.target = "/p".into();
        assert_eq!(head.query(), None);
        assert!(head.query_pairs().is_empty());
        assert_eq!(head.path(), "/p");
    }

    #[test]
    fn head_split_across_one_byte_reads_keeps_leftover() {
        let mut bytes = UPGRADE.to_vec();
        bytes.extend_from_slice(b"\x82\x05hello");
        let (head, rest) = read_request_head(&mut Trickle(&bytes), &HttpLimits::default()).unwrap();
        assert_eq!(head.path(), "/v1/wrpc");
        // A one-byte reader stops right at the head; what follows is still readable.
        assert!(rest.is_empty());
    }

    #[test]
    fn bytes_after_the_head_in_the_same_read_are_returned() {
        let mut bytes = UPGRADE.to_vec();
        bytes.extend_from_slice(b"\x82\x05hello");
        let (_, rest) =
            read_request_head(&mut Cursor::new(&bytes), &HttpLimits::default()).unwrap();
        assert_eq!(rest, b"\x82\x05hello");
    }

    #[test]
    fn leftover_beyond_one_chunk_is_kept_whole() {
        let mut bytes = UPGRADE.to_vec();
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        bytes.extend_from_slice(&body);
        let mut cur = Cursor::new(&bytes);
        let (_, rest) = read_request_head(&mut cur, &HttpLimits::default()).unwrap();
        let mut all = rest;
        cur.read_to_end(&mut all).unwrap();
        assert_eq!(all, body);
    }

    #[test]
    fn bare_newlines_end_a_head() {
        let (head, rest) = read_request_head(
            &mut Trickle(b"GET / HTTP/1.1\nHost: x\n\nrest"),
            &HttpLimits::default(),
        )
        .unwrap();
        assert_eq!(head.header_str("host"), Some("x"));
        assert!(rest.is_empty());
    }

    #[test]
    fn response_head_parses() {
        let bytes = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            kong-node-id: cp-1\r\n\r\n\x81\x00";
        let (head, rest) =
            read_response_head(&mut Cursor::new(&bytes[..]), &HttpLimits::default()).unwrap();
        assert_eq!(head.status, 101);
        assert_eq!(head.reason, "Switching Protocols");
        assert_eq!(head.header_str("Kong-Node-Id"), Some("cp-1"));
        assert_eq!(rest, b"\x81\x00");
    }

    #[test]
    fn response_head_without_reason() {
        let (head, _) = read_response_head(
            &mut Trickle(b"HTTP/1.1 404 \r\n\r\n"),
            &HttpLimits::default(),
        )
        .unwrap();
        assert_eq!(head.status, 404);
        assert_eq!(head.reason, "");
    }

    #[test]
    fn oversized_head_is_too_large() {
        let mut bytes = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        bytes.extend(std::iter::repeat_n(b'a', 20 * 1024));
        bytes.extend_from_slice(b"\r\n\r\n");
        let err = read_request_head(&mut Cursor::new(&bytes), &HttpLimits::default()).unwrap_err();
        assert!(
            matches!(err, HeadError::TooLarge { limit: 16384 }),
            "{err:?}"
        );
        assert_eq!(err.status(), Some(431));
    }

    #[test]
    fn complete_head_over_the_limit_is_too_large() {
        let limits = HttpLimits {
            max_head_bytes: 20,
            ..HttpLimits::default()
        };
        let err = read_request_head(&mut Cursor::new(UPGRADE), &limits).unwrap_err();
        assert!(matches!(err, HeadError::TooLarge { limit: 20 }), "{err:?}");
    }

    #[test]
    fn too_many_headers() {
        let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            bytes.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        let err = read_request_head(&mut Cursor::new(&bytes), &HttpLimits::default()).unwrap_err();
        assert!(
            matches!(err, HeadError::TooManyHeaders { limit: 64 }),
            "{err:?}"
        );
        assert_eq!(err.status(), Some(431));
    }

    #[test]
    fn exactly_max_headers_is_fine() {
        let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..64 {
            bytes.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        let (head, _) =
            read_request_head(&mut Cursor::new(&bytes), &HttpLimits::default()).unwrap();
        assert_eq!(head.headers.len(), 64);
    }

    #[test]
    fn garbage_is_malformed_at_once() {
        // No blank line yet: rejected without waiting for one.
        let err = read_request_head(
            &mut ThenFail(b"\x16\x03\x01\x02\x00", io::ErrorKind::TimedOut),
            &HttpLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, HeadError::Malformed(_)), "{err:?}");
        assert_eq!(err.status(), Some(400));
        let err = read_request_head(
            &mut Cursor::new(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"),
            &HttpLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, HeadError::Malformed(_)), "{err:?}");
        let err = read_response_head(
            &mut Cursor::new(b"HTTP/1.1 abc OK\r\n\r\n"),
            &HttpLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, HeadError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn eof_before_and_inside_a_head() {
        let err = read_request_head(&mut Cursor::new(b""), &HttpLimits::default()).unwrap_err();
        assert!(matches!(err, HeadError::Eof { received: 0 }), "{err:?}");
        assert_eq!(err.status(), None);
        let err = read_request_head(
            &mut Cursor::new(b"GET / HTTP/1.1\r\nHo"),
            &HttpLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, HeadError::Eof { received: 18 }), "{err:?}");
        let err = read_request_head(
            &mut ThenFail(b"GET /", io::ErrorKind::UnexpectedEof),
            &HttpLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, HeadError::Eof { received: 5 }), "{err:?}");
    }

    #[test]
    fn read_timeouts_are_timeout() {
        for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
            let err = read_request_head(&mut ThenFail(b"GET / HT", kind), &HttpLimits::default())
                .unwrap_err();
            assert!(matches!(err, HeadError::Timeout), "{err:?}");
            assert_eq!(err.status(), Some(408));
        }
        let err = read_request_head(
            &mut ThenFail(b"", io::ErrorKind::ConnectionReset),
            &HttpLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, HeadError::Io(_)), "{err:?}");
    }

    #[test]
    fn header_checks() {
        assert!(valid_header_name("kong-node-id"));
        assert!(!valid_header_name("bad name"));
        assert!(!valid_header_name(""));
        assert!(valid_header_value(b"a value\twith tab"));
        assert!(!valid_header_value(b"a\r\nInjected: 1"));
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(599), "Unknown");
    }
}
