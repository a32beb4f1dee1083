//! `reconfigure`, the control plane's config push: encoded once per config on the control
//! plane ([`EncodedReconfigure`]), inflated and checked on the data plane
//! ([`decode_reconfigure`]).
//!
//! Kong's control plane sends one binary frame, the gzip (level 6) of
//! `{"type":"reconfigure","timestamp":<float seconds>,"config_table":{..},
//! "config_hash":"<32 hex>","hashes":{"config","routes","services","plugins","upstreams",
//! "targets"}}`. Kong 2.3 and 2.4 send only `type` and `config_table`; `timestamp` and
//! `config_hash` come with 2.5, `hashes` with 2.8.1. Kong's data plane inflates gzip or
//! zlib, ignores any other `type`, and computes the hashes itself when `config_hash` is
//! absent.

#[cfg(feature = "dp")]
mod decode;
#[cfg(feature = "cp")]
mod encode;

#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
pub use decode::{decode_reconfigure, Decoded, Reconfigure};
#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use encode::{timestamp, EncodedReconfigure};

#[cfg(all(test, feature = "dp", feature = "cp"))]
#[path = "reconfigure_tests.rs"]
mod tests;
