//! The WebSocket upgrade, both sides, on top of [`http`](crate::http), for any path and
//! subprotocol: `/v1/wrpc` with `wrpc.konghq.com` and `/v1/outlet` with none.
//!
//! The DP's [`dial`] connects (TCP, an optional CONNECT proxy, TLS), sends the upgrade
//! request for an [`UpgradeTarget`] and checks the answer. The CP checks a request against
//! an [`Endpoint`] and answers `101` (or the [`Rejection`] its [`UpgradeHandler`] gave);
//! [`route`] puts those checks on a path of the [`http`](crate::http) listener, which
//! knows nothing of upgrades: it moves the bytes, and this module sits on top of it. Both
//! ends turn the upgraded connection into a [`Channel`](crate::channel::Channel) with
//! `into_channel`.
//!
//! The DP's side (the request, [`dial`], [`UpgradeError`]) exists with feature `dp`, the
//! CP's side ([`Endpoint`], [`route`], [`Rejection`]) with feature `cp`.
//!
//! What real Kong peers send and expect (see the crate's interop notes): the DP puts its
//! identity in the query, `node_id`, `node_hostname`, `node_version` in that order and not
//! percent-encoded, and (the spec's rule) in the headers `kong-node-id`, `kong-version`,
//! `kong-hostname`; the wRPC subprotocol is `wrpc.konghq.com`, Kong's JSON protocol has
//! none; the CP answers every response with its own `kong-node-id`.

internal! {
    #[cfg(feature = "dp")]
    mod client;
}
#[cfg(feature = "dp")]
mod dial;
internal! {
    #[cfg(feature = "cp")]
    mod server;
}
#[cfg(all(test, feature = "dp", feature = "cp"))]
mod tests;

#[cfg(feature = "dp")]
internal_use!(client::{build_request, check_response, generate_key});
#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub use crate::http::client::DialOptions;
#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub use client::{Refusal, UpgradeError, UpgradeTarget};
#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub use dial::{dial, Dialed};
#[cfg(feature = "cp")]
internal_use!(server::{
    accept_response, check_request, check_request_without_identity, check_upgrade,
    rejection_response,
});
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use server::{route, Endpoint, Rejection, UpgradeHandler, UpgradeRequest, Upgraded};

/// The WebSocket subprotocol every wRPC peer offers and answers.
pub const WRPC_SUBPROTOCOL: &str = "wrpc.konghq.com";

/// The path of the wRPC upgrade, as Kong serves it.
pub const WRPC_PATH: &str = "/v1/wrpc";

/// Whether any comma-separated token of any `name` header equals `token`
/// (case-insensitively).
pub(crate) fn has_token<'a>(mut values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values.any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}
