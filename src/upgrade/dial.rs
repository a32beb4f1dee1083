//! The DP's upgrade driver: a connection from [`http::connect`](crate::http::connect),
//! then the upgrade request of [`build_request`] and the checks of [`check_response`].

use std::net::TcpStream;

use rustls::StreamOwned;

use super::client::generate_key;
use super::{build_request, check_response, UpgradeError, UpgradeTarget};
use crate::channel::{Channel, ChannelConfig, ChannelError, Reader, Role};
use crate::deadline::Timed;
use crate::http::client::head_error;
use crate::http::{
    body_length, connect, drain_plaintext, io_error, read_body, read_response_head, Connected,
    DialOptions, HttpError, ResponseHead, HEADER_NODE_ID,
};
use crate::tcp;
use crate::Error;

internal_fields! {
    /// A connection upgraded to a WebSocket.
    ///
    /// The socket's read timeout is cleared (an idle connection costs no wake-ups) and its
    /// write timeout set to [`DialOptions::write_timeout`]. `leftover` holds every plaintext
    /// byte received after the `101` head (the start of the CP's first WebSocket frames),
    /// including any the TLS session had already decrypted; the session holds at most a
    /// partial TLS record, so the next step is to read from the socket.
    #[derive(Debug)]
    pub struct Dialed {
        /// The TLS session.
        session: rustls::ClientConnection,
        /// The socket under it.
        sock: TcpStream,
        /// Plaintext received after the response head: never lost.
        leftover: Vec<u8>,
        /// The CP's `101` (its `kong-node-id` header names the CP node).
        response: ResponseHead,
    }
}

impl Dialed {
    /// The CP's `101` response (its `kong-node-id` header names the CP node).
    pub fn response(&self) -> &ResponseHead {
        &self.response
    }

    /// The message channel on this connection, as its client: the returned [`Reader`]
    /// must be run for anything to be received (see [`Channel`]).
    pub fn into_channel(self, config: ChannelConfig) -> Result<(Channel, Reader), ChannelError> {
        Channel::new(self.session, self.sock, self.leftover, Role::Client, config)
    }
}

/// The longest piece of a refusal's body kept in the error.
const REFUSAL_BODY_CHARS: usize = 512;

/// Connects to the CP and upgrades at `target` ([`UpgradeTarget::wrpc`],
/// [`UpgradeTarget::outlet`] or any other), all within [`DialOptions::connect_timeout`].
///
/// TCP (or a CONNECT tunnel through the proxy), TLS, then the upgrade request, whose
/// answer must be a `101` that accepts our key and subprotocol. A refusal comes back as
/// [`UpgradeError::Refused`] with the CP's status, reason, body text and node id.
pub fn dial(opts: &DialOptions, target: &UpgradeTarget) -> Result<Dialed, Error> {
    opts.node.validate()?;
    let Connected {
        session,
        sock,
        deadline,
    } = connect(opts)?;
    let key = generate_key();
    let req = build_request(
        &tcp::join_host_port(&opts.host, opts.port),
        target,
        &opts.node,
        &key,
    );
    let mut stream = StreamOwned::new(session, Timed { sock, deadline });
    // With our Finished, which the handshake left queued: one write.
    crate::tls::write_with_pending(&mut stream.conn, &mut stream.sock, &req)
        .map_err(|e| io_error(e, "sending the upgrade request"))?;
    let (response, mut leftover) =
        read_response_head(&mut stream, &opts.limits).map_err(head_error)?;
    if let Err(e) = check_response(&response, &key, target) {
        return Err(match e {
            UpgradeError::Refused(mut refusal) => {
                // Best effort, within what is left of the deadline.
                let body = body_length(&response.headers)
                    .and_then(|len| {
                        read_body(&mut stream, leftover, len, opts.limits.max_body_bytes)
                    })
                    .unwrap_or_default();
                refusal.body = String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(REFUSAL_BODY_CHARS)
                    .collect();
                UpgradeError::Refused(refusal).into()
            }
            e => e.into(),
        });
    }
    let StreamOwned { mut conn, sock } = stream;
    let sock = sock.sock;
    drain_plaintext(&mut conn, &mut leftover);
    sock.set_read_timeout(None)
        .and_then(|()| sock.set_write_timeout(Some(opts.write_timeout)))
        .map_err(HttpError::Io)?;
    log::debug!(
        "upgraded at {} on {} (CP node {})",
        target.path,
        tcp::join_host_port(&opts.host, opts.port),
        response.header_str(HEADER_NODE_ID).unwrap_or("unknown")
    );
    Ok(Dialed {
        session: conn,
        sock,
        leftover,
        response,
    })
}
