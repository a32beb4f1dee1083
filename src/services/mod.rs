//! The services spoken over wRPC between data planes and control planes: their messages,
//! ids, and the decisions each side makes, as plain functions without I/O.
//!
//! - [`negotiation`] (service 5): the first call on every connection; the data plane
//!   names the services and versions it speaks, the control plane picks
//!   ([`negotiation::NegotiationPolicy`]).
//! - [`config`] (service 1): config pushes, metadata reports and pings.
//! - [`gate`]: the control plane's compatibility checks (Kong version, plugins).
//!
//! Messages are prost structs written by hand from the protocol definitions; wire field
//! numbers are those of Kong's definitions.

pub mod config;
pub mod gate;
pub mod negotiation;
