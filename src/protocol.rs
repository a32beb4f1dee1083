//! Which message protocol a connection speaks on top of the WebSocket.

use std::fmt;

/// A protocol a data plane and a control plane speak over the WebSocket. Both run over
/// the same stack (TCP, proxy, TLS trust modes, HTTP heads and limits); the roles'
/// `DataPlane` and `ControlPlane` serve either behind one API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Protocol {
    /// wRPC at `/v1/wrpc`, subprotocol `wrpc.konghq.com`: spoken by Kong 3.0 and 3.1 only.
    Wrpc,
    /// Kong's JSON protocol at `/v1/outlet`, no subprotocol: Kong 2.x, 3.0 and 3.2 to 3.9,
    /// every release in the field.
    Json,
}

impl Protocol {
    /// The short name used in logs and events: `wrpc` or `json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Wrpc => "wrpc",
            Protocol::Json => "json",
        }
    }

    /// The upgrade path Kong serves it on.
    pub fn path(&self) -> &'static str {
        match self {
            Protocol::Wrpc => crate::upgrade::WRPC_PATH,
            Protocol::Json => crate::outlet::OUTLET_PATH,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
