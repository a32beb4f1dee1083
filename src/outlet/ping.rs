//! Pings: the data plane's report of the config hash it runs.
//!
//! A Kong data plane pings at once after `basic_info`, every 30 s, and at once after each
//! applied config; the payload is the applied `config_hash`. Kong 3.6+ sends 32 zeros
//! before any config; 3.5 and older can send an empty ping then. A Kong 3.6+ control
//! plane closes the session on any payload that is not exactly 32 bytes; older ones
//! store whatever comes. The control plane answers each ping with an empty pong.

#[cfg(feature = "cp")]
use super::OutletError;
use super::PING_HASH_LEN;
use crate::config::EMPTY_HASH;

/// Whether `hash` may go on the wire as a config hash: exactly [`PING_HASH_LEN`] bytes,
/// all printable ASCII.
///
/// Kong's hashes are 32 lowercase hex characters, and Kong master's sync versions
/// (`v02_` and 28 hex digits) have the same length; Kong checks only the length. We also
/// require printable ASCII so that a hash is always valid text for logs and the node
/// registry.
pub fn is_wire_hash(hash: &str) -> bool {
    hash.len() == PING_HASH_LEN && hash.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
/// The data plane's ping payload: `applied_hash`, or 32 zeros (Kong's hash of "no
/// config") when nothing is applied.
///
/// Always exactly [`PING_HASH_LEN`] bytes, as a Kong 3.6+ control plane requires: a hash
/// that fails [`is_wire_hash`] is replaced by 32 zeros rather than sent. (Hashes from
/// [`super::Reconfigure::effective_hash`] always pass.)
pub fn ping_payload(applied_hash: Option<&str>) -> [u8; PING_HASH_LEN] {
    let hash = applied_hash
        .filter(|h| is_wire_hash(h))
        .unwrap_or(EMPTY_HASH);
    let mut out = [b'0'; PING_HASH_LEN];
    out.copy_from_slice(hash.as_bytes());
    out
}

#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
/// Reads a data plane's ping payload on the control plane: the hash of the config it
/// runs.
///
/// An empty payload (Kong 3.5 and older, before any config) counts as 32 zeros; a
/// payload of exactly 32 bytes is the hash, whatever its characters, as long as they are
/// printable ASCII (hex is not required: Kong 3.6+ checks only the length).
///
/// Errors (close 1008): [`OutletError::PingLength`] for any other length,
/// [`OutletError::PingNotText`] for 32 bytes that are not printable ASCII.
pub fn check_ping(payload: &[u8]) -> Result<String, OutletError> {
    match payload.len() {
        0 => Ok(EMPTY_HASH.to_owned()),
        PING_HASH_LEN => match std::str::from_utf8(payload) {
            Ok(hash) if is_wire_hash(hash) => Ok(hash.to_owned()),
            _ => Err(OutletError::PingNotText),
        },
        len => Err(OutletError::PingLength { len }),
    }
}

#[cfg(all(test, feature = "dp", feature = "cp"))]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_dp_pings_zeros_before_any_config() {
        assert_eq!(&ping_payload(None), EMPTY_HASH.as_bytes());
    }

    #[test]
    fn a_dp_pings_its_applied_hash() {
        assert_eq!(&ping_payload(Some(HASH)), HASH.as_bytes());
    }

    #[test]
    fn a_hash_of_the_wrong_length_never_goes_out() {
        for bad in ["", "abc", &HASH[..31], &format!("{HASH}0"), &" ".repeat(32)] {
            assert_eq!(&ping_payload(Some(bad)), EMPTY_HASH.as_bytes(), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_ping_counts_as_zeros() {
        assert_eq!(check_ping(b"").unwrap(), EMPTY_HASH);
    }

    #[test]
    fn a_32_byte_ping_is_the_hash() {
        assert_eq!(check_ping(HASH.as_bytes()).unwrap(), HASH);
        // Not hex, but 32 characters: accepted as Kong 3.6+ does.
        let v02 = "v02_0000000000000000000000000001";
        assert_eq!(check_ping(v02.as_bytes()).unwrap(), v02);
    }

    #[test]
    fn pings_of_31_or_33_bytes_are_refused_with_1008() {
        for len in [1, 31, 33, 125] {
            let e = check_ping(&vec![b'a'; len]).unwrap_err();
            assert_eq!(e, OutletError::PingLength { len });
            assert_eq!(e.close_code(), 1008);
        }
    }

    #[test]
    fn a_32_byte_ping_that_is_not_text_is_refused() {
        assert_eq!(check_ping(&[0xff; 32]), Err(OutletError::PingNotText));
        assert_eq!(check_ping(&[b'\n'; 32]), Err(OutletError::PingNotText));
        assert_eq!(check_ping(&[b'a'; 32]).unwrap(), "a".repeat(32));
    }
}
