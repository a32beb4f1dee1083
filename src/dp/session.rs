//! One connection to the CP, the parts every protocol shares: pick the protocol (Kong
//! 3.0's `HEAD /v1/wrpc` probe for [`ProtocolChoice::Auto`]), dial and upgrade, start the
//! channel, then hand it to the protocol's driver: [`super::wrpc`] or [`super::json`].
//! A third protocol is one more driver file and one more arm in [`run`].

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use super::{DpEvent, ProtocolChoice, Shared};
use crate::channel::{close_code, lock, Channel, ChannelConfig, Reader, Role};
use crate::http::NodeIdentity;
use crate::http::{self, DialOptions};
use crate::upgrade::{dial, UpgradeTarget, WRPC_PATH};
use crate::Protocol;

/// How a session ended.
pub(crate) struct SessionEnd {
    /// Why; `None` when the data plane is shutting down.
    pub reason: Option<String>,
    /// The connection got as far as exchanging messages (negotiation on wRPC,
    /// `basic_info` sent on JSON): resets the backoff.
    pub negotiated: bool,
}

impl SessionEnd {
    pub(crate) fn failed(reason: String, negotiated: bool) -> SessionEnd {
        SessionEnd {
            reason: Some(reason),
            negotiated,
        }
    }

    pub(crate) fn stopping(negotiated: bool) -> SessionEnd {
        SessionEnd {
            reason: None,
            negotiated,
        }
    }
}

/// An upgraded connection, handed to a protocol driver before its reader runs.
pub(crate) struct Connection {
    pub channel: Channel,
    pub reader: Reader,
    pub cp_node_id: Option<String>,
    pub protocol: Protocol,
}

/// Runs one connection until it ends or `shutdown` is disconnected.
pub(crate) fn run(shared: &Arc<Shared>, shutdown: &Receiver<()>) -> SessionEnd {
    let s = &shared.settings;
    let opts = dial_options(shared);
    let protocol = match s.protocol {
        ProtocolChoice::Wrpc => Protocol::Wrpc,
        ProtocolChoice::Json => Protocol::Json,
        ProtocolChoice::Auto => match probe(&opts) {
            Ok(p) => p,
            Err(e) => return SessionEnd::failed(e, false),
        },
    };
    let (target, max_message_size) = match protocol {
        Protocol::Json => (UpgradeTarget::outlet(), s.json_max_frame),
        _ => (UpgradeTarget::wrpc(), s.max_message_size),
    };
    let dialed = match dial(&opts, &target) {
        Ok(d) => d,
        Err(e) => {
            let e = crate::error::Chain(&e);
            return SessionEnd::failed(
                format!("connecting to {}:{} ({protocol}): {e}", s.host, s.port),
                false,
            );
        }
    };
    let cp_node_id = dialed
        .response
        .header_str(http::HEADER_NODE_ID)
        .map(str::to_string);
    let cfg = ChannelConfig::default()
        .max_message_size(max_message_size)
        .write_timeout(s.write_timeout)
        .close_timeout(s.close_timeout)
        .label(format!("cp-{}:{}", s.host, s.port));
    let (channel, reader) = match Channel::new(
        dialed.session,
        dialed.sock,
        dialed.leftover,
        Role::Client,
        cfg,
    ) {
        Ok(c) => c,
        Err(e) => {
            let e = crate::error::Chain(&e);
            return SessionEnd::failed(format!("starting the channel: {e}"), false);
        }
    };
    let conn = Connection {
        channel,
        reader,
        cp_node_id,
        protocol,
    };
    let end = match protocol {
        Protocol::Json => super::json::run(shared, conn, shutdown),
        _ => super::wrpc::run(shared, conn, shutdown),
    };
    *lock(&shared.current) = None;
    shared.update(|st| {
        st.connected = false;
        st.protocol = None;
    });
    end
}

/// Where and as whom to connect, from the settings.
fn dial_options(shared: &Shared) -> DialOptions {
    let s = &shared.settings;
    let mut opts = DialOptions::new(
        s.host.clone(),
        s.port,
        s.tls.clone(),
        NodeIdentity::new(&s.node_id, &s.hostname, &s.version),
    )
    .connect_timeout(s.connect_timeout)
    .write_timeout(s.write_timeout);
    opts.server_name = s.server_name.clone();
    opts.proxy = s.proxy.clone();
    opts
}

/// Kong 3.0's probe: `HEAD /v1/wrpc` with the kong-* headers; 404 means the CP speaks
/// only Kong's JSON protocol, any other status means wRPC. A transport error is a
/// failed attempt (Kong 3.0 would settle on JSON for the life of the process instead).
fn probe(opts: &DialOptions) -> Result<Protocol, String> {
    match http::request(opts, "HEAD", WRPC_PATH, b"") {
        Ok((head, _)) => {
            let protocol = if head.status == 404 {
                Protocol::Json
            } else {
                Protocol::Wrpc
            };
            log::info!(
                "HEAD {WRPC_PATH} on {}:{} answered {}: speaking {protocol}",
                opts.host,
                opts.port,
                head.status
            );
            Ok(protocol)
        }
        Err(e) => Err(format!(
            "probing {}:{} with HEAD {WRPC_PATH} to pick the protocol: {}",
            opts.host,
            opts.port,
            crate::error::Chain(&e)
        )),
    }
}

/// What every driver does once it has set up its reader (`reader`, the result of
/// spawning it): publishes the connection ([`connected`]), runs `converse` until the
/// connection ends, closes the channel with the reason the conversation ended for (unless
/// the channel has ended already), and waits for the reader thread.
pub(crate) fn serve<E: std::error::Error + 'static>(
    shared: &Shared,
    channel: &Channel,
    protocol: Protocol,
    cp_node_id: Option<String>,
    reader: Result<JoinHandle<()>, E>,
    converse: impl FnOnce() -> SessionEnd,
) -> SessionEnd {
    let reader = match reader {
        Ok(handle) => handle,
        Err(e) => {
            let e = crate::error::Chain(&e);
            return SessionEnd::failed(format!("starting the reader: {e}"), false);
        }
    };
    connected(shared, channel, protocol, cp_node_id);
    let end = converse();
    if end.reason.is_some() && channel.ended().is_none() {
        channel.close(close_code::NORMAL, end.reason.as_deref().unwrap_or(""));
    }
    let _ = reader.join();
    end
}

/// Publishes an upgraded connection: the handle shutdown closes, the status and the
/// `Connected` event. Call once its reader runs.
fn connected(shared: &Shared, channel: &Channel, protocol: Protocol, cp_node_id: Option<String>) {
    *lock(&shared.current) = Some(channel.clone());
    if shared.stopping() {
        channel.close(close_code::NORMAL, "data plane shutting down");
    }
    shared.update(|st| {
        st.connected = true;
        st.protocol = Some(protocol);
        st.cp_node_id = cp_node_id.clone();
    });
    shared.emit(DpEvent::Connected {
        protocol,
        cp_node_id,
    });
}
